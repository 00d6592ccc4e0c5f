"""Item-kNN recommenders on top of a sparse item-item similarity."""
from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from kwai_assets.core.evaluation import EvalData, Scorer


def similarity_matrix(pairs: pd.DataFrame, n_items: int) -> sp.csr_matrix:
    """(src, dst, score) rows -> n_items x n_items CSR."""
    return sp.csr_matrix((pairs["score"].to_numpy(np.float32), (pairs["src"], pairs["dst"])), shape=(n_items, n_items))


def item_knn(data: EvalData, item_positive_pairs: pd.DataFrame) -> Scorer:
    """score(u, j) = sum over the user's train items i of sim(i, j)."""
    sim = similarity_matrix(item_positive_pairs, data.n_items)
    history = data.train.astype(np.float32)
    return lambda users: torch.from_numpy((history[users] @ sim).toarray())
