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
AFTER_SHARDS = SHARDED.downstream() - SHARDED - ONLINE          # the adapter and the evaluation
# small models: the defaults train for minutes on a CPU
INTEREST = {"dim": 32, "depth": 1, "heads": 2, "head_dim": 16, "n_experts": 4, "epochs": 3, "negatives": 128,
            "long_len": 50, "short_len": 5}
CF = {"dim": 32, "lr": 5e-3, "epochs": 20, "eval_every": 5, "patience": 2}
RUN_CONFIG = {"ops": {"interest_model": {"config": INTEREST}, "cf_model": {"config": CF}}}
# on ~300 users the CF signal is thin and a stronger pull towards the LLM side pays (0.01 is the default,
# measured on `small`; with 0.01 here aligned and alone tie)
AFTER_SHARDS_CONFIG = {"ops": {"adapter": {"config": {"cf": CF, "align_weight": 0.1}}}}


class Runs:
    """Several in-process runs read as one: materializations and check evaluations of all of them."""

    def __init__(self, *results: dg.ExecuteInProcessResult):
        self.results = results

    @property
    def success(self) -> bool:
        return all(r.success for r in self.results)

    def asset_materializations_for_node(self, node: str) -> list[dg.AssetMaterialization]:
        return [m for r in self.results for m in r.asset_materializations_for_node(node)]

    def get_asset_check_evaluations(self) -> list[dg.AssetCheckEvaluation]:
        return [e for r in self.results for e in r.get_asset_check_evaluations()]


def tiny_settings(home: Path, **changes: object) -> Settings:
    base = Settings(home=home, source="synthetic", preset="tiny", data_dir="", start_date="2026-01-01", seed=7)
    return dataclasses.replace(base, **changes)


def ingest(settings: Settings, first: str, last: str, **kwargs: object) -> dg.ExecuteInProcessResult:
    """raw_interactions for the days first..last, in one run (single-run backfill policy)."""
    return dg.materialize(ALL, resources=build_resources(settings), selection=RAW, tags={
        "dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last}, **kwargs)


def build_rest(settings: Settings, selection: dg.AssetSelection | None = None,
               **kwargs: object) -> dg.ExecuteInProcessResult:
    """Everything downstream of (and beside) raw_interactions that does not need the LLM shards or Redis."""
    kwargs.setdefault("run_config", RUN_CONFIG)
    selection = selection or dg.AssetSelection.all() - RAW - SHARDED.downstream() - ONLINE
    return dg.materialize(ALL, resources=build_resources(settings), selection=selection, **kwargs)


def build_shard(settings: Settings, shard: str, resources: dict | None = None,
                selection: dg.AssetSelection = SHARDED, **kwargs: object) -> dg.ExecuteInProcessResult:
    """Profiles and embeddings of one shard (template backend unless `resources` says otherwise)."""
    return dg.materialize(ALL, resources={**build_resources(settings), **(resources or {})}, selection=selection,
                          partition_key=shard, **kwargs)


def checks(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


@pytest.fixture(scope="session")
def built(tmp_path_factory) -> tuple[Settings, Runs]:
    """The whole graph on the tiny preset (14 days) but Redis, materialized once for the session:
    the days, what they feed, the LLM shards, then what needs the shards."""
    settings = tiny_settings(tmp_path_factory.mktemp("kwai"))
    assert ingest(settings, "2026-01-01", "2026-01-14").success
    rest = build_rest(settings)
    assert rest.success
    for shard in SHARDS:
        assert build_shard(settings, shard).success
    after = build_rest(settings, AFTER_SHARDS, run_config=AFTER_SHARDS_CONFIG)
    assert after.success
    return settings, Runs(rest, after)


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
