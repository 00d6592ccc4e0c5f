"""Sources: synthetic determinism and planted structure; files contract; MovieLens layouts."""
from datetime import date

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from kwai_assets.core.attributes import interaction_counts, join_attributes
from kwai_assets.core.clean import clean_interactions
from kwai_assets.core.pipeline import prepared
from kwai_assets.core.split import history_rows
from kwai_assets.sources import FilesSource, MovieLensSource, SyntheticSource
from kwai_assets.sources.contract import USERS, ContractError

JAN1, JAN4 = date(2026, 1, 1), date(2026, 1, 4)


def test_synthetic_is_deterministic_and_day_by_day():
    a = SyntheticSource("tiny", seed=1).interactions(JAN1, JAN4)
    b = SyntheticSource("tiny", seed=1).interactions(JAN1, JAN4)
    pd.testing.assert_frame_equal(a, b)
    one_day = SyntheticSource("tiny", seed=1).interactions(date(2026, 1, 2), date(2026, 1, 3))
    pd.testing.assert_frame_equal(a[a.pdate == "2026-01-02"].reset_index(drop=True), one_day)
    assert not a.equals(SyntheticSource("tiny", seed=2).interactions(JAN1, JAN4))


def test_synthetic_plants_category_tastes():
    src = SyntheticSource("tiny", seed=1)
    clicks = src.interactions(JAN1, date(2026, 1, 15)).dropna(subset=["user_id"])
    category = src.items().set_index("item_id")["category"]
    clicks = clicks.assign(category=clicks["item_id"].map(category)).dropna(subset=["category"])
    favourite = clicks.groupby("user_id")["category"].agg(lambda c: c.value_counts(normalize=True).iloc[0])
    # with Dirichlet(0.3) tastes over 8 categories, a user's top category takes far more than 1/8 (routines and
    # nearby moves, drawn by taste too, dilute it a little: 0.39 here, 0.40 without them)
    assert favourite.median() > 0.3


def test_synthetic_dirt_is_what_clean_removes():
    src = SyntheticSource("tiny", seed=1, dirt=0.01)
    raw = src.interactions(JAN1, JAN4)
    _, report = clean_interactions(raw, k=1)
    per_kind = [round(len(src.day(d)) / 1.01 * 0.01) for d in (JAN1, date(2026, 1, 2), date(2026, 1, 3))]
    assert sum(report.invalid.values()) == pytest.approx(3 * sum(per_kind), abs=3)
    assert report.duplicates == pytest.approx(sum(per_kind), abs=3)


def test_unknown_preset_is_named():
    with pytest.raises(ValueError, match="unknown preset 'huge'"):
        SyntheticSource("huge")


# -- files ------------------------------------------------------------------
GOOD = """user_id,item_id,poi_id,lat,lon,ts,event
u1,p1,l1,30.5,104.0,2026-01-01T08:00:00,click
u1,p2,l1,30.5,104.0,1767283200,like
u2,p1,,,,2026-01-02 10:00:00+02:00,
"""


def write(tmp_path, text, name="interactions.csv"):
    (tmp_path / name).write_text(text)
    return FilesSource(tmp_path)


def test_files_source_reads_the_contract(tmp_path):
    (tmp_path / "users.csv").write_text("user_id,gender\nu1,F\nu2,M\n")
    src = write(tmp_path, GOOD)
    df = src.interactions(JAN1, date(2026, 1, 3))
    assert list(df.columns) == ["user_id", "item_id", "poi_id", "lat", "lon", "ts", "event", "seq", "pdate"]
    assert df["ts"].tolist() == [pd.Timestamp("2026-01-01 08:00"), pd.Timestamp("2026-01-01 16:00"),
                                 pd.Timestamp("2026-01-02 08:00")]     # epoch seconds and offsets -> UTC
    assert df["event"].tolist() == ["click", "like", "click"]          # missing event -> click
    assert df["lat"].isna().tolist() == [False, False, True]
    assert src.date_range() == (JAN1, date(2026, 1, 2))
    assert src.users()["gender"].tolist() == ["F", "M"]
    assert src.items().columns.tolist()[0] == "item_id" and src.items().empty


def test_files_source_reads_parquet(tmp_path):
    df = pd.DataFrame({"user_id": [1, 2], "item_id": [7, 7], "poi_id": [None, None], "lat": [1.0, None],
                       "lon": [2.0, None], "ts": pd.to_datetime(["2026-01-01 01:00", "2026-01-01 02:00"])})
    df.to_parquet(tmp_path / "interactions.parquet")
    out = FilesSource(tmp_path).interactions(JAN1, date(2026, 1, 2))
    assert out["user_id"].tolist() == ["1", "2"] and out["ts"].dt.hour.tolist() == [1, 2]


@pytest.mark.parametrize("text, expected", [
    (GOOD.replace("poi_id,", "").replace(",l1,", ",").replace("u2,p1,,", "u2,p1,"),
     "interactions.csv: missing column 'poi_id'"),
    (GOOD.replace("30.5,104.0,2026", "north,104.0,2026"),
     "interactions.csv: column 'lat' has 1 values that are not a number, e.g. 'north'"),
    (GOOD.replace("1767283200", "yesterday"),
     "interactions.csv: column 'ts' has 1 values that are not a timestamp (ISO 8601 or Unix seconds), "
     "e.g. 'yesterday'"),
    (GOOD.replace("30.5,104.0,1767283200", "91.5,104.0,1767283200"),
     "interactions.csv: column 'lat' has 1 values outside [-90, 90], e.g. '91.5'"),
    (GOOD.replace("u2,p1", ",p1"), "interactions.csv: column 'user_id' is empty in 1 rows"),
])
def test_files_source_rejects_bad_input_naming_file_column_value(tmp_path, text, expected):
    with pytest.raises(ContractError) as err:
        write(tmp_path, text).interactions(JAN1, JAN4)
    assert expected in str(err.value)


def test_files_source_needs_interactions(tmp_path):
    with pytest.raises(FileNotFoundError, match="no interactions file"):
        FilesSource(tmp_path).interactions(JAN1, JAN4)


# -- files: untrusted deliveries ---------------------------------------------
HEADER = "user_id,item_id,poi_id,lat,lon,ts"
NUMERIC = f"""{HEADER}
1,7,l1,30.5,104.0,2026-01-01T08:00:00
2,7,l1,30.5,104.0,2026-01-01T09:00:00
"""


def contract_error(src: FilesSource, table: str = "interactions") -> str:
    with pytest.raises(ContractError) as err:
        src.interactions(JAN1, JAN4) if table == "interactions" else getattr(src, table)()
    return str(err.value)


@pytest.mark.parametrize("name", ["interactions.csv", "interactions.parquet", "users.csv"])
def test_files_source_rejects_an_empty_file(tmp_path, name):
    write(tmp_path, NUMERIC)
    (tmp_path / name).write_bytes(b"")
    message = contract_error(FilesSource(tmp_path), name.split(".")[0])
    assert f"{name}: the file is empty (no header, 0 rows)" in message


def test_files_source_rejects_header_only_files(tmp_path):
    expected = "interactions.csv: header only (user_id, item_id, poi_id, lat, lon, ts), 0 rows"
    assert contract_error(write(tmp_path, HEADER + "\n")) == expected
    (tmp_path / "users.csv").write_text("user_id,gender\n")
    assert contract_error(write(tmp_path, NUMERIC), "users") == "users.csv: header only (user_id, gender), 0 rows"
    (tmp_path / "interactions.csv").unlink()
    pd.DataFrame({"user_id": pd.Series([], dtype="int64")}).to_parquet(tmp_path / "interactions.parquet")
    assert "interactions.parquet: header only (user_id), 0 rows" in contract_error(FilesSource(tmp_path))


@pytest.mark.parametrize("bad, expected", [
    ("-5", "interactions.csv: column 'user_id' has 1 negative ids, e.g. '-5'"),
    ("1.5", "interactions.csv: column 'user_id' has 1 ids that are not whole numbers, e.g. '1.5'"),
    ("NaN", "interactions.csv: column 'user_id' is empty in 1 rows, e.g. 'NaN'"),
    ("null", "interactions.csv: column 'user_id' is empty in 1 rows, e.g. 'null'"),
    ("", "interactions.csv: column 'user_id' is empty in 1 rows"),
])
def test_files_source_rejects_bad_numeric_ids_in_csv(tmp_path, bad, expected):
    text = NUMERIC + f"{bad},8,l1,30.5,104.0,2026-01-01T10:00:00\n"
    assert expected in contract_error(write(tmp_path, text))


def test_files_source_treats_nan_and_null_as_empty_in_text_ids(tmp_path):
    text = GOOD + "NULL,p1,,,,2026-01-02T11:00:00,\nnan,p1,,,,2026-01-02T12:00:00,\n"
    assert "interactions.csv: column 'user_id' is empty in 2 rows, e.g. " in contract_error(write(tmp_path, text))


def parquet(tmp_path, user_id: pa.Array) -> FilesSource:
    n = len(user_id)
    pq.write_table(pa.table({
        "user_id": user_id, "item_id": pa.array([7] * n), "poi_id": pa.array([None] * n, pa.string()),
        "lat": pa.array([1.0] * n), "lon": pa.array([2.0] * n),
        "ts": pa.array([pd.Timestamp("2026-01-01 01:00")] * n, pa.timestamp("us")),
    }), tmp_path / "interactions.parquet")
    return FilesSource(tmp_path)


@pytest.mark.parametrize("user_id, expected", [
    (pa.array([1.0, float("nan")], from_pandas=False), "column 'user_id' is empty in 1 rows, e.g. 'nan'"),
    (pa.array([1.0, None]), "column 'user_id' is empty in 1 rows"),
    (pa.array([1, -5]), "column 'user_id' has 1 negative ids, e.g. '-5'"),
    (pa.array([1.0, 1.5]), "column 'user_id' has 1 ids that are not whole numbers, e.g. '1.5'"),
    (pa.array(["1", "NaN"]), "column 'user_id' is empty in 1 rows, e.g. 'NaN'"),
])
def test_files_source_rejects_bad_ids_in_parquet(tmp_path, user_id, expected):
    assert f"interactions.parquet: {expected}" in contract_error(parquet(tmp_path, user_id))


def test_parquet_float_ids_join_csv_ids(tmp_path):
    src = parquet(tmp_path, pa.array([1.0, 2.0, 10.0]))     # pandas turns an int column with a gap into floats
    (tmp_path / "users.csv").write_text("user_id,gender\n1,F\n2,M\n10,F\n")
    clicks = src.interactions(JAN1, date(2026, 1, 2))
    assert clicks["user_id"].tolist() == ["1", "2", "10"] and clicks["item_id"].tolist() == ["7"] * 3
    joined, report = join_attributes(interaction_counts(clicks, "user_id"), src.users(), USERS)
    assert joined["has_attributes"].all() and report.missing == 0


def test_numeric_ids_are_canonical_and_codes_stay_text(tmp_path):
    text = NUMERIC.replace("\n1,7,", "\n1.0,+7,")
    (tmp_path / "users.csv").write_text("user_id,zip\n1,007\n2,010\n")
    (tmp_path / "items.csv").write_text("item_id,poi_id\n007,l1\n7,l1\n")
    src = write(tmp_path, text)
    df = src.interactions(JAN1, JAN4)
    assert df["user_id"].tolist() == ["1", "2"] and df["item_id"].tolist() == ["7", "7"]
    assert src.users()["zip"].tolist() == ["007", "010"]              # attributes are never normalised
    assert src.items()["item_id"].tolist() == ["007", "7"]            # a zero-padded column is codes: verbatim


@pytest.mark.parametrize("ts", ["0", "-3600", "1970-01-01T00:00:00"])
def test_files_source_rejects_timestamps_at_or_before_the_epoch(tmp_path, ts):
    text = NUMERIC + f"3,7,l1,30.5,104.0,{ts}\n"
    expected = f"interactions.csv: column 'ts' has 1 values at or before 1970-01-01, e.g. '{ts}'"
    assert expected in contract_error(write(tmp_path, text))


@pytest.mark.parametrize("table", ["users", "items"])
def test_a_header_cannot_inject_sql(tmp_path, table):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-42")
    key = f"{table[:-1]}_id"
    # closes the quoted identifier, reads a local file, comments out the rest of the statement
    payload = f"{key}\" AS VARCHAR)), '') AS x, (SELECT content FROM read_text('{secret}')) AS leak FROM delivered --"
    (tmp_path / f"{table}.csv").write_text(f'{key},"{payload.replace(chr(34), chr(34) * 2)}"\n1,F\n')
    message = contract_error(write(tmp_path, NUMERIC), table)
    assert f"{table}.csv: column name " in message and "holds a double quote" in message
    assert "TOP-SECRET" not in message


def test_a_path_is_never_sql(tmp_path):
    directory = tmp_path / "it's ' here"
    directory.mkdir()
    (directory / "interactions.csv").write_text(NUMERIC)
    assert FilesSource(directory).interactions(JAN1, JAN4)["user_id"].tolist() == ["1", "2"]


def test_files_source_reads_tsv(tmp_path):
    df = write(tmp_path, NUMERIC.replace(",", "\t"), "interactions.tsv").interactions(JAN1, JAN4)
    assert df["user_id"].tolist() == ["1", "2"] and df["lat"].tolist() == [30.5, 30.5]


# -- MovieLens --------------------------------------------------------------
def test_movielens_100k_layout(tmp_path):
    (tmp_path / "u.data").write_text("1\t10\t4\t881250949\n2\t10\t5\t891717742\n")
    flags = ["0"] * 19
    flags[1] = flags[5] = "1"   # Action, Comedy
    (tmp_path / "u.item").write_bytes(
        ("10|Caf\xe9 Society (1995)|01-Jan-1995|||" + "|".join(flags) + "\n").encode("latin-1"))
    (tmp_path / "u.user").write_text("1|24|M|technician|85711\n2|53|F|other|94043\n")
    src = MovieLensSource(tmp_path)
    first, last = src.date_range()
    df = src.interactions(first, date(1998, 12, 31))
    assert df["event"].tolist() == ["rating_4", "rating_5"] and df["poi_id"].isna().all()
    items = src.items()
    assert items.loc[0, "title"] == "Caf\xe9 Society (1995)"
    assert items.loc[0, "category"] == "Action" and items.loc[0, "genres"] == "Action|Comedy"
    assert src.users()["occupation"].tolist() == ["technician", "other"]
    assert src.pois().empty


def test_movielens_ties_keep_the_file_order_through_the_split(tmp_path):
    # ten ratings in the same second, in the file from item 10 down to item 1: the published split keeps tied
    # rows in file order, so the last two lines (items 2, 1) are test and the one before them (3) validation
    (tmp_path / "u.data").write_text("".join(f"1\t{i}\t4\t881250949\n" for i in range(10, 0, -1)))
    (tmp_path / "u.item").write_text("".join(f"{i}|Film {i} (1995)|01-Jan-1995|||" + "|".join(["0"] * 18 + ["1"])
                                             + "\n" for i in range(1, 11)))
    (tmp_path / "u.user").write_text("1|24|M|technician|85711\n")
    tables = prepared(MovieLensSource(tmp_path), k=1)
    raw_id = tables.id_maps.query("entity == 'item'").set_index("idx")["raw_id"]
    splits = tables.splits.assign(item_id=lambda df: df["item_idx"].map(raw_id))
    assert splits.groupby("split")["item_id"].agg(set).to_dict() == {
        "test": {"2", "1"}, "val": {"3"}, "train": {str(i) for i in range(4, 11)}}
    assert history_rows(splits)["item_id"].tolist() == [str(i) for i in range(10, 3, -1)]   # sequences' order


def test_movielens_1m_layout(tmp_path):
    (tmp_path / "ratings.dat").write_text("1::1193::5::978300760\n1::661::3::978302109\n")
    (tmp_path / "movies.dat").write_text("1193::One Flew (1975)::Drama\n661::James (1996)::Animation|Children's\n")
    (tmp_path / "users.dat").write_text("1::F::1::10::48067\n")
    src = MovieLensSource(tmp_path)
    assert src.date_range() == (date(2000, 12, 31), date(2000, 12, 31))
    assert src.items().set_index("item_id").loc["661", "category"] == "Animation"
    assert src.users().loc[0, "gender"] == "F"


def test_movielens_layout_is_detected(tmp_path):
    with pytest.raises(FileNotFoundError, match="neither u.data"):
        MovieLensSource(tmp_path)
