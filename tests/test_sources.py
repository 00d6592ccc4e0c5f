"""Sources: synthetic determinism and planted structure; files contract; MovieLens layouts."""
from datetime import date

import pandas as pd
import pytest

from kwai_assets.core.clean import clean_interactions
from kwai_assets.sources import FilesSource, MovieLensSource, SyntheticSource
from kwai_assets.sources.contract import ContractError

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
    # with Dirichlet(0.3) tastes over 8 categories, a user's top category takes far more than 1/8
    assert favourite.median() > 0.4


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
    assert list(df.columns) == ["user_id", "item_id", "poi_id", "lat", "lon", "ts", "event", "pdate"]
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
     "interactions.csv: column 'ts' has 1 values that are not a timestamp (ISO 8601 or Unix seconds), e.g. 'yesterday'"),
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
