"""The project's own Redis-compatible server (valkey-server from a wheel): no system redis-server needed."""
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import redis

from kwai_assets.cli import main
from kwai_assets.io.redis_server import (
    embedded_redis,
    embedded_url,
    local_redis,
    server_binary,
    stop_embedded,
)


def _pid(home: Path) -> int:
    return int((home / "redis" / "redis.pid").read_text())


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:                                   # a zombie is gone too
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


@pytest.fixture
def home(tmp_path):
    yield tmp_path
    stop_embedded(tmp_path)                 # never leave a server behind, whatever the test did


def test_the_server_binary_comes_from_the_wheel_not_the_path():
    binary = server_binary()
    assert binary.is_file() and os.access(binary, os.X_OK) and "site-packages" in binary.parts
    version = subprocess.run([str(binary), "--version"], capture_output=True, text=True, check=True).stdout
    assert "server v=" in version


def test_local_redis_runs_lua_and_pipelines_then_stops(tmp_path):
    with local_redis(tmp_path) as url:
        client = redis.Redis.from_url(url)
        assert url.startswith("redis://127.0.0.1:") and client.ping()
        assert client.config_get("save") == {"save": ""} and client.config_get("appendonly") == {"appendonly": "no"}
        assert client.config_get("bind")["bind"] == "127.0.0.1"
        pipe = client.pipeline(transaction=False)
        pipe.mset({f"k:{i}": f"v{i}".encode() for i in range(100)})
        pipe.execute()
        script = client.register_script("return {redis.call('GET', KEYS[1]), #ARGV}")
        assert script(keys=["k:7"], args=[1, 2]) == [b"v7", 2]
        assert len(list(client.scan_iter(match="k:*"))) == 100
        pid = client.info("server")["process_id"]
    assert not _alive(pid)
    assert not list(tmp_path.glob("*.rdb")) and not list(tmp_path.glob("*.aof"))   # no persistence


def test_embedded_redis_starts_once_and_serves_lua(home):
    url = embedded_redis(home)
    pid = _pid(home)
    assert url.startswith("redis://127.0.0.1:") and url.endswith("/0")
    assert embedded_redis(home) == url and _pid(home) == pid          # the second call finds the same server
    assert embedded_url(home) == url
    client = redis.Redis.from_url(url)
    assert client.ping() and client.info("server")["process_id"] == pid
    client.set("kwai:current", 3)
    assert client.eval("return redis.call('GET', KEYS[1])", 1, "kwai:current") == b"3"
    client.close()
    assert stop_embedded(home) and not _alive(pid)
    assert embedded_url(home) is None and not stop_embedded(home)


def test_embedded_redis_outlives_the_process_that_started_it(home):
    code = "import sys; from kwai_assets.io.redis_server import embedded_redis; print(embedded_redis(sys.argv[1]))"
    url = subprocess.run([sys.executable, "-c", code, str(home)], capture_output=True, text=True, check=True,
                         timeout=60).stdout.strip()
    assert redis.Redis.from_url(url).ping() and embedded_redis(home) == url


def test_two_callers_at_once_share_one_server(home):
    urls: list[str] = []
    threads = [threading.Thread(target=lambda: urls.append(embedded_redis(home))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(urls) == 4 and len(set(urls)) == 1


def test_a_dead_server_is_replaced(home):
    embedded_redis(home)
    pid = _pid(home)
    os.kill(pid, 9)
    deadline = time.monotonic() + 10
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    second = embedded_redis(home)
    assert _pid(home) != pid and redis.Redis.from_url(second).ping()


def test_kwai_redis_start_url_stop(home, monkeypatch, capsys):
    monkeypatch.setenv("KWAI_HOME", str(home))
    monkeypatch.delenv("KWAI_REDIS_URL", raising=False)
    assert main(["redis", "url"]) == 1                       # nothing started yet
    assert main(["redis", "start"]) == 0
    url = capsys.readouterr().out.strip()
    assert redis.Redis.from_url(url).ping()
    assert main(["redis", "url"]) == 0 and capsys.readouterr().out.strip() == url
    assert main(["redis", "stop"]) == 0 and "stopped" in capsys.readouterr().out
    assert embedded_url(home) is None


def test_kwai_redis_url_prints_a_configured_url_without_its_password(home, monkeypatch, capsys):
    monkeypatch.setenv("KWAI_HOME", str(home))
    monkeypatch.setenv("KWAI_REDIS_URL", "redis://:hunter2@10.0.0.5:6380/3")
    assert main(["redis", "url"]) == 0
    assert capsys.readouterr().out.strip() == "redis://10.0.0.5:6380/3"
    assert embedded_url(home) is None                        # a configured Redis starts nothing


def test_no_system_redis_server_is_needed(tmp_path):
    """With an empty PATH, the servers still start."""
    bare = tmp_path / "bin"
    bare.mkdir()
    assert shutil.which("redis-server", path=str(bare)) is None
    code = ("import sys; from pathlib import Path; from kwai_assets.io.redis_server import *\n"
            "home = Path(sys.argv[1]); url = embedded_redis(home); import redis\n"
            "assert redis.Redis.from_url(url).ping()\n"
            "assert stop_embedded(home)\n"
            "with local_redis(home) as url: assert redis.Redis.from_url(url).ping()\nprint('ok')")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "home")], capture_output=True, text=True,
                         env={**os.environ, "PATH": str(bare)}, timeout=60)
    assert out.stdout.strip() == "ok", out.stderr
