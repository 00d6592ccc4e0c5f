"""The adapter: planted alignment recovered, reconstruction, save/load, the warm start from a trained CF model,
the ablation on the tiny graph."""
import dataclasses

import numpy as np
import pandas as pd
import torch

from kwai_assets.core.vectors import unit_rows
from kwai_assets.models.adapter import (
    Adapter,
    AdapterConfig,
    AdapterInputs,
    adapter_loss,
    held_out,
    load,
    reconstruction_error,
    reconstruction_problems,
    refit_decoder,
    save,
    train_aligned,
)
from kwai_assets.models.cf import train_cf


def test_the_adapter_recovers_a_planted_linear_alignment():
    rng = np.random.default_rng(0)
    llm = unit_rows(rng.normal(size=(2000, 48)).astype(np.float32))
    planted = rng.normal(size=(48, 8)).astype(np.float32)
    target = llm @ planted                                   # the "collaborative" side: a linear map of the LLM side
    train, test = np.arange(1600), np.arange(1600, 2000)
    torch.manual_seed(0)
    net = Adapter(48, 8, AdapterConfig(hidden=64, dropout=0.0))
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
    # and the decoder rebuilds held-out rows better than the training rows' mean, close to what 8 of 48
    # isotropic dimensions allow (the best linear code keeps 8/48 of the variance: 40/48 = 0.83 of the mean's error)
    model_mse, mean_mse = reconstruction_error(net, llm[test], unit_rows(llm[train]).mean(0))
    assert model_mse < 0.9 * mean_mse


def test_the_refit_decoder_replaces_a_decoder_worse_than_the_mean_with_one_far_better():
    rng = np.random.default_rng(0)
    latent = rng.normal(size=(600, 6)).astype(np.float32)           # embeddings that a 6-d code determines
    rows = unit_rows(np.tanh(latent @ rng.normal(size=(6, 48))).astype(np.float32) + 2.0)
    torch.manual_seed(0)
    net = Adapter(48, 16, AdapterConfig())
    torch.nn.init.normal_(net.decoder[-1].weight, std=1.0)          # as a barely trained decoder can be
    mean = rows[:500].mean(0)
    before, baseline = reconstruction_error(net, rows[500:], mean)
    assert before > baseline
    assert refit_decoder(net, rows[:500]) < float("inf")             # a penalty, not the mean predictor
    after, _ = reconstruction_error(net, rows[500:], mean)
    assert after < 0.5 * baseline                                   # rows the refit never saw


def test_held_out_rows_are_a_stable_share():
    index = np.arange(1, 100_001)
    mask = held_out(index, 0.1)
    assert abs(mask.mean() - 0.1) < 0.01 and np.array_equal(mask, held_out(index.copy(), 0.1))


def test_save_load_round_trip(tmp_path):
    torch.manual_seed(0)
    net = Adapter(48, 8, AdapterConfig(hidden=32, held_out=0.2)).eval()
    again = load(save(net, tmp_path / "adapter")).cpu()       # `load` places it on the current device
    assert again.config == net.config and again.config.held_out == 0.2 and not again.training
    x = torch.from_numpy(unit_rows(np.random.default_rng(0).normal(size=(20, 48)).astype(np.float32)))
    with torch.no_grad():
        for a, b in zip(again(x), net(x), strict=True):
            assert torch.equal(a, b)


def test_reconstruction_problems_name_what_fails():
    torch.manual_seed(0)
    net = Adapter(16, 4, AdapterConfig(hidden=8, held_out=0.5)).eval()
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"user_idx": np.arange(1, 41), "vector": list(rng.normal(size=(40, 16)).astype(np.float32))})
    no_items = frame.rename(columns={"user_idx": "item_idx"}).iloc[:0]
    problems, errors = reconstruction_problems(net, {"user": frame, "item": no_items})
    assert "users: decoder MSE" in problems[0] and "no held-out items" in problems[1]      # untrained: worse than mean
    assert errors["user"][0] >= errors["user"][1]


def planted_inputs(data, dim: int = 24, seed: int = 0) -> AdapterInputs:
    """LLM-like vectors that encode the planted taste group, and a few same-group pairs."""
    rng = np.random.default_rng(seed)
    direction = rng.normal(size=(2, dim))
    users = direction[np.arange(data.n_users) % 2] + 0.5 * rng.normal(size=(data.n_users, dim))
    items = direction[np.arange(data.n_items) % 2] + 0.5 * rng.normal(size=(data.n_items, dim))
    pairs = np.array([[a, a + 2] for a in range(1, 60)])
    return AdapterInputs(unit_rows(users.astype(np.float32)), unit_rows(items.astype(np.float32)), pairs, pairs)


def test_the_aligned_model_is_fine_tuned_from_the_base():
    from test_cf import SMALL, ego, planted_world

    data = planted_world()
    base, _ = train_cf(data, SMALL)
    before, inputs = ego(base), planted_inputs(data)
    config = AdapterConfig(hidden=32, pair_batch=64, epochs=0, eval_every=1, patience=2)
    same, net, history = train_aligned(data, inputs, base, config)
    assert history == [] and np.array_equal(ego(same), before) and net.config == config
    tuned, _, history = train_aligned(data, inputs, base, dataclasses.replace(config, epochs=3))
    assert tuned.config == dataclasses.replace(SMALL, epochs=3, eval_every=1, patience=2, lr=config.lr)
    assert "val_ndcg_at_20" in history[0] and not np.array_equal(ego(tuned), before)
    assert np.array_equal(ego(base), before)


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
