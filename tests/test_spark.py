"""The Spark engine writes the same rows as the DuckDB one: every step on `tiny` (and the prepare chain on `small`)
through local[2] Spark, then the prepare and graph groups materialized with KWAI_ENGINE=spark against the DuckDB
home of the session."""
import os
from dataclasses import replace
from datetime import timedelta

import numpy as np
import pandas as pd
import pytest
from conftest import ALL, ingest, instance_for, tiny_settings

from kwai_assets.core import steps as duck
from kwai_assets.core.reid import extend_id_maps, index_sizes
from kwai_assets.core.steps import agreement_problems, digest
from kwai_assets.core.swing import SwingParams, columns_with_neighbours, pair_problems, train_matrix
from kwai_assets.core.walks import item_graph
from kwai_assets.io.warehouse import Warehouse
from kwai_assets.sources import SyntheticSource
from kwai_assets.sources.contract import ITEMS, POIS, USERS

if not os.environ.get("CI"):          # CI installs the `spark` extra and a JDK: there the tests must run
    pytest.importorskip("pyspark")
from kwai_assets.spark import steps as spark  # noqa: E402
from kwai_assets.spark.session import java_problem  # noqa: E402

if java_problem():
    if os.environ.get("CI"):
        raise RuntimeError(java_problem())
    pytest.skip(java_problem(), allow_module_level=True)


def test_both_engines_have_every_step_with_the_same_arguments():
    import inspect

    for name in duck.__all__:
        assert list(inspect.signature(getattr(spark, name)).parameters) == \
            list(inspect.signature(getattr(duck, name)).parameters), name


def both(name: str, *args, **kwargs):
    return getattr(duck, name)(*args, **kwargs), getattr(spark, name)(*args, **kwargs)


def prepared(preset: str) -> dict[str, pd.DataFrame]:
    """The prepare chain on both engines; every intermediate table asserted equal on the way."""
    source = SyntheticSource(preset)
    first, last = source.date_range()
    raw = source.interactions(first, last + timedelta(days=1))
    (clean, report), (clean_s, report_s) = both("clean_interactions", raw, 10)
    assert report == report_s
    pd.testing.assert_frame_equal(clean, clean_s, check_dtype=False)
    tables = {}
    for name, table, spec in (("users", source.users(), USERS), ("items", source.items(), ITEMS),
                              ("pois", source.pois(), POIS)):
        (df, rep), (df_s, rep_s) = both("attributes", clean, table, spec)
        assert rep == rep_s, name
        pd.testing.assert_frame_equal(df, df_s, check_dtype=False)
        tables[name] = df
    ids = {}
    for entity in ("user", "item", "poi"):
        ids[entity], seen_s = both("first_seen", clean, f"{entity}_id")
        assert ids[entity] == seen_s
    maps = extend_id_maps(None, {**ids, "category": sorted(set(tables["items"]["category"]))})
    indexed, indexed_s = both("to_index_space", clean, maps, tables["items"])
    pd.testing.assert_frame_equal(indexed, indexed_s, check_dtype=False)
    for loo in (True, False):
        splits, splits_s = both("split_by_user", indexed, (0.7, 0.1, 0.2), loo)
        pd.testing.assert_frame_equal(splits, splits_s, check_dtype=False)
    return {"splits": splits, "maps": maps}


def assert_same_pairs(duckdb_pairs: pd.DataFrame, spark_pairs: pd.DataFrame, top_k: int, rtol: float = 1e-9) -> None:
    """Equal scores where both engines kept a pair; a pair only one kept ties its src's k-th score (the
    float sums differ in the last bits, which can reorder exact ties at the cut)."""
    merged = duckdb_pairs.merge(spark_pairs, on=["src", "dst"], how="outer", suffixes=("", "_s"), indicator=True)
    kept = merged[merged["_merge"] == "both"]
    np.testing.assert_allclose(kept["score_s"], kept["score"], rtol=rtol)
    kth = duckdb_pairs.groupby("src")["score"].min()
    full = duckdb_pairs.groupby("src").size() == top_k
    for _, row in merged[merged["_merge"] != "both"].iterrows():
        score = row["score"] if row["_merge"] == "left_only" else row["score_s"]
        assert full[row["src"]] and abs(score - kth[row["src"]]) <= rtol * abs(score), row.to_dict()
    assert len(merged) - len(kept) <= 0.001 * len(merged)


@pytest.fixture(scope="module")
def tiny() -> dict[str, pd.DataFrame]:
    return prepared("tiny")


def test_every_prepare_step_writes_the_same_rows_on_tiny(tiny):
    assert len(tiny["splits"]) > 10_000


def test_the_prepare_chain_writes_the_same_rows_on_small():
    assert len(prepared("small")["splits"]) > 80_000


@pytest.mark.parametrize("side", ["item", "user"])
@pytest.mark.parametrize("params", [SwingParams(), SwingParams(alpha=0.5, top_k=10, user_weight=True),
                                    SwingParams(drop_rows_above=40, max_rows_per_column=12, seed=3)])
def test_swing_pairs_and_stats_match(tiny, side, params):
    sizes = index_sizes(tiny["maps"])
    (pairs, stats), (pairs_s, stats_s) = both("positive_pairs", tiny["splits"], sizes, side, params)
    assert stats == stats_s
    assert_same_pairs(pairs, pairs_s, params.top_k)
    train = train_matrix(tiny["splits"], sizes, side)       # the assets' check: exact symmetry, top_k, coverage
    assert pair_problems(pairs_s, params.top_k, columns_with_neighbours(train, params)) == []
    if params.max_rows_per_column:                          # the caps bind here: both engines kept the same rows
        assert stats.interactions < train.nnz


def test_the_first_delivered_row_of_a_duplicated_key_is_kept_on_both():
    source = SyntheticSource("tiny")
    first, last = source.date_range()
    clean, _ = duck.clean_interactions(source.interactions(first, last + timedelta(days=1)), 10)
    items = source.items()
    row = items[items["item_id"] == clean["item_id"].iloc[0]]
    twice = pd.concat([row.assign(category="first"), items, row.assign(category="last")], ignore_index=True)
    (df, report), (df_s, report_s) = both("attributes", clean, twice, ITEMS)
    assert report == report_s and report.duplicate_rows == 2
    pd.testing.assert_frame_equal(df, df_s, check_dtype=False)
    assert df.loc[df["item_id"] == clean["item_id"].iloc[0], "category"].tolist() == ["first"]


def test_spark_swing_does_not_depend_on_partitioning(tiny):
    from kwai_assets.spark.session import spark_session

    """The same pairs and the same walks, bit for bit, with adaptive execution off and 17 shuffle partitions."""
    session, sizes = spark_session(), index_sizes(tiny["maps"])

    def run():
        pairs = spark.positive_pairs(tiny["splits"], sizes, "item", SwingParams())[0]
        return pairs, spark.item_walks(pairs, sizes["item"], 2, 5, 1)

    pairs, walks = run()
    session.conf.set("spark.sql.adaptive.enabled", "false")
    session.conf.set("spark.sql.shuffle.partitions", "17")
    try:
        other_pairs, other_walks = run()
    finally:
        session.conf.set("spark.sql.adaptive.enabled", "true")
        session.conf.set("spark.sql.shuffle.partitions", "8")
    pd.testing.assert_frame_equal(pairs, other_pairs)
    assert np.array_equal(walks, other_walks)


def test_swing_with_a_history_cap_is_refused_on_spark(tiny):
    with pytest.raises(ValueError, match="max_history is not implemented on the Spark engine"):
        spark.positive_pairs(tiny["splits"], index_sizes(tiny["maps"]), "item", SwingParams(max_history=50))


def transitions(walks: np.ndarray, n: int) -> np.ndarray:
    counts = np.zeros((n, n))
    np.add.at(counts, (walks[:, :-1].ravel(), walks[:, 1:].ravel()), 1)
    return counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)


def test_walks_have_the_graphs_distribution_on_both_engines():
    """A planted weighted graph: each engine's walks start `walks_per_node` times from every node, step only
    along edges, and move with the edge weights' probabilities (total variation to the truth, per node)."""
    rng = np.random.default_rng(0)
    src, dst = rng.integers(0, 20, 120), rng.integers(0, 20, 120)
    pairs = pd.DataFrame({"src": src, "dst": dst, "score": rng.random(120) ** 3}).query("src != dst")
    pairs = pairs.drop_duplicates(["src", "dst"]).reset_index(drop=True)
    graph = item_graph(pairs, 20)
    truth = np.asarray(graph.todense()) / np.maximum(np.asarray(graph.sum(axis=1)), 1e-12)
    nodes = np.flatnonzero(np.diff(graph.indptr) > 0)
    for walks in both("item_walks", pairs, 20, 200, 12, 3):
        assert walks.shape == (200 * len(nodes), 12)
        assert (np.bincount(walks[:, 0], minlength=20)[nodes] == 200).all()
        assert (graph[walks[:, :-1].ravel(), walks[:, 1:].ravel()] > 0).all()
        distance = 0.5 * np.abs(transitions(walks, 20) - truth)[nodes].sum(axis=1)
        assert distance.max() < 0.05, distance.max()


def test_the_graph_on_spark_writes_the_duckdb_rows(built, tmp_path_factory):
    """prepare and graph materialized with KWAI_ENGINE=spark on the session's tiny days: the same tables as the
    DuckDB home, the pairs within float tolerance, and the engines_agree checks passing."""
    import dagster as dg

    from kwai_assets.definitions import build_resources

    duck_home = built[0].home
    settings = replace(tiny_settings(tmp_path_factory.mktemp("spark")), engine="spark")
    assert ingest(settings, "2026-01-01", "2026-01-14").success
    selection = dg.AssetSelection.groups("prepare", "graph") | dg.AssetSelection.assets("raw_users", "raw_items",
                                                                                      "raw_pois")
    result = dg.materialize(ALL, resources=build_resources(settings), selection=selection,
                            instance=instance_for(settings), run_config={"ops": {"item2vec": {"config": {
                                "dim": 32, "walks_per_node": 5, "walk_length": 20}}}})
    assert result.success
    mine, theirs = Warehouse(settings.home), Warehouse(duck_home)
    for asset in ("clean_interactions", "user_attributes", "item_attributes", "poi_attributes", "id_maps",
                  "interactions", "splits"):
        pd.testing.assert_frame_equal(mine.read(asset), theirs.read(asset), check_dtype=False, obj=asset)
    for side in ("item", "user"):
        assert_same_pairs(theirs.read(f"{side}_positive_pairs"), mine.read(f"{side}_positive_pairs"), 50)
    walked = np.union1d(*mine.read("item_positive_pairs")[["src", "dst"]].T.to_numpy())
    assert np.array_equal(np.sort(mine.read("item2vec")["item_idx"]), walked)
    evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert evaluations["splits_engines_agree"].description.startswith("only spark")
    duckdb = dg.materialize(ALL, resources=build_resources(replace(settings, engine="duckdb")),
                            selection=dg.AssetSelection.assets("splits"), instance=instance_for(settings))
    agree = {e.check_name: e for e in duckdb.get_asset_check_evaluations()}["splits_engines_agree"]
    assert agree.passed and agree.description.startswith("from the same input both engines wrote")


def test_engines_that_disagree_are_named():
    assert agreement_problems("splits", {"duckdb": (10, "a"), "spark": (10, "a")}) == []
    assert agreement_problems("pairs", {"duckdb": (10, None), "spark": (10, None)}) == []
    assert agreement_problems("splits", {"duckdb": (10, "a"), "spark": (9, "a")}) == [
        "splits: from the same input the engines wrote different row counts: duckdb 10, spark 9"]
    assert "different ones" in agreement_problems("splits", {"duckdb": (10, "a"), "spark": (10, "b")})[0]


def test_the_digest_ignores_row_order_and_sees_any_change(tiny):
    splits = tiny["splits"]
    assert digest(splits) == digest(splits.sample(frac=1, random_state=0))
    assert digest(splits) != digest(splits.assign(split=splits["split"].shift(1, fill_value="train")))
    assert digest(splits, k=10) != digest(splits, k=5)
