"""The evaluation protocol against hand-computed values, and the baselines."""
import math

import pandas as pd
import pytest
import torch

from kwai_assets.core.baselines import popularity, random_scores
from kwai_assets.core.evaluation import EvalData, Recommender, evaluate, evaluate_all, markdown_table


def splits(rows):
    return pd.DataFrame(rows, columns=["user_idx", "item_idx", "split"])


@pytest.fixture
def data():
    return EvalData.from_splits(splits([
        (1, 1, "train"), (1, 2, "val"), (1, 3, "test"), (1, 4, "test"),
        (2, 5, "train"), (2, 1, "test"),
        (3, 3, "train"), (3, 3, "test"),        # only a repeat in test: not evaluated
    ]), n_users=4, n_items=6)


SCORES = torch.tensor([
    [0, 0, 0, 0, 0, 0],
    [100, 10, 9, 7, 1, 8],     # user 1: 1, 2 seen; ranking 5, 3, 4
    [0, 5, 6, 0, 0, 9],        # user 2: 5 seen; ranking 2, 1, ...
    [0, 0, 0, 9, 0, 0],
], dtype=torch.float32)


def test_metrics_match_hand_computation(data):
    out = evaluate(lambda users: SCORES[torch.as_tensor(users)], data, ks=(1, 2, 3))
    g = 1 / math.log2(3)
    expected = {
        ("recall", 1): 0, ("hr", 1): 0, ("ndcg", 1): 0, ("mrr", 1): 0,
        ("recall", 2): (0.5 + 1) / 2, ("hr", 2): 1, ("mrr", 2): 0.5,
        ("ndcg", 2): (g / (1 + g) + g) / 2,
        ("recall", 3): 1, ("hr", 3): 1, ("mrr", 3): 0.5,
        ("ndcg", 3): ((g + 0.5) / (1 + g) + g) / 2,
    }
    assert out.pop(("users", 0)) == 2
    assert out == pytest.approx(expected)


def test_padding_and_absent_items_are_never_recommended(data):
    # the padding column 0 has the top score for user 1 and must be ignored
    out = evaluate(lambda users: SCORES[torch.as_tensor(users)], data, ks=(1,))
    assert out[("recall", 1)] == 0


def test_scorer_shape_is_checked(data):
    with pytest.raises(ValueError, match="expected"):
        evaluate(lambda users: torch.zeros(len(users), 3), data)


def test_table_and_markdown(data):
    table = evaluate_all([Recommender("popularity", popularity)], data, {}, ks=(1, 2))
    assert set(table.columns) == {"model", "metric", "k", "value", "users"}
    assert len(table) == 8
    md = markdown_table(table)
    assert md.splitlines()[0].startswith("| model | recall@1 | recall@2 | ndcg@1")
    assert "| popularity |" in md


def test_popularity_beats_random_on_synthetic(warehouse):
    split_table = warehouse.read("splits")
    data = EvalData.from_splits(split_table)
    pop = evaluate(popularity(data), data)
    rnd = evaluate(random_scores(data), data)
    assert pop[("recall", 20)] > 1.5 * rnd[("recall", 20)]
    assert pop[("ndcg", 20)] > 1.5 * rnd[("ndcg", 20)]
    # the random floor is where theory puts it: Recall@K ~ K / candidates
    assert rnd[("recall", 50)] == pytest.approx(50 / data.candidates.sum(), rel=0.35)


def test_evaluation_is_deterministic(data):
    a = evaluate(random_scores(data, seed=3), data)
    b = evaluate(random_scores(data, seed=3), data)
    assert a == b


def test_kwai_recommend_exports_raw_ids_top_k_without_seen_items(built, warehouse, tmp_path, monkeypatch):
    from kwai_assets.cli import main

    settings, _ = built
    monkeypatch.setenv("KWAI_HOME", str(settings.home))
    out = tmp_path / "top.tsv"
    assert main(["recommend", "cf", "--k", "10", "--out", str(out)]) == 0
    top = pd.read_csv(out, sep="\t", dtype={"user_id": str, "item_id": str})
    assert list(top.columns) == ["user_id", "item_id", "rank"]
    maps = warehouse.read("id_maps")
    raw = {e: maps[maps.entity == e].set_index("idx")["raw_id"] for e in ("user", "item")}
    splits = warehouse.read("splits")
    seen = splits[splits.split != "test"].assign(user_id=lambda d: raw["user"].reindex(d.user_idx).to_numpy(),
                                                 item_id=lambda d: raw["item"].reindex(d.item_idx).to_numpy())
    assert set(top["user_id"]) == set(seen.loc[seen.split == "train", "user_id"])     # raw ids, every train user
    assert top.merge(seen, on=["user_id", "item_id"]).empty                           # nothing seen in train or val
    assert (top.groupby("user_id").size() == 10).all() and (top.groupby("user_id")["rank"].max() == 10).all()
    assert main(["recommend", "no_such_model", "--out", str(tmp_path / "x.tsv")]) == 2
