"""The CF model on MovieLens-100k's comparable setup, one row per setting: validation NDCG@20, epochs, train time.

ml-100k with no k-core (all 943 users, 1,682 items), the floor 0.7/0.1/0.2
split (70,771 / 9,596 / 19,633 rows); each setting is `CFConfig()` with the
JSON's fields replaced and patience 5, early stopping on validation NDCG@20.
Settings are compared on validation; `--test` adds test NDCG@20 (read it for
the settings you report, not to choose them).

Usage: python benchmarks/bench_cf_grid.py [--ml100k DIR] [--threads N] [--test] '{}' '{"dim": 128}' ...
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
from kwai_assets.core.vectors import dot_product  # noqa: E402
from kwai_assets.models.cf import CFConfig, embeddings, train_cf  # noqa: E402


def main() -> None:
    parser = settings_parser(__doc__, "CFConfig")
    args = parse_settings(parser)
    tables = dataset("ml-100k", args.ml100k)
    data = EvalData.from_splits(tables.splits, tables.sizes["user"], tables.sizes["item"])
    rows = []
    for setting in args.settings:
        config = dataclasses.replace(CFConfig(patience=5), **json.loads(setting))
        start = time.perf_counter()
        model, history = train_cf(data, config)
        seconds = time.perf_counter() - start
        best = best_validated(history)
        test = evaluate(dot_product(*embeddings(model)), data, ks=(20,))["ndcg", 20] if args.test else None
        rows.append([setting, f"{best['val_ndcg_at_20']:.4f}", "" if test is None else f"{test:.4f}",
                     f"{best['epoch']} of {len(history)}", round(seconds, 1)])
        print("  " + " | ".join(map(str, rows[-1])), file=sys.stderr, flush=True)
    print(f"\n## CF on MovieLens-100k, no k-core ({torch.get_num_threads()} CPU threads)\n")
    print(table(["setting (CFConfig fields)", "val NDCG@20", "test NDCG@20", "best epoch", "train s"], rows))


if __name__ == "__main__":
    main()
