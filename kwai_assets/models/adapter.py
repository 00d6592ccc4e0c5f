"""The adapter: LLM embeddings -> a small space aligned with collaborative signal (RLMRec-style).

An encoder (LLM dim -> hidden -> d) and a decoder (d -> hidden -> LLM dim)
trained jointly with an ID-based CF model (`models.cf`) on three losses:

- alignment: InfoNCE between a user's (item's) encoded LLM embedding and the
  CF model's embedding of the same user (item), in-batch negatives; this is
  RLMRec's contrastive alignment, and what carries the LLM's knowledge into
  the CF embeddings;
- pairs: InfoNCE between the encoded LLM embeddings of Swing positive pairs
  (item-item and user-user), in-batch negatives;
- reconstruction: the decoder gives back the (unit-normalised) LLM embedding,
  so the low-dimensional code keeps the semantics.

The CF model is not trained from scratch: `train_aligned` fine-tunes a copy
of an already trained one (`cf_model`'s) jointly with a fresh adapter, with
its own short schedule (`AdapterConfig.epochs`, `lr`, `eval_every`,
`patience`) and early stopping on validation NDCG@20. Starting from trained
embeddings, the alignment needs a larger weight (0.1) than it did from
scratch (0.01) to move them; on `small` it lifts the CF model most of the
way that training both from scratch did, in about a fifth of the epochs.

The recommender of record is the jointly fine-tuned CF model's embeddings;
the encoder's outputs are the adapted embeddings. After fine-tuning, the
decoder's last layer is refit by ridge regression to the kept encoder
(`refit_decoder`), so the reconstruction belongs to the epoch that was kept.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.nn import functional as F

from kwai_assets.core.evaluation import EvalData, device
from kwai_assets.core.vectors import unit_rows, vector_matrix
from kwai_assets.models import weights
from kwai_assets.models.cf import CFConfig, LightGCN, train_cf


@dataclass(frozen=True)
class AdapterConfig:
    hidden: int = 256
    dropout: float = 0.1
    temperature: float = 0.2
    align_weight: float = 0.1       # fine-tuning on `small`: best val NDCG@20 (0.01 barely moves it, 0.3 overshoots)
    pair_weight: float = 0.1
    reconstruction_weight: float = 1.0
    pair_batch: int = 1024          # Swing pairs per step, per side
    held_out: float = 0.1           # share of users and items never used for the adapter's losses
    epochs: int = 30                # most fine-tuning epochs (the CF model starts trained; small peaks at 11)
    lr: float = 5e-3                # fine-tuning learning rate of the CF model and the adapter
    eval_every: int = 1             # epochs between validation NDCG@20 measurements (one costs a few % of an epoch)
    patience: int = 3               # validations without improvement before stopping (the best epoch is kept)


class Adapter(nn.Module):
    """Encoder (LLM dim -> `dim`) and decoder back; carries its `AdapterConfig` (what `save` writes)."""

    def __init__(self, in_dim: int, dim: int, config: AdapterConfig = AdapterConfig()):
        super().__init__()
        self.config, self.in_dim, self.dim = config, in_dim, dim
        hidden = config.hidden
        self.encoder = nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Dropout(config.dropout),
                                     nn.Linear(hidden, dim))
        self.decoder = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, in_dim))
        # the decoder predicts the embedding standardised by the training rows' mean and spread: unit-scale
        # targets for Adam (raw unit-norm embeddings vary by ~0.02 per dimension), and at a zero last layer it
        # is exactly the mean predictor
        self.register_buffer("out_mean", torch.zeros(in_dim))
        self.register_buffer("out_scale", torch.ones(in_dim))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        code = self.encoder(x)
        return code, self.out_mean + self.out_scale * self.decoder(code)

    def standardise_output(self, rows: np.ndarray) -> None:
        """Start the decoder as the mean predictor of `rows` (its last layer zero), scaled by their spread."""
        with torch.no_grad():
            self.out_mean.copy_(torch.from_numpy(rows.mean(0)))
            self.out_scale.copy_(torch.from_numpy(rows.std(0) + 1e-6))
            self.decoder[-1].weight.zero_()
            self.decoder[-1].bias.zero_()


def info_nce(a: torch.Tensor, b: torch.Tensor, temperature: float) -> torch.Tensor:
    """Symmetric InfoNCE: row k of `a` matches row k of `b`, every other row is a negative."""
    logits = F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T / temperature
    labels = torch.arange(len(a), device=a.device)
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2


RIDGE = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0)     # the decoder refit's penalties, per row (refit_decoder)


def held_out(index: np.ndarray, share: float) -> np.ndarray:
    """Deterministic held-out mask by a multiplicative hash of the index (the same in training and checks)."""
    return ((index.astype(np.uint64) * np.uint64(2654435761)) % np.uint64(1000)) < int(round(share * 1000))


@dataclass
class AdapterInputs:
    """LLM embeddings as dense [n, llm_dim] tables by index (zero rows = no profile) and Swing pairs."""
    user_llm: np.ndarray
    item_llm: np.ndarray
    user_pairs: np.ndarray         # [P, 2] (src, dst) user indices
    item_pairs: np.ndarray

    @classmethod
    def from_frames(cls, n_users: int, n_items: int, user_llm: pd.DataFrame, item_llm: pd.DataFrame,
                    user_pairs: pd.DataFrame, item_pairs: pd.DataFrame) -> AdapterInputs:
        return cls(unit_rows(vector_matrix(user_llm, "user_idx", n_users)),
                   unit_rows(vector_matrix(item_llm, "item_idx", n_items)),
                   user_pairs[["src", "dst"]].to_numpy(np.int64), item_pairs[["src", "dst"]].to_numpy(np.int64))


def adapter_loss(adapter: Adapter, llm: torch.Tensor, target: torch.Tensor, config: AdapterConfig,
                 pairs: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """Alignment of encode(llm) with `target` (row k with row k) + reconstruction + InfoNCE of positive pairs."""
    code, rebuilt = adapter(llm)
    loss = config.align_weight * info_nce(code.float(), target.float(), config.temperature)
    loss = loss + config.reconstruction_weight * F.mse_loss(rebuilt.float(), llm)
    if pairs is not None:
        a, b = adapter.encoder(pairs[0]).float(), adapter.encoder(pairs[1]).float()
        loss = loss + config.pair_weight * info_nce(a, b, config.temperature)
    return loss


def _usable(ids: np.ndarray, llm: np.ndarray, config: AdapterConfig) -> np.ndarray:
    ids = np.unique(ids)
    return ids[~held_out(ids, config.held_out) & (np.abs(llm[ids]).sum(1) > 0)]


def _pairs(pairs: np.ndarray, llm: np.ndarray, config: AdapterConfig) -> np.ndarray:
    keep = ~held_out(pairs[:, 0], config.held_out) & ~held_out(pairs[:, 1], config.held_out)
    keep &= (np.abs(llm[pairs[:, 0]]).sum(1) > 0) & (np.abs(llm[pairs[:, 1]]).sum(1) > 0)
    return pairs[keep]


def fine_tune_config(base: LightGCN, config: AdapterConfig) -> CFConfig:
    """The base model's CF settings (model, sizes, L2, batch, seed) with the adapter's fine-tuning schedule."""
    return dataclasses.replace(base.config, epochs=config.epochs, lr=config.lr, eval_every=config.eval_every,
                               patience=config.patience)


def train_aligned(data: EvalData, inputs: AdapterInputs, base: LightGCN, config: AdapterConfig = AdapterConfig(),
                  log=None) -> tuple[LightGCN, Adapter, list[dict]]:
    """Fine-tune a copy of the trained `base` jointly with a new adapter; returns both (best validation epoch)
    and the history. `base` itself is not modified; its graph need not be attached (the copy gets `data`'s)."""
    cf = fine_tune_config(base, config)
    dev = device()
    torch.manual_seed(cf.seed)
    adapter = Adapter(inputs.user_llm.shape[1], cf.dim, config).to(dev)
    rows = np.concatenate([llm[_usable(np.arange(len(llm)), llm, config)]
                           for llm in (inputs.user_llm, inputs.item_llm)])
    adapter.standardise_output(rows)          # the decoder starts as the mean predictor of the rows it learns from
    user_llm, item_llm = torch.from_numpy(inputs.user_llm).to(dev), torch.from_numpy(inputs.item_llm).to(dev)
    user_pairs = _pairs(inputs.user_pairs, inputs.user_llm, config)
    item_pairs = _pairs(inputs.item_pairs, inputs.item_llm, config)
    rng = np.random.default_rng(cf.seed)

    def side(llm: torch.Tensor, final: torch.Tensor, ids: np.ndarray, pairs: np.ndarray) -> torch.Tensor:
        idx = torch.from_numpy(ids).to(dev)
        take = torch.from_numpy(pairs[rng.integers(0, len(pairs), min(config.pair_batch, len(pairs)))]).to(dev) \
            if len(pairs) and config.pair_weight > 0 else None
        return adapter_loss(adapter, llm[idx], final[idx], config,
                            None if take is None else (llm[take[:, 0]], llm[take[:, 1]]))

    def extra(model, user_final, item_final, u, i, j):
        users, items = _usable(u, inputs.user_llm, config), _usable(i, inputs.item_llm, config)
        return side(user_llm, user_final, users, user_pairs) + side(item_llm, item_final, items, item_pairs)

    model, history = train_cf(data, cf, extra_loss=extra, extra_modules=adapter, log=log, init=base)
    refit_decoder(adapter, rows)
    adapter.eval()
    return model, adapter, history


@torch.no_grad()
def refit_decoder(adapter: Adapter, rows: np.ndarray, ridge: tuple[float, ...] = RIDGE) -> float:
    """Refit the decoder's last layer to the kept encoder's codes of the training `rows`: ridge regression on its
    hidden features, the penalty chosen on a hashed tenth of the rows among `ridge` and the mean predictor (an
    infinite penalty); returns the chosen penalty.

    Validation NDCG chooses the encoder's epoch, and the jointly trained decoder is whatever it was then: on
    small data an epoch it has barely left its zero last layer, worse than the mean it started from."""
    stop = held_out(np.arange(len(rows)), 0.1)
    adapter.standardise_output(rows[~stop])               # zero last layer: the mean predictor
    adapter.eval()
    x = torch.from_numpy(rows).to(next(adapter.parameters()).device).float()
    hidden = adapter.decoder[:-1](adapter.encoder(x)).float()
    hidden = torch.cat([hidden, torch.ones(len(hidden), 1, device=x.device)], dim=1)    # the bias column
    target = (x - adapter.out_mean) / adapter.out_scale
    fit, check = torch.from_numpy(~stop).to(x.device), torch.from_numpy(stop).to(x.device)
    gram, cross = hidden[fit].T @ hidden[fit], hidden[fit].T @ target[fit]
    best, chosen, weights = float((target[check] ** 2).mean()), math.inf, None
    for penalty in ridge:
        solved = torch.linalg.solve(gram + penalty * len(hidden) * torch.eye(len(gram), device=x.device), cross)
        error = float(((hidden[check] @ solved - target[check]) ** 2).mean())
        if error < best:
            best, chosen, weights = error, penalty, solved
    if weights is not None:
        last = adapter.decoder[-1]
        last.weight.copy_(weights[:-1].T.to(last.weight.dtype))
        last.bias.copy_(weights[-1].to(last.bias.dtype))
    return chosen


@torch.no_grad()
def encode(adapter: Adapter, llm: np.ndarray, batch_size: int = 8192) -> np.ndarray:
    """Adapted embeddings of unit-normalised LLM embeddings."""
    dev = next(adapter.parameters()).device
    adapter.eval()
    return np.concatenate([adapter.encoder(torch.from_numpy(llm[s:s + batch_size]).to(dev)).float().cpu().numpy()
                           for s in range(0, len(llm), batch_size)]) if len(llm) else np.zeros((0, 0), np.float32)


@torch.no_grad()
def reconstruction_error(adapter: Adapter, llm: np.ndarray, mean: np.ndarray) -> tuple[float, float]:
    """(MSE of the decoder, MSE of predicting `mean`) on unit-normalised rows `llm`."""
    dev = next(adapter.parameters()).device
    x = torch.from_numpy(unit_rows(llm)).to(dev)
    rebuilt = adapter(x)[1].float()
    baseline = torch.as_tensor(mean, dtype=x.dtype, device=dev)[None].expand_as(x)
    return float(F.mse_loss(rebuilt, x)), float(F.mse_loss(baseline, x))


def reconstruction_problems(adapter: Adapter, frames: dict[str, pd.DataFrame]
                            ) -> tuple[list[str], dict[str, tuple[float, float]]]:
    """On the held-out rows of each entity's (`{entity}_idx`, vector) frame, the decoder must beat predicting the
    mean of the entity's other (training) rows.

    Returns the problems (empty = passed) and entity -> (decoder MSE, mean-predictor MSE); the held-out share
    is the one the adapter was trained with (`adapter.config.held_out`).
    """
    problems, errors = [], {}
    for entity, df in frames.items():
        out = held_out(df[f"{entity}_idx"].to_numpy(), adapter.config.held_out)
        rows = df[out]
        if not len(rows) or out.all():
            problems.append(f"no held-out {entity}s to check the decoder on")
            errors[entity] = (0.0, 0.0)
            continue
        mean = unit_rows(np.stack(df.loc[~out, "vector"].to_numpy())).mean(0)
        errors[entity] = reconstruction_error(adapter, np.stack(rows["vector"].to_numpy()), mean)
        if errors[entity][0] >= errors[entity][1]:
            problems.append(f"{entity}s: decoder MSE {errors[entity][0]:.5f} is not below the mean predictor's "
                            f"{errors[entity][1]:.5f}")
    return problems, errors


def save(adapter: Adapter, folder: str | Path) -> Path:
    """Weights and what rebuilds the adapter (its config and sizes), in `folder`."""
    return weights.write(adapter, folder, {"config": asdict(adapter.config), "in_dim": adapter.in_dim,
                                           "dim": adapter.dim})


def load(folder: str | Path) -> Adapter:
    """The adapter `save` wrote, on the current device, in eval mode; its settings are `adapter.config`."""
    meta, state = weights.read(folder)
    adapter = Adapter(meta["in_dim"], meta["dim"], AdapterConfig(**meta["config"]))
    adapter.load_state_dict(state)
    return adapter.to(device()).eval()
