"""One evaluation protocol for every model (RecBole's full-sort protocol).

- Full ranking over every item that occurs in the data (index 0, the padding,
  and ids that dropped out of the data are never candidates).
- Items the user saw in train and val are excluded from the ranking; the
  relevant set is the user's distinct test items not seen before, and users
  with no such item are not evaluated.
- Recall@K, NDCG@K (binary relevance), HR@K and MRR@K (reciprocal rank of the
  first hit within the top K, 0 otherwise), averaged over evaluated users.

Scoring is batched in torch (on CUDA when present), so 100k users x 40k
items runs in memory-bounded slices of `batch_size` users.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

Scorer = Callable[[np.ndarray], torch.Tensor]   # user indices [B] -> scores [B, n_items]
METRICS = ("recall", "ndcg", "hr", "mrr")
KS = (10, 20, 50)


@dataclass(frozen=True)
class EvalData:
    """Binary user x item matrices of each split, in index space."""
    train: sp.csr_matrix
    val: sp.csr_matrix
    test: sp.csr_matrix

    @property
    def n_users(self) -> int:
        return self.train.shape[0]

    @property
    def n_items(self) -> int:
        return self.train.shape[1]

    @property
    def seen(self) -> sp.csr_matrix:
        """users x items: what each user saw in train or val (never ranked for them)."""
        return ((self.train + self.val) > 0).tocsr()

    @property
    def candidates(self) -> np.ndarray:
        """Items that occur in any split."""
        return np.asarray((self.train + self.val + self.test).sum(axis=0)).ravel() > 0

    def validation(self) -> EvalData:
        """The val split as the held-out set: rank with train excluded, relevance = val items."""
        return EvalData(train=self.train, val=sp.csr_matrix(self.train.shape, dtype=np.float32), test=self.val)

    @classmethod
    def from_splits(cls, splits: pd.DataFrame, n_users: int | None = None, n_items: int | None = None) -> EvalData:
        n_users = n_users or int(splits["user_idx"].max()) + 1
        n_items = n_items or int(splits["item_idx"].max()) + 1
        return cls(*(interaction_matrix(splits, name, n_users, n_items) for name in ("train", "val", "test")))


def entries(matrix: sp.spmatrix, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """matrix[rows[k], cols[k]] for every k, as a flat array (also for no pairs at all)."""
    if not len(rows):
        return np.zeros(0, dtype=matrix.dtype)
    return np.asarray(matrix[rows, cols]).ravel()


def interaction_matrix(splits: pd.DataFrame, split: str, n_users: int, n_items: int) -> sp.csr_matrix:
    """Binary users x items matrix of one split (repeat interactions count once)."""
    part = splits[splits["split"] == split]
    ones = np.ones(len(part), dtype=np.float32)
    m = sp.csr_matrix((ones, (part["user_idx"], part["item_idx"])), shape=(n_users, n_items))
    m.sum_duplicates()
    m.data[:] = 1.0
    return m


def device() -> torch.device:
    """CUDA when torch sees a GPU, else the CPU: the one rule for every torch step of the project."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _ranking_scores(scorer: Scorer, batch: np.ndarray, data: EvalData, seen: sp.csr_matrix,
                    not_candidate: torch.Tensor) -> torch.Tensor:
    """The scorer's scores with what a user saw in train or val, and non-candidates, at -inf."""
    scores = scorer(batch).to(device=not_candidate.device, dtype=torch.float32).clone()
    if scores.shape != (len(batch), data.n_items):
        raise ValueError(f"scorer returned shape {tuple(scores.shape)}, expected {(len(batch), data.n_items)}")
    scores.masked_fill_(torch.from_numpy(seen[batch].toarray()).to(not_candidate.device), -torch.inf)
    return scores.masked_fill_(not_candidate, -torch.inf)


def top_k_items(scorer: Scorer, data: EvalData, k: int, batch_size: int = 1024) -> pd.DataFrame:
    """(user_idx, item_idx, rank) for every user with train rows: the scorer's top k, train and val items excluded,
    as the evaluation ranks them (fewer than k rows where fewer items remain)."""
    dev = device()
    seen = data.seen
    users = np.flatnonzero(data.train.getnnz(axis=1) > 0)
    not_candidate = torch.from_numpy(~data.candidates).to(dev)
    not_candidate[0] = True
    frames = []
    for start in range(0, len(users), batch_size):
        batch = users[start:start + batch_size]
        values, items = torch.topk(_ranking_scores(scorer, batch, data, seen, not_candidate),
                                   min(k, data.n_items), dim=1)
        keep = torch.isfinite(values).cpu().numpy()
        rows, ranks = np.nonzero(keep)
        frames.append(pd.DataFrame({"user_idx": batch[rows], "item_idx": items.cpu().numpy()[rows, ranks],
                                    "rank": ranks + 1}))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["user_idx", "item_idx", "rank"])


def evaluate(scorer: Scorer, data: EvalData, ks: tuple[int, ...] = KS,
             batch_size: int = 1024) -> dict[tuple[str, int], float]:
    """(metric, k) -> mean over evaluated users. Also ('users', 0) -> how many were evaluated."""
    dev = device()
    seen = data.seen
    relevant = ((data.test > 0).astype(np.int8) - (data.test > 0).multiply(seen).astype(np.int8)).tocsr()
    relevant.eliminate_zeros()
    users = np.flatnonzero(relevant.getnnz(axis=1) > 0)
    not_candidate = torch.from_numpy(~data.candidates).to(dev)
    not_candidate[0] = True
    kmax = max(ks)
    discount = 1.0 / torch.log2(torch.arange(2, kmax + 2, device=dev, dtype=torch.float64))
    ideal = torch.cumsum(discount, 0)
    sums = {(m, k): 0.0 for m in METRICS for k in ks}

    for start in range(0, len(users), batch_size):
        batch = users[start:start + batch_size]
        top = torch.topk(_ranking_scores(scorer, batch, data, seen, not_candidate), min(kmax, data.n_items),
                         dim=1).indices
        rel = torch.from_numpy(relevant[batch].toarray()).to(dev).bool()
        hits = torch.nn.functional.pad(rel.gather(1, top).to(torch.float64), (0, kmax - top.shape[1]))
        n_rel = rel.sum(1)
        for k in ks:
            h = hits[:, :k]
            any_hit = h.sum(1) > 0
            first = torch.argmax(h, dim=1).to(torch.float64)
            sums["recall", k] += (h.sum(1) / n_rel).sum().item()
            sums["hr", k] += any_hit.sum().item()
            sums["ndcg", k] += ((h * discount[:k]).sum(1) / ideal[(n_rel.clamp(max=k) - 1)]).sum().item()
            sums["mrr", k] += torch.where(any_hit, 1.0 / (first + 1.0), 0.0).sum().item()

    n = max(len(users), 1)
    out = {key: value / n for key, value in sums.items()}
    out["users", 0] = float(len(users))
    return out


@dataclass(frozen=True)
class Recommender:
    """A model registered in the evaluation asset.

    `build(data, **inputs)` returns a Scorer; `inputs` names the upstream assets
    it needs (passed by name), e.g. ``Recommender("swing_knn", swing_knn, ("item_positive_pairs",))``.
    """
    name: str
    build: Callable[..., Scorer]
    inputs: tuple[str, ...] = field(default_factory=tuple)


def evaluate_all(recommenders: list[Recommender], data: EvalData, inputs: dict[str, object],
                 ks: tuple[int, ...] = KS, batch_size: int = 1024) -> pd.DataFrame:
    """Long table (model, metric, k, value, users) for every registered recommender."""
    rows = []
    for rec in recommenders:
        scorer = rec.build(data, **{name: inputs[name] for name in rec.inputs})
        result = evaluate(scorer, data, ks=ks, batch_size=batch_size)
        users = int(result.pop(("users", 0)))
        rows += [{"model": rec.name, "metric": m, "k": k, "value": v, "users": users} for (m, k), v in result.items()]
    return pd.DataFrame(rows)


def markdown_table(results: pd.DataFrame) -> str:
    """Models as rows, metric@k as columns."""
    wide = results.assign(col=results["metric"] + "@" + results["k"].astype(str)).pivot(
        index="model", columns="col", values="value")
    order = [f"{m}@{k}" for m in METRICS for k in sorted(results["k"].unique())]
    wide = wide.reindex(index=list(dict.fromkeys(results["model"])), columns=[c for c in order if c in wide.columns])
    header = "| model | " + " | ".join(wide.columns) + " |"
    rule = "|---|" + "---:|" * len(wide.columns)
    body = ["| " + model + " | " + " | ".join(f"{v:.4f}" for v in row) + " |" for model, row in wide.iterrows()]
    return "\n".join([header, rule, *body])


def ranked_lists(data: EvalData, recommendations: pd.DataFrame) -> Scorer:
    """Stored ranked lists (user_idx, item_idx, rank) as a Scorer: every listed item above every other, in the
    list's order; the rest after them by train popularity (so the metrics at k up to the list length are the
    lists' own)."""
    counts = np.asarray(data.train.sum(axis=0), dtype=np.float64).ravel()
    rest = torch.from_numpy((counts / (counts.max() + 1.0) if len(counts) else counts).astype(np.float32))
    ranks = recommendations["rank"].to_numpy()
    depth = int(ranks.max()) if len(ranks) else 0
    listed = sp.csr_matrix(((depth + 2 - ranks).astype(np.float32),
                            (recommendations["user_idx"].to_numpy(), recommendations["item_idx"].to_numpy())),
                           shape=(data.n_users, data.n_items))
    return lambda users: torch.from_numpy(listed[users].toarray()) + rest
