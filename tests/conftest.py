"""Shared fixtures: a tiny synthetic world and the whole graph materialized on it once."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import dagster as dg
import pytest

from kwai_assets.definitions import build_resources, defs
from kwai_assets.io.redis_server import BINARY, local_redis
from kwai_assets.io.warehouse import Warehouse
from kwai_assets.settings import Settings

ALL = list(defs.assets) + list(defs.asset_checks)
RAW = dg.AssetSelection.assets("raw_interactions")
SHARDED = dg.AssetSelection.assets("user_profiles", "item_profiles", "user_llm_embeddings", "item_llm_embeddings")
SHARDS = [str(s) for s in range(4)]
ONLINE = dg.AssetSelection.assets("online_store")
# a small interest model: the defaults train for minutes on a CPU
INTEREST = {"dim": 32, "depth": 1, "heads": 2, "head_dim": 16, "n_experts": 4, "epochs": 3, "negatives": 128,
            "long_len": 50, "short_len": 5}
RUN_CONFIG = {"ops": {"interest_model": {"config": INTEREST}}}


def tiny_settings(home: Path, **changes: object) -> Settings:
    base = Settings(home=home, source="synthetic", preset="tiny", data_dir="", start_date="2026-01-01", seed=7)
    return dataclasses.replace(base, **changes)


def ingest(settings: Settings, first: str, last: str, **kwargs: object) -> dg.ExecuteInProcessResult:
    """raw_interactions for the days first..last, in one run (single-run backfill policy)."""
    return dg.materialize(ALL, resources=build_resources(settings), selection=RAW, tags={
        "dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last}, **kwargs)


def build_rest(settings: Settings, **kwargs: object) -> dg.ExecuteInProcessResult:
    """Everything downstream of (and beside) raw_interactions, but the LLM shards and Redis."""
    kwargs.setdefault("run_config", RUN_CONFIG)
    return dg.materialize(ALL, resources=build_resources(settings),
                          selection=dg.AssetSelection.all() - RAW - SHARDED - ONLINE, **kwargs)


def build_shard(settings: Settings, shard: str, resources: dict | None = None,
                selection: dg.AssetSelection = SHARDED, **kwargs: object) -> dg.ExecuteInProcessResult:
    """Profiles and embeddings of one shard (template backend unless `resources` says otherwise)."""
    return dg.materialize(ALL, resources={**build_resources(settings), **(resources or {})}, selection=selection,
                          partition_key=shard, **kwargs)


def checks(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


@pytest.fixture(scope="session")
def built(tmp_path_factory) -> tuple[Settings, dg.ExecuteInProcessResult]:
    """The whole graph on the tiny preset (14 days), materialized once for the session."""
    settings = tiny_settings(tmp_path_factory.mktemp("kwai"))
    assert ingest(settings, "2026-01-01", "2026-01-14").success
    result = build_rest(settings)
    assert result.success
    for shard in SHARDS:
        assert build_shard(settings, shard).success
    return settings, result


@pytest.fixture(scope="session")
def warehouse(built) -> Warehouse:
    return Warehouse(built[0].home)


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory):
    """A real redis-server on a free loopback port for the whole session."""
    if BINARY is None:
        pytest.skip("no redis-server binary on PATH (.ci/run installs Debian's redis-server)")
    with local_redis(tmp_path_factory.mktemp("redis")) as url:
        yield url
