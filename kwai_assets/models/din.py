"""DIN ranker (Zhou et al., KDD'18): target attention over the user's behaviours, an MLP with the Dice activation.

- Item representation: the concatenation of the item's id, category, POI and
  location-cell embeddings, for the candidate and for every behaviour.
- Local activation unit: each behaviour's weight from (behaviour, candidate,
  behaviour - candidate, behaviour * candidate) through a small MLP; the
  weighted behaviours are summed, without softmax normalisation (the paper's
  point: the sum keeps the intensity of the user's interest).
- Head: user attributes, the pooled behaviours, the candidate, and numeric
  features (each recall channel's presence and rank discount, how many
  channels agree, and the log distance from the user's usual places to the
  candidate's POI where coordinates exist) through an MLP with Dice, plus a
  linear term of the numeric features (wide & deep: on `small` it lifted the
  holdout's NDCG@20 from 0.1209 to 0.1249, the id embeddings otherwise
  overfitting before the MLP learns to read the channels' ranks).
- Dice: p(s) = sigmoid((s - E[s]) / sqrt(Var[s] + eps)), f(s) = p s + (1 - p) alpha s,
  with the batch's statistics in training (real behaviours only: padding
  does not count) and running ones at inference. The logit is computed in
  float32 even under bf16 autocast, so that scores do not tie.

Where the ranker learns (the asset's choice, docs/models.md): the recall
models were fitted on the train split, so their ranks on train items are
memorised, and the candidates exclude what a user saw. The ranker therefore
learns on the period after train: the candidates the channels propose with
only train excluded, labelled by the user's val items, history = train. At
serving, the history is train + val and the candidates exclude both: the
situation one period later, with two differences: the channels' queries are
still those of train (their models are not retrained on val), and those models
were early-stopped on val, so their ranks on val items flatter them a little.
Random negatives are catalogue items no channel proposed (all channel
features 0), a kind of row serving never scores; they teach the id and
distance parts. A share of the users (`holdout`) is kept out of training for
early stopping and the validation metrics.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from torch import nn
from torch.nn import functional as F

from kwai_assets.core.evaluation import device, entries, interaction_matrix
from kwai_assets.core.geo import distance_to_usual_places, item_coordinates, usual_places
from kwai_assets.core.reid import index_sizes
from kwai_assets.core.split import history_rows
from kwai_assets.models import weights
from kwai_assets.models.early_stopping import EarlyStopping
from kwai_assets.models.features import item_feature_codes, user_attribute_codes

ACTIVATIONS = ("dice", "prelu", "relu")
USUAL_PLACES = 3             # a user's most visited located places the distance feature measures from
NDCG_K = 20


@dataclass(frozen=True)
class DINConfig:
    dim: int = 8                 # embedding size of each id feature (an item is id + category + POI + cell)
    history_len: int = 50        # most recent behaviours the attention reads
    attention_hidden: int = 36   # the local activation unit's hidden size
    hidden: int = 200            # the head's first layer (the second is hidden // 2.5, as the paper's 200-80)
    activation: str = "dice"     # dice | prelu | relu, in the attention unit and the head
    channel_features: bool = True    # the recall channels' presence and ranks as features
    negatives: int = 50          # per positive, drawn uniformly from the user's own candidates
    random_negatives: int = 5    # per positive, drawn from the whole catalogue (unseen by the user)
    lr: float = 1e-3
    weight_decay: float = 0.0
    clip_norm: float = 5.0       # gradient clipping (the norm of all gradients)
    batch_size: int = 1024
    epochs: int = 30
    patience: int = 3            # validations without a better val NDCG@20 before stopping
    holdout: float = 0.2         # share of users whose candidates validate (never trained on)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"DIN activation must be one of {', '.join(ACTIVATIONS)}, got {self.activation!r}")
        if not 0.0 < self.holdout < 1.0:
            raise ValueError(f"DIN holdout must be in (0, 1), got {self.holdout}")
        if self.negatives + self.random_negatives < 1:
            raise ValueError("DIN needs negatives: negatives or random_negatives >= 1")


class Dice(nn.Module):
    """Data-adaptive activation: a gate from the standardised input, with the batch's statistics in training (of
    the rows `mask` marks, when given: padded behaviours do not count) and running ones at inference."""

    def __init__(self, dim: int, eps: float = 1e-8, momentum: float = 0.1):
        super().__init__()
        self.eps, self.momentum = eps, momentum
        self.alpha = nn.Parameter(torch.zeros(dim))
        self.register_buffer("running_mean", torch.zeros(dim))
        self.register_buffer("running_var", torch.ones(dim))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if self.training:
            rows = (x if mask is None else x[mask]).reshape(-1, x.shape[-1]).float()
            mean, var = rows.mean(0), rows.var(0, unbiased=False)
            with torch.no_grad():
                self.running_mean.lerp_(mean, self.momentum)
                self.running_var.lerp_(rows.var(0, unbiased=True) if len(rows) > 1 else var, self.momentum)
        else:
            mean, var = self.running_mean, self.running_var
        p = torch.sigmoid((x.float() - mean) * torch.rsqrt(var + self.eps)).to(x.dtype)
        return x * (self.alpha + (1 - self.alpha) * p)          # p x + (1 - p) alpha x


class Activation(nn.Module):
    """Dice, PReLU or ReLU over the last dimension of [..., dim] inputs (`mask`: Dice's rows that count)."""

    def __init__(self, kind: str, dim: int):
        super().__init__()
        self.kind = kind
        self.inner = {"dice": lambda: Dice(dim), "prelu": lambda: nn.PReLU(dim), "relu": nn.ReLU}[kind]()

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if self.kind == "dice":
            return self.inner(x, mask)
        return self.inner(x.reshape(-1, x.shape[-1])).reshape(x.shape)


class ActivationUnit(nn.Module):
    """w(b, c) = MLP([b, c, b - c, b * c]) for every behaviour b against the candidate c.

    The first layer is one Linear over the concatenation, computed as W_b b + W_c c + W_d (b - c) + W_p (b * c) =
    (W_b + W_d) b + (W_c - W_d) c + W_p (b * c): the same numbers with half the multiplications, and the
    candidate's part once per row instead of once per behaviour.
    """

    def __init__(self, dim: int, hidden: int, kind: str):
        super().__init__()
        self.first = nn.Linear(4 * dim, hidden)
        self.act = Activation(kind, hidden)
        self.out = nn.Linear(hidden, 1)

    def forward(self, behaviours: torch.Tensor, candidate: torch.Tensor,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        """[B, L, D], [B, D] -> [B, L] weights (`mask` [B, L]: the real behaviours)."""
        wb, wc, wd, wp = self.first.weight.split(behaviours.shape[-1], dim=1)
        pre = (behaviours @ (wb + wd).T + (candidate @ (wc - wd).T + self.first.bias).unsqueeze(1)
               + (behaviours * candidate.unsqueeze(1)) @ wp.T)
        return self.out(self.act(pre, mask)).squeeze(-1)


@dataclass
class Catalog:
    """What DIN knows of users and items beyond the interactions, in index space (shared by every period)."""
    n_users: int
    n_items: int
    user_attributes: np.ndarray      # [n_users, A] codes, 0 = unknown
    attribute_sizes: list[int]
    item_features: np.ndarray        # [n_items, 3] category, POI, location cell codes
    feature_sizes: list[int]
    coordinates: np.ndarray          # [n_items, 2] lat, lon (NaN: none)
    rankable: np.ndarray             # [n_items] bool: items that occur in the data

    @classmethod
    def from_frames(cls, splits: pd.DataFrame, id_maps: pd.DataFrame, users: pd.DataFrame | None = None) -> Catalog:
        sizes = index_sizes(id_maps)
        n_users, n_items = sizes["user"], sizes["item"]
        attributes, attribute_sizes = user_attribute_codes(users, id_maps, n_users)
        features, feature_sizes = item_feature_codes(splits, n_items)
        rankable = np.zeros(n_items, bool)
        rankable[splits["item_idx"].unique()] = True
        rankable[0] = False
        return cls(n_users, n_items, attributes, attribute_sizes, features, feature_sizes,
                   item_coordinates(splits, n_items), rankable)


def candidate_channels(candidates: pd.DataFrame) -> list[str]:
    """The recall channels of a candidates table: its rank_<channel> columns, in order."""
    return [c.removeprefix("rank_") for c in candidates.columns if c.startswith("rank_")]


def candidate_problems(candidates: pd.DataFrame, n_users: int, n_items: int) -> list[str]:
    """Ids of a candidates table that the id maps do not know (index 0 is padding, not an id)."""
    problems = []
    for key, n in (("user_idx", n_users), ("item_idx", n_items)):
        if candidates[key].isna().any():
            problems.append(f"{int(candidates[key].isna().sum())} null {key} values in the candidates")
            continue
        values = candidates[key].to_numpy()
        bad = np.unique(values[(values < 1) | (values >= n)])
        if len(bad):
            problems.append(f"{len(bad)} {key} values of the candidates are not in the id maps "
                            f"(1..{n - 1}): {bad[:10].tolist()}")
    return problems


@dataclass
class RankingData:
    """One period's ranking problem: every (user, candidate) row, its numeric features and label, and each
    user's behaviours and usual places from before the period."""
    users: np.ndarray                # [N] rows, grouped by user in the candidates' order
    items: np.ndarray
    labels: np.ndarray               # [N] float32: 1 = the user took the item in the period
    numeric: np.ndarray              # [N, C] float32: channel features, then distance features
    order: np.ndarray                # [N] the row's place in its user's candidate list (the recall's own order)
    histories: np.ndarray            # [n_users, history_len] behaviours before the period, most recent last
    places: np.ndarray               # [n_users, USUAL_PLACES, 2]
    relevant: sp.csr_matrix          # users x items: the period's items the user had not seen before
    seen: sp.csr_matrix              # users x items: everything before the period
    channels: list[str]

    @classmethod
    def build(cls, catalog: Catalog, candidates: pd.DataFrame, splits: pd.DataFrame, before: tuple[str, ...],
              period: str | None, history_len: int, channels: list[str] | None = None) -> RankingData:
        """The candidates of the period after the `before` splits, labelled by the `period` split (None: unlabelled,
        as at serving). `channels` fixes the channel features' order (a trained model's); missing ones fail."""
        problems = candidate_problems(candidates, catalog.n_users, catalog.n_items)
        if problems:
            raise ValueError("; ".join(problems))
        own = candidate_channels(candidates)
        channels = own if channels is None else channels
        missing = [c for c in channels if c not in own]
        if missing:
            raise ValueError(f"the candidates have no rank_ column for the channels {missing} (they have {own})")
        past = history_rows(splits, before)
        shape = (catalog.n_users, catalog.n_items)
        seen = sum((interaction_matrix(splits, name, *shape) for name in before), sp.csr_matrix(shape))
        seen = (seen > 0).astype(np.float32).tocsr()
        relevant = sp.csr_matrix(shape, dtype=np.float32)
        if period is not None:
            relevant = interaction_matrix(splits, period, *shape)
            relevant = (relevant - relevant.multiply(seen)).tocsr()
            relevant.eliminate_zeros()
        users, items = candidates["user_idx"].to_numpy(np.int64), candidates["item_idx"].to_numpy(np.int64)
        places = usual_places(past, catalog.n_users, USUAL_PLACES)
        numeric = np.hstack([channel_features(candidates, channels),
                             distance_features(places, users, catalog.coordinates[items])])
        return cls(users=users, items=items, labels=entries(relevant, users, items).astype(np.float32),
                   numeric=numeric, order=candidates.groupby("user_idx", sort=False).cumcount().to_numpy() + 1,
                   histories=_histories(past, catalog.n_users, history_len), places=places, relevant=relevant,
                   seen=seen, channels=list(channels))

    def rows_of(self, users: np.ndarray) -> np.ndarray:
        return np.flatnonzero(np.isin(self.users, users))


def _histories(past: pd.DataFrame, n_users: int, length: int) -> np.ndarray:
    """[n_users, length] each user's last `length` items of `past` (time-sorted), left-padded with 0."""
    out = np.zeros((n_users, length), np.int64)
    tail = past.groupby("user_idx", sort=False).tail(length)
    from_end = tail.groupby("user_idx", sort=False).cumcount(ascending=False).to_numpy()
    out[tail["user_idx"].to_numpy(), length - 1 - from_end] = tail["item_idx"].to_numpy()
    return out


def channel_features(candidates: pd.DataFrame, channels: list[str]) -> np.ndarray:
    """[N, 2 * channels + 1]: per channel, proposed (0/1) and 1 / log2(1 + rank) (0 if not); the share of the
    channels that proposed the item."""
    ranks = candidates[[f"rank_{c}" for c in channels]].to_numpy(np.float64)
    proposed = ~np.isnan(ranks)
    discount = np.where(proposed, 1.0 / np.log2(1.0 + np.nan_to_num(ranks, nan=1.0)), 0.0)
    share = proposed.mean(axis=1, keepdims=True) if channels else np.zeros((len(ranks), 1))
    return np.hstack([proposed, discount, share]).astype(np.float32)


def distance_features(places: np.ndarray, users: np.ndarray, coordinates: np.ndarray) -> np.ndarray:
    """[N, 2]: log1p(km to the nearest usual place) / 10 (about 1 at the antipode), and whether it is known."""
    km = distance_to_usual_places(places, users, coordinates)
    known = ~np.isnan(km)
    return np.stack([np.where(known, np.log1p(np.nan_to_num(km)) / 10.0, 0.0), known], axis=1).astype(np.float32)


def n_channel_features(channels: int) -> int:
    return 2 * channels + 1


class DIN(nn.Module):
    def __init__(self, catalog_sizes: dict, config: DINConfig):
        super().__init__()
        self.config, d = config, config.dim
        self.sizes = dict(catalog_sizes)
        n_users, n_items = catalog_sizes["n_users"], catalog_sizes["n_items"]
        self.register_buffer("user_attributes", torch.zeros(n_users, len(catalog_sizes["attribute_sizes"]),
                                                            dtype=torch.long))
        self.register_buffer("item_features", torch.zeros(n_items, len(catalog_sizes["feature_sizes"]),
                                                          dtype=torch.long))
        self.item = nn.Embedding(n_items, d, padding_idx=0)
        self.features = nn.ModuleList(nn.Embedding(n, d, padding_idx=0) for n in catalog_sizes["feature_sizes"])
        self.attributes = nn.ModuleList(nn.Embedding(n, d, padding_idx=0) for n in catalog_sizes["attribute_sizes"])
        item_dim = d * (1 + len(self.features))
        self.attention = ActivationUnit(item_dim, config.attention_hidden, config.activation)
        second = max(1, int(config.hidden / 2.5))
        head_in = d * len(self.attributes) + 2 * item_dim + self.n_numeric
        self.head = nn.Sequential(nn.Linear(head_in, config.hidden), Activation(config.activation, config.hidden),
                                  nn.Linear(config.hidden, second), Activation(config.activation, second))
        self.out = nn.Linear(second, 1)
        self.wide = nn.Linear(self.n_numeric, 1)     # the numeric features straight to the logit (wide & deep)
        for table in (self.item, *self.features, *self.attributes):
            nn.init.normal_(table.weight, std=0.05)
            with torch.no_grad():
                table.weight[0].zero_()              # padding and "unknown" read zeros

    @property
    def channels(self) -> list[str]:
        return list(self.sizes["channels"])

    @property
    def n_numeric(self) -> int:
        return (n_channel_features(len(self.channels)) if self.config.channel_features else 0) + 2

    def embed_items(self, items: torch.Tensor) -> torch.Tensor:
        codes = self.item_features[items]
        return torch.cat([self.item(items), *(table(codes[..., k]) for k, table in enumerate(self.features))], -1)

    def forward(self, users: torch.Tensor, items: torch.Tensor, history: torch.Tensor,
                numeric: torch.Tensor) -> torch.Tensor:
        """Logits [B] of (users, items) with each user's behaviours [B, L] and numeric features [B, C]."""
        candidate = self.embed_items(items)                                   # [B, D]
        behaviours = self.embed_items(history)                                # [B, L, D]
        real = history > 0
        weights = self.attention(behaviours, candidate, real) * real          # no softmax: the sum keeps intensity
        pooled = (weights.unsqueeze(-1) * behaviours).sum(1)
        codes = self.user_attributes[users]
        numeric = self.numeric_inputs(numeric)
        parts = [*(table(codes[:, k]) for k, table in enumerate(self.attributes)), pooled, candidate, numeric]
        hidden = self.head(torch.cat(parts, -1))
        with torch.autocast(hidden.device.type, enabled=False):     # the logit in float32: bf16 would tie scores
            return (self.out(hidden.float()) + self.wide(numeric.float())).squeeze(-1)

    def numeric_inputs(self, numeric: torch.Tensor) -> torch.Tensor:
        """The full numeric features [B, channel..., distance...] as the model reads them (channels dropped in the
        no-channel ablation)."""
        return numeric if self.config.channel_features else numeric[:, -2:]


def catalog_problems(model: DIN, catalog: Catalog) -> list[str]:
    """Why a trained model cannot score this catalogue: ids it has no embedding for (new users or items since)."""
    return [f"the ranker knows {model.sizes[key] - 1} {key.removeprefix('n_')}, the id maps now have "
            f"{getattr(catalog, key) - 1}: materialize ranker again" for key in ("n_users", "n_items")
            if getattr(catalog, key) > model.sizes[key]]


def build_model(catalog: Catalog, channels: list[str], config: DINConfig) -> DIN:
    model = DIN({"n_users": catalog.n_users, "n_items": catalog.n_items, "attribute_sizes": catalog.attribute_sizes,
                 "feature_sizes": catalog.feature_sizes, "channels": list(channels)}, config)
    model.user_attributes.copy_(torch.from_numpy(catalog.user_attributes))
    model.item_features.copy_(torch.from_numpy(catalog.item_features))
    return model


@torch.no_grad()
def score(model: DIN, data: RankingData, rows: np.ndarray | None = None, batch_size: int = 8192) -> np.ndarray:
    """Logits of the given rows of `data` (all by default), float32, in eval mode (Dice's running statistics)."""
    model.eval()
    rows = np.arange(len(data.users)) if rows is None else rows
    dev, out = next(model.parameters()).device, []
    for start in range(0, len(rows), batch_size):
        r = rows[start:start + batch_size]
        u = data.users[r]
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
            logits = model(*(torch.from_numpy(a).to(dev) for a in (u, data.items[r], data.histories[u],
                                                                    data.numeric[r])))
        out.append(logits.float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0, np.float32)


def ranking_metrics(users: np.ndarray, order: np.ndarray, scores: np.ndarray, labels: np.ndarray,
                    relevant: sp.csr_matrix, k: int = NDCG_K) -> dict[str, float]:
    """AUC over all rows, GAUC (per-user AUC weighted by the user's rows, users with both labels), log-loss of
    sigmoid(scores), and NDCG@k of each user's rows reranked by score (ties: `order`, the recall's, as `top_k`),
    relevance = the user's `relevant` items (candidates or not), over the users of `users` with any."""
    frame = pd.DataFrame({"user": users, "order": order, "score": scores.astype(np.float64), "label": labels})
    auc, _ = _auc(frame.assign(user=0))
    gauc, weight = _auc(frame)
    s, y = frame["score"].to_numpy(), frame["label"].to_numpy()
    logloss = float(np.mean(y * np.logaddexp(0.0, -s) + (1 - y) * np.logaddexp(0.0, s))) if len(y) else float("nan")
    top = frame.sort_values(["user", "score", "order"], ascending=[True, False, True], kind="stable")
    top = top.assign(rank=top.groupby("user").cumcount() + 1)
    top = top[top["rank"] <= k]
    dcg = (top["label"] / np.log2(top["rank"] + 1)).groupby(top["user"]).sum()
    evaluated = np.unique(users)
    evaluated = evaluated[relevant.getnnz(axis=1)[evaluated] > 0]
    ideal = np.cumsum(1.0 / np.log2(np.arange(2, k + 2)))
    n_relevant = np.minimum(relevant.getnnz(axis=1)[evaluated], k)
    ndcg = dcg.reindex(evaluated, fill_value=0.0).to_numpy() / ideal[n_relevant - 1] if len(evaluated) else []
    return {"auc": auc, "gauc": gauc, "gauc_users": weight, "logloss": logloss,
            f"ndcg_at_{k}": float(np.mean(ndcg)) if len(evaluated) else 0.0}


def _auc(frame: pd.DataFrame) -> tuple[float, int]:
    """Row-weighted mean over `user` groups with both labels of the rank-sum AUC (ties count half); and how many
    groups that is."""
    ranks = frame.groupby("user")["score"].rank(method="average")
    g = pd.DataFrame({"user": frame["user"], "pos": frame["label"], "rank_pos": ranks * frame["label"]})
    per = g.groupby("user").agg(n=("pos", "size"), pos=("pos", "sum"), rank_pos=("rank_pos", "sum"))
    per = per[(per["pos"] > 0) & (per["pos"] < per["n"])]
    if not len(per):
        return float("nan"), 0
    neg = per["n"] - per["pos"]
    auc = (per["rank_pos"] - per["pos"] * (per["pos"] + 1) / 2) / (per["pos"] * neg)
    return float(np.average(auc, weights=per["n"])), len(per)


def split_users(data: RankingData, holdout: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(training users, holdout users) among the users with candidates, a seeded random split."""
    users = np.unique(data.users)
    shuffled = np.random.default_rng(seed).permutation(users)
    n_holdout = max(1, int(round(holdout * len(users)))) if len(users) > 1 else 0
    return np.sort(shuffled[n_holdout:]), np.sort(shuffled[:n_holdout])


class _Sampler:
    """Each epoch's examples: every positive row of the training users, `negatives` of the same user's
    unlabelled candidates per positive, and `random_negatives` unseen catalogue items per positive."""

    def __init__(self, data: RankingData, catalog: Catalog, users: np.ndarray, config: DINConfig):
        self.data, self.config = data, config
        rows = data.rows_of(users)
        self.positives = rows[data.labels[rows] > 0]
        negatives = rows[data.labels[rows] == 0]
        self.negatives = negatives[np.argsort(data.users[negatives], kind="stable")]
        owners = data.users[self.negatives]
        self.start = np.searchsorted(owners, np.arange(catalog.n_users))
        self.count = np.searchsorted(owners, np.arange(catalog.n_users), side="right") - self.start
        self.catalogue = np.flatnonzero(catalog.rankable)
        self.coordinates = catalog.coordinates
        self.n_numeric = data.numeric.shape[1]

    def epoch(self, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
        """(users, items, numeric, labels), shuffled."""
        d, c = self.data, self.config
        pos_users = d.users[self.positives]
        parts = [(pos_users, d.items[self.positives], d.numeric[self.positives], np.ones(len(pos_users), np.float32))]
        if c.negatives:
            owners = np.repeat(pos_users, c.negatives)
            has = self.count[owners] > 0
            owners = owners[has]
            picks = self.negatives[self.start[owners] + (rng.random(len(owners)) * self.count[owners]).astype(np.int64)]
            parts.append((owners, d.items[picks], d.numeric[picks], np.zeros(len(picks), np.float32)))
        if c.random_negatives and len(self.catalogue):
            owners = np.repeat(pos_users, c.random_negatives)
            items = self.catalogue[rng.integers(0, len(self.catalogue), len(owners))]
            fresh = (entries(d.seen, owners, items) == 0) & (entries(d.relevant, owners, items) == 0)
            owners, items = owners[fresh], items[fresh]
            numeric = np.zeros((len(items), self.n_numeric), np.float32)
            numeric[:, -2:] = distance_features(d.places, owners, self.coordinates[items])
            parts.append((owners, items, numeric, np.zeros(len(items), np.float32)))
        users, items, numeric, labels = (np.concatenate(p) for p in zip(*parts, strict=True))
        order = rng.permutation(len(users))
        return users[order], items[order], numeric[order], labels[order]


def train_din(data: RankingData, catalog: Catalog, config: DINConfig = DINConfig(),
              log: Callable | None = None) -> tuple[DIN, list[dict], dict[str, float]]:
    """Train on the training users' candidates of `data`, early stopping on the holdout users' NDCG@20.

    Returns the best epoch's model, the per-epoch history (loss, gradient norm before clipping, samples/s and
    the holdout's auc, gauc, logloss, ndcg_at_20) and the same holdout metrics of the candidates' own order.
    Deterministic on CPU for a seed; bf16 autocast on CUDA.
    """
    dev = device()
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    train_users, holdout_users = split_users(data, config.holdout, config.seed)
    sampler = _Sampler(data, catalog, train_users, config)
    if not len(sampler.positives):
        raise ValueError("DIN has no positive to learn from: no training user's period item is among its candidates")
    model = build_model(catalog, data.channels, config).to(dev)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    val_rows = data.rows_of(holdout_users)
    baseline = ranking_metrics(data.users[val_rows], data.order[val_rows], -data.order[val_rows].astype(np.float64),
                               data.labels[val_rows], data.relevant)
    stopping, history = EarlyStopping(config.patience), []
    for epoch in range(1, config.epochs + 1):
        start, total, norms, steps = time.perf_counter(), 0.0, 0.0, 0
        users, items, numeric, labels = sampler.epoch(rng)
        model.train()
        for s in range(0, len(users), config.batch_size):
            b = slice(s, s + config.batch_size)
            if len(users[b]) < 2:         # Dice's batch statistics need two rows
                continue
            u = torch.from_numpy(users[b]).to(dev)
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
                logits = model(u, torch.from_numpy(items[b]).to(dev), torch.from_numpy(data.histories[users[b]]).to(
                    dev), torch.from_numpy(numeric[b]).to(dev))
            loss = F.binary_cross_entropy_with_logits(logits.float(), torch.from_numpy(labels[b]).to(dev))
            optimizer.zero_grad()
            loss.backward()
            norms += float(nn.utils.clip_grad_norm_(model.parameters(), config.clip_norm))
            optimizer.step()
            total, steps = total + loss.item(), steps + 1
        elapsed = time.perf_counter() - start
        val = ranking_metrics(data.users[val_rows], data.order[val_rows], score(model, data, val_rows),
                              data.labels[val_rows], data.relevant)
        metrics = {"epoch": epoch, "loss": total / max(steps, 1), "grad_norm": norms / max(steps, 1),
                   "epoch_s": elapsed, "samples_per_s": len(users) / max(elapsed, 1e-9),
                   **{f"val_{k}": v for k, v in val.items() if k != "gauc_users"}}
        stopping.observe(metrics[f"val_ndcg_at_{NDCG_K}"], model.state_dict)
        if stopping.record(history, epoch, metrics, log):
            break
    stopping.restore(model)
    return model.eval(), history, {k: v for k, v in baseline.items() if k != "gauc_users"}


def top_k(data: RankingData, scores: np.ndarray, k: int) -> pd.DataFrame:
    """(user_idx, item_idx, score, rank): each user's k best candidates by score (ties: the recall's order)."""
    frame = pd.DataFrame({"user_idx": data.users, "item_idx": data.items, "score": scores.astype(np.float32),
                          "order": data.order})
    frame = frame.sort_values(["user_idx", "score", "order"], ascending=[True, False, True], kind="stable")
    frame["rank"] = frame.groupby("user_idx").cumcount() + 1
    return frame[frame["rank"] <= k].drop(columns="order").reset_index(drop=True)


def save(model: DIN, folder: str | Path) -> Path:
    return weights.write(model, folder, {"config": asdict(model.config), **model.sizes})


def load(folder: str | Path) -> DIN:
    meta, state = weights.read(folder)
    model = DIN(meta, DINConfig(**meta.pop("config")))
    model.load_state_dict(state)
    return model.to(device()).eval()
