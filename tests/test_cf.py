"""LightGCN / MF: propagation against a dense reference, negatives, determinism, beating popularity."""
import numpy as np
import scipy.sparse as sp
import torch

from kwai_assets.core.evaluation import EvalData
from kwai_assets.models.cf import (
    CFConfig,
    LightGCN,
    TripleSampler,
    embeddings,
    normalized_adjacency,
    to_torch_sparse,
    train_cf,
)


def test_lightgcn_propagation_matches_a_dense_reference():
    train = sp.csr_matrix(np.array([[0, 0, 0, 0], [0, 1, 1, 0], [0, 0, 1, 1], [0, 1, 0, 0]], np.float32))
    a = np.zeros((8, 8), np.float32)                       # users 0..3, then items 0..3
    a[:4, 4:], a[4:, :4] = train.toarray(), train.toarray().T
    degree = a.sum(1)
    scale = np.where(degree > 0, degree, 1) ** -0.5 * (degree > 0)
    a_hat = scale[:, None] * a * scale[None, :]
    assert np.allclose(normalized_adjacency(train).toarray(), a_hat)

    torch.manual_seed(0)
    model = LightGCN(4, 4, 3, 2, to_torch_sparse(normalized_adjacency(train), torch.device("cpu")))
    ego = torch.cat([model.user.weight, model.item.weight]).detach().numpy()
    expected = (ego + a_hat @ ego + a_hat @ a_hat @ ego) / 3
    users, items = embeddings(model)
    assert np.allclose(np.vstack([users, items]), expected, atol=1e-6)


def test_mf_is_lightgcn_without_propagation():
    model = LightGCN(3, 5, 4, 0, None)
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


def test_training_is_deterministic_and_beats_popularity():
    from kwai_assets.core.baselines import popularity
    from kwai_assets.core.evaluation import evaluate
    from kwai_assets.core.vectors import dot_product

    data = planted_world()
    config = CFConfig(dim=16, layers=2, lr=1e-2, epochs=30, eval_every=5, batch_size=256)
    model, history = train_cf(data, config)
    again, history_again = train_cf(data, config)
    assert [h["loss"] for h in history] == [h["loss"] for h in history_again]
    users, items = embeddings(model)
    assert np.array_equal(users, embeddings(again)[0])
    ndcg = evaluate(dot_product(users, items), data, ks=(20,))["ndcg", 20]
    assert ndcg > 1.5 * evaluate(popularity(data), data, ks=(20,))["ndcg", 20]
    best = max(h["val_ndcg_at_20"] for h in history if "val_ndcg_at_20" in h)
    assert history[-1]["epoch"] <= config.epochs and best > 0
