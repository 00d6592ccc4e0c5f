"""Next-POI on a synthetic preset: training samples/s and the protocol's table for self-attention vs AutoCorrelation,
with and without the distance term, beside the popular, radius-popular and Markov baselines.

Each configuration trains with early stopping on the validation check-ins (val MRR) and reads the test split once.
`large` has 100,000 users; ``--users`` keeps a seeded sample of them (every POI stays a candidate), so that four
trainings fit in about half an hour on two CPU cores (every sample scores all 6,000 POIs). On CUDA (bf16 autocast)
take all users (``--users 0``).

    python benchmarks/bench_next_poi.py [--preset large] [--users 2500] [--epochs 8]
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import measured, table  # noqa: E402
from kwai_assets.core.evaluation import device  # noqa: E402
from kwai_assets.core.mobility import POICatalog, Queries, baseline_metrics, build_checkins  # noqa: E402
from kwai_assets.core.pipeline import prepared  # noqa: E402
from kwai_assets.models import next_poi  # noqa: E402
from kwai_assets.sources import SyntheticSource  # noqa: E402


def progress(epoch: int, metrics: dict) -> None:
    print(f"  epoch {epoch}: loss {metrics['loss']:.4f}, {metrics['samples_per_s']:,.0f} samples/s, "
          f"val MRR {metrics.get('val_mrr', float('nan')):.4f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="large")
    parser.add_argument("--users", type=int, default=2_500, help="seeded sample of users; 0 = all")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    with measured() as prep:
        tables = prepared(SyntheticSource(args.preset))
        splits = tables.splits
        if args.users:
            users = np.random.default_rng(args.seed).permutation(splits["user_idx"].unique())[: args.users]
            splits = splits[splits["user_idx"].isin(users)]
        catalog = POICatalog.from_frames(tables.pois, tables.id_maps)
        checkins = build_checkins(splits, catalog)
    n_categories = tables.sizes["category"]
    test = Queries.of(checkins, "test")
    print(f"{args.preset}: {checkins['user_idx'].nunique():,} users, {len(catalog.category) - 1:,} POIs, "
          f"{len(checkins):,} check-ins ({(checkins['split'] == 'train').sum():,} train, {len(test.rows):,} test "
          f"queries); prepared in {prep.seconds:.0f} s; device {device().type}", flush=True)

    rows = []
    base = next_poi.NextPOIConfig(epochs=args.epochs, seed=args.seed)
    for encoder in next_poi.ENCODERS:
        for distance in (True, False):
            config = dataclasses.replace(base, encoder=encoder, distance=distance)
            start = time.perf_counter()
            model, history = next_poi.train_next_poi(checkins, catalog, n_categories, config, log=progress)
            seconds = time.perf_counter() - start
            best = max(history, key=lambda h: h["val_mrr"])
            found = next_poi.evaluate(model, checkins, "test")
            rows.append([f"{encoder}{'' if distance else ' without distance'}",
                         round(float(np.mean([h["samples_per_s"] for h in history]))), len(history),
                         round(seconds), f"{best['val_mrr']:.4f}", *(f"{found[k]:.4f}" for k in
                                                                       ("acc_at_1", "acc_at_5", "acc_at_10", "mrr"))])
            print(rows[-1], flush=True)
    for name, found in baseline_metrics(checkins, catalog, test).items():
        rows.append([name, "", "", "", "", *(f"{found[k]:.4f}" for k in ("acc_at_1", "acc_at_5", "acc_at_10", "mrr"))])
    print(table(["method", "train samples/s", "epochs", "train s", "val MRR", "test Acc@1", "test Acc@5",
                 "test Acc@10", "test MRR"], rows))


if __name__ == "__main__":
    main()
