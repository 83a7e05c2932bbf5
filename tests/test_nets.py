import pytest
import torch
from torch import nn

from common.cli import UsageError
from common.nets import LeanAdam, activation, mlp


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


def test_lean_adam_matches_torch_fused_adam():
    torch.manual_seed(0)
    nets = [mlp(5, 2, hidden=(8,)) for _ in range(2)]
    nets[1].load_state_dict(nets[0].state_dict())
    start = nets[0][0].weight.detach().clone()
    optimizers = [LeanAdam(nets[0].parameters(), lr=1e-2),
                  torch.optim.Adam(nets[1].parameters(), lr=1e-2, fused=True)]
    for step in range(20):
        x = torch.randn(16, 5)
        for net, optimizer in zip(nets, optimizers):
            optimizer.zero_grad()
            # from step 10 on the last layer gets no gradient: torch leaves such parameters
            # (and their moments) alone, and so must LeanAdam
            out = net(x) if step < 10 else net[:-1](x)
            out.pow(2).mean().backward()
            optimizer.step()
    for a, b in zip(*(net.parameters() for net in nets)):
        assert torch.equal(a, b)
    assert not torch.equal(nets[0][0].weight, start)  # it did train
