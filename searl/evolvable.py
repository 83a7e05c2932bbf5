"""An MLP whose architecture can grow during training (SEARL's evolvable networks, Sec. 3.3).

Every hidden layer is Linear -> LayerNorm -> activation, as in the reference. Two ways to grow:

* `preserve=True` (default): the network computes exactly the same function after the change.
  - Adding k nodes to a layer of width d: each new unit's incoming weights are the MEAN of the
    existing rows (bias likewise), so its pre-norm value equals the layer's mean for every
    input. The LayerNorm mean is then unchanged and the variance shrinks by d/(d+k); scaling
    the old units' LayerNorm gain and the LayerNorm eps by sqrt(d/(d+k)) and d/(d+k) undoes
    that exactly. New units start at the constant act(beta_new) and have ZERO outgoing weights,
    so nothing downstream moves. They are not dead: LayerNorm couples them to the old units'
    gradients, and their random beta gives their outgoing weights distinct gradients.
    Without LayerNorm, new units get the default random init and zero outgoing weights.
  - Adding a layer: a residual layer h + alpha * act(LN(W h + b)) with alpha = 0 (ReZero),
    appended after the last hidden layer; it has the last layer's width and grows with it.
* `preserve=False`: the reference's behaviour. A freshly initialised network of the new shape
  receives the overlapping slices of the old weights, which changes the output.
"""
from __future__ import annotations

import copy
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from common.nets import activation as make_activation


class DenseLayer(nn.Module):
    """Linear -> [LayerNorm] -> activation; a residual layer returns x + alpha * that."""

    def __init__(self, in_dim: int, out_dim: int, activation: str, layer_norm: bool,
                 residual: bool = False):
        super().__init__()
        self.linear = nn.Linear(in_dim, out_dim)
        self.norm = nn.LayerNorm(out_dim) if layer_norm else None
        self.activation_name = activation
        self.act = make_activation(activation)
        self.residual = residual
        self.alpha = nn.Parameter(torch.zeros(())) if residual else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # functional calls on the submodules' parameters: going through each submodule's
        # __call__ costs more than the arithmetic of a 128-unit layer on a CPU (bench/README.md)
        z = F.linear(x, self.linear.weight, self.linear.bias)
        if self.norm is not None:
            z = F.layer_norm(z, self.norm.normalized_shape, self.norm.weight, self.norm.bias,
                             self.norm.eps)
        y = self.act.forward(z)
        return x + self.alpha * y if self.residual else y

    def set_activation(self, name: str) -> None:
        self.activation_name, self.act = name, make_activation(name)

    @torch.no_grad()
    def grow_outputs(self, k: int, rng: np.random.Generator) -> None:
        """k more units whose arrival leaves this layer's existing outputs unchanged."""
        d = self.linear.out_features
        if self.norm is not None:
            new_rows = self.linear.weight.mean(0, keepdim=True).expand(k, -1)
            new_bias = self.linear.bias.mean().expand(k)
        else:
            fresh = nn.Linear(self.linear.in_features, k)  # default (random) init
            new_rows, new_bias = fresh.weight, fresh.bias
        self.linear = _linear_from(torch.cat([self.linear.weight, new_rows]),
                                   torch.cat([self.linear.bias, new_bias]))
        if self.norm is not None:
            shrink = d / (d + k)
            gain = torch.cat([self.norm.weight * math.sqrt(shrink), torch.ones(k)])
            beta = torch.cat([self.norm.bias, _uniform(rng, k, 0.1)])
            eps = self.norm.eps * shrink
            self.norm = nn.LayerNorm(d + k, eps=eps)
            self.norm.weight.copy_(gain)
            self.norm.bias.copy_(beta)

    @torch.no_grad()
    def grow_inputs(self, k: int) -> None:
        """k more inputs with zero weights: the output does not depend on them (yet)."""
        weight = torch.cat([self.linear.weight, torch.zeros(self.linear.out_features, k)], 1)
        self.linear = _linear_from(weight, self.linear.bias)


class EvolvableMLP(nn.Module):
    """in_dim -> hidden layers -> Linear(out_dim) [-> output activation]."""

    def __init__(self, in_dim: int, out_dim: int, hidden=(128,), activation: str = "relu",
                 output_activation: str | None = None, layer_norm: bool = True,
                 output_scale: float = 1.0):
        super().__init__()
        self.in_dim, self.out_dim = in_dim, out_dim
        self.layer_norm = layer_norm
        self.output_activation = output_activation
        widths = [in_dim, *hidden]
        self.layers = nn.ModuleList(DenseLayer(a, b, activation, layer_norm)
                                    for a, b in zip(widths[:-1], widths[1:]))
        self.output = nn.Linear(widths[-1], out_dim)
        with torch.no_grad():  # the reference's "output_vanish" for critics: x0.1
            self.output.weight.mul_(output_scale)
            self.output.bias.mul_(output_scale)
        self.output_act = make_activation(output_activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer.forward(x)  # no per-layer __call__: see DenseLayer.forward
        return self.output_act.forward(F.linear(x, self.output.weight, self.output.bias))

    # -- what the population log shows ---------------------------------------------------------
    @property
    def hidden(self) -> list[int]:
        return [layer.linear.out_features for layer in self.layers]

    @property
    def activation(self) -> str:
        return self.layers[0].activation_name

    def set_activation(self, name: str) -> None:
        for layer in self.layers:
            layer.set_activation(name)

    # -- growth ---------------------------------------------------------------------------------
    def add_nodes(self, layer_index: int, k: int, rng: np.random.Generator,
                  preserve: bool = True) -> None:
        """k more units in hidden layer `layer_index` (and in the residual layers that share
        its width)."""
        group = self._width_group(layer_index)
        if not preserve:
            hidden = self.hidden
            for i in group:
                hidden[i] += k
            self._slice_copy_into(hidden, [layer.residual for layer in self.layers])
            return
        for i in group:
            if self.layers[i].residual:
                self.layers[i].grow_inputs(k)
            self.layers[i].grow_outputs(k, rng)
        after = group[-1] + 1
        if after < len(self.layers):
            self.layers[after].grow_inputs(k)
        else:
            self.output = _linear_from(
                torch.cat([self.output.weight, torch.zeros(self.out_dim, k)], 1).detach(),
                self.output.bias.detach())

    def add_layer(self, rng: np.random.Generator, preserve: bool = True) -> None:
        """One more hidden layer after the last, as wide as the last."""
        width = self.hidden[-1]
        if preserve:
            layer = DenseLayer(width, width, self.activation, self.layer_norm, residual=True)
            self.layers.append(layer)
            return
        self._slice_copy_into(self.hidden + [width],
                              [layer.residual for layer in self.layers] + [False])

    def _width_group(self, index: int) -> list[int]:
        """The plain layer at or before `index` and the residual layers that follow it."""
        start = index
        while self.layers[start].residual:
            start -= 1
        end = start + 1
        while end < len(self.layers) and self.layers[end].residual:
            end += 1
        return list(range(start, end))

    @torch.no_grad()
    def _slice_copy_into(self, hidden: list[int], residual: list[bool]) -> None:
        """The reference's `preserve_parameters`: a fresh network of the new shape that gets
        the overlapping slice of every old parameter."""
        old = copy.deepcopy(self.state_dict())
        widths = [self.in_dim, *hidden]
        self.layers = nn.ModuleList(
            DenseLayer(a, b, self.activation, self.layer_norm, residual=res)
            for a, b, res in zip(widths[:-1], widths[1:], residual))
        self.output = nn.Linear(widths[-1], self.out_dim)
        for name, param in self.state_dict().items():
            if name in old:
                source = old[name]
                overlap = tuple(slice(0, min(a, b)) for a, b in zip(param.shape, source.shape))
                param[overlap] = source[overlap]


def _linear_from(weight: torch.Tensor, bias: torch.Tensor) -> nn.Linear:
    layer = nn.Linear(weight.shape[1], weight.shape[0])
    with torch.no_grad():
        layer.weight.copy_(weight)
        layer.bias.copy_(bias)
    return layer


def _uniform(rng: np.random.Generator, n: int, scale: float) -> torch.Tensor:
    return torch.from_numpy(rng.uniform(-scale, scale, n)).float()
