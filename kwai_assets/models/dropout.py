"""Dropout whose mask comes from `torch.rand`.

Same function as `nn.Dropout` (each element zeroed with probability p, the
rest scaled by 1 / (1 - p), the identity in eval mode). On a CPU
`nn.Dropout`'s `bernoulli_` draws its mask about three times slower than
`rand` does: 12.6 ms against 3.1 ms forward and backward for a [128, 110, 64]
tensor on 2 threads, 12% of the interest model's epoch.
"""
from __future__ import annotations

import torch
from torch import nn


class Dropout(nn.Module):
    def __init__(self, p: float):
        super().__init__()
        if not 0 <= p < 1:
            raise ValueError(f"dropout must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        keep = torch.rand(x.shape, device=x.device).ge_(self.p).mul_(1 / (1 - self.p))
        return (x * keep).to(x.dtype)       # the scale in float32: 1 / 0.6 in bf16 would be 0.16% short

    def extra_repr(self) -> str:
        return f"p={self.p}"
