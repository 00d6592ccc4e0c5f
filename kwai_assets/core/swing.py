"""Exact Swing similarity (Yang et al., "Large Scale Product Graph Construction
for Recommendation in E-commerce", 2020) with sparse algebra.

    sim(i, j) = sum over unordered user pairs {u, v}, u != v, who both touched i and j
                of  w_u * w_v / (alpha + |I_u ∩ I_v|)

with w_u = 1 (default) or 1 / sqrt(|I_u|) (``user_weight``). The user side is
the same computation on the transposed matrix.

How it is computed, exactly and without a Python loop over pairs:

1. Enumerate every (user pair, shared item) triple, in blocks of users: for
   each (u, i) of the block, the users v > u of item i (a gather from the CSC
   of the matrix), each triple packed into one int64 key (pair, item). One sort
   groups the triples by pair, items ascending, which gives |I_u ∩ I_v| as the
   group size and the rows of a sparse pair x item matrix Q, in pair order:
   row (u, v) is I_u ∩ I_v, weighted by the pair's weight. Pairs that share a
   single item are dropped right after the sort: they add to no sim(i, j) with
   i != j, and on real data they are most pairs.
2. sim = Q^T diag(w) Q, folded in one run of Q's rows at a time as step 1
   makes them: sim <- [I | P^T] @ [sim; diag(w) Q_run], P the run's pattern.
   Row i of that product starts every sum from sim's value (the identity entry
   comes first) and then adds the run's pair weights in pair order: the very
   float64 additions, in the same order, as one product over all of Q, which
   is never held whole. Step 1 makes the next run in a worker thread while
   step 2 folds the current one (numpy and scipy's sparse kernels release the
   GIL). Last, the top-k of every row, the diagonal left out.

Cost and memory: step 1 touches T = sum_i |U_i| (|U_i| - 1) / 2 triples, a few
int64 passes and a sort each, and keeps those of the pairs sharing two or more
items (the non-zeros of Q); the stats' pair count and work follow from T and
the pairs kept, as a pair sharing one item is one triple. Step 2 does
W = sum over the pairs kept of |I_u ∩ I_v|^2 multiply-adds, the arithmetic of
the definition itself (twice over: scipy counts a product's non-zeros before
filling them), plus a copy of sim per run, never more than the run itself as
a run holds at least nnz(sim) entries of Q. Memory: sim (12 bytes a non-zero,
at most items x items but sparse: 5M on the heavy benchmark), the run being
folded (~55 bytes an entry of Q: `block_entries` of them, or nnz(sim) when
more), the next run being made (~10 bytes an entry), and one block of triples
(~`block_triples` x 40 bytes); nothing of size users x users is built, nor Q
whole (107M entries, ~1.8 GB, on the heavy benchmark, whose peak is 0.4-0.6 GB
above the process).

Exact means exact: the float64 sums of the definition, adding the pair weights
in (u, v) order from 0, whatever the block and run sizes; and sim(i, j) and
sim(j, i) are bit-identical (both add the same pair weights in the same order).
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import TypeVar

import numpy as np
import pandas as pd
import scipy.sparse as sp

Item = TypeVar("Item")
_KEY_BITS = 63                         # a (pair, column) key of step 1 is below 2**_KEY_BITS (int64)


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


# cap_keys: an integer hash of (row, column, seed) that Spark computes with the same bigint arithmetic
CAP_A, CAP_B, CAP_C, CAP_M = 2_654_435_761, 2_246_822_519, 3_266_489_917, 2**31


def cap_keys(rows: np.ndarray, columns: np.ndarray, seed: int) -> np.ndarray:
    """The order in which a capped column keeps its rows (smallest first): a seeded hash, the same on both engines."""
    mixed = ((rows.astype(np.int64) * CAP_A) % CAP_M) ^ (((columns.astype(np.int64) + seed) * CAP_B) % CAP_M)
    return (mixed * CAP_C) % CAP_M


def capped(a: sp.csr_matrix, drop_rows_above: int | None = None, max_rows_per_column: int | None = None,
           seed: int = 0) -> sp.csr_matrix:
    """The field's caps on Swing's user-pair work, which grows with the square of rows per column: rows with more
    than `drop_rows_above` entries are dropped, then each column keeps its `max_rows_per_column` rows of
    smallest `cap_keys` (ties: the lower row)."""
    if drop_rows_above is not None:
        a = sp.csr_matrix(a.multiply((np.diff(a.indptr) <= drop_rows_above)[:, None]))
        a.eliminate_zeros()
    if max_rows_per_column is not None:
        coo = a.tocoo()
        order = np.lexsort((coo.row, cap_keys(coo.row, coo.col, seed), coo.col))
        column = coo.col[order]
        keep = order[np.arange(len(order)) - np.searchsorted(column, column) < max_rows_per_column]
        a = sp.csr_matrix((coo.data[keep], (coo.row[keep], coo.col[keep])), shape=a.shape)
    a.sort_indices()
    return a


@dataclass
class PairRows:
    """Consecutive rows of Q (user pairs sharing two or more columns, in pair order)."""

    weight: np.ndarray         # per pair: w_u w_v / (alpha + shared)
    shared: np.ndarray         # per pair: |I_u ∩ I_v| (>= 2)
    columns: np.ndarray        # the shared columns pair after pair, ascending within a pair
    triples: int               # (pair, shared column) triples enumerated here, single-column pairs included


def pair_blocks(a: sp.csr_matrix, alpha: float = 1.0, user_weight: bool = False,
                block_triples: int = 1_000_000) -> Iterator[PairRows]:
    """Step 1: the rows of Q, one block of users u at a time (about `block_triples` triples each).

    Every (u, i) of the block gathers the rows v > u of column i as the int64 key
    ((u - lo) * n_rows + v) << bits | i; one sort groups the keys by pair with the
    columns ascending inside, and the pairs seen once (a single shared column) are
    dropped before anything else is done with them.
    """
    n_rows, n_cols = a.shape
    col_major = a.T.tocsr()                       # column -> rows, sorted
    col_degree = np.diff(col_major.indptr).astype(np.int64)
    row_weight = 1.0 / np.sqrt(np.maximum(np.diff(a.indptr), 1)) if user_weight else np.ones(n_rows)
    # rank of every entry (u, i) among the rows of column i, so that only rows v > u are gathered
    by_column = np.argsort(a.indices, kind="stable")
    rank = np.empty(a.nnz, dtype=np.int64)
    rank[by_column] = np.arange(a.nnz) - col_major.indptr[a.indices[by_column]]
    later = col_degree[a.indices] - rank - 1      # rows v > u in the entry's column
    first_later = col_major.indptr[a.indices] + rank + 1
    entry_row = np.repeat(np.arange(n_rows, dtype=np.int64), np.diff(a.indptr))
    bits = max(1, (n_cols - 1).bit_length())
    v_key = col_major.indices.astype(np.int64) << bits
    rows_per_key = max(1, (1 << (_KEY_BITS - bits)) // max(n_rows, 1))     # users per block that keep keys in range
    cost = np.diff(np.concatenate([[0], np.cumsum(later)])[a.indptr])
    bounds = sorted({*_blocks(cost, block_triples), *range(0, n_rows, rows_per_key)})
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        entries = slice(a.indptr[lo], a.indptr[hi])
        lengths = later[entries]
        ends = np.cumsum(lengths)
        total = int(ends[-1]) if len(ends) else 0
        if total == 0:
            continue
        # v << bits for the rows v > u of every entry's column (consecutive in col_major), plus the entry's part
        keys = v_key[np.repeat(first_later[entries] - ends + lengths, lengths) + np.arange(total)]
        keys += np.repeat(((entry_row[entries] - lo) * n_rows << bits) | a.indices[entries], lengths)
        keys.sort()
        pair = keys >> bits
        repeated = pair[1:] == pair[:-1]
        several = np.zeros(total, dtype=bool)     # the triples of pairs that share two or more columns
        several[1:] = repeated
        several[:-1] |= repeated
        keys = np.compress(several, keys)
        pair = keys >> bits
        first = np.ones(len(keys), dtype=bool)
        np.not_equal(pair[1:], pair[:-1], out=first[1:])
        starts = np.flatnonzero(first)
        shared = np.diff(starts, append=len(keys))
        pair = pair[starts]
        weight = row_weight[pair // n_rows + lo] * row_weight[pair % n_rows] / (alpha + shared)
        columns = np.empty(len(keys), dtype=a.indices.dtype)
        np.bitwise_and(keys, (1 << bits) - 1, out=columns, casting="unsafe")
        yield PairRows(weight, shared, columns, total)


def _blocks(cost: np.ndarray, budget: float) -> list[int]:
    """Row boundaries so that each block's summed cost is about `budget`."""
    cumulative = np.cumsum(cost)
    cuts = np.searchsorted(cumulative, np.arange(budget, cumulative[-1] if len(cost) else 0, budget))
    return sorted({0, len(cost), *cuts.tolist()})


def _runs(blocks: Iterator[PairRows], budget: Callable[[], int]) -> Iterator[list[PairRows]]:
    """Consecutive blocks grouped into runs of at least `budget()` entries of Q (the last one shorter)."""
    run, entries = [], 0
    for rows in blocks:
        run.append(rows)
        entries += len(rows.columns)
        if entries >= budget():
            yield run
            run, entries = [], 0
    if run:
        yield run


def _prefetched(items: Iterator[Item]) -> Iterator[Item]:
    """`items`, each next one computed in a worker thread while the caller works on the current one."""
    with ThreadPoolExecutor(1) as worker:
        upcoming = worker.submit(next, items, None)
        while (item := upcoming.result()) is not None:
            upcoming = worker.submit(next, items, None)
            yield item


def _fold(sim: sp.csr_matrix, run: list[PairRows]) -> sp.csr_matrix:
    """Step 2 for a run of Q's rows: sim + Q_run^T diag(w) Q_run, the same float64 sums as over all of Q.

    One sparse product [I | P^T] @ [sim; Q_run], P the pattern of Q_run: row i of the
    left operand starts with its identity entry, so every sum starts from sim's value
    (0 + x is x) and goes on adding the run's pair weights in pair order, exactly as
    if Q had been multiplied whole.
    """
    n_cols = sim.shape[1]
    shared = np.concatenate([rows.shared for rows in run])
    columns = np.concatenate([rows.columns for rows in run])
    indptr = np.concatenate([[0], np.cumsum(shared)])
    # [I; P] transposed: row i holds column i's identity entry, then the pairs sharing column i, in pair order
    identity_and_pattern = sp.csr_matrix(
        (np.ones(n_cols + len(columns)), np.concatenate([np.arange(n_cols, dtype=columns.dtype), columns]),
         np.concatenate([np.arange(n_cols + 1), n_cols + indptr[1:]])), shape=(n_cols + len(shared), n_cols))
    left = identity_and_pattern.T.tocsr()
    del identity_and_pattern
    weights = np.repeat(np.concatenate([rows.weight for rows in run]), shared)
    right = sp.csr_matrix((np.concatenate([sim.data, weights]), np.concatenate([sim.indices, columns]),
                           np.concatenate([sim.indptr, sim.nnz + indptr[1:]])),
                          shape=(n_cols + len(shared), n_cols))
    del weights, columns
    return (left @ right).tocsr()


def _top_k_rows(sim: sp.csr_matrix, top_k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The top_k entries of every row (ties: lower column first), self pairs removed."""
    src, dst, score = [], [], []
    for r in range(sim.shape[0]):
        start, end = sim.indptr[r], sim.indptr[r + 1]
        cols, vals = sim.indices[start:end], sim.data[start:end]
        keep = (cols != r) & (vals > 0)
        cols, vals = cols[keep], vals[keep]
        if len(vals) > top_k:
            threshold = np.partition(vals, len(vals) - top_k)[len(vals) - top_k]
            at_least = vals >= threshold
            cols, vals = cols[at_least], vals[at_least]
        order = np.lexsort((cols, -vals))[:top_k]
        src.append(np.full(len(order), r, dtype=np.int64))
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
    max_history: int | None = None       # cap per row, deterministic sample; None = no cap (DuckDB engine only)
    drop_rows_above: int | None = None   # drop rows (users, for item Swing) with more entries; the field uses 1000
    max_rows_per_column: int | None = None  # keep this many rows per column (users per item), a seeded hash sample
    seed: int = 0                        # of the max_history and max_rows_per_column samples


def check_params(alpha: float, top_k: int, drop_rows_above: int | None, max_rows_per_column: int | None) -> None:
    """Refuse Swing settings that make no sense, naming them (both engines call this first)."""
    if alpha <= 0:
        raise ValueError(f"alpha must be > 0, got {alpha}")
    if top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    for name, cap in (("drop_rows_above", drop_rows_above), ("max_rows_per_column", max_rows_per_column)):
        if cap is not None and cap < 2:
            raise ValueError(f"{name} must be >= 2 (or None for no cap), got {cap}")


def swing(matrix: sp.spmatrix, alpha: float = 1.0, top_k: int = 50, user_weight: bool = False,
          max_history: int | None = None, seed: int = 0, drop_rows_above: int | None = None,
          max_rows_per_column: int | None = None, block_triples: int = 1_000_000,
          block_entries: int = 4_000_000, threads: bool = True) -> tuple[pd.DataFrame, SwingStats]:
    """Swing similarity between the *columns* of `matrix` (rows = users, columns = items).

    Returns (src, dst, score) with at most `top_k` rows per src, sorted by src then
    descending score, and the stats. Pass ``matrix.T`` for user-user similarity.
    `block_triples`, `block_entries` and `threads` trade memory for speed (see the
    module docstring); the result is the same, bit for bit, whatever their values.
    """
    check_params(alpha, top_k, drop_rows_above, max_rows_per_column)
    a = capped(binarize(matrix, max_history, seed), drop_rows_above, max_rows_per_column, seed)
    n_cols = a.shape[1]
    sim = sp.csr_matrix((n_cols, n_cols))
    triples = pairs_used = nnz_q = work_used = 0
    # step 1 makes the next run of Q's rows in a thread while step 2 folds the current one (both release the GIL)
    runs = _runs(pair_blocks(a, alpha, user_weight, block_triples), lambda: max(block_entries, sim.nnz))
    for run in _prefetched(runs) if threads else runs:
        for rows in run:
            triples, nnz_q = triples + rows.triples, nnz_q + len(rows.columns)
            pairs_used, work_used = pairs_used + len(rows.shared), work_used + int((rows.shared ** 2).sum())
        sim = _fold(sim, run)
    src, dst, score = _top_k_rows(sim, top_k)
    pairs = pd.DataFrame({"src": src, "dst": dst, "score": score})
    single = triples - nnz_q                      # pairs sharing one column: one triple each
    stats = SwingStats(rows=a.shape[0], columns=n_cols, interactions=a.nnz, pairs=single + pairs_used,
                       pairs_used=pairs_used, triples=nnz_q, work=single + work_used, output_pairs=len(pairs))
    return pairs, stats


def train_matrix(splits: pd.DataFrame, sizes: dict[str, int], side: str) -> sp.csr_matrix:
    """The train matrix with `side` ("item" or "user") as columns: Swing relates columns through shared rows."""
    from kwai_assets.core.evaluation import interaction_matrix

    train = interaction_matrix(splits, "train", sizes["user"], sizes["item"])
    return train if side == "item" else train.T.tocsr()


def positive_pairs(splits: pd.DataFrame, sizes: dict[str, int], side: str,
                   params: SwingParams) -> tuple[pd.DataFrame, SwingStats]:
    """Swing between `side`s on the train split of `splits` (index sizes `sizes`, as `core.reid.index_sizes`)."""
    return swing(train_matrix(splits, sizes, side), **asdict(params))


def columns_with_neighbours(matrix: sp.spmatrix, params: SwingParams = SwingParams()) -> np.ndarray:
    """Columns i with sim(i, j) > 0 for some j under `params`' caps: two rows share i and another column."""
    seen = np.zeros(matrix.shape[1], dtype=bool)
    a = capped(binarize(matrix, params.max_history, params.seed), params.drop_rows_above, params.max_rows_per_column,
               params.seed)
    for rows in pair_blocks(a):
        seen[rows.columns] = True
    return np.flatnonzero(seen)


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
