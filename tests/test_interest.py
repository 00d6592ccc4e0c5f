"""Behaviour sequences and the long-term interest model."""
import dagster as dg
import numpy as np
import pandas as pd
import pytest
import torch
from conftest import INTEREST, checks

from kwai_assets.core.reid import index_sizes
from kwai_assets.core.sequences import behaviour_sequences
from kwai_assets.io.model_store import ModelStore
from kwai_assets.models.interest import InterestConfig, InterestModel, Tower, train_interest, user_vectors

SMALL = InterestConfig(dim=32, depth=1, heads=2, head_dim=16, n_experts=4, epochs=4, batch_size=64, negatives=64)


def test_sequences_split_train_history_90_10_right_aligned():
    ts = pd.Timestamp("2026-01-05 08:00")
    rows = [(1, i + 1, 1, ts + pd.Timedelta(hours=i), "click", "train") for i in range(20)]
    rows += [(1, 99, 2, ts + pd.Timedelta(days=9), "like", "test")]
    splits = pd.DataFrame(rows, columns=["user_idx", "item_idx", "category_idx", "ts", "event", "split"])
    s = behaviour_sequences(splits, n_items=100, n_categories=3, long_len=25, short_len=3)
    assert s.short[0, :, 0].tolist() == [0, 19, 20]                       # last 10% (2 of 20), left-padded
    assert s.long[0, -18:, 0].tolist() == list(range(1, 19)) and (s.long[0, :7] == 0).all()
    assert s.full[0, -20:, 0].tolist() == list(range(1, 21))              # the test item never appears
    assert s.events == ["click"] and s.long[0, -1, 5] == 1
    assert s.long[0, -18, 2] == 9 and s.long[0, -18, 3] == 1               # hour 8 -> 9, Monday -> 1
    assert s.full_time[0, -1] == 1.0 and s.full_time[0, -20] == 0.0


def test_cls_position_is_the_output_and_padding_is_ignored():
    torch.manual_seed(0)
    model = InterestModel({"item": 10, "category": 3, "hour": 25, "weekday": 8, "weekend": 3, "event": 2}, 6, 2,
                          SMALL).eval()
    features = torch.tensor([[[0] * 6, [0] * 6, [3, 1, 5, 2, 1, 1], [4, 2, 6, 2, 1, 1], [5, 1, 7, 3, 1, 1],
                              [6, 2, 8, 3, 1, 1]]])
    times = torch.tensor([[0.0, 0.0, 0.1, 0.4, 0.6, 1.0]])
    a = model.encode(model.long_tower, features, times)
    other_padding = features.clone()
    other_padding[0, 0] = torch.tensor([7, 2, 3, 4, 2, 1])
    other_padding[0, 0, 0] = 0                                           # still padding: item 0
    assert torch.allclose(a, model.encode(model.long_tower, other_padding, times), atol=1e-5)
    tower = model.long_tower
    seen = {}
    tower.norm.register_forward_hook(lambda m, i, o: seen.setdefault("out", o))
    tower(model.embed(features, times), features[..., 0] > 0)
    assert seen["out"].shape == (1, 32)                                   # the norm sees the [CLS] row only
    assert isinstance(tower, Tower)


@pytest.fixture(scope="module")
def trained(warehouse):
    splits, sizes = warehouse.read("splits"), index_sizes(warehouse.read("id_maps"))
    sequences = behaviour_sequences(splits, sizes["item"], sizes["category"], long_len=50, short_len=5)
    torch.set_num_threads(2)
    model, history = train_interest(sequences, SMALL)
    return warehouse, sequences, model, history


def test_training_lowers_the_loss_and_reports_expert_load(trained):
    _, _, _, history = trained
    assert len(history) == SMALL.epochs and history[-1]["loss"] < history[0]["loss"]
    assert all(0 < h["load_entropy"] <= 1 and h["load_max_over_mean"] >= 1 for h in history)


def test_user_vectors_separate_planted_tastes(trained):
    warehouse, sequences, model, _ = trained
    vectors = user_vectors(model, sequences)
    assert vectors.shape == (len(sequences.users), SMALL.dim) and np.isfinite(vectors).all()
    # planted: each synthetic user has a favourite category; users sharing it should be closer
    splits = warehouse.read("splits")
    favourite = (splits[splits.split == "train"].groupby("user_idx")["category_idx"]
                 .agg(lambda c: c.value_counts().index[0]).reindex(sequences.users).to_numpy())
    centred = vectors - vectors.mean(0)          # the offset every user shares says nothing about taste
    unit = centred / np.linalg.norm(centred, axis=1, keepdims=True)
    cosine = unit @ unit.T
    same = favourite[:, None] == favourite[None, :]
    off = ~np.eye(len(unit), dtype=bool)
    assert cosine[same & off].mean() > cosine[~same].mean() + 0.1


def test_training_is_deterministic_on_cpu(trained):
    _, sequences, model, history = trained
    again, history_again = train_interest(sequences, SMALL)
    assert [h["loss"] for h in history] == [h["loss"] for h in history_again]
    assert np.array_equal(user_vectors(model, sequences), user_vectors(again, sequences))


def test_assets_materialize_and_the_mlflow_weights_reproduce_user_vectors(built, warehouse):
    settings, result = built
    found = checks(result)
    assert found["user_vectors_valid"].passed and found["interest_item_vectors_valid"].passed
    assert len(warehouse.read("interest_model")) == INTEREST["epochs"]
    run_id = next(m.metadata["mlflow_run_id"].value for m in result.asset_materializations_for_node("interest_model")
                  if m.asset_key == dg.AssetKey("interest_model"))
    model = ModelStore(settings.home).load(run_id, "interest_model")        # the model store, as assets load
    sizes = index_sizes(warehouse.read("id_maps"))
    sequences = behaviour_sequences(warehouse.read("splits"), sizes["item"], sizes["category"],
                                    INTEREST["long_len"], INTEREST["short_len"])
    stored = warehouse.read("user_vectors")
    assert stored["user_idx"].tolist() == sequences.users.tolist()
    assert np.allclose(np.stack(stored["vector"]), user_vectors(model, sequences), atol=1e-6)
    assert "interest_model" in set(warehouse.read("evaluation")["model"])

