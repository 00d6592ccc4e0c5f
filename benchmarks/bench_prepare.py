"""Raw logs -> splits on the `large` preset: wall time and peak RSS per asset,
then the item Swing pairs and the evaluation (full ranking of every item for
every test user, popularity and Swing item-kNN) on top.

Each asset runs as its own in-process Dagster materialization that reads its
inputs from the Parquet warehouse, as a step of the multiprocess executor
would. Usage: python benchmarks/bench_prepare.py [--preset large] [--home DIR]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import dagster as dg

sys.path.insert(0, str(Path(__file__).parent))
from common import measured, table  # noqa: E402

from kwai_assets.definitions import build_resources, defs  # noqa: E402
from kwai_assets.io.warehouse import Warehouse  # noqa: E402
from kwai_assets.settings import Settings  # noqa: E402
from kwai_assets.sources.synthetic import PRESETS  # noqa: E402

QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
STEPS = ["raw_interactions", "raw_users", "raw_items", "raw_pois", "clean_interactions", "user_attributes",
         "item_attributes", "poi_attributes", "id_maps", "interactions", "splits"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--preset", default="large", choices=list(PRESETS))
    parser.add_argument("--home", default=None, help="KWAI_HOME to build in (default: a temporary directory)")
    args = parser.parse_args()
    home = Path(args.home or tempfile.mkdtemp(prefix="kwai-bench-"))
    settings = Settings(home=home, source="synthetic", preset=args.preset, data_dir="", start_date="2026-01-01", seed=7)
    resources, assets = build_resources(settings), list(defs.assets)
    first, last = settings.start_date, f"2026-01-{PRESETS[args.preset].days:02d}"
    rows, total = [], 0.0
    for step in STEPS:
        tags = ({"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last}
                if step == "raw_interactions" else {})
        with measured() as m:
            result = dg.materialize(assets, resources=resources, selection=[step], tags=tags, run_config=QUIET)
        assert result.success, step
        meta = result.asset_materializations_for_node(step)[-1].metadata
        total += m.seconds
        rows.append([step, int(meta["rows"].value), round(m.seconds, 2), round(m.peak_rss_gb, 2)])
    wh = Warehouse(home)
    peak = max(r[3] for r in rows)
    rows.append(["**prepare group**", len(wh.read("splits")), round(total, 2), peak])
    for step in ("item_positive_pairs", "evaluation"):
        with measured() as m:
            result = dg.materialize(assets, resources=resources, selection=[step], run_config=QUIET)
        assert result.success, step
        meta = result.asset_materializations_for_node(step)[-1].metadata
        rows.append([step, int(meta["rows"].value), round(m.seconds, 2), round(m.peak_rss_gb, 2)])
    evaluated = int(wh.read("evaluation")["users"].max())
    print(f"\nevaluation: {evaluated:,} test users ranked over every item")
    print(f"\npreset={args.preset}  KWAI_HOME={home}\n")
    print(table(["asset", "rows", "wall s", "peak RSS GB"], rows))


if __name__ == "__main__":
    main()
