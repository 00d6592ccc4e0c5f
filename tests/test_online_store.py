"""The Redis online store against a real redis-server on a free loopback port."""
import shutil
import socket
import subprocess
import threading
import time

import numpy as np
import pytest

from kwai_assets.io.online_store import OnlineStore

REDIS = shutil.which("redis-server")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory):
    if REDIS is None:
        pytest.skip("no redis-server binary on PATH (.ci/run installs Debian's redis-server)")
    port, folder = free_port(), tmp_path_factory.mktemp("redis")
    server = subprocess.Popen([REDIS, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                               "--dir", str(folder)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    for _ in range(100):
        try:
            OnlineStore.connect(url)
            break
        except ConnectionError:
            time.sleep(0.05)
    yield url
    server.terminate()
    server.wait(timeout=10)


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
