"""Parquet storage of record: atomic writes, partitions, the DuckDB catalog, on a local disk and behind URLs."""
import uuid

import pandas as pd
import pyarrow.parquet as pq
import pytest

from kwai_assets.io.warehouse import Warehouse


@pytest.fixture(params=["home", "file", "memory", "s3"])
def wh(request, tmp_path):
    """The default warehouse under home, one at a file:// URL elsewhere, one on fsspec's in-memory store and one in
    a bucket of a local S3 server (no local path at all)."""
    url = {"home": "", "file": (tmp_path / "elsewhere").as_uri(), "memory": f"memory://wh-{uuid.uuid4().hex}",
           "s3": f"{request.getfixturevalue('s3') if request.param == 's3' else ''}/wh-{uuid.uuid4().hex}"}
    return Warehouse(tmp_path / "home", url[request.param])


def listing(wh: Warehouse, folder: str = "") -> list[str]:
    return sorted(p.rsplit("/", 1)[1] for p in wh.fs.ls(f"{wh.root}/{folder}".rstrip("/"), detail=False))


def test_write_read_and_partitions(wh):
    wh.write(pd.DataFrame({"a": [1, 2]}), "things")
    wh.write(pd.DataFrame({"d": ["x"]}), "daily", "2026-01-02")
    wh.write(pd.DataFrame({"d": ["y"]}), "daily", "2026-01-01")
    assert wh.read("things")["a"].tolist() == [1, 2]
    assert wh.partitions("daily") == ["2026-01-01", "2026-01-02"]
    assert (wh.rows("things"), wh.rows("daily")) == (2, 2)
    assert wh.read("daily", ["2026-01-01", "2026-01-02", "2026-01-03"])["d"].tolist() == ["y", "x"]
    assert wh.schema("daily", "2026-01-01").names == ["d"]
    assert wh.assets() == {"daily": f"{wh.root}/daily/*.parquet", "things": f"{wh.root}/things.parquet"}


def test_a_url_warehouse_keeps_nothing_under_home(tmp_path):
    wh = Warehouse(tmp_path / "home", (tmp_path / "elsewhere").as_uri())
    wh.write(pd.DataFrame({"a": [1]}), "things")
    assert wh.root == str(tmp_path / "elsewhere")
    assert (tmp_path / "elsewhere" / "things.parquet").is_file() and not (tmp_path / "home" / "warehouse").exists()


def test_a_failed_write_keeps_the_previous_file(wh, monkeypatch):
    wh.write(pd.DataFrame({"a": [1]}), "things")

    def broken(table, where, **kwargs):
        open(where, "wb").write(b"PAR1 half a file")
        raise OSError("disk full")

    monkeypatch.setattr(pq, "write_table", broken)
    with pytest.raises(OSError, match="disk full"):
        wh.write(pd.DataFrame({"a": [2]}), "things")
    monkeypatch.undo()
    assert wh.read("things")["a"].tolist() == [1]
    assert listing(wh) == ["things.parquet"]


def test_a_replaced_file_has_a_new_version(wh):
    path = wh.path("things")
    assert wh.version(path) is None
    wh.write(pd.DataFrame({"a": [1]}), "things")
    first = wh.version(path)
    wh.write(pd.DataFrame({"a": [1, 2, 3]}), "things")
    assert first is not None and wh.version(path) != first


def test_other_files_of_an_asset_round_trip(wh):
    wh.write_file("item_index", "cf.faiss", lambda path: open(path, "wb").write(b"index bytes"))
    assert wh.asset_files("item_index", ".faiss") == ["cf.faiss"]
    assert wh.read_file("item_index", "cf.faiss", lambda path: open(path, "rb").read()) == b"index bytes"
    with pytest.raises(FileNotFoundError, match="two_tower.faiss is missing; materialize item_index first"):
        wh.read_file("item_index", "two_tower.faiss", print)
    with pytest.raises(ValueError, match="not a plain name"):
        wh.file("item_index", "../escape.faiss")


def test_a_rejected_version_is_kept_aside_and_is_no_asset(wh):
    wh.write(pd.DataFrame({"a": [1]}), "things")
    path = wh.reject(pd.DataFrame({"a": [-1]}), "things", "run-1")
    assert path == f"{wh.root}/_rejected/things/run-1.parquet"
    assert pq.read_table(path, filesystem=None if wh.local else wh.fs).column("a").to_pylist() == [-1]
    assert list(wh.assets()) == ["things"] and wh.read("things")["a"].tolist() == [1]


def test_missing_assets_say_what_to_materialize(wh):
    with pytest.raises(FileNotFoundError, match="'things' has not been materialized"):
        wh.read("things")
    with pytest.raises(FileNotFoundError, match="dagster asset materialize --select daily"):
        wh.read("daily", ["2026-01-01"])


def test_sql_over_catalog_views(wh):
    wh.write(pd.DataFrame({"d": ["x", "y"]}), "daily", "2026-01-01")
    wh.write(pd.DataFrame({"d": ["z"]}), "daily", "2026-01-02")
    assert wh.sql("SELECT count(*) AS n FROM daily")["n"].item() == 3
    assert wh.catalog_path.exists()


def test_temporary_and_hidden_files_are_no_partitions_and_the_root_may_hold_glob_characters(tmp_path):
    wh = Warehouse(tmp_path / "home[1]*")
    wh.write(pd.DataFrame({"d": ["x"]}), "daily", "2026-01-01")
    for leftover in (".2026-01-02.parquet.1a2b.tmp", ".hidden.parquet", "_SUCCESS"):
        wh.fs.pipe_file(f"{wh.root}/daily/{leftover}", b"not data")
    assert wh.partitions("daily") == ["2026-01-01"] and wh.files("daily") == [wh.path("daily", "2026-01-01")]
    assert wh.assets() == {"daily": f"{wh.root}/daily/*.parquet"}


def test_names_are_plain_identifiers(tmp_path):
    with pytest.raises(ValueError, match="plain identifier"):
        Warehouse(tmp_path).path("x; drop table y")
    with pytest.raises(ValueError, match="plain identifier"):
        Warehouse(tmp_path).path("_rejected")
