"""Identifier columns: one canonical text form, whatever the file type they came in.

Ids are text in the contract, but the same user arrives as CSV ``1``, Parquet
int ``1`` or Parquet float ``1.0`` (pandas turns an int column with a gap into
floats). Unless all three become ``'1'`` the join between files silently loses
rows. The rules, per delivered file and id column:

- blank, ``NaN``, ``null``, ``None``, ``NA``, ``N/A``, ``<NA>`` (any case) are
  empty values, never ids;
- a column is *numeric* when its stored type is a number (Parquet int, float,
  decimal), or when it is text and every non-empty value is a plain decimal
  number (``12``, ``12.0``, ``+12``) and none is zero-padded;
- a text column holding a zero-padded value (``007``) is a column of codes,
  not numbers: it is kept verbatim, like any other text column;
- every value of a numeric column must be a whole number >= 0 (a negative or
  fractional id means a broken export); it is written as canonical integer
  text without sign or ``.0``: CSV ``1.0`` and ``+1``, Parquet float ``1.0``
  and decimal ``1.00`` all become ``'1'``.

Functions here build SQL expressions over one column; the checks that report
problems live with the rest of the contract.
"""
from __future__ import annotations

import duckdb

PLACEHOLDERS = ("nan", "null", "none", "na", "n/a", "<na>")
NUMBER = r"[+-]?[0-9]+(\.[0-9]+)?"
PADDED = r"[+-]?0[0-9].*"
WHOLE = r"[+-]?[0-9]+(\.0+)?"
DIGITS = r"^[+-]?0*([0-9]+?)(\.0+)?$"
INTEGER_TYPES = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT",
                 "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT", "UHUGEINT")
FLOAT_TYPES = ("FLOAT", "DOUBLE")


def is_number_type(sql_type: str) -> bool:
    """Whether DuckDB stores the column as a number (then it is numeric whatever its values)."""
    return sql_type in INTEGER_TYPES or sql_type in FLOAT_TYPES or sql_type.startswith("DECIMAL")


def _base_text(column: str, sql_type: str) -> str:
    """The value as text. Whole floats lose their '.0' here, as integers: text would turn 1e20 into '1e+20'."""
    if sql_type not in FLOAT_TYPES:
        return f"CAST({column} AS VARCHAR)"
    return (
        f"CASE WHEN isnan({column}) THEN NULL "
        f"WHEN {column} = trunc({column}) AND abs({column}) < 1e18 THEN CAST(CAST({column} AS BIGINT) AS VARCHAR) "
        f"ELSE CAST({column} AS VARCHAR) END"
    )


def id_text(column: str, sql_type: str) -> str:
    """SQL: the trimmed text of `column` (a quoted identifier), NULL for blanks and placeholders."""
    text = f"NULLIF(trim({_base_text(column, sql_type)}), '')"
    placeholders = ", ".join(f"'{p}'" for p in PLACEHOLDERS)
    return f"CASE WHEN lower({text}) IN ({placeholders}) THEN NULL ELSE {text} END"


def is_numeric_column(con: duckdb.DuckDBPyConnection, table: str, text: str, sql_type: str) -> bool:
    """Whether the id column is numeric (see the module docstring); `text` is its `id_text`."""
    if is_number_type(sql_type):
        return True
    not_number = f"NOT regexp_full_match({text}, '{NUMBER}') OR regexp_full_match({text}, '{PADDED}')"
    values, others = con.execute(
        f"SELECT count({text}), count(*) FILTER (WHERE {not_number}) FROM {table}"
    ).fetchall()[0]
    return values > 0 and others == 0


def negative(text: str) -> str:
    """SQL condition: a numeric id below zero."""
    return f"TRY_CAST({text} AS DOUBLE) < 0"


def fractional(text: str) -> str:
    """SQL condition: a numeric id >= 0 that is not a whole number (1.5; also inf or 1e+40 from a float column)."""
    return f"NOT regexp_full_match({text}, '{WHOLE}') AND NOT coalesce({negative(text)}, false)"


def canonical(text: str) -> str:
    """SQL: a whole numeric id as canonical integer text ('+001.0' -> '1', '0' stays '0')."""
    return f"regexp_extract({text}, '{DIGITS}', 1)"
