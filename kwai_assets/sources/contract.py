"""The data contract every source delivers, and its validation.

Four tables. Identifiers are kept as text whatever their type on delivery, so
"42", 42 and 42.0 are the same user (rules in ``ids.py``); timestamps are
naive UTC and after 1970-01-01; coordinates are WGS84 degrees and may be
missing (MovieLens has none), never out of range.

interactions  user_id, item_id, poi_id?, lat?, lon?, ts, [event], [seq]
users         user_id, [any attribute columns]
items         item_id, [poi_id], [category], [any attribute columns]
pois          poi_id, [lat], [lon], [category], [any attribute columns]

``?`` marks a column that must be present but may hold empty values;
``[...]`` a column that may be absent. Extra columns are kept as text.
``seq`` is the order of delivery, a whole number that breaks ties between a
user's rows with the same timestamp (MovieLens: the file's line, as the
published splits keep tied rows in file order); 0 when the source has none.

Validation runs as DuckDB SQL over the delivered file and reports every
problem at once, each naming the file, the column, an example value and how
many rows share the problem. Delivered files are untrusted: a column name
reaches SQL only as a quoted identifier, and a name holding a double quote or
a control character is refused outright (later steps build SQL from the raw
tables' column names too).

``delivery_problems`` judges a whole delivery's size (minimums, and a drop
against the previous delivery); ``raw_schema_problems`` checks a stored
raw_interactions file against the same column list as ``conform``.
"""
from __future__ import annotations

from dataclasses import dataclass

import duckdb
import pandas as pd
import pyarrow as pa

from kwai_assets.core.sql import frame, ident
from kwai_assets.sources import ids


@dataclass(frozen=True)
class Column:
    name: str
    kind: str                              # id | float | int | timestamp | text
    required: bool = True                  # must be a column of the file
    nullable: bool = False                 # may hold empty values
    bounds: tuple[float, float] | None = None
    default: str = "NULL"                  # SQL literal of a column the file lacks (and of an empty value)


@dataclass(frozen=True)
class TableSpec:
    name: str
    columns: tuple[Column, ...]
    keeps_extra_columns: bool = True       # attribute tables pass other columns through as text

    @property
    def key(self) -> str:
        return self.columns[0].name


DEFAULT_EVENT = "click"
INTERACTIONS = TableSpec("interactions", (
    Column("user_id", "id"),
    Column("item_id", "id"),
    Column("poi_id", "id", nullable=True),
    Column("lat", "float", nullable=True, bounds=(-90.0, 90.0)),
    Column("lon", "float", nullable=True, bounds=(-180.0, 180.0)),
    Column("ts", "timestamp"),
    Column("event", "text", required=False, nullable=True, default=f"'{DEFAULT_EVENT}'"),
    Column("seq", "int", required=False, default="0"),
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
EPOCH = "1970-01-01"

# Size minimums for delivery_problems. The synthetic `tiny` preset delivers 300 users,
# 600 items and 1,150-1,260 rows on each of its days (at least 259 users and 450 items
# within one day), so it passes with room to spare; a one-user delivery does not.
MIN_USERS = 20
MIN_ITEMS = 20
MIN_ROWS_PER_DAY = 100
MIN_RATIO = 0.2             # of the previous delivery's rows per day

ARROW_TYPES = {"id": "string", "text": "string", "float": "double", "int": "int64", "timestamp": "timestamp[us]"}
SQL_TYPES = {"float": "DOUBLE", "int": "BIGINT", "timestamp": "TIMESTAMP"}     # the rest VARCHAR


class ContractError(ValueError):
    """Delivered data does not follow the contract; the message lists every problem."""


def _text(col: str) -> str:
    return f"NULLIF(trim(CAST({ident(col)} AS VARCHAR)), '')"


def _timestamp(col: str) -> str:
    """ISO 8601 (offsets converted to UTC) or Unix seconds -> naive UTC TIMESTAMP."""
    x = _text(col)
    return (
        f"CASE WHEN regexp_full_match({x}, '-?[0-9]+(\\.[0-9]+)?') "
        f"THEN make_timestamp(CAST(round(CAST({x} AS DOUBLE) * 1e6) AS BIGINT)) "
        f"ELSE CAST(TRY_CAST({x} AS TIMESTAMPTZ) AS TIMESTAMP) END"
    )


def _typed(column: Column) -> str:
    if column.kind in ("float", "int"):
        return f"TRY_CAST({_text(column.name)} AS {SQL_TYPES[column.kind]})"
    if column.kind == "timestamp":
        return _timestamp(column.name)
    return _text(column.name)


def _example(con: duckdb.DuckDBPyConnection, table: str, condition: str, col: str) -> tuple[int, str | None] | None:
    """(rows matching `condition`, one of their raw values) or None when no row matches."""
    n, example = con.execute(
        f"SELECT count(*), any_value(CAST({ident(col)} AS VARCHAR)) FROM {table} WHERE {condition}"
    ).fetchall()[0]
    return (n, example) if n else None


def _short(name: str, limit: int = 60) -> str:
    return repr(name if len(name) <= limit else name[:limit] + "...")


def _name_problems(names: list[str], file: str) -> list[str]:
    """Column names that no SQL built from them later could be trusted with."""
    odd = [n for n in names if '"' in n or any(ord(ch) < 32 or ord(ch) == 127 for ch in n)]
    return [f"{file}: column name {_short(n)} holds a double quote or a control character; rename the column"
            for n in odd]


def _missing_problems(names: list[str], spec: TableSpec, file: str) -> list[str]:
    return [f"{file}: missing column '{c.name}' (columns found: {', '.join(names)})"
            for c in spec.columns if c.required and c.name not in names]


def _absent(column: Column) -> str:
    """SELECT item for an optional column the file lacks."""
    return f"CAST({column.default} AS {SQL_TYPES.get(column.kind, 'VARCHAR')}) AS {ident(column.name)}"


def _empty_problems(con: duckdb.DuckDBPyConnection, table: str, column: Column, empty: str, file: str) -> list[str]:
    if column.nullable or not (bad := _example(con, table, empty, column.name)):
        return []
    shown = f", e.g. {bad[1]!r}" if bad[1] is not None and bad[1].strip() else ""
    return [f"{file}: column '{column.name}' is empty in {bad[0]} rows{shown}"]


def _id_column(con: duckdb.DuckDBPyConnection, table: str, column: Column, sql_type: str,
               file: str) -> tuple[str, list[str]]:
    """SELECT expression and problems for an id column (rules in ids.py)."""
    text = ids.id_text(ident(column.name), sql_type)
    problems = _empty_problems(con, table, column, f"{text} IS NULL", file)
    if not ids.is_numeric_column(con, table, text, sql_type):
        return text, problems
    for condition, what in ((ids.negative(text), "negative ids"),
                            (ids.fractional(text), "ids that are not whole numbers")):
        if bad := _example(con, table, condition, column.name):
            problems.append(f"{file}: column '{column.name}' has {bad[0]} {what}, e.g. {bad[1]!r}")
    return ids.canonical(text), problems


def _value_column(con: duckdb.DuckDBPyConnection, table: str, column: Column, file: str) -> tuple[str, list[str]]:
    """SELECT expression and problems for a float, int, timestamp or text column."""
    raw, typed = _text(column.name), _typed(column)
    problems = _empty_problems(con, table, column, f"{raw} IS NULL", file)
    if column.kind in ("float", "int", "timestamp") and (
        bad := _example(con, table, f"{raw} IS NOT NULL AND ({typed}) IS NULL", column.name)
    ):
        expected = {"float": "a number", "int": "a whole number",
                    "timestamp": "a timestamp (ISO 8601 or Unix seconds)"}[column.kind]
        problems.append(f"{file}: column '{column.name}' has {bad[0]} values that are not {expected}, e.g. {bad[1]!r}")
    if column.kind == "timestamp" and (bad := _example(con, table, f"({typed}) <= TIMESTAMP '{EPOCH}'", column.name)):
        # a zero or pre-epoch time is a client clock that was never set, not an event in 1970
        problems.append(f"{file}: column '{column.name}' has {bad[0]} values at or before {EPOCH}, e.g. {bad[1]!r}")
    if column.bounds and (
        bad := _example(con, table, f"({typed}) NOT BETWEEN {column.bounds[0]} AND {column.bounds[1]}", column.name)
    ):
        problems.append(
            f"{file}: column '{column.name}' has {bad[0]} values outside "
            f"[{column.bounds[0]:g}, {column.bounds[1]:g}], e.g. {bad[1]!r}"
        )
    if column.default != "NULL":
        typed = f"coalesce({typed}, {column.default})"
    return typed, problems


def conform(con: duckdb.DuckDBPyConnection, relation: str, spec: TableSpec, file: str) -> pd.DataFrame:
    """Validate `relation` (a table or view in `con`) against `spec`; return typed rows.

    Raises ContractError naming `file`, the column, an example value and a row count
    for every violation found.
    """
    con.execute("SET TimeZone = 'UTC'")
    table = ident(relation)
    types = dict(con.execute(f"SELECT column_name, column_type FROM (DESCRIBE {table})").fetchall())
    present = list(types)
    if problems := _name_problems(present, file) + _missing_problems(present, spec, file):
        raise ContractError("\n".join(problems))

    select: list[str] = []
    for column in spec.columns:
        if column.name not in types:
            select.append(_absent(column))
            continue
        if column.kind == "id":
            expression, found = _id_column(con, table, column, types[column.name], file)
        else:
            expression, found = _value_column(con, table, column, file)
        problems += found
        select.append(f"{expression} AS {ident(column.name)}")
    if spec.keeps_extra_columns:
        known = {c.name for c in spec.columns}
        select += [f"{_text(c)} AS {ident(c)}" for c in present if c not in known]
    if problems:
        raise ContractError("\n".join(problems))
    out = frame(con, f"SELECT {', '.join(select)} FROM {table}")
    return out.astype({c: DTYPES[k] for c, k in _kinds(spec, out.columns).items()})


DTYPES = {"id": "str", "text": "str", "float": "float64", "int": "int64", "timestamp": "datetime64[us]"}


def _kinds(spec: TableSpec, columns) -> dict[str, str]:
    """Column -> contract kind; extra columns are text."""
    kinds = {c.name: c.kind for c in spec.columns}
    return {c: kinds.get(c, "text") for c in columns}


# -- a delivery's size ----------------------------------------------------------
def no_rows_problem(where: str, columns: list[str]) -> str:
    """The message for a delivered table without rows; `columns` is its header ([] or ['column0'] when none)."""
    if not columns or columns == ["column0"]:
        return f"{where}: the file is empty (no header, 0 rows)"
    return f"{where}: header only ({', '.join(columns)}), 0 rows"


def _rows_per_day(df: pd.DataFrame) -> pd.Series:
    """Rows per day (`pdate`, else the day of `ts`), days between the first and the last with none counted as 0."""
    days = df["pdate"] if "pdate" in df.columns else df["ts"].dt.strftime("%Y-%m-%d")
    counts = days.value_counts().sort_index()
    if counts.empty:
        return counts
    every_day = pd.date_range(counts.index[0], counts.index[-1], freq="D").strftime("%Y-%m-%d")
    return counts.reindex(every_day, fill_value=0)


def delivery_problems(df: pd.DataFrame, *, where: str = "interactions", min_users: int = MIN_USERS,
                      min_items: int = MIN_ITEMS, min_rows_per_day: int = MIN_ROWS_PER_DAY,
                      previous_rows_per_day: float | None = None, min_ratio: float = MIN_RATIO) -> list[str]:
    """Why a delivery of interactions is too small to publish; [] when it is fine.

    A delivery can follow the contract row by row and still be broken: a truncated
    export, one test user, a day that stopped half way. Models trained on it would
    silently degrade, so the caller refuses it. `previous_rows_per_day` (the stored
    warehouse's mean, None for a first delivery) catches a drop that the absolute
    minimums cannot. Rows per day are the delivery's mean over its days (a quiet day
    of a real log is no reason to refuse it). Pure: no I/O.
    """
    if df.empty:
        return [f"{where}: 0 rows, the delivery is empty"]
    problems: list[str] = []
    for what, n, minimum in (("users", df["user_id"].nunique(), min_users),
                             ("items", df["item_id"].nunique(), min_items)):
        if n < minimum:
            problems.append(f"{where}: {n:,} {what}, below the minimum of {minimum:,}")
    per_day = _rows_per_day(df)
    mean, span = float(per_day.mean()), f"{len(per_day)} days"
    if mean < min_rows_per_day:
        problems.append(f"{where}: {mean:,.0f} rows per day over {span}, below the minimum of "
                        f"{min_rows_per_day:,} rows per day")
    elif previous_rows_per_day and mean < min_ratio * previous_rows_per_day:
        problems.append(f"{where}: {mean:,.0f} rows per day over {span}, below {min_ratio:g} x the stored "
                        f"days' {previous_rows_per_day:,.0f} rows per day")
    return problems


# -- the stored raw table --------------------------------------------------------
RAW_INTERACTION_TYPES = {c.name: ARROW_TYPES[c.kind] for c in INTERACTIONS.columns} | {"pdate": "string"}


def _arrow_type(t: pa.DataType) -> str:
    """Arrow type as the contract names it: the three string layouts are one 'string'."""
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return "string"
    return str(t)


def raw_schema_problems(schema: pa.Schema, where: str) -> list[str]:
    """How a stored raw_interactions file's schema differs from the contract; [] when it follows it.

    Derived from INTERACTIONS (plus the `pdate` partition column), so the stored
    table and the delivered files are checked against one column list. Extra
    columns are not reported. `where` names the file, e.g. its day.
    """
    types = {f.name: _arrow_type(f.type) for f in schema}
    return [f"{where}: {col} is {types.get(col, 'missing')}, expected {kind}"
            for col, kind in RAW_INTERACTION_TYPES.items() if types.get(col) != kind]
