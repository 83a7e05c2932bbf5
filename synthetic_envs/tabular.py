"""Tabular inner agents for the Cliff walk: Q-learning and SARSA (one-step, online: the
reference's replay buffer of size 1 with batch 1 is exactly that), with the count-based
exploration bonus β/√n(s,a) as the mode −1 baseline. Pure Python lists: a Cliff step costs about
a microsecond, and NES trains thousands of these agents."""
from __future__ import annotations

import math
import random

import numpy as np

# The reference's Cliff settings (default_config_gridworld*.yaml, the spec's NES values);
# evaluate.py applies EVAL_OVERRIDES (ε 0.1, 500 episodes) when it trains fresh agents.
TABULAR_HP = {
    "ql": {"alpha": 1.0, "gamma": 0.8, "eps_init": 0.01, "eps_min": 0.01, "eps_decay": 0.0,
           "max_episodes": 100, "init_episodes": 0, "beta": 0.1, "count_based": False,
           "argmax_ties": "first"},
    "sarsa": {"alpha": 1.0, "gamma": 0.8, "eps_init": 0.01, "eps_min": 0.01, "eps_decay": 0.0,
              "max_episodes": 100, "init_episodes": 0, "beta": 0.1, "count_based": False,
              "argmax_ties": "first"},
}
# Which action a greedy step takes when several Q-values tie (at the start every Q is 0):
# "first" the lowest index (torch.argmax since 1.7, numpy), "last" the highest (torch.argmax
# on the CPU up to 1.6, which the reference ran on). It changes plain Q-learning's real steps
# to solve the Cliff (README, implementation detail 18).
ARGMAX_TIES = ("first", "last")
EVAL_OVERRIDES = {"eps_init": 0.1, "eps_min": 0.1, "max_episodes": 500}


class QLearning:
    """Watkins' Q-learning: Q(s,a) += α (r + γ max_a' Q(s',a') (1 − terminated) − Q(s,a))."""

    name = "ql"
    tabular = True

    def __init__(self, n_states: int, action_space, hp: dict, seed: int):
        self.n_actions = int(action_space.n)
        self.alpha, self.gamma = hp["alpha"], hp["gamma"]
        self.eps_init, self.eps_min, self.eps_decay = hp["eps_init"], hp["eps_min"], hp["eps_decay"]
        self.eps = self.eps_init
        self.episode = 0
        self.q = [[0.0] * self.n_actions for _ in range(n_states)]
        self.rng = random.Random(seed)
        self.count_based, self.beta = hp["count_based"], hp["beta"]
        ties = hp.get("argmax_ties", "first")
        if ties not in ARGMAX_TIES:
            raise ValueError(f"argmax_ties must be one of {', '.join(ARGMAX_TIES)}, got {ties!r}")
        self.last_ties = ties == "last"
        self.visits = [[0] * self.n_actions for _ in range(n_states)] if self.count_based else None

    def greedy(self, state: int) -> int:
        row = self.q[state]
        if self.last_ties:   # torch <= 1.6 on the CPU, the reference's
            return len(row) - 1 - row[::-1].index(max(row))
        return row.index(max(row))   # torch >= 1.7, numpy

    def act(self, state: int, explore: bool) -> int:
        if explore and self.rng.random() < self.eps:
            return self.rng.randrange(self.n_actions)
        return self.greedy(state)

    def bonus(self, state: int, action: int) -> float:
        """Count-based exploration bonus β/√n(s,a) (mode −1), counted before the update."""
        self.visits[state][action] += 1
        return self.beta / math.sqrt(self.visits[state][action])

    def observe(self, state, action, reward, next_state, terminated, truncated) -> None:
        if self.count_based:
            reward += self.bonus(state, action)
        future = 0.0 if terminated else self.gamma * max(self.q[next_state])
        self.q[state][action] += self.alpha * (reward + future - self.q[state][action])

    def end_episode(self) -> None:
        """ε = eps_init in episode 0, then multiplied by eps_decay per episode, floored at eps_min."""
        self.episode += 1
        self.eps = max(self.eps * self.eps_decay, self.eps_min)


class Sarsa(QLearning):
    """SARSA as the original's agents/SARSA.py: Q(s,a) += α (r + γ Q(s',a') (1 − terminated)
    − Q(s,a)), where a' is an ε-greedy action drawn at s' for the target only; the action the
    agent then takes in s' is drawn afresh by act() (a one-sample on-policy target, not the
    textbook pairing of a' with the next action)."""

    name = "sarsa"

    def observe(self, state, action, reward, next_state, terminated, truncated) -> None:
        if self.count_based:
            reward += self.bonus(state, action)
        future = 0.0
        if not terminated:
            future = self.gamma * self.q[next_state][self.act(next_state, explore=True)]
        self.q[state][action] += self.alpha * (reward + future - self.q[state][action])


TABULAR_AGENTS = {"ql": QLearning, "sarsa": Sarsa}


def vary_tabular_hp(hp: dict, rng: np.random.Generator) -> dict:
    """--vary-hp for tabular agents: the learning rate α log-uniform in [α/3, min(1, 3α)] and the
    exploration rate ε log-uniform in [ε/3, 3ε] (there is no batch size or network to vary)."""
    out = dict(hp)
    out["alpha"] = float(np.exp(rng.uniform(np.log(hp["alpha"] / 3), np.log(min(1.0, 3 * hp["alpha"])))))
    eps = float(np.exp(rng.uniform(np.log(hp["eps_init"] / 3), np.log(3 * hp["eps_init"]))))
    out["eps_init"] = eps
    out["eps_min"] = min(hp["eps_min"] * eps / hp["eps_init"], eps)
    return out
