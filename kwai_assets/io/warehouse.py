"""The Parquet warehouse: the storage of record for every asset.

Layout under the warehouse's root (``KWAI_WAREHOUSE``; ``<home>/warehouse`` by default): ``<asset>.parquet`` for
an unpartitioned asset, ``<asset>/<partition>.parquet`` for a partitioned one, other files of an asset (its faiss
indexes) in ``<asset>/``, and versions that failed their check in ``_rejected/<asset>/<run_id>.parquet`` (a name
no asset can take, skipped by the catalog as Spark and Hive skip ``_`` folders).

The root is a local path or any URL fsspec opens (``file://``, ``s3://`` with s3fs, ``gs://`` with gcsfs, ...).
Every write is whole or not at all, so a reader never sees half a file and a failed run leaves the previous
version in place: on a local disk the file is written beside its target and renamed; on an object store it is
written to local temporary space and uploaded in one put, which the store makes visible only once complete.

``catalog.duckdb`` under ``<home>`` holds one view per asset over these files for ad-hoc SQL. Views are (re)built
on demand by :meth:`Warehouse.refresh_catalog` rather than on every write: DuckDB allows one writer per database
file, and the multiprocess executor writes many assets at once.
"""
from __future__ import annotations

import os
import re
import tempfile
import uuid
from collections.abc import Callable, Hashable
from pathlib import Path

import duckdb
import fsspec
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem

from kwai_assets.core.sql import frame

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_FILE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*\.[a-z0-9]+$")
REJECTED = "_rejected"


def to_arrow(df: pd.DataFrame) -> pa.Table:
    """DataFrame -> Arrow; a column of equal-length numpy vectors becomes a fixed-size float32 list."""
    columns = {}
    for name in df.columns:
        values = df[name]
        if len(values) and isinstance(values.iloc[0], np.ndarray):
            flat = np.concatenate(values.to_list()).astype(np.float32)
            columns[name] = pa.FixedSizeListArray.from_arrays(pa.array(flat), len(values.iloc[0]))
        else:
            columns[name] = pa.Array.from_pandas(values)
    return pa.table(columns)


def _write_local(target: Path, write: Callable[[str], None]) -> Path:
    """`write(tmp)` to a temporary name beside `target`, then rename: never half a file."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
    try:
        write(str(tmp))
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def write_atomic(path: str | os.PathLike, text: str) -> Path:
    """A local text file written whole or not at all."""
    return _write_local(Path(path), lambda tmp: Path(tmp).write_text(text))


def write_parquet_atomic(df: pd.DataFrame, target: str | os.PathLike) -> Path:
    """A local Parquet file written whole or not at all (the caches use it; the warehouse has `write`)."""
    return _write_local(Path(target), lambda tmp: pq.write_table(to_arrow(df), tmp))


class Warehouse:
    def __init__(self, home: str | os.PathLike, url: str = ""):
        """`home` keeps the catalog; `url` is the warehouse's root (default `<home>/warehouse`)."""
        self.home = Path(home)
        # other processes write the warehouse too: never answer from a cached listing of an object store
        self.fs, root = fsspec.core.url_to_fs(url or str(self.home / "warehouse"), use_listings_cache=False)
        self.local = isinstance(self.fs, LocalFileSystem)
        self._arrow_fs = None if self.local else self.fs      # pyarrow reads local paths itself
        self.root = root.rstrip("/") if self.local else self.fs.unstrip_protocol(root).rstrip("/")
        self.catalog_path = self.home / "catalog.duckdb"

    # -- paths ---------------------------------------------------------------
    @staticmethod
    def _name(asset: str) -> str:
        if not _NAME.match(asset):
            raise ValueError(f"asset name {asset!r} is not a plain identifier")
        return asset

    def path(self, asset: str, partition: str | None = None) -> str:
        """Where the asset (partition) is stored: a local path, or a URL on an object store."""
        self._name(asset)
        if partition is None:
            return f"{self.root}/{asset}.parquet"
        return f"{self.root}/{asset}/{partition}.parquet"

    def file(self, asset: str, name: str) -> str:
        """A non-Parquet file that belongs to `asset` (a faiss index), in the asset's folder."""
        if not _FILE.match(name):
            raise ValueError(f"file name {name!r} is not a plain name with an extension")
        return f"{self.root}/{self._name(asset)}/{name}"

    def _listing(self, folder: str = "") -> dict[str, bool]:
        """Name -> is a folder, of what `folder` (under the root) holds; names starting with "." (temporary files)
        or "_" (rejected versions) are not data and are left out."""
        try:
            entries = self.fs.ls(f"{self.root}/{folder}".rstrip("/"), detail=True)
        except FileNotFoundError:
            return {}
        named = {e["name"].rstrip("/").rsplit("/", 1)[-1]: e["type"] == "directory" for e in entries}
        return {name: is_folder for name, is_folder in sorted(named.items()) if not name.startswith((".", "_"))}

    def _named(self, asset: str, suffix: str) -> list[str]:
        return [n for n, is_folder in self._listing(self._name(asset)).items() if n.endswith(suffix) and not is_folder]

    def partitions(self, asset: str) -> list[str]:
        """Partition keys stored for `asset`, sorted."""
        return [name.removesuffix(".parquet") for name in self._named(asset, ".parquet")]

    def asset_files(self, asset: str, suffix: str) -> list[str]:
        """Names of the asset's other files that end in `suffix` (its stored faiss indexes)."""
        return self._named(asset, suffix)

    def exists(self, asset: str, partition: str | None = None) -> bool:
        return self.fs.exists(self.path(asset, partition))

    def version(self, path: str) -> Hashable:
        """What changes whenever the file at `path` is replaced (None while there is none): a cache key."""
        try:
            return self.fs.ukey(path)
        except FileNotFoundError:
            return None

    # -- write / read --------------------------------------------------------
    def _put(self, target: str, write: Callable[[str], None]) -> str:
        """`write(local_tmp)`, then the file appears at `target` whole, or not at all."""
        if self.local:
            return str(_write_local(Path(target), write))
        with tempfile.TemporaryDirectory(prefix="kwai-put-") as tmp:
            local = os.path.join(tmp, target.rsplit("/", 1)[1])
            write(local)
            self.fs.put_file(local, target)
        return target

    def _put_frame(self, target: str, df: pd.DataFrame) -> str:
        return self._put(target, lambda tmp: pq.write_table(to_arrow(df), tmp))

    def write(self, df: pd.DataFrame, asset: str, partition: str | None = None) -> str:
        """Atomically write `df` as the asset (partition)."""
        return self._put_frame(self.path(asset, partition), df)

    def write_file(self, asset: str, name: str, write: Callable[[str], None]) -> str:
        """One of the asset's other files, written by `write(local_path)` (faiss' writer), atomically."""
        return self._put(self.file(asset, name), write)

    def read_file(self, asset: str, name: str, read: Callable[[str], object]) -> object:
        """`read(local_path)` of one of the asset's other files (faiss' reader), fetched first off a local disk."""
        path = self.file(asset, name)
        if not self.fs.exists(path):
            raise FileNotFoundError(f"{path} is missing; materialize {asset} first")
        if self.local:
            return read(path)
        with tempfile.TemporaryDirectory(prefix="kwai-get-") as tmp:
            local = os.path.join(tmp, name)
            self.fs.get_file(path, local)
            return read(local)

    def reject(self, df: pd.DataFrame, asset: str, run_id: str) -> str:
        """Keep a version that failed its check aside (never as the asset), for inspection."""
        return self._put_frame(f"{self.root}/{REJECTED}/{self._name(asset)}/{run_id}.parquet", df)

    def _read_table(self, path: str) -> pa.Table:
        return pq.read_table(path, filesystem=self._arrow_fs)

    def schema(self, asset: str, partition: str | None = None) -> pa.Schema:
        """The stored file's Arrow schema, from its footer alone."""
        return pq.read_schema(self.path(asset, partition), filesystem=self._arrow_fs)

    def read(self, asset: str, partitions: list[str] | None = None) -> pd.DataFrame:
        """Read an unpartitioned asset, or the listed partitions of a partitioned one.

        Partitions that were never materialized are skipped; reading none at all
        is an error that says what to materialize.
        """
        if partitions is None:
            path = self.path(asset)
            if not self.fs.exists(path):
                raise FileNotFoundError(f"asset {asset!r} has not been materialized yet ({path} is missing)")
            return self._read_table(path).to_pandas()
        stored = set(self.partitions(asset))                # one listing, not a request per key
        paths = [self.path(asset, key) for key in partitions if key in stored]
        if not paths:
            raise FileNotFoundError(
                f"no partition of {asset!r} is materialized under {self.root}/{asset}; "
                f"materialize some first, e.g. `dagster asset materialize --select {asset} --partition <key>`"
            )
        return pa.concat_tables([self._read_table(p) for p in paths], promote_options="default").to_pandas()

    def files(self, asset: str) -> list[str]:
        """The Parquet files that hold `asset`: its one file, or its partitions' (none when not stored)."""
        return [self.path(asset)] if self.exists(asset) else [self.path(asset, p) for p in self.partitions(asset)]

    def rows(self, asset: str) -> int:
        """Stored rows of an asset (all its partitions), from the Parquet footers alone."""
        return sum(pq.read_metadata(p, filesystem=self._arrow_fs).num_rows for p in self.files(asset))

    def read_if_exists(self, asset: str) -> pd.DataFrame | None:
        return self.read(asset) if self.exists(asset) else None

    # -- catalog -------------------------------------------------------------
    def assets(self) -> dict[str, str]:
        """Stored asset name -> Parquet path or glob."""
        found: dict[str, str] = {}
        for name, is_folder in self._listing().items():
            if is_folder and _NAME.match(name) and self.partitions(name):
                found[name] = f"{self.root}/{name}/*.parquet"
            elif not is_folder and name.endswith(".parquet") and _NAME.match(name.removesuffix(".parquet")):
                found[name.removesuffix(".parquet")] = f"{self.root}/{name}"
        return dict(sorted(found.items()))

    def connect(self, database: str = ":memory:", read_only: bool = False) -> duckdb.DuckDBPyConnection:
        """A DuckDB connection that reads this warehouse's files (an object store through its fsspec filesystem)."""
        con = duckdb.connect(database, read_only=read_only)
        if not self.local and not set(con.list_filesystems()) & set(self._protocols()):
            con.register_filesystem(self.fs)
        return con

    def _protocols(self) -> tuple[str, ...]:
        protocol = self.fs.protocol
        return (protocol,) if isinstance(protocol, str) else tuple(protocol)

    def refresh_catalog(self) -> list[str]:
        """Create or replace one view per stored asset in catalog.duckdb."""
        self.home.mkdir(parents=True, exist_ok=True)
        names = self.assets()
        with self.connect(str(self.catalog_path)) as con:
            for name, path in names.items():
                con.execute(
                    f"CREATE OR REPLACE VIEW {name} AS "
                    f"SELECT * FROM read_parquet('{path}', union_by_name = true)"
                )
        return list(names)

    def sql(self, query: str) -> pd.DataFrame:
        """Run read-only SQL against the catalog views (refreshed first)."""
        self.refresh_catalog()
        with self.connect(str(self.catalog_path), read_only=True) as con:
            return frame(con, query)
