"""Long-term user interest: a causal long-term Transformer tower with a [CLS] query, a short-term tower, a MoE head.

The user vector is the long tower's [CLS] output through the MoE head. The
long tower reads a user's train history with causal attention (a behaviour
sees itself and the ones before it, never a later one) and rotary positions;
a [CLS] token after the behaviours sees those before its cut (all of them
for the vector of record) and sits at the cut's position. Every output goes
through the same MoE head and scores items by dot product with the item
embeddings, which are shared between input and output (item id + category +
POI). Training, on the train split only:

- the positions: every behaviour (scoring the behaviours after it) and the
  [CLS] cut where the long-term part ends (the first 90% of the history; it
  scores the short-term part, as the validation and test items follow the
  train history);
- next item (SASRec): each position scores the behaviour right after it;
- dense all-action (PinnerFormer): each position scores each of the next
  `window` behaviours;
- both as a softmax over the whole catalogue (sampled, with a log-Q
  correction, above `full_softmax_items` items), leaving out the items the
  user already had, as the evaluation does;
- BPR (the research notebook's loss), optional: the [CLS] long vector scores
  the same user's short-tower vector above the other users' of the batch.
  `every_position=False, next_item=0, bpr=1` is the notebook's training: only
  the [CLS], scoring the short-term items and the short-tower vector.

The weights that are validated and kept are an exponential moving average of
the trained ones (`ema`, Polyak averaging): on MovieLens-100k's validation it
adds more than a seed's spread (docs/models.md). With validation data,
training stops early on validation NDCG@20 and keeps the best epoch's
(averaged) weights. The vector of record comes from the train history
only: the [CLS] after the last `long_len` train behaviours.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from kwai_assets.core.evaluation import EvalData, device, evaluate
from kwai_assets.core.vectors import dot_product
from kwai_assets.models import weights
from kwai_assets.models.dropout import Dropout
from kwai_assets.models.early_stopping import EarlyStopping
from kwai_assets.models.moe import MoE, SwiGLUExpert

SOFTMAX = ("auto", "full", "sampled")
CONTEXT = ("hour", "weekday", "weekend", "event", "gap", "time")    # behaviour features beside item and category


@dataclass(frozen=True)
class InterestConfig:
    dim: int = 64              # hidden size of the towers, and of the user and item vectors
    depth: int = 2             # Transformer blocks per tower
    heads: int = 2             # attention heads per block
    head_dim: int = 32         # size of each attention head
    n_experts: int = 16        # routed experts of the MoE head; 0 = a dense SwiGLU feed-forward layer instead
    top_k: int = 2             # routed experts each position uses
    balance: str = "bias"      # bias | share | none (models/moe.py)
    bias_rate: float = 1e-2    # step of the "bias" balancing; DeepSeek-V3's 1e-3 assumes far more steps
    dropout: float = 0.4       # on the embeddings, attention and feed-forward outputs, and the experts
    features: str = "event,gap"  # embedded beside item/category/POI, of: hour,weekday,weekend,event,gap,time; or all
    next_item: float = 1.0     # weight of the next-item softmax: each position scores the behaviour after it (SASRec)
    all_action: float = 0.0    # weight of the dense all-action softmax (PinnerFormer): scores the next `window` ones
    window: int = 16           # behaviours ahead that the all-action loss scores (PinnerFormer's window)
    every_position: bool = True  # train every behaviour's output, not only the [CLS] (False: the notebook's setup)
    bpr: float = 0.0           # weight of the notebook's long-vs-short BPR; 0 = no short tower
    softmax: str = "auto"      # full | sampled (log-Q corrected) | auto: full up to `full_softmax_items` items
    full_softmax_items: int = 50_000   # largest catalogue that "auto" scores in full
    temperature: float = 0.0   # 0: raw dot products; > 0: cosine similarity / temperature (both sides unit length)
    exclude_seen: bool = True  # a position's softmax leaves out the items the user already had (as the evaluation)
    negatives: int = 2048      # uniform negatives of the sampled softmax (besides the batch's targets)
    epochs: int = 200          # upper bound; early stopping on validation NDCG@20 usually ends sooner
    eval_every: int = 2        # epochs between validation NDCG@20 measurements (when validation data is given)
    patience: int = 2          # validations without improvement before stopping; the best epoch kept (docs/models.md)
    batch_size: int = 128      # users per step (of similar history lengths)
    lr: float = 3e-3           # AdamW learning rate
    weight_decay: float = 0.2  # AdamW's decoupled weight decay (chosen on validation: docs/models.md)
    ema: float = 0.95          # decay per step of the weights' moving average that is validated and kept; 0 = off
    seed: int = 0              # weights, batches, dropout and sampling: one seed, deterministic on CPU

    def __post_init__(self) -> None:
        if unknown := set(self.context) - set(CONTEXT):
            raise ValueError(f"features must be among {CONTEXT} or 'all', got {sorted(unknown)}")
        if self.softmax not in SOFTMAX:
            raise ValueError(f"softmax must be one of {SOFTMAX}, got {self.softmax!r}")
        if min(self.next_item, self.all_action, self.bpr) < 0:
            raise ValueError("loss weights must be non-negative")
        if not 0 <= self.ema < 1:
            raise ValueError(f"ema must be in [0, 1) (0: no averaging; 1 would keep the first weights), got {self.ema}")
        if self.next_item + self.all_action == 0:
            raise ValueError("next_item or all_action must be positive: the BPR alone does not train the item vectors")

    @property
    def context(self) -> tuple[str, ...]:
        if self.features.strip() == "all":
            return CONTEXT
        return tuple(f.strip() for f in self.features.split(",") if f.strip())


class FeatureEmbedding(nn.Module):
    """Sum of one embedding per integer feature (0 = padding), the item's POI, and a projection of the scaled time.

    The item, its category and its POI are always embedded; `context` names the
    other features (of `vocab`, plus "time") that are. The item table (with the
    category's and the POI's rows) is also the output embedding: `item_table()`.
    """

    def __init__(self, vocab: dict[str, int], dim: int, item_category: np.ndarray, item_poi: np.ndarray,
                 n_pois: int, context: tuple[str, ...] = CONTEXT):
        super().__init__()
        self.vocab = dict(vocab)
        self.columns = {k: i for i, k in enumerate(vocab) if k in ("item", "category", *context)}
        self.tables = nn.ModuleDict({k: nn.Embedding(vocab[k], dim, padding_idx=0) for k in self.columns})
        self.poi = nn.Embedding(max(n_pois, 1), dim, padding_idx=0)
        for table in [*self.tables.values(), self.poi]:     # unit-norm rows: the first logits stay moderate
            nn.init.normal_(table.weight, std=dim ** -0.5)
            table.weight.data[0] = 0
        self.register_buffer("item_category", torch.as_tensor(item_category, dtype=torch.long))
        self.register_buffer("item_poi", torch.as_tensor(item_poi, dtype=torch.long))
        self.time = nn.Linear(1, dim) if "time" in context else None

    def item_table(self) -> torch.Tensor:
        """[n_items, dim]: item id + its category + its POI; items share what their attributes say.

        F.embedding, not `weight[index]`: indexing's backward adds the many items of a category in a
        thread-dependent order on CPU, and the runs would differ in the last bits (then in the epochs)."""
        return (self.tables["item"].weight + F.embedding(self.item_category, self.tables["category"].weight)
                + F.embedding(self.item_poi, self.poi.weight))

    def forward(self, features: torch.Tensor, times: torch.Tensor) -> torch.Tensor:
        items = features[..., 0]
        x = self.tables["item"](items) + self.poi(self.item_poi[items])
        x = x + sum(self.tables[k](features[..., i]) for k, i in self.columns.items() if k != "item")
        if self.time is not None:
            x = x + self.time(times.unsqueeze(-1)) * (items > 0).unsqueeze(-1)
        return x


def rotary(x: torch.Tensor, position: torch.Tensor) -> torch.Tensor:
    """Rotary position embedding of x [B, H, T, d] at positions [B, T]: attention scores depend on offsets only."""
    half = x.shape[-1] // 2
    freq = 1000.0 ** (-torch.arange(half, device=x.device, dtype=torch.float32) / half)
    angle = position.float()[:, None, :, None] * freq                  # [B, 1, T, half]
    cos, sin = angle.cos().to(x.dtype), angle.sin().to(x.dtype)
    a, b = x[..., :half], x[..., half:]
    return torch.cat([a * cos - b * sin, a * sin + b * cos], dim=-1)


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int, head_dim: int, dropout: float):
        super().__init__()
        self.heads, self.head_dim = heads, head_dim
        self.dropout = Dropout(dropout)                # on the output: dropout on the scores costs far more on a CPU
        self.qkv = nn.Linear(dim, 3 * heads * head_dim)
        self.out = nn.Linear(heads * head_dim, dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, position: torch.Tensor | None = None) -> torch.Tensor:
        """`mask` [B, T] (keys to attend) or [B, T, T] (query row, key column); rotary positions when given."""
        b, t, _ = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        if position is not None:
            q, k = rotary(q, position), rotary(k, position)
        mask = mask[:, None, None, :] if mask.dim() == 2 else mask[:, None]
        h = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.dropout(self.out(h.transpose(1, 2).reshape(b, t, -1)))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, head_dim: int, dropout: float):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attention = Attention(dim, heads, head_dim, dropout)
        self.ffn = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim), Dropout(dropout))

    def forward(self, x: torch.Tensor, mask: torch.Tensor, position: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.attention(self.norm1(x), mask, position)
        return x + self.ffn(self.norm2(x))


class Tower(nn.Module):
    """Short-term tower: [CLS] + behaviours -> bidirectional pre-LN Transformer -> the [CLS] position."""

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


class CausalTower(nn.Module):
    """Long-term tower: behaviours + a trailing [CLS] -> causal pre-LN Transformer with rotary positions.

    Behaviour t attends to behaviours 0..t; the [CLS] attends to the behaviours
    before its `cut` column (all of them by default) and sits at position
    `cut`, right after the last one it sees, so it reads as "what comes next"
    wherever the cut is. No behaviour attends to the [CLS].
    """

    def __init__(self, config: InterestConfig):
        super().__init__()
        self.cls = nn.Parameter(torch.randn(1, 1, config.dim) * 0.02)
        self.blocks = nn.ModuleList(Block(config.dim, config.heads, config.head_dim, config.dropout)
                                    for _ in range(config.depth))
        self.norm = nn.LayerNorm(config.dim)

    def forward(self, embedded: torch.Tensor, present: torch.Tensor,
                cut: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """([CLS] output [B, dim], behaviour outputs [B, T, dim]); `cut` [B] columns the [CLS] sees (default T)."""
        b, t = embedded.shape[:2]
        dev = embedded.device
        cut = torch.full((b,), t, device=dev) if cut is None else cut
        column = torch.arange(t, device=dev)
        items = (column[None, :] <= column[:, None])[None] & present[:, None, :]      # [B, T, T] causal
        items = items | torch.eye(t, dtype=torch.bool, device=dev)[None]               # padding rows: themselves
        cls_row = present & (column[None, :] < cut[:, None])                           # [B, T]
        mask = torch.zeros(b, t + 1, t + 1, dtype=torch.bool, device=dev)
        mask[:, :t, :t] = items
        mask[:, t, :t] = cls_row
        mask[:, t, t] = True
        position = torch.cat([column.expand(b, -1), cut[:, None]], dim=1)
        x = torch.cat([embedded, self.cls.expand(b, -1, -1)], dim=1)
        for block in self.blocks:
            x = block(x, mask, position)
        x = self.norm(x)
        return x[:, t], x[:, :t]


class DenseHead(nn.Module):
    """The ablation of the MoE head: its shared expert alone (x + SwiGLU(x)), one dense feed-forward layer."""

    def __init__(self, dim: int, dropout: float):
        super().__init__()
        self.shared = SwiGLUExpert(dim, 2 * dim, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.shared(x)

    def end_epoch(self) -> dict[str, float]:
        return {}


class InterestModel(nn.Module):
    def __init__(self, vocab: dict[str, int], long_len: int, short_len: int, config: InterestConfig,
                 item_category: np.ndarray | None = None, item_poi: np.ndarray | None = None, n_pois: int = 1):
        super().__init__()
        self.config, self.long_len, self.short_len = config, long_len, short_len
        category = np.zeros(vocab["item"], np.int64) if item_category is None else item_category
        poi = np.zeros(vocab["item"], np.int64) if item_poi is None else item_poi
        self.embed = FeatureEmbedding(vocab, config.dim, category, poi, n_pois, config.context)
        self.dropout = Dropout(config.dropout)
        self.long_tower = CausalTower(config)
        self.short_tower = Tower(short_len, config) if config.bpr > 0 else None
        self.moe = (MoE(config.dim, config.n_experts, config.top_k, dropout=config.dropout, balance=config.balance,
                        bias_rate=config.bias_rate) if config.n_experts > 0 else DenseHead(config.dim, config.dropout))

    def embedded(self, features: torch.Tensor, times: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.dropout(self.embed(features, times)), features[..., 0] > 0

    def encode(self, features: torch.Tensor, times: torch.Tensor, cut: torch.Tensor | None = None) -> torch.Tensor:
        """The user vector: the long tower's [CLS] over `features` (up to `cut`), through the MoE head."""
        cls, _ = self.long_tower(*self.embedded(features, times), cut)
        return self.head(cls)

    def head(self, x: torch.Tensor) -> torch.Tensor:
        """Tower outputs -> user-side vectors: the MoE, then (with a temperature) unit length / temperature."""
        x = self.moe(x)
        return F.normalize(x, dim=-1) / self.config.temperature if self.config.temperature > 0 else x

    def encode_short(self, features: torch.Tensor, times: torch.Tensor) -> torch.Tensor:
        features, times = trim_padding(features, times)
        return self.head(self.short_tower(*self.embedded(features, times)))

    def item_vectors(self) -> torch.Tensor:
        items = self.embed.item_table()
        return F.normalize(items, dim=-1) if self.config.temperature > 0 else items


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


class Softmax:
    """-log p(target | query) over the catalogue: in full, or sampled with a log-Q correction.

    Sampled: the candidates are the batch's targets plus `negatives` uniform
    items; every candidate's logit is lowered by the log of its expected count
    among the draws (targets follow the train frequency, negatives are
    uniform), which keeps the estimate unbiased towards popular items.
    `seen` (row, item) pairs, with `exclude_seen`, take items out of a row's
    softmax, as the evaluation takes a user's past items out of the ranking;
    a target among them is dropped (it could never be recommended).
    """

    def __init__(self, n_items: int, frequency: np.ndarray, config: InterestConfig, generator: torch.Generator):
        self.full = config.softmax == "full" or (config.softmax == "auto" and n_items <= config.full_softmax_items)
        self.negatives, self.generator, self.exclude_seen = config.negatives, generator, config.exclude_seen
        self.frequency = torch.as_tensor(frequency / max(frequency.sum(), 1), dtype=torch.float32)
        self.workspace = torch.empty(0)                 # the logits of every step (SoftmaxNLL)

    def __call__(self, queries: torch.Tensor, targets: torch.Tensor, items: torch.Tensor,
                 seen: tuple[torch.Tensor, torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(-log p [M, K], counted [M, K]) of the targets; queries [M, dim], targets [M, K] item ids (0 = none)."""
        if not self.exclude_seen:
            seen = None
        if self.full:                                   # every item but the padding (0): column j is item j + 1
            scored, log_q = items[1:], None
            index = (targets - 1).clamp(min=0)
            if seen is not None:
                seen = (seen[0], seen[1] - 1)
        else:
            present = targets > 0
            n = len(items)
            drawn = torch.randint(1, n, (self.negatives,), generator=self.generator).to(targets.device)
            candidates = torch.unique(torch.cat([targets[present], drawn]))
            log_q = (int(present.sum()) * self.frequency.to(targets.device)[candidates]
                     + self.negatives / (n - 1)).log()
            scored = items[candidates]
            index = torch.searchsorted(candidates, targets.clamp(min=1))
            if seen is not None:
                at = torch.searchsorted(candidates, seen[1]).clamp(max=len(candidates) - 1)
                found = candidates[at] == seen[1]
                seen = (seen[0][found], at[found])
        size = len(queries) * len(scored)
        if self.workspace.numel() < size or self.workspace.device != queries.device:
            self.workspace = torch.empty(size, device=queries.device)
        nll = SoftmaxNLL.apply(queries, scored, index, log_q, seen, self.workspace)
        counted = (targets > 0) & torch.isfinite(nll)
        return torch.where(counted, nll, 0.0), counted


class SoftmaxNLL(torch.autograd.Function):
    """-log_softmax(queries @ scored.T - log_q, seen items at -inf).gather(1, index), in float32.

    The [rows, items] logits are the largest tensor of a step. They live in one
    reused `workspace` (allocating them afresh every step costs a page fault per
    4 KiB on a CPU, about a third of the product's time), are turned into the
    log-probabilities in place, and the backward turns those into the gradient
    in place too (softmax * sum of grads - scattered grads), where autograd's
    version would allocate and walk the matrix about three more times.
    """

    @staticmethod
    def forward(ctx, queries: torch.Tensor, scored: torch.Tensor, index: torch.Tensor, log_q: torch.Tensor | None,
                seen: tuple[torch.Tensor, torch.Tensor] | None, workspace: torch.Tensor) -> torch.Tensor:
        q, items = queries.float(), scored.float()
        log_p = torch.mm(q, items.T, out=workspace[:len(q) * len(items)].view(len(q), len(items)))
        if log_q is not None:
            log_p.sub_(log_q)
        if seen is not None:                            # constants: no gradient flows to a -inf logit
            log_p.index_put_(seen, torch.tensor(-torch.inf, device=log_p.device))
        torch.log_softmax(log_p, dim=1, out=log_p)
        ctx.save_for_backward(q, items, index)
        ctx.log_p, ctx.dtypes = log_p, (queries.dtype, scored.dtype)
        return -log_p.gather(1, index)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple:
        q, items, index = ctx.saved_tensors
        g = ctx.log_p.exp_().mul_(grad.sum(1, keepdim=True)).scatter_add_(1, index, -grad.float())
        del ctx.log_p                                   # the workspace is the next step's
        return (g @ items).to(ctx.dtypes[0]), (g.T @ q).to(ctx.dtypes[1]), None, None, None, None


def mean_nll(nll: torch.Tensor, counted: torch.Tensor) -> torch.Tensor:
    return nll.sum() / counted.sum().clamp(min=1)


def ahead(items: torch.Tensor, k: int) -> torch.Tensor:
    """[B, T, k]: the items 1..k columns after each column (0 past the end)."""
    b, t = items.shape
    padded = F.pad(items, (0, k))
    return torch.stack([padded[:, j:j + t] for j in range(1, k + 1)], dim=-1)


def _batches(lengths: np.ndarray, size: int, generator: torch.Generator) -> list[torch.Tensor]:
    """Batches of users with similar history lengths, in random order (random ties within a length)."""
    noise = torch.rand(len(lengths), generator=generator).numpy()
    order = torch.from_numpy(np.lexsort((noise, lengths)))
    batches = [order[i:i + size] for i in range(0, len(order), size)]
    return [batches[i] for i in torch.randperm(len(batches), generator=generator)]


def _seen_pairs(items: torch.Tensor, rows: torch.Tensor, sees: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(softmax row, item) for every item a row has seen; `rows` [B, R] row ids (-1 = none), `sees` [B, R, T]."""
    b, r, column = torch.nonzero(sees & (rows >= 0)[..., None] & (items > 0)[:, None, :], as_tuple=True)
    return rows[b, r], items[b, column]


def _step_loss(model: InterestModel, batch: list[torch.Tensor], softmax: Softmax) -> torch.Tensor:
    """One batch's weighted loss (see the module doc for the terms)."""
    config = model.config
    full, full_time, n_short, short, short_time = batch
    full, full_time = trim_padding(full, full_time)
    b, t = full.shape[:2]
    dev = full.device
    items = full[..., 0]
    column = torch.arange(t, device=dev)
    cut = t - n_short                                                    # the long-term part ends here
    x, present = model.embedded(full, full_time)
    cls, outputs = model.long_tower(x, present, cut)
    k = config.window if config.all_action > 0 else 1
    # the [CLS]'s targets: the behaviours after its cut; it has seen the ones before
    cls_targets = F.pad(items, (0, k)).gather(1, cut[:, None] + torch.arange(k, device=dev))
    rows = torch.arange(b, device=dev)[:, None]
    seen = _seen_pairs(items, rows, (column[None, :] < cut[:, None])[:, None])
    queries, targets = cls, cls_targets
    if config.every_position:                                            # and every behaviour's, after it
        following = ahead(items, k)                                      # [B, T, k]
        has_next = present & (following[..., 0] > 0)
        rows = torch.full((b, t), -1, dtype=torch.long, device=dev)
        rows[has_next] = torch.arange(b, b + int(has_next.sum()), device=dev)
        behaviour_seen = _seen_pairs(items, rows, column[None, :] <= column[:, None])
        seen = (torch.cat([seen[0], behaviour_seen[0]]), torch.cat([seen[1], behaviour_seen[1]]))
        queries, targets = torch.cat([cls, outputs[has_next]]), torch.cat([cls_targets, following[has_next]])
    head = model.head(queries)
    nll, counted = softmax(head, targets, model.item_vectors(), seen)
    loss = torch.zeros((), device=dev)
    if config.next_item > 0:
        loss = loss + config.next_item * mean_nll(nll[:, :1], counted[:, :1])
    if config.all_action > 0:
        loss = loss + config.all_action * mean_nll(nll, counted)
    if config.bpr > 0 and b > 1:
        loss = loss + config.bpr * bpr_in_batch(head[:b].float(), model.encode_short(short, short_time).float())
    return loss


def ndcg_at_20(model: InterestModel, sequences, data: EvalData) -> float:
    """NDCG@20 of the vectors of record (train history only) on `data`'s test part."""
    users = np.zeros((data.n_users, model.config.dim), np.float32)
    users[sequences.users] = user_vectors(model, sequences)
    return evaluate(dot_product(users, item_vectors(model)), data, ks=(20,))["ndcg", 20]


def train_interest(sequences, config: InterestConfig = InterestConfig(), log: Callable | None = None,
                   val: EvalData | None = None, val_sequences=None) -> tuple[InterestModel, list[dict]]:
    """Train on `core.sequences.Sequences` (every row of `training()`: the histories, then their prefixes);
    returns the model and per-epoch history.

    `val` (an EvalData whose `val` part holds the validation interactions, e.g.
    `EvalData.from_splits(splits)`) turns on early stopping: every `eval_every`
    epochs the vectors of record are ranked against the val items (train items
    excluded), `val_ndcg_at_20` joins the history, and the best epoch's weights
    are returned. Without it, all `epochs` run and the last weights are returned.
    `val_sequences` (default `sequences`) are the histories whose vectors
    validation ranks, e.g. ones that end earlier than the train history.
    Deterministic on CPU for a seed; on CUDA it runs under bf16 autocast.
    `log(epoch, metrics)` is called after every epoch (MLflow, progress).
    """
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    dev = device()
    n_items = sequences.vocab["item"]
    model = InterestModel(sequences.vocab, sequences.full.shape[1], sequences.short.shape[1], config,
                          sequences.item_category, sequences.item_poi, sequences.n_pois).to(dev)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    items = sequences.full[..., 0]
    softmax = Softmax(n_items, np.bincount(items[items > 0], minlength=n_items).astype(np.float64), config, generator)
    tensors = [torch.from_numpy(a) for a in sequences.training()]
    lengths = (tensors[0][..., 0] > 0).sum(1).numpy()
    held_out = val.validation() if val is not None else None
    validated = sequences if val_sequences is None else val_sequences
    stopping, history = EarlyStopping(config.patience), []
    weights = [p.detach() for p in model.parameters()]          # views: they follow the optimizer's steps
    average = [w.clone() for w in weights] if config.ema > 0 else None
    for epoch in range(1, config.epochs + 1):
        model.train()
        start, total, seen = time.perf_counter(), 0.0, 0
        for batch in _batches(lengths, config.batch_size, generator):
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
                loss = _step_loss(model, [t[batch].to(dev) for t in tensors], softmax)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if average is not None:
                torch._foreach_lerp_(average, weights, 1 - config.ema)
            total, seen = total + loss.item() * len(batch), seen + len(batch)
        seconds = time.perf_counter() - start
        metrics = {"epoch": epoch, "loss": total / max(seen, 1), "samples_per_s": seen / seconds,
                   "epoch_s": seconds, **model.moe.end_epoch()}
        if held_out is not None and (epoch % config.eval_every == 0 or epoch == config.epochs):
            with _averaged(weights, average):
                metrics["val_ndcg_at_20"] = ndcg_at_20(model, validated, held_out)
                stopping.observe(metrics["val_ndcg_at_20"], model.state_dict)
        if stopping.record(history, epoch, metrics, log):
            break
    if average is not None and stopping.state is None:
        torch._foreach_copy_(weights, average)
    stopping.restore(model)
    model.eval()
    return model, history


@contextmanager
def _averaged(weights: list[torch.Tensor], average: list[torch.Tensor] | None):
    """Inside: `weights` (the model's) hold the average (when there is one); after: their own values again."""
    if average is None:
        yield
        return
    own = [w.clone() for w in weights]
    torch._foreach_copy_(weights, average)
    try:
        yield
    finally:
        torch._foreach_copy_(weights, own)


@torch.no_grad()
def user_vectors(model: InterestModel, sequences, batch_size: int = 512) -> np.ndarray:
    """The vector of record: the long tower's [CLS] after the last `long_len` train behaviours, through the MoE."""
    model.eval()
    dev = next(model.parameters()).device
    order = np.argsort((sequences.full[..., 0] > 0).sum(1), kind="stable")    # similar lengths trim best
    out = np.zeros((len(order), model.config.dim), np.float32)
    for i in range(0, len(order), batch_size):
        rows = order[i:i + batch_size]
        full, times = trim_padding(torch.from_numpy(sequences.full[rows]).to(dev),
                                   torch.from_numpy(sequences.full_time[rows]).to(dev))
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
            out[rows] = model.encode(full, times).float().cpu().numpy()
    return out


@torch.no_grad()
def item_vectors(model: InterestModel) -> np.ndarray:
    """The item embedding table [n_items, dim] (id + category + POI rows); row 0 is the padding (zeros)."""
    return model.item_vectors().float().cpu().numpy()


def save(model: InterestModel, folder: str | Path) -> Path:
    """Weights and everything needed to rebuild the model, in `folder` (what MLflow stores)."""
    return weights.write(model, folder, {
        "config": asdict(model.config), "vocab": model.embed.vocab,
        "long_len": model.long_len, "short_len": model.short_len, "n_pois": model.embed.poi.num_embeddings})


def load(folder: str | Path) -> InterestModel:
    """The model `save` wrote, on the current device, in eval mode (item attributes come with the weights)."""
    meta, state = weights.read(folder)
    known = {f.name for f in fields(InterestConfig)}
    config = InterestConfig(**{k: v for k, v in meta["config"].items() if k in known})
    model = InterestModel(meta["vocab"], meta["long_len"], meta["short_len"], config, n_pois=meta.get("n_pois", 1))
    model.load_state_dict(state)
    return model.to(device()).eval()


def parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())

