"""A directory of CSV or Parquet files following the data contract.

``interactions.{csv,parquet}`` is required; ``users``, ``items`` and ``pois``
may be absent (then every id is reported as missing its attributes). Instead
of them the directory may hold one check-in file, ``checkins.txt`` in the
layout of the public Foursquare or Gowalla sets (``checkins.py``). A file
that is delivered must hold rows: an empty or header-only file is an export
that failed, not a table with nothing in it. Size minimums for a whole
delivery are the caller's (``contract.delivery_problems``).

The files come from someone else: paths reach DuckDB as bound parameters and
column names as quoted identifiers (see ``contract``).
"""
from __future__ import annotations

from datetime import date
from functools import cached_property
from pathlib import Path

import duckdb
import pandas as pd

from kwai_assets.sources import checkins
from kwai_assets.sources.base import days_of, slice_days
from kwai_assets.sources.contract import (
    INTERACTIONS,
    ITEMS,
    POIS,
    USERS,
    ContractError,
    TableSpec,
    conform,
    no_rows_problem,
)

SUFFIXES = (".parquet", ".csv", ".csv.gz", ".tsv")
READ_PARQUET = "CREATE TEMP TABLE delivered AS SELECT * FROM read_parquet($path)"
READ_CSV = ("CREATE TEMP TABLE delivered AS SELECT * FROM "
            "read_csv($path, all_varchar = true, header = true, delim = $delim)")


def _read(con: duckdb.DuckDBPyConnection, path: Path) -> None:
    """Load `path` into the table `delivered`, read once for all the contract's checks."""
    if path.suffix == ".parquet":
        con.execute(READ_PARQUET, {"path": str(path)})
    else:
        con.execute(READ_CSV, {"path": str(path), "delim": "\t" if path.suffix == ".tsv" else ","})


def _no_rows(con: duckdb.DuckDBPyConnection, path: Path) -> str | None:
    """The problem with a delivered file that holds no rows, else None."""
    if con.execute("SELECT count(*) FROM delivered").fetchall()[0][0]:
        return None
    columns = [c for (c,) in con.execute("SELECT column_name FROM (DESCRIBE delivered)").fetchall()]
    return no_rows_problem(path.name, columns)


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
        if path.stat().st_size == 0:     # DuckDB would read it as one column 'column0'
            raise ContractError(no_rows_problem(path.name, []))
        with duckdb.connect() as con:
            try:
                _read(con, path)
                if problem := _no_rows(con, path):
                    raise ContractError(problem)
                return conform(con, "delivered", spec, path.name)
            except duckdb.Error as err:
                raise ValueError(f"{path.name}: cannot be read as {spec.name}: {err}") from err

    @cached_property
    def _checkins(self) -> dict[str, pd.DataFrame] | None:
        """The four tables of a check-in file, or None when the directory has none."""
        path = checkins.find(self.directory)
        if path is None:
            return None
        others = [p.name for spec in (INTERACTIONS, USERS, ITEMS, POIS) if (p := self._find(spec.name)) is not None]
        if others:
            raise ValueError(f"files source: {self.directory} holds both {path.name} and {', '.join(others)}; a "
                             f"check-in file is the whole delivery, keep one or the other")
        return checkins.read_checkins(path)

    def _table(self, spec: TableSpec, required: bool = False) -> pd.DataFrame:
        return self._checkins[spec.name] if self._checkins is not None else self._load(spec, required)

    @cached_property
    def _interactions(self) -> pd.DataFrame:
        return self._table(INTERACTIONS, required=True)

    def interactions(self, start: date, end: date) -> pd.DataFrame:
        return slice_days(self._interactions, start, end)

    def users(self) -> pd.DataFrame:
        return self._table(USERS)

    def items(self) -> pd.DataFrame:
        return self._table(ITEMS)

    def pois(self) -> pd.DataFrame:
        return self._table(POIS)

    def date_range(self) -> tuple[date, date]:
        return days_of(self._interactions)
