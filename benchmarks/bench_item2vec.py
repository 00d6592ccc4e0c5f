"""item2vec settings on validation: `item2vec_recent_knn` NDCG@20 on the val split, and the training time.

Data sets: the synthetic `small` preset (k-core 10) and MovieLens-100k's comparable setup (no k-core, the
floor 0.7/0.1/0.2 split). Each setting is `Item2VecConfig()` with the JSON's fields replaced; the walks run
over the item Swing graph of the train split, as the asset's do.

Usage: python benchmarks/bench_item2vec.py [--data small,ml-100k] [--threads N] '{}' '{"walk_length": 20}'
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import dataset, table  # noqa: E402

from kwai_assets.core.evaluation import EvalData, evaluate  # noqa: E402
from kwai_assets.core.knn import recent_item_knn  # noqa: E402
from kwai_assets.core.swing import swing  # noqa: E402
from kwai_assets.models.item2vec import Item2VecConfig, train_item2vec  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("settings", nargs="*", default=["{}"], help="JSON objects of Item2VecConfig fields")
    parser.add_argument("--data", default="small,ml-100k")
    parser.add_argument("--ml100k", default=os.environ.get("KWAI_ML100K", str(Path.home() / ".cache/kwai/ml-100k")))
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    for name in args.data.split(","):
        tables = dataset(name, args.ml100k)
        sizes = tables.sizes
        data = EvalData.from_splits(tables.splits, sizes["user"], sizes["item"])
        pairs, _ = swing(data.train)
        val = data.validation()
        for setting in args.settings:
            config = dataclasses.replace(Item2VecConfig(), **json.loads(setting))
            start = time.perf_counter()
            vectors, stats = train_item2vec(pairs, data.n_items, config)
            seconds = time.perf_counter() - start
            ndcg = evaluate(recent_item_knn(val, vectors, tables.splits), val, ks=(20,))["ndcg", 20]
            rows.append([name, setting, f"{ndcg:.4f}", f"{stats.words_per_s:,.0f}", round(seconds, 1)])
            print("  " + " | ".join(map(str, rows[-1])), file=sys.stderr, flush=True)
    print("\n## item2vec on validation\n")
    print(table(["data", "setting (Item2VecConfig fields)", "val NDCG@20", "words/s", "train s"], rows))


if __name__ == "__main__":
    main()
