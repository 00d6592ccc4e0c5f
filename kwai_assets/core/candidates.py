"""Recall: each channel's top-N items per user, and their merge into one candidate set.

A channel proposes, for every user with train rows, up to N items the user
has not seen in train or val (the items the evaluation ranks), best first.
Channels come in two kinds: exact scores over the catalogue (Swing i2i from
the user's recent items, popularity) and an ANN search of a faiss index with
a query vector (u2i: the user's vector; i2i: the mean unit vector of the
user's recent items). An ANN search fetches N + the most items any user of the
batch has seen, so that N remain after the seen ones are removed.

`build_candidates` runs every channel once with only train excluded, deep
enough that each user's val items can be taken out again: the lists as they
stood when the val period began (where the ranker learns: `training`) and the
lists with val removed and ranks renumbered (what test and serving rank:
`serving`), both merged the same way.

The merge is reciprocal rank fusion (Cormack et al., SIGIR'09): an item's
score is the sum over the channels that proposed it of 1 / (rrf_k + rank), so
an item several channels agree on rises above one that a single channel
ranks a little higher. The fallback channel (popularity) adds nothing to the
score: its items only fill what the others leave. One row per item keeps its
rank in every channel that proposed it (null elsewhere); at most `total` per
user. Chosen on validation on `small` (recall of the 200 candidates, each
channel's list 200 deep; `benchmarks/bench_candidates.py` on the demo's home):
fusion beats the best channel alone and the union of every channel's top 40
by best rank (figures in docs/models.md).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import faiss
import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from kwai_assets.core.ann import search
from kwai_assets.core.evaluation import EvalData, entries
from kwai_assets.core.knn import similarity_matrix

RankedFrame = pd.DataFrame      # (user_idx, item_idx, rank), rank 1 = best


def _users(data: EvalData) -> np.ndarray:
    return np.flatnonzero(data.train.getnnz(axis=1) > 0)


def _ranked(users: np.ndarray, items: np.ndarray, valid: np.ndarray, n: int) -> RankedFrame:
    """[B, k] candidate items (valid mask) -> the first n valid per row, ranked."""
    keep = valid & (np.cumsum(valid, axis=1) <= n)
    rows, cols = np.nonzero(keep)
    ranks = np.cumsum(keep, axis=1)[rows, cols]
    return pd.DataFrame({"user_idx": users[rows].astype(np.int64), "item_idx": items[rows, cols].astype(np.int64),
                         "rank": ranks.astype(np.int64)})


def scored_channel(score: Callable[[np.ndarray], np.ndarray], data: EvalData, n: int,
                   batch_size: int = 1024) -> RankedFrame:
    """Top n per user of dense scores [B, n_items] over the catalogue (items with score <= 0 are not proposed)."""
    seen, frames = data.seen, []
    candidates = data.candidates.copy()
    candidates[0] = False
    users = _users(data)
    for start in range(0, len(users), batch_size):
        batch = users[start:start + batch_size]
        scores = torch.from_numpy(np.array(score(batch), dtype=np.float32))     # a copy: scores may be a view
        scores[torch.from_numpy(seen[batch].toarray() > 0)] = -torch.inf
        scores[:, torch.from_numpy(~candidates)] = -torch.inf
        values, items = torch.topk(scores, min(n, scores.shape[1]), dim=1)
        frames.append(_ranked(batch, items.numpy(), (values > 0).numpy() & torch.isfinite(values).numpy(), n))
    return _concat(frames)


def ann_channel(index: faiss.Index, queries: np.ndarray, data: EvalData, n: int,
                batch_size: int = 1024) -> RankedFrame:
    """Top n per user from an index search with `queries` [n_users, dim] (a zero query proposes nothing)."""
    seen, frames = data.seen, []
    rankable = data.candidates.copy()
    rankable[0] = False
    users = _users(data)
    users = users[np.abs(queries[users]).sum(axis=1) > 0]
    for start in range(0, len(users), batch_size):
        batch = users[start:start + batch_size]
        k = min(n + int(seen[batch].getnnz(axis=1).max()), index.ntotal)
        _, items = search(index, queries[batch], k)
        rows = np.repeat(np.arange(len(batch)), items.shape[1])
        known = np.asarray(seen[batch[rows], np.maximum(items.ravel(), 0)]).ravel() > 0
        valid = (items >= 0) & ~known.reshape(items.shape) & rankable[np.maximum(items, 0)]
        frames.append(_ranked(batch, np.maximum(items, 0), valid, n))
    return _concat(frames)


def _concat(frames: list[RankedFrame]) -> RankedFrame:
    if not frames:
        return pd.DataFrame({"user_idx": np.zeros(0, np.int64), "item_idx": np.zeros(0, np.int64),
                             "rank": np.zeros(0, np.int64)})
    return pd.concat(frames, ignore_index=True)


def merge_channels(channels: dict[str, RankedFrame], per_channel: int, total: int, rrf_k: float = 60.0,
                   fallback: tuple[str, ...] = ("popularity",)) -> pd.DataFrame:
    """(user_idx, item_idx, score, channels, n_channels, best_rank, rank_<channel>...): every channel's first
    `per_channel` items fused by reciprocal rank, the `total` best per user; items that only `fallback` channels
    proposed come after all others, in their order."""
    long = pd.concat([df[df["rank"] <= per_channel].assign(channel=name) for name, df in channels.items()],
                     ignore_index=True)
    wide = long.pivot_table(index=["user_idx", "item_idx"], columns="channel", values="rank", aggfunc="min")
    wide = wide.reindex(columns=list(channels)).astype("Int64")
    proposed = wide.notna().to_numpy()
    mask = proposed @ (1 << np.arange(len(channels)))                     # which channels, as bits
    names = {m: ",".join(c for k, c in enumerate(channels) if m >> k & 1) for m in np.unique(mask)}
    main = [c for c in channels if c not in fallback]
    fused = (1.0 / (rrf_k + wide[main].astype("float64"))).sum(axis=1).to_numpy()
    first_fallback = wide[[c for c in channels if c in fallback]].min(axis=1).astype("float64").to_numpy()
    out = pd.DataFrame({
        "score": fused,
        "channels": pd.Series(mask, index=wide.index).map(names),
        "n_channels": proposed.sum(axis=1).astype(np.int64),
        "best_rank": wide.min(axis=1).astype(np.int64),
    }, index=wide.index)
    out = out.join(wide.add_prefix("rank_")).reset_index()
    out["_fallback"] = np.where(fused > 0, 0.0, 1.0 + np.nan_to_num(first_fallback, nan=0.0))
    out = out.sort_values(["user_idx", "_fallback", "score", "item_idx"], ascending=[True, True, False, True],
                          kind="stable")
    out = out.groupby("user_idx", sort=False).head(total)
    return out.drop(columns="_fallback").reset_index(drop=True)


def recall_of(candidates: pd.DataFrame, data: EvalData) -> tuple[float, int]:
    """Mean over evaluated users (those with a test item unseen in train and val) of the share of their test
    items in `candidates` (user_idx, item_idx); and how many users that is."""
    seen = data.seen
    relevant = ((data.test > 0).astype(np.int8) - (data.test > 0).multiply(seen).astype(np.int8)).tocsr()
    relevant.eliminate_zeros()
    users = np.flatnonzero(relevant.getnnz(axis=1) > 0)
    if not len(users):
        return 0.0, 0
    if not len(candidates):
        return 0.0, len(users)
    hit = entries(relevant, candidates["user_idx"].to_numpy(), candidates["item_idx"].to_numpy()) > 0
    hits = np.bincount(candidates["user_idx"].to_numpy()[hit], minlength=data.n_users)
    return float(np.mean(hits[users] / relevant.getnnz(axis=1)[users])), len(users)


def recall_table(channels: dict[str, RankedFrame], merged: pd.DataFrame, data: EvalData, per_channel: int,
                 total: int) -> pd.DataFrame:
    """(source, size, recall, users): each channel alone at per_channel and at total items, and the merged set."""
    rows = []
    for name, ranked in channels.items():
        for size in sorted({per_channel, total}):
            recall, users = recall_of(ranked[ranked["rank"] <= size], data)
            rows.append({"source": name, "size": size, "recall": recall, "users": users})
    recall, users = recall_of(merged, data)
    rows.append({"source": "merged", "size": total, "recall": recall, "users": users})
    return pd.DataFrame(rows)


def merged_recall_problems(table: pd.DataFrame, size: int) -> list[str]:
    """The merged set must recall at least as much as any channel alone with `size` items (the depth that went
    into the merge: with per_channel = total, the same budget)."""
    merged = float(table.loc[table["source"] == "merged", "recall"].iloc[0])
    alone = table[(table["source"] != "merged") & (table["size"] == size)]
    return [f"merged recall {merged:.4f} is below channel {r.source}'s {r.recall:.4f} at {size}"
            for r in alone.itertuples() if r.recall > merged + 1e-12]


def recall_channels(data: EvalData, recent: sp.csr_matrix, swing_pairs: pd.DataFrame,
                    searches: dict[str, tuple[faiss.Index, np.ndarray]], depth: int) -> dict[str, RankedFrame]:
    """Every channel's list, `depth` deep: Swing i2i from the recent items, one ANN search per (index, queries),
    popularity last (the fallback)."""
    sim = similarity_matrix(swing_pairs, data.n_items)
    channels = {"swing": scored_channel(lambda users: (recent[users] @ sim).toarray(), data, depth)}
    for name, (index, queries) in searches.items():
        channels[name] = ann_channel(index, queries, data, depth)
    counts = np.asarray(data.train.sum(axis=0), dtype=np.float32).ravel()
    channels["popularity"] = scored_channel(lambda users: np.broadcast_to(counts, (len(users), len(counts))),
                                            data, depth)
    return channels


@dataclass(frozen=True)
class CandidateSets:
    """The same channels' candidates at two moments: `serving` excludes train and val (what the test split and the
    online store rank), `training` excludes train only (what the channels proposed for the val period, where the
    ranker learns); each with its recall table (on test, and on val)."""
    serving: pd.DataFrame
    serving_recall: pd.DataFrame
    training: pd.DataFrame
    training_recall: pd.DataFrame


def without(ranked: RankedFrame, items: sp.csr_matrix, n: int) -> RankedFrame:
    """A channel's lists with each user's `items` removed, ranks renumbered, the first n kept."""
    keep = entries(items, ranked["user_idx"].to_numpy(), ranked["item_idx"].to_numpy()) == 0
    out = ranked[keep].copy()
    out["rank"] = out.groupby("user_idx", sort=False).cumcount().to_numpy() + 1
    return out[out["rank"] <= n].reset_index(drop=True)


def build_candidates(data: EvalData, recent: sp.csr_matrix, swing_pairs: pd.DataFrame,
                     searches: dict[str, tuple[faiss.Index, np.ndarray]], per_channel: int,
                     total: int, rrf_k: float = 60.0) -> CandidateSets:
    """Every channel (`recall_channels`) run once with only train excluded, deep enough that removing each user's
    val items still leaves the depth; merged for both moments (`CandidateSets`)."""
    if per_channel < 1 or total < 1:
        raise ValueError(f"candidates need per_channel >= 1 and total >= 1, got {per_channel} and {total}")
    depth = max(per_channel, total)
    # train excluded only, the same catalogue the evaluation ranks (every item of the data)
    catalogue = EvalData(data.train, sp.csr_matrix(data.val.shape, dtype=np.float32), data.val + data.test)
    early = recall_channels(catalogue, recent, swing_pairs, searches, depth + int(data.val.getnnz(axis=1).max()))
    late = {name: without(ranked, data.val, depth) for name, ranked in early.items()}
    early = {name: ranked[ranked["rank"] <= depth] for name, ranked in early.items()}
    serving, training = merge_channels(late, per_channel, total, rrf_k), merge_channels(early, per_channel, total,
                                                                                       rrf_k)
    return CandidateSets(serving, recall_table(late, serving, data, per_channel, total),
                         training, recall_table(early, training, data.validation(), per_channel, total))


def candidate_recall(merged: pd.DataFrame, data: EvalData) -> pd.DataFrame:
    """(source, mean_size, recall, users) of a stored candidate set: the whole set, and the rows each channel
    proposed (its `rank_<channel>` column set) — what each channel contributes after the merge."""
    sources = {"merged": merged, **{c.removeprefix("rank_"): merged[merged[c].notna()]
                                    for c in merged.columns if c.startswith("rank_")}}
    rows = []
    for name, part in sources.items():
        recall, users = recall_of(part, data)
        size = float(part.groupby("user_idx").size().mean()) if len(part) else 0.0
        rows.append({"source": name, "mean_size": size, "recall": recall, "users": users})
    return pd.DataFrame(rows)
