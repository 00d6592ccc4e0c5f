"""DeepWalk random walks over a weighted item graph, every walker advanced at once.

The graph is the item Swing graph (`item_positive_pairs`), made undirected
with the larger of sim(i, j) and sim(j, i) where top-k kept only one. Why
Swing and not consecutive clicks: the Swing weights already discount the
pairs that popular items and heavy users create (the 1 / (alpha + |I_u ∩ I_v|)
term), the asset exists, and the data has no sessions to cut clicks into.

A step is one vectorised draw for all walkers: each walker's next node is
found by `searchsorted` in the cumulative edge weights of the CSR, inside its
node's row, so a walk of length L costs L numpy calls whatever the number of
walks (no Python loop per walker or per step of a walker).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp


def item_graph(pairs: pd.DataFrame, n_items: int) -> sp.csr_matrix:
    """(src, dst, score) rows -> a symmetric n_items x n_items CSR with weight max(sim(i,j), sim(j,i))."""
    directed = sp.csr_matrix((pairs["score"].to_numpy(np.float64), (pairs["src"], pairs["dst"])),
                             shape=(n_items, n_items))
    graph = directed.maximum(directed.T).tocsr()
    graph.eliminate_zeros()
    graph.sort_indices()
    return graph


def random_walks(graph: sp.csr_matrix, walks_per_node: int = 10, length: int = 40, seed: int = 0) -> np.ndarray:
    """[walks, length] node ids, `walks_per_node` walks from every node that has an edge, each step to a
    neighbour with probability proportional to the edge weight. Rows are grouped in rounds (every start node
    once per round, in a seeded random order), as DeepWalk does."""
    if graph.shape[0] != graph.shape[1]:
        raise ValueError(f"the walk graph must be square, got {graph.shape}")
    if (graph.data < 0).any() or not np.isfinite(graph.data).all():
        raise ValueError("the walk graph's weights must be finite and >= 0")
    rng = np.random.default_rng(seed)
    degree = np.diff(graph.indptr)
    weight = np.asarray(graph.sum(axis=1)).ravel()
    nodes = np.flatnonzero((degree > 0) & (weight > 0))
    if (weight[graph.indices[graph.data > 0]] <= 0).any():
        raise ValueError("the walk graph has dead ends (a node reached by an edge has no edge out); pass a "
                         "symmetric graph (item_graph)")
    starts = np.concatenate([rng.permutation(nodes) for _ in range(walks_per_node)]) if len(nodes) else nodes
    walks = np.empty((len(starts), length), dtype=np.int64)
    if not len(starts):
        return walks
    cumulative = np.cumsum(graph.data)
    before = np.r_[0.0, cumulative][graph.indptr[:-1]]          # the cumulative weight before each row
    walks[:, 0] = current = starts
    for step in range(1, length):
        target = before[current] + rng.random(len(current)) * weight[current]
        at = np.searchsorted(cumulative, target, side="right")
        at = np.clip(at, graph.indptr[current], graph.indptr[current + 1] - 1)   # float edges at a row's ends
        walks[:, step] = current = graph.indices[at]
    return walks


def item_walks(pairs: pd.DataFrame, n_items: int, walks_per_node: int = 10, length: int = 40,
               seed: int = 0) -> np.ndarray:
    """DeepWalk walks over the item Swing graph of `pairs` (`item_graph`, then `random_walks`)."""
    return random_walks(item_graph(pairs, n_items), walks_per_node, length, seed)
