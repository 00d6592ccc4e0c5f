"""What the service reads from the warehouse: id maps, item descriptions, profiles, check-ins, candidates, the
faiss item indexes. Whole small tables and indexes are cached until their file changes (a re-materialization
replaces files atomically, so a new version is picked up on the next request; on an object store, within
`recheck_s`); per-user rows are read with DuckDB straight from the Parquet, filtered on `user_idx`.
"""
from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import pandas as pd

from kwai_assets.core.ann import INDEX_ASSET, search, stored_channels, stored_index
from kwai_assets.io.warehouse import Warehouse

T = TypeVar("T")
DESCRIBED = ["category", "title", "poi_id"]           # item attribute columns an item description carries
POI_COLUMNS = ["poi_id", "name", "lat", "lon"]         # and of its POI, where the source has them
SIMILAR_CHANNEL = "item2vec"                          # the item-to-item channel: cosine over item2vec vectors


class NotFound(LookupError):
    """An id, or a stored asset, that is not there: the service answers 404 with this message."""


@dataclass(frozen=True)
class IdMap:
    """raw id <-> contiguous index of one entity."""
    to_idx: dict[str, int]
    to_raw: np.ndarray            # object array indexed by idx ("" at the padding index 0 and at gaps)

    @classmethod
    def of(cls, id_maps: pd.DataFrame, entity: str) -> IdMap:
        rows = id_maps[id_maps["entity"] == entity]
        to_raw = np.full(int(rows["idx"].max()) + 1 if len(rows) else 1, "", dtype=object)
        to_raw[rows["idx"].to_numpy()] = rows["raw_id"].to_numpy()
        return cls(dict(zip(rows["raw_id"], rows["idx"].astype(int), strict=True)), to_raw)

    def raw(self, idx: int) -> str:
        return str(self.to_raw[idx]) if 0 < idx < len(self.to_raw) else ""


def plain(value: Any) -> Any:
    """A JSON-safe value: numpy scalars unwrapped, timestamps in ISO 8601, NaN, NaT and NA as None."""
    if value is None or value is pd.NaT or value is pd.NA:
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    return value


def records(df: pd.DataFrame) -> list[dict[str, Any]]:
    return [{k: plain(v) for k, v in row.items()} for row in df.to_dict("records")]


class WarehouseLookup:
    def __init__(self, warehouse: Warehouse, recheck_s: float | None = None):
        """`recheck_s`: how long a listing or a file's version is trusted before it is asked again; 0 on a local
        disk (a stat is cheap), 5 s on an object store (where every question is a request)."""
        self.warehouse = warehouse
        self.recheck_s = (0.0 if warehouse.local else 5.0) if recheck_s is None else recheck_s
        self._cache: dict[str, tuple[tuple, object]] = {}
        self._asked: dict[str, tuple[float, object]] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()

    # -- caching ---------------------------------------------------------------------------------------------------
    def _recent(self, key: str, ask: Callable[[], T]) -> T:
        """`ask()`, its answer reused for `recheck_s` seconds."""
        now = time.monotonic()
        hit = self._asked.get(key)
        if hit is not None and now - hit[0] < self.recheck_s:
            return hit[1]
        answer = ask()
        self._asked[key] = (now, answer)
        return answer

    def _files(self, asset: str) -> list[str]:
        return self._recent(f"files:{asset}", lambda: self.warehouse.files(asset))

    def _cached(self, key: str, files: Callable[[], list[str]], build: Callable[[], T]) -> T:
        """`build()`, kept until one of `files()` is replaced or appears or goes; one build per key at a time (the
        requests that arrive meanwhile wait for it)."""
        with self._lock:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            stamp = self._recent(f"stamp:{key}", lambda: tuple((f, self.warehouse.version(f)) for f in files()))
            hit = self._cache.get(key)
            if hit is not None and hit[0] == stamp:
                return hit[1]
            value = build()
            self._cache[key] = (stamp, value)
            return value

    def _table(self, asset: str) -> pd.DataFrame:
        if not self._files(asset):
            raise NotFound(f"asset {asset!r} is not materialized under {self.warehouse.root}")
        return self._cached(asset, lambda: self._files(asset), lambda: self.warehouse.read(asset)
                            if self.warehouse.exists(asset) else
                            self.warehouse.read(asset, self.warehouse.partitions(asset)))

    def _user_rows(self, asset: str, user_idx: int, split: str | None = None) -> pd.DataFrame:
        """The rows of `asset` whose user_idx is `user_idx` (and of one split), in stored order; an empty frame when
        the asset is not stored."""
        files = self._files(asset)
        if not files:
            return pd.DataFrame()
        where, params = ("user_idx = ?", [user_idx]) if split is None else ("user_idx = ? AND split = ?",
                                                                             [user_idx, split])
        with self.warehouse.connect() as con:      # paths as a parameter: never parsed as SQL, never expanded as globs
            return con.execute(f"SELECT * FROM read_parquet(?, union_by_name = true) WHERE {where}",
                               [[str(f) for f in files], *params]).df()

    # -- ids -------------------------------------------------------------------------------------------------------
    def ids(self, entity: str) -> IdMap:
        return self._cached(f"ids:{entity}", lambda: self._files("id_maps"),
                            lambda: IdMap.of(self._table("id_maps"), entity))

    def user_idx(self, raw: str) -> int:
        idx = self.ids("user").to_idx.get(raw)
        if idx is None:
            raise NotFound(f"unknown user {raw!r}: not in the id map of {self.warehouse.root}")
        return idx

    def item_idx(self, raw: str) -> int:
        idx = self.ids("item").to_idx.get(raw)
        if idx is None:
            raise NotFound(f"unknown item {raw!r}: not in the id map of {self.warehouse.root}")
        return idx

    def search_users(self, prefix: str, limit: int) -> list[str]:
        """Raw user ids that start with `prefix`, in index order (the first `limit`)."""
        raws = self.ids("user").to_raw[1:]
        return [str(r) for r in raws if r and str(r).startswith(prefix)][:limit]

    # -- items -----------------------------------------------------------------------------------------------------
    def _item_table(self) -> pd.DataFrame:
        """One row per item_idx: raw id, category / title / POI, and the POI's name and coordinates when known."""
        def files() -> list[str]:
            return [f for asset in ("id_maps", "item_attributes", "poi_attributes") for f in self._files(asset)]

        def build() -> pd.DataFrame:
            items = pd.DataFrame({"item": self.ids("item").to_raw})
            attributes = self._table("item_attributes")
            keep = ["item_id"] + [c for c in DESCRIBED if c in attributes.columns]
            items = items.merge(attributes[keep], how="left", left_on="item", right_on="item_id").drop(
                columns="item_id")
            if self.warehouse.exists("poi_attributes") and "poi_id" in items.columns:
                pois = self._table("poi_attributes")     # `name` only where the source has one (synthetic)
                items = items.merge(pois[[c for c in POI_COLUMNS if c in pois.columns]], how="left", on="poi_id")
            return items.astype(object).where(items.notna(), None)

        return self._cached("items", files, build)

    def describe(self, item_idx: list[int] | np.ndarray) -> list[dict[str, Any]]:
        table = self._item_table()
        return records(table.iloc[np.asarray(item_idx, dtype=np.int64)])

    # -- similar items ---------------------------------------------------------------------------------------------
    def channels(self) -> list[str]:
        return self._recent("channels", lambda: stored_channels(self.warehouse))

    def similar(self, raw_item: str, k: int, channel: str = SIMILAR_CHANNEL) -> list[tuple[str, float]]:
        """The k items nearest `raw_item` in the channel's stored HNSW index (itself excluded)."""
        if channel not in self.channels():
            raise NotFound(f"no item index {channel!r}; stored: {', '.join(self.channels()) or 'none'} "
                           "(materialize item_index)")
        index = self._cached(f"index:{channel}", lambda: [self.warehouse.file(INDEX_ASSET, f"{channel}.faiss")],
                             lambda: stored_index(self.warehouse, channel))
        idx = self.item_idx(raw_item)
        try:
            query = index.reconstruct(idx)
        except RuntimeError as err:          # faiss: the id is not in the index
            raise NotFound(f"item {raw_item!r} has no vector in the {channel} index") from err
        scores, found = search(index, query[None, :], k + 1)
        ids = self.ids("item")
        return [(ids.raw(int(i)), float(s)) for s, i in zip(scores[0], found[0], strict=True)
                if i >= 0 and i != idx][:k]

    # -- one user --------------------------------------------------------------------------------------------------
    def profile(self, user_idx: int) -> dict[str, Any]:
        """The user's prompt (the JSON document the LLM read) and the profile it wrote."""
        prompts = self._user_rows("user_prompts", user_idx)
        profiles = self._user_rows("user_profiles", user_idx)
        if prompts.empty and profiles.empty:
            raise NotFound(f"user {self.ids('user').raw(user_idx)!r} has no prompt or profile "
                           "(materialize user_prompts and user_profiles)")
        return {"prompt": prompts["prompt"].iloc[0] if len(prompts) else None,
                "document": prompts["document"].iloc[0] if len(prompts) else None,
                "profile": profiles["profile"].iloc[0] if len(profiles) else None}

    def places(self, user_idx: int, split: str) -> list[dict[str, Any]]:
        """The user's check-ins of one split, one row per POI: visits, first and last visit, in first-visit order."""
        rows = self._user_rows("checkins", user_idx, split)
        if rows.empty:
            return []
        grouped = rows.groupby("poi_idx", sort=False).agg(lat=("lat", "first"), lon=("lon", "first"),
                                                         category_idx=("category_idx", "first"),
                                                         visits=("ts", "size"), first=("ts", "min"),
                                                         last=("ts", "max")).reset_index()
        pois, categories = self.ids("poi"), self.ids("category")
        names = self._poi_names()
        grouped["poi"] = [pois.raw(int(i)) for i in grouped["poi_idx"]]
        grouped["name"] = [names.get(p) for p in grouped["poi"]]
        grouped["category"] = [categories.raw(int(i)) for i in grouped["category_idx"]]
        return records(grouped[["poi", "name", "category", "lat", "lon", "visits", "first", "last"]])

    def _poi_names(self) -> dict[str, str]:
        if not self._files("poi_attributes"):
            return {}

        def build() -> dict[str, str]:
            pois = self._table("poi_attributes")
            return dict(zip(pois["poi_id"], pois["name"], strict=True)) if "name" in pois.columns else {}

        return self._cached("poi_names", lambda: self._files("poi_attributes"), build)

    def interactions(self, user_idx: int, split: str) -> pd.DataFrame:
        """(item_idx, ts) of the user's interactions in one split, in time order."""
        rows = self._user_rows("splits", user_idx, split)
        return rows[["item_idx", "ts"]] if len(rows) else pd.DataFrame({"item_idx": [], "ts": []})

    def candidates(self, user_idx: int, per_channel: int) -> dict[str, tuple[list[int], list[int]]]:
        """Each recall channel's best `per_channel` items among the user's merged candidates: (item_idx, the
        channel's own rank), by that rank (an item the merge cut leaves a gap in the ranks)."""
        rows = self._user_rows("candidates", user_idx)
        out = {}
        for column in [c for c in rows.columns if c.startswith("rank_")]:
            ranked = rows[rows[column].notna()].sort_values(column, kind="stable").head(per_channel)
            out[column.removeprefix("rank_")] = (ranked["item_idx"].astype(int).tolist(),
                                                 ranked[column].astype(int).tolist())
        return out
