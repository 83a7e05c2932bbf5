"""An MLP whose architecture can grow during training (SEARL's evolvable networks, Sec. 3.3).

Every hidden layer is Linear -> LayerNorm -> activation, as in the reference, and the search
space is the reference's: a list of hidden widths, one per layer, each grown on its own (16, 32
or 64 units to one layer) up to `max_nodes`, and new layers appended after the last, as wide as
the last, up to `max_layers`. Two ways to grow:

* `preserve=True` (default): the network computes exactly the same function after the change.
  - Adding k nodes to a layer of width d: each new unit's incoming weights are the MEAN of the
    existing rows (bias likewise), so its pre-norm value equals the layer's mean for every
    input. The LayerNorm mean is then unchanged and the variance shrinks by d/(d+k); scaling
    the old units' LayerNorm gain and the LayerNorm eps by sqrt(d/(d+k)) and d/(d+k) undoes
    that exactly. New units start at the constant act(beta_new) and have ZERO outgoing weights,
    so nothing downstream moves. They are not dead: LayerNorm couples them to the old units'
    gradients, and their random beta gives their outgoing weights distinct gradients.
    Without LayerNorm, new units get a random init and zero outgoing weights.
  - Adding a layer: a residual layer  skip(h) + alpha * act(LN(W h + b))  with alpha = 0
    (ReZero), where skip(h) passes the first `skip` units of h (the width the layer had when it
    was made) straight through and is zero on any unit added later. Its width is its own: when
    it or the layer before it grows, the new units simply have no skip path, so every layer's
    width stays free as in the reference.
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
    """Linear -> [LayerNorm] -> activation; a residual layer (skip > 0) returns
    x[:skip] (zero-padded to the layer's width) + alpha * that."""

    skip = 0  # units passed straight through (0: a plain layer)

    def __init__(self, in_dim: int, out_dim: int, activation: str, layer_norm: bool,
                 skip: int = 0):
        super().__init__()
        self.linear = nn.Linear(in_dim, out_dim)
        self.norm = nn.LayerNorm(out_dim) if layer_norm else None
        self.activation_name = activation
        self.act = make_activation(activation)
        self.skip = int(skip)
        self.alpha = nn.Parameter(torch.zeros(())) if skip else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # functional calls on the submodules' parameters: going through each submodule's
        # __call__ costs more than the arithmetic of a 128-unit layer on a CPU (bench/README.md)
        z = F.linear(x, self.linear.weight, self.linear.bias)
        if self.norm is not None:
            z = F.layer_norm(z, self.norm.normalized_shape, self.norm.weight, self.norm.bias,
                             self.norm.eps)
        y = self.act.forward(z)
        if not self.skip:
            return y
        passed = x[..., :self.skip]
        if self.skip < y.shape[-1]:
            passed = F.pad(passed, (0, y.shape[-1] - self.skip))
        return passed + self.alpha * y

    def set_activation(self, name: str) -> None:
        self.activation_name, self.act = name, make_activation(name)

    @torch.no_grad()
    def grow_outputs(self, k: int, rng: np.random.Generator) -> None:
        """k more units whose arrival leaves this layer's existing outputs unchanged."""
        weight, bias = self.linear.weight, self.linear.bias
        d = self.linear.out_features
        if self.norm is not None:
            new_rows = weight.mean(0, keepdim=True).expand(k, -1)
            new_bias = bias.mean().expand(k)
        else:  # the default nn.Linear init, drawn from the run's RNG
            bound = 1.0 / math.sqrt(self.linear.in_features)
            new_rows = _uniform(rng, (k, self.linear.in_features), bound, weight)
            new_bias = _uniform(rng, (k,), bound, weight)
        self.linear = _linear_from(torch.cat([weight, new_rows]), torch.cat([bias, new_bias]))
        if self.norm is not None:
            shrink = d / (d + k)
            gain = torch.cat([self.norm.weight * math.sqrt(shrink), torch.ones_like(new_bias)])
            beta = torch.cat([self.norm.bias, _uniform(rng, (k,), 0.1, weight)])
            self.norm = nn.LayerNorm(d + k, eps=self.norm.eps * shrink, device=weight.device,
                                     dtype=weight.dtype)
            self.norm.weight.copy_(gain)
            self.norm.bias.copy_(beta)

    @torch.no_grad()
    def grow_inputs(self, k: int) -> None:
        """k more inputs with zero weights: the output does not depend on them (yet)."""
        weight = self.linear.weight
        self.linear = _linear_from(torch.cat([weight, weight.new_zeros(weight.shape[0], k)], 1),
                                   self.linear.bias)


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
    def skips(self) -> list[int]:
        return [layer.skip for layer in self.layers]

    @property
    def activation(self) -> str:
        return self.layers[0].activation_name

    def set_activation(self, name: str) -> None:
        for layer in self.layers:
            layer.set_activation(name)

    # -- a standalone description (searl/evaluate.py rebuilds a network from it) ---------------
    def architecture(self) -> dict:
        """Everything but the weights needed to rebuild this network exactly."""
        return {"in_dim": self.in_dim, "out_dim": self.out_dim, "hidden": self.hidden,
                "skips": self.skips, "activation": self.activation,
                "output_activation": self.output_activation, "layer_norm": self.layer_norm,
                "layer_norm_eps": [layer.norm.eps if layer.norm is not None else None
                                   for layer in self.layers]}

    @classmethod
    def from_architecture(cls, arch: dict, state_dict: dict | None = None) -> "EvolvableMLP":
        net = cls(arch["in_dim"], arch["out_dim"], arch["hidden"], arch["activation"],
                  arch["output_activation"], arch["layer_norm"])
        widths = [arch["in_dim"], *arch["hidden"]]
        for i, (skip, eps) in enumerate(zip(arch["skips"], arch["layer_norm_eps"])):
            if skip:
                net.layers[i] = DenseLayer(widths[i], widths[i + 1], arch["activation"],
                                           arch["layer_norm"], skip=skip)
            if eps is not None:
                net.layers[i].norm.eps = eps
        if state_dict is not None:
            net.load_state_dict(state_dict)
        return net

    # -- growth ---------------------------------------------------------------------------------
    def add_nodes(self, layer_index: int, k: int, rng: np.random.Generator,
                  preserve: bool = True) -> None:
        """k more units in hidden layer `layer_index` (the reference's add_node: one layer)."""
        if not preserve:
            hidden = self.hidden
            hidden[layer_index] += k
            self._slice_copy_into(hidden, self.skips)
            return
        self.layers[layer_index].grow_outputs(k, rng)
        if layer_index + 1 < len(self.layers):
            self.layers[layer_index + 1].grow_inputs(k)
        else:
            weight = self.output.weight.detach()
            self.output = _linear_from(torch.cat([weight, weight.new_zeros(self.out_dim, k)], 1),
                                       self.output.bias.detach())

    def add_layer(self, rng: np.random.Generator, preserve: bool = True) -> None:
        """One more hidden layer after the last, as wide as the last (the reference)."""
        width = self.hidden[-1]
        if preserve:
            weight = self.output.weight
            layer = DenseLayer(width, width, self.activation, self.layer_norm, skip=width)
            self.layers.append(layer.to(device=weight.device, dtype=weight.dtype))
            return
        self._slice_copy_into(self.hidden + [width], self.skips + [0])

    @torch.no_grad()
    def _slice_copy_into(self, hidden: list[int], skips: list[int]) -> None:
        """The reference's `preserve_parameters`: a fresh network of the new shape that gets
        the overlapping slice of every old parameter."""
        old = copy.deepcopy(self.state_dict())
        like = self.output.weight
        widths = [self.in_dim, *hidden]
        self.layers = nn.ModuleList(
            DenseLayer(a, b, self.activation, self.layer_norm, skip=skip)
            for a, b, skip in zip(widths[:-1], widths[1:], skips)).to(like.device, like.dtype)
        self.output = nn.Linear(widths[-1], self.out_dim, device=like.device, dtype=like.dtype)
        for name, param in self.state_dict().items():
            if name in old:
                source = old[name]
                overlap = tuple(slice(0, min(a, b)) for a, b in zip(param.shape, source.shape))
                param[overlap] = source[overlap]


def _linear_from(weight: torch.Tensor, bias: torch.Tensor) -> nn.Linear:
    """A Linear holding copies of `weight` and `bias`, on their device and dtype."""
    layer = nn.Linear(weight.shape[1], weight.shape[0], device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        layer.weight.copy_(weight)
        layer.bias.copy_(bias)
    return layer


def _uniform(rng: np.random.Generator, shape, scale: float, like: torch.Tensor) -> torch.Tensor:
    """U(-scale, scale) drawn from the run's RNG, on `like`'s device and dtype."""
    return torch.from_numpy(rng.uniform(-scale, scale, shape)).to(like.device, like.dtype)
