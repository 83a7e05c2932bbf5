"""common.activations: numpy-kernel activations equal torch's in value and gradient."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from common.activations import fast_activation

TORCH = {"relu": torch.relu, "elu": F.elu, "tanh": torch.tanh, "sigmoid": torch.sigmoid}


@pytest.mark.parametrize("name", sorted(TORCH))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_values_and_gradients_equal_torchs(name, dtype):
    torch.manual_seed(0)
    # a wide range, exact zeros and values near 0, where e^x - 1 and expm1 differ most
    x = torch.cat([torch.randn(3, 50, 40, dtype=dtype).flatten() * 4,
                   torch.tensor([0.0, -0.0, 1e-8, -1e-8, -30.0, 30.0], dtype=dtype)])
    x_fast, x_torch = x.clone().requires_grad_(), x.clone().requires_grad_()
    y_fast, y_torch = fast_activation(name)(x_fast), TORCH[name](x_torch)
    assert y_fast.dtype == dtype and y_fast.shape == x.shape
    torch.testing.assert_close(y_fast, y_torch, atol=2e-7, rtol=0)
    upstream = torch.randn_like(x)
    (g_fast,) = torch.autograd.grad(y_fast, x_fast, upstream)
    (g_torch,) = torch.autograd.grad(y_torch, x_torch, upstream)
    torch.testing.assert_close(g_fast, g_torch, atol=1e-6, rtol=1e-6)


def test_non_contiguous_input_and_input_left_unchanged():
    x = torch.randn(6, 8).t()   # a transposed view
    before = x.clone()
    for name in ("tanh", "elu"):
        torch.testing.assert_close(fast_activation(name)(x), TORCH[name](x), atol=2e-7, rtol=0)
    assert torch.equal(x, before)


def test_unknown_activation_is_refused():
    with pytest.raises(ValueError, match="allowed"):
        fast_activation("swish")


def test_tanh_stays_in_its_range():
    y = fast_activation("tanh")(torch.linspace(-50, 50, 1001))
    np.testing.assert_array_less(-1.0001, y.numpy())
    np.testing.assert_array_less(y.numpy(), 1.0001)
