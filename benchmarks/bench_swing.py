"""Exact Swing (item side, top-50) on synthetic presets and MovieLens-100k, against
a plain-Python loop over user pairs (the research notebook's method) run on a
subset of users and extrapolated by its operation count: one set intersection
per user pair plus one update per unit of work (sum |I_u ∩ I_v|^2).

Usage: python benchmarks/bench_swing.py [--presets medium,large] [--ml100k DIR]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from collections import defaultdict
from itertools import combinations
from pathlib import Path

import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).parent))
from common import measured, table  # noqa: E402

from kwai_assets.core.evaluation import EvalData  # noqa: E402
from kwai_assets.core.pipeline import prepared  # noqa: E402
from kwai_assets.core.swing import binarize, pair_matrix, swing  # noqa: E402
from kwai_assets.sources import MovieLensSource, SyntheticSource  # noqa: E402


def train_matrix(source) -> sp.csr_matrix:
    """Source -> clean (k=10) -> index space -> per-user chronological train split."""
    return EvalData.from_splits(prepared(source)[0]).train


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
    parser.add_argument("--presets", default="medium,large")
    parser.add_argument("--ml100k", default=os.environ.get("KWAI_ML100K", str(Path.home() / ".cache/kwai/ml-100k")))
    parser.add_argument("--naive-work", type=int, default=3_000_000, help="work count of the naive subset")
    args = parser.parse_args()
    data = {f"synthetic {p}": (lambda p=p: SyntheticSource(p)) for p in args.presets.split(",") if p}
    if (Path(args.ml100k) / "u.data").exists():
        data["ml-100k"] = lambda: MovieLensSource(args.ml100k)
    rows = []
    for name, make in data.items():
        a = binarize(train_matrix(make()))
        with measured() as m:
            pairs, stats = swing(a, alpha=1.0, top_k=50)
        with measured() as step1:         # step 1 alone, as warm as inside swing
            pair_matrix(a)
        sub = subset_with_work(a, args.naive_work)
        naive_s, naive_ops = notebook_swing(sub)
        extrapolated = naive_s * (stats.pairs + stats.work) / max(naive_ops, 1)
        rows.append([name, stats.interactions, int((a.getnnz(axis=1) > 0).sum()), int((a.getnnz(axis=0) > 0).sum()),
                     f"{stats.pairs:.3g}", f"{stats.work:.3g}", round(m.seconds, 2), round(step1.seconds, 2),
                     f"{m.peak_rss_gb:.2f} ({m.start_rss_gb:.2f})",
                     f"{naive_s:.1f} s on {sub.shape[0]:,} users", round(extrapolated, 1),
                     f"{extrapolated / m.seconds:,.0f}x"])
    print()
    print(table(["data (train split)", "interactions", "users", "items", "user pairs", "work Σ shared²",
                 "swing s", "step 1 (pairs) s", "peak RSS GB (before)", "notebook loop (subset)",
                 "notebook extrapolated s",
                 "speed-up"], rows))


if __name__ == "__main__":
    main()
