"""Swing as the formula reads: dicts of sets and loops. Slow, obviously right."""
from itertools import combinations
from math import sqrt

import numpy as np


def swing_reference(rows: dict[int, set[int]], alpha: float = 1.0,
                    user_weight: bool = False) -> dict[tuple[int, int], float]:
    """rows: user -> set of items. Returns {(i, j): sim} for i != j with sim > 0, both orders; each sim adds
    its pair weights in (u, v) order from 0.0."""
    users_of: dict[int, set[int]] = {}
    for u, items in rows.items():
        for i in items:
            users_of.setdefault(i, set()).add(u)
    weight = {u: (1 / sqrt(len(items)) if user_weight else 1.0) for u, items in rows.items()}
    sim: dict[tuple[int, int], float] = {}
    for i in sorted(users_of):
        for j in sorted(users_of):
            if i == j:
                continue
            common = sorted(users_of[i] & users_of[j])
            total = 0.0
            for u, v in combinations(common, 2):
                total += weight[u] * weight[v] / (alpha + len(rows[u] & rows[v]))
            if total > 0:
                sim[i, j] = total
    return sim


def rows_of(matrix) -> dict[int, set[int]]:
    m = matrix.tocsr()
    return {u: set(m.indices[m.indptr[u]:m.indptr[u + 1]].tolist()) for u in range(m.shape[0])
            if m.indptr[u + 1] > m.indptr[u]}


def work_count(rows: dict[int, set[int]]) -> int:
    return sum(len(rows[u] & rows[v]) ** 2 for u, v in combinations(sorted(rows), 2))


def random_matrix(seed: int, users: int = 40, items: int = 30, density: float = 0.15):
    import scipy.sparse as sp

    rng = np.random.default_rng(seed)
    dense = rng.random((users, items)) < density * rng.uniform(0.2, 2.0, (users, 1))
    return sp.csr_matrix(dense.astype(np.float64))
