"""Recommenders that score by dot product between user and item vectors."""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from kwai_assets.core.evaluation import EvalData, Recommender, Scorer


def vector_matrix(df: pd.DataFrame, key: str, n: int) -> np.ndarray:
    """(key, vector) rows -> dense [n, dim] float32; rows absent from `df` stay zero."""
    dim = len(df["vector"].iloc[0]) if len(df) else 0
    out = np.zeros((n, dim), np.float32)
    if len(df):
        out[df[key].to_numpy()] = np.stack(df["vector"].to_numpy())
    return out


def dot_product(users: np.ndarray, items: np.ndarray) -> Scorer:
    """score(u, i) = <users[u], items[i]> (a zero user vector ranks nothing above anything)."""
    u, i = torch.from_numpy(users), torch.from_numpy(items)
    return lambda batch: u[torch.from_numpy(np.asarray(batch))] @ i.T


def unit_rows(matrix: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length; zero rows stay zero."""
    norm = np.linalg.norm(matrix, axis=1, keepdims=True)
    return (matrix / np.where(norm > 0, norm, 1.0)).astype(np.float32)


def vector_recommender(name: str, user_asset: str, item_asset: str, cosine: bool = False) -> Recommender:
    """Register a model by its two vector assets, (user_idx, vector) and (item_idx, vector)."""
    def build(data: EvalData, **inputs: pd.DataFrame) -> Scorer:
        users = vector_matrix(inputs[user_asset], "user_idx", data.n_users)
        items = vector_matrix(inputs[item_asset], "item_idx", data.n_items)
        return dot_product(unit_rows(users), unit_rows(items)) if cosine else dot_product(users, items)
    return Recommender(name, build, (user_asset, item_asset))


def vector_problems(df: pd.DataFrame, key: str, expected: np.ndarray, dim: int | None = None) -> list[str]:
    """What is wrong with a (key, vector) table that should hold one vector per `expected` index."""
    problems = []
    missing = np.setdiff1d(expected, df[key].to_numpy())
    if len(missing):
        problems.append(f"{len(missing)} {key} values without a vector (e.g. {missing[:5].tolist()})")
    if df[key].duplicated().any():
        problems.append(f"{int(df[key].duplicated().sum())} duplicate {key} values")
    if not len(df):
        return problems
    lengths = df["vector"].map(len)
    if lengths.nunique() > 1 or (dim is not None and lengths.iloc[0] != dim):
        problems.append(f"vector lengths {sorted(lengths.unique().tolist())}, expected {dim}")
        return problems
    matrix = np.stack(df["vector"].to_numpy())
    if not np.isfinite(matrix).all():
        problems.append(f"{int((~np.isfinite(matrix)).any(axis=1).sum())} rows with non-finite values")
    if (np.abs(matrix).sum(axis=1) == 0).any():
        problems.append(f"{int((np.abs(matrix).sum(axis=1) == 0).sum())} all-zero rows")
    return problems
