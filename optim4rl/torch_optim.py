"""The learned optimizers of Optim4RL as ordinary `torch.optim.Optimizer`s, for your own network.

Paper: Lan, Mahmood, Yan, Xu, "Learning to Optimize for Reinforcement Learning" (arXiv 2302.01470).
Sec. 5: Optim4RL, two GRUs per coordinate that learn a pseudo first moment m = sign(g) * exp(o1)
and a pseudo second moment v = exp(o2); the update has the form of Adam,

    delta theta = -lr * m / sqrt(v + eps).

Usage, like torch.optim.Adam:

    opt = Optim4RLOptimizer(model.parameters(), phi="catch", lr=1e-4)
    loss.backward(); opt.step(); opt.zero_grad()

phi (the optimizer's meta-parameters, frozen here) is None (untrained: drawn from `seed`), a
committed name (PHI_FILES: "catch", "grid_laptop") or the path of a `param.pt` written by
meta-training (`python optim4rl/main.py --config_file catch_meta ...`). The maths is NOT
re-implemented: each step calls optimizers.py's functional `update` with one agent (A = 1) over the
parameters of a group, so this class and the MetaA2C / A2C path give the same numbers.

Per-parameter state (what `state_dict` saves): `state[p] = {"h1": [1, H, p.numel()], "h2": ...}`
for Optim4RL, `{"h": [1, H, p.numel()]}` for LinearOptim and L2LGD2: the GRU hidden states of
p's coordinates (row-major), H = phi's hidden size (8), in phi's dtype (float32), zeros before
p's first step.
"""
from __future__ import annotations

import copy
import os
from collections.abc import Callable, Iterable
from pathlib import Path

import torch
from torch import Tensor

from common.cli import UsageError
from common.runs import verify_checkpoint
from optim4rl.optimizers import L2LGD2, LearnedOptimizer, LinearOptim, Optim4RL

__all__ = [
    "PHI_FILES",
    "L2LGD2Optimizer",
    "LearnedTorchOptimizer",
    "LinearOptimOptimizer",
    "Optim4RLOptimizer",
    "build_phi",
]

RESULTS = Path(__file__).resolve().parent / "results"

# committed phi name -> (file under optim4rl/results, the element-wise gradient clip it was
# meta-trained with; -1 = none). Both are Optim4RL phis.
PHI_FILES: dict[str, tuple[str, float]] = {
    "catch": ("phi_catch.pt", -1.0),                   # catch_meta --config_idx 1 (README)
    "grid_laptop": ("phi_grid_meta_laptop.pt", 1.0),   # grid_meta_laptop --config_idx 1 (README)
}


# -- reading a phi file ----------------------------------------------------------------------------
def _kind_of(saved: dict[str, Tensor]) -> str:
    """Which learned optimizer a phi state dict belongs to, from its keys and shapes."""
    if "rnn1.w_i" in saved:
        return "Optim4RL"
    if "rnn.w_i" in saved:
        return "L2LGD2" if saved["rnn.w_i"].shape[0] == 2 else "LinearOptim"
    return "unknown"


def _architecture(saved: dict[str, Tensor], head: str) -> tuple[int, tuple[int, ...]]:
    """(hidden_size, mlp_dims) of a phi state dict: H from a GRU input kernel [in, 3H], the MLP
    widths from the head's kernels [in, out] (all but the last)."""
    rnn = "rnn1" if head == "head1" else "rnn"
    hidden = saved[f"{rnn}.w_i"].shape[1] // 3
    kernels = sorted((k for k in saved if k.startswith(f"{head}.layers.") and k.endswith(".kernel")),
                     key=lambda k: int(k.split(".")[2]))
    return hidden, tuple(saved[k].shape[1] for k in kernels[:-1])


def _phi_path(phi: str) -> tuple[str, float | None]:
    """(path, meta-training grad clip or None) of a committed name or a file path."""
    if phi in PHI_FILES:
        name, clip = PHI_FILES[phi]
        return str(RESULTS / name), clip
    looks_like_path = os.sep in phi or phi.endswith(".pt")
    if not looks_like_path:
        raise ValueError(f"phi={phi!r}: unknown name; use one of {', '.join(PHI_FILES)}, "
                         f"a path to a param.pt, or None (untrained)")
    if not os.path.isfile(phi):
        raise ValueError(f"phi={phi!r}: no such file (expected a param.pt written by meta-training)")
    return phi, None


def _read_phi(path: str) -> dict[str, Tensor]:
    try:
        verify_checkpoint(path)   # a flipped byte inside the tensors would otherwise load silently
    except UsageError as error:
        raise ValueError(f"phi={path!r}: {error}") from None
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:   # noqa: BLE001 (a corrupt or foreign file raises many kinds)
        raise ValueError(f"phi={path!r}: cannot read it as a torch state dict "
                         f"({type(error).__name__})") from None
    if not isinstance(saved, dict) or not all(isinstance(v, Tensor) for v in saved.values()):
        raise ValueError(f"phi={path!r}: not a phi state dict (a dict of tensors)")
    return saved


def build_phi(cls: type[LearnedOptimizer], phi, lr: float, grad_clip: float | None,
              seed: int) -> LearnedOptimizer:
    """The functional learned optimizer (optimizers.py) with phi loaded and frozen.

    phi: None (untrained, drawn from torch.Generator().manual_seed(seed), hidden 8, linear heads),
    a PHI_FILES name or a path. grad_clip None: the clip the named phi was meta-trained with
    (none for a path or an untrained phi)."""
    saved, default_clip, hidden, mlp_dims = None, None, 8, ()
    if phi is not None:
        if not isinstance(phi, (str, os.PathLike)):
            raise ValueError(f"phi={phi!r}: expected None, a name ({', '.join(PHI_FILES)}) or a path")
        path, default_clip = _phi_path(os.fspath(phi))
        saved = _read_phi(path)
        if _kind_of(saved) != cls.name:
            raise ValueError(f"phi={os.fspath(phi)!r} holds a {_kind_of(saved)} phi, not {cls.name}: "
                             f"use the optimizer class of its kind")
        hidden, mlp_dims = _architecture(saved, "head1" if cls is Optim4RL else "head")
    clip = grad_clip if grad_clip is not None else (default_clip if default_clip is not None else -1.0)
    module = cls(lr, grad_clip=clip, hidden_size=hidden, mlp_dims=mlp_dims,
                 generator=torch.Generator().manual_seed(int(seed)))
    if saved is not None:
        try:
            module.load_state_dict(saved)
        except RuntimeError as error:      # extra or missing keys, odd shapes
            raise ValueError(f"phi={os.fspath(phi)!r}: not a {cls.name} phi this code can load "
                             f"({str(error).splitlines()[0]})") from None
    return module.requires_grad_(False)


# -- the torch.optim.Optimizer ----------------------------------------------------------------------
class LearnedTorchOptimizer(torch.optim.Optimizer):
    """A learned optimizer (phi frozen) as a torch.optim.Optimizer; subclasses fix `kind`.

    params: an iterable of tensors or of param-group dicts (each may set its own "lr").
    phi: None | a name in PHI_FILES | a path to a param.pt of this kind.
    lr: the learning rate (>= 0), in parameter units per update for sign-like steps: the update is
        lr times phi's output (Optim4RL: -lr * m / sqrt(v + eps); an untrained phi's heads output
        about 0, so it steps about -lr * sign(g); the Catch phi about -20 lr * sign(g)).
    grad_clip: element-wise gradient clip before phi (> 0), -1 for none, None for phi's own.
    seed: draws the untrained phi (phi=None); ignored otherwise.
    """

    kind: type[LearnedOptimizer] = Optim4RL

    def __init__(self, params: Iterable, phi=None, lr: float = 1e-3, grad_clip: float | None = None,
                 seed: int = 0):
        if not isinstance(lr, (int, float)) or not lr >= 0:
            raise ValueError(f"lr={lr!r}: the learning rate must be a number >= 0")
        if grad_clip is not None and not isinstance(grad_clip, (int, float)):
            raise ValueError(f"grad_clip={grad_clip!r}: a number (> 0 clips, -1 for none) or None")
        super().__init__(params, {"lr": float(lr)})
        self.phi = build_phi(self.kind, phi, float(lr), grad_clip, seed)
        self._phi_by_device: dict[torch.device, LearnedOptimizer] = {torch.device("cpu"): self.phi}

    def _phi_on(self, device: torch.device) -> LearnedOptimizer:
        """phi on `device` (a frozen copy made once per device)."""
        if device not in self._phi_by_device:
            self._phi_by_device[device] = copy.deepcopy(self.phi).to(device)
        return self._phi_by_device[device]

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None):
        """One update of every parameter that has a .grad; returns closure() if given."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            if group["lr"] < 0:
                raise ValueError(f"lr={group['lr']!r} in a param group: must be >= 0")
            by_device: dict[torch.device, list] = {}
            for p in group["params"]:
                if p.grad is not None:
                    by_device.setdefault(p.device, []).append(p)
            for device, params in by_device.items():
                self._step_params(params, group["lr"], self._phi_on(device))
        return loss

    def _step_params(self, params: list, lr: float, phi: LearnedOptimizer) -> None:
        """One functional update (A = 1) over `params`: their coordinates are concatenated in
        one batch, as optimizers.py does for a dict of tensors, and the hidden states split back."""
        if any(p.grad.is_sparse for p in params):
            raise RuntimeError(f"{type(self).__name__} does not support sparse gradients")
        grads = {str(i): p.grad.unsqueeze(0) for i, p in enumerate(params)}       # [1, ...]
        hidden = {name: torch.cat([self._hidden(p, name, phi) for p in params], dim=2)
                  for name in phi.hidden_names}                                   # [1, H, M]
        phi.learning_rate = lr
        updates, new_hidden = phi.update(grads, hidden)
        sizes = [p.numel() for p in params]
        for name, h in new_hidden.items():
            for p, chunk in zip(params, torch.split(h, sizes, dim=2)):
                self.state[p][name] = chunk.clone()
        for i, p in enumerate(params):
            p.add_(updates[str(i)][0])                       # theta <- theta + delta theta

    def _hidden(self, p: Tensor, name: str, phi: LearnedOptimizer) -> Tensor:
        """p's hidden state `name` [1, H, p.numel()] in phi's dtype (zeros before its first step)."""
        dtype = next(phi.parameters()).dtype
        h = self.state[p].get(name)
        if h is None:
            return torch.zeros(1, phi.hidden_size, p.numel(), dtype=dtype, device=p.device)
        return h.to(device=p.device, dtype=dtype)


class Optim4RLOptimizer(LearnedTorchOptimizer):
    """Optim4RL (Sec. 5): delta theta = -lr * sign(g) exp(o1) / sqrt(exp(o2) + 1e-8), o1, o2 from
    two GRUs reading g and g^2. See LearnedTorchOptimizer for the arguments."""

    kind = Optim4RL


class LinearOptimOptimizer(LearnedTorchOptimizer):
    """LinearOptim (the paper's learned baseline): delta theta = -lr * (exp(o1) g + exp(o2) o3)."""

    kind = LinearOptim


class L2LGD2Optimizer(LearnedTorchOptimizer):
    """L2LGD2 (Andrychowicz et al. 2016, GRU): delta theta = -lr * exp(o) * g, o from the GRU
    reading (log|g| / 10, sign g)."""

    kind = L2LGD2
