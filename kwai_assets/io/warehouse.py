"""The Parquet warehouse: the storage of record for every asset.

Layout under ``<home>/warehouse``: ``<asset>.parquet`` for an unpartitioned
asset, ``<asset>/<partition>.parquet`` for a partitioned one. Files are written
to a temporary name and renamed, so a reader (or a failed run) never sees a
half-written file and a failed run leaves the previous version in place.

``catalog.duckdb`` holds one view per asset over these files for ad-hoc SQL.
Views are (re)built on demand by :meth:`Warehouse.refresh_catalog` rather than
on every write: DuckDB allows one writer per database file, and the
multiprocess executor writes many assets at once.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from kwai_assets.core.sql import frame

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


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


def write_atomic(path: str | os.PathLike, text: str) -> Path:
    """A text file written to a temporary name beside it, then renamed: never half a file."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def write_parquet_atomic(df: pd.DataFrame, target: Path) -> Path:
    """Write to a temporary file beside `target`, then rename: readers never see half a file."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        pq.write_table(to_arrow(df), tmp)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


class Warehouse:
    def __init__(self, home: str | os.PathLike):
        self.home = Path(home)
        self.root = self.home / "warehouse"
        self.catalog_path = self.home / "catalog.duckdb"

    # -- paths ---------------------------------------------------------------
    def path(self, asset: str, partition: str | None = None) -> Path:
        if not _NAME.match(asset):
            raise ValueError(f"asset name {asset!r} is not a plain identifier")
        if partition is None:
            return self.root / f"{asset}.parquet"
        return self.root / asset / f"{partition}.parquet"

    def file(self, asset: str, name: str) -> Path:
        """A non-Parquet file that belongs to `asset` (a faiss index), in the asset's folder."""
        if not _NAME.match(name.split(".")[0]) or "/" in name:
            raise ValueError(f"file name {name!r} is not a plain name")
        return self.path(asset, "x").parent / name

    def partitions(self, asset: str) -> list[str]:
        """Partition keys stored for `asset`, sorted."""
        folder = self.root / asset
        if not folder.is_dir():
            return []
        return sorted(p.stem for p in folder.glob("*.parquet"))

    def exists(self, asset: str, partition: str | None = None) -> bool:
        return self.path(asset, partition).exists()

    # -- write / read --------------------------------------------------------
    def write(self, df: pd.DataFrame, asset: str, partition: str | None = None) -> Path:
        """Atomically write `df` as the asset (partition)."""
        return write_parquet_atomic(df, self.path(asset, partition))

    def reject(self, df: pd.DataFrame, asset: str, run_id: str) -> Path:
        """Keep a version that failed its check aside (never in the warehouse), for inspection."""
        return write_parquet_atomic(df, self.home / "rejected" / self.path(asset).stem / f"{run_id}.parquet")

    def read(self, asset: str, partitions: list[str] | None = None) -> pd.DataFrame:
        """Read an unpartitioned asset, or the listed partitions of a partitioned one.

        Partitions that were never materialized are skipped; reading none at all
        is an error that says what to materialize.
        """
        if partitions is None:
            path = self.path(asset)
            if not path.exists():
                raise FileNotFoundError(f"asset {asset!r} has not been materialized yet ({path} is missing)")
            return pq.read_table(path).to_pandas()
        paths = [self.path(asset, p) for p in partitions]
        paths = [p for p in paths if p.exists()]
        if not paths:
            raise FileNotFoundError(
                f"no partition of {asset!r} is materialized under {self.root / asset}; "
                f"materialize some first, e.g. `dagster asset materialize --select {asset} --partition <key>`"
            )
        return pa.concat_tables([pq.read_table(p) for p in paths], promote_options="default").to_pandas()

    def files(self, asset: str) -> list[Path]:
        """The Parquet files that hold `asset`: its one file, or its partitions' (none when not stored)."""
        return [self.path(asset)] if self.exists(asset) else sorted((self.root / asset).glob("*.parquet"))

    def rows(self, asset: str) -> int:
        """Stored rows of an asset (all its partitions), from the Parquet footers alone."""
        return sum(pq.ParquetFile(p).metadata.num_rows for p in self.files(asset))

    def read_if_exists(self, asset: str) -> pd.DataFrame | None:
        return self.read(asset) if self.exists(asset) else None

    # -- catalog -------------------------------------------------------------
    def assets(self) -> dict[str, str]:
        """Stored asset name -> Parquet path or glob."""
        found: dict[str, str] = {}
        if not self.root.is_dir():
            return found
        for entry in sorted(self.root.iterdir()):
            if entry.is_dir() and any(entry.glob("*.parquet")):
                found[entry.name] = str(entry / "*.parquet")
            elif entry.suffix == ".parquet" and not entry.name.startswith("."):
                found[entry.stem] = str(entry)
        return found

    def refresh_catalog(self) -> list[str]:
        """Create or replace one view per stored asset in catalog.duckdb."""
        self.home.mkdir(parents=True, exist_ok=True)
        names = self.assets()
        with duckdb.connect(str(self.catalog_path)) as con:
            for name, path in names.items():
                con.execute(
                    f"CREATE OR REPLACE VIEW {name} AS "
                    f"SELECT * FROM read_parquet('{path}', union_by_name = true)"
                )
        return list(names)

    def sql(self, query: str) -> pd.DataFrame:
        """Run read-only SQL against the catalog views (refreshed first)."""
        self.refresh_catalog()
        with duckdb.connect(str(self.catalog_path), read_only=True) as con:
            return frame(con, query)
