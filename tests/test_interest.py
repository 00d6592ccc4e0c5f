"""Behaviour sequences and the long-term interest model."""
from dataclasses import replace

import dagster as dg
import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from conftest import INTEREST, checks

from kwai_assets.core.baselines import popularity
from kwai_assets.core.evaluation import EvalData, evaluate
from kwai_assets.core.pipeline import prepared
from kwai_assets.core.reid import index_sizes
from kwai_assets.core.sequences import behaviour_sequences
from kwai_assets.core.split import held_back
from kwai_assets.io.model_store import ModelStore
from kwai_assets.models.interest import (
    CausalTower,
    FeatureEmbedding,
    InterestConfig,
    InterestModel,
    Softmax,
    load,
    ndcg_at_20,
    save,
    train_interest,
    user_vectors,
)
from kwai_assets.sources import SyntheticSource


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny tensors: one thread is as fast as two, and far faster when the machine's other core is busy."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


SMALL = InterestConfig(dim=32, depth=1, heads=2, head_dim=16, n_experts=4, epochs=4, batch_size=64, negatives=64)
VOCAB = {"item": 10, "category": 3, "hour": 25, "weekday": 8, "weekend": 3, "event": 2, "gap": 32}


def test_sequences_split_train_history_90_10_right_aligned():
    ts = pd.Timestamp("2026-01-05 08:00")
    rows = [(1, i + 1, 1, ts + pd.Timedelta(hours=i), "click", "train") for i in range(20)]
    rows += [(1, 99, 2, ts + pd.Timedelta(days=9), "like", "test")]
    splits = pd.DataFrame(rows, columns=["user_idx", "item_idx", "category_idx", "ts", "event", "split"])
    s = behaviour_sequences(splits, n_items=100, n_categories=3, long_len=25, short_len=3)
    assert s.short[0, :, 0].tolist() == [0, 19, 20]                       # last 10% (2 of 20), left-padded
    assert s.long[0, -18:, 0].tolist() == list(range(1, 19)) and (s.long[0, :7] == 0).all()
    assert s.full[0, -20:, 0].tolist() == list(range(1, 21))              # the test item never appears
    assert s.n_short.tolist() == [2] and s.full[0, -2:, 0].tolist() == s.short[0, -2:, 0].tolist()
    assert s.events == ["click"] and s.long[0, -1, 5] == 1
    assert s.long[0, -18, 2] == 9 and s.long[0, -18, 3] == 1               # hour 8 -> 9, Monday -> 1
    assert s.full[0, -20, 6] == 1 and s.full[0, -1, 6] == 3 + 11           # gap: first, then 3600 s -> 3 + log2
    assert s.full_time[0, -1] == 1.0 and s.full_time[0, -20] == 0.0


def test_prefixes_cut_each_history_every_stride_behaviours_for_training_only():
    ts = pd.Timestamp("2026-01-05 08:00")
    rows = [(u, i + 1, 1, ts + pd.Timedelta(hours=i), "click", "train") for u, n in ((1, 20), (2, 9)) for i in range(n)]
    splits = pd.DataFrame(rows, columns=["user_idx", "item_idx", "category_idx", "ts", "event", "split"])
    whole = behaviour_sequences(splits, n_items=100, n_categories=3, long_len=8, short_len=3)
    s = behaviour_sequences(splits, n_items=100, n_categories=3, long_len=8, short_len=3, stride=4)
    assert whole.earlier is None and np.array_equal(s.full, whole.full) and s.users.tolist() == [1, 2]
    # cut 4, 8, 12, ... behaviours before the end while MIN_PREFIX (5) remain: user 1 (20) to 16, 12 and 8,
    # user 2 (9) to 5; rows by cut, then user; each prefix keeps its last long_len behaviours
    assert s.earlier.users.tolist() == [1, 2, 1, 1]
    assert [r[r > 0].tolist() for r in s.earlier.full[..., 0]] == [
        list(range(9, 17)), [1, 2, 3, 4, 5], list(range(5, 13)), list(range(1, 9))]
    assert s.earlier.n_short.tolist() == [2, 1, 1, 1]              # 10% of each prefix, at least one
    full, _, n_short, _, _ = s.training()
    assert len(full) == 6 and np.array_equal(full[:2], whole.full) and n_short.tolist() == [2, 1, 2, 1, 1, 1]


def _features(items: list[int]) -> torch.Tensor:
    """[1, T, 7] behaviours of the given items (0 = padding) with fixed context features."""
    rows = [[i, 1 + i % 2, 5, 2, 1, 1, 3] if i else [0] * 7 for i in items]
    return torch.tensor([rows])


def test_causal_masking_later_behaviours_never_change_earlier_outputs():
    torch.manual_seed(0)
    model = InterestModel(VOCAB, 6, 2, SMALL).eval()
    times = torch.tensor([[0.0, 0.0, 0.1, 0.4, 0.6, 1.0]])
    a, b = _features([0, 0, 3, 4, 5, 6]), _features([0, 0, 3, 4, 9, 8])    # differ from column 4 on
    with torch.no_grad():
        cls_a, out_a = model.long_tower(*model.embedded(a, times))
        cls_b, out_b = model.long_tower(*model.embedded(b, times))
        assert torch.allclose(out_a[:, :4], out_b[:, :4], atol=1e-6)       # columns before the change: identical
        assert not torch.allclose(out_a[:, 4], out_b[:, 4], atol=1e-3)
        assert not torch.allclose(cls_a, cls_b, atol=1e-3)                 # the [CLS] sees everything by default
        cut = torch.tensor([4])                                            # ... or only what is before its cut
        assert torch.allclose(model.long_tower(*model.embedded(a, times), cut)[0],
                              model.long_tower(*model.embedded(b, times), cut)[0], atol=1e-6)
        padding = a.clone()
        padding[0, 0, 1:] = torch.tensor([2, 3, 4, 2, 1, 5])               # still padding: item 0
        assert torch.allclose(model.encode(a, times), model.encode(padding, times), atol=1e-6)


@pytest.mark.parametrize("mode", ["full", "sampled"])
def test_softmax_matches_autograd_with_seen_items_left_out_and_reuses_its_workspace(mode):
    n, negatives = 40, 16
    frequency = np.arange(n, dtype=np.float64)
    softmax = Softmax(n, frequency, InterestConfig(softmax=mode, negatives=negatives), torch.Generator().manual_seed(1))
    queries, items = torch.randn(6, 8, requires_grad=True), torch.randn(n, 8, requires_grad=True)
    targets = torch.randint(1, n, (6, 3), generator=torch.Generator().manual_seed(2))
    targets[0, 2] = 0                                            # no target
    seen = (torch.tensor([0, 1, 2]), torch.tensor([5, 6, int(targets[2, 0])]))   # row 2's first target was seen
    for _ in range(2):                                           # the second step writes into the first's workspace
        queries.grad = items.grad = None
        nll, counted = softmax(queries, targets, items, seen)
        nll.sum().backward()
    grads = queries.grad, items.grad
    queries.grad = items.grad = None

    if mode == "full":                                           # the same loss through autograd's own ops
        candidates, log_q = torch.arange(1, n), 0.0
    else:
        drawn = torch.Generator().manual_seed(1)
        for _ in range(2):                                       # the second step's negatives
            sample = torch.randint(1, n, (negatives,), generator=drawn)
        candidates = torch.unique(torch.cat([targets[targets > 0], sample]))
        log_q = (int((targets > 0).sum()) * torch.tensor(frequency / frequency.sum(), dtype=torch.float32)[candidates]
                 + negatives / (n - 1)).log()
    logits = queries @ items[candidates].T - log_q
    left_out = (candidates[None, :] == seen[1][:, None]).nonzero()
    logits = logits.index_put((seen[0][left_out[:, 0]], left_out[:, 1]), torch.tensor(-torch.inf))
    index = torch.searchsorted(candidates, targets.clamp(min=1))
    expected = -F.log_softmax(logits, dim=1).gather(1, index)
    expected_counted = (targets > 0) & torch.isfinite(expected)
    torch.where(expected_counted, expected, 0.0).sum().backward()

    assert torch.equal(counted, expected_counted) and not counted[2, 0] and not counted[0, 2]
    assert torch.allclose(nll, torch.where(expected_counted, expected, 0.0), atol=1e-5)
    assert torch.allclose(grads[0], queries.grad, atol=1e-5) and torch.allclose(grads[1], items.grad, atol=1e-5)


def test_cls_output_through_the_moe_is_the_user_vector():
    torch.manual_seed(0)
    model = InterestModel(VOCAB, 6, 2, SMALL).eval()
    features, times = _features([0, 3, 4, 5, 6, 7]), torch.linspace(0, 1, 6)[None]
    with torch.no_grad():
        cls, outputs = model.long_tower(*model.embedded(features, times))
        assert isinstance(model.long_tower, CausalTower) and outputs.shape == (1, 6, 32)
        assert torch.equal(model.encode(features, times), model.moe(cls))


def test_trained_vectors_beat_popularity_on_a_planted_cycle():
    """The synthetic source's planted order: users move through the categories in one fixed cycle, a step a day."""
    tables = prepared(SyntheticSource(preset="tiny", seed=7, p_cycle=0.8, p_routine=0.0, p_near=0.0))
    sizes = tables.sizes
    data = EvalData.from_splits(tables.splits, sizes["user"], sizes["item"])
    sequences = behaviour_sequences(tables.splits, sizes["item"], sizes["category"], long_len=50, short_len=5)
    config = InterestConfig(dim=32, depth=1, heads=2, head_dim=16, n_experts=4, epochs=20, eval_every=5,
                            batch_size=64, window=6, lr=1e-2)
    model, history = train_interest(sequences, config, val=data)
    assert [h["epoch"] for h in history if "val_ndcg_at_20" in h] == [5, 10, 15, 20]
    baseline = evaluate(popularity(data), data, ks=(20,))["ndcg", 20]       # about 0.07; the model about 0.2
    assert ndcg_at_20(model, sequences, data) > 2 * baseline


def tiny_splits() -> tuple[pd.DataFrame, dict[str, int]]:
    """The `tiny` preset's splits and index sizes through the prepare group's core functions (no Dagster)."""
    tables = prepared(SyntheticSource(preset="tiny", seed=7))
    return tables.splits, tables.sizes


@pytest.fixture(scope="module")
def trained():
    splits, sizes = tiny_splits()
    sequences = behaviour_sequences(splits, sizes["item"], sizes["category"], long_len=50, short_len=5)
    model, history = train_interest(sequences, SMALL)
    return splits, sequences, model, history


def test_training_lowers_the_loss_and_reports_expert_load(trained):
    _, _, _, history = trained
    assert len(history) == SMALL.epochs and history[-1]["loss"] < history[0]["loss"]
    assert all(0 < h["load_entropy"] <= 1 and h["load_max_over_mean"] >= 1 for h in history)


def test_user_vectors_separate_planted_tastes(trained):
    splits, sequences, model, _ = trained
    vectors = user_vectors(model, sequences)
    assert vectors.shape == (len(sequences.users), SMALL.dim) and np.isfinite(vectors).all()
    # planted: each synthetic user has a favourite category; users sharing it should be closer
    favourite = (splits[splits.split == "train"].groupby("user_idx")["category_idx"]
                 .agg(lambda c: c.value_counts().index[0]).reindex(sequences.users).to_numpy())
    centred = vectors - vectors.mean(0)          # the offset every user shares says nothing about taste
    unit = centred / np.linalg.norm(centred, axis=1, keepdims=True)
    cosine = unit @ unit.T
    same = favourite[:, None] == favourite[None, :]
    off = ~np.eye(len(unit), dtype=bool)
    assert cosine[same & off].mean() > cosine[~same].mean() + 0.1


def test_item_table_gradients_repeat_to_the_bit_at_catalogue_scale():
    """The tiny preset's tables are below the size where CPU kernels split work across threads; a
    MovieLens-sized catalogue is not, and there an indexing backward added rows in a thread-dependent order."""
    rng = np.random.default_rng(0)
    n_items, dim = 2_000, 64
    table = FeatureEmbedding({"item": n_items, "category": 20}, dim, rng.integers(1, 20, n_items),
                             rng.integers(1, 50, n_items), n_pois=50, context=())
    upstream = torch.from_numpy(rng.standard_normal((n_items, dim)).astype(np.float32))
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        grads = []
        for _ in range(20):
            table.zero_grad()
            (table.item_table() * upstream).sum().backward()
            grads.append(torch.cat([p.grad.clone() for p in table.parameters()]))
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(grads[0], g) for g in grads[1:])


def test_training_is_deterministic_on_cpu(trained):
    _, sequences, model, history = trained
    again, history_again = train_interest(sequences, SMALL)
    assert [h["loss"] for h in history] == [h["loss"] for h in history_again]
    assert np.array_equal(user_vectors(model, sequences), user_vectors(again, sequences))


@pytest.mark.parametrize("ema", [0.0, 0.9], ids=["weights", "averaged-weights"])
def test_early_stopping_keeps_the_best_validation_epoch_and_save_load_round_trips(trained, tmp_path, ema):
    """With `ema`, validation scores the moving average of the weights, and that average is what is kept."""
    splits, sequences, _, _ = trained
    data = EvalData.from_splits(splits)
    config = InterestConfig(dim=16, depth=1, heads=2, head_dim=8, n_experts=4, epochs=12, eval_every=1, patience=2,
                            batch_size=64, bpr=1.0, all_action=0.5, window=4, softmax="sampled", negatives=64,
                            ema=ema)
    model, history = train_interest(sequences, config, val=data)
    validated = [h["val_ndcg_at_20"] for h in history]
    assert len(history) < 12 or validated[-1] <= max(validated)            # stopped early, or ran out
    assert ndcg_at_20(model, sequences, data.validation()) == pytest.approx(
        max(validated), abs=1e-9)                                          # the weights are the best epoch's
    again = load(save(model, tmp_path / "m"))
    assert np.allclose(user_vectors(again, sequences), user_vectors(model, sequences), atol=1e-6)


def test_validation_can_read_histories_that_end_earlier(trained):
    """`val_sequences` (here each history less as many behaviours as the user has in val) is what is validated."""
    splits, sequences, _, _ = trained
    data, vocab = EvalData.from_splits(splits), sequences.vocab
    earlier = behaviour_sequences(held_back(splits), vocab["item"], vocab["category"], long_len=50, short_len=5)
    config = replace(SMALL, epochs=4, eval_every=1, patience=10)
    model, history = train_interest(sequences, config, val=data, val_sequences=earlier)
    assert ndcg_at_20(model, earlier, data.validation()) == pytest.approx(max(h["val_ndcg_at_20"] for h in history))
    assert ndcg_at_20(model, sequences, data.validation()) != ndcg_at_20(model, earlier, data.validation())


def test_weight_averaging_changes_what_is_validated_not_how_the_model_trains(trained):
    splits, sequences, _, _ = trained
    data = EvalData.from_splits(splits)
    runs = [train_interest(sequences, replace(SMALL, ema=ema, eval_every=1), val=data) for ema in (0.0, 0.9)]
    (_, plain), (_, averaged) = runs
    assert [h["loss"] for h in plain] == [h["loss"] for h in averaged]                  # the same steps
    assert [h["val_ndcg_at_20"] for h in plain] != [h["val_ndcg_at_20"] for h in averaged]  # other weights scored


@pytest.mark.parametrize("ema", [1.0, -0.1])
def test_an_average_that_would_never_move_or_overshoot_is_rejected(ema):
    with pytest.raises(ValueError, match=r"ema must be in \[0, 1\)"):
        InterestConfig(ema=ema)


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
