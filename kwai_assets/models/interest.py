"""Long-term user interest: long- and short-term Transformer towers, [CLS] outputs, a MoE layer.

The user vector is the long tower's [CLS] output through the MoE layer,
trained so that it scores the same user's short-term vector above other
users' (BPR with in-batch negatives) and, optionally, so that it retrieves
the short-term items themselves (sampled softmax over the item embeddings),
which makes it usable for retrieval by dot product with `item_vectors()`.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from kwai_assets.core.evaluation import device
from kwai_assets.models.moe import MoE


@dataclass(frozen=True)
class InterestConfig:
    dim: int = 128             # hidden size of the towers
    depth: int = 4
    heads: int = 8
    head_dim: int = 64
    n_experts: int = 16        # routed experts (see the README for why not the notebook's 100)
    top_k: int = 2
    balance: str = "bias"      # bias | share | none (models/moe.py)
    bias_rate: float = 1e-2    # step of the "bias" balancing; DeepSeek-V3's 1e-3 assumes far more steps
    dropout: float = 0.1
    retrieval_weight: float = 1.0   # weight of the sampled-softmax loss; 0 = BPR only
    negatives: int = 1024           # uniform negatives of the sampled softmax
    epochs: int = 5
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 1e-5
    seed: int = 0


class FeatureEmbedding(nn.Module):
    """Sum of one embedding per integer feature (0 = padding) and a projection of the scaled time."""

    def __init__(self, vocab: dict[str, int], dim: int):
        super().__init__()
        self.names = list(vocab)
        self.tables = nn.ModuleDict({k: nn.Embedding(n, dim, padding_idx=0) for k, n in vocab.items()})
        # unit-norm rows: N(0, 1) ones make the first sampled-softmax logits explode
        for table in self.tables.values():
            nn.init.normal_(table.weight, std=dim ** -0.5)
            table.weight.data[0] = 0
        self.time = nn.Linear(1, dim)

    def forward(self, features: torch.Tensor, times: torch.Tensor) -> torch.Tensor:
        x = sum(self.tables[k](features[..., i]) for i, k in enumerate(self.names))
        return x + self.time(times.unsqueeze(-1)) * (features[..., :1] > 0)


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int, head_dim: int, dropout: float):
        super().__init__()
        self.heads, self.head_dim, self.dropout = heads, head_dim, dropout
        self.qkv = nn.Linear(dim, 3 * heads * head_dim)
        self.out = nn.Linear(heads * head_dim, dim)

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        h = F.scaled_dot_product_attention(q, k, v, attn_mask=keep[:, None, None, :],
                                           dropout_p=self.dropout if self.training else 0.0)
        return self.out(h.transpose(1, 2).reshape(b, t, -1))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, head_dim: int, dropout: float):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attention = Attention(dim, heads, head_dim, dropout)
        self.ffn = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        x = x + self.attention(self.norm1(x), keep)
        return x + self.ffn(self.norm2(x))


class Tower(nn.Module):
    """[CLS] + behaviours -> pre-LN Transformer -> the [CLS] position."""

    def __init__(self, length: int, config: InterestConfig):
        super().__init__()
        self.cls = nn.Parameter(torch.randn(1, 1, config.dim) * 0.02)
        self.position = nn.Parameter(torch.randn(1, length + 1, config.dim) * 0.02)
        self.blocks = nn.ModuleList(Block(config.dim, config.heads, config.head_dim, config.dropout)
                                    for _ in range(config.depth))
        self.norm = nn.LayerNorm(config.dim)

    def forward(self, embedded: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        """`embedded` may be the last columns only (leading padding trimmed): positions stay right-aligned."""
        b, t = embedded.shape[:2]
        position = torch.cat([self.position[:, :1], self.position[:, self.position.shape[1] - t:]], dim=1)
        x = torch.cat([self.cls.expand(b, -1, -1), embedded], dim=1) + position
        keep = torch.cat([torch.ones(b, 1, dtype=torch.bool, device=present.device), present], dim=1)
        for block in self.blocks:
            x = block(x, keep)
        return self.norm(x[:, 0])


class InterestModel(nn.Module):
    def __init__(self, vocab: dict[str, int], long_len: int, short_len: int, config: InterestConfig,
                 item_category: np.ndarray | None = None):
        super().__init__()
        self.config = config
        self.embed = FeatureEmbedding(vocab, config.dim)
        category = np.zeros(vocab["item"], np.int64) if item_category is None else item_category
        self.register_buffer("item_category", torch.as_tensor(category, dtype=torch.long))
        self.long_tower, self.short_tower = Tower(long_len, config), Tower(short_len, config)
        self.moe = MoE(config.dim, config.n_experts, config.top_k, dropout=config.dropout, balance=config.balance,
                       bias_rate=config.bias_rate)

    def encode(self, tower: Tower, features: torch.Tensor, times: torch.Tensor) -> torch.Tensor:
        features, times = trim_padding(features, times)
        return self.moe(tower(self.embed(features, times), features[..., 0] > 0))

    def forward(self, long: torch.Tensor, long_time: torch.Tensor, short: torch.Tensor,
                short_time: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.encode(self.long_tower, long, long_time), self.encode(self.short_tower, short, short_time)

    def item_vectors(self) -> torch.Tensor:
        """Item id embedding + its category's: items share what their category says, which is what lets
        rarely seen items be retrieved at all."""
        return self.embed.tables["item"].weight + self.embed.tables["category"].weight[self.item_category]


def trim_padding(features: torch.Tensor, times: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Drop the leading columns that are padding for every row (sequences are right-aligned).

    Histories are mostly far shorter than `long_len`, so this, with batches of
    similar lengths, is what makes training affordable on a CPU.
    """
    present = (features[..., 0] > 0).any(0)
    first = int(present.int().argmax()) if bool(present.any()) else features.shape[1] - 1
    return features[:, first:], times[:, first:]


def bpr_in_batch(long: torch.Tensor, short: torch.Tensor) -> torch.Tensor:
    """-log sigmoid(<l_u, s_u> - <l_u, s_v>) over every other user v of the batch."""
    scores = long @ short.T
    margin = scores.diag()[:, None] - scores
    others = ~torch.eye(len(scores), dtype=torch.bool, device=scores.device)
    return -F.logsigmoid(margin[others]).mean()


def sampled_softmax(long: torch.Tensor, targets: torch.Tensor, items: torch.Tensor, negatives: int,
                    generator: torch.Generator) -> torch.Tensor:
    """Cross-entropy of each user's short-term items among themselves, the batch's and uniform negatives."""
    present = targets > 0
    candidates = torch.unique(torch.cat([targets[present],
                                         torch.randint(1, len(items), (negatives,), generator=generator)
                                         .to(targets.device)]))
    logits = long @ items[candidates].T                                  # [B, C]
    position = torch.searchsorted(candidates, targets.clamp(min=1))      # [B, S]
    log_p = F.log_softmax(logits, dim=-1).gather(1, position)
    return -(log_p * present).sum() / present.sum().clamp(min=1)


def _batches(lengths: np.ndarray, size: int, generator: torch.Generator) -> list[torch.Tensor]:
    """Batches of users with similar history lengths, in random order (random ties within a length)."""
    noise = torch.rand(len(lengths), generator=generator).numpy()
    order = torch.from_numpy(np.lexsort((noise, lengths)))
    batches = [order[i:i + size] for i in range(0, len(order), size)]
    return [batches[i] for i in torch.randperm(len(batches), generator=generator)]


def train_interest(sequences, config: InterestConfig = InterestConfig(), log=None) -> tuple[InterestModel, list[dict]]:
    """Train on `core.sequences.Sequences`; returns the model and per-epoch history.

    Deterministic on CPU for a seed; on CUDA it runs under bf16 autocast.
    `log(epoch, metrics)` is called after every epoch (MLflow, progress).
    """
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    dev = device()
    model = InterestModel(sequences.vocab, sequences.long.shape[1], sequences.short.shape[1], config,
                          sequences.item_category).to(dev)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    tensors = [torch.from_numpy(a)
               for a in (sequences.long, sequences.long_time, sequences.short, sequences.short_time)]
    lengths = (sequences.long[..., 0] > 0).sum(1)
    history = []
    for epoch in range(config.epochs):
        model.train()
        start, total, seen = time.perf_counter(), 0.0, 0
        for batch in _batches(lengths, config.batch_size, generator):
            if len(batch) < 2:
                continue
            long, long_time, short, short_time = (t[batch].to(dev) for t in tensors)
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
                long_vec, short_vec = model(long, long_time, short, short_time)
                loss = bpr_in_batch(long_vec.float(), short_vec.float())
                if config.retrieval_weight > 0:
                    loss = loss + config.retrieval_weight * sampled_softmax(
                        long_vec.float(), short[..., 0], model.item_vectors().float(), config.negatives, generator)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total, seen = total + loss.item() * len(batch), seen + len(batch)
        seconds = time.perf_counter() - start
        metrics = {"epoch": epoch + 1, "loss": total / max(seen, 1), "samples_per_s": seen / seconds,
                   **model.moe.end_epoch()}
        history.append(metrics)
        if log is not None:
            log(epoch + 1, metrics)
    return model, history


@torch.no_grad()
def user_vectors(model: InterestModel, sequences, batch_size: int = 1024) -> np.ndarray:
    """The vector of record: the long tower over the whole train history, through the MoE."""
    model.eval()
    dev = next(model.parameters()).device
    order = np.argsort((sequences.full[..., 0] > 0).sum(1), kind="stable")    # similar lengths trim best
    out = np.zeros((len(order), model.config.dim), np.float32)
    for i in range(0, len(order), batch_size):
        rows = order[i:i + batch_size]
        full = torch.from_numpy(sequences.full[rows]).to(dev)
        times = torch.from_numpy(sequences.full_time[rows]).to(dev)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
            out[rows] = model.encode(model.long_tower, full, times).float().cpu().numpy()
    return out


@torch.no_grad()
def item_vectors(model: InterestModel) -> np.ndarray:
    """The item embedding table [n_items, dim]; row 0 is the padding (zeros)."""
    return model.item_vectors().float().cpu().numpy()


def save(model: InterestModel, folder: str | Path) -> Path:
    """Weights and everything needed to rebuild the model, in `folder` (what MLflow stores)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), folder / "weights.pt")
    (folder / "config.json").write_text(json.dumps({
        "config": asdict(model.config), "vocab": {k: t.num_embeddings for k, t in model.embed.tables.items()},
        "long_len": model.long_tower.position.shape[1] - 1, "short_len": model.short_tower.position.shape[1] - 1},
        indent=2))
    return folder


def load(folder: str | Path) -> InterestModel:
    """The model `save` wrote, on the current device, in eval mode."""
    folder = Path(folder)
    meta = json.loads((folder / "config.json").read_text())
    model = InterestModel(meta["vocab"], meta["long_len"], meta["short_len"], InterestConfig(**meta["config"]))
    model.load_state_dict(torch.load(folder / "weights.pt", map_location="cpu", weights_only=True))
    return model.to(device()).eval()


def parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
