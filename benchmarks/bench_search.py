"""Random search of the interest model's or LightGCN's hyper-parameters on the validation split, trials in
parallel worker processes (on one GPU they share it), test read for the chosen configuration only.

The data is MovieLens-100k on the comparable setup (no k-core, the floor split 70,771 / 9,596 / 19,633),
prepared once by `prepare` (the prepare group's core functions; needs DuckDB) into a folder of Parquet, so
that `run` needs only torch, numpy, scipy, pandas and pyarrow and runs on a bare GPU machine.

Trial 0 is the current default (LightGCN with patience 5, as `bench_cf_grid.py`); the others draw every field of
SPACES[model] at random (seeded). Each trial trains with early stopping on validation NDCG@20 and writes one
line to `trials.jsonl` as it ends: the configuration, the best validation NDCG@20, its epoch and the wall time.
Its test NDCG@20 goes to `sealed_test.jsonl`, which `select` opens for the configuration with the best
validation figure alone (and the default, already reported), so choosing never looks at test.

    python benchmarks/bench_search.py prepare --out DIR [--ml100k DIR]
    python benchmarks/bench_search.py run interest|cf --data DIR --out DIR [--trials 64] [--workers 8]
        [--budget-s 420] [--seed 0] [--set '{"epochs": 2}']
    python benchmarks/bench_search.py select --out DIR [--top 10]
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SPACES: dict[str, dict[str, list]] = {
    "interest": {
        "lr": [1e-3, 2e-3, 3e-3, 5e-3],
        "dropout": [0.2, 0.3, 0.4, 0.5, 0.6],
        "weight_decay": [0.01, 0.1, 0.3, 1.0],
        "depth": [1, 2, 3],
        "heads": [1, 2, 4],
        "dim": [48, 64, 96, 128],
        "long_len": [50, 100, 200],
        "all_action": [0.0, 0.0, 0.5, 1.0],
        "window": [8, 16, 32, 64],
        "features": ["event,gap", "event,gap,time", "all", "event"],
        "temperature": [0.0, 0.0, 0.05, 0.1],
        "batch_size": [32, 64, 128],
        "n_experts": [0, 16],
    },
    "cf": {
        "model": ["lightgcn", "lightgcn", "mf"],
        "layers": [1, 2, 3, 4],
        "dim": [64, 128, 256],
        "lr": [1e-3, 2e-3, 5e-3, 1e-2],
        "weight_decay": [1e-5, 1e-4, 3e-4, 1e-3],
        "negatives": [1, 2, 4, 8],
        "batch_size": [512, 1024, 2048, 4096],
    },
}
SEQUENCE_FIELDS = ("long_len", "stride")         # interest: fields of the sequences, not of InterestConfig


def prepare(out: Path, ml100k: str) -> None:
    from kwai_assets.core.pipeline import prepared
    from kwai_assets.sources import MovieLensSource

    tables = prepared(MovieLensSource(ml100k), k=1)
    out.mkdir(parents=True, exist_ok=True)
    tables.splits.to_parquet(out / "splits.parquet", index=False)
    (out / "sizes.json").write_text(json.dumps({k: int(v) for k, v in tables.sizes.items()}))
    counts = tables.splits["split"].value_counts().to_dict()
    print(f"{out}: {len(tables.splits):,} rows, {counts}")


def draw(model: str, trials: int, seed: int, fixed: dict) -> list[dict]:
    """The default first, then `trials - 1` distinct random points of the space (`fixed` fields held)."""
    rng, space, points = np.random.default_rng(seed), SPACES[model], [{}]
    while len(points) < trials:
        point = {k: values[int(rng.integers(len(values)))] for k, values in space.items()} | fixed
        if model == "interest":
            point["head_dim"] = point["dim"] // point["heads"]
            if point["all_action"] == 0:
                point.pop("window")
        if model == "cf" and point["model"] == "mf":
            point.pop("layers")
        if point not in points:
            points.append(point)
    return points


_DATA: dict = {}


def _load(data: Path, threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    _DATA["splits"] = pd.read_parquet(data / "splits.parquet")
    _DATA["sizes"] = json.loads((data / "sizes.json").read_text())


def trial(model: str, number: int, point: dict, fixed: dict) -> tuple[dict, float]:
    """(the validation record, test NDCG@20) of one configuration (`fixed`: overrides of every trial)."""
    from kwai_assets.core.evaluation import EvalData, evaluate
    from kwai_assets.core.vectors import dot_product

    splits, sizes = _DATA["splits"], _DATA["sizes"]
    data = EvalData.from_splits(splits, sizes["user"], sizes["item"])
    start, point = time.perf_counter(), {**point, **fixed}
    if model == "interest":
        from kwai_assets.core.sequences import behaviour_sequences
        from kwai_assets.models.interest import InterestConfig, ndcg_at_20, train_interest

        config = dataclasses.replace(InterestConfig(), **{k: v for k, v in point.items() if k not in SEQUENCE_FIELDS})
        sequences = behaviour_sequences(splits, sizes["item"], sizes["category"], point.get("long_len", 100), 10,
                                        stride=point.get("stride", 50))
        trained, history = train_interest(sequences, config, val=data)
        test = ndcg_at_20(trained, sequences, data)
    else:
        from kwai_assets.models.cf import CFConfig, embeddings, train_cf

        trained, history = train_cf(data, dataclasses.replace(CFConfig(patience=5), **point))
        test = evaluate(dot_product(*embeddings(trained)), data, ks=(20,))["ndcg", 20]
    best = max((h for h in history if "val_ndcg_at_20" in h), key=lambda h: h["val_ndcg_at_20"])
    drawn = {k: v for k, v in point.items() if k not in fixed}
    record = {"trial": number, "model": model, "point": drawn, "val_ndcg_at_20": round(best["val_ndcg_at_20"], 5),
              "best_epoch": best["epoch"], "epochs": len(history), "seconds": round(time.perf_counter() - start, 1)}
    return record, round(float(test), 5)


def run(model: str, data: Path, out: Path, trials: int, workers: int, budget_s: float, seed: int,
        fixed: dict) -> None:
    """Trials in `workers` processes until all ran or `budget_s` passed (no trial starts after that)."""
    out.mkdir(parents=True, exist_ok=True)
    points, start, pending = draw(model, trials, seed, fixed), time.perf_counter(), set()
    threads = max(1, (os.cpu_count() or 1) // workers)
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=_load,
                             initargs=(data, threads)) as pool, \
            open(out / "trials.jsonl", "w") as log, open(out / "sealed_test.jsonl", "w") as sealed:
        queue = list(enumerate(points))
        while queue or pending:
            while queue and len(pending) < workers and time.perf_counter() - start < budget_s:
                number, point = queue.pop(0)
                pending.add(pool.submit(trial, model, number, point, fixed))
            if not pending:
                break
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                try:
                    record, test = future.result()
                except Exception as error:   # one bad point (e.g. out of memory) must not end the search
                    print(f"  trial failed: {error!r}", file=sys.stderr, flush=True)
                    continue
                log.write(json.dumps(record) + "\n")
                sealed.write(json.dumps({"trial": record["trial"], "model": model, "test_ndcg_at_20": test}) + "\n")
                log.flush()
                sealed.flush()
                print(f"  {model} #{record['trial']}: val {record['val_ndcg_at_20']:.4f} "
                      f"({record['seconds']:.0f} s) {record['point']}", file=sys.stderr, flush=True)
            if time.perf_counter() - start >= budget_s:
                queue.clear()


def select(out: Path, top: int) -> None:
    """Per model: the best validation trials; test for the chosen one and the default only."""
    trials = [json.loads(line) for line in (out / "trials.jsonl").read_text().splitlines()]
    sealed = {(r["model"], r["trial"]): r["test_ndcg_at_20"]
              for r in map(json.loads, (out / "sealed_test.jsonl").read_text().splitlines())}
    for model in sorted({t["model"] for t in trials}):
        rows = sorted((t for t in trials if t["model"] == model), key=lambda t: -t["val_ndcg_at_20"])
        chosen = rows[0]
        print(f"\n## {model}: {len(rows)} trials, by validation NDCG@20\n")
        print("| trial | val NDCG@20 | best epoch | s | configuration |\n|---:|---:|---:|---:|---|")
        for t in rows[:top] + [t for t in rows[top:] if t["trial"] == 0]:
            print(f"| {t['trial']} | {t['val_ndcg_at_20']:.4f} | {t['best_epoch']} of {t['epochs']} | "
                  f"{t['seconds']:.0f} | {json.dumps(t['point']) if t['point'] else 'the default'} |")
        print(f"\nchosen: trial {chosen['trial']}, test NDCG@20 {sealed[model, chosen['trial']]:.4f}")
        if chosen["trial"] != 0 and (model, 0) in sealed:
            print(f"the default (trial 0): test NDCG@20 {sealed[model, 0]:.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--ml100k", default=os.environ.get("KWAI_ML100K", str(Path.home() / ".cache/kwai/ml-100k")))
    r = sub.add_parser("run")
    r.add_argument("model", choices=sorted(SPACES))
    r.add_argument("--data", type=Path, required=True)
    r.add_argument("--out", type=Path, required=True)
    r.add_argument("--trials", type=int, default=64)
    r.add_argument("--workers", type=int, default=8)
    r.add_argument("--budget-s", type=float, default=420)
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--set", type=json.loads, default={}, help='fields fixed in every trial, e.g. \'{"epochs": 2}\'')
    s = sub.add_parser("select")
    s.add_argument("--out", type=Path, required=True)
    s.add_argument("--top", type=int, default=10)
    args = parser.parse_args()
    if args.command == "prepare":
        prepare(args.out, args.ml100k)
    elif args.command == "run":
        run(args.model, args.data, args.out, args.trials, args.workers, args.budget_s, args.seed, args.set)
    else:
        select(args.out, args.top)


if __name__ == "__main__":
    main()
