"""The hyperparameters each population searches over (the seed's search_space.py).

A search space has continuous hyperparameters with [low, high] bounds and at most one
categorical hyperparameter with a list of values.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from common.cli import UsageError

PROCGEN_AUGMENTATIONS = ["crop", "random-conv", "grayscale", "flip", "rotate", "cutout",
                         "cutout-color", "color-jitter"]
# On vector observations (CartPole): noise types of which some help and one (sign-flip) breaks
# the state's meaning, so the categorical choice matters.
VECTOR_AUGMENTATIONS = ["gaussian", "scale", "dropout", "sign-flip"]


@dataclass
class SearchSpace:
    continuous: dict[str, tuple[float, float]]
    categorical: tuple[str, list] | None = None

    def __post_init__(self):
        for name, (low, high) in self.continuous.items():
            if not low <= high:
                raise UsageError(f"bounds of {name!r}: low {low} > high {high}")

    @property
    def names(self) -> list[str]:
        return list(self.continuous) + ([self.categorical[0]] if self.categorical else [])

    def sample(self, rng: np.random.Generator) -> dict:
        """Uniform random configuration within the bounds: the initial population."""
        config = {name: float(rng.uniform(low, high))
                  for name, (low, high) in self.continuous.items()}
        if self.categorical:
            name, values = self.categorical
            config[name] = values[int(rng.integers(len(values)))]
        return config

    def clip(self, config: dict) -> dict:
        clipped = dict(config)
        for name, (low, high) in self.continuous.items():
            clipped[name] = float(np.clip(config[name], low, high))
        return clipped


PPO_CONTINUOUS = {"entropy_coef": (0.0, 0.2), "lr": (1e-5, 1e-3), "clip_param": (0.01, 0.5),
                  "aug_coef": (0.01, 0.5)}


def procgen_space() -> SearchSpace:
    return SearchSpace(dict(PPO_CONTINUOUS), ("aug_type", list(PROCGEN_AUGMENTATIONS)))


def vector_space() -> SearchSpace:
    return SearchSpace(dict(PPO_CONTINUOUS), ("aug_type", list(VECTOR_AUGMENTATIONS)))


def toy_space() -> SearchSpace:
    return SearchSpace({"h0": (0.0, 1.0), "h1": (0.0, 1.0)})
