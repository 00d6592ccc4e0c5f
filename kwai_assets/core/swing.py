"""Exact Swing similarity (Yang et al., "Large Scale Product Graph Construction
for Recommendation in E-commerce", 2020) with sparse algebra.

    sim(i, j) = sum over unordered user pairs {u, v}, u != v, who both touched i and j
                of  w_u * w_v / (alpha + |I_u ∩ I_v|)

with w_u = 1 (default) or 1 / sqrt(|I_u|) (``user_weight``). The user side is
the same computation on the transposed matrix.

How it is computed, exactly and without a Python loop over pairs:

1. Enumerate every (user pair, shared item) triple, in blocks of users: for
   each (u, i) of the block, the users v > u of item i (a gather from the CSC
   of the matrix). Sorting the pair keys groups the triples by pair, which
   gives |I_u ∩ I_v| as the group size and a sparse pair x item matrix Q whose
   row (u, v) is I_u ∩ I_v, weighted by the pair's weight. Pairs that share a
   single item are dropped there: they add to no sim(i, j) with i != j, and on
   real data they are most pairs.
2. sim = Q^T diag(w) Q without its diagonal, computed in row blocks of items
   (a sparse product each), keeping the top-k of every row before the next.

Cost and memory: step 1 touches T = sum_i |U_i| (|U_i| - 1) / 2 triples, one
block of users at a time, and keeps those of pairs sharing two or more items
(the non-zeros of Q); step 2 does W = sum over pairs of
|I_u ∩ I_v|^2 multiply-adds, the "work" reported in the stats, which is the
arithmetic of the definition itself. Memory grows with nnz(Q): about 17
bytes each (Q with its float64 weights, the int8 pattern of its transpose),
plus one block of user triples (~`block_triples` x 60 bytes) and one block of
item rows of output (~`block_outputs` x 12 bytes); nothing of size
users x users or items x items is ever dense.

Exact means exact: the same float64 sums as the definition, and sim(i, j) and
sim(j, i) are bit-identical (both add the same pair weights in the same order).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp


@dataclass
class SwingStats:
    rows: int                  # users (items for the user side)
    columns: int
    interactions: int          # non-zeros after binarising and the history cap
    pairs: int                 # unordered row pairs with at least one shared column
    pairs_used: int            # those sharing two or more (the only ones that add to a sim)
    triples: int               # (pair, shared column) triples of the pairs used = nnz(Q)
    work: int                  # sum over pairs of |I_u ∩ I_v|^2
    output_pairs: int

    def as_metadata(self) -> dict[str, int]:
        return asdict(self)


def binarize(matrix: sp.spmatrix, max_history: int | None = None, seed: int = 0) -> sp.csr_matrix:
    """0/1 CSR with sorted indices; rows longer than `max_history` keep a seeded random subset."""
    a = sp.csr_matrix(matrix, dtype=np.float64, copy=True)
    a.sum_duplicates()
    a.data[:] = 1.0
    a.eliminate_zeros()
    if max_history is not None:
        lengths = np.diff(a.indptr)
        heavy = np.flatnonzero(lengths > max_history)
        if len(heavy):
            rng = np.random.default_rng(seed)
            keep = np.ones(a.nnz, dtype=bool)
            for row in heavy:
                start, end = a.indptr[row], a.indptr[row + 1]
                drop = rng.choice(end - start, end - start - max_history, replace=False)
                keep[start + drop] = False
            rows = np.repeat(np.arange(a.shape[0]), lengths)[keep]
            a = sp.csr_matrix((a.data[keep], (rows, a.indices[keep])), shape=a.shape)
    a.sort_indices()
    return a


def _gather_segments(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenation of arange(s, s + n) for every (s, n)."""
    total = int(lengths.sum())
    offsets = np.repeat(starts - np.cumsum(lengths) + lengths, lengths)
    return offsets + np.arange(total, dtype=np.int64)


def pair_matrix(a: sp.csr_matrix, alpha: float = 1.0, user_weight: bool = False,
                block_triples: int = 5_000_000) -> tuple[sp.csr_matrix, int, int]:
    """Q: one row per unordered row pair sharing at least two columns, holding the
    pair weight on the shared columns (a pair sharing one column adds to no sim(i, j),
    i != j). Also returns the number of pairs sharing any column and the work count
    sum |I_u ∩ I_v|^2 over them."""
    n_rows, n_cols = a.shape
    col_major = a.T.tocsr()                       # column -> rows, sorted
    col_degree = np.diff(col_major.indptr).astype(np.int64)
    row_weight = 1.0 / np.sqrt(np.maximum(np.diff(a.indptr), 1)) if user_weight else np.ones(n_rows)
    # rank of every entry (u, i) among the rows of column i, so that only rows v > u are gathered
    by_column = np.argsort(a.indices, kind="stable")
    rank = np.empty(a.nnz, dtype=np.int64)
    rank[by_column] = np.arange(a.nnz) - col_major.indptr[a.indices[by_column]]
    later = col_degree[a.indices] - rank - 1      # rows v > u in the entry's column
    bounds = _blocks(np.diff(np.concatenate([[0], np.cumsum(later)])[a.indptr]), block_triples)

    columns, weights, sizes, pairs, work = [], [], [], 0, 0
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        entries = slice(a.indptr[lo], a.indptr[hi])
        lengths = later[entries]
        u = np.repeat(np.repeat(np.arange(lo, hi, dtype=np.int64), np.diff(a.indptr[lo:hi + 1])), lengths)
        first_later = col_major.indptr[a.indices[entries]] + rank[entries] + 1
        v = col_major.indices[_gather_segments(first_later, lengths)].astype(np.int64)
        keys, cols = u * n_rows + v, np.repeat(a.indices[entries], lengths)
        # a stable sort groups triples by pair and keeps each pair's columns ascending;
        # it is fast here because every column's rows arrive as a sorted run
        order = np.argsort(keys, kind="stable")
        keys, cols = keys[order], cols[order]
        first = np.ones(len(keys), dtype=bool)
        first[1:] = keys[1:] != keys[:-1]
        starts = np.flatnonzero(first)
        shared = np.diff(np.append(starts, len(keys)))
        pairs, work = pairs + len(starts), work + int((shared ** 2).sum())
        several = shared >= 2
        pair_keys, shared = keys[starts[several]], shared[several]
        weight = row_weight[pair_keys // n_rows] * row_weight[pair_keys % n_rows] / (alpha + shared)
        columns.append(cols[np.repeat(several, np.diff(np.append(starts, len(keys))))])
        weights.append(np.repeat(weight, shared))
        sizes.append(shared)
    shared = np.concatenate(sizes) if sizes else np.zeros(0, dtype=np.int64)
    indptr = np.concatenate([[0], np.cumsum(shared)])
    q = sp.csr_matrix((np.concatenate(weights) if weights else np.zeros(0),
                       np.concatenate(columns) if columns else np.zeros(0, dtype=np.int32), indptr),
                      shape=(len(shared), n_cols))
    return q, pairs, work


def _blocks(cost: np.ndarray, budget: float) -> list[int]:
    """Row boundaries so that each block's summed cost is about `budget`."""
    cumulative = np.cumsum(cost)
    cuts = np.searchsorted(cumulative, np.arange(budget, cumulative[-1] if len(cost) else 0, budget))
    return sorted({0, len(cost), *cuts.tolist()})


def _top_k_rows(block: sp.csr_matrix, first_row: int, top_k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The top_k entries of every row (ties: lower column first), self pairs removed."""
    src, dst, score = [], [], []
    for r in range(block.shape[0]):
        start, end = block.indptr[r], block.indptr[r + 1]
        cols, vals = block.indices[start:end], block.data[start:end]
        keep = (cols != first_row + r) & (vals > 0)
        cols, vals = cols[keep], vals[keep]
        if len(vals) > top_k:
            threshold = np.partition(vals, len(vals) - top_k)[len(vals) - top_k]
            at_least = vals >= threshold
            cols, vals = cols[at_least], vals[at_least]
        order = np.lexsort((cols, -vals))[:top_k]
        src.append(np.full(len(order), first_row + r, dtype=np.int64))
        dst.append(cols[order].astype(np.int64))
        score.append(vals[order])
    if not src:
        return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0)
    return np.concatenate(src), np.concatenate(dst), np.concatenate(score)


@dataclass(frozen=True)
class SwingParams:
    """The tunables of `swing` (the asset's run config is derived from this)."""

    alpha: float = 1.0                   # smoothing of 1 / (alpha + |I_u ∩ I_v|)
    top_k: int = 50                      # neighbours kept per src
    user_weight: bool = False            # multiply pair weights by 1/sqrt(|I_u| |I_v|)
    max_history: int | None = None       # cap per row, deterministic sample; None = no cap
    seed: int = 0                        # of the max_history sample


def swing(matrix: sp.spmatrix, alpha: float = 1.0, top_k: int = 50, user_weight: bool = False,
          max_history: int | None = None, seed: int = 0, block_triples: int = 5_000_000,
          block_outputs: int = 20_000_000) -> tuple[pd.DataFrame, SwingStats]:
    """Swing similarity between the *columns* of `matrix` (rows = users, columns = items).

    Returns (src, dst, score) with at most `top_k` rows per src, sorted by src then
    descending score, and the stats. Pass ``matrix.T`` for user-user similarity.
    """
    if alpha <= 0:
        raise ValueError(f"alpha must be > 0, got {alpha}")
    if top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    a = binarize(matrix, max_history, seed)
    q, n_pairs, work = pair_matrix(a, alpha, user_weight, block_triples)
    # the pattern of q^T (int8: the weights live in q), sorted because q's rows are in pair order
    q_t = sp.csr_matrix((np.ones(q.nnz, dtype=np.int8), q.indices, q.indptr), shape=q.shape).T.tocsr()
    n_cols = a.shape[1]
    rows_per_block = max(1, int(block_outputs // max(n_cols, 1)))
    src, dst, score = [], [], []
    for lo in range(0, n_cols, rows_per_block):
        block = (q_t[lo:lo + rows_per_block] @ q).tocsr()
        s, d, v = _top_k_rows(block, lo, top_k)
        src.append(s), dst.append(d), score.append(v)
    pairs = pd.DataFrame({"src": np.concatenate(src), "dst": np.concatenate(dst), "score": np.concatenate(score)})
    stats = SwingStats(rows=a.shape[0], columns=n_cols, interactions=a.nnz, pairs=n_pairs, pairs_used=q.shape[0],
                       triples=q.nnz,
                       work=work, output_pairs=len(pairs))
    return pairs, stats


def columns_with_neighbours(matrix: sp.spmatrix, max_history: int | None = None, seed: int = 0) -> np.ndarray:
    """Columns i with sim(i, j) > 0 for some j: two rows share i and at least one other column."""
    q, _, _ = pair_matrix(binarize(matrix, max_history, seed))
    return np.unique(q.indices)


def pair_problems(pairs: pd.DataFrame, top_k: int, expected_src: np.ndarray) -> list[str]:
    """What is wrong with Swing pairs: self pairs, scores <= 0, more than top_k per src, sim(i,j) != sim(j,i)
    where both directions were kept, and srcs with co-occurring neighbours (`expected_src`) missing."""
    problems = []
    if (self_pairs := int((pairs["src"] == pairs["dst"]).sum())):
        problems.append(f"{self_pairs} self pairs")
    if (not_positive := int((pairs["score"] <= 0).sum())):
        problems.append(f"{not_positive} scores <= 0")
    if (over := int((pairs.groupby("src").size() > top_k).sum())):
        problems.append(f"{over} srcs with more than top_k={top_k} pairs")
    both = pairs.merge(pairs, left_on=["src", "dst"], right_on=["dst", "src"], suffixes=("", "_back"))
    if (asymmetric := int((both["score"] != both["score_back"]).sum())):
        problems.append(f"{asymmetric} of {len(both)} two-way pairs with sim(i,j) != sim(j,i)")
    missing = np.setdiff1d(expected_src, pairs["src"].to_numpy())
    if len(missing):
        problems.append(f"{len(missing)} of {len(expected_src)} srcs with co-occurring neighbours have no pairs "
                        f"(e.g. {missing[:5].tolist()})")
    return problems
