"""The interest model, one row per setting and seed: validation NDCG@20, epochs, train time.

The data of `bench_interest_quality.py` (synthetic `small` with the asset's
k-core, or ml-100k's comparable setup) and the asset's sequences (`long_len`
100, prefixes every 50 behaviours); each setting is `InterestConfig(seed=s)`
with the JSON's fields replaced, early stopping on validation NDCG@20.
Settings are compared on validation; `--test` adds test NDCG@20 (read it for
the settings you report, not to choose them), from the vectors of record (the
train history, the issue's protocol) and, as a diagnostic of how far ahead the
test items lie, from the train + val history (RecBole's protocol for test).
`--horizon` validates vectors read from the train history less its last
behaviours, as many as the user's val ones (`core.split.held_back`): the val
items then lie as far past the vector's history as the test items lie past
the train history's end (a validation that mirrors the test's horizon).

Usage: python benchmarks/bench_interest_grid.py [--data small|ml100k] [--seeds 0,1,2] [--threads N] [--test] [--horizon]
       '{}' '{"weight_decay": 0.3}' ...
"""
from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_interest_quality import LONG_LEN, SHORT_LEN, STRIDE  # noqa: E402
from common import best_validated, dataset, parse_settings, settings_parser, table  # noqa: E402

from kwai_assets.core.evaluation import EvalData  # noqa: E402
from kwai_assets.core.sequences import behaviour_sequences  # noqa: E402
from kwai_assets.core.split import held_back  # noqa: E402
from kwai_assets.models.interest import InterestConfig, ndcg_at_20, train_interest  # noqa: E402


def main() -> None:
    parser = settings_parser(__doc__, "InterestConfig")
    parser.add_argument("--data", default="small", choices=["small", "ml100k"])
    parser.add_argument("--seeds", default="0", help="comma-separated InterestConfig seeds")
    parser.add_argument("--horizon", action="store_true", help="validate vectors that end as far before val as "
                        "the train history ends before test")
    args = parse_settings(parser)
    tables = dataset("ml-100k" if args.data == "ml100k" else args.data, args.ml100k)
    sizes = tables.sizes
    data = EvalData.from_splits(tables.splits, sizes["user"], sizes["item"])

    def histories(splits, stride: int = 0):
        """The sequences of `splits`' train rows at the asset's lengths."""
        return behaviour_sequences(splits, sizes["item"], sizes["category"], LONG_LEN[args.data], SHORT_LEN,
                                   stride=stride)

    sequences = histories(tables.splits, STRIDE)
    later = histories(tables.splits.assign(split=tables.splits["split"].replace("val", "train"))) if args.test else None
    earlier = histories(held_back(tables.splits)) if args.horizon else None
    rows = []
    for setting in args.settings:
        vals = []
        for seed in map(int, args.seeds.split(",")):
            config = dataclasses.replace(InterestConfig(seed=seed), **json.loads(setting))
            start = time.perf_counter()
            model, history = train_interest(sequences, config, val=data, val_sequences=earlier)
            seconds = time.perf_counter() - start
            best = best_validated(history)
            tests = [f"{ndcg_at_20(model, s, data):.4f}" for s in (sequences, later)] if args.test else ["", ""]
            vals.append(best["val_ndcg_at_20"])
            rows.append([setting, seed, f"{best['val_ndcg_at_20']:.4f}", *tests,
                         f"{best['epoch']} of {len(history)}", round(seconds, 1)])
            print("  " + " | ".join(map(str, rows[-1])), file=sys.stderr, flush=True)
        if len(vals) > 1:
            rows.append([setting, "mean", f"{np.mean(vals):.4f}", "", "", "", ""])
    validated = "val NDCG@20, vector n_val behaviours earlier" if args.horizon else "val NDCG@20"
    print(f"\n## Interest model on {args.data} ({torch.get_num_threads()} CPU threads)\n")
    print(table(["setting (InterestConfig fields)", "seed", validated, "test NDCG@20",
                 "test, train + val history", "best epoch", "train s"], rows))


if __name__ == "__main__":
    main()
