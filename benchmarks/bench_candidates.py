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
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
from common import table  # noqa: E402

from kwai_assets.assets.recall import VECTOR_ASSETS, channel_searches  # noqa: E402
from kwai_assets.core.candidates import merge_channels, recall_channels, recall_of  # noqa: E402
from kwai_assets.core.evaluation import EvalData  # noqa: E402
from kwai_assets.core.knn import RECENT_ITEMS, recent_items  # noqa: E402
from kwai_assets.core.reid import index_sizes  # noqa: E402
from kwai_assets.io.warehouse import Warehouse  # noqa: E402
from kwai_assets.settings import Settings  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--depth", type=int, default=200)
    parser.add_argument("--total", type=int, default=200)
    args = parser.parse_args()
    settings = Settings.from_env()
    wh = Warehouse(settings.home, settings.warehouse)
    splits, sizes = wh.read("splits"), index_sizes(wh.read("id_maps"))
    val = EvalData.from_splits(splits, sizes["user"], sizes["item"]).validation()
    recent = recent_items(splits, sizes["user"], sizes["item"], RECENT_ITEMS)
    vectors = {name: wh.read(name) for name in VECTOR_ASSETS}
    channels = recall_channels(val, recent, wh.read("item_positive_pairs"),
                               channel_searches(wh, vectors, recent, sizes), args.depth)
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
