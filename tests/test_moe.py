"""The MoE layer: routing matches a per-input loop, balancing evens out a skewed router."""
import pytest
import torch

from kwai_assets.models.moe import MoE, load_stats


def reference_forward(moe: MoE, x: torch.Tensor) -> torch.Tensor:
    """One input at a time, as the definition reads."""
    rows = []
    for token in x:
        chosen, weights = moe.route(token[None])
        y = token + moe.shared(token[None])[0]
        for e, w in zip(chosen[0].tolist(), weights[0].tolist(), strict=True):
            y = y + w * moe.experts[e](token[None])[0]
        rows.append(y)
    return torch.stack(rows)


@pytest.mark.parametrize("balance", ["bias", "share", "none"])
def test_forward_matches_the_loop_reference(balance):
    torch.manual_seed(0)
    moe = MoE(dim=8, n_routed=6, top_k=2, balance=balance).eval()
    x = torch.randn(5, 3, 8)
    assert torch.allclose(moe(x), reference_forward(moe, x.reshape(-1, 8)).reshape(5, 3, 8), atol=1e-5)


def test_routes_top_k_with_weights_summing_to_one():
    torch.manual_seed(1)
    moe = MoE(dim=8, n_routed=6, top_k=3)
    chosen, weights = moe.route(torch.randn(20, 8))
    assert chosen.shape == (20, 3) and (chosen.sort(-1).values.diff(dim=-1) > 0).all()   # distinct experts
    assert torch.allclose(weights.sum(-1), torch.ones(20)) and (weights > 0).all()


def skewed(balance: str, **kwargs) -> MoE:
    torch.manual_seed(2)
    moe = MoE(dim=8, n_routed=8, top_k=2, balance=balance, **kwargs)
    with torch.no_grad():                 # a router that sends almost everything to experts 0 and 1
        moe.router.weight.zero_()
        moe.router.weight[:2] = 0.5
    return moe


def spread_after_training(moe: MoE, epochs: int = 5, steps: int = 20) -> float:
    torch.manual_seed(3)
    moe.train()
    for _ in range(epochs):
        for _ in range(steps):
            moe(torch.randn(64, 8).abs())
        stats = moe.end_epoch()
    return stats["load_max_over_mean"]


def test_bias_balancing_evens_out_a_skewed_router():
    none = spread_after_training(skewed("none"))
    bias = spread_after_training(skewed("bias", bias_rate=0.01))
    assert none == pytest.approx(4.0, abs=0.1)          # two of eight experts take everything
    assert bias < 1.5


def test_share_balancing_turns_to_the_experts_last_epoch_left_idle():
    moe = skewed("share")
    spread_after_training(moe, epochs=1)
    chosen, _ = moe.route(torch.randn(64, 8).abs())
    assert not set(chosen.unique().tolist()) & {0, 1}   # the rule overshoots: it swings, it does not settle


def test_load_stats():
    assert load_stats(torch.tensor([5.0, 5.0, 5.0, 5.0])) == pytest.approx(
        {"load_max_over_mean": 1.0, "load_entropy": 1.0})
    one = load_stats(torch.tensor([8.0, 0.0, 0.0, 0.0]))
    assert one["load_max_over_mean"] == 4.0 and one["load_entropy"] == 0.0


def test_bad_parameters():
    with pytest.raises(ValueError, match="balance"):
        MoE(8, balance="magic")
    with pytest.raises(ValueError, match="top_k"):
        MoE(8, n_routed=2, top_k=3)
