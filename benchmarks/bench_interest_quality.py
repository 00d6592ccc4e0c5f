"""Retrieval quality of the long-term interest model: ablation on synthetic `small` and MovieLens-100k.

Data, through the prepare group's core functions (as the assets build it):
synthetic `small` (seed 7) with the asset's k-core (10), and ml-100k with no
k-core (k = 1: all 943 users and 1,682 items); both split per user in time,
the last floor(0.2 n) interactions to test and the floor(0.1 n) before them
to validation (ml-100k: 70,771 / 9,596 / 19,633 rows).

Every variant trains with early stopping on validation NDCG@20 (the best
epoch's weights kept); its user vectors come from the train history only (the
long tower's [CLS] after the last `long_len` train behaviours) and are ranked
by dot product with the item vectors over every item, train and validation
items excluded. Test NDCG@20 is read once per variant. Popularity and Swing
item-kNN are the reference rows.

Variants (VARIANTS; each sets its loss weights explicitly, the rest is the
default `InterestConfig`: causal long tower, MoE head, every position trained):
next item only (the default, chosen on validation), next item + dense
all-action, all-action only, the notebook's loss (only the [CLS] is trained,
to score the short-term items and the same user's short-tower vector with
BPR, as the research notebook trained it), next item + BPR (long + short
towers), next item + all-action + BPR, and next item + all-action with one
dense SwiGLU layer in place of the MoE.

Usage: python benchmarks/bench_interest_quality.py [--data small,ml100k] [--variants next,next_all,...]
       [--ml100k DIR] [--threads N]
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path

import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import best_validated, dataset, table  # noqa: E402

from kwai_assets.core.baselines import popularity  # noqa: E402
from kwai_assets.core.evaluation import EvalData, evaluate  # noqa: E402
from kwai_assets.core.knn import item_knn  # noqa: E402
from kwai_assets.core.sequences import behaviour_sequences  # noqa: E402
from kwai_assets.core.swing import swing  # noqa: E402
from kwai_assets.models.interest import InterestConfig, ndcg_at_20, parameters, train_interest  # noqa: E402

# Every variant spells out its losses, so a row means the same whatever the default is (next item only).
VARIANTS = {
    "next": ("next item only (SASRec's loss; the default)", {"next_item": 1.0, "all_action": 0.0}),
    "next_all": ("next item + all-action (window 16)", {"next_item": 1.0, "all_action": 1.0}),
    "all_action": ("all-action only (PinnerFormer's loss)", {"next_item": 0.0, "all_action": 1.0}),
    "notebook": ("notebook loss ([CLS] only: short-term items + BPR)",
                 {"every_position": False, "next_item": 0.0, "all_action": 1.0, "bpr": 1.0}),
    "next_bpr": ("next item + BPR (long + short towers)", {"next_item": 1.0, "all_action": 0.0, "bpr": 1.0}),
    "next_all_bpr": ("next item + all-action + BPR (long + short towers)",
                     {"next_item": 1.0, "all_action": 1.0, "bpr": 1.0}),
    "next_all_dense": ("next item + all-action, dense head (no MoE)",
                       {"next_item": 1.0, "all_action": 1.0, "n_experts": 0}),
}
LONG_LEN = {"small": 100, "ml100k": 100}
SHORT_LEN = 10
STRIDE = 50            # the asset's default: histories also trained cut every 50 behaviours before their end


def references(splits: pd.DataFrame, data: EvalData) -> list[list]:
    rows = []
    for name, scorer in [("popularity", lambda: popularity(data)),
                         ("swing item-kNN (alpha 1, top-50)", lambda: item_knn(data, swing(data.train)[0]))]:
        start = time.perf_counter()
        score = scorer()
        rows.append([name, evaluate(score, data.validation(), ks=(20,))["ndcg", 20],
                     evaluate(score, data, ks=(20,))["ndcg", 20], time.perf_counter() - start, "", ""])
    return rows


def run(name: str, splits: pd.DataFrame, sizes: dict[str, int], variants: list[str]) -> list[list]:
    data = EvalData.from_splits(splits, sizes["user"], sizes["item"])
    sequences = behaviour_sequences(splits, sizes["item"], sizes["category"], LONG_LEN[name], SHORT_LEN,
                                    stride=STRIDE)
    rows = references(splits, data)
    for variant in variants:
        label, changes = VARIANTS[variant]
        config = dataclasses.replace(InterestConfig(), **changes)
        start = time.perf_counter()
        model, history = train_interest(sequences, config, val=data)
        seconds = time.perf_counter() - start
        best = best_validated(history)
        test = ndcg_at_20(model, sequences, data)
        rows.append([label, best["val_ndcg_at_20"], test, seconds,
                     f"{best['epoch']} of {len(history)}", f"{parameters(model):,}"])
        print(f"  {name} {label}: val {best['val_ndcg_at_20']:.4f} test {test:.4f} {seconds:.0f} s",
              file=sys.stderr, flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", default="small,ml100k")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, of {', '.join(VARIANTS)}")
    parser.add_argument("--ml100k", default=os.environ.get("KWAI_ML100K", str(Path.home() / ".cache/kwai/ml-100k")))
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    variants = args.variants.split(",")
    print(f"command: python benchmarks/bench_interest_quality.py {' '.join(sys.argv[1:])}".rstrip())
    for name in args.data.split(","):
        if name == "ml100k" and not Path(args.ml100k, "u.data").exists():
            print(f"(ml-100k not found at {args.ml100k}: set KWAI_ML100K)")
            continue
        tables = dataset("ml-100k" if name == "ml100k" else name, args.ml100k)
        counts = f"{tables.sizes['user'] - 1} users, {tables.sizes['item'] - 1} items"
        title = (f"MovieLens-100k, no k-core ({counts})" if name == "ml100k"
                 else f"synthetic `{name}`, k-core 10 ({counts})")
        print(f"{title} ...", file=sys.stderr, flush=True)
        rows = run(name, tables.splits, tables.sizes, variants)
        device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"{torch.get_num_threads()} CPU threads"
        print(f"\n## {title}: NDCG@20, long_len {LONG_LEN[name]}, {device}\n")
        print(table(["model", "val NDCG@20", "test NDCG@20", "train s", "best epoch", "parameters"],
                    [[m, f"{v:.4f}", f"{t:.4f}", round(s, 1), e, p] for m, v, t, s, e, p in rows]))


if __name__ == "__main__":
    main()
