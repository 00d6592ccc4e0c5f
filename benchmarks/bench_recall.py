"""Recall's building blocks at scale: DeepWalk walks and Word2Vec on the `large` preset, and the faiss HNSW index
against exact search at 100k and 1M items.

- Walks: `core.walks.random_walks` over the item Swing graph of `large` (train split, top-50), steps/s.
- Word2Vec: gensim skip-gram on those walks, one epoch, words/s with 1 and 2 worker threads.
- Index: `core.ann.build_hnsw` (inner product) over n x 64 float32 vectors, 1,000 held-out queries from the
  same distribution; recall@10 against `IndexFlatIP`, build seconds, queries/s of both. "random" vectors are
  i.i.d. Gaussian (the hardest case: no structure to exploit); "clustered" ones are a mixture of 1,000
  Gaussian clusters (the shape of trained embeddings); "item2vec (large)" are the trained vectors of the
  walks above. The research notebook's `IndexLSH` is measured once for comparison.

Usage: python benchmarks/bench_recall.py [--sizes 100000,1000000] [--skip-walks] [--ef-search 128,256,512]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import faiss
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import measured, table  # noqa: E402

from kwai_assets.core.ann import HNSWParams, build_hnsw, recall_against_exact  # noqa: E402
from kwai_assets.core.evaluation import EvalData  # noqa: E402
from kwai_assets.core.pipeline import prepared  # noqa: E402
from kwai_assets.core.swing import swing  # noqa: E402
from kwai_assets.core.walks import item_graph, random_walks  # noqa: E402
from kwai_assets.models.item2vec import Item2VecConfig, train_item2vec  # noqa: E402
from kwai_assets.sources import SyntheticSource  # noqa: E402

DIM, QUERIES = 64, 1000


def vectors(kind: str, n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if kind == "random":
        return rng.normal(size=(n, DIM)).astype(np.float32)
    centres = rng.normal(size=(1000, DIM))
    return (centres[rng.integers(0, 1000, n)] + 0.3 * rng.normal(size=(n, DIM))).astype(np.float32)


def index_rows(label: str, matrix: np.ndarray, params: HNSWParams, ef_search: list[int]) -> list[list[object]]:
    """One build, then one row per efSearch (search only: the build is shared)."""
    rng = np.random.default_rng(1)
    held_out = rng.choice(len(matrix), min(QUERIES, len(matrix) // 10), replace=False)
    queries, keep = matrix[held_out], np.setdiff1d(np.arange(len(matrix)), held_out)
    ids = np.arange(len(keep), dtype=np.int64)
    with measured() as m:
        index = build_hnsw(ids, matrix[keep], params)
    rows = []
    for ef in ef_search:
        faiss.downcast_index(index.index).hnsw.efSearch = ef
        q = recall_against_exact(index, ids, matrix[keep], queries, build_s=m.seconds)
        print(f"  {label} efS={ef}: recall@10 {q.recall_at_10:.3f}, build {m.seconds:.1f} s", file=sys.stderr,
              flush=True)
        rows.append([label, f"{len(keep):,}", f"M={params.m} efC={params.ef_construction} efS={ef}",
                     round(q.build_s, 1), f"{q.recall_at_10:.3f}", f"{q.hnsw_qps:,.0f}", f"{q.exact_qps:,.0f}",
                     f"{q.hnsw_qps / q.exact_qps:.0f}x", round(m.peak_rss_gb, 2)])
    return rows


def lsh_row(matrix: np.ndarray) -> list[object]:
    """The notebook's index: IndexLSH with as many bits as dimensions, searched by Hamming distance."""
    rng = np.random.default_rng(1)
    held_out = rng.choice(len(matrix), QUERIES, replace=False)
    queries, base = matrix[held_out], np.delete(matrix, held_out, axis=0)
    lsh = faiss.IndexLSH(DIM, DIM)
    start = time.perf_counter()
    lsh.train(base)
    lsh.add(base)
    build = time.perf_counter() - start
    exact = faiss.IndexFlatIP(DIM)
    exact.add(base)
    start = time.perf_counter()
    _, found = lsh.search(queries, 10)
    lsh_s = time.perf_counter() - start
    start = time.perf_counter()
    _, truth = exact.search(queries, 10)
    exact_s = time.perf_counter() - start
    recall = np.mean([len(np.intersect1d(t, f)) / 10 for t, f in zip(truth, found, strict=True)])
    return ["clustered, IndexLSH (the notebook's)", f"{len(base):,}", f"{DIM} bits", round(build, 1),
            f"{recall:.3f}", f"{QUERIES / lsh_s:,.0f}", f"{QUERIES / exact_s:,.0f}", f"{exact_s / lsh_s:.0f}x", ""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--skip-walks", action="store_true")
    parser.add_argument("--m", type=int, default=HNSWParams.m)
    parser.add_argument("--ef-construction", type=int, default=HNSWParams.ef_construction)
    parser.add_argument("--ef-search", default=f"{HNSWParams.ef_search},256,512", help="comma-separated")
    args = parser.parse_args()
    params = HNSWParams(m=args.m, ef_construction=args.ef_construction)
    ef_search = [int(e) for e in args.ef_search.split(",")]
    print(f"faiss {faiss.__version__}, {faiss.omp_get_max_threads()} threads", file=sys.stderr)

    rows, trained = [], None
    if not args.skip_walks:
        data = EvalData.from_splits(prepared(SyntheticSource("large")).splits)
        pairs, _ = swing(data.train)
        graph = item_graph(pairs, data.n_items)
        with measured() as m:
            walks = random_walks(graph, walks_per_node=10, length=40, seed=0)
        steps = [["DeepWalk walks (10 per item, length 40)", f"{len(walks):,} walks, {walks.size:,} steps",
                 round(m.seconds, 2), f"{walks.size / m.seconds:,.0f} steps/s", round(m.peak_rss_gb, 2)]]
        for workers in (1, 2):
            config = Item2VecConfig(epochs=1, workers=workers)
            with measured() as m:
                frame, stats = train_item2vec(pairs, data.n_items, config)
            steps.append([f"Word2Vec skip-gram, 1 epoch, {workers} worker(s)", f"{stats.walks * 40:,} words",
                         round(stats.train_s, 1), f"{stats.words_per_s:,.0f} words/s", round(m.peak_rss_gb, 2)])
            trained = np.stack(frame["vector"].to_numpy())
        print(f"\n## Walks and Word2Vec on `large` ({data.n_items:,} items, {graph.nnz:,} directed edges)\n")
        print(table(["step", "size", "seconds", "speed", "peak RSS GB"], steps))
        rows += index_rows("item2vec (large), trained", trained, params, ef_search)

    for n in (int(s) for s in args.sizes.split(",")):
        for kind in ("clustered", "random"):
            rows += index_rows(kind, vectors(kind, n + QUERIES), params, ef_search)
    rows.append(lsh_row(vectors("clustered", 200_000 + QUERIES)))
    print(f"\n## HNSW (inner product) against exact search, {DIM}-d, {QUERIES:,} held-out queries, "
          f"{faiss.omp_get_max_threads()} threads\n")
    print(table(["vectors", "items", "index", "build s", "recall@10", "HNSW q/s", "exact q/s", "speed-up",
                 "peak RSS GB"], rows))


if __name__ == "__main__":
    main()
