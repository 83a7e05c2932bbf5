"""Mutation operators shared by SEARL's TD3 and DQN individuals (paper Sec. 3.3, Appendix B).

Each operator works on one individual in place and returns a short description for the
population log. The network-specific ones (architecture, activation) live on the networks.
"""
from __future__ import annotations

import math
from typing import Iterable

import numpy as np
import torch

HYPERPARAMETER_FACTORS = (0.8, 1.2)


@torch.no_grad()
def parameter_noise(weights: Iterable[torch.Tensor], rng: np.random.Generator,
                    fraction: float = 0.1, super_prob: float = 0.05, reset_prob: float = 0.05,
                    mutation_sd: float = 0.1, super_sd: float = 10.0, limit: float = 1e6) -> int:
    """Gaussian parameter mutation (reference `classic_parameter_mutation`): pick 1..all weight
    matrices; in each of n entries, n drawn uniformly from 0 .. ceil(`fraction` x size) - 1 as
    the reference's `np.random.randint(ceil(0.1 * n))` (about 5% on average), with
    `super_prob` add N(0, |10 w|), with `reset_prob` reset to N(0, 1), otherwise add
    N(0, |0.1 w|); clip to +-limit. Returns the number of entries drawn."""
    matrices = [w for w in weights if w.dim() >= 2]
    chosen = rng.choice(len(matrices), size=rng.integers(1, len(matrices) + 1), replace=False)
    changed = 0
    for index in sorted(chosen):
        w = matrices[index]
        flat = w.view(-1)
        n = int(rng.integers(math.ceil(fraction * flat.numel())))
        if n == 0:
            continue
        positions = torch.from_numpy(rng.integers(0, flat.numel(), size=n))
        kind = rng.random(n)
        noise = torch.from_numpy(rng.standard_normal(n)).to(w.dtype)
        old = flat[positions].cpu()
        new = torch.where(torch.from_numpy(kind < super_prob), old + noise * (super_sd * old).abs(),
              torch.where(torch.from_numpy(kind < super_prob + reset_prob), noise,
                          old + noise * (mutation_sd * old).abs()))
        flat[positions.to(w.device)] = new.clamp(-limit, limit).to(w.device)
        changed += n
    return changed


def mutate_scalar(value: float, low: float, high: float, rng: np.random.Generator,
                  integer: bool = False) -> float:
    """x 0.8 or x 1.2 (reference), clipped to [low, high]. Integers move by at least one
    step so a mutation can always change them (int(1 * 1.2) would stay 1)."""
    factor = HYPERPARAMETER_FACTORS[rng.integers(2)]
    if not integer:
        return float(np.clip(value * factor, low, high))
    moved = int(round(value * factor))
    if moved == value:
        moved = value + (1 if factor > 1 else -1)
    return int(np.clip(moved, low, high))


def mutate_step(value: int, low: int, high: int, rng: np.random.Generator) -> int:
    """+-1 within [low, high] (the policy update delay)."""
    return int(np.clip(value + (1 if rng.random() < 0.5 else -1), low, high))
