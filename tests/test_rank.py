"""The ranking stage: Dice, DIN on a planted preference, the recommendations asset, and their lists in Redis."""
import dataclasses

import dagster as dg
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch
from conftest import ALL, checks, instance_for
from sklearn.metrics import roc_auc_score

from kwai_assets.core.candidates import without
from kwai_assets.core.evaluation import EvalData, device, evaluate, ranked_lists
from kwai_assets.core.geo import haversine_km
from kwai_assets.core.recommendations import recommendation_problems
from kwai_assets.definitions import build_resources
from kwai_assets.io.online_store import OnlineStore
from kwai_assets.models import din
from kwai_assets.models.din import ActivationUnit, Catalog, Dice, DINConfig, RankingData, _histories
from kwai_assets.models.early_stopping import training_problems


def test_dice_matches_its_formula_with_batch_statistics_in_training_and_running_ones_at_inference():
    torch.manual_seed(0)
    dice = Dice(3, eps=1e-8, momentum=0.1)
    dice.alpha.data = torch.tensor([0.1, -0.2, 0.5])
    x = torch.randn(2, 4, 3) * 2 + 1              # statistics over every leading dimension
    flat = x.reshape(-1, 3)
    mean, var = flat.mean(0), flat.var(0, unbiased=False)
    p = torch.sigmoid((x - mean) / torch.sqrt(var + 1e-8))
    torch.testing.assert_close(dice.train()(x), p * x + (1 - p) * dice.alpha * x)
    running_mean, running_var = 0.1 * mean, 0.9 + 0.1 * flat.var(0, unbiased=True)
    z = torch.randn(5, 3)
    p = torch.sigmoid((z - running_mean) / torch.sqrt(running_var + 1e-8))
    torch.testing.assert_close(dice.eval()(z), p * z + (1 - p) * dice.alpha * z)
    mask = torch.tensor([[True, True, False, False], [True, False, False, False]])   # padding does not count
    rows = x[mask]
    p = torch.sigmoid((x - rows.mean(0)) / torch.sqrt(rows.var(0, unbiased=False) + 1e-8))
    torch.testing.assert_close(Dice(3).train()(x, mask), p * x)


def test_the_activation_unit_is_one_linear_layer_over_the_four_way_concatenation():
    torch.manual_seed(0)
    unit = ActivationUnit(8, 5, "prelu")
    b, c = torch.randn(3, 4, 8), torch.randn(3, 8)
    t = c.unsqueeze(1).expand_as(b)
    reference = unit.out(unit.act(unit.first(torch.cat([b, t, b - t, b * t], -1)))).squeeze(-1)
    torch.testing.assert_close(unit(b, c), reference)


def _planted(seed: int = 0, users: int = 300, items: int = 400, categories: int = 8, per_user: int = 40):
    """Each user takes items of one category; the candidates (and both channels' ranks) are in random order."""
    rng = np.random.default_rng(seed)
    category = np.r_[0, rng.integers(1, categories + 1, items - 1)]
    taste = rng.integers(1, categories + 1, users)
    rows, cands = [], []
    for u in range(1, users):
        liked = np.flatnonzero(category == taste[u])
        history = rng.choice(liked, 8, replace=False)
        rows += [(u, i, 0, "train") for i in history]
        pool = np.setdiff1d(np.arange(1, items), history)
        picked = rng.choice(pool, per_user, replace=False)
        for i in rng.permutation(picked[category[picked] == taste[u]])[:3]:
            rows.append((u, i, 1, "val"))
        cands += [(u, i, r + 1, rng.permutation(per_user)[r] + 1) for r, i in enumerate(picked)]
    splits = pd.DataFrame(rows, columns=["user_idx", "item_idx", "ts", "split"])
    splits["category_idx"] = category[splits["item_idx"]]
    candidates = pd.DataFrame(cands, columns=["user_idx", "item_idx", "rank_a", "rank_b"]).astype(float)
    candidates[["user_idx", "item_idx"]] = candidates[["user_idx", "item_idx"]].astype(np.int64)
    features = np.zeros((items, 3), np.int64)
    features[:, 0] = category
    catalog = Catalog(users, items, np.zeros((users, 0), np.int64), [], features, [categories + 1, 1, 1],
                      np.full((items, 2), np.nan), np.r_[False, np.ones(items - 1, bool)])
    return catalog, candidates, splits


def test_din_learns_a_planted_preference_that_the_candidates_order_misses():
    catalog, candidates, splits = _planted()
    data = RankingData.build(catalog, candidates, splits, ("train",), "val", history_len=10)
    assert data.channels == ["a", "b"] and data.labels.sum() > 100
    config = DINConfig(dim=8, history_len=10, negatives=10, random_negatives=1, epochs=8, batch_size=256, patience=8)
    model, history, order = din.train_din(data, catalog, config)
    best = max(history, key=lambda h: h["val_ndcg_at_20"])
    assert order["auc"] < 0.6 and best["val_auc"] > 0.8 and best["val_gauc"] > 0.8
    assert best["val_ndcg_at_20"] > order["ndcg_at_20"] + 0.2
    assert history[-1]["loss"] < history[0]["loss"] and training_problems(history) == []
    if device().type == "cpu":                     # seeded: the same run twice (CUDA's backward is not bit-exact)
        again = din.train_din(data, catalog, config)[1]
        assert [h["loss"] for h in again] == [h["loss"] for h in history]


def test_candidates_with_ids_the_id_maps_do_not_know_are_refused_naming_them():
    catalog, candidates, splits = _planted(users=20, items=200, per_user=10)
    bad = pd.concat([candidates, candidates.iloc[:2].assign(item_idx=[999, 200], user_idx=[3, 25])])
    unknown = (r"user_idx values .* \[25\]; 2 item_idx values of the candidates are not in the id maps "
               r"\(1..199\): \[200, 999\]")
    with pytest.raises(ValueError, match=unknown):
        RankingData.build(catalog, bad.sort_values("user_idx"), splits, ("train",), "val", 10)
    with pytest.raises(ValueError, match=r"no rank_ column for the channels \['c'\]"):
        RankingData.build(catalog, candidates, splits, ("train",), "val", 10, channels=["a", "c"])


def test_training_and_recommendation_problems_name_what_is_wrong():
    assert training_problems([]) == ["no training epoch ran"]
    nan = [{"epoch": 1, "loss": 0.5, "grad_norm": 0.1, "val_ndcg_at_20": 0.1},
           {"epoch": 2, "loss": float("nan"), "grad_norm": 0.1, "val_ndcg_at_20": 0.0}]
    assert training_problems(nan) == ["epoch 2: loss is nan"]
    flat = [{"epoch": 1, "loss": 0.5, "grad_norm": 0.1, "val_ndcg_at_20": 0.1},
            {"epoch": 2, "loss": 0.6, "grad_norm": 0.1, "val_ndcg_at_20": 0.2}]
    assert "the loss did not fall" in training_problems(flat)[0]
    best_first = [{**flat[0], "val_ndcg_at_20": 0.3}, {**flat[1], "loss": 0.4}]
    assert training_problems(best_first) == []                  # the best epoch may be the first
    seen = sp.csr_matrix(([1.0], ([1], [7])), shape=(3, 10))
    top = pd.DataFrame({"user_idx": [1, 1, 1, 2, 2], "item_idx": [7, 3, 3, 4, 5],
                        "score": [3.0, 2.0, 1.0, np.nan, 0.5], "rank": [1, 2, 3, 1, 2]})
    problems = recommendation_problems(top, seen, k=2)
    assert problems[0] == "1 non-finite scores (users [2])"
    assert "1 users with more than 2 items" in problems[1] and "user_idx 1, item_idx 7" in problems[2]
    assert "1 repeated (user, item) rows" in problems[3]
    assert recommendation_problems(top.iloc[:0], seen, k=2) == ["no recommendation list at all"]


def test_recommendations_hold_at_most_k_unseen_items_and_redis_serves_the_same_lists(built, warehouse, redis_url):
    settings, result = built
    top, splits, maps = warehouse.read("recommendations"), warehouse.read("splits"), warehouse.read("id_maps")
    candidates = warehouse.read("candidates")
    assert top.groupby("user_idx").size().max() <= 50 and np.isfinite(top["score"]).all()
    seen = splits[splits["split"].isin(["train", "val"])][["user_idx", "item_idx"]].drop_duplicates()
    assert top.merge(seen).empty                                   # no train or val item
    assert len(top.merge(candidates[["user_idx", "item_idx"]])) == len(top)     # only candidates, reranked
    evaluations = checks(result)
    assert evaluations["recommendations_valid"].passed and evaluations["ranker_training"].passed
    assert evaluations["online_store_round_trip"].passed
    ranker = result.asset_materializations_for_node("ranker")[0].metadata
    assert ranker["epochs_run"].value >= 1 and ranker["positives"].value > 0
    raw = maps[maps["entity"] == "user"].set_index("idx")["raw_id"]
    items = maps[maps["entity"] == "item"].set_index("idx")["raw_id"]
    store = OnlineStore.connect(redis_url)
    for user_idx in top["user_idx"].unique()[:20]:
        mine = top[top["user_idx"] == user_idx].sort_values("rank")
        expected = [(items[i], float(s)) for i, s in zip(mine["item_idx"], mine["score"].astype(np.float32),
                                                         strict=True)]
        assert store.get_recommendations(raw[user_idx], k=10) == expected[:10]
    assert store.get_recommendations("no such user") == []
    table = warehouse.read("evaluation")
    assert "din_ranker" in set(table["model"])


def test_the_evaluation_ranks_stored_lists_first_and_the_rest_by_popularity():
    data = EvalData.from_splits(pd.DataFrame({"user_idx": [1, 1, 2, 2, 2, 1], "item_idx": [1, 2, 2, 4, 5, 3],
                                              "split": ["train"] * 5 + ["test"]}), 3, 6)
    lists = pd.DataFrame({"user_idx": [1, 1], "item_idx": [5, 3], "rank": [1, 2]})
    scores = ranked_lists(data, lists)(np.array([1, 2]))
    assert scores[0].argsort(descending=True)[:3].tolist() == [5, 3, 2]  # the list in its order, then popularity
    assert scores[1].argmax().item() == 2                                # no list: popularity
    result = evaluate(ranked_lists(data, lists), data, ks=(1, 2))
    assert result["recall", 1] == 0.0 and result["recall", 2] == 1.0
    assert result["ndcg", 2] == pytest.approx(1 / np.log2(3))
    assert evaluate(ranked_lists(data, lists.iloc[:0]), data, ks=(2,))["recall", 2] == 0.0   # 4, 5 before 3


def test_training_candidates_keep_the_val_items_and_serving_ones_drop_them_and_renumber():
    ranked = pd.DataFrame({"user_idx": [1, 1, 1, 2, 2], "item_idx": [4, 5, 6, 4, 7], "rank": [1, 2, 3, 1, 2]})
    val = sp.csr_matrix(([1.0, 1.0], ([1, 2], [5, 7])), shape=(3, 8))
    later = without(ranked, val, n=1)
    assert later.values.tolist() == [[1, 4, 1], [2, 4, 1]]
    assert without(ranked, val, n=5)[["item_idx", "rank"]].values.tolist() == [[4, 1], [6, 2], [4, 1]]
    assert without(ranked.iloc[:0], val, n=5).empty


def test_histories_hold_the_most_recent_items_last_and_metrics_match_sklearn():
    past = pd.DataFrame({"user_idx": [1, 1, 1, 2], "item_idx": [7, 8, 9, 3]})
    assert _histories(past, 3, 2).tolist() == [[0, 0], [8, 9], [0, 3]]
    rng = np.random.default_rng(0)
    users, labels, scores = np.repeat([1, 2], 50), rng.random(100) < 0.3, rng.normal(size=100)
    relevant = sp.csr_matrix((3, 10))
    metrics = din.ranking_metrics(users, np.arange(100), scores + labels, labels.astype(float), relevant)
    assert metrics["auc"] == pytest.approx(roc_auc_score(labels, scores + labels))
    per_user = [roc_auc_score(labels[users == u], (scores + labels)[users == u]) for u in (1, 2)]
    assert metrics["gauc"] == pytest.approx(np.mean(per_user))               # equal rows per user
    assert haversine_km(0.0, 0.0, 0.0, 1.0) == pytest.approx(111.19, abs=0.01)
    assert np.isnan(haversine_km(np.nan, 0.0, 0.0, 1.0))


def test_nan_scores_fail_the_recommendations_and_the_live_lists_stay(built, redis_url, monkeypatch):
    settings = dataclasses.replace(built[0], redis_url=redis_url)
    store = OnlineStore.connect(redis_url)
    version = store.current()
    user = store.client.scan_iter(match=f"kwai:v{version}:rec:*", count=1000).__next__().decode().split(":")[-1]
    before = store.get_recommendations(user)
    monkeypatch.setattr(din, "score", lambda model, data, *a, **k: np.full(len(data.users), np.nan, np.float32))
    result = dg.materialize(ALL, resources=build_resources(settings), instance=instance_for(settings),
                            selection=dg.AssetSelection.assets("recommendations", "online_store"),
                            raise_on_error=False)
    assert not result.success
    error = str(result.get_step_failure_events()[0].step_failure_data.error)
    assert "recommendations failed its check, so the stored version is unchanged" in error and "non-finite" in error
    assert store.current() == version and store.get_recommendations(user) == before
