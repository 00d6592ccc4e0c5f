"""Item-kNN recommenders: a sparse item-item similarity (Swing), or item vectors from the user's recent items."""
from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from kwai_assets.core.evaluation import EvalData, Scorer
from kwai_assets.core.split import history_rows
from kwai_assets.core.vectors import dot_product, unit_rows, vector_matrix

RECENT_ITEMS = 10      # the user's last train items an i2i recommender starts from (the candidates asset's default)


def similarity_matrix(pairs: pd.DataFrame, n_items: int) -> sp.csr_matrix:
    """(src, dst, score) rows -> n_items x n_items CSR."""
    return sp.csr_matrix((pairs["score"].to_numpy(np.float32), (pairs["src"], pairs["dst"])), shape=(n_items, n_items))


def item_knn(data: EvalData, item_positive_pairs: pd.DataFrame) -> Scorer:
    """score(u, j) = sum over the user's train items i of sim(i, j)."""
    sim = similarity_matrix(item_positive_pairs, data.n_items)
    history = data.train.astype(np.float32)
    return lambda users: torch.from_numpy((history[users] @ sim).toarray())


def recent_items(splits: pd.DataFrame, n_users: int, n_items: int, recent: int) -> sp.csr_matrix:
    """users x items, 1 for each of the user's last `recent` distinct train items (by time)."""
    train = history_rows(splits)
    last = train.drop_duplicates(["user_idx", "item_idx"], keep="last")
    last = last.groupby("user_idx", sort=False).tail(recent)
    return sp.csr_matrix((np.ones(len(last), np.float32), (last["user_idx"], last["item_idx"])),
                         shape=(n_users, n_items))


def recent_query(recent: sp.csr_matrix, item_vectors: np.ndarray) -> np.ndarray:
    """[n_users, dim] the mean unit vector of each user's recent items (zero for a user with none): an i2i
    query that an inner-product index over unit item vectors answers by summed cosine."""
    return unit_rows(np.asarray(recent @ unit_rows(item_vectors), dtype=np.float32))


def recent_item_knn(data: EvalData, item2vec: pd.DataFrame, splits: pd.DataFrame) -> Scorer:
    """score(u, j) = cosine between item j and the mean unit vector of the user's last RECENT_ITEMS train items
    (item vectors from `item2vec`; an item without a vector scores 0)."""
    items = vector_matrix(item2vec, "item_idx", data.n_items)
    recent = recent_items(splits, data.n_users, data.n_items, RECENT_ITEMS)
    return dot_product(recent_query(recent, items), unit_rows(items))
