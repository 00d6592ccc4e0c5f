"""The contract's pure checks: identifier quoting, a delivery's size, the stored raw schema."""
from datetime import date, timedelta

import duckdb
import pandas as pd
import pyarrow as pa
import pytest

from kwai_assets.core.sql import ident
from kwai_assets.sources import FilesSource, SyntheticSource
from kwai_assets.sources.contract import (
    MIN_ITEMS,
    MIN_ROWS_PER_DAY,
    MIN_USERS,
    delivery_problems,
    raw_schema_problems,
)

JAN1 = date(2026, 1, 1)


def test_ident_doubles_quotes_so_a_name_stays_one_identifier():
    name = 'a" AS b, (SELECT 42) AS "c'
    assert ident(name) == '"a"" AS b, (SELECT 42) AS ""c"'
    with duckdb.connect() as con:
        con.execute(f"CREATE TABLE t AS SELECT 1 AS {ident(name)}")
        assert [d[0] for d in con.execute(f"SELECT {ident(name)} FROM t").description] == [name]


# -- delivery_problems ------------------------------------------------------
@pytest.fixture(scope="module")
def tiny() -> pd.DataFrame:
    return SyntheticSource("tiny", seed=7).interactions(JAN1, JAN1 + timedelta(days=7))


def test_the_tiny_preset_passes_with_room_to_spare(tiny):
    per_day = tiny.groupby("pdate").size()
    assert delivery_problems(tiny, previous_rows_per_day=per_day.mean()) == []
    one_day = tiny[tiny["pdate"] == "2026-01-03"]
    assert delivery_problems(one_day, previous_rows_per_day=per_day.mean()) == []
    assert one_day["user_id"].nunique() > 5 * MIN_USERS and one_day["item_id"].nunique() > 5 * MIN_ITEMS
    assert per_day.min() > 5 * MIN_ROWS_PER_DAY


def test_a_single_user_delivery_fails(tiny):
    user = tiny["user_id"].dropna().iloc[0]
    problems = delivery_problems(tiny[tiny["user_id"] == user], where="interactions.csv")
    assert "interactions.csv: 1 users, below the minimum of 20" in problems
    assert any(p.endswith("days, below the minimum of 100 rows per day") for p in problems)


def test_a_delivery_far_below_the_stored_days_fails():
    df = pd.DataFrame({"user_id": [f"u{i % 50}" for i in range(22)], "item_id": [f"p{i % 70}" for i in range(22)],
                       "pdate": ["2026-01-03"] * 22})
    assert delivery_problems(df, min_users=1, min_items=1, min_rows_per_day=10, previous_rows_per_day=1_400.0) == [
        "interactions: 22 rows per day over 1 days, below 0.2 x the stored days' 1,400 rows per day"]
    assert delivery_problems(df, min_users=1, min_items=1, min_rows_per_day=10, previous_rows_per_day=None) == []


def test_empty_deliveries_and_thin_ones_are_problems():
    ts = pd.to_datetime(["2026-01-01 08:00"] * 100 + ["2026-01-04 09:00"] * 100)
    df = pd.DataFrame({"user_id": [f"u{i % 30}" for i in range(200)],
                       "item_id": [f"p{i % 30}" for i in range(200)], "ts": ts})
    # a quiet day is no reason to refuse a delivery, but its mean over the days it spans must reach the minimum
    assert delivery_problems(df) == ["interactions: 50 rows per day over 4 days, below the minimum of 100 rows per day"]
    assert delivery_problems(df, min_rows_per_day=50) == []
    empty = df.iloc[:0]
    assert delivery_problems(empty, where="interactions.csv") == ["interactions.csv: 0 rows, the delivery is empty"]


# -- raw_schema_problems -----------------------------------------------------
def test_both_sources_deliver_the_raw_schema(tiny, tmp_path):
    assert raw_schema_problems(pa.Schema.from_pandas(tiny, preserve_index=False), "synthetic") == []
    (tmp_path / "interactions.csv").write_text(
        "user_id,item_id,poi_id,lat,lon,ts\n1,7,l1,30.5,104.0,2026-01-01T08:00:00\n")
    files = FilesSource(tmp_path).interactions(JAN1, JAN1 + timedelta(days=1))
    assert raw_schema_problems(pa.Schema.from_pandas(files, preserve_index=False), "files") == []


def test_raw_schema_problems_name_every_difference():
    good = pa.schema([("user_id", pa.string()), ("item_id", pa.large_string()), ("poi_id", pa.string()),
                      ("lat", pa.float64()), ("lon", pa.float64()), ("ts", pa.timestamp("us")),
                      ("event", pa.string()), ("seq", pa.int64()), ("pdate", pa.string()), ("extra", pa.int64())])
    assert raw_schema_problems(good, "2026-01-01") == []
    bad = pa.schema([("user_id", pa.int64()), ("item_id", pa.string()), ("poi_id", pa.string()),
                     ("lat", pa.string()), ("lon", pa.float64()), ("ts", pa.timestamp("us", tz="UTC")),
                     ("event", pa.string())])
    assert raw_schema_problems(bad, "2026-01-01") == [
        "2026-01-01: user_id is int64, expected string",
        "2026-01-01: lat is string, expected double",
        "2026-01-01: ts is timestamp[us, tz=UTC], expected timestamp[us]",
        "2026-01-01: seq is missing, expected int64",
        "2026-01-01: pdate is missing, expected string",
    ]
