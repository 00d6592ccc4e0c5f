"""The one Definitions object: assets, checks, jobs, schedules, resources."""
from __future__ import annotations

import os

import dagster as dg

from kwai_assets.assets import evaluate, graph, ingest, llm, models, prepare, serve
from kwai_assets.io.resources import (
    LLMResource,
    MLflowTracking,
    ParquetIOManager,
    RedisResource,
    SourceResource,
    WarehouseResource,
)
from kwai_assets.settings import Settings


def build_resources(settings: Settings) -> dict[str, object]:
    return {
        "io_manager": ParquetIOManager(home=str(settings.home)),
        "warehouse": WarehouseResource(home=str(settings.home)),
        "source": SourceResource(kind=settings.source, preset=settings.preset, seed=settings.seed,
                                 start_date=settings.start_date, data_dir=settings.data_dir),
        "mlflow": MLflowTracking(tracking_uri=settings.mlflow_uri, artifact_location=str(settings.mlflow_artifacts)),
        "llm": LLMResource(backend=settings.llm_backend, model=settings.llm_model, cache_dir=str(settings.llm_cache)),
        # the password is read from the environment at run time, never stored in the definitions
        "redis": RedisResource(url=settings.redis_url,
                               password=dg.EnvVar("KWAI_REDIS_PASSWORD") if os.environ.get("KWAI_REDIS_PASSWORD") else ""),
    }


settings = Settings.from_env()
modules = [ingest, prepare, graph, llm, models, serve, evaluate]

# Everything, for one day: the schedule asks for yesterday's raw_interactions
# partition and rebuilds what depends on it.
DAILY_GROUPS = dg.AssetSelection.groups("ingest", "prepare", "graph", "models", "serve", "evaluate")
daily_refresh = dg.define_asset_job("daily_refresh", selection=DAILY_GROUPS)
# Everything but the partitioned raw logs: rebuild from the days already stored.
rebuild = dg.define_asset_job("rebuild", selection=DAILY_GROUPS - dg.AssetSelection.assets("raw_interactions"))
# Prompts, profiles and embeddings, one run per shard: a backfill of every shard queues on the `gpu` pool.
llm_profiles = dg.define_asset_job("llm_profiles", selection=dg.AssetSelection.groups("llm"))

defs = dg.Definitions(
    assets=dg.load_assets_from_modules(modules),
    asset_checks=dg.load_asset_checks_from_modules(modules),
    jobs=[daily_refresh, rebuild, llm_profiles],
    schedules=[dg.build_schedule_from_partitioned_job(daily_refresh, hour_of_day=2, minute_of_hour=0)],
    resources=build_resources(settings),
)
