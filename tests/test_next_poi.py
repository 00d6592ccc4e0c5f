"""Next-POI: AutoCorrelation against its definition, the distance term, check-ins, the protocol and the baselines,
the model against Markov on the tiny preset's planted routines, the assets, and the check-in file loader."""
import math
from datetime import date
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest
import torch
from conftest import ALL, ingest, tiny_settings

from kwai_assets.cli import summary
from kwai_assets.core.evaluation import device
from kwai_assets.core.geo import haversine_km
from kwai_assets.core.mobility import (
    POICatalog,
    Queries,
    baseline_metrics,
    build_checkins,
    checkin_problems,
    protocol_metrics,
    ranks,
    table_problems,
)
from kwai_assets.core.pipeline import prepared
from kwai_assets.definitions import build_resources
from kwai_assets.io.model_store import ModelStore
from kwai_assets.io.warehouse import Warehouse
from kwai_assets.models import next_poi
from kwai_assets.models.next_poi import Batch, NextPOIConfig, lag_correlation, time_delay_aggregation
from kwai_assets.sources import FilesSource, SyntheticSource
from kwai_assets.sources.contract import ContractError


# -- AutoCorrelation --------------------------------------------------------------------
def test_lag_correlation_is_the_direct_sum():
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(2, 12, 3, generator=g), torch.randn(2, 12, 3, generator=g)
    direct = torch.tensor([[np.mean([sum(float(q[b, (t + tau) % 12, c] * k[b, t, c]) for t in range(12))
                                     for c in range(3)]) for tau in range(12)] for b in range(2)], dtype=torch.float32)
    torch.testing.assert_close(lag_correlation(q, k), direct, atol=1e-5, rtol=1e-5)


def test_time_delay_aggregation_is_the_direct_roll():
    g = torch.Generator().manual_seed(1)
    v, corr = torch.randn(2, 10, 4, generator=g), torch.randn(2, 10, generator=g)
    out = time_delay_aggregation(v, corr, top=3)
    for b in range(2):
        weight, lag = corr[b].topk(3)
        expected = sum(w * torch.roll(v[b], int(tau), dims=0)            # out[t] = v[t - tau]
                       for w, tau in zip(torch.softmax(weight, 0), lag, strict=True))
        torch.testing.assert_close(out[b], expected, atol=1e-6, rtol=1e-5)


def test_autocorrelation_finds_a_planted_period():
    g = torch.Generator().manual_seed(2)
    period, length = 5, 30
    pattern = torch.randn(period, 8, generator=g)
    x = pattern.repeat(length // period, 1)[None] + 0.05 * torch.randn(1, length, 8, generator=g)
    top = lag_correlation(x, x)[0].topk(4).indices.tolist()
    assert all(lag % period == 0 for lag in top), top        # lags 0, 5, 25, 10 ...: multiples of the period


def test_autocorrelation_reads_the_value_its_query_matched():
    # the query at t matches the key 3 steps earlier: the lag is 3, and position t reads the value at t - 3
    g = torch.Generator().manual_seed(3)
    k = torch.randn(1, 12, 16, generator=g)
    q = torch.roll(k, 3, dims=1)                              # q[t] = k[t - 3]
    corr = lag_correlation(q, k)
    assert int(corr[0].argmax()) == 3
    v = torch.arange(12.0).reshape(1, 12, 1)
    out = time_delay_aggregation(v, corr, top=1)
    assert out[0, :, 0].tolist() == [float((t - 3) % 12) for t in range(12)]


# -- the distance term ----------------------------------------------------------------
def toy_model(distance: bool = True) -> tuple[next_poi.NextPOI, Batch]:
    """Four POIs on a meridian, 0, 0.5, 5 and 50 km from POI 1; one user at POI 1 whose next POI is the nearest."""
    km_per_degree = 2 * math.pi * 6371.0 / 360
    xy = np.array([[np.nan, np.nan]] + [[40.0 + km / km_per_degree, -74.0] for km in (0.0, 0.5, 5.0, 50.0)])
    model = next_poi.NextPOI({"poi": 5, "category": 2}, xy, np.array([0, 1, 1, 1, 1]),
                             NextPOIConfig(dim=8, history_len=4, predictor_len=4, distance=distance))
    one = torch.ones(1, 4, dtype=torch.long)
    batch = Batch(poi=torch.tensor([[0, 0, 0, 1]]), category=torch.tensor([[0, 0, 0, 1]]), hour=one * 10,
                  gaps=torch.zeros(1, 4, 2), ago=torch.tensor([[math.nan] * 3 + [1.0]]),
                  target_hour=torch.tensor([11]), target=torch.tensor([2]))
    return model, batch


def test_distance_term_gradient_prefers_nearer_candidates():
    model, batch = toy_model()
    torch.nn.functional.cross_entropy(model(batch), batch.target).backward()
    with torch.no_grad():
        model.km.values -= 1.0 * model.km.values.grad        # one gradient step on the distance function
        g = model.km(torch.tensor([0.5, 5.0, 50.0]))
    assert g[0] > 0 > g[1] and g[0] > g[2], g.tolist()


def test_without_distance_there_is_no_distance_parameter():
    model, batch = toy_model(distance=False)
    scores = model(batch)[0]
    assert model.km is None and torch.isfinite(scores[2:]).all()
    assert scores[0] == scores[1] == -torch.inf         # padding, and the last check-in's own POI


# -- check-ins, protocol, baselines -----------------------------------------------------
@pytest.fixture(scope="module")
def tiny():
    tables = prepared(SyntheticSource("tiny", seed=7))
    catalog = POICatalog.from_frames(tables.pois, tables.id_maps)
    return tables, catalog, build_checkins(tables.splits, catalog)


def test_checkins_are_the_visits_in_time_order(tiny):
    tables, catalog, checkins = tiny
    assert checkin_problems(checkins, len(catalog.category)) == []
    assert set(checkins["split"]) == {"train", "val", "test"}
    # a visit is at its POI; clicks made elsewhere (trending photos watched at home) are not visits
    clicks = tables.splits[tables.splits["poi_idx"] > 0]
    km = haversine_km(clicks["lat"], clicks["lon"], catalog.xy[clicks["poi_idx"], 0], catalog.xy[clicks["poi_idx"], 1])
    assert (km > 0.5).sum() > 0 and len(checkins) < (km <= 0.5).sum()      # some far; repeats merged
    same_user = checkins["user_idx"].to_numpy()[1:] == checkins["user_idx"].to_numpy()[:-1]
    assert not (same_user & (checkins["poi_idx"].to_numpy()[1:] == checkins["poi_idx"].to_numpy()[:-1])).any()
    row = checkins.iloc[np.flatnonzero(same_user)[0] + 1]
    prev = checkins.iloc[np.flatnonzero(same_user)[0]]
    assert row["km_since_prev"] == pytest.approx(float(haversine_km(prev["lat"], prev["lon"], row["lat"], row["lon"])))
    assert row["hours_since_prev"] == pytest.approx((row["ts"] - prev["ts"]).total_seconds() / 3600)
    ts = checkins["ts"]
    assert (checkins["hour_of_week"] == ts.dt.dayofweek * 24 + ts.dt.hour).all()


def test_hour_of_week_is_local_time():
    splits = pd.DataFrame({"user_idx": [1, 1], "ts": pd.to_datetime(["2012-04-02 03:00", "2012-04-02 05:00"]),
                           "poi_idx": [1, 2], "lat": [40.7, 40.8], "lon": [-74.0, -74.0], "split": ["train", "test"]})
    catalog = POICatalog(np.array([[np.nan, np.nan], [40.7, -74.0], [40.8, -74.0]]), np.zeros(3, np.int64),
                         np.array([0.0, -240.0, -240.0]))
    checkins = build_checkins(splits, catalog)
    assert checkins["hour_of_week"].tolist() == [6 * 24 + 23, 1]      # Monday 03:00 UTC is Sunday 23:00 in New York


def test_ranks_and_metrics():
    scores = np.array([[9.0, 0.3, 0.9, 0.1], [9.0, 0.5, 0.5, 0.2]])
    assert ranks(scores, np.array([1, 2])).tolist() == [2, 2]          # padding ignored; a tie counts against
    assert ranks(np.array([[0.0, np.nan, 0.5]]), np.array([1])).tolist() == [3]     # a NaN target is last
    assert protocol_metrics(np.array([1, 2, 20])) == pytest.approx(
        {"acc_at_1": 1 / 3, "acc_at_5": 2 / 3, "acc_at_10": 2 / 3, "mrr": (1 + 0.5 + 0.05) / 3})


def test_baselines_on_a_hand_made_route():
    # user 1 goes 1 -> 2 -> 1 -> 2 in train; user 2 goes 3 -> 4, 4 a few hundred metres from 3 and far from 1
    checkins = pd.DataFrame({"user_idx": [1, 1, 1, 1, 1, 2, 2, 2], "poi_idx": [1, 2, 1, 2, 1, 3, 4, 3],
                             "split": ["train"] * 4 + ["test", "train", "train", "test"]})
    catalog = POICatalog(np.array([[np.nan, np.nan], [40.0, -74.0], [41.0, -74.0], [40.5, -74.0], [40.5, -74.003]]),
                         np.zeros(5, np.int64), np.zeros(5))
    found = baseline_metrics(checkins, catalog, Queries.of(checkins, "test"), radius_km=1.0)
    assert found["markov"]["acc_at_1"] == 0.5              # 2 -> 1 seen; 4 -> 3 never, so popularity picks 1
    assert found["radius_popular"]["acc_at_1"] == 1.0      # from 2 the most popular other POI; from 4 the near 3
    assert found["popular"]["acc_at_1"] == 0.5             # 1 then 2 by popularity (the last POI is never proposed)
    assert found["popular"]["mrr"] == pytest.approx((1 + 1 / 3) / 2)      # from 4: 1, 2, then 3


def test_synthetic_plants_mobility(tiny):
    _, catalog, checkins = tiny
    same_day = ((checkins["user_idx"].diff() == 0) & (checkins["ts"].dt.date == checkins["ts"].shift().dt.date))
    prev = checkins["poi_idx"].shift().fillna(0).astype(int).to_numpy()[same_day]
    # nearby moves: the next visit of the day is one of the 8 POIs nearest the previous one far more often than
    # another visit of the same user is
    other = checkins.groupby("user_idx")["poi_idx"].transform(lambda p: p.sample(frac=1, random_state=0).to_numpy())
    km = haversine_km(catalog.xy[:, None, 0], catalog.xy[:, None, 1], catalog.xy[None, :, 0], catalog.xy[None, :, 1])
    np.fill_diagonal(km, np.inf)
    by_distance = np.nan_to_num(km, nan=np.inf).argsort(axis=1).argsort(axis=1) + 1      # 1 = the nearest
    nearest = by_distance[prev, checkins["poi_idx"].to_numpy()[same_day]] <= 8
    assert nearest.mean() > 0.6 and nearest.mean() > 1.5 * (by_distance[prev, other.to_numpy()[same_day]] <= 8).mean()
    # routines: in one (weekday or weekend, six-hour band) slot a user's most visited POI takes a large share
    slot = (checkins["hour_of_week"] // 24 >= 5) * 10 + (checkins["hour_of_week"] % 24) // 6
    share = checkins.assign(slot=slot).groupby(["user_idx", "slot"])["poi_idx"].agg(
        lambda p: p.value_counts(normalize=True).iloc[0] if len(p) >= 5 else np.nan).dropna()
    assert share.median() > 0.3


@pytest.mark.parametrize("encoder", ["attention", "autocorrelation"])
def test_model_beats_markov_on_the_tiny_planted_routines(tiny, encoder):
    _, catalog, checkins = tiny
    config = NextPOIConfig(encoder=encoder, epochs=15, seed=0)
    model, history = next_poi.train_next_poi(checkins, catalog, int(catalog.category.max()) + 1, config)
    found = next_poi.evaluate(model, checkins, "test")
    markov = baseline_metrics(checkins, catalog, Queries.of(checkins, "test"))["markov"]
    assert found["acc_at_10"] > markov["acc_at_10"] and found["mrr"] > markov["mrr"] + 0.02, (found, markov)
    assert history[-1]["loss"] < history[0]["loss"]
    if encoder == "attention" and device().type == "cpu":         # bf16 and atomics on CUDA are not bit-exact
        again, _ = next_poi.train_next_poi(checkins, catalog, int(catalog.category.max()) + 1, config)
        assert next_poi.evaluate(again, checkins, "test") == found


def test_table_problems_name_the_baseline_that_wins():
    table = pd.DataFrame({"method": ["next_poi", "markov"], "Acc@10": [0.2, 0.3]})
    assert table_problems(table) == ["next_poi Acc@10 0.2000 is not above markov's 0.3000"]


# -- the check-in file --------------------------------------------------------------------
FOURSQUARE = [
    ("470", "v1", "c1", "Bar", "40.7198", "-74.0025", "-240", "Tue Apr 03 18:00:09 +0000 2012"),
    ("470", "v2", "c2", "Bridge", "40.6068", "-74.0441", "-240", "Tue Apr 03 20:30:00 +0000 2012"),
    ("979", "v2", "c2", "Bridge", "40.6068", "-74.0441", "-240", "Wed Apr 04 03:15:00 +0000 2012"),
    ("979", "v1", "c1", "Bar", "40.7198", "-74.0025", "-240", "Wed Apr 04 18:00:00 +0000 2012"),
]


def write_checkins(tmp_path, rows, name="checkins.txt"):
    (tmp_path / name).write_text("".join("\t".join(r) + "\n" for r in rows))
    return FilesSource(tmp_path)


def test_foursquare_layout_becomes_the_contract_tables(tmp_path):
    source = write_checkins(tmp_path, FOURSQUARE)
    assert source.date_range() == (date(2012, 4, 3), date(2012, 4, 4))
    clicks = source.interactions(date(2012, 4, 3), date(2012, 4, 5))
    assert clicks[["user_id", "item_id", "poi_id"]].values.tolist() == [
        ["470", "v1", "v1"], ["470", "v2", "v2"], ["979", "v2", "v2"], ["979", "v1", "v1"]]
    assert clicks["ts"].iloc[0] == pd.Timestamp("2012-04-03 18:00:09")        # UTC, as the contract says
    pois = source.pois().set_index("poi_id")
    assert pois.loc["v2", "category"] == "Bridge" and pois.loc["v2", "utc_offset_min"] == "-240"
    assert pois.loc["v1", "lat"] == pytest.approx(40.7198)
    assert source.items().set_index("item_id").loc["v1", "category"] == "Bar"
    assert sorted(source.users()["user_id"]) == ["470", "979"]


def test_gowalla_layout(tmp_path):
    rows = [("0", "2010-10-19T23:55:27Z", "30.2359", "-97.7951", "22847"),
            ("0", "2010-10-18T22:17:43Z", "30.2691", "-97.7493", "420315")]
    source = write_checkins(tmp_path, rows)
    clicks = source.interactions(date(2010, 10, 18), date(2010, 10, 20))
    assert clicks["item_id"].tolist() == ["420315", "22847"]
    assert clicks["ts"].iloc[1] == pd.Timestamp("2010-10-19 23:55:27")
    assert set(source.pois()["utc_offset_min"]) == {"-420"}      # Austin: local solar time, round(-97.8 / 15) h


def test_bad_checkin_files_are_refused_by_file_column_and_count(tmp_path):
    bad = [FOURSQUARE[0], FOURSQUARE[1], ("979",) + FOURSQUARE[2][1:4] + ("95.1", "-74.0441", "-240", "soon"),
           ("979", "v1", "c1", "Bar", "40.7198", "-200", "-240", "Wed Apr 04 18:00:00 +0000 2012"),
           ("31",) + FOURSQUARE[0][1:]]
    with pytest.raises(ContractError) as error:
        write_checkins(tmp_path, bad).users()
    message = str(error.value)
    assert "checkins.txt: column 8 (utc_time) has 1 values that are not a UTC time" in message
    assert "checkins.txt: column 5 (latitude) has 1 values that are not a number in [-90, 90], e.g. '95.1'" in message
    assert "checkins.txt: column 6 (longitude) has 1 values" in message
    assert "checkins.txt: column 1 (user_id) has 1 users with a single check-in, e.g. '31'" in message
    with pytest.raises(ContractError, match="checkins.txt: 3 tab-separated columns"):
        write_checkins(tmp_path, [("a", "b", "c")]).users()
    with pytest.raises(ContractError, match=r"checkins.txt: the file is empty \(0 check-ins\)"):
        write_checkins(tmp_path, []).users()
    (tmp_path / "users.csv").write_text("user_id\n470\n")
    with pytest.raises(ValueError, match="holds both checkins.txt and users.csv"):
        write_checkins(tmp_path, FOURSQUARE).users()


def test_latin1_checkin_file_is_read(tmp_path):
    rows = [r[:3] + ("Caf\xe9",) + r[4:] for r in FOURSQUARE]
    (tmp_path / "checkins.txt").write_bytes("".join("\t".join(r) + "\n" for r in rows).encode("latin-1"))
    assert set(FilesSource(tmp_path).items()["category"]) == {"Caf\xe9"}


def test_bad_checkin_file_keeps_the_stored_days(tmp_path):
    data = tmp_path / "delivery"
    data.mkdir()
    # the graph's daily partitions start on 2026-01-01 (a Thursday)
    days = {"Tue Apr 03": "Thu Jan 01", "Wed Apr 04": "Fri Jan 02"}
    rows = [r[:7] + (days[r[7][:10]] + r[7][10:-4] + "2026",) for r in FOURSQUARE]
    write_checkins(data, rows)
    settings = tiny_settings(tmp_path / "home", source="files", data_dir=str(data))
    few = {"ops": {"raw_interactions": {"config": {"min_users": 1, "min_items": 1, "min_rows_per_day": 1}}}}
    assert ingest(settings, "2026-01-01", "2026-01-01", run_config=few).success
    assert dg.materialize(ALL, resources=build_resources(settings), selection=dg.AssetSelection.assets("raw_pois"))
    wh = Warehouse(settings.home)
    day = Path(wh.path("raw_interactions", "2026-01-01"))
    good = day.read_bytes()
    assert set(wh.read("raw_pois")["utc_offset_min"]) == {"-240"}
    write_checkins(data, [rows[0][:4] + ("91", "-74.0", "-240", rows[0][7]), *rows[1:]])
    failed = ingest(settings, "2026-01-01", "2026-01-01", run_config=few, raise_on_error=False)
    message = str(failed.get_step_failure_events()[0].step_failure_data.error)
    assert "checkins.txt: column 5 (latitude) has 1 values that are not a number in [-90, 90], e.g. '91'" in message
    assert day.read_bytes() == good


def test_checkins_and_next_poi_assets(built, warehouse):
    settings, result = built
    checkins = warehouse.read("checkins")
    meta = result.asset_materializations_for_node("checkins")[0].metadata
    assert meta["rows"].value == len(checkins) and meta["test"].value == (checkins["split"] == "test").sum()
    table = warehouse.read("next_poi")
    assert table["method"].tolist() == ["next_poi (attention)", "next_poi (attention) without distance",
                                        "popular", "radius_popular", "markov"]
    assert table[["Acc@1", "Acc@5", "Acc@10", "MRR"]].apply(lambda c: c.between(0, 1)).all().all()
    assert (table["Acc@1"] <= table["Acc@5"]).all() and (table["Acc@5"] <= table["Acc@10"]).all()
    meta = result.asset_materializations_for_node("next_poi")[0].metadata
    assert "| markov " in meta["results"].value
    model = ModelStore(settings.home).load(meta["mlflow_run_id"].value, "next_poi")
    found = next_poi.evaluate(model, checkins, "test")
    assert found["acc_at_10"] == pytest.approx(table["Acc@10"].iloc[0])     # the stored weights give the table
    assert "next POI (test check-ins, every POI ranked)" in summary(settings)   # `make demo` prints the table
