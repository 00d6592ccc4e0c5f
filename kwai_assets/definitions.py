"""The one Definitions object: assets, checks, jobs, schedules, resources."""
from __future__ import annotations

import os

import dagster as dg

from kwai_assets.assets import evaluate, graph, ingest, llm, models, next_poi, prepare, recall, serve
from kwai_assets.jobs import JOBS, SCHEDULES
from kwai_assets.resources import (
    EngineResource,
    LLMResource,
    ModelStoreResource,
    ParquetIOManager,
    RedisResource,
    SourceResource,
    WarehouseResource,
)
from kwai_assets.settings import Settings, current

MODULES = [ingest, prepare, graph, llm, models, next_poi, recall, serve, evaluate]


def secret(variable: str, value: str) -> str | dg.EnvVar:
    """`value`, or, when it is what `variable` holds, that variable: read at run time, never stored in the
    definitions or shown in the UI (passwords, and URIs that carry one)."""
    return dg.EnvVar(variable) if value and value == os.environ.get(variable) else value


def build_resources(settings: Settings) -> dict[str, object]:
    home = str(settings.home)
    return {
        "io_manager": ParquetIOManager(home=home, url=settings.warehouse),
        "warehouse": WarehouseResource(home=home, url=settings.warehouse),
        "source": SourceResource(kind=settings.source, preset=settings.preset, seed=settings.seed,
                                 start_date=settings.start_date, data_dir=settings.data_dir),
        # a tracking database's URI carries its password
        "models": ModelStoreResource(home=home, artifacts=settings.mlflow_artifacts,
                                     tracking_uri=secret("KWAI_MLFLOW_TRACKING_URI", settings.mlflow_tracking_uri)),
        "engine": EngineResource(kind=settings.engine),
        "llm": LLMResource(backend=settings.llm_backend, model=settings.llm_model, cache_dir=str(settings.llm_cache),
                           encoder=settings.encoder, encoder_model=settings.encoder_model,
                           encoder_cache_dir=str(settings.encoder_cache)),
        "redis": RedisResource(url=settings.redis_url, home=home,
                               password=secret("KWAI_REDIS_PASSWORD", os.environ.get("KWAI_REDIS_PASSWORD", ""))),
    }


def build_executor(settings: Settings) -> dg.ExecutorDefinition | None:
    """Dagster's own multiprocess executor (None: the default), or its Kubernetes one: a pod per step."""
    if settings.executor != "k8s":
        return None
    try:
        from dagster_k8s import k8s_job_executor
    except ImportError as missing:
        raise ImportError("KWAI_EXECUTOR=k8s needs dagster-k8s: pip install -e '.[k8s]'") from missing
    return k8s_job_executor


def build_definitions(settings: Settings) -> dg.Definitions:
    """The whole graph over `settings` (the tests build one per temporary home)."""
    return dg.Definitions(
        executor=build_executor(settings),
        assets=dg.load_assets_from_modules(MODULES),
        asset_checks=dg.load_asset_checks_from_modules(MODULES),
        jobs=JOBS,
        schedules=SCHEDULES,
        resources=build_resources(settings),
    )


defs = build_definitions(current())
