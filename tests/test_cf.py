"""LightGCN / MF: propagation against a dense reference, negatives, determinism, beating popularity,
save/load, warm start."""
import dataclasses

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from kwai_assets.core.evaluation import EvalData
from kwai_assets.models.cf import (
    CFConfig,
    LightGCN,
    TripleSampler,
    embeddings,
    load,
    normalized_adjacency,
    save,
    softmax_loss,
    to_torch_sparse,
    train_cf,
)
from kwai_assets.models.early_stopping import EarlyStopping


def test_lightgcn_propagation_matches_a_dense_reference():
    train = sp.csr_matrix(np.array([[0, 0, 0, 0], [0, 1, 1, 0], [0, 0, 1, 1], [0, 1, 0, 0]], np.float32))
    a = np.zeros((8, 8), np.float32)                       # users 0..3, then items 0..3
    a[:4, 4:], a[4:, :4] = train.toarray(), train.toarray().T
    degree = a.sum(1)
    scale = np.where(degree > 0, degree, 1) ** -0.5 * (degree > 0)
    a_hat = scale[:, None] * a * scale[None, :]
    assert np.allclose(normalized_adjacency(train).toarray(), a_hat)

    torch.manual_seed(0)
    model = LightGCN(4, 4, CFConfig(dim=3, layers=2), to_torch_sparse(normalized_adjacency(train), torch.device("cpu")))
    ego = torch.cat([model.user.weight, model.item.weight]).detach().numpy()
    expected = (ego + a_hat @ ego + a_hat @ a_hat @ ego) / 3
    users, items = embeddings(model)
    assert np.allclose(np.vstack([users, items]), expected, atol=1e-6)


def test_mf_is_lightgcn_without_propagation():
    model = LightGCN(3, 5, CFConfig(model="mf", dim=4), None)
    users, items = embeddings(model)
    assert np.array_equal(users, model.user.weight.detach().numpy())
    assert np.array_equal(items, model.item.weight.detach().numpy())
    assert CFConfig(model="mf", layers=3).n_layers == 0


def test_negatives_are_never_train_positives():
    rng = np.random.default_rng(0)
    dense = (rng.random((50, 30)) < 0.3).astype(np.float32)
    sampler = TripleSampler(sp.csr_matrix(dense), seed=0)
    for u, i, j in sampler.epoch(256):
        assert dense[u, i].all() and not dense[u, j].any()
    for u, _, j in sampler.epoch(256, negatives=3):              # several negatives per positive: [B, 3]
        assert j.shape == (len(u), 3) and not dense[u[:, None], j].any()


def test_the_softmax_scores_the_positive_against_the_candidates_only():
    dense = np.array([[1, 1, 0, 0, 0], [0, 1, 1, 1, 0]], np.float32)     # item 4: in no train row
    sampler = TripleSampler(sp.csr_matrix(dense), seed=0)
    u, i = np.array([0, 0, 1]), np.array([0, 1, 3])
    left_out = sampler.left_out(u, i)
    assert left_out.tolist() == [[False, True, False, False, True],    # user 0's other item 1, the unseen 4
                                 [True, False, False, False, True],
                                 [False, True, True, False, True]]
    users, items = torch.randn(3, 4), torch.randn(5, 4)
    logits = users @ items.T
    expected = [torch.logsumexp(logits[r][~torch.from_numpy(left_out[r])], 0) - logits[r, i[r]] for r in range(3)]
    assert torch.isclose(softmax_loss(users, items, torch.from_numpy(i), torch.from_numpy(left_out)),
                         torch.stack(expected).mean())


def test_unknown_loss_is_rejected():
    with pytest.raises(ValueError, match="CF loss must be one of .*'hinge'"):
        CFConfig(loss="hinge")


def planted_world(seed: int = 0) -> EvalData:
    """Two taste groups of users, each touching mostly its own half of the items; chronology irrelevant."""
    rng = np.random.default_rng(seed)
    n_users, n_items = 200, 81
    group = np.arange(n_users) % 2
    likes = np.where(group[:, None] == (np.arange(n_items)[None, :] % 2), 0.25, 0.02)
    likes[:, 0] = 0
    likes[0] = 0
    hit = rng.random((n_users, n_items)) < likes
    split = rng.random((n_users, n_items))
    parts = [sp.csr_matrix((hit & (split >= lo) & (split < hi)).astype(np.float32))
             for lo, hi in ((0, 0.7), (0.7, 0.8), (0.8, 1.0))]
    return EvalData(*parts)


@pytest.mark.parametrize("loss", ["softmax", "bpr"])
def test_training_is_deterministic_and_beats_popularity(loss):
    from kwai_assets.core.baselines import popularity
    from kwai_assets.core.evaluation import evaluate
    from kwai_assets.core.vectors import dot_product

    data = planted_world()
    config = CFConfig(dim=16, layers=2, lr=1e-2, epochs=30, eval_every=5, batch_size=256, loss=loss)
    model, history = train_cf(data, config)
    again, history_again = train_cf(data, config)
    assert [h["loss"] for h in history] == [h["loss"] for h in history_again]
    users, items = embeddings(model)
    assert np.array_equal(users, embeddings(again)[0])
    ndcg = evaluate(dot_product(users, items), data, ks=(20,))["ndcg", 20]
    assert ndcg > 1.5 * evaluate(popularity(data), data, ks=(20,))["ndcg", 20]
    best = max(h["val_ndcg_at_20"] for h in history if "val_ndcg_at_20" in h)
    assert history[-1]["epoch"] <= config.epochs and best > 0


SMALL = CFConfig(dim=16, layers=2, lr=1e-2, epochs=10, eval_every=5, batch_size=256)


def ego(model: LightGCN) -> np.ndarray:
    return torch.cat([model.user.weight, model.item.weight]).detach().cpu().numpy().copy()


def test_save_load_round_trip(tmp_path):
    data = planted_world()
    model, _ = train_cf(data, SMALL)
    save(model, tmp_path / "cf")
    again = load(tmp_path / "cf", data.train)
    assert again.config == model.config and not again.training
    assert np.array_equal(ego(again), ego(model))
    for a, b in zip(embeddings(again), embeddings(model), strict=True):
        assert np.array_equal(a, b)
    # without the train graph: the ego embeddings and config are there (a warm start needs no more), not propagation
    bare = load(tmp_path / "cf")
    assert np.array_equal(ego(bare), ego(model))
    with pytest.raises(RuntimeError, match="train graph"):
        bare.propagate()
    with pytest.raises(ValueError, match="interactions"):
        load(tmp_path / "cf", data.val)


def test_mf_round_trip_needs_no_graph(tmp_path):
    model = LightGCN(3, 5, CFConfig(model="mf", dim=4))
    again = load(save(model, tmp_path / "mf"))
    assert np.array_equal(embeddings(again)[1], embeddings(model)[1])


def test_warm_start_starts_from_the_base_and_leaves_it_alone():
    data = planted_world()
    base, _ = train_cf(data, SMALL)
    before = ego(base)
    same, history = train_cf(data, dataclasses.replace(SMALL, epochs=0), init=base)
    assert history == [] and np.array_equal(ego(same), before)
    frozen, _ = train_cf(data, dataclasses.replace(SMALL, lr=0.0, epochs=2, eval_every=1), init=base.state_dict())
    assert np.array_equal(ego(frozen), before)
    tuned, _ = train_cf(data, dataclasses.replace(SMALL, epochs=2, eval_every=1, seed=1), init=base)
    assert not np.array_equal(ego(tuned), before)
    assert np.array_equal(ego(base), before)                   # the base is copied, never trained in place
    scratch, _ = train_cf(data, dataclasses.replace(SMALL, epochs=0, seed=1))
    assert not np.array_equal(ego(scratch), before)
    with pytest.raises(ValueError, match="init has"):
        train_cf(data, dataclasses.replace(SMALL, dim=8), init=base)


def test_early_stopping_keeps_the_best_state_and_stops_after_patience():
    stopping = EarlyStopping(patience=2)
    for score, state in ((0.1, "a"), (0.2, "b"), (0.15, "c")):
        stopping.observe(score, lambda s=state: s)
    assert (stopping.best, stopping.state, stopping.should_stop) == (0.2, "b", False)
    stopping.observe(0.2, lambda: "d")                    # a tie is no gain
    assert stopping.state == "b" and stopping.should_stop
