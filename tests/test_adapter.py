"""The adapter: planted alignment recovered, reconstruction, the ablation on the tiny graph."""
import numpy as np
import torch

from kwai_assets.core.vectors import unit_rows
from kwai_assets.models.adapter import Adapter, AdapterConfig, adapter_loss, held_out, reconstruction_error


def test_the_adapter_recovers_a_planted_linear_alignment():
    rng = np.random.default_rng(0)
    llm = unit_rows(rng.normal(size=(2000, 48)).astype(np.float32))
    planted = rng.normal(size=(48, 8)).astype(np.float32)
    target = llm @ planted                                   # the "collaborative" side: a linear map of the LLM side
    train, test = np.arange(1600), np.arange(1600, 2000)
    torch.manual_seed(0)
    net = Adapter(48, 8, hidden=64, dropout=0.0)
    config = AdapterConfig(align_weight=1.0, reconstruction_weight=1.0, temperature=0.1)
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
    x, y = torch.from_numpy(llm), torch.from_numpy(target)
    for _ in range(600):
        batch = torch.from_numpy(rng.choice(train, 256, replace=False))
        loss = adapter_loss(net, x[batch], y[batch], config)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    net.eval()
    with torch.no_grad():
        code = net.encoder(x[test]).numpy()
    # held-out rows: each encoded row's nearest planted target (cosine) is its own
    cos = unit_rows(code) @ unit_rows(target[test]).T
    assert (cos.argmax(1) == np.arange(len(test))).mean() > 0.9
    # and the decoder rebuilds held-out rows better than their mean, close to what 8 of 48 isotropic
    # dimensions allow (the best linear code keeps 8/48 of the variance: 40/48 = 0.83 of the mean's error)
    model_mse, mean_mse = reconstruction_error(net, llm[test])
    assert model_mse < 0.9 * mean_mse


def test_held_out_rows_are_a_stable_share():
    index = np.arange(1, 100_001)
    mask = held_out(index, 0.1)
    assert abs(mask.mean() - 0.1) < 0.01 and np.array_equal(mask, held_out(index.copy(), 0.1))


def test_aligned_cf_beats_cf_alone_and_the_checks_pass(built, warehouse):
    from conftest import checks

    table = warehouse.read("evaluation").query("metric == 'ndcg' and k == 20").set_index("model")["value"]
    assert table["cf_llm_aligned"] > table["cf"] > table["popularity"]
    assert table["llm_adapted"] > table["llm_cosine"]
    found = checks(built[1])
    for name in ("adapter_reconstruction", "cf_user_embeddings_valid", "aligned_item_embeddings_valid",
                 "adapted_user_embeddings_valid"):
        assert found[name].passed, (name, found[name].description)
    assert "decoder MSE" in found["adapter_reconstruction"].description
