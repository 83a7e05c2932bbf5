"""The PBT paper's toy problem (Jaderberg et al., 2017, Sec. 4.1), the development bench for
PBT/PB2 variants (`--env toy`).

Maximise Q(θ) = 1.2 − ‖θ‖² while each agent only ascends the surrogate
Q̂(θ | h) = 1.2 − (h₀θ₀² + h₁θ₁²): θ ← θ − 0.01 · 2h ⊙ θ per step, h ∈ [0, 1]², θ₀ = (0.9, 0.9).
With h = (1, 1) throughout, 40 steps reach Q ≈ 0.878, the best achievable.
A "step" of the toy plays the role of an environment step in the population loop.
"""
from __future__ import annotations

import numpy as np

STEP_SIZE = 0.01


def true_objective(theta: np.ndarray) -> float:
    """Q(θ) = 1.2 − ‖θ‖²: what the population is judged on."""
    return float(1.2 - np.sum(theta ** 2))


class ToyAgent:
    """Same interface as the PPO agent, so the population loop treats both alike."""

    def __init__(self, hyperparameters: dict, seed: int = 0):
        self.theta = np.array([0.9, 0.9])
        self.agent_steps = 0
        self.last_test_steps = 0  # Q is computed, not played
        self.hyperparameters = dict(hyperparameters)

    def train_segment(self, min_steps: int, seed: int = 0) -> dict:
        h = np.array([self.hyperparameters["h0"], self.hyperparameters["h1"]])
        for _ in range(min_steps):
            self.theta = self.theta - STEP_SIZE * 2 * h * self.theta  # ascend Q̂(θ | h)
        self.agent_steps += min_steps
        return {"steps": min_steps, "train_return": true_objective(self.theta), "episodes": 1,
                "diverged": not np.all(np.isfinite(self.theta))}

    def test_return(self, episodes: int = 1, seed: int = 0) -> float:
        return true_objective(self.theta)

    def set_hyperparameters(self, hyperparameters: dict) -> None:
        self.hyperparameters = dict(hyperparameters)

    def state_dict(self) -> dict:
        return {"theta": self.theta.copy(), "agent_steps": self.agent_steps}

    def load_state_dict(self, state: dict) -> None:
        self.theta = state["theta"].copy()
        self.agent_steps = state["agent_steps"]
