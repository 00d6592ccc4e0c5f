"""ID-based collaborative filtering: LightGCN and matrix factorisation, trained with a softmax or BPR.

LightGCN (He et al., SIGIR'20) propagates ego embeddings over the normalised
user-item graph, A_hat = D^-1/2 A D^-1/2, full-batch with one sparse product
per layer, and averages the layers. Matrix factorisation is the same model
with no propagation layer: a user's score for an item is the dot product of
their ego embeddings. Training takes the train interactions in batches and
scores each positive against every item of the train graph (a full
softmax, leaving out the user's other train items; the default: on
MovieLens-100k's validation it reads higher than BPR for every seed tried),
or against uniform negatives with BPR; it stops early on validation NDCG@20
and keeps the weights of the best epoch.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn
from torch.nn import functional as F

from kwai_assets.core.evaluation import EvalData, device, evaluate
from kwai_assets.core.vectors import dot_product
from kwai_assets.models import weights
from kwai_assets.models.early_stopping import EarlyStopping

MODELS = ("lightgcn", "mf")
LOSSES = ("softmax", "bpr")


@dataclass(frozen=True)
class CFConfig:
    model: str = "lightgcn"      # lightgcn | mf
    dim: int = 128               # the defaults: ml-100k validation NDCG@20 (docs/models.md#cf-models-and-the-adapter)
    layers: int = 3              # LightGCN propagation layers (mf: none)
    lr: float = 1e-2             # converges in tens of epochs; 1e-3 (LightGCN's) needs hundreds
    weight_decay: float = 1e-2   # L2 on the batch's ego embeddings (users, positives, negatives), as in LightGCN
    negatives: int = 8           # uniform negatives per positive: BPR's (averaged over them); softmax's L2 only
    loss: str = "softmax"        # softmax: the positive against every train item but the user's others | bpr
    batch_size: int = 2048
    epochs: int = 300
    eval_every: int = 5          # epochs between validation NDCG@20 measurements
    patience: int = 3            # validations without improvement before stopping (docs/models.md)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise ValueError(f"CF model must be one of {MODELS}, got {self.model!r}")
        if self.loss not in LOSSES:
            raise ValueError(f"CF loss must be one of {LOSSES}, got {self.loss!r}")
        if self.negatives < 1:
            raise ValueError(f"CF negatives must be >= 1, got {self.negatives}")

    @property
    def n_layers(self) -> int:
        return self.layers if self.model == "lightgcn" else 0


def normalized_adjacency(train: sp.csr_matrix) -> sp.csr_matrix:
    """D^-1/2 A D^-1/2 of the bipartite graph, users first then items; isolated nodes get zero rows."""
    n_users, n_items = train.shape
    a = sp.bmat([[None, train], [train.T, None]], format="csr", dtype=np.float32)
    degree = np.asarray(a.sum(axis=1)).ravel()
    inv_sqrt = np.where(degree > 0, 1.0 / np.sqrt(np.maximum(degree, 1e-12)), 0.0).astype(np.float32)
    return (sp.diags(inv_sqrt) @ a @ sp.diags(inv_sqrt)).tocsr().astype(np.float32)


def to_torch_sparse(m: sp.csr_matrix, dev: torch.device) -> torch.Tensor:
    coo = m.tocoo()
    index = torch.from_numpy(np.vstack([coo.row, coo.col]).astype(np.int64))
    return torch.sparse_coo_tensor(index, torch.from_numpy(coo.data), m.shape, device=dev,
                                   check_invariants=True).coalesce()


class LightGCN(nn.Module):
    """Ego embeddings + `config.n_layers` rounds of propagation; no layer is matrix factorisation.

    The model carries its `CFConfig` (what `save` writes to rebuild it). The
    adjacency is a plain attribute, not a buffer: it is the train graph, kept
    out of the state dict and rebuilt from data (`attach`).
    """

    def __init__(self, n_users: int, n_items: int, config: CFConfig, adjacency: torch.Tensor | None = None):
        super().__init__()
        self.config = config
        self.n_users, self.n_items, self.layers = n_users, n_items, config.n_layers
        self.user = nn.Embedding(n_users, config.dim)
        self.item = nn.Embedding(n_items, config.dim)
        nn.init.normal_(self.user.weight, std=0.1)
        nn.init.normal_(self.item.weight, std=0.1)
        self.adjacency = adjacency

    def attach(self, train: sp.csr_matrix) -> LightGCN:
        """Build the normalised adjacency of `train` on the model's device (nothing to do without layers)."""
        if train.shape != (self.n_users, self.n_items):
            raise ValueError(f"train matrix is {train.shape}, the model has {(self.n_users, self.n_items)}")
        if self.layers:
            self.adjacency = to_torch_sparse(normalized_adjacency(train), self.user.weight.device)
        return self

    @property
    def edges(self) -> int | None:
        """Interactions of the graph the model propagates over (each is two entries of the adjacency)."""
        return None if self.adjacency is None else int(self.adjacency.values().numel()) // 2

    def propagate(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Final user and item embeddings: the mean of the ego embeddings and every propagated layer."""
        if self.layers and self.adjacency is None:
            raise RuntimeError("LightGCN propagation needs the train graph: load(folder, train) or model.attach(train)")
        ego = torch.cat([self.user.weight, self.item.weight])
        total, layer = ego, ego
        with torch.autocast(ego.device.type, enabled=False):     # CUDA has no bf16 sparse product; float32 anyway
            for _ in range(self.layers):
                layer = torch.sparse.mm(self.adjacency, layer)
                total = total + layer
        final = total / (self.layers + 1)
        return final[:self.n_users], final[self.n_users:]


def bpr_loss(users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """Mean -log sigmoid(<u, i> - <u, j>); users, pos [B, d], neg [B, d] or [B, n, d] (n negatives each)."""
    if neg.dim() == 3:
        return -F.logsigmoid((users * pos).sum(-1, keepdim=True) - (users[:, None] * neg).sum(-1)).mean()
    return -F.logsigmoid((users * pos).sum(-1) - (users * neg).sum(-1)).mean()


def softmax_loss(users: torch.Tensor, items: torch.Tensor, pos: torch.Tensor, left_out: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of each row's positive against every item: users [B, d], items [n_items, d], pos [B],
    left_out [B, n_items] True where an item is not scored (`TripleSampler.left_out`)."""
    return F.cross_entropy((users @ items.T).masked_fill(left_out, float("-inf")), pos)


class TripleSampler:
    """(user, positive, negative) batches over the train interactions; negatives avoid the user's train items."""

    def __init__(self, train: sp.csr_matrix, seed: int):
        coo = train.tocoo()
        self.users, self.items = coo.row.astype(np.int64), coo.col.astype(np.int64)
        self.n_items = train.shape[1]
        self.known = np.sort(self.users * self.n_items + self.items)
        counts = np.asarray(train.sum(axis=0)).ravel()
        self.candidates, self.unseen = np.flatnonzero(counts > 0), np.flatnonzero(counts == 0)
        self.train = train.tocsr()
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.users)

    def left_out(self, u: np.ndarray, i: np.ndarray) -> np.ndarray:
        """[B, n_items] bool: each row's user's other train items, and the items no train row has (the softmax's
        non-candidates, as the negatives' are)."""
        mask = self.train[u].toarray() > 0
        mask[np.arange(len(u)), i] = False
        mask[:, self.unseen] = True
        return mask

    def is_known(self, u: np.ndarray, j: np.ndarray) -> np.ndarray:
        """Whether each (u, j) is a train interaction: a binary search in the sorted keys (np.isin re-sorts them)."""
        keys = u * self.n_items + j
        at = np.minimum(np.searchsorted(self.known, keys), len(self.known) - 1)
        return self.known[at] == keys

    def epoch(self, batch_size: int, negatives: int = 1):
        """(u, i, j) batches; j is [B] with one negative each, [B, negatives] with more."""
        order = self.rng.permutation(len(self.users))
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            u, i = self.users[rows], self.items[rows]
            uu = np.repeat(u, negatives)
            j = self.candidates[self.rng.integers(0, len(self.candidates), len(uu))]
            for _ in range(10):            # resample the negatives that are train positives
                clash = self.is_known(uu, j)
                if not clash.any():
                    break
                j[clash] = self.candidates[self.rng.integers(0, len(self.candidates), int(clash.sum()))]
            yield u, i, (j if negatives == 1 else j.reshape(len(u), negatives))


@torch.no_grad()
def val_ndcg(user_emb: torch.Tensor, item_emb: torch.Tensor, val: EvalData) -> float:
    users, items = (e.float().cpu().numpy() for e in (user_emb, item_emb))
    return evaluate(dot_product(users, items), val, ks=(20,))["ndcg", 20]


StepLoss = Callable[[LightGCN, torch.Tensor, torch.Tensor, np.ndarray, np.ndarray, np.ndarray], torch.Tensor]


def build_model(data: EvalData, config: CFConfig, init: LightGCN | dict | None = None) -> LightGCN:
    """A model on the train graph of `data`, seeded from `config.seed` or with a copy of `init`'s weights."""
    torch.manual_seed(config.seed)
    model = LightGCN(data.n_users, data.n_items, config).to(device()).attach(data.train)
    if init is not None:
        state = init.state_dict() if isinstance(init, nn.Module) else init
        expected = (data.n_users, data.n_items, config.dim)
        found = (*(state[k].shape[0] for k in ("user.weight", "item.weight")), state["user.weight"].shape[1])
        if found != expected:   # e.g. id_maps grew since the base was trained: it must be retrained first
            raise ValueError(f"init has (users, items, dim) {found}, the data and config need {expected}")
        model.load_state_dict(state)          # copies the values: `init` itself is never trained
    return model


def train_cf(data: EvalData, config: CFConfig = CFConfig(), extra_loss: StepLoss | None = None,
             extra_modules: nn.Module | None = None, log=None,
             init: LightGCN | dict | None = None) -> tuple[LightGCN, list[dict]]:
    """Train on `data.train` with early stopping on `data.val`; returns the best model and per-epoch history.

    `extra_loss(model, user_final, item_final, u, i, j)` is added to every
    step's BPR loss (the adapter's alignment), and `extra_modules`' parameters
    are trained with the same optimizer and restored with the best epoch.
    `init` (a model or its state dict, same sizes) is the starting point instead
    of a random one: fine-tuning. With `epochs=0` the result equals `init`.
    """
    dev = device()
    model = build_model(data, config, init)
    params = list(model.parameters()) + (list(extra_modules.parameters()) if extra_modules is not None else [])
    optimizer = torch.optim.Adam(params, lr=config.lr)
    sampler, val = TripleSampler(data.train, config.seed), data.validation()
    stopping, history = EarlyStopping(config.patience), []
    for epoch in range(1, config.epochs + 1):
        model.train()
        start, total, extra_total, steps = time.perf_counter(), 0.0, 0.0, 0
        for u, i, j in sampler.epoch(config.batch_size, config.negatives):
            ut, it, jt = (torch.from_numpy(a).to(dev) for a in (u, i, j))
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
                user_final, item_final = model.propagate()
                # F.embedding, not item_final[jt]: with several negatives per row, indexing's backward
                # accumulates the duplicated rows in a thread-dependent order (runs differ in the last bits)
                if config.loss == "softmax":
                    loss = softmax_loss(F.embedding(ut, user_final).float(), item_final.float(), it,
                                        torch.from_numpy(sampler.left_out(u, i)).to(dev))
                else:
                    loss = bpr_loss(F.embedding(ut, user_final).float(), F.embedding(it, item_final).float(),
                                    F.embedding(jt, item_final).float())
                reg = (model.user(ut).norm() ** 2 + model.item(it).norm() ** 2
                       + model.item(jt).norm() ** 2 / config.negatives) / (2 * len(u))
                loss = loss + config.weight_decay * reg
                if extra_loss is not None:
                    extra = extra_loss(model, user_final, item_final, u, i, j)
                    loss, extra_total = loss + extra, extra_total + extra.item()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total, steps = total + loss.item(), steps + 1
        metrics = {"epoch": epoch, "loss": total / max(steps, 1), "extra_loss": extra_total / max(steps, 1),
                   "epoch_s": time.perf_counter() - start}
        if epoch % config.eval_every == 0 or epoch == config.epochs:
            model.eval()
            metrics["val_ndcg_at_20"] = val_ndcg(*model.propagate(), val)
            stopping.observe(metrics["val_ndcg_at_20"], lambda: (
                model.state_dict(), extra_modules.state_dict() if extra_modules is not None else None))
        if stopping.record(history, epoch, metrics, log):
            break
    if stopping.state is not None:
        model.load_state_dict(stopping.state[0])
        if extra_modules is not None:
            extra_modules.load_state_dict(stopping.state[1])
    model.eval()
    return model, history


@torch.no_grad()
def embeddings(model: LightGCN) -> tuple[np.ndarray, np.ndarray]:
    """Final (propagated) user and item embeddings, float32 numpy."""
    users, items = model.propagate()
    return users.float().cpu().numpy(), items.float().cpu().numpy()


def save(model: LightGCN, folder: str | Path) -> Path:
    """Ego embeddings and what rebuilds the model (config, sizes, the graph's size), in `folder`."""
    return weights.write(model, folder, {"config": asdict(model.config), "n_users": model.n_users,
                                         "n_items": model.n_items, "edges": model.edges})


def load(folder: str | Path, train: sp.csr_matrix | None = None) -> LightGCN:
    """The model `save` wrote, on the current device, in eval mode.

    With `train` (the matrix it was trained on) it can propagate; without it,
    only its ego embeddings and config are usable (a warm start needs no more).
    """
    meta, state = weights.read(folder)
    model = LightGCN(meta["n_users"], meta["n_items"], CFConfig(**meta["config"]))
    model.load_state_dict(state)
    model = model.to(device()).eval()
    if train is not None:
        model.attach(train)
        if meta.get("edges") is not None and model.edges != meta["edges"]:
            raise ValueError(f"train matrix has {model.edges} interactions, the model was trained on {meta['edges']}")
    return model
