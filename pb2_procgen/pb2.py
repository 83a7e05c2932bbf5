"""PB2's explore step: a time-varying GP bandit chooses the new hyperparameters of an agent that
has just copied a better one (Parker-Holder et al. 2020, Alg. 1-2), with the categorical
hyperparameter handled as in Parker-Holder et al. 2021 (`cat_exp`):

  random    PB2-Rand: the category is resampled uniformly with probability 0.5 (else kept from
            the parent); the GP models the continuous hyperparameters only, on all rows.
  exp3_dep  PB2-Mult: TV.EXP3.M + DepRound choose the category first; the GP is then fitted on
            the rows of that category only (no such rows: copy the parent's continuous values).
  cocabo    PB2-Mix: TV.EXP3.M + DepRound choose the category; one GP on all rows with the
            CoCaBO mixture kernel over (continuous, categorical), the category fixed to the chosen
            one while the acquisition is maximised over the continuous box.

The data (Sec. 3.2): one row per interval of one agent, X = [t, R_before, hyperparameters],
y = (R_after - R_before) / Δt. Before each fit, t and R_before are min-max normalised to [0, 1]
over the rows used plus the new point, the continuous hyperparameters by their bounds, and y is
standardised and clipped to [-2, 2]. A row is keyed by its interval's start (t, R_before), and
the candidate is scored at the start of the interval it will run: the parent's current (t, R).

Acquisition (Alg. 2, as in the reference code and Ray Tune): UCB(x) = μ(x) + sqrt(β)·σ²(x) — note
the posterior *variance*, not the standard deviation — with β = max(0.2·ln(0.4·N), 0), N the rows of
the GP; maximised over the normalised box with 10 random starts of L-BFGS-B (analytic gradients).

Batch (GP-BUCB, Desautels et al. 2014), as the reference (procgen_autorl pbt.py): the configs of
the agents that keep running this round ("pending": every agent outside the top quantile, the
explorer's own current config included, then each explorer's new config once it is chosen) are
added with the candidate's context and y = 0 to a second GP, and the UCB takes its mean from the
first GP and its variance from the second; at B = 4 the second GP sees 3 pending rows. The second
GP keeps the first one's hyperparameters (pure GP-BUCB, so its variance is lower everywhere and much
lower at the pending points). The reference re-optimises them on the data plus the y = 0 rows; that
treats the made-up zeros as data: on a test problem the refit noise variance grew ninefold and the
variance AT the pending point rose (0.009 -> 0.037), so the batch could pick the same point twice.
REFIT_PENDING_GP = True restores the reference's refit (warm-started from the first fit).

The acquisition's 10 L-BFGS-B starts are the 10 best of ACQ_CANDIDATES uniform random points (the
reference: 10 uniform points). With standardised, clipped y the UCB is flat far from the data, and
a plain uniform start there stops at once; screening the starts makes the 10 runs find the peaks.

The categorical bandit (PB2-Mult, PB2-Mix) plays the population: k = B plays per round (see
exp3.py). The first select() after new rows updates TV.EXP3.M with them (arm = each row's category,
reward = its y min-max normalised to [0, 1] over all stored rows); each select() then draws its
explorer's category from the B-play marginals, normalised.

Randomness: the explorer has its own np.random.Generator (seed: an int or a SeedSequence), so equal
seeds and equal calls give equal configs; `state_dict` holds the data, the bandit and the
generator's state.
"""
from __future__ import annotations

import numpy as np
from scipy.optimize import minimize

from common.cli import UsageError
from pb2_procgen.exp3 import TVExp3M
from pb2_procgen.gp import GP, fit_gp, gp_from_params, single_threaded_blas
from pb2_procgen.search_space import SearchSpace

CAT_EXPLORATIONS = ("random", "exp3_dep", "cocabo")
RESAMPLE_PROB = 0.5       # PB2-Rand and PBT: chance of resampling the categorical
ACQ_STARTS = 10           # random starts of L-BFGS-B on the acquisition (reference: 10)
ACQ_CANDIDATES = 256      # uniform points screened for those starts
REFIT_PENDING_GP = False  # re-optimise the hyperparameters of the GP with the pending rows
GP_RESTARTS = 1           # random restarts of the marginal-likelihood fit besides the default


# -- data normalisation (Sec. 3.2) --------------------------------------------------------------
def minmax_with(values: np.ndarray, extra: float) -> tuple[np.ndarray, float]:
    """Min-max to [0, 1] over the data and the new point; a constant column maps to 0."""
    lo, hi = min(values.min(), extra), max(values.max(), extra)
    span = hi - lo if hi - lo > 1e-12 else 1.0
    return (values - lo) / span, (extra - lo) / span


def standardise(y: np.ndarray) -> np.ndarray:
    """(y - mean) / std, clipped to [-2, 2] (the reference's `standardize`)."""
    return np.clip((y - y.mean()) / (y.std() + 1e-8), -2.0, 2.0)


# -- acquisition (Alg. 2) -----------------------------------------------------------------------
def ucb_beta(n_rows: int) -> float:
    """β = max(0.2·ln(0.4·N), 0) (the reference's c1 = 0.2, c2 = 0.4)."""
    return max(0.2 * np.log(0.4 * max(n_rows, 1)), 0.0)


def negative_ucb(z, gp_mean: GP, gp_var: GP, prefix, suffix, sqrt_beta, dims):
    """-(μ₁(x) + sqrt(β)·σ₂²(x)) and its gradient wrt the hyperparameters z (GP-BUCB mean/var)."""
    x = np.concatenate([prefix, z, suffix])
    mean, var, dmean, dvar = gp_mean.predict_with_grad(x, dims)
    if gp_var is not gp_mean:
        _, var, _, dvar = gp_var.predict_with_grad(x, dims)
    return -(mean + sqrt_beta * var), -(dmean + sqrt_beta * dvar)


def ucb_batch(Z, gp_mean, gp_var, prefix, suffix, sqrt_beta) -> np.ndarray:
    """μ₁(x) + sqrt(β)·σ₂²(x) at many hyperparameter vectors Z (rows) in the same context."""
    X = np.column_stack([np.tile(prefix, (len(Z), 1)), Z, np.tile(suffix, (len(Z), 1))])
    return gp_mean.predict(X)[0] + sqrt_beta * gp_var.predict(X)[1]


def maximise_ucb(gp_mean, gp_var, prefix, suffix, beta, n_hp, rng) -> np.ndarray:
    """argmax of the UCB over [0, 1]^n_hp: best of ACQ_STARTS runs of L-BFGS-B started at the best
    of ACQ_CANDIDATES uniform random points."""
    dims = np.arange(len(prefix), len(prefix) + n_hp)
    prefix, suffix = np.asarray(prefix, float), np.asarray(suffix, float)
    args = (gp_mean, gp_var, prefix, suffix, np.sqrt(beta), dims)
    candidates = rng.uniform(0.0, 1.0, size=(ACQ_CANDIDATES, n_hp))
    values = ucb_batch(candidates, gp_mean, gp_var, prefix, suffix, np.sqrt(beta))
    best_z, best_f = None, np.inf
    for z0 in candidates[np.argsort(-values, kind="stable")[:ACQ_STARTS]]:
        res = minimize(negative_ucb, z0, args=args, jac=True, method="L-BFGS-B",
                       bounds=[(0.0, 1.0)] * n_hp, options={"maxiter": 200})
        if res.fun < best_f:
            best_z, best_f = res.x, res.fun
    return np.clip(best_z, 0.0, 1.0)


def fit_batch_gps(X, ys, pending, n_cat, rng) -> tuple[GP, GP]:
    """GP-BUCB: the GP of the data, and a second GP with the pending rows added at y = 0 (same
    hyperparameters unless REFIT_PENDING_GP); without pending rows both are the same GP."""
    kind = "tv_mix" if n_cat else "tv_se"
    gp1 = fit_gp(X, ys, kind, n_cat, rng=rng, n_restarts=GP_RESTARTS)
    if not len(pending):
        return gp1, gp1
    X2, y2 = np.vstack([X, pending]), np.concatenate([ys, np.zeros(len(pending))])
    if REFIT_PENDING_GP:
        return gp1, fit_gp(X2, y2, kind, n_cat, init=gp1.params)
    return gp1, gp_from_params(kind, gp1.params, X2, y2, n_cat)


def pb2_select_config(X, y, context, pending, n_cat, rng) -> tuple[np.ndarray, GP]:
    """One PB2 selection on normalised rows X = [t, R, hps..., cats...] (Alg. 2): standardise y,
    fit the GPs, maximise UCB at the context; returns (normalised hps, first GP).
    `context` is the normalised [t, R, (cat)]; `pending` the rows [t, R, hps, (cat)] of the configs
    running this round."""
    ys = standardise(np.asarray(y, float))
    gp1, gp2 = fit_batch_gps(X, ys, pending, n_cat, rng)
    n_hp = X.shape[1] - 2 - n_cat
    z = maximise_ucb(gp1, gp2, context[:2], context[2:], ucb_beta(len(ys)), n_hp, rng)
    return z, gp1


# -- the explorer the population loop calls -------------------------------------------------------
class PB2Explorer:
    """PB2 / PB2-Rand / PB2-Mult / PB2-Mix explore step over a SearchSpace (see module docstring).

    `n_rounds` is the expected number of exploit/explore rounds, the horizon T that sets TV.EXP3.M's
    exploration rate γ and share rate ω = 1/(10T) (e.g. max_budget / t_ready); `population` is B,
    the bandit's plays per round.
    """

    def __init__(self, space: SearchSpace, cat_exp: str, seed, max_rows: int = 1000,
                 n_rounds: int = 50, population: int = 4):
        if cat_exp not in CAT_EXPLORATIONS:
            raise UsageError(f"unknown cat_exp {cat_exp!r}; allowed: {', '.join(CAT_EXPLORATIONS)}")
        if max_rows < 1:
            raise UsageError(f"max_rows must be >= 1, got {max_rows}")
        self.space, self.cat_exp, self.max_rows = space, cat_exp, int(max_rows)
        self.names = list(space.continuous)
        self.low = np.array([space.continuous[n][0] for n in self.names], float)
        self.span = np.array([space.continuous[n][1] for n in self.names], float) - self.low
        self.span[self.span <= 0] = 1.0
        self.cat_values = list(space.categorical[1]) if space.categorical else None
        use_bandit = self.cat_values is not None and cat_exp in ("exp3_dep", "cocabo")
        self.bandit = TVExp3M(len(self.cat_values), population, n_rounds) if use_bandit else None
        self.rng = np.random.default_rng(seed)
        self.rows = {k: np.zeros(0) for k in ("t", "r", "y", "c")}
        self.rows["h"] = np.zeros((0, len(self.names)))
        self._new_arms, self._new_y = [], []
        self.last_fit: dict = {}

    # -- data ------------------------------------------------------------------------------------
    def observe(self, t: float, reward_before: float, reward_after: float, dt: float,
                config: dict) -> None:
        """Add the row ([t, R_before, hps, cat], y = ΔR/Δt) of one agent's interval, keyed by its
        start (t, R_before): the context a candidate is scored at is where its interval starts. Rows with
        Δt <= 0 or a non-finite value are dropped; only the latest max_rows are kept."""
        if not dt > 0 or not np.all(np.isfinite([t, reward_before, reward_after, dt])):
            return
        y = (reward_after - reward_before) / dt
        cat = self._cat_index(config)
        new = {"t": [t], "r": [reward_before], "y": [y], "c": [cat], "h": [self._hps(config)]}
        for key, value in new.items():
            grown = np.concatenate([self.rows[key], np.asarray(value, float)])
            self.rows[key] = grown[-self.max_rows:]
        if self.bandit is not None:
            self._new_arms.append(cat)
            self._new_y.append(y)

    def _hps(self, config: dict) -> np.ndarray:
        """Continuous hyperparameters normalised by their bounds (clipped into [0, 1])."""
        raw = np.array([float(config[n]) for n in self.names])
        return np.clip((raw - self.low) / self.span, 0.0, 1.0)

    def _cat_index(self, config: dict) -> int:
        if self.cat_values is None:
            return -1
        name, value = self.space.categorical[0], config[self.space.categorical[0]]
        if value not in self.cat_values:
            raise ValueError(f"{name} = {value!r} is not one of {self.cat_values}")
        return self.cat_values.index(value)

    # -- the categorical bandit --------------------------------------------------------------------
    def _update_bandit(self) -> None:
        """Reward of a row = its y min-max normalised to [0, 1] over all stored rows."""
        if not self._new_arms:
            return
        new_y = np.array(self._new_y)
        all_y = np.concatenate([self.rows["y"], new_y])
        lo, hi = all_y.min(), all_y.max()
        rewards = (new_y - lo) / (hi - lo) if hi > lo else np.full(len(new_y), 0.5)
        self.bandit.update(np.array(self._new_arms, int), rewards)
        self._new_arms, self._new_y = [], []

    def category_probabilities(self) -> dict:
        """TV.EXP3.M's current single-play distribution over the categorical values."""
        if self.bandit is None:
            return {}
        self._update_bandit()
        return dict(zip(self.cat_values, map(float, self.bandit.probabilities())))

    def _choose_category(self, parent_config: dict):
        if self.cat_values is None:
            return None
        if self.bandit is None:                                     # PB2-Rand
            if self.rng.random() < RESAMPLE_PROB:
                return int(self.rng.integers(len(self.cat_values)))
            return self._cat_index(parent_config)
        self._update_bandit()                                       # the rows since last round
        return self.bandit.choose(self.rng)

    # -- selection -------------------------------------------------------------------------------
    def select(self, parent_t: float, parent_reward: float, parent_config: dict,
               pending: list[dict]) -> dict:
        """A new config for an agent that copied `parent`; `pending` are the configs of the agents
        that keep running this round (GP-BUCB, see the module docstring). (parent_t,
        parent_reward), the parent's current steps and return, is the fixed context, in the units
        of observe()'s (t, reward_before); the reference uses the parent's latest row's context."""
        with single_threaded_blas():
            return self._select(parent_t, parent_reward, parent_config, pending)

    def _select(self, parent_t, parent_reward, parent_config, pending) -> dict:
        cat = self._choose_category(parent_config)
        if len(self.rows["y"]) == 0:                                # first round: uniform
            config = {**parent_config, **self.space.sample(self.rng)}
            return self._with_category(config, cat) if self.bandit is not None else config
        keep = self.rows["c"] == cat if self.cat_exp == "exp3_dep" and cat is not None \
            else np.ones(len(self.rows["y"]), bool)
        if not keep.any():                                          # PB2-Mult: no rows of cat
            return self._with_category(self.space.clip(dict(parent_config)), cat)
        z = self._fit_and_maximise(keep, parent_t, parent_reward, cat, pending)
        config = dict(parent_config)
        values = self.low + z * self.span                          # back from the [0, 1] box
        config.update({name: float(v) for name, v in zip(self.names, values)})
        return self._with_category(self.space.clip(config), cat)

    def _with_category(self, config: dict, cat) -> dict:
        if cat is not None:
            config[self.space.categorical[0]] = self.cat_values[cat]
        return config

    def _fit_and_maximise(self, keep, parent_t, parent_reward, cat, pending) -> np.ndarray:
        """Normalise the kept rows and the context, add the pending rows, run pb2_select_config."""
        rows = {k: v[keep] for k, v in self.rows.items()}
        t, t0 = minmax_with(rows["t"], parent_t)
        r, r0 = minmax_with(rows["r"], parent_reward)
        cocabo = self.cat_exp == "cocabo" and cat is not None
        cats = [rows["c"][:, None]] if cocabo else []
        X = np.column_stack([t, r, rows["h"]] + cats)
        context = np.array([t0, r0] + ([cat] if cocabo else []), float)
        P = np.array([np.concatenate([[t0, r0], self._hps(c)] +      # every pending config, as the
                                     ([[self._cat_index(c)]] if cocabo else [])) for c in pending])  # reference
        z, gp = pb2_select_config(X, rows["y"], context, P.reshape(len(pending), X.shape[1]),
                                  int(cocabo), self.rng)
        self.last_fit = gp.named_params()
        return z

    # -- checkpoints ------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"cat_exp": self.cat_exp, "rows": {k: v.copy() for k, v in self.rows.items()},
                "rng": self.rng.bit_generator.state,
                "bandit": self.bandit.state_dict() if self.bandit is not None else None,
                "new_arms": np.array(self._new_arms, int), "new_y": np.array(self._new_y, float)}

    def load_state_dict(self, state: dict) -> None:
        if state["cat_exp"] != self.cat_exp:
            raise UsageError(f"checkpoint was made with cat_exp {state['cat_exp']!r}, "
                             f"not {self.cat_exp!r}")
        self.rows = {k: np.array(v, float) for k, v in state["rows"].items()}
        self.rng.bit_generator.state = state["rng"]
        if self.bandit is not None:
            if "plays" not in state["bandit"]:
                raise UsageError("this checkpoint's EXP3 bandit predates its batch of B plays (older code): "
                                 "start the run afresh")
            self.bandit.load_state_dict(state["bandit"])
        self._new_arms = [int(a) for a in state["new_arms"]]
        self._new_y = [float(v) for v in state["new_y"]]
