import pytest
import torch
from torch import nn

from common.cli import UsageError
from common.nets import activation, mlp


def test_mlp_layer_order_and_shapes():
    net = mlp(3, 2, hidden=(8, 4), act="tanh", layer_norm=True, output_act="tanh")
    kinds = [type(layer) for layer in net]
    assert kinds == [nn.Linear, nn.LayerNorm, nn.Tanh, nn.Linear, nn.LayerNorm, nn.Tanh,
                     nn.Linear, nn.Tanh]
    out = net(torch.randn(5, 3))
    assert out.shape == (5, 2) and out.abs().max() <= 1


def test_mlp_without_hidden_layers_is_linear():
    net = mlp(3, 1, hidden=())
    assert len(net) == 1 and isinstance(net[0], nn.Linear)


def test_each_activation_gets_a_fresh_module():
    assert activation("prelu") is not activation("prelu")  # PReLU has its own parameter
    assert isinstance(activation(None), nn.Identity)


def test_unknown_activation_is_a_usage_error():
    with pytest.raises(UsageError, match="allowed: relu"):
        mlp(2, 2, act="swishy")
