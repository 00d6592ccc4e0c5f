"""The two-tower recall model, one row per (data set, setting): validation NDCG@20, epochs, train time.

Data sets: the synthetic `small` preset (k-core 10) and MovieLens-100k's
comparable setup (no k-core, the floor 0.7/0.1/0.2 split). Each setting is
`TwoTowerConfig()` with the JSON's fields replaced, early stopping on
validation NDCG@20. Settings are compared on validation; `--test` adds test
NDCG@20 (read it for the settings you report, not to choose them).

Usage: python benchmarks/bench_two_tower.py [--data small,ml-100k] [--threads N] [--test] '{}' '{"hard_negatives": 4}'
"""
from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import best_validated, dataset, parse_settings, settings_parser, table  # noqa: E402

from kwai_assets.core.evaluation import EvalData, evaluate  # noqa: E402
from kwai_assets.models.two_tower import TwoTowerConfig, TwoTowerData, scorer, train_two_tower  # noqa: E402


def load(name: str, ml100k: str):
    tables = dataset(name, ml100k)
    data = TwoTowerData.from_frames(tables.splits, tables.id_maps, tables.users)
    return data, EvalData.from_splits(tables.splits, tables.sizes["user"], tables.sizes["item"])


def main() -> None:
    parser = settings_parser(__doc__, "TwoTowerConfig")
    parser.add_argument("--data", default="small,ml-100k")
    args = parse_settings(parser)
    rows = []
    for name in args.data.split(","):
        data, split = load(name, args.ml100k)
        for setting in args.settings:
            config = dataclasses.replace(TwoTowerConfig(), **json.loads(setting))
            start = time.perf_counter()
            model, history = train_two_tower(data, split, config)
            seconds = time.perf_counter() - start
            best = best_validated(history)
            test = evaluate(scorer(model, data), split, ks=(20,))["ndcg", 20] if args.test else None
            rows.append([name, setting, f"{best['val_ndcg_at_20']:.4f}", "" if test is None else f"{test:.4f}",
                         f"{history[0]['val_loss']:.3f} -> {best['val_loss']:.3f}",
                         f"{best['epoch']} of {len(history)}", round(seconds, 1)])
            print("  " + " | ".join(map(str, rows[-1])), file=sys.stderr, flush=True)
    print(f"\n## Two-tower ({torch.get_num_threads()} CPU threads)\n")
    print(table(["data", "setting (TwoTowerConfig fields)", "val NDCG@20", "test NDCG@20",
                 "val loss (first -> best epoch)", "best epoch", "train s"], rows))


if __name__ == "__main__":
    main()
