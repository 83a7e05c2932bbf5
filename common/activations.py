"""Activations for stacked populations on a CPU, computed with numpy's kernels where torch's are slow.

Measured with one thread on (10, 100, 400) float32 arrays (`bench/searl_population_speed.py`
records the figures of its machine):
- tanh: torch 2.13's CPU kernel took 1007 us against numpy's 150 us on this project's AMD EPYC
  (AVX2); on an AVX-512 Xeon both took ~120 us. numpy's is never slower, so it is always used.
- elu: torch's took 4-9x relu's time on both CPUs (its expm1 is slow). elu(x) = max(x, e^min(x,0) - 1)
  with numpy's exp is 1.3x faster on the Xeon and avoids torch's exp on the EPYC.
- relu and sigmoid: torch's kernels are as fast as numpy's; they stay torch's.

Each function equals torch's to within 1.2e-7 (one or two float32 ulps) and has torch's gradient.
On a GPU, for dtypes numpy lacks, and while torch.compile traces (it generates its own kernels),
torch's own function runs instead. Only first derivatives are defined (no double backward).
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F


def _numpy_ok(x: torch.Tensor) -> bool:
    return (x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64)
            and not torch.compiler.is_compiling())


class _NumpyTanh(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        y = torch.from_numpy(np.tanh(x.detach().contiguous().numpy()))
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (y,) = ctx.saved_tensors
        return grad * (1 - y * y)   # d tanh = 1 - tanh^2, as torch's


class _NumpyElu(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        x_np = x.detach().contiguous().numpy()
        y = np.minimum(x_np, 0)
        np.exp(y, out=y)
        y -= 1
        np.maximum(x_np, y, out=y)   # e^x - 1 >= x for x <= 0, and e^0 - 1 = 0 <= x for x > 0
        y = torch.from_numpy(y)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (y,) = ctx.saved_tensors
        return grad * (y.clamp(max=0) + 1)   # 1 where x > 0, e^x = y + 1 elsewhere, as torch's


def tanh(x: torch.Tensor) -> torch.Tensor:
    return _NumpyTanh.apply(x) if _numpy_ok(x) else torch.tanh(x)


def elu(x: torch.Tensor) -> torch.Tensor:
    return _NumpyElu.apply(x) if _numpy_ok(x) else F.elu(x)


FAST_ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": torch.relu, "elu": elu, "tanh": tanh, "sigmoid": torch.sigmoid}


def fast_activation(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """The activation called `name` (relu, elu, tanh, sigmoid) as a tensor function."""
    if name not in FAST_ACTIVATIONS:
        raise ValueError(f"no fast activation {name!r}; allowed: {', '.join(FAST_ACTIVATIONS)}")
    return FAST_ACTIVATIONS[name]
