"""Candidate merge rules compared on the validation split, over the channels of a materialized home.

Reads `splits`, `id_maps`, `item_positive_pairs`, the vector assets and the `item_index` files of
`KWAI_HOME` (after `make demo` or `make demo-movielens`), builds every channel's list `--depth` deep on the
validation view (train items excluded, val items relevant) and reports the recall of `--total` candidates:
each channel alone, reciprocal rank fusion at several rrf_k (popularity as the fallback, or in the score), and
the union of every channel's top `--total / 5` by best rank.

Usage: KWAI_HOME=.kwai python benchmarks/bench_candidates.py [--depth 200] [--total 200]
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
from common import table  # noqa: E402

from kwai_assets.assets.recall import INDEXED  # noqa: E402
from kwai_assets.core.ann import read_index  # noqa: E402
from kwai_assets.core.candidates import ann_channel, merge_channels, recall_of, scored_channel  # noqa: E402
from kwai_assets.core.evaluation import EvalData  # noqa: E402
from kwai_assets.core.knn import RECENT_ITEMS, recent_items, recent_query, similarity_matrix  # noqa: E402
from kwai_assets.core.reid import index_sizes  # noqa: E402
from kwai_assets.core.vectors import vector_matrix  # noqa: E402
from kwai_assets.io.warehouse import Warehouse  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--depth", type=int, default=200)
    parser.add_argument("--total", type=int, default=200)
    args = parser.parse_args()
    wh = Warehouse(os.environ.get("KWAI_HOME", ".kwai"))
    splits, sizes = wh.read("splits"), index_sizes(wh.read("id_maps"))
    val = EvalData.from_splits(splits, sizes["user"], sizes["item"]).validation()
    recent = recent_items(splits, sizes["user"], sizes["item"], RECENT_ITEMS)
    sim = similarity_matrix(wh.read("item_positive_pairs"), sizes["item"])
    channels = {"swing": scored_channel(lambda users: (recent[users] @ sim).toarray(), val, args.depth)}
    for name, channel in INDEXED.items():
        queries = (vector_matrix(wh.read(channel.users), "user_idx", sizes["user"]) if channel.users else
                   recent_query(recent, vector_matrix(wh.read(channel.items), "item_idx", sizes["item"])))
        channels[name] = ann_channel(read_index(wh.file("item_index", f"{name}.faiss")), queries, val, args.depth)
    counts = np.asarray(val.train.sum(axis=0), dtype=np.float32).ravel()
    channels["popularity"] = scored_channel(lambda users: np.broadcast_to(counts, (len(users), len(counts))), val,
                                            args.depth)
    rows = [[f"{name} alone", recall_of(ranked[ranked["rank"] <= args.total], val)[0]]
            for name, ranked in channels.items()]
    for k in (0, 10, 60):
        rows.append([f"fusion, rrf_k {k}, popularity the fallback",
                     recall_of(merge_channels(channels, args.depth, args.total, k), val)[0]])
        rows.append([f"fusion, rrf_k {k}, popularity in the score",
                     recall_of(merge_channels(channels, args.depth, args.total, k, fallback=()), val)[0]])
    top = args.total // 5
    union = pd.concat([ranked[ranked["rank"] <= top] for ranked in channels.values()])
    union = union.sort_values(["user_idx", "rank", "item_idx"]).drop_duplicates(["user_idx", "item_idx"])
    rows.append([f"union of every channel's top {top}, by best rank",
                 recall_of(union.groupby("user_idx").head(args.total), val)[0]])
    print(f"\n## Candidates on validation ({wh.home}), recall of {args.total}\n")
    print(table(["source", "val recall"], [[name, f"{value:.4f}"] for name, value in rows]))


if __name__ == "__main__":
    main()
