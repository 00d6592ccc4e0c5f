"""Recall: the two-tower model, DeepWalk walks and item2vec, the faiss index and the candidate set."""
import hashlib
import uuid
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from conftest import build_rest, ingest, tiny_settings

from kwai_assets.core.ann import HNSWParams, build_and_measure, search, store_index, stored_channels, stored_index
from kwai_assets.core.baselines import popularity
from kwai_assets.core.candidates import merge_channels, merged_recall_problems, recall_of
from kwai_assets.core.evaluation import EvalData, evaluate
from kwai_assets.core.pipeline import prepared
from kwai_assets.core.swing import swing
from kwai_assets.core.walks import item_graph, random_walks
from kwai_assets.io.warehouse import Warehouse
from kwai_assets.models.item2vec import Item2VecConfig, train_item2vec
from kwai_assets.models.two_tower import TwoTowerConfig, TwoTowerData, scorer, train_two_tower, vectors
from kwai_assets.sources import SyntheticSource


@pytest.fixture(scope="module")
def tiny():
    tables = prepared(SyntheticSource(preset="tiny", seed=7))
    sizes = tables.sizes
    return tables, EvalData.from_splits(tables.splits, sizes["user"], sizes["item"])


def _two_tower_data(tables) -> TwoTowerData:
    return TwoTowerData.from_frames(tables.splits, tables.id_maps, tables.users)


def test_two_tower_history_is_the_users_own_past_without_the_target(tiny):
    tables, _ = tiny
    data = _two_tower_data(tables)
    positions = np.arange(len(data.seq_items))
    history = data.history(positions, 5)
    for p in (0, 1, 7, len(positions) - 1):
        start = data.seq_start[p]
        expected = data.seq_items[max(start, p - 5):p]
        assert history[p, 5 - len(expected):].tolist() == expected.tolist()
        assert (history[p, :5 - len(expected)] == 0).all()
    users, last = data.last_history(5)
    assert len(users) == len(np.unique(data.seq_users))
    u = users[3]
    assert last[3].tolist() == data.seq_items[data.seq_users == u][-5:].tolist()
    assert data.item_features[:, 2].max() > 1             # POIs with coordinates give location cells


def test_two_tower_beats_popularity_with_every_negative_kind_and_is_deterministic(tiny):
    tables, data = tiny
    tt = _two_tower_data(tables)
    config = TwoTowerConfig(dim=32, epochs=15, batch_size=256, lr=3e-3, pop_negatives=64, hard_negatives=2,
                            hard_pool=20, patience=15)
    model, history = train_two_tower(tt, data, config)
    assert history[-1]["val_loss"] < history[0]["val_loss"]       # it converges: the validation loss falls
    ndcg = evaluate(scorer(model, tt), data, ks=(20,))["ndcg", 20]
    assert ndcg > 1.3 * evaluate(popularity(data), data, ks=(20,))["ndcg", 20]
    again, _ = train_two_tower(tt, data, config)
    assert np.array_equal(vectors(again, tt)[1], vectors(model, tt)[1])


def test_walks_follow_edges_in_proportion_to_their_weights():
    # 0 - 1 (weight 1), 0 - 2 (weight 3), 2 - 3 (weight 1); node 4 has no edge
    pairs = pd.DataFrame({"src": [0, 0, 2], "dst": [1, 2, 3], "score": [1.0, 3.0, 1.0]})
    graph = item_graph(pairs, 5)
    walks = random_walks(graph, walks_per_node=4000, length=6, seed=0)
    assert set(walks[:, 0]) == {0, 1, 2, 3} and len(walks) == 16_000
    steps = np.stack([walks[:, :-1].ravel(), walks[:, 1:].ravel()])
    assert graph[steps[0], steps[1]].min() > 0                    # only existing edges are walked
    from_zero = steps[1][steps[0] == 0]
    assert np.mean(from_zero == 2) == pytest.approx(0.75, abs=0.01)   # 3 / (1 + 3), over ~20k steps
    from_two = steps[1][steps[0] == 2]
    assert np.mean(from_two == 0) == pytest.approx(0.75, abs=0.01)
    assert np.array_equal(walks, random_walks(graph, walks_per_node=4000, length=6, seed=0))


def test_walks_refuse_a_graph_with_dead_ends():
    directed = sp.csr_matrix((np.ones(1), ([0], [1])), shape=(2, 2))
    with pytest.raises(ValueError, match="dead ends"):
        random_walks(directed)


def test_item2vec_puts_items_of_a_planted_category_and_place_closer(tiny):
    """Planted: a click picks a category, then a POI of it near the user's home, then one of its photos."""
    tables, data = tiny
    pairs, _ = swing(data.train)
    frame, stats = train_item2vec(pairs, data.n_items, Item2VecConfig(dim=32, walks_per_node=5, walk_length=20))
    assert stats.walks == 5 * len(np.union1d(pairs["src"], pairs["dst"])) and len(frame) * 5 == stats.walks
    item = tables.splits.drop_duplicates("item_idx").set_index("item_idx").reindex(frame["item_idx"])
    matrix = np.stack(frame["vector"].to_numpy())
    centred = matrix - matrix.mean(0)          # the offset every vector shares says nothing about similarity
    unit = centred / np.linalg.norm(centred, axis=1, keepdims=True)
    cosine, off = unit @ unit.T, ~np.eye(len(unit), dtype=bool)
    for labels, margin in ((item["poi_idx"].to_numpy(), 0.3),
                           ((item["category_idx"] * 10_000 + np.floor(item["lat"] / 0.1)).to_numpy(), 0.1)):
        same = labels[:, None] == labels[None, :]
        assert cosine[same & off].mean() > cosine[~same].mean() + margin
    again, _ = train_item2vec(pairs, data.n_items, Item2VecConfig(dim=32, walks_per_node=5, walk_length=20))
    assert np.array_equal(np.stack(again["vector"].to_numpy()), matrix)


def _vectors(matrix: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame({"item_idx": np.arange(1, len(matrix) + 1), "vector": list(matrix.astype(np.float32))})


@pytest.mark.parametrize("url", ["", f"memory://hnsw-{uuid.uuid4().hex}"])
def test_hnsw_finds_the_exact_neighbours_and_round_trips_through_faiss_files(tmp_path, url):
    rng = np.random.default_rng(0)
    matrix = rng.normal(size=(5000, 32)).astype(np.float32)
    index, quality, problems = build_and_measure("random", _vectors(matrix), None, HNSWParams(), n_queries=300)
    assert not problems and quality.recall_at_10 >= 0.95 and quality.queries == 300
    wh = Warehouse(tmp_path, url)
    path = store_index(wh, "random", index)
    assert wh.fs.ls(path.rsplit("/", 1)[0], detail=False) == [wh.fs._strip_protocol(path)]   # no temporary file
    assert stored_channels(wh) == ["random"]
    _, found = search(stored_index(wh, "random"), matrix[:3], 1)
    assert found[:, 0].tolist() != [0, 0, 0] and (found >= 1).all()   # ids are item_idx, not positions


@pytest.mark.parametrize("plant, message", [
    (lambda m: m.__setitem__((7, 3), np.nan), "rows with non-finite values"),
    (lambda m: m.__setitem__(7, 0.0), "all-zero rows"),
])
def test_index_refuses_bad_vectors_naming_the_asset_and_rows(plant, message):
    matrix = np.random.default_rng(0).normal(size=(50, 8)).astype(np.float32)
    plant(matrix)
    index, _, problems = build_and_measure("two_tower_item_embeddings", _vectors(matrix), None, HNSWParams())
    assert index is None
    text = "; ".join(problems)
    assert "two_tower_item_embeddings" in text and message in text and "[8]" in text   # item_idx 8 is row 7


def test_index_refuses_queries_of_another_dimension():
    items = _vectors(np.ones((10, 8)))
    queries = pd.DataFrame({"user_idx": [1], "vector": [np.ones(4, np.float32)]})
    _, _, problems = build_and_measure("cf_item_embeddings", items, queries, HNSWParams())
    assert problems == ["cf_item_embeddings: item vectors have dim 8, its queries [4]"]


def test_merge_fuses_ranks_keeps_each_channels_rank_and_puts_the_fallback_last():
    a = pd.DataFrame({"user_idx": [1, 1, 1], "item_idx": [10, 11, 12], "rank": [1, 2, 3]})
    b = pd.DataFrame({"user_idx": [1, 1], "item_idx": [11, 13], "rank": [1, 2]})
    pop = pd.DataFrame({"user_idx": [1, 1, 1], "item_idx": [14, 10, 15], "rank": [1, 2, 3]})
    merged = merge_channels({"a": a, "b": b, "popularity": pop}, per_channel=3, total=5, rrf_k=60)
    # 11: 1/62 + 1/61 (two channels agree) > 10: 1/61 > 13: 1/62 > 12: 1/63; then the fallback's own, in its order
    assert merged["item_idx"].tolist() == [11, 10, 13, 12, 14]
    row = merged.set_index("item_idx").loc[11]
    assert row["channels"] == "a,b" and row["rank_a"] == 2 and row["rank_b"] == 1 and pd.isna(row["rank_popularity"])
    assert row["score"] == pytest.approx(1 / 62 + 1 / 61)
    assert merged.set_index("item_idx").loc[10, "channels"] == "a,popularity"
    assert merged.set_index("item_idx").loc[14, "score"] == 0.0          # the fallback adds nothing to a score
    assert merge_channels({"a": a, "b": b}, per_channel=2, total=10)["item_idx"].tolist() == [11, 10, 13]


def test_recall_counts_only_unseen_test_items_and_the_merge_check_compares(tiny):
    _, data = tiny
    test = data.test.tocoo()
    every_test_item = pd.DataFrame({"user_idx": test.row, "item_idx": test.col})
    recall, users = recall_of(every_test_item, data)
    assert recall == pytest.approx(1.0) and users > 0
    assert recall_of(every_test_item.iloc[:0], data)[0] == 0.0
    table = pd.DataFrame({"source": ["a", "a", "b", "merged"], "size": [40, 200, 200, 200],
                          "recall": [0.45, 0.3, 0.5, 0.4]})
    assert merged_recall_problems(table, 200) == ["merged recall 0.4000 is below channel b's 0.5000 at 200"]


def test_candidates_hold_every_channel_and_recall_more_than_any(built, warehouse):
    _, result = built
    candidates = warehouse.read("candidates")
    ranks = [c for c in candidates.columns if c.startswith("rank_")]
    assert ranks == ["rank_swing", "rank_two_tower", "rank_interest", "rank_cf", "rank_item2vec",
                     "rank_popularity"]
    assert all(candidates[c].notna().any() for c in ranks)
    assert candidates.groupby("user_idx").size().max() <= 200
    assert not candidates.duplicated(["user_idx", "item_idx"]).any()
    meta = result.asset_materializations_for_node("candidates")[0].metadata
    merged = meta["merged_recall"].value
    for channel in ("swing", "two_tower", "interest", "cf", "item2vec", "popularity"):
        assert merged >= meta[f"{channel}_recall_at_40"].value      # each channel's list that went into it
    index = warehouse.read("item_index")
    assert set(index["channel"]) == {"two_tower", "interest", "cf", "item2vec"}
    assert (index["recall_at_10"] >= 0.95).all()


def test_a_bad_vector_fails_the_index_and_leaves_the_stored_one(tmp_path):
    settings = tiny_settings(tmp_path)
    assert ingest(settings, "2026-01-01", "2026-01-14").success
    assert build_rest(settings).success
    wh = Warehouse(settings.home)
    stored = Path(wh.file("item_index", "item2vec.faiss"))
    before = hashlib.sha256(stored.read_bytes()).hexdigest()
    bad = wh.read("item2vec")
    bad.at[3, "vector"] = np.full(len(bad.at[3, "vector"]), np.nan, np.float32)
    wh.write(bad, "item2vec")
    result = build_rest(settings, dg.AssetSelection.assets("item_index"), raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure).step_failure_data.error.message
    assert "item2vec" in failure and f"[{int(bad.at[3, 'item_idx'])}]" in failure
    assert hashlib.sha256(stored.read_bytes()).hexdigest() == before


def test_hard_negatives_from_a_pool_larger_than_the_catalogue_and_clear_config_errors(tiny):
    tables, data = tiny
    config = TwoTowerConfig(dim=16, epochs=1, hard_negatives=2, hard_pool=10_000, batch_size=512)
    _, history = train_two_tower(_two_tower_data(tables), data, config)
    assert np.isfinite(history[0]["loss"])
    with pytest.raises(ValueError, match="hard_pool >= 1"):
        TwoTowerConfig(hard_negatives=1, hard_pool=0)
    with pytest.raises(ValueError, match="item_positive_pairs is empty"):
        train_item2vec(pd.DataFrame({"src": [], "dst": [], "score": []}), 10)
