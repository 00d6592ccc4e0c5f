"""Parquet storage of record: atomic writes, partitions, the DuckDB catalog."""
import pandas as pd
import pyarrow.parquet as pq
import pytest

from kwai_assets.io.warehouse import Warehouse


def test_write_read_and_partitions(tmp_path):
    wh = Warehouse(tmp_path)
    wh.write(pd.DataFrame({"a": [1, 2]}), "things")
    wh.write(pd.DataFrame({"d": ["x"]}), "daily", "2026-01-02")
    wh.write(pd.DataFrame({"d": ["y"]}), "daily", "2026-01-01")
    assert wh.read("things")["a"].tolist() == [1, 2]
    assert wh.partitions("daily") == ["2026-01-01", "2026-01-02"]
    assert (wh.rows("things"), wh.rows("daily")) == (2, 2)
    assert wh.read("daily", ["2026-01-01", "2026-01-02", "2026-01-03"])["d"].tolist() == ["y", "x"]
    assert wh.assets() == {"daily": str(tmp_path / "warehouse/daily/*.parquet"),
                           "things": str(tmp_path / "warehouse/things.parquet")}


def test_a_failed_write_keeps_the_previous_file(tmp_path, monkeypatch):
    wh = Warehouse(tmp_path)
    wh.write(pd.DataFrame({"a": [1]}), "things")

    def broken(table, where, **kwargs):
        open(where, "wb").write(b"PAR1 half a file")
        raise OSError("disk full")

    monkeypatch.setattr(pq, "write_table", broken)
    with pytest.raises(OSError, match="disk full"):
        wh.write(pd.DataFrame({"a": [2]}), "things")
    monkeypatch.undo()
    assert wh.read("things")["a"].tolist() == [1]
    assert [p.name for p in wh.root.iterdir()] == ["things.parquet"]


def test_missing_assets_say_what_to_materialize(tmp_path):
    wh = Warehouse(tmp_path)
    with pytest.raises(FileNotFoundError, match="'things' has not been materialized"):
        wh.read("things")
    with pytest.raises(FileNotFoundError, match="dagster asset materialize --select daily"):
        wh.read("daily", ["2026-01-01"])


def test_sql_over_catalog_views(tmp_path):
    wh = Warehouse(tmp_path)
    wh.write(pd.DataFrame({"d": ["x", "y"]}), "daily", "2026-01-01")
    wh.write(pd.DataFrame({"d": ["z"]}), "daily", "2026-01-02")
    assert wh.sql("SELECT count(*) AS n FROM daily")["n"].item() == 3
    assert wh.catalog_path.exists()


def test_names_are_plain_identifiers(tmp_path):
    with pytest.raises(ValueError, match="plain identifier"):
        Warehouse(tmp_path).path("x; drop table y")
