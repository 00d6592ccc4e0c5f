"""`kwai`: ad-hoc SQL over the warehouse, a summary of what is built, the source's days.

    kwai sql "select split, count(*) from splits group by 1"
    kwai summary
    kwai days            # START...END of the configured source, for --partition-range
    kwai shards          # the static partitions of the LLM assets
    kwai catalog         # (re)build catalog.duckdb views for the duckdb CLI
"""
from __future__ import annotations

import argparse
import sys

import pandas as pd

from kwai_assets.io.warehouse import Warehouse
from kwai_assets.settings import Settings


def _print(df: pd.DataFrame) -> None:
    with pd.option_context("display.max_rows", 200, "display.max_columns", 50, "display.width", 200):
        print(df.to_string(index=False))


def summary(settings: Settings) -> str:
    wh = Warehouse(settings.home)
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
    lines += ["", f"warehouse   {wh.root}", "SQL         kwai sql \"select * from splits limit 5\"",
              f"catalog     duckdb {wh.catalog_path}", f"MLflow      mlflow ui --backend-store-uri {settings.mlflow_uri}",
              "UI          make ui   (Dagster on http://127.0.0.1:3000)"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kwai", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("sql", help="run SQL against one view per asset").add_argument("query")
    sub.add_parser("summary", help="rows per asset, the evaluation table, where things are")
    sub.add_parser("days", help="first...last day of the configured source")
    sub.add_parser("shards", help="partition keys of the LLM assets")
    sub.add_parser("catalog", help="rebuild catalog.duckdb views")
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    wh = Warehouse(settings.home)
    if args.command == "sql":
        _print(wh.sql(args.query))
    elif args.command == "summary":
        print(summary(settings))
    elif args.command == "days":
        from kwai_assets.sources import open_source

        first, last = open_source(settings.source, preset=settings.preset, seed=settings.seed,
                                  start_date=settings.start_date, data_dir=settings.data_dir).date_range()
        if first.isoformat() < settings.start_date:
            print(f"the source starts on {first}, before KWAI_START_DATE={settings.start_date}; "
                  f"set KWAI_START_DATE={first}", file=sys.stderr)
            return 2
        print(f"{first}...{last}")
    elif args.command == "shards":
        print(" ".join(str(s) for s in range(settings.llm_shards)))
    elif args.command == "catalog":
        print("views: " + ", ".join(wh.refresh_catalog()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
