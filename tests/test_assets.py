"""The whole graph on the tiny preset: checks green, stable re-runs, failures that keep good data."""
import hashlib
from pathlib import Path

import dagster as dg
import pytest
from conftest import ALL, INTEREST, build_rest, checks, ingest, tiny_settings

from kwai_assets.definitions import build_resources, defs
from kwai_assets.io.model_store import ModelStore
from kwai_assets.io.warehouse import Warehouse


def test_every_asset_materializes_and_every_check_passes(built):
    settings, result = built
    evaluations = checks(result)
    expected = {c.name for d in defs.asset_checks for c in d.check_specs}
    assert set(evaluations) == expected
    failed = {name: e.description for name, e in evaluations.items() if not e.passed}
    assert not failed
    stored = Warehouse(settings.home).assets()
    assert set(stored) == {k.to_user_string() for k in defs.resolve_all_asset_keys()} - {"online_store"}  # in Redis


def test_clean_interactions_reports_each_step(built):
    _, result = built
    meta = result.asset_materializations_for_node("clean_interactions")[0].metadata
    assert meta["raw_rows"].value > meta["rows"].value > 0
    for key in ("invalid_missing_id", "invalid_bad_coordinates", "invalid_bad_timestamp", "duplicates",
                "kcore_rows_removed"):
        assert meta[key].value > 0, key       # the synthetic stream carries every kind of dirt
    assert meta["k"].value == 10 and meta["days"].value == 14


def test_evaluation_table_in_warehouse_metadata_and_mlflow(built, warehouse):
    settings, result = built
    table = warehouse.read("evaluation")
    assert set(table["model"]) == {"popularity", "swing_item_knn", "interest_model", "two_tower",
                                   "item2vec_recent_knn", "din_ranker", "cf", "cf_llm_aligned", "llm_adapted",
                                   "llm_cosine"}
    assert set(table["k"]) == {10, 20, 50} and set(table["metric"]) == {"recall", "ndcg", "hr", "mrr"}
    assert table["value"].between(0, 1).all()
    meta = result.asset_materializations_for_node("evaluation")[0].metadata
    assert "| popularity |" in meta["results"].value and "| merged " in meta["candidate_recall"].value
    metrics = ModelStore(settings.home).metrics(meta["mlflow_run_id"].value)
    assert metrics["popularity.ndcg_at_20"] == pytest.approx(
        table.query("model == 'popularity' and metric == 'ndcg' and k == 20")["value"].item())


def test_splits_never_put_later_interactions_in_train(warehouse):
    splits = warehouse.read("splits")
    last_train = splits[splits.split == "train"].groupby("user_idx")["ts"].max()
    first_test = splits[splits.split == "test"].groupby("user_idx")["ts"].min()
    assert (last_train.reindex(first_test.index) <= first_test).all()


def test_id_maps_are_stable_when_new_days_arrive(tmp_path):
    settings = tiny_settings(tmp_path)
    assert ingest(settings, "2026-01-01", "2026-01-10").success
    assert build_rest(settings).success
    wh = Warehouse(settings.home)
    before = wh.read("id_maps")
    assert ingest(settings, "2026-01-11", "2026-01-20").success
    result = build_rest(settings)
    assert result.success and all(e.passed for e in checks(result).values())
    after = wh.read("id_maps")
    kept = before.merge(after, on=["entity", "raw_id"], suffixes=("_before", "_after"))
    assert len(kept) == len(before) and (kept["idx_before"] == kept["idx_after"]).all()
    added = after[after["generation"] == 2]
    assert len(added) > 0 and added.groupby("entity")["idx"].min().gt(
        before.groupby("entity")["idx"].max().reindex(added["entity"].unique(), fill_value=0)).all()
    # and a re-run with nothing new changes nothing but the generation counter
    assert build_rest(settings).success
    again = wh.read("id_maps")
    assert again[["entity", "raw_id", "idx"]].equals(after[["entity", "raw_id", "idx"]])


def test_attribute_loss_above_the_limit_fails_the_check(built, tmp_path):
    settings = tiny_settings(tmp_path)
    assert ingest(settings, "2026-01-01", "2026-01-05").success
    result = build_rest(settings, raise_on_error=False, run_config={
        "ops": {"user_attributes": {"config": {"max_missing_fraction": 0.0}}}})
    message = str(result.get_step_failure_events()[0].step_failure_data.error)   # checked before the write
    assert "users" in message and "have no row in raw_users; limit 0.0%" in message
    assert not result.success       # blocking: downstream steps did not run


def sha(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def test_bad_files_fail_with_a_clear_message_and_keep_the_previous_parquet(tmp_path):
    data = tmp_path / "delivery"
    data.mkdir()
    (data / "interactions.csv").write_text(
        "user_id,item_id,poi_id,lat,lon,ts\nu1,p1,l1,30.5,104.0,2026-01-01T08:00:00\n")
    (data / "users.csv").write_text("user_id,gender\nu1,F\n")
    settings = tiny_settings(tmp_path / "home", source="files", data_dir=str(data))
    resources = build_resources(settings)
    users = dg.AssetSelection.assets("raw_users")
    assert dg.materialize(ALL, resources=resources, selection=users).success
    one_row = {"ops": {"raw_interactions": {"config": {"min_users": 1, "min_items": 1, "min_rows_per_day": 1}}}}
    assert ingest(settings, "2026-01-01", "2026-01-01", run_config=one_row).success
    wh = Warehouse(settings.home)
    users_path, day_path = wh.path("raw_users"), wh.path("raw_interactions", "2026-01-01")
    good = sha(users_path), sha(day_path)

    (data / "users.csv").write_text("gender\nF\n")
    (data / "interactions.csv").write_text(
        "user_id,item_id,poi_id,lat,lon,ts\nu1,p1,l1,930.5,104.0,2026-01-01T08:00:00\n")
    failed = dg.materialize(ALL, resources=resources, selection=users, raise_on_error=False)
    assert not failed.success
    assert "users.csv: missing column 'user_id'" in str(failed.get_step_failure_events()[0].step_failure_data.error)
    failed = ingest(settings, "2026-01-01", "2026-01-01", raise_on_error=False, run_config=one_row)
    message = str(failed.get_step_failure_events()[0].step_failure_data.error)
    assert "interactions.csv: column 'lat' has 1 values outside [-90, 90], e.g. '930.5'" in message
    assert (sha(users_path), sha(day_path)) == good
    assert not list(Path(wh.root).rglob("*.tmp"))


def test_swing_item_knn_beats_popularity(warehouse):
    table = warehouse.read("evaluation").set_index(["model", "metric", "k"])["value"]
    for metric in ("ndcg", "recall"):
        assert table["swing_item_knn", metric, 20] > 1.1 * table["popularity", metric, 20], metric


def test_positive_pairs_come_from_train_only(warehouse):
    splits, pairs = warehouse.read("splits"), warehouse.read("item_positive_pairs")
    train_items = set(splits.loc[splits.split == "train", "item_idx"])
    assert set(pairs["src"]) <= train_items and set(pairs["dst"]) <= train_items
    assert len(warehouse.read("user_positive_pairs")) > 0



def test_a_failing_check_keeps_the_stored_version_and_the_rejected_one_aside(tmp_path):
    settings = tiny_settings(tmp_path)
    assert ingest(settings, "2026-01-01", "2026-01-05").success
    interest = dg.AssetSelection.assets("interest_model").required_multi_asset_neighbors()
    assert build_rest(settings, interest.upstream() - dg.AssetSelection.assets("raw_interactions"),
                      run_config={"ops": {"interest_model": {"config": INTEREST}}}).success
    wh = Warehouse(settings.home)
    kept = {name: sha(wh.path(name)) for name in ("clean_interactions", "user_vectors", "interest_item_vectors")}

    # a k-core that leaves nothing: the asset fails before its write, naming the kept-aside version
    failed = build_rest(settings, dg.AssetSelection.assets("clean_interactions"), raise_on_error=False,
                        run_config={"ops": {"clean_interactions": {"config": {"k": 1000}}}})
    message = str(failed.get_step_failure_events()[0].step_failure_data.error)
    assert "clean_interactions failed its check, so the stored version is unchanged: no rows left (k=1000)" in message
    rejected = list(Path(wh.root, "_rejected", "clean_interactions").glob("*.parquet"))
    assert len(rejected) == 1 and str(rejected[0]) in message

    # a learning rate that turns every vector into NaN: no vector file is replaced
    failed = build_rest(settings, interest, raise_on_error=False,
                        run_config={"ops": {"interest_model": {"config": {**INTEREST, "lr": 1e30}}}})
    assert not failed.success
    assert "user_vectors failed its check" in str(failed.get_step_failure_events()[0].step_failure_data.error)
    assert {name: sha(wh.path(name)) for name in kept} == kept
