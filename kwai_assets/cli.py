"""`kwai`: build the graph, query the warehouse, see what is built.

    kwai demo            # every job of kwai_assets.jobs.STAGES in order, then the wall time of each step
    kwai run JOB [--partition KEY | --days FIRST...LAST]    # one job of the definitions, in process
    kwai config          # the run configuration of every asset (docs/configuration.md)
    kwai recommend MODEL --k 100 --out FILE.tsv    # top-K per user of a model of the evaluation, in raw ids
    kwai sql "select split, count(*) from splits group by 1"
    kwai summary
    kwai days            # START...END of the configured source, for --partition-range
    kwai shards          # the static partitions of the LLM assets
    kwai catalog         # (re)build catalog.duckdb views for the duckdb CLI
    kwai redis start     # the online store: KWAI_REDIS_URL, or the embedded server of KWAI_HOME (started)
    kwai redis url       # its URL (no password); exits 1 if the embedded server is not running
    kwai redis stop      # stop the embedded server of KWAI_HOME
    kwai serve [--host 127.0.0.1] [--port 8000]   # the HTTP API and the explorer page (kwai_assets/service)
"""
from __future__ import annotations

import argparse
import os
import sys

import pandas as pd

from kwai_assets.io.model_store import ModelStore
from kwai_assets.io.urls import safe_url
from kwai_assets.io.warehouse import Warehouse
from kwai_assets.settings import Settings


def _print(df: pd.DataFrame) -> None:
    with pd.option_context("display.max_rows", 200, "display.max_columns", 50, "display.width", 200):
        print(df.to_string(index=False))


def summary(settings: Settings) -> str:
    wh = Warehouse(settings.home, settings.warehouse)
    tracking = safe_url(ModelStore(settings.home, settings.mlflow_tracking_uri).tracking_uri)
    assets = wh.assets()
    lines = [f"KWAI_HOME   {settings.home}", f"source      {settings.source}"
             + (f" ({settings.preset})" if settings.source == "synthetic" else f" ({settings.data_dir})"), ""]
    if not assets:
        return "\n".join(lines + ["nothing materialized yet: run `make demo`"])
    lines.append(f"{'asset':<22}{'rows':>12}")
    for name in assets:
        partitions = wh.partitions(name)
        lines.append(f"{name:<22}{wh.rows(name):>12,}" + (f"   ({len(partitions)} partitions)" if partitions else ""))
    if "evaluation" in assets:
        from kwai_assets.core.evaluation import markdown_table

        lines += ["", "evaluation (test split, full ranking, train+val items excluded):", "",
                  markdown_table(wh.read("evaluation"))]
    if "next_poi" in assets and wh.rows("next_poi"):
        lines += ["", "next POI (test check-ins, every POI ranked):", "",
                  wh.read("next_poi").to_markdown(index=False, floatfmt=".4f")]
    lines += ["", f"warehouse   {wh.root}", "SQL         kwai sql \"select * from splits limit 5\"",
              *([f"catalog     duckdb {wh.catalog_path}"] if wh.local else []),   # views over a store need kwai sql
              f"MLflow      mlflow ui --backend-store-uri {tracking}",
              "UI          make ui   (Dagster on http://127.0.0.1:3000)"]
    return "\n".join(lines)


def redis_command(action: str, settings: Settings) -> int:
    """`kwai redis start|stop|url`: KWAI_REDIS_URL when it is set, else the embedded server under KWAI_HOME."""
    import os

    from kwai_assets.io.online_store import OnlineStore
    from kwai_assets.io.redis_server import embedded_redis, embedded_url, stop_embedded

    configured = os.environ.get("KWAI_REDIS_URL")
    if action == "stop":
        stopped = stop_embedded(settings.home)
        print(f"stopped the embedded server of {settings.home}" if stopped
              else f"no embedded server of {settings.home} was running")
        return 0
    if configured:
        if action == "start":       # nothing to start: check that it answers
            try:
                OnlineStore.connect(configured, os.environ.get("KWAI_REDIS_PASSWORD") or None)
            except ConnectionError as err:
                print(f"{err} (unset KWAI_REDIS_URL to use the embedded server)", file=sys.stderr)
                return 1
        print(safe_url(configured))
        return 0
    url = embedded_redis(settings.home) if action == "start" else embedded_url(settings.home)
    if url is None:
        print(f"no embedded server of {settings.home} is running: kwai redis start", file=sys.stderr)
        return 1
    print(url)
    return 0


def serve_command(args: argparse.Namespace, settings: Settings) -> int:
    """`kwai serve`: the HTTP API and the explorer over KWAI_HOME's warehouse and the online store."""
    import uvicorn

    from kwai_assets.io.online_store import OnlineStore
    from kwai_assets.io.redis_server import embedded_redis
    from kwai_assets.service.app import create_app
    from kwai_assets.service.lookup import WarehouseLookup

    url = settings.redis_url or embedded_redis(settings.home)
    try:
        store = OnlineStore.connect(url, os.environ.get("KWAI_REDIS_PASSWORD") or None)
    except ConnectionError as err:
        print(err, file=sys.stderr)
        return 1
    app = create_app(WarehouseLookup(Warehouse(settings.home, settings.warehouse)), store, safe_url(url))
    print(f"serving {settings.home} and the online store at {safe_url(url)} on http://{args.host}:{args.port} "
          f"(explorer: http://{args.host}:{args.port}/explorer)", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)
    return 0


def run_command(args: argparse.Namespace, settings: Settings) -> int:
    """`kwai demo` and `kwai run`: in-process runs recorded in the Dagster instance of DAGSTER_HOME."""
    import json
    import time

    import dagster as dg

    from kwai_assets.definitions import defs
    from kwai_assets.runner import run_job, run_stages, source_days, step_times

    instance, config = dg.DagsterInstance.get(), json.loads(args.config_json)
    start = time.perf_counter()
    try:
        if args.command == "demo":
            results = run_stages(defs, instance, settings, run_config=config,
                                 announce=lambda s: print(f"materializing {s}", flush=True))
        else:
            days = tuple(args.days.split("...")) if args.days else (source_days(settings) if args.job == "ingest"
                                                                  else None)
            results = [run_job(defs, instance, args.job, partition=args.partition, days=days, run_config=config)]
    except (dg.DagsterError, ValueError) as err:
        print(f"failed: {err}", file=sys.stderr)
        return 1
    times = step_times(instance, results)
    print(f"\nwall time per step ({time.perf_counter() - start:.0f} s in all):")
    _print(times)
    if args.command == "demo":
        print("\n" + summary(settings))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kwai", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="every stage of the graph in order, then the time of each step and a summary")
    run = sub.add_parser("run", help="one job of the definitions (ingest, prepare_and_train, llm_profiles, ...)")
    for command in (demo, run):
        command.add_argument("--config-json", default="{}", help="run config for the whole graph, e.g. "
                             '\'{"ops": {"clean_interactions": {"config": {"k": 1}}}}\'')
    run.add_argument("job")
    run.add_argument("--partition", help="a partition key (a day, or an LLM shard)")
    run.add_argument("--days", help="FIRST...LAST: a range of days in one run (the ingest job)")
    sub.add_parser("config", help="the run configuration of every asset, as markdown")
    recommend = sub.add_parser("recommend", help="top-K items per user of a model registered in the evaluation, "
                                                 "as a TSV (user_id, item_id, rank; raw ids; train and val items "
                                                 "excluded)")
    recommend.add_argument("model")
    recommend.add_argument("--k", type=int, default=100)
    recommend.add_argument("--out", required=True)
    sub.add_parser("sql", help="run SQL against one view per asset").add_argument("query")
    sub.add_parser("summary", help="rows per asset, the evaluation table, where things are")
    sub.add_parser("days", help="first...last day of the configured source")
    sub.add_parser("shards", help="partition keys of the LLM assets")
    sub.add_parser("catalog", help="rebuild catalog.duckdb views")
    sub.add_parser("redis", help="the online store's server: start (prints its URL), url, stop").add_argument(
        "action", choices=["start", "url", "stop"])
    serve = sub.add_parser("serve", help="the HTTP API and the explorer page over the online store")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    if args.command == "serve":
        return serve_command(args, settings)
    if args.command == "redis":
        return redis_command(args.action, settings)
    if args.command in ("demo", "run"):
        return run_command(args, settings)
    if args.command == "recommend":
        from kwai_assets.assets.evaluate import rankings
        from kwai_assets.io.warehouse import write_atomic

        try:
            top = rankings(Warehouse(settings.home, settings.warehouse), args.model, args.k)
        except (ValueError, FileNotFoundError) as err:
            print(err, file=sys.stderr)
            return 2
        write_atomic(args.out, top.to_csv(sep="\t", index=False))
        print(f"{args.out}: {len(top):,} rows, {top['user_id'].nunique():,} users, top {args.k} of {args.model}")
        return 0
    if args.command == "config":
        from kwai_assets.definitions import defs
        from kwai_assets.reference import config_reference

        print(config_reference(defs))
        return 0
    wh = Warehouse(settings.home, settings.warehouse)
    if args.command == "sql":
        _print(wh.sql(args.query))
    elif args.command == "summary":
        print(summary(settings))
    elif args.command == "days":
        from kwai_assets.runner import source_days

        try:
            print("...".join(source_days(settings)))
        except ValueError as err:
            print(err, file=sys.stderr)
            return 2
    elif args.command == "shards":
        print(" ".join(str(s) for s in range(settings.llm_shards)))
    elif args.command == "catalog":
        print("views: " + ", ".join(wh.refresh_catalog()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
