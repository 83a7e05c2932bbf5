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

The batch, as the reference plays it (procgen_autorl exp3.py): a round has k = B plays, one per
agent of the population (the agents that keep training play their category too), so γ, the cap and
the marginals m_i (Σ m = k) are those of k = B plays. Every row of the round (one agent's interval)
is a play of its category; the arm's estimate is x̂_i = Σ_rows x / m_i (Exp3.M's x / p_i, summed
over the arm's plays), then w_i ← w_i·exp(k·γ·x̂_i / K) for i ∉ S0 and the share term. Each
explorer draws its category with probability m_i / k (the reference: DepRound with k = 1 on the
normalised marginals); `draw` plays all k arms at once (DepRound), for a pure bandit.

With k ≥ K plays (a population larger than the categories), Exp3.M is undefined: the k plays are
then i.i.d. from the single-play distribution q (as the reference does), m_i = k·q_i the expected
plays of arm i, and no arm is capped.

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
    """Time-varying Exp3 with k = `plays` plays per round over `n_arms` categories, `horizon` rounds."""

    def __init__(self, n_arms: int, plays: int = 1, horizon: int = 50, omega: float | None = None):
        if n_arms < 1 or plays < 1:
            raise ValueError(f"TVExp3M needs at least one arm and one play, got {n_arms} and {plays}")
        self.n_arms, self.plays, self.horizon = int(n_arms), int(plays), int(horizon)
        self.omega = 1.0 / (10.0 * max(horizon, 1)) if omega is None else float(omega)
        self.gamma = exp3m_gamma(self.n_arms, self.plays, self.horizon) if self.n_arms > 1 else 0.0
        self.weights = np.full(self.n_arms, 1.0 / self.n_arms)

    def marginals(self):
        """(m, capped): the expected plays of each arm in a round of k plays (Σm = k) and S0."""
        K, k = self.n_arms, self.plays
        if K == 1:
            return np.full(1, float(k)), np.zeros(1, bool)
        if k < K:
            return exp3m_probabilities(self.weights, k, self.gamma)
        q, _ = exp3m_probabilities(self.weights, 1, self.gamma)
        return k * q / q.sum(), np.zeros(K, bool)

    def probabilities(self) -> np.ndarray:
        """The distribution one explorer's category is drawn from: m_i / k."""
        m, _ = self.marginals()
        return m / m.sum()

    def choose(self, rng: np.random.Generator) -> int:
        """One explorer's category (the reference's DepRound(k = 1) on the normalised marginals)."""
        return int(rng.choice(self.n_arms, p=self.probabilities()))

    def draw(self, rng: np.random.Generator) -> np.ndarray:
        """All k plays of a round: DepRound if k < K (k distinct arms), else i.i.d."""
        m, _ = self.marginals()
        if self.plays < self.n_arms:
            return dep_round(m, self.plays, rng)
        return rng.choice(self.n_arms, size=self.plays, p=m / m.sum())

    def update(self, arms, rewards) -> None:
        """TV.EXP3.M step 5 and the share term, for one round's rows: arm and reward in [0, 1]."""
        arms, rewards = np.asarray(arms, int), np.asarray(rewards, float)
        K = self.n_arms
        m, capped = self.marginals()
        x_hat = np.bincount(arms, weights=rewards, minlength=K) / np.maximum(m, 1e-12)
        eta = self.plays * self.gamma / K
        log_w = np.log(self.weights) + np.where(capped, 0.0, eta * x_hat)   # ·exp(kγx̂/K)
        w = np.exp(log_w - log_w.max())          # rescaled (only ratios matter): no overflow
        w = w / w.sum() + np.e * self.omega / K  # + Exp3.S share term (e·ω/K)·Σw, with Σw = 1
        self.weights = w / w.sum()

    def state_dict(self) -> dict:
        return {"n_arms": self.n_arms, "plays": self.plays, "horizon": self.horizon,
                "omega": self.omega, "weights": self.weights.copy()}

    def load_state_dict(self, state: dict) -> None:
        for name in ("n_arms", "plays", "horizon"):
            if int(state[name]) != getattr(self, name):
                raise ValueError(f"checkpoint's bandit has {name} = {state[name]}, this run {getattr(self, name)}")
        self.omega, self.weights = float(state["omega"]), np.array(state["weights"], float)
