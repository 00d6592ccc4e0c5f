"""Validity filter, exact dedupe and iterative k-core on hand-made cases."""
import pandas as pd
import pytest

from kwai_assets.core.clean import clean_interactions, newest_days


def rows(pairs, day="2026-01-05", **overrides):
    base = pd.Timestamp(day)
    df = pd.DataFrame([
        {"user_id": u, "item_id": i, "poi_id": "l1", "lat": 30.0, "lon": 104.0,
         "ts": base + pd.Timedelta(minutes=n), "event": "click", "seq": n, "pdate": day}
        for n, (u, i) in enumerate(pairs)
    ])
    for col, value in overrides.items():
        df[col] = value
    return df


def test_kcore_cascades_until_stable():
    # k=2. u3 has one row -> removed; that leaves item c with one row -> removed;
    # that leaves u2 with one row -> removed; u1 / a / b form a stable 2-core.
    pairs = [("u1", "a"), ("u1", "b"), ("u4", "a"), ("u4", "b"),
             ("u2", "b"), ("u2", "c"), ("u3", "c")]
    clean, report = clean_interactions(rows(pairs), k=2)
    assert sorted(set(clean["user_id"])) == ["u1", "u4"]
    assert sorted(set(clean["item_id"])) == ["a", "b"]
    assert report.kcore_rows_removed == 3
    assert report.kcore_users_removed == 2 and report.kcore_items_removed == 1
    assert report.kcore_iterations >= 2


def test_kcore_can_empty_the_data():
    clean, report = clean_interactions(rows([("u1", "a"), ("u2", "b")]), k=2)
    assert clean.empty and report.rows == 0


def test_every_survivor_has_k_rows_on_random_data():
    import numpy as np

    rng = np.random.default_rng(0)
    pairs = list(zip(rng.integers(0, 60, 3000).astype(str), rng.zipf(1.6, 3000).astype(str), strict=True))
    clean, _ = clean_interactions(rows(pairs), k=5)
    assert len(clean) > 0
    assert clean.groupby("user_id").size().min() >= 5
    assert clean.groupby("item_id").size().min() >= 5


def test_invalid_rows_and_duplicates_are_counted_and_dropped():
    good = rows([("u1", "a"), ("u1", "b"), ("u2", "a"), ("u2", "b")])
    missing = rows([(None, "a")])
    bad_lat = rows([("u1", "a")], lat=91.0)
    epoch = rows([("u1", "b")], ts=pd.Timestamp(0))
    future = rows([("u2", "b")], ts=pd.Timestamp("2026-01-06 00:00:01"))
    dup = good.iloc[[0]]
    no_coords = rows([("u1", "c"), ("u2", "c")], lat=None, lon=None)
    raw = pd.concat([good, missing, bad_lat, epoch, future, dup, no_coords], ignore_index=True)
    clean, report = clean_interactions(raw, k=1)
    assert report.raw_rows == 11
    assert report.invalid == {"missing_id": 1, "bad_coordinates": 1, "bad_timestamp": 2}
    assert report.duplicates == 1
    assert len(clean) == 6          # missing coordinates are unknown, not impossible
    assert clean.equals(clean_interactions(raw.sample(frac=1, random_state=1), k=1)[0])  # order-independent


def test_k_must_be_positive():
    with pytest.raises(ValueError, match="k must be >= 1"):
        clean_interactions(rows([("u1", "a")]), k=0)


def test_window_keeps_newest_days():
    raw = pd.concat([rows([("u1", "a")], day=d) for d in ("2026-01-01", "2026-01-02", "2026-01-03")])
    assert sorted(newest_days(raw, 2)["pdate"]) == ["2026-01-02", "2026-01-03"]
    assert len(newest_days(raw, None)) == 3


def test_a_row_delivered_twice_is_kept_once_at_its_first_delivery():
    raw = rows([("u1", "a"), ("u1", "b")])
    clean, report = clean_interactions(pd.concat([raw.iloc[[0]].assign(seq=7), raw], ignore_index=True), k=1)
    assert report.duplicates == 1
    assert clean[["item_id", "seq"]].values.tolist() == [["a", 0], ["b", 1]]
