"""Raw clicks -> clean interactions: validity filter, exact dedupe, iterative k-core.

All steps are DuckDB SQL over the raw table, so they stream at tens of
millions of rows on one machine; the report says what each step removed.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import duckdb
import pandas as pd

from kwai_assets.core.sql import frame

# A row is invalid when a key is missing, a coordinate is out of range, or the
# timestamp is not after the Unix epoch or lies after the end of its partition day.
INVALID_REASONS = {
    "missing_id": "user_id IS NULL OR user_id = '' OR item_id IS NULL OR item_id = ''",
    "bad_coordinates": "coalesce(lat NOT BETWEEN -90 AND 90, false) OR coalesce(lon NOT BETWEEN -180 AND 180, false)",
    "bad_timestamp": "ts IS NULL OR ts <= TIMESTAMP '1970-01-01' OR ts >= CAST(pdate AS DATE) + INTERVAL 1 DAY",
}


# the first reason a row is invalid, NULL for a valid row (standard SQL: the Spark engine runs it as written)
INVALID_REASON = "CASE " + " ".join(f"WHEN {cond} THEN '{name}'" for name, cond in INVALID_REASONS.items()) + " END"
# a total order (ties broken on every column, NULLs last on both engines)
CLEAN_ORDER = ("user_id, ts, seq, item_id, event NULLS LAST, poi_id NULLS LAST, lat NULLS LAST, lon NULLS LAST, "
               "pdate")


def valid_distinct(columns: list[str]) -> str:
    """The valid rows of table `raw`, exact duplicates dropped (standard SQL, both engines). The delivery order
    `seq` is not part of a row's content: a row delivered twice is kept once, at its first delivery."""
    content = ", ".join(c for c in columns if c != "seq")
    return f"SELECT {content}, min(seq) AS seq FROM raw WHERE ({INVALID_REASON}) IS NULL GROUP BY {content}"


@dataclass
class CleanReport:
    raw_rows: int = 0
    invalid: dict[str, int] = field(default_factory=dict)   # reason -> rows (first matching reason)
    duplicates: int = 0
    kcore_iterations: int = 0
    kcore_rows_removed: int = 0
    kcore_users_removed: int = 0
    kcore_items_removed: int = 0
    rows: int = 0
    users: int = 0
    items: int = 0

    def as_metadata(self) -> dict[str, int]:
        flat = {k: v for k, v in asdict(self).items() if k != "invalid"}
        flat.update({f"invalid_{k}": v for k, v in self.invalid.items()})
        return flat


def kcore(con: duckdb.DuckDBPyConnection, table: str, k: int) -> int:
    """Iteratively delete rows of users or items with fewer than k rows, in place.

    The result is the unique maximal subset in which every user and item has at
    least k rows, whatever the removal order. Returns the number of iterations.
    """
    iterations = 0
    while True:
        removed = con.execute(f"""
            DELETE FROM {table}
            WHERE user_id IN (SELECT user_id FROM {table} GROUP BY user_id HAVING count(*) < {k})
               OR item_id IN (SELECT item_id FROM {table} GROUP BY item_id HAVING count(*) < {k})
        """).fetchall()[0][0]
        if removed == 0:
            return iterations
        iterations += 1


def clean_interactions(raw: pd.DataFrame, k: int = 10) -> tuple[pd.DataFrame, CleanReport]:
    """Drop invalid rows, exact duplicates, then take the k-core on users and items."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    report = CleanReport(raw_rows=len(raw))
    with duckdb.connect() as con:
        con.register("raw", raw)
        counts = dict(con.execute(f"SELECT {INVALID_REASON} AS r, count(*) FROM raw GROUP BY r HAVING r IS NOT NULL")
                      .fetchall())
        report.invalid = {name: counts.get(name, 0) for name in INVALID_REASONS}
        con.execute(f"CREATE TEMP TABLE clean AS {valid_distinct(list(raw.columns))}")
        valid = len(raw) - sum(report.invalid.values())
        report.rows = con.execute("SELECT count(*) FROM clean").fetchall()[0][0]
        report.duplicates = valid - report.rows

        before_users, before_items = con.execute(
            "SELECT count(DISTINCT user_id), count(DISTINCT item_id) FROM clean").fetchall()[0]
        report.kcore_iterations = kcore(con, "clean", k)
        report.users, report.items, rows = con.execute(
            "SELECT count(DISTINCT user_id), count(DISTINCT item_id), count(*) FROM clean").fetchall()[0]
        report.kcore_rows_removed, report.rows = report.rows - rows, rows
        report.kcore_users_removed = before_users - report.users
        report.kcore_items_removed = before_items - report.items
        out = frame(con, f"SELECT {', '.join(raw.columns)} FROM clean ORDER BY {CLEAN_ORDER}")
    return out, report


def newest_days(raw: pd.DataFrame, days: int | None) -> pd.DataFrame:
    """Rows of the newest `days` distinct `pdate` values (all rows when None)."""
    if days is None:
        return raw
    if days < 1:
        raise ValueError(f"window_days must be >= 1, got {days}")
    keep = sorted(raw["pdate"].unique())[-days:]
    return raw[raw["pdate"].isin(keep)].reset_index(drop=True)


def kcore_problems(df: pd.DataFrame, k: int) -> list[str]:
    """What makes a table not a clean k-core: no rows, null keys, a user or item with fewer than k rows."""
    missing = [c for c in ("user_id", "item_id", "ts") if c not in df.columns]
    if missing:
        return [f"missing columns {missing}"]
    if not len(df):
        return [f"no rows left (k={k}): every user or item had fewer than k interactions"]
    problems = []
    nulls = int(df[["user_id", "item_id"]].isna().sum().sum())
    if nulls:
        problems.append(f"{nulls} null keys")
    for key in ("user_id", "item_id"):
        sizes = df.groupby(key).size()
        if (short := int((sizes < k).sum())):
            problems.append(f"{short} {key.removesuffix('_id')}s with fewer than k={k} rows (fewest {sizes.min()})")
    return problems
