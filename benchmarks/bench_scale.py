"""Scaling of the heavy steps on each engine: per stage, wall time and peak memory of DuckDB and Spark at about
1M, 3M and 10M raw rows (`medium`, `large`, `xlarge`), the fitted growth per stage, and what Swing's caps
change on `small`.

Each (engine, preset) runs in a fresh interpreter, so that neither a warm JVM nor another run's memory is
counted: the synthetic logs are generated, then the steps the assets call (`engine.steps()`) run in the
graph's order, clean + k-core, the three attribute joins, re-id, index space, split, item Swing and the item
walks. Peak memory is the resident memory of the process and its children (Spark's JVM) together. Spark's
times include the pandas <-> Spark conversion at each step's boundary, which is how the assets hand data to
it today. A run that passes `--timeout` seconds is stopped, its finished stages kept.

Growth: time ~ rows^b, b fitted by least squares on log-log over the sizes that finished.

Caps (`--caps`): the field caps Swing's user-pair work by dropping users with more than 1,000 items and
keeping at most 1,000 users per item (a seeded hash sample): `SwingParams.drop_rows_above` and
`max_rows_per_column`, on both engines. `--caps` shows what they save as the logs grow
(interactions kept, Swing's user pairs and work, time) and, on `small`, with tighter caps too, what they cost
Swing item-kNN in NDCG@20.

    python benchmarks/bench_scale.py [--presets medium,large,xlarge] [--engines duckdb,spark] [--timeout 1800]
    python benchmarks/bench_scale.py --caps [small,medium,large,xlarge]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import measured, table  # noqa: E402

STAGES = ["generate", "clean + k-core", "attributes", "re-id", "index space", "split", "item swing", "item walks"]


def stages(engine: str, preset: str) -> None:
    """One (engine, preset) run: a JSON line per stage on stdout, as each ends."""
    from kwai_assets.core.reid import extend_id_maps, index_sizes
    from kwai_assets.core.swing import SwingParams
    from kwai_assets.sources import SyntheticSource
    from kwai_assets.sources.contract import ITEMS, POIS, USERS

    if engine == "spark":
        from kwai_assets.spark import steps
        from kwai_assets.spark.session import spark_session
        spark_session()                                    # the JVM's start is not a stage
    else:
        from kwai_assets.core import steps

    def stage(name: str, rows_of=len):
        def run(fn, *args):
            with measured(tree=True) as m:
                out = fn(*args)
            rows = rows_of(out)
            print(json.dumps({"engine": engine, "preset": preset, "stage": name, "rows": int(rows),
                              "seconds": round(m.seconds, 2), "peak_gb": round(m.peak_rss_gb, 2)}), flush=True)
            return out
        return run

    source = SyntheticSource(preset=preset, seed=7)
    first, last = source.date_range()
    raw = stage("generate")(lambda: source.interactions(first, last + timedelta(days=1)))
    tables = {"users": source.users(), "items": source.items(), "pois": source.pois()}
    clean, _ = stage("clean + k-core", lambda r: len(r[0]))(steps.clean_interactions, raw, 10)

    def joins():
        return [steps.attributes(clean, tables[name], spec)[0]
                for name, spec in (("users", USERS), ("items", ITEMS), ("pois", POIS))]
    users, items, pois = stage("attributes", lambda r: sum(map(len, r)))(joins)

    def reid():
        return extend_id_maps(None, {"user": steps.first_seen(clean, "user_id"),
                                     "item": steps.first_seen(clean, "item_id"),
                                     "poi": steps.first_seen(clean, "poi_id"),
                                     "category": sorted(set(items["category"].dropna())
                                                        | set(pois["category"].dropna()))})
    maps = stage("re-id")(reid)
    interactions = stage("index space")(steps.to_index_space, clean, maps, items)
    splits = stage("split")(steps.split_by_user, interactions)
    sizes = index_sizes(maps)
    pairs, _ = stage("item swing", lambda r: len(r[0]))(steps.positive_pairs, splits, sizes, "item", SwingParams())
    stage("item walks")(steps.item_walks, pairs, sizes["item"], 10, 40, 0)


SPARK_CONF = "spark.driver.memory=8g;spark.driver.maxResultSize=4g"   # the driver holds whole tables at 10M rows


def scaling(presets: list[str], engines: list[str], timeout: float) -> list[dict]:
    os.environ.setdefault("KWAI_SPARK_CONF", SPARK_CONF)
    found = []
    for engine in engines:
        for preset in presets:
            cmd = [sys.executable, __file__, "--child", engine, preset]
            print(f"{engine} {preset} ...", file=sys.stderr, flush=True)
            try:
                out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False).stdout
            except subprocess.TimeoutExpired as stopped:
                out = stopped.stdout.decode() if isinstance(stopped.stdout, bytes) else (stopped.stdout or "")
                print(f"  stopped after {timeout:.0f} s", file=sys.stderr, flush=True)
            rows = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
            for r in rows:
                print(f"  {r['stage']}: {r['seconds']} s, {r['peak_gb']} GB", file=sys.stderr, flush=True)
            found += rows
    return found


def growth(rows: list[dict], engine: str, stage: str, key: str) -> float | None:
    """b of value ~ raw_rows^b over the presets that finished (None with fewer than two)."""
    raw = {r["preset"]: r["rows"] for r in rows if r["stage"] == "generate"}
    points = [(raw[r["preset"]], r[key]) for r in rows
              if r["engine"] == engine and r["stage"] == stage and r["preset"] in raw and r[key] > 0]
    if len(points) < 2:
        return None
    x, y = np.log([p[0] for p in points]), np.log([p[1] for p in points])
    return float(np.polyfit(x, y, 1)[0])


def report(rows: list[dict], presets: list[str], engines: list[str]) -> None:
    raw = {r["preset"]: r["rows"] for r in rows if r["stage"] == "generate"}
    header = ["stage", "engine"] + [f"{p} ({raw.get(p, 0) / 1e6:.1f}M): s / GB" for p in presets] + ["growth b (time)"]
    body = []
    for stage in STAGES:
        for engine in engines:
            cells = []
            for preset in presets:
                hit = [r for r in rows if (r["engine"], r["preset"], r["stage"]) == (engine, preset, stage)]
                cells.append(f"{hit[0]['seconds']:,.1f} / {hit[0]['peak_gb']:.2f}" if hit else "—")
            b = growth(rows, engine, stage, "seconds")
            body.append([stage, engine, *cells, "" if b is None else f"{b:.2f}"])
    print(table(header, body))


def caps(presets: list[str]) -> None:
    """Swing with and without the caps: on `small` with the evaluation (and tighter caps), on the larger presets
    the work alone (what the caps save as logs grow)."""
    from kwai_assets.core.evaluation import EvalData, evaluate
    from kwai_assets.core.knn import item_knn
    from kwai_assets.core.pipeline import prepared
    from kwai_assets.core.swing import swing
    from kwai_assets.sources import SyntheticSource

    rows = []
    for preset in presets:
        tables = prepared(SyntheticSource(preset=preset, seed=7))
        data = EvalData.from_splits(tables.splits, tables.sizes["user"], tables.sizes["item"])
        train = data.train.tocsr()
        print(f"{preset} train: {train.nnz:,} interactions; most items per user {np.diff(train.indptr).max():,}, "
              f"most users per item {np.bincount(train.indices).max():,}", flush=True)
        settings = [(None, None), (1000, 1000)] + ([(200, 200), (100, 100), (50, 50)] if preset == "small" else [])
        for max_items, max_users in settings:
            with measured() as m:
                pairs, stats = swing(train, drop_rows_above=max_items, max_rows_per_column=max_users)
            ndcg = ["", ""]
            if preset == "small":
                score = item_knn(data, pairs)
                ndcg = [f"{evaluate(score, data.validation(), ks=(20,))['ndcg', 20]:.4f}",
                        f"{evaluate(score, data, ks=(20,))['ndcg', 20]:.4f}"]
            rows.append([preset, f"{max_items or '-'} / {max_users or '-'}", stats.interactions, stats.pairs,
                         stats.work, round(m.seconds, 1), round(m.peak_rss_gb, 2), *ndcg])
            print(f"  {rows[-1]}", file=sys.stderr, flush=True)
    print(table(["preset", "caps: items per user / users per item", "interactions", "user pairs",
                 "work (sum of |I_u ∩ I_v|^2)", "swing s", "peak GB", "val NDCG@20", "test NDCG@20"], rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", default="medium,large,xlarge")
    parser.add_argument("--engines", default="duckdb,spark")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per (engine, preset) run")
    parser.add_argument("--caps", nargs="?", const="small,medium,large,xlarge", default=None,
                        help="only what Swing's caps change, on these presets (NDCG@20 on `small`)")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        stages(*args.child)
    elif args.caps:
        caps(args.caps.split(","))
    else:
        presets, engines = args.presets.split(","), args.engines.split(",")
        rows = scaling(presets, engines, args.timeout)
        print(f"\ncommand: python benchmarks/bench_scale.py {' '.join(sys.argv[1:])}".rstrip())
        print(f"KWAI_SPARK_CONF={os.environ['KWAI_SPARK_CONF']}, KWAI_SPARK_MASTER="
              f"{os.environ.get('KWAI_SPARK_MASTER', 'local[2]')}, {os.cpu_count()} cores\n")
        report(rows, presets, engines)
        print("\n" + json.dumps(rows))


if __name__ == "__main__":
    main()
