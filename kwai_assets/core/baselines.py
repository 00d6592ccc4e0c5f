"""Reference recommenders every model must beat."""
from __future__ import annotations

import numpy as np
import torch

from kwai_assets.core.evaluation import EvalData, Scorer


def popularity(data: EvalData) -> Scorer:
    """Score = number of train users of the item; the same ranking for everyone."""
    counts = torch.from_numpy(np.asarray(data.train.sum(axis=0), dtype=np.float32).ravel())
    return lambda users: counts.expand(len(users), -1)


def random_scores(data: EvalData, seed: int = 0) -> Scorer:
    """Uniform random scores: the floor (expected Recall@K ~ K / n_candidates)."""
    generator = torch.Generator().manual_seed(seed)
    return lambda users: torch.rand(len(users), data.n_items, generator=generator)
