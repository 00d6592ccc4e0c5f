"""A bounded load test of `GET /users/{id}/recommendations` on loopback: 100,000 users' vectors and 50-item lists in
a local Redis (the embedded server), the service started as `kwai serve` in its own process, then a fixed number
of requests at each offered rate, and it stops.

The load is open-loop: request i is due at start + i / rate whatever happened before, and its latency runs from
that due time to the last byte of the response, so a stalled server shows in the tail instead of slowing the
sender down (no coordinated omission). Requests go over keep-alive HTTP/1.1 connections from one asyncio client;
a last run sends back to back on every connection for the most the service answers. Client, service and Redis
share the machine's cores, so a stall of any of them (or of a neighbour on the machine) shows in the tail: each
rate runs `--repeats` times, and the table gives the median run's figures and the worst run's p99.

Usage: python benchmarks/bench_serve.py [--users 100000] [--requests 5000] [--repeats 3] [--rates 250,500,1000]
"""
from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import table  # noqa: E402

from kwai_assets.io.online_store import OnlineStore  # noqa: E402
from kwai_assets.io.redis_server import free_port, local_redis  # noqa: E402

LIST_LEN, DIM = 50, 64


def publish(url: str, users: int, seed: int = 0) -> tuple[list[str], float]:
    """`users` random vectors and 50-item lists under raw ids, as one online-store version; (ids, seconds)."""
    rng = np.random.default_rng(seed)
    ids = [f"u{i}" for i in range(users)]
    items = rng.integers(0, 200_000, size=(users, LIST_LEN))
    scores = -np.sort(-rng.random((users, LIST_LEN)), axis=1)
    lists = {u: [(f"p{i}", float(s)) for i, s in zip(row, score, strict=True)]
             for u, row, score in zip(ids, items, scores, strict=True)}
    start = time.perf_counter()
    OnlineStore.connect(url).export(ids, rng.normal(size=(users, DIM)).astype(np.float32), recommendations=lists)
    return ids, time.perf_counter() - start


async def _get(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: str) -> int:
    writer.write(f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode())
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length"))
    await reader.readexactly(length)
    return status


async def load(port: int, paths: list[str], rate: float | None, connections: int) -> dict[str, float]:
    """Send every path once: at `rate` per second (open loop), or back to back on each connection when None."""
    pool: asyncio.Queue = asyncio.Queue()
    for _ in range(connections):
        pool.put_nowait(await asyncio.open_connection("127.0.0.1", port))
    latencies, errors = np.zeros(len(paths)), 0
    start = time.perf_counter()

    async def one(i: int) -> None:
        nonlocal errors
        due = start + i / rate if rate else time.perf_counter()
        if rate:
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
        connection = await pool.get()
        try:
            errors += await _get(*connection, paths[i]) != 200
        except (OSError, asyncio.IncompleteReadError, ValueError, RuntimeError):   # counted, connection replaced
            errors += 1
            connection[1].close()
            connection = await asyncio.open_connection("127.0.0.1", port)
        finally:
            pool.put_nowait(connection)
        latencies[i] = time.perf_counter() - due

    if rate:
        await asyncio.gather(*(one(i) for i in range(len(paths))))
    else:
        async def worker(w: int) -> None:
            for i in range(w, len(paths), connections):
                await one(i)
        await asyncio.gather(*(worker(w) for w in range(connections)))
    seconds = time.perf_counter() - start
    while not pool.empty():
        pool.get_nowait()[1].close()
    ms = latencies * 1000
    return {"achieved": len(paths) / seconds, "p50": float(np.percentile(ms, 50)),
            "p99": float(np.percentile(ms, 99)), "max": float(ms.max()), "errors": errors}


def wait_until_up(port: int, server: subprocess.Popen, timeout_s: float = 60) -> None:
    import socket

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"kwai serve exited with {server.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"kwai serve did not answer on port {port} within {timeout_s} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=5_000, help="requests per run")
    parser.add_argument("--repeats", type=int, default=3, help="runs per offered rate")
    parser.add_argument("--rates", default="250,500,1000", help="offered requests/s, comma-separated")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--k", type=int, default=10)
    args = parser.parse_args()
    rng = np.random.default_rng(1)
    with tempfile.TemporaryDirectory() as tmp, local_redis(Path(tmp)) as url:
        ids, export_s = publish(url, args.users)
        print(f"published {args.users:,} users (vectors and {LIST_LEN}-item lists) in {export_s:.1f} s", flush=True)
        port = free_port()
        env = {**os.environ, "KWAI_HOME": str(Path(tmp) / "home"), "KWAI_REDIS_URL": url}
        server = subprocess.Popen([sys.executable, "-m", "kwai_assets.cli", "serve", "--port", str(port)], env=env,
                                  stdout=subprocess.DEVNULL)
        try:
            wait_until_up(port, server)
            rows = []
            warm = [f"/users/{u}/recommendations?k={args.k}" for u in rng.choice(ids, 1000)]
            asyncio.run(load(port, warm, None, args.connections))
            offered: list[float | None] = [float(r) for r in args.rates.split(",")] + [None]
            for rate in offered:
                runs = []
                for _ in range(args.repeats):
                    paths = [f"/users/{u}/recommendations?k={args.k}" for u in rng.choice(ids, args.requests)]
                    runs.append(asyncio.run(load(port, paths, rate, args.connections)))
                runs.sort(key=lambda r: r["p99"])
                got = runs[len(runs) // 2]
                name = "back to back" if rate is None else f"{rate:,.0f}/s"
                rows.append([name, f"{args.repeats} x {args.requests:,}", got["achieved"], got["p50"], got["p99"],
                             runs[-1]["p99"], runs[-1]["max"],
                             sum(r["errors"] for r in runs)])
                p99s = ", ".join(f"{r['p99']:.1f}" for r in runs)
                print(f"offered {name}: p99 of each run {p99s} ms", flush=True)
        finally:
            server.terminate()
            server.wait(10)
    print(f"\nGET /users/{{id}}/recommendations?k={args.k}, {args.users:,} users in Redis, "
          f"{args.connections} keep-alive connections, {os.cpu_count()} cores shared by client, service and Redis\n")
    print(table(["offered", "requests", "achieved req/s", "p50 ms", "p99 ms", "worst run's p99 ms", "max ms",
                 "errors"], rows))


if __name__ == "__main__":
    main()
