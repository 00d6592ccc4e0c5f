"""The Redis online store against a real redis-server on a free loopback port."""
import dataclasses
import hashlib
import threading
import time
from pathlib import Path

import dagster as dg
import numpy as np
import pytest
from conftest import ALL, ONLINE, checks

from kwai_assets.definitions import build_resources
from kwai_assets.io.online_store import OnlineStore
from kwai_assets.io.redis_server import free_port
from kwai_assets.io.urls import safe_url
from kwai_assets.io.warehouse import Warehouse


@pytest.fixture
def store(redis_url):
    s = OnlineStore.connect(redis_url, prefix=f"t{time.monotonic_ns()}")
    yield s
    for key in s.client.scan_iter(match=f"{s.prefix}:*"):
        s.client.delete(key)


def test_export_round_trips_float32_by_raw_id(store):
    ids = [f"u{i}" for i in range(1000)]
    vectors = np.random.default_rng(0).normal(size=(1000, 16)).astype(np.float32)
    report = store.export(ids, vectors, ["p1"], np.ones((1, 16), np.float32))
    assert report.version == 1 and report.users == 1000 and report.items == 1
    assert np.array_equal(store.get_user_vector("u7"), vectors[7])
    assert store.get_user_vector("nobody") is None
    assert store.client.get(f"{store.prefix}:v1:user:u7") == vectors[7].astype("<f4").tobytes()   # documented layout
    assert np.array_equal(store.get_vectors("item", ["p1"])[1][0], np.ones(16, np.float32))


def test_versions_switch_and_old_ones_are_cleaned(store):
    for value in (1.0, 2.0, 3.0):
        report = store.export(["a"], np.full((1, 4), value, np.float32))
    assert store.current() == 3 and report.removed_versions == [1]
    assert not list(store.client.scan_iter(match=f"{store.prefix}:v1:*"))
    assert list(store.client.scan_iter(match=f"{store.prefix}:v2:*"))        # the previous one is kept
    assert store.get_user_vector("a")[0] == 3.0


def test_a_reader_during_an_export_sees_one_version_never_a_mix(store):
    ids = [f"u{i}" for i in range(20_000)]
    store.export(ids, np.full((len(ids), 8), 1.0, np.float32))
    probe = ["u0", "u9999", "u19999"]
    seen, stop = [], threading.Event()

    def read() -> None:
        while not stop.is_set():
            version, vectors = store.get_vectors("user", probe)
            seen.append((version, {float(v[0]) for v in vectors}))

    reader = threading.Thread(target=read)
    reader.start()
    store.export(ids, np.full((len(ids), 8), 2.0, np.float32))
    store.export(ids, np.full((len(ids), 8), 3.0, np.float32))
    stop.set()
    reader.join()
    assert len(seen) > 5
    assert all(len(values) == 1 and values == {float(version)} for version, values in seen)
    assert {version for version, _ in seen} >= {1, 3}


def test_a_redis_that_is_down_says_so():
    with pytest.raises(ConnectionError, match=r"cannot reach Redis at redis://127.0.0.1:\d+/0"):
        OnlineStore.connect(f"redis://127.0.0.1:{free_port()}/0")


def test_a_redis_that_is_down_never_prints_the_password():
    port = free_port()
    with pytest.raises(ConnectionError) as err:
        OnlineStore.connect(f"redis://admin:s3cr3t-pw@127.0.0.1:{port}/0")
    assert "s3cr3t-pw" not in str(err.value) and "admin" not in str(err.value)
    assert f"127.0.0.1:{port}" in str(err.value)


@pytest.mark.parametrize("url, safe", [
    ("redis://:secret@127.0.0.1:6499/0", "redis://127.0.0.1:6499/0"),
    ("rediss://user:secret@cache.internal:6380/2?password=secret&ssl_cert_reqs=none",
     "rediss://cache.internal:6380/2?ssl_cert_reqs=none"),
    ("redis://127.0.0.1:6379/1", "redis://127.0.0.1:6379/1"),
    ("unix://:secret@/run/redis.sock?db=1", "unix:///run/redis.sock?db=1"),
])
def test_safe_url_drops_user_and_password(url, safe):
    assert safe_url(url) == safe


def test_the_online_store_asset_serves_user_vectors_under_raw_ids(built, redis_url):
    settings = dataclasses.replace(built[0], redis_url=redis_url)
    result = dg.materialize(ALL, resources=build_resources(settings), selection=ONLINE)
    assert result.success and checks(result)["online_store_round_trip"].passed
    wh = Warehouse(settings.home)
    vectors, maps = wh.read("user_vectors"), wh.read("id_maps")
    row = vectors.iloc[len(vectors) // 2]
    raw = maps[(maps.entity == "user") & (maps.idx == row["user_idx"])]["raw_id"].item()
    store = OnlineStore.connect(redis_url)
    assert np.array_equal(store.get_user_vector(raw), np.asarray(row["vector"], np.float32))
    assert int(store.client.hget(f"kwai:v{store.current()}:meta", "items")) == len(wh.read("interest_item_vectors"))


def test_a_redis_that_is_down_fails_the_asset_and_keeps_the_parquet(built):
    settings = dataclasses.replace(built[0], redis_url=f"redis://127.0.0.1:{free_port()}/0")
    path = Path(Warehouse(settings.home).path("user_vectors"))
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    result = dg.materialize(ALL, resources=build_resources(settings), selection=ONLINE, raise_on_error=False)
    assert not result.success
    assert "cannot reach Redis at" in str(result.get_step_failure_events()[0].step_failure_data.error)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before
