"""The data contract every source delivers, and its validation.

Four tables. Identifiers are kept as text whatever their type on delivery, so
"42" and 42 are the same user; timestamps are naive UTC; coordinates are
WGS84 degrees and may be missing (MovieLens has none), never out of range.

interactions  user_id, item_id, poi_id?, lat?, lon?, ts, [event]
users         user_id, [any attribute columns]
items         item_id, [poi_id], [category], [any attribute columns]
pois          poi_id, [lat], [lon], [category], [any attribute columns]

``?`` marks a column that must be present but may hold empty values;
``[...]`` a column that may be absent. Extra columns are kept as text.

Validation runs as DuckDB SQL over the delivered file and reports every
problem at once, each naming the file, the column, an example value and how
many rows share the problem.
"""
from __future__ import annotations

from dataclasses import dataclass

import duckdb
import pandas as pd

from kwai_assets.core.sql import frame


@dataclass(frozen=True)
class Column:
    name: str
    kind: str                              # id | float | timestamp | text
    required: bool = True                  # must be a column of the file
    nullable: bool = False                 # may hold empty values
    bounds: tuple[float, float] | None = None


@dataclass(frozen=True)
class TableSpec:
    name: str
    columns: tuple[Column, ...]
    keeps_extra_columns: bool = True       # attribute tables pass other columns through as text

    @property
    def key(self) -> str:
        return self.columns[0].name


INTERACTIONS = TableSpec("interactions", (
    Column("user_id", "id"),
    Column("item_id", "id"),
    Column("poi_id", "id", nullable=True),
    Column("lat", "float", nullable=True, bounds=(-90.0, 90.0)),
    Column("lon", "float", nullable=True, bounds=(-180.0, 180.0)),
    Column("ts", "timestamp"),
    Column("event", "text", required=False, nullable=True),
), keeps_extra_columns=False)
USERS = TableSpec("users", (Column("user_id", "id"),))
ITEMS = TableSpec("items", (
    Column("item_id", "id"),
    Column("poi_id", "id", required=False, nullable=True),
    Column("category", "text", required=False, nullable=True),
))
POIS = TableSpec("pois", (
    Column("poi_id", "id"),
    Column("lat", "float", required=False, nullable=True, bounds=(-90.0, 90.0)),
    Column("lon", "float", required=False, nullable=True, bounds=(-180.0, 180.0)),
    Column("category", "text", required=False, nullable=True),
))
SPECS = {s.name: s for s in (INTERACTIONS, USERS, ITEMS, POIS)}

DEFAULT_EVENT = "click"


class ContractError(ValueError):
    """Delivered data does not follow the contract; the message lists every problem."""


def _text(col: str) -> str:
    return f"NULLIF(trim(CAST(\"{col}\" AS VARCHAR)), '')"


def _timestamp(col: str) -> str:
    """ISO 8601 (offsets converted to UTC) or Unix seconds -> naive UTC TIMESTAMP."""
    x = _text(col)
    return (
        f"CASE WHEN regexp_full_match({x}, '-?[0-9]+(\\.[0-9]+)?') "
        f"THEN make_timestamp(CAST(round(CAST({x} AS DOUBLE) * 1e6) AS BIGINT)) "
        f"ELSE CAST(TRY_CAST({x} AS TIMESTAMPTZ) AS TIMESTAMP) END"
    )


def _typed(column: Column) -> str:
    if column.kind == "float":
        return f"TRY_CAST({_text(column.name)} AS DOUBLE)"
    if column.kind == "timestamp":
        return _timestamp(column.name)
    return _text(column.name)


def _example(con: duckdb.DuckDBPyConnection, relation: str, condition: str, col: str) -> tuple[int, str] | None:
    n, example = con.execute(
        f"SELECT count(*), any_value(CAST(\"{col}\" AS VARCHAR)) FROM {relation} WHERE {condition}"
    ).fetchall()[0]
    return (n, example) if n else None


def conform(con: duckdb.DuckDBPyConnection, relation: str, spec: TableSpec, file: str) -> pd.DataFrame:
    """Validate `relation` (a table or view in `con`) against `spec`; return typed rows.

    Raises ContractError naming `file`, the column, an example value and a row count
    for every violation found.
    """
    con.execute("SET TimeZone = 'UTC'")
    present = [c[0] for c in con.sql(f"DESCRIBE {relation}").fetchall()]
    problems: list[str] = []
    for column in spec.columns:
        if column.required and column.name not in present:
            problems.append(f"{file}: missing column '{column.name}' (columns found: {', '.join(present)})")
    if problems:
        raise ContractError("\n".join(problems))

    known = {c.name for c in spec.columns}
    select: list[str] = []
    for column in spec.columns:
        if column.name not in present:
            default = f"'{DEFAULT_EVENT}'" if column.name == "event" else "NULL"
            kind = "DOUBLE" if column.kind == "float" else "TIMESTAMP" if column.kind == "timestamp" else "VARCHAR"
            select.append(f"CAST({default} AS {kind}) AS \"{column.name}\"")
            continue
        raw, typed = _text(column.name), _typed(column)
        if not column.nullable and (bad := _example(con, relation, f"{raw} IS NULL", column.name)):
            problems.append(f"{file}: column '{column.name}' is empty in {bad[0]} rows")
        if column.kind in ("float", "timestamp") and (
            bad := _example(con, relation, f"{raw} IS NOT NULL AND ({typed}) IS NULL", column.name)
        ):
            expected = "a number" if column.kind == "float" else "a timestamp (ISO 8601 or Unix seconds)"
            problems.append(f"{file}: column '{column.name}' has {bad[0]} values that are not {expected}, e.g. {bad[1]!r}")
        if column.bounds and (
            bad := _example(con, relation, f"({typed}) NOT BETWEEN {column.bounds[0]} AND {column.bounds[1]}", column.name)
        ):
            problems.append(
                f"{file}: column '{column.name}' has {bad[0]} values outside "
                f"[{column.bounds[0]:g}, {column.bounds[1]:g}], e.g. {bad[1]!r}"
            )
        if column.name == "event":
            typed = f"coalesce({typed}, '{DEFAULT_EVENT}')"
        select.append(f"{typed} AS \"{column.name}\"")
    if spec.keeps_extra_columns:
        select += [f"{_text(c)} AS \"{c}\"" for c in present if c not in known]
    if problems:
        raise ContractError("\n".join(problems))
    out = frame(con, f"SELECT {', '.join(select)} FROM {relation}")
    return out.astype({c: DTYPES[k] for c, k in _kinds(spec, out.columns).items()})


DTYPES = {"id": "str", "text": "str", "float": "float64", "timestamp": "datetime64[us]"}


def _kinds(spec: TableSpec, columns) -> dict[str, str]:
    """Column -> contract kind; extra columns are text."""
    kinds = {c.name: c.kind for c in spec.columns}
    return {c: kinds.get(c, "text") for c in columns}
