"""Dropout drawn with torch.rand: nn.Dropout's function, from a seed."""
import pytest
import torch

from kwai_assets.models.dropout import Dropout


def test_zeroes_p_of_the_elements_scales_the_rest_and_gradients_follow_the_mask():
    torch.manual_seed(0)
    x = torch.ones(200, 500, requires_grad=True)
    y = Dropout(0.4).train()(x)
    kept = y != 0
    assert abs(1 - kept.float().mean().item() - 0.4) < 0.005
    assert torch.allclose(y[kept], torch.tensor(1 / 0.6))
    y.sum().backward()
    assert torch.equal(x.grad, y.detach())                  # d(x * mask) / dx = mask


def test_eval_mode_and_p_zero_are_the_identity_and_a_seed_repeats_the_mask():
    x = torch.randn(8, 16)
    assert Dropout(0.5).eval()(x) is x
    assert Dropout(0.0).train()(x) is x
    torch.manual_seed(3)
    a = Dropout(0.5).train()(x)
    torch.manual_seed(3)
    assert torch.equal(a, Dropout(0.5).train()(x))


@pytest.mark.parametrize("p", [-0.1, 1.0])
def test_a_probability_outside_0_1_is_rejected(p):
    with pytest.raises(ValueError, match="dropout must be in"):
        Dropout(p)


def test_a_bfloat16_input_keeps_its_dtype_and_is_not_scaled_short():
    torch.manual_seed(0)
    x = torch.rand(200, 500).add_(1).to(torch.bfloat16)
    y = Dropout(0.4).train()(x)
    kept = y != 0
    ratio = (y[kept].double() / x[kept].double()).mean().item()
    assert y.dtype == torch.bfloat16
    assert abs(ratio - 1 / 0.6) < 5e-4          # a bf16 scale would be 1.6641, 0.0026 short
