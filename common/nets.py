"""A plain MLP builder. Paper-specific networks (evolvable MLPs, IMPALA CNN, GRU optimizer,
world-model ensembles) live in their paper's folder."""
from __future__ import annotations

from typing import Callable, Iterable, Sequence

import torch
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


class LeanAdam:
    """Adam (Kingma & Ba, 2015; torch's defaults, no weight decay) as one call of torch's fused
    kernel per step, without torch.optim's per-step bookkeeping (hooks, profiler records,
    regrouping the tensors by device), which costs more than the update itself for the small
    networks RL agents use on a CPU (bench/td3_throughput.py). Same numbers as
    `torch.optim.Adam(params, lr, fused=True)`; `param_groups` mirrors torch's for code that
    reads the parameters from it."""

    def __init__(self, params: Iterable[torch.Tensor], lr: float,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        self.params = list(params)
        self.lr, self.betas, self.eps = float(lr), betas, eps
        self.exp_avgs = [torch.zeros_like(p) for p in self.params]
        self.exp_avg_sqs = [torch.zeros_like(p) for p in self.params]
        self.steps = [torch.zeros((), dtype=torch.float32, device=p.device) for p in self.params]
        self.param_groups = [{"params": self.params, "lr": self.lr}]

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        live = [i for i, p in enumerate(self.params) if p.grad is not None]
        if not live:
            return
        def pick(tensors):  # like torch.optim: a parameter without a gradient is left alone
            return tensors if len(live) == len(tensors) else [tensors[i] for i in live]
        params, steps = pick(self.params), pick(self.steps)
        torch._foreach_add_(steps, 1)
        torch._fused_adam_(params, [p.grad for p in params], pick(self.exp_avgs),
                           pick(self.exp_avg_sqs), [], steps, amsgrad=False, lr=self.lr,
                           beta1=self.betas[0], beta2=self.betas[1], weight_decay=0.0,
                           eps=self.eps, maximize=False, grad_scale=None, found_inf=None)
