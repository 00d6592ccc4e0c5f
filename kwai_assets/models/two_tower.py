"""Two-tower recall model: a user tower and an item tower whose normalised outputs meet in a dot product.

- User tower: user id, the user's categorical attributes and the mean of the
  item embeddings of their most recent `history_len` train items before the
  target (YouTube-DNN style, so a training example never sees its own target).
- Item tower: item id, category, POI and a location grid cell (where the
  source has them).
- Loss: a softmax over the batch's positives (in-batch negatives) with the
  log-Q correction (Yi et al., RecSys'19): each negative's logit minus the
  log of its item's sampling probability, the item's share of the train
  interactions, the positive's logit exact; and a temperature (correcting
  the positive too, or the negatives by log(batch x share), measured 0.006
  lower on ml-100k's validation: docs/models.md). Each switchable:
  popularity-sampled negatives shared by the batch (probability ∝
  count^0.75, log-Q corrected too) and hard negatives: items drawn from each
  user's current top `hard_pool` (train items excluded), mined again every
  epoch with the model in eval mode.
- Early stopping on validation NDCG@20; the validation loss (the in-batch
  softmax on the val interactions) is logged every epoch, so one can see it fall.

The vectors of record: the user tower over each user's last `history_len`
train items, the item tower over every item; both unit length, so the dot
product is the cosine the model was trained on.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.nn import functional as F

from kwai_assets.core.evaluation import EvalData, Scorer, device, evaluate
from kwai_assets.core.reid import index_sizes
from kwai_assets.core.sequences import run_starts
from kwai_assets.core.split import history_rows
from kwai_assets.core.vectors import dot_product
from kwai_assets.models import weights
from kwai_assets.models.early_stopping import EarlyStopping
from kwai_assets.models.features import item_feature_codes, user_attribute_codes


@dataclass(frozen=True)
class TwoTowerConfig:
    dim: int = 64
    history_len: int = 50        # most recent train items pooled by the user tower
    user_id: bool = True         # the user id embedding in the user tower (off: a purely inductive tower)
    temperature: float = 0.1     # softmax temperature on cosine scores
    in_batch: bool = True        # the batch's other positives as negatives
    logq: bool = True            # subtract log(sampling probability) from every sampled negative's logit
    pop_negatives: int = 0       # popularity-sampled (count^0.75) negatives shared by the batch
    hard_negatives: int = 0      # per example, drawn from the user's current top hard_pool items (train excluded)
    hard_pool: int = 50
    dropout: float = 0.1
    lr: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 1024
    epochs: int = 100
    eval_every: int = 1          # epochs between validation NDCG@20 measurements
    patience: int = 3            # validations without improvement before stopping
    seed: int = 0

    def __post_init__(self) -> None:
        if not (self.in_batch or self.pop_negatives or self.hard_negatives):
            raise ValueError("two-tower needs negatives: in_batch, pop_negatives or hard_negatives")
        if self.hard_negatives and self.hard_pool < 1:
            raise ValueError(f"two-tower hard_negatives need hard_pool >= 1, got {self.hard_pool}")
        if self.temperature <= 0:
            raise ValueError(f"two-tower temperature must be > 0, got {self.temperature}")


@dataclass
class TwoTowerData:
    """Everything the towers read, in index space, from the train split only (item attributes excepted)."""
    n_users: int
    n_items: int
    seq_items: np.ndarray        # train items of every user in time order, users one after another
    seq_users: np.ndarray        # the user of each position
    seq_start: np.ndarray        # the first position of each position's user
    user_attributes: np.ndarray  # [n_users, n_attr] int, 0 = unknown
    attribute_sizes: list[int]
    item_features: np.ndarray    # [n_items, 3]: category, poi, location cell (0 = none)
    feature_sizes: list[int]
    item_counts: np.ndarray      # [n_items] train interactions

    @classmethod
    def from_frames(cls, splits: pd.DataFrame, id_maps: pd.DataFrame,
                    users: pd.DataFrame | None = None) -> TwoTowerData:
        """From the `splits` and `id_maps` assets and, optionally, `user_attributes` (raw user_id keyed)."""
        sizes = index_sizes(id_maps)
        n_users, n_items = sizes["user"], sizes["item"]
        train = history_rows(splits)
        seq_users = train["user_idx"].to_numpy().astype(np.int64)
        seq_start = run_starts(seq_users)
        attrs, sizes = user_attribute_codes(users, id_maps, n_users)
        features, feature_sizes = item_feature_codes(splits, n_items)
        return cls(n_users=n_users, n_items=n_items, seq_items=train["item_idx"].to_numpy().astype(np.int64),
                   seq_users=seq_users, seq_start=seq_start, user_attributes=attrs, attribute_sizes=sizes,
                   item_features=features, feature_sizes=feature_sizes,
                   item_counts=np.bincount(train["item_idx"].to_numpy(), minlength=n_items))

    def history(self, positions: np.ndarray, length: int, starts: np.ndarray | None = None) -> np.ndarray:
        """[len(positions), length] the user's items strictly before each position (0-padded on the left)."""
        starts = self.seq_start[positions] if starts is None else starts
        at = positions[:, None] + np.arange(-length, 0)[None, :]
        return np.where(at >= starts[:, None], self.seq_items[np.maximum(at, 0)], 0)

    def last_history(self, length: int) -> tuple[np.ndarray, np.ndarray]:
        """(users with train rows, their last `length` train items): the input of the user vectors of record."""
        if not len(self.seq_users):
            return np.zeros(0, np.int64), np.zeros((0, length), np.int64)
        last = np.r_[np.flatnonzero(self.seq_users[1:] != self.seq_users[:-1]), len(self.seq_users) - 1]
        return self.seq_users[last], self.history(last + 1, length, self.seq_start[last])


class TwoTower(nn.Module):
    def __init__(self, n_users: int, n_items: int, attribute_sizes: list[int], feature_sizes: list[int],
                 config: TwoTowerConfig):
        super().__init__()
        self.config, d = config, config.dim
        self.sizes = {"n_users": n_users, "n_items": n_items, "attribute_sizes": list(attribute_sizes),
                      "feature_sizes": list(feature_sizes)}
        self.item = nn.Embedding(n_items, d, padding_idx=0)
        self.user = nn.Embedding(n_users, d) if config.user_id else None
        self.attributes = nn.ModuleList(nn.Embedding(n, d, padding_idx=0) for n in attribute_sizes)
        self.features = nn.ModuleList(nn.Embedding(n, d, padding_idx=0) for n in feature_sizes)
        user_in = d * (2 + len(attribute_sizes)) if config.user_id else d * (1 + len(attribute_sizes))
        self.user_mlp = _mlp(user_in, d, config.dropout)
        self.item_mlp = _mlp(d * (1 + len(feature_sizes)), d, config.dropout)
        for table in (self.item, self.user, *self.attributes, *self.features):
            if table is not None:
                nn.init.normal_(table.weight, std=0.05)

    def encode_users(self, users: torch.Tensor, attributes: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        mask = (history > 0).unsqueeze(-1).float()
        pooled = (self.item(history) * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        parts = [pooled, *(table(attributes[:, k]) for k, table in enumerate(self.attributes))]
        if self.user is not None:
            parts.append(self.user(users))
        return F.normalize(self.user_mlp(torch.cat(parts, dim=-1)), dim=-1)

    def encode_items(self, items: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        parts = [self.item(items), *(table(features[:, k]) for k, table in enumerate(self.features))]
        return F.normalize(self.item_mlp(torch.cat(parts, dim=-1)), dim=-1)


def _mlp(inputs: int, dim: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Dropout(dropout), nn.Linear(inputs, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))


class _Tensors:
    """The data's arrays on the training device."""

    def __init__(self, data: TwoTowerData, dev: torch.device):
        self.attributes = torch.from_numpy(data.user_attributes).to(dev)
        self.features = torch.from_numpy(data.item_features).to(dev)
        counts = data.item_counts.astype(np.float64)
        self.log_q = torch.from_numpy(np.log(np.maximum(counts, 1) / max(counts.sum(), 1))).float().to(dev)
        pop = np.where(np.arange(data.n_items) > 0, counts, 0) ** 0.75
        self.pop = torch.from_numpy(pop / pop.sum()).float().to(dev)
        self.all_items = torch.arange(data.n_items, device=dev)


def _all_items(model: TwoTower, t: _Tensors, batch: int = 8192) -> torch.Tensor:
    return torch.cat([model.encode_items(t.all_items[s:s + batch], t.features[s:s + batch])
                      for s in range(0, len(t.all_items), batch)])


def _loss(model: TwoTower, t: _Tensors, config: TwoTowerConfig, u: torch.Tensor, hist: torch.Tensor,
          pos: torch.Tensor, hard: torch.Tensor | None, generator: torch.Generator) -> torch.Tensor:
    """Softmax cross-entropy of each positive against the configured negatives (log-Q corrected where sampled)."""
    users = model.encode_users(u, t.attributes[u], hist)
    items = model.encode_items(pos, t.features[pos])
    positive = (users * items).sum(-1, keepdim=True) / config.temperature
    logits = [positive]
    if config.in_batch:
        batch = users @ items.T / config.temperature
        if config.logq:
            batch = batch - t.log_q[pos][None, :]
        same = pos[:, None] == pos[None, :]          # the positive itself and its duplicates in the batch
        logits.append(batch.masked_fill(same, -torch.inf))
    if config.pop_negatives:
        sampled = torch.multinomial(t.pop.cpu(), config.pop_negatives, replacement=True,
                                    generator=generator).to(pos.device)
        scores = users @ model.encode_items(sampled, t.features[sampled]).T / config.temperature
        if config.logq:
            scores = scores - torch.log(t.pop[sampled] * config.pop_negatives)[None, :]
        logits.append(scores.masked_fill(sampled[None, :] == pos[:, None], -torch.inf))
    if hard is not None:
        scores = (users[:, None] * model.encode_items(hard.reshape(-1), t.features[hard.reshape(-1)]).reshape(
            *hard.shape, -1)).sum(-1) / config.temperature
        logits.append(scores.masked_fill((hard == pos[:, None]) | (hard == 0), -torch.inf))
    logits = torch.cat(logits, dim=1).float()
    return F.cross_entropy(logits, torch.zeros(len(pos), dtype=torch.long, device=pos.device))


def _user_vectors(model: TwoTower, data: TwoTowerData, t: _Tensors) -> tuple[np.ndarray, torch.Tensor]:
    """(users with train rows, the user tower over their last history_len train items), in eval mode."""
    model.eval()
    users, history = data.last_history(model.config.history_len)
    dev, out = t.features.device, []
    for s in range(0, len(users), 4096):
        u = torch.from_numpy(users[s:s + 4096]).to(dev)
        out.append(model.encode_users(u, t.attributes[u], torch.from_numpy(history[s:s + 4096]).to(dev)))
    return users, torch.cat(out) if out else torch.zeros(0, model.config.dim, device=dev)


@torch.no_grad()
def _hard_pool(model: TwoTower, data: TwoTowerData, t: _Tensors, train_seen, config: TwoTowerConfig) -> torch.Tensor:
    """[n_users, hard_pool]: each user's current top items, train items excluded (0, a masked negative, where
    fewer remain)."""
    users, user_vectors = _user_vectors(model, data, t)
    size = min(config.hard_pool, data.n_items)
    pool = torch.zeros(data.n_users, size, dtype=torch.long, device=t.features.device)
    items = _all_items(model, t)
    for s in range(0, len(users), 1024):
        batch = users[s:s + 1024]
        scores = user_vectors[s:s + 1024] @ items.T
        scores[:, 0] = -torch.inf
        scores.masked_fill_(torch.from_numpy(train_seen[batch].toarray() > 0).to(items.device), -torch.inf)
        top = torch.topk(scores, size, dim=1)
        pool[torch.from_numpy(batch).to(items.device)] = torch.where(torch.isfinite(top.values), top.indices, 0)
    return pool


@torch.no_grad()
def vectors(model: TwoTower, data: TwoTowerData) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(users with train rows, their vectors [U, dim], every item's vector [n_items, dim]), float32."""
    t = _Tensors(data, next(model.parameters()).device)
    users, user_vectors = _user_vectors(model, data, t)
    return users, user_vectors.float().cpu().numpy(), _all_items(model, t).float().cpu().numpy()


def scorer(model: TwoTower, data: TwoTowerData) -> Scorer:
    """Scores of every user by dot product of the vectors of record (users without train rows score 0)."""
    users, user_vectors, items = vectors(model, data)
    full = np.zeros((data.n_users, items.shape[1]), np.float32)
    full[users] = user_vectors
    return dot_product(full, items)


def _val_ndcg(model: TwoTower, data: TwoTowerData, val: EvalData) -> float:
    return evaluate(scorer(model, data), val, ks=(20,))["ndcg", 20]


@torch.no_grad()
def _val_loss(model: TwoTower, data: TwoTowerData, t: _Tensors, val_pairs: tuple[np.ndarray, np.ndarray],
              config: TwoTowerConfig) -> float:
    """The in-batch softmax (log-Q corrected) on the val interactions, each user's last history_len train items
    as input (as the vectors of record)."""
    model.eval()
    users, history = data.last_history(config.history_len)
    row = np.full(data.n_users, -1)
    row[users] = np.arange(len(users))
    u, i = val_pairs
    keep = row[u] >= 0
    u, i = u[keep], i[keep]
    plain = TwoTowerConfig(**{**asdict(config), "in_batch": True, "pop_negatives": 0, "hard_negatives": 0})
    dev, losses, weights = t.features.device, [], []
    for s in range(0, len(u), config.batch_size):
        ub, ib = (torch.from_numpy(a[s:s + config.batch_size]).to(dev) for a in (u, i))
        hist = torch.from_numpy(history[row[u[s:s + config.batch_size]]]).to(dev)
        losses.append(_loss(model, t, plain, ub, hist, ib, None, None).item())
        weights.append(len(ub))
    return float(np.average(losses, weights=weights)) if losses else float("nan")


def train_two_tower(data: TwoTowerData, val: EvalData, config: TwoTowerConfig = TwoTowerConfig(),
                    log: Callable | None = None) -> tuple[TwoTower, list[dict]]:
    """Train on the train sequences with early stopping on `val` (its `validation()` view: val items held out).

    Returns the best epoch's model and the per-epoch history (loss, val_loss, val_ndcg_at_20, samples/s).
    Deterministic on CPU for a seed; bf16 autocast on CUDA.
    """
    dev = device()
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    model = TwoTower(data.n_users, data.n_items, data.attribute_sizes, data.feature_sizes, config).to(dev)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    t, held_out = _Tensors(data, dev), val.validation()
    val_coo = held_out.test.tocoo()
    val_pairs = (val_coo.row.astype(np.int64), val_coo.col.astype(np.int64))
    stopping, history = EarlyStopping(config.patience), []
    for epoch in range(1, config.epochs + 1):
        start, total, steps = time.perf_counter(), 0.0, 0
        pool = _hard_pool(model, data, t, val.train, config) if config.hard_negatives else None
        model.train()
        order = rng.permutation(len(data.seq_items))
        for s in range(0, len(order), config.batch_size):
            rows = order[s:s + config.batch_size]
            u = torch.from_numpy(data.seq_users[rows]).to(dev)
            hist = torch.from_numpy(data.history(rows, config.history_len)).to(dev)
            pos = torch.from_numpy(data.seq_items[rows]).to(dev)
            hard = None
            if pool is not None:
                pick = torch.randint(0, pool.shape[1], (len(rows), config.hard_negatives), generator=generator)
                hard = pool[u].gather(1, pick.to(dev))
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
                loss = _loss(model, t, config, u, hist, pos, hard, generator)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total, steps = total + loss.item(), steps + 1
        elapsed = time.perf_counter() - start
        metrics = {"epoch": epoch, "loss": total / max(steps, 1), "epoch_s": elapsed,
                   "samples_per_s": len(order) / max(elapsed, 1e-9),
                   "val_loss": _val_loss(model, data, t, val_pairs, config)}
        if epoch % config.eval_every == 0 or epoch == config.epochs:
            metrics["val_ndcg_at_20"] = _val_ndcg(model, data, held_out)
            stopping.observe(metrics["val_ndcg_at_20"], model.state_dict)
        if stopping.record(history, epoch, metrics, log):
            break
    stopping.restore(model)
    return model.eval(), history


def save(model: TwoTower, folder: str | Path) -> Path:
    return weights.write(model, folder, {"config": asdict(model.config), **model.sizes})


def load(folder: str | Path) -> TwoTower:
    meta, state = weights.read(folder)
    model = TwoTower(meta["n_users"], meta["n_items"], meta["attribute_sizes"], meta["feature_sizes"],
                     TwoTowerConfig(**meta["config"]))
    model.load_state_dict(state)
    return model.to(device()).eval()
