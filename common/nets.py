"""A plain MLP builder. Paper-specific networks (evolvable MLPs, IMPALA CNN, GRU optimizer,
world-model ensembles) live in their paper's folder."""
from __future__ import annotations

from typing import Callable, Sequence

from torch import nn

from common.cli import UsageError

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "leaky_relu": nn.LeakyReLU,
    "prelu": nn.PReLU,
    "sigmoid": nn.Sigmoid,
    "softplus": nn.Softplus,
    "identity": nn.Identity,
}


def activation(name: str | None) -> nn.Module:
    """A fresh activation module from its name (None means identity)."""
    key = "identity" if name is None else name.lower()
    if key not in ACTIVATIONS:
        raise UsageError(f"unknown activation {name!r}; allowed: {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[key]()


def mlp(in_dim: int, out_dim: int, hidden: Sequence[int] = (256, 256), act: str = "relu",
        layer_norm: bool = False, output_act: str | None = None) -> nn.Sequential:
    """Linear -> [LayerNorm] -> activation for each hidden size, then a Linear to `out_dim`
    and an optional output activation (e.g. 'tanh' for a bounded actor)."""
    layers: list[nn.Module] = []
    width = in_dim
    for size in hidden:
        layers.append(nn.Linear(width, size))
        if layer_norm:
            layers.append(nn.LayerNorm(size))
        layers.append(activation(act))
        width = size
    layers.append(nn.Linear(width, out_dim))
    if output_act is not None:
        layers.append(activation(output_act))
    return nn.Sequential(*layers)
