"""A directory of CSV or Parquet files following the data contract.

``interactions.{csv,parquet}`` is required; ``users``, ``items`` and ``pois``
may be absent (then every id is reported as missing its attributes).
"""
from __future__ import annotations

from datetime import date
from functools import cached_property
from pathlib import Path

import duckdb
import pandas as pd

from kwai_assets.sources.base import days_of, slice_days
from kwai_assets.sources.contract import INTERACTIONS, ITEMS, POIS, USERS, TableSpec, conform

SUFFIXES = (".parquet", ".csv", ".csv.gz", ".tsv")


class FilesSource:
    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        if not self.directory.is_dir():
            raise FileNotFoundError(f"files source: {self.directory} is not a directory (set KWAI_DATA_DIR)")

    def _find(self, stem: str) -> Path | None:
        for suffix in SUFFIXES:
            path = self.directory / f"{stem}{suffix}"
            if path.exists():
                return path
        return None

    def _load(self, spec: TableSpec, required: bool) -> pd.DataFrame:
        path = self._find(spec.name)
        if path is None:
            if required:
                raise FileNotFoundError(
                    f"files source: no {spec.name} file in {self.directory} (expected one of "
                    + ", ".join(spec.name + s for s in SUFFIXES) + ")"
                )
            return pd.DataFrame({spec.key: pd.Series([], dtype="str")})
        with duckdb.connect() as con:
            if path.suffix == ".parquet":
                reader = f"read_parquet('{path}')"
            else:
                delim = "\\t" if path.suffix == ".tsv" else ","
                reader = f"read_csv('{path}', all_varchar = true, header = true, delim = '{delim}')"
            try:
                con.execute(f"CREATE VIEW delivered AS SELECT * FROM {reader}")
                return conform(con, "delivered", spec, path.name)
            except duckdb.Error as err:
                raise ValueError(f"{path.name}: cannot be read as {spec.name}: {err}") from err

    @cached_property
    def _interactions(self) -> pd.DataFrame:
        return self._load(INTERACTIONS, required=True)

    def interactions(self, start: date, end: date) -> pd.DataFrame:
        return slice_days(self._interactions, start, end)

    def users(self) -> pd.DataFrame:
        return self._load(USERS, required=False)

    def items(self) -> pd.DataFrame:
        return self._load(ITEMS, required=False)

    def pois(self) -> pd.DataFrame:
        return self._load(POIS, required=False)

    def date_range(self) -> tuple[date, date]:
        return days_of(self._interactions)
