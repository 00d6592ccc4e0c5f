"""A DeepSeek-style mixture-of-experts layer.

One shared expert that sees every input plus `n_routed` routed experts of
which each input uses `top_k`; experts are LayerNorm -> SwiGLU -> dropout; the
gate is a sigmoid (DeepSeek-V3), and the selected experts' gate values,
normalised to sum to one, weight their outputs.

Load balancing, chosen by `balance`:
- "bias": DeepSeek-V3's auxiliary-loss-free balancing. A per-expert bias is
  added to the gate scores for *selection only*; after every training step it
  moves by `bias_rate` towards the experts that were under-used.
- "share": the research notebook's rule. Selection scores are divided by each
  expert's share of activations in the previous epoch (times n_routed, so an
  evenly used expert keeps its score); call `end_epoch()` after each epoch.
- "none": plain top-k of the gate.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from kwai_assets.models.dropout import Dropout

BALANCING = ("bias", "share", "none")


class SwiGLUExpert(nn.Module):
    def __init__(self, dim: int, hidden: int, dropout: float = 0.0):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.gate = nn.Linear(dim, hidden, bias=False)
        self.up = nn.Linear(dim, hidden, bias=False)
        self.down = nn.Linear(hidden, dim, bias=False)
        self.dropout = Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(x)
        return self.dropout(self.down(F.silu(self.gate(h)) * self.up(h)))


class MoE(nn.Module):
    def __init__(self, dim: int, n_routed: int = 16, top_k: int = 2, hidden: int | None = None,
                 dropout: float = 0.0, balance: str = "bias", bias_rate: float = 1e-3):
        super().__init__()
        if balance not in BALANCING:
            raise ValueError(f"balance must be one of {BALANCING}, got {balance!r}")
        if not 1 <= top_k <= n_routed:
            raise ValueError(f"top_k must be in [1, n_routed={n_routed}], got {top_k}")
        hidden = hidden or 2 * dim
        self.n_routed, self.top_k, self.balance, self.bias_rate = n_routed, top_k, balance, bias_rate
        self.shared = SwiGLUExpert(dim, hidden, dropout)
        self.experts = nn.ModuleList(SwiGLUExpert(dim, hidden, dropout) for _ in range(n_routed))
        self.router = nn.Linear(dim, n_routed, bias=False)
        self.register_buffer("route_bias", torch.zeros(n_routed))
        self.register_buffer("previous_share", torch.full((n_routed,), 1.0 / n_routed))
        self.register_buffer("epoch_load", torch.zeros(n_routed))
        self.last_load = torch.zeros(n_routed)

    def route(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(expert index, weight), each [N, top_k], for inputs x [N, dim]."""
        scores = torch.sigmoid(self.router(x).float())
        if self.balance == "bias":
            selection = scores + self.route_bias
        elif self.balance == "share":
            selection = scores / (self.previous_share * self.n_routed).clamp(min=1e-6)
        else:
            selection = scores
        chosen = torch.topk(selection, self.top_k, dim=-1).indices
        weights = scores.gather(-1, chosen)
        return chosen, weights / weights.sum(-1, keepdim=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        flat = x.reshape(-1, shape[-1])
        chosen, weights = self.route(flat)
        out = flat + self.shared(flat)
        routed = torch.zeros_like(flat)
        for e, expert in enumerate(self.experts):
            rows, slot = torch.nonzero(chosen == e, as_tuple=True)
            if len(rows):
                routed.index_add_(0, rows, expert(flat[rows]) * weights[rows, slot, None].to(flat.dtype))
        load = torch.bincount(chosen.reshape(-1), minlength=self.n_routed).float().detach()
        self.last_load = load.cpu()
        if self.training:
            self.epoch_load += load
            if self.balance == "bias":
                self.route_bias += self.bias_rate * torch.sign(load.mean() - load)
        return (out + routed).reshape(shape)

    def end_epoch(self) -> dict[str, float]:
        """Epoch load statistics; the "share" rule takes this epoch's shares for the next."""
        stats = load_stats(self.epoch_load)
        if self.epoch_load.sum() > 0 and self.balance == "share":
            self.previous_share.copy_(self.epoch_load / self.epoch_load.sum())
        self.epoch_load.zero_()
        return stats


def load_stats(load: torch.Tensor) -> dict[str, float]:
    """max/mean activations (1 = perfectly even) and normalised entropy (1 = even, 0 = one expert)."""
    total = float(load.sum())
    if total == 0:
        return {"load_max_over_mean": 0.0, "load_entropy": 0.0}
    share = load / total
    entropy = float(-(share[share > 0] * share[share > 0].log()).sum()) / math.log(len(load))
    return {"load_max_over_mean": float(load.max() / load.mean()), "load_entropy": entropy}
