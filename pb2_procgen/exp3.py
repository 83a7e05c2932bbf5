"""TV.EXP3.M and DepRound: the categorical bandit of PB2-Mult / PB2-Mix.

Exp3.M (Uchiya, Nakamura & Kudo 2010, Fig. 2) chooses k distinct arms out of K per round:
  1. if max_i w_i ≥ r·Σw with r = (1/k - γ/K)/(1 - γ), cap the largest weights at the threshold α
     solving α / Σ_i min(w_i, α) = r (the capped set S0 gets probability exactly 1);
  2. p_i = k·((1 - γ)·w'_i / Σw' + γ/K)   (the marginal probability that arm i is played, Σp = k);
  3. draw the k arms with DepRound, which plays arm i with probability exactly p_i;
  4. x̂_i = x_i / p_i for played arms, 0 otherwise;
  5. w_i ← w_i·exp(k·γ·x̂_i / K) for i ∉ S0.
The time-varying version (TV.EXP3.M, Parker-Holder et al. 2021) adds the Exp3.S "share" term
(Auer et al. 2002, Fig. 8) to every arm, w_i ← w_i·exp(...) + (e·ω/K)·Σ_j w_j, so weight can flow
back to an arm that becomes good later; ω = 1/(10·T) as in the reference code.

Observation model used by `TVExp3M.update`. PB2 sees the reward of every agent's category, not
only of the arms the bandit drew: as in the reference code, every row (one agent's interval) is a
play of its category and the arm's estimate is the sum over its rows. A row that the last draw
explains (at most as many rows of arm i as times i was drawn) is importance-weighted by the draw's
inclusion probability p_i; the other rows (agents that held arm i regardless of the bandit) are
observed with probability 1 and count as they are:
    x̂_i = x̄_i · (min(n_i, d_i) / p_i + max(n_i - d_i, 0)),
with n_i the rows of arm i in the round, d_i the times it was drawn and x̄_i their mean reward.
For a pure bandit (only drawn arms are observed) this is exactly Exp3.M's x̂_i = x_i / p_i. An arm
held by many agents therefore gathers more evidence per round (like the reference's per-row
updates); min-max normalised rewards keep a popular but poor arm's gain near 0.

With k ≥ K plays (more agents to explore than categories), Exp3.M is undefined: the k arms are then
drawn i.i.d. from the single-play distribution (as the reference does) and the inclusion
probability is 1 - (1 - q_i)^k.

All state is a plain dict of numpy arrays / floats (`state_dict`).
"""
from __future__ import annotations

import numpy as np


def exp3m_gamma(n_arms: int, n_plays: int, horizon: int) -> float:
    """γ = min(1, sqrt(K ln(K/k) / ((e - 1)·k·T))) (Uchiya et al. 2010, Cor. 1)."""
    k = min(max(n_plays, 1), n_arms - 1)
    value = n_arms * np.log(n_arms / k) / ((np.e - 1.0) * k * max(horizon, 1))
    return float(min(1.0, np.sqrt(value)))


def cap_threshold(w: np.ndarray, r: float, k: int) -> float:
    """α with α / (m·α + Σ_{uncapped} w) = r, the m largest weights capped (Exp3.M step 1)."""
    ws = np.sort(w)[::-1]
    for m in range(1, k):
        alpha = r * ws[m:].sum() / (1.0 - m * r)
        if ws[m - 1] >= alpha >= ws[m]:
            return float(alpha)
    return float(ws[0])          # numerically no valid cut: no cap


def exp3m_probabilities(weights: np.ndarray, k: int, gamma: float):
    """p_i = k((1-γ) w'_i/Σw' + γ/K) with the capped weights w' (Exp3.M steps 1-2); returns
    (p, capped) where Σp = k and capped marks S0."""
    K = len(weights)
    w = np.asarray(weights, float) / np.sum(weights)
    capped = np.zeros(K, bool)
    if 1 < k < K and gamma < 1.0:
        r = (1.0 / k - gamma / K) / (1.0 - gamma)
        if w.max() >= r * w.sum():
            alpha = cap_threshold(w, r, k)
            capped = w >= alpha
            w = np.where(capped, alpha, w)
    p = k * ((1.0 - gamma) * w / w.sum() + gamma / K)
    return np.clip(p, 0.0, 1.0), capped


def dep_round(p, k: int, rng: np.random.Generator) -> np.ndarray:
    """Dependent rounding (Gandhi et al. 2006; Uchiya et al. 2010 Fig. 5): k distinct arms, arm i
    chosen with probability exactly p_i (requires Σp = k, 0 ≤ p_i ≤ 1)."""
    p = np.array(p, float)
    if abs(p.sum() - k) > 1e-6 or p.min() < -1e-9 or p.max() > 1 + 1e-9:
        raise ValueError(f"DepRound needs 0 <= p_i <= 1 and sum(p) = k = {k}; got {p}")
    p = np.clip(p, 0.0, 1.0)
    tol = 1e-9
    while True:
        frac = np.flatnonzero((p > tol) & (p < 1.0 - tol))
        if len(frac) < 2:
            break
        i, j = frac[0], frac[1]
        a, b = min(1.0 - p[i], p[j]), min(p[i], 1.0 - p[j])
        if rng.random() < b / (a + b):        # keeps E[p_i] and E[p_j] unchanged
            p[i], p[j] = p[i] + a, p[j] - a
        else:
            p[i], p[j] = p[i] - b, p[j] + b
    return np.sort(np.argsort(-p, kind="stable")[:k])


class TVExp3M:
    """Time-varying Exp3 with multiple plays over `n_arms` categories for `horizon` rounds."""

    def __init__(self, n_arms: int, horizon: int = 50, omega: float | None = None):
        if n_arms < 1:
            raise ValueError("TVExp3M needs at least one arm")
        self.n_arms, self.horizon = int(n_arms), int(horizon)
        self.omega = 1.0 / (10.0 * max(horizon, 1)) if omega is None else float(omega)
        self.weights = np.full(self.n_arms, 1.0 / self.n_arms)
        self._reset_draw()

    def _reset_draw(self):
        """Forget the last draw: which arms, their inclusion probabilities, S0 and the step
        size η = k·γ/K (without a draw: the single-play η)."""
        self.drawn = np.zeros(self.n_arms)
        self.inclusion = np.zeros(self.n_arms)
        self.capped = np.zeros(self.n_arms, bool)
        self.eta = exp3m_gamma(self.n_arms, 1, self.horizon) / self.n_arms

    def probabilities(self, k: int = 1) -> np.ndarray:
        """Marginal play probabilities for k plays (Σ = min(k, K)); k = 1 gives a distribution."""
        if k >= self.n_arms:
            return np.ones(self.n_arms)
        return exp3m_probabilities(self.weights, k, exp3m_gamma(self.n_arms, k, self.horizon))[0]

    def draw(self, k: int, rng: np.random.Generator) -> np.ndarray:
        """Choose k arms for this round (DepRound if k < K, else i.i.d.); remembers the draw."""
        K = self.n_arms
        if K == 1:
            arms, incl, capped, eta = np.zeros(k, int), np.ones(1), np.zeros(1, bool), 0.0
        elif k < K:
            gamma = exp3m_gamma(K, k, self.horizon)
            incl, capped = exp3m_probabilities(self.weights, k, gamma)
            arms, eta = dep_round(incl, k, rng), k * gamma / K
        else:
            gamma = exp3m_gamma(K, 1, self.horizon)
            q, capped = exp3m_probabilities(self.weights, 1, gamma)
            arms, eta = rng.choice(K, size=k, p=q / q.sum()), gamma / K
            incl = 1.0 - (1.0 - q) ** k
        self.drawn += np.bincount(arms, minlength=K)
        self.inclusion = 1.0 - (1.0 - self.inclusion) * (1.0 - incl)
        self.capped |= capped
        self.eta = eta
        return np.asarray(arms, int)

    def update(self, arms, rewards) -> None:
        """TV.EXP3.M step 5 and the share term, for one round of rewards in [0, 1], one per row."""
        arms, rewards = np.asarray(arms, int), np.asarray(rewards, float)
        K = self.n_arms
        x_hat = np.zeros(K)
        for i in np.unique(arms):
            rows = arms == i
            n, d = rows.sum(), self.drawn[i]
            by_draw = min(n, d) / max(self.inclusion[i], 1e-12)    # x̂_i = x_i / p_i for drawn rows
            x_hat[i] = rewards[rows].mean() * (by_draw + max(n - d, 0))
        log_w = np.log(self.weights) + np.where(self.capped, 0.0, self.eta * x_hat)  # ·exp(kγx̂/K)
        w = np.exp(log_w - log_w.max())          # rescaled (only ratios matter): no overflow
        w = w / w.sum() + np.e * self.omega / K  # + Exp3.S share term (e·ω/K)·Σw, with Σw = 1
        self.weights = w / w.sum()
        self._reset_draw()

    def state_dict(self) -> dict:
        return {"n_arms": self.n_arms, "horizon": self.horizon, "omega": self.omega,
                "weights": self.weights.copy(), "drawn": self.drawn.copy(),
                "inclusion": self.inclusion.copy(), "capped": self.capped.copy(),
                "eta": self.eta}

    def load_state_dict(self, state: dict) -> None:
        self.n_arms, self.horizon = int(state["n_arms"]), int(state["horizon"])
        self.omega, self.eta = float(state["omega"]), float(state["eta"])
        for name in ("weights", "drawn", "inclusion"):
            setattr(self, name, np.array(state[name], float))
        self.capped = np.array(state["capped"], bool)
