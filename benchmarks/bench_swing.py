"""Exact Swing (item side, top-50) on synthetic presets and MovieLens-100k, against
a plain-Python loop over user pairs (the research notebook's method) run on a
subset of users and extrapolated by its operation count: one set intersection
per user pair plus one update per unit of work (sum |I_u ∩ I_v|^2).

Presets: the `SyntheticSource` ones (`medium`, `large`: their train split after
k-core 10) and `heavy`, a heavy-tailed users x items matrix built directly
(`heavy_matrix`).

Usage: python benchmarks/bench_swing.py [--presets heavy,medium,large] [--ml100k DIR]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from collections import defaultdict
from itertools import combinations
from pathlib import Path

import numpy as np
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).parent))
from common import measured, table  # noqa: E402

from kwai_assets.core.evaluation import EvalData  # noqa: E402
from kwai_assets.core.pipeline import prepared  # noqa: E402
from kwai_assets.core.swing import binarize, pair_blocks, swing  # noqa: E402
from kwai_assets.sources import MovieLensSource, SyntheticSource  # noqa: E402


def train_matrix(source) -> sp.csr_matrix:
    """Source -> clean (k=10) -> index space -> per-user chronological train split."""
    return EvalData.from_splits(prepared(source)[0]).train


def _zipf_cdf(n: int, exponent: float) -> np.ndarray:
    cdf = np.cumsum(np.arange(1, n + 1, dtype=np.float64) ** -exponent)
    return cdf / cdf[-1]


def heavy_matrix(users: int = 50_000, items: int = 20_000, clusters: int = 200, seed: int = 7) -> sp.csr_matrix:
    """A heavy-tailed synthetic users x items 0/1 CSR, about 1M interactions.

    Lengths: 10 + Lomax (Pareto II, shape 2, scale 10.8), capped at 300: median 14,
    mean 20. Every user has 1-3 favourite clusters (`clusters` blocks of consecutive
    item ids), drawn Zipf(0.9) over the clusters. Each pick comes with probability
    0.8 from one of them (uniform inside) and otherwise from the global popularity:
    Zipf over a random ranking of the items, exponent 0.95 (0.9 gives the top item
    20% of the users, 0.95 about 25%). Users draw until they hold their length in
    distinct items (duplicates collapse), so the lengths are exact and the total
    lands near 1M.
    """
    rng = np.random.default_rng(seed)
    lengths = np.minimum(10 + np.floor(rng.pareto(2.0, users) * 10.8), 300).astype(np.int64)
    popularity = _zipf_cdf(items, 0.95)
    by_rank = rng.permutation(items)
    size = items // clusters
    n_favourites = rng.integers(1, 4, users)
    favourites = np.minimum(np.searchsorted(_zipf_cdf(clusters, 0.9), rng.random((users, 3))), clusters - 1)
    draws, short, factor = np.zeros(0, dtype=np.int64), np.arange(users), 2
    while len(short):                   # users with fewer distinct items than their length draw again
        user = np.repeat(short, factor * lengths[short])
        n = len(user)
        favourite = favourites[user, (rng.random(n) * n_favourites[user]).astype(np.int64)]
        item = np.where(rng.random(n) < 0.2,
                        by_rank[np.minimum(np.searchsorted(popularity, rng.random(n)), items - 1)],
                        favourite * size + rng.integers(0, size, n))
        draws = np.concatenate([draws, user * items + item])          # in draw order
        keys = np.unique(draws)
        short = np.flatnonzero(np.bincount(keys // items, minlength=users) < lengths)
        factor *= 2
    keys, first = np.unique(draws, return_index=True)
    order = np.lexsort((first, keys // items))                         # by user, then in draw order
    user = keys[order] // items
    keep = np.arange(len(user)) - np.searchsorted(user, user) < lengths[user]   # each user's first `length`
    keys = np.sort(keys[order][keep])
    return sp.csr_matrix((np.ones(len(keys)), (keys // items, keys % items)), shape=(users, items))


def notebook_swing(a: sp.csr_matrix, alpha: float = 1.0) -> tuple[float, int]:
    """Loops over user pairs that share an item, as the notebook did. Returns (seconds, operations)."""
    rows = {u: set(a.indices[a.indptr[u]:a.indptr[u + 1]].tolist()) for u in range(a.shape[0])}
    users_of = defaultdict(list)
    for u, items in rows.items():
        for i in items:
            users_of[i].append(u)
    start, work = time.perf_counter(), 0
    pairs = {(u, v) for users in users_of.values() for u, v in combinations(users, 2)}
    sim = defaultdict(float)
    for u, v in pairs:
        common = rows[u] & rows[v]
        weight = 1.0 / (alpha + len(common))
        work += len(common) ** 2
        for i in common:
            for j in common:
                if i != j:
                    sim[i, j] += weight
    return time.perf_counter() - start, len(pairs) + work


def subset_with_work(a: sp.csr_matrix, target: int) -> sp.csr_matrix:
    """The first n users, n doubled until the subset's work count passes `target`."""
    n = 256
    while True:
        sub = a[:n]
        if swing(sub, top_k=1)[1].work >= target or n >= a.shape[0]:
            return sub
        n *= 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--presets", default="heavy,medium,large")
    parser.add_argument("--ml100k", default=os.environ.get("KWAI_ML100K", str(Path.home() / ".cache/kwai/ml-100k")))
    parser.add_argument("--naive-work", type=int, default=3_000_000, help="work count of the naive subset")
    args = parser.parse_args()
    data = {f"synthetic {p}": (heavy_matrix if p == "heavy" else lambda p=p: train_matrix(SyntheticSource(p)))
            for p in args.presets.split(",") if p}
    if (Path(args.ml100k) / "u.data").exists():
        data["ml-100k"] = lambda: train_matrix(MovieLensSource(args.ml100k))
    rows = []
    for name, make in data.items():
        a = binarize(make())
        lengths, popularity = a.getnnz(axis=1), a.getnnz(axis=0)
        print(f"{name}: {(lengths > 0).sum():,} users, {(popularity > 0).sum():,} items, {a.nnz:,} interactions, "
              f"median length {np.median(lengths[lengths > 0]):g} (max {lengths.max()}), "
              f"top item on {popularity.max() / max((lengths > 0).sum(), 1):.1%} of users", flush=True)
        with measured() as m:
            pairs, stats = swing(a, alpha=1.0, top_k=50)
        with measured() as step1:         # step 1 alone (the rows of Q, dropped as they come), as warm as inside swing
            for _ in pair_blocks(a):
                pass
        sub = subset_with_work(a, args.naive_work)
        naive_s, naive_ops = notebook_swing(sub)
        extrapolated = naive_s * (stats.pairs + stats.work) / max(naive_ops, 1)
        rows.append([name, stats.interactions, int((lengths > 0).sum()), int((popularity > 0).sum()),
                     f"{np.median(lengths[lengths > 0]):g}", f"{popularity.max() / max((lengths > 0).sum(), 1):.1%}",
                     f"{stats.pairs:.3g}", f"{stats.work:.3g}", round(m.seconds, 2), round(step1.seconds, 2),
                     f"{m.peak_rss_gb:.2f} ({m.start_rss_gb:.2f})",
                     f"{naive_s:.1f} s on {sub.shape[0]:,} users", round(extrapolated, 1),
                     f"{extrapolated / m.seconds:,.0f}x"])
    print()
    print(table(["data", "interactions", "users", "items", "median length", "top item's users",
                 "user pairs", "work Σ shared²",
                 "swing s", "step 1 (pairs) s", "peak RSS GB (before)", "notebook loop (subset)",
                 "notebook extrapolated s",
                 "speed-up"], rows))


if __name__ == "__main__":
    main()
