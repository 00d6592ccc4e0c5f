"""Approximate nearest-neighbour search over item vectors with faiss HNSW (inner product).

An index maps a query vector to the items of largest inner product; it
carries the items' own indices (`IndexIDMap2`), so a search returns item_idx
directly. Indexes are stored in the warehouse with faiss' own writer, whole or
not at all (a failed build leaves the previous file), and read with faiss' own
reader, never pickle.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import faiss
import numpy as np
import pandas as pd

from kwai_assets.core.vectors import unit_rows, vector_problems

if TYPE_CHECKING:
    from kwai_assets.io.warehouse import Warehouse

INDEX_ASSET = "item_index"      # the asset whose folder holds one faiss file per channel


@dataclass(frozen=True)
class HNSWParams:
    m: int = 32                  # graph neighbours per node
    ef_construction: int = 200   # candidate list while building
    ef_search: int = 128         # candidate list while searching (recall against speed)
    seed: int = 0                # of the sampled queries that measure recall


def build_hnsw(items: np.ndarray, vectors: np.ndarray, params: HNSWParams = HNSWParams()) -> faiss.Index:
    """An inner-product HNSW index over `vectors` [n, dim], searched by `items` ids."""
    hnsw = faiss.IndexHNSWFlat(vectors.shape[1], params.m, faiss.METRIC_INNER_PRODUCT)
    hnsw.hnsw.efConstruction = params.ef_construction
    hnsw.hnsw.efSearch = params.ef_search
    index = faiss.IndexIDMap2(hnsw)
    index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), np.asarray(items, dtype=np.int64))
    return index


def exact_index(items: np.ndarray, vectors: np.ndarray) -> faiss.Index:
    """Brute-force inner product: the ground truth an HNSW index is measured against."""
    index = faiss.IndexIDMap2(faiss.IndexFlatIP(vectors.shape[1]))
    index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), np.asarray(items, dtype=np.int64))
    return index


def search(index: faiss.Index, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(scores, item ids) [n, k]; ids are -1 where fewer than k items exist."""
    return index.search(np.ascontiguousarray(queries, dtype=np.float32), k)


@dataclass
class IndexQuality:
    recall_at_10: float          # share of the exact top-10 the index returns, over the sampled queries
    queries: int
    build_s: float
    hnsw_qps: float
    exact_qps: float

    def as_metadata(self) -> dict[str, float]:
        return self.__dict__.copy()


def recall_against_exact(index: faiss.Index, items: np.ndarray, vectors: np.ndarray, queries: np.ndarray,
                         k: int = 10, build_s: float = 0.0) -> IndexQuality:
    """How much of the exact top-k the index finds for `queries`, and both searches' speed."""
    exact = exact_index(items, vectors)
    start = time.perf_counter()
    _, truth = search(exact, queries, k)
    exact_s = time.perf_counter() - start
    start = time.perf_counter()
    _, found = search(index, queries, k)
    hnsw_s = time.perf_counter() - start
    hits = sum(len(np.intersect1d(t[t >= 0], f[f >= 0])) for t, f in zip(truth, found, strict=True))
    relevant = int((truth >= 0).sum())
    return IndexQuality(recall_at_10=hits / max(relevant, 1), queries=len(queries), build_s=build_s,
                        hnsw_qps=len(queries) / max(hnsw_s, 1e-9), exact_qps=len(queries) / max(exact_s, 1e-9))


def sample_queries(vectors: np.ndarray, n: int, seed: int) -> np.ndarray:
    """`n` rows of `vectors` (all of them when there are fewer), in a seeded random choice."""
    rng = np.random.default_rng(seed)
    return vectors[np.sort(rng.choice(len(vectors), min(n, len(vectors)), replace=False))]


def index_input_problems(name: str, items: pd.DataFrame, queries: pd.DataFrame | None = None) -> list[str]:
    """What makes an item-vector asset unfit for an index: NaN or infinite rows, zero rows, ragged or foreign
    dimensions (the queries' vectors must have the items' dimension). Each problem names the asset."""
    problems = [f"{name}: {p}" for p in vector_problems(items, "item_idx", np.zeros(0, np.int64))]
    if not len(items):
        return [f"{name}: no item vectors"]
    if queries is not None and len(queries) and not problems:
        dims = {len(v) for v in queries["vector"]}
        if dims != {len(items["vector"].iloc[0])}:
            problems.append(f"{name}: item vectors have dim {len(items['vector'].iloc[0])}, its queries "
                            f"{sorted(dims)}")
    if not problems:
        return []
    matrix = _rows_matrix(items)
    if matrix is not None:
        bad = ~np.isfinite(matrix).all(axis=1) | (np.abs(matrix).sum(axis=1) == 0)
        if bad.any():
            problems.append(f"{name}: bad item_idx rows {items['item_idx'].to_numpy()[bad][:10].tolist()}")
    return problems


def _rows_matrix(df: pd.DataFrame) -> np.ndarray | None:
    lengths = df["vector"].map(len)
    return np.stack(df["vector"].to_numpy()) if lengths.nunique() == 1 else None


def quality_problems(name: str, quality: IndexQuality, min_recall: float) -> list[str]:
    if quality.recall_at_10 < min_recall:
        return [f"{name}: HNSW recall@10 {quality.recall_at_10:.3f} against exact search on {quality.queries} "
                f"queries is below {min_recall}"]
    return []


def store_index(warehouse: Warehouse, channel: str, index: faiss.Index) -> str:
    """The channel's index as `item_index/<channel>.faiss`, by faiss' own writer, whole or not at all."""
    return warehouse.write_file(INDEX_ASSET, f"{channel}.faiss", lambda path: faiss.write_index(index, path))


def stored_index(warehouse: Warehouse, channel: str) -> faiss.Index:
    """The channel's stored index, by faiss' own reader."""
    return warehouse.read_file(INDEX_ASSET, f"{channel}.faiss", faiss.read_index)


def stored_channels(warehouse: Warehouse) -> list[str]:
    """The channels with a stored index."""
    return [name.removesuffix(".faiss") for name in warehouse.asset_files(INDEX_ASSET, ".faiss")]


def index_inputs(items: pd.DataFrame, queries: pd.DataFrame | None, cosine: bool, n_queries: int,
                 seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(item ids, the vectors an index holds: unit rows when `cosine`, the sampled queries that measure it:
    `queries`' vectors, or the items' own when there are none)."""
    ids, matrix = items["item_idx"].to_numpy(np.int64), np.stack(items["vector"].to_numpy()).astype(np.float32)
    if cosine:
        matrix = unit_rows(matrix)
    pool = matrix if queries is None else np.stack(queries["vector"].to_numpy()).astype(np.float32)
    return ids, matrix, sample_queries(pool, n_queries, seed)


def build_and_measure(name: str, items: pd.DataFrame, queries: pd.DataFrame | None, params: HNSWParams,
                      n_queries: int = 1000, min_recall: float = 0.95,
                      cosine: bool = False) -> tuple[faiss.Index | None, IndexQuality | None, list[str]]:
    """The HNSW index of one item-vector asset, its recall@10 against exact search on `n_queries` sampled query
    vectors (the asset's own items when `queries` is None), and what is wrong, if anything (then no index)."""
    problems = index_input_problems(name, items, queries)
    if problems:
        return None, None, problems
    ids, matrix, sampled = index_inputs(items, queries, cosine, n_queries, params.seed)
    start = time.perf_counter()
    index = build_hnsw(ids, matrix, params)
    build_s = time.perf_counter() - start
    quality = recall_against_exact(index, ids, matrix, sampled, build_s=build_s)
    problems = quality_problems(name, quality, min_recall)
    return (None if problems else index), quality, problems
