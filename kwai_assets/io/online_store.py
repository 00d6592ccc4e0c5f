"""Vectors in Redis for online serving, switched atomically between versions.

Layout (``prefix`` defaults to ``kwai``):

    {prefix}:current                    the live version number
    {prefix}:v{n}:{kind}:{raw_id}       float32 little-endian bytes, dim x 4 bytes (kind: user | item)
    {prefix}:v{n}:rec:{raw_user_id}     JSON [[raw_item_id, score], ...], best first
    {prefix}:v{n}:meta                  hash: dim, users, items, recommendations, started_at, published_at,
                                        and what the exporter adds (the model runs the vectors came from)

An export writes a whole new version with pipelined SETs, then moves
``{prefix}:current`` to it in one command, then deletes versions older than the
previous one (kept for readers that started before the switch, and for
rollback). Readers resolve the version and fetch their keys inside one Lua
script, so a read sees one version, old or new, never a mix.
"""
from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from kwai_assets.io.urls import safe_url

READ = """
local version = redis.call('GET', KEYS[1])
if not version then return {false} end
local out = {version}
for i, id in ipairs(ARGV) do
  out[i + 1] = redis.call('GET', KEYS[2] .. version .. ':' .. id)
end
return out
"""

INFO = """
local version = redis.call('GET', KEYS[1])
if not version then return {false} end
return {version, redis.call('HGETALL', KEYS[2] .. version .. ':meta')}
"""


@dataclass
class ExportReport:
    version: int
    users: int
    items: int
    seconds: float
    removed_versions: list[int]
    recommendations: int = 0

Recommendations = dict[str, list[tuple[str, float]]]     # raw user id -> [(raw item id, score)], best first


class OnlineStore:
    def __init__(self, client, prefix: str = "kwai", batch: int = 5_000):
        self.client, self.prefix, self.batch = client, prefix, batch
        self._read = client.register_script(READ)
        self._info = client.register_script(INFO)

    @classmethod
    def connect(cls, url: str, password: str | None = None, prefix: str = "kwai") -> OnlineStore:
        """Connect and ping, so a Redis that is down fails here with a clear message."""
        import redis

        client = redis.Redis.from_url(url, password=password or None, socket_connect_timeout=3)
        try:
            client.ping()
        except redis.exceptions.RedisError as err:
            raise ConnectionError(f"cannot reach Redis at {safe_url(url)} ({err}); "
                                  "set KWAI_REDIS_URL / KWAI_REDIS_PASSWORD "
                                  "or start a server") from err
        return cls(client, prefix)

    def current(self) -> int | None:
        value = self.client.get(f"{self.prefix}:current")
        return int(value) if value is not None else None

    def _write(self, version: int, kind: str, ids: Iterable[str], vectors: np.ndarray) -> None:
        data = np.ascontiguousarray(vectors, dtype="<f4")
        ids = list(ids)
        for start in range(0, len(ids), self.batch):
            pipe = self.client.pipeline(transaction=False)
            pipe.mset({f"{self.prefix}:v{version}:{kind}:{raw}": data[start + i].tobytes()
                       for i, raw in enumerate(ids[start:start + self.batch])})
            pipe.execute()

    def _write_lists(self, version: int, lists: Recommendations) -> None:
        users = list(lists)
        for start in range(0, len(users), self.batch):
            self.client.mset({f"{self.prefix}:v{version}:rec:{user}": json.dumps(lists[user])
                              for user in users[start:start + self.batch]})

    def export(self, user_ids: list[str], user_vectors: np.ndarray, item_ids: list[str] | None = None,
               item_vectors: np.ndarray | None = None, recommendations: Recommendations | None = None,
               meta: dict[str, str] | None = None) -> ExportReport:
        """Write a new version, switch to it atomically, drop versions older than the previous one. `meta` goes
        into the version's meta hash (the model runs behind it, say), which `info` reads back."""
        start = time.perf_counter()
        if len(user_ids) != len(user_vectors):
            raise ValueError(f"{len(user_ids)} user ids for {len(user_vectors)} vectors")
        version = int(self.client.incr(f"{self.prefix}:version_seq"))
        # meta first: a version an export started is always found by the clean-up, even after a crash
        self.client.hset(f"{self.prefix}:v{version}:meta", mapping={
            "dim": int(user_vectors.shape[1]), "users": len(user_ids), "items": len(item_ids or []),
            "recommendations": len(recommendations or {}), "started_at": time.time(), **(meta or {})})
        self._write(version, "user", user_ids, user_vectors)
        if item_ids is not None and item_vectors is not None:
            self._write(version, "item", item_ids, item_vectors)
        if recommendations:
            self._write_lists(version, recommendations)
        previous = self.current()
        self.client.hset(f"{self.prefix}:v{version}:meta", "published_at", time.time())
        self.client.set(f"{self.prefix}:current", version)
        removed = self._remove_older_than(previous if previous is not None else version)
        return ExportReport(version, len(user_ids), len(item_ids or []), time.perf_counter() - start, removed,
                            len(recommendations or {}))

    def _remove_older_than(self, keep_from: int) -> list[int]:
        removed = set()
        for key in self.client.scan_iter(match=f"{self.prefix}:v[0-9]*:meta", count=10_000):
            version = int(key.decode().split(":")[-2][1:])
            if version < keep_from:
                removed.add(version)
        for version in removed:
            keys = list(self.client.scan_iter(match=f"{self.prefix}:v{version}:*", count=10_000))
            for start in range(0, len(keys), self.batch):
                self.client.unlink(*keys[start:start + self.batch])
        return sorted(removed)

    def _values(self, keys: list[str]) -> tuple[int | None, list[bytes | None]]:
        """(live version, the value of each `{prefix}:v{version}:{key}`, None where absent), in one Lua call."""
        out = self._read(keys=[f"{self.prefix}:current", f"{self.prefix}:v"], args=keys)
        if not out or out[0] is None:
            return None, [None] * len(keys)
        return int(out[0]), list(out[1:])        # a missing key is Lua false: nil here, its place kept

    def info(self) -> tuple[int | None, dict[str, str]]:
        """(live version, its meta hash), read together in one Lua call; (None, {}) before the first export."""
        out = self._info(keys=[f"{self.prefix}:current", f"{self.prefix}:v"])
        if not out or out[0] is None:
            return None, {}
        flat = [v.decode() for v in out[1]]
        return int(out[0]), dict(zip(flat[::2], flat[1::2], strict=True))

    def get_vectors(self, kind: str, raw_ids: list[str]) -> tuple[int | None, list[np.ndarray | None]]:
        """(version, vectors) of several ids, all from one version."""
        version, values = self._values([f"{kind}:{r}" for r in raw_ids])
        return version, [np.frombuffer(v, dtype="<f4") if v is not None else None for v in values]

    def get_user_vector(self, raw_id: str) -> np.ndarray | None:
        return self.get_vectors("user", [raw_id])[1][0]

    def get_lists(self, raw_user_ids: list[str]) -> tuple[int | None, list[list[tuple[str, float]] | None]]:
        """(version, each user's whole recommendation list or None), all from one version."""
        version, values = self._values([f"rec:{r}" for r in raw_user_ids])
        return version, [[(str(i), float(s)) for i, s in json.loads(v)] if v is not None else None for v in values]

    def get_recommendations(self, raw_user_id: str, k: int = 50) -> list[tuple[str, float]]:
        """The user's top k (raw item id, score) of the live version, best first; [] for an unknown user."""
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        return (self.get_lists([raw_user_id])[1][0] or [])[:k]


def round_trip_problems(version: int | None, got: list[np.ndarray | None], expected: list[np.ndarray]) -> list[str]:
    """What a read-back of the live version got wrong: no live version, missing ids, or bits that differ."""
    if version is None:
        return ["no live version in Redis"]
    missing = sum(g is None for g in got)
    wrong = sum(g is not None and not np.array_equal(g, np.asarray(e, np.float32))
                for g, e in zip(got, expected, strict=True))
    return ([f"{missing} of {len(got)} ids missing from version {version}"] if missing else []) + \
        ([f"{wrong} of {len(got)} vectors differ from the Parquet in version {version}"] if wrong else [])


def lists_problems(version: int | None, got: list[list[tuple[str, float]] | None],
                   expected: list[list[tuple[str, float]]]) -> list[str]:
    """What a read-back of recommendation lists got wrong: no live version, missing users, or lists that differ."""
    if version is None:
        return ["no live version in Redis"]
    missing = sum(g is None for g in got)
    wrong = sum(g is not None and g != e for g, e in zip(got, expected, strict=True))
    return ([f"{missing} of {len(got)} users' recommendations missing from version {version}"] if missing else []) + \
        ([f"{wrong} of {len(got)} users' recommendations differ from the Parquet in version {version}"]
         if wrong else [])
