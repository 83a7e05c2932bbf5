"""PB2 and PBT as an ask/tell scheduler for any training loop.

The scheduler holds only numbers (configs, times, scores, the GP's data and random streams); it
never touches the user's models. A round, for a population of B members:

    configs = scheduler.initial_configs()             # ask: B configs, uniform in the bounds
    ... every member trains with its config for perturbation_interval time units ...
    decisions = scheduler.report(times, scores, configs)   # tell: B times, B scores, B configs
    for i, d in enumerate(decisions):                 # Decision(copy_from, config) per member
        if d.copy_from is not None:                   # exploit: copy member d.copy_from's
            copy weights (and optimizer state) of member d.copy_from into member i
        configs[i] = d.config                         # explore: the new config (or the old one)

The maths is this folder's, unchanged (train.py runs the same functions):
  exploit   pbt.truncation_selection: the bottom quantile_fraction of members (ranked by score)
            copy a random member of the top quantile_fraction (PBT, Jaderberg et al. 2017, Sec. 3,
            "truncation selection");
  explore   PBT: pbt.pbt_explore, each continuous hyperparameter x0.8 or x1.2, the categorical
            resampled with probability 0.5 (Jaderberg et al. 2017, Sec. 3, "perturb");
            PB2: pb2.PB2Explorer, a time-varying GP-UCB bandit over the data
            ([t, R_before, config], ΔR/Δt) of every member's intervals, batch-selected with
            GP-BUCB (Parker-Holder et al. 2020, Sec. 3.2 and Alg. 1-2); the categorical
            hyperparameter by cat_exp: "random" (PB2-Rand), "exp3_dep" (PB2-Mult), "cocabo"
            (PB2-Mix) (Parker-Holder et al. 2021, Sec. 3).

Random numbers are drawn exactly as `python pb2_procgen/train.py --seed S` draws them (three
streams spawned from the seed: initial configs, exploit + PBT perturbation, PB2's explorer), so
the toy driven through this scheduler gives train.py's configs and scores (tests/test_use_pb2.py).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pb2_procgen import pbt
from pb2_procgen.pb2 import CAT_EXPLORATIONS, PB2Explorer
from pb2_procgen.search_space import SearchSpace

__all__ = ["PB2", "PBT", "Decision"]


@dataclass(frozen=True)
class Decision:
    """What one member does next. copy_from: None (continue with its own weights) or the index
    of the member whose weights and optimizer state it copies first; config: the hyperparameters
    it trains with from now on (its current config when copy_from is None). A copy_from member
    never receives a copy itself in the same round (for B >= 2), so the order of applying the
    decisions does not matter."""
    copy_from: int | None
    config: dict


class _PopulationScheduler:
    """The ask/tell loop PBT and PB2 share; subclasses choose the explore step (`search`)."""

    search = ""

    def __init__(self, hyperparam_bounds: dict, population_size: int, categorical: dict | None = None,
                 perturbation_interval: float = 1.0, quantile_fraction: float = 0.25,
                 seed: int = 0, mode: str = "max"):
        self.space = _search_space(hyperparam_bounds, categorical)
        self.population_size = _positive_int("population_size", population_size)
        self.perturbation_interval = _positive_number("perturbation_interval", perturbation_interval)
        self.quantile_fraction = _quantile(quantile_fraction)
        if mode not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
        self.mode = mode
        self.seed = _seed(seed)
        # train.py's seed_streams: initial configs, exploit + PBT perturbation, PB2's explorer
        self._initial, selection, self._explore = np.random.SeedSequence(self.seed).spawn(3)
        self.rng = np.random.default_rng(selection)
        self.round = 0                                           # perturbation steps so far
        self._last_times = [0.0] * self.population_size          # start of each member's interval
        self._last_scores: list = [None] * self.population_size   # score there (None: no row yet)

    # -- ask -------------------------------------------------------------------------------------
    def initial_configs(self) -> list[dict]:
        """B configs drawn uniformly within the bounds (the categorical uniformly among its
        values); the same list on every call."""
        sampler = np.random.default_rng(self._initial)
        return [self.space.sample(sampler) for _ in range(self.population_size)]

    # -- tell ------------------------------------------------------------------------------------
    def report(self, times, scores, configs) -> list[Decision]:
        """One report per member: times (B,) its training progress since the start (steps,
        epochs or seconds: the unit of perturbation_interval), scores (B,) its current score
        (higher is better with mode="max"; a non-finite score ranks last), configs (B dicts) the
        hyperparameters it trained with since its last decision. Returns B Decisions. Until every
        member has advanced perturbation_interval since the last perturbation step, every
        member continues and nothing is recorded."""
        times, scores, configs = self._check_report(times, scores, configs)
        if any(t - last < self.perturbation_interval for t, last in zip(times, self._last_times)):
            return [Decision(None, dict(c)) for c in configs]
        self._observe(times, scores, configs)
        return self._exploit_and_explore(times, scores, configs)

    def _observe(self, times, scores, configs) -> None:
        """PB2's data: one row per member for the interval that just ended (none for PBT)."""
        for i in range(self.population_size):
            before = self._last_scores[i]
            if before is not None and np.isfinite(scores[i]) and np.isfinite(before):
                self._record(self._last_times[i], before, scores[i],
                             times[i] - self._last_times[i], configs[i])

    def _record(self, t, reward_before, reward_after, dt, config) -> None:
        pass

    def _exploit_and_explore(self, times, scores, configs) -> list[Decision]:
        """Truncation selection and the explore step; each bottom member's interval restarts at
        its parent's (time, score), as its copied weights do."""
        ranked = [s if np.isfinite(s) else -np.inf for s in scores]
        bottom, parents = pbt.truncation_selection(ranked, self.rng, self.quantile_fraction)
        new_configs = pbt.explore_configs(configs, scores, times, bottom, parents, self.space,
                                          self.search, self._explorer(), self.rng)
        self._last_times, self._last_scores = list(times), list(scores)
        copy_from: list = [None] * self.population_size
        for member, parent in zip(bottom, parents):
            copy_from[member] = parent
            self._last_times[member], self._last_scores[member] = times[parent], scores[parent]
        self.round += 1
        return [Decision(j, dict(c)) for j, c in zip(copy_from, new_configs)]

    def _explorer(self):
        return None

    def _check_report(self, times, scores, configs):
        b = self.population_size
        for name, values in (("times", times), ("scores", scores), ("configs", configs)):
            if len(values) != b:
                raise ValueError(f"{name}: expected one per member ({b}), got {len(values)}")
        times = [float(t) for t in times]
        if not all(np.isfinite(times)):
            raise ValueError(f"times must be finite numbers, got {times}")
        scores = [float(s) if self.mode == "max" else -float(s) for s in scores]
        missing = [n for c in configs for n in self.space.names if n not in c]
        if missing:
            raise ValueError(f"configs: every config needs {self.space.names}; missing {missing[0]!r}")
        return times, scores, [dict(c) for c in configs]

    # -- resume ----------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Everything report() depends on, as plain Python / numpy values (picklable, torch.save
        with weights_only=False, or json after converting the arrays)."""
        return {"search": self.search, "round": self.round, "last_times": list(self._last_times),
                "last_scores": list(self._last_scores), "rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict) -> None:
        """Continue from state_dict()'s values (of a scheduler built with the same arguments)."""
        self._check_state(state)
        self.round = int(state["round"])
        self._last_times = [float(t) for t in state["last_times"]]
        self._last_scores = [None if s is None else float(s) for s in state["last_scores"]]
        self.rng.bit_generator.state = state["rng"]

    def _check_state(self, state: dict) -> None:
        if state["search"] != self.search:
            raise ValueError(f"state: made by a {state['search']} scheduler, not {self.search}")
        if len(state["last_times"]) != self.population_size:
            raise ValueError(f"state: made for {len(state['last_times'])} members, "
                             f"not population_size {self.population_size}")


class PBT(_PopulationScheduler):
    """Population Based Training (Jaderberg et al. 2017) as an ask/tell scheduler.

    hyperparam_bounds: {name: [low, high]} continuous hyperparameters (finite, low <= high);
    categorical: {name: [values...]}, at most one; population_size: B; perturbation_interval:
    time units (of report's `times`) between exploit/explore steps; quantile_fraction in (0, 0.5]:
    the bottom max(int(q B), 1) members copy one of the top as many; seed: int >= 0;
    mode: "max" or "min" (scores are losses).
    """

    search = "PBT"


class PB2(_PopulationScheduler):
    """Population-Based Bandits (Parker-Holder et al. 2020, 2021) as an ask/tell scheduler.

    The arguments of PBT, plus cat_exp, how the categorical hyperparameter is chosen: "random"
    (PB2-Rand), "exp3_dep" (PB2-Mult), "cocabo" (PB2-Mix); and n_rounds, the expected number of
    perturbation steps (the horizon of the EXP3 bandit of PB2-Mult / PB2-Mix).
    """

    search = "PB2"

    def __init__(self, hyperparam_bounds: dict, population_size: int, categorical: dict | None = None,
                 perturbation_interval: float = 1.0, quantile_fraction: float = 0.25,
                 seed: int = 0, mode: str = "max", cat_exp: str = "random", n_rounds: int = 50):
        if cat_exp not in CAT_EXPLORATIONS:
            raise ValueError(f"cat_exp must be one of {', '.join(CAT_EXPLORATIONS)}, got {cat_exp!r}")
        super().__init__(hyperparam_bounds, population_size, categorical, perturbation_interval,
                         quantile_fraction, seed, mode)
        self.cat_exp = cat_exp
        self.explorer = PB2Explorer(self.space, cat_exp, seed=self._explore,
                                    population=self.population_size,
                                    n_rounds=_positive_int("n_rounds", n_rounds))

    def _record(self, t, reward_before, reward_after, dt, config) -> None:
        self.explorer.observe(t, reward_before, reward_after, dt, config)

    def _explorer(self):
        return self.explorer

    def state_dict(self) -> dict:
        return {**super().state_dict(), "explorer": self.explorer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self._check_state(state)
        if state["explorer"]["cat_exp"] != self.cat_exp:
            raise ValueError(f"state: made with another cat_exp, not {self.cat_exp!r}")
        super().load_state_dict(state)
        self.explorer.load_state_dict(state["explorer"])


# -- argument checks: one ValueError naming the argument ---------------------------------------------
def _search_space(hyperparam_bounds, categorical) -> SearchSpace:
    if not isinstance(hyperparam_bounds, dict) or not hyperparam_bounds:
        raise ValueError("hyperparam_bounds must be a non-empty dict {name: [low, high]}")
    continuous = {}
    for name, bounds in hyperparam_bounds.items():
        try:
            low, high = (float(b) for b in bounds)
        except (TypeError, ValueError):
            raise ValueError(f"hyperparam_bounds[{name!r}] must be [low, high], got {bounds!r}") from None
        if not (np.isfinite(low) and np.isfinite(high)):
            raise ValueError(f"hyperparam_bounds[{name!r}] must be finite, got {bounds!r}")
        if low > high:
            raise ValueError(f"hyperparam_bounds[{name!r}]: low {low} > high {high}")
        continuous[name] = (low, high)
    return SearchSpace(continuous, _categorical(categorical, continuous))


def _categorical(categorical, continuous):
    if not categorical:
        return None
    if not isinstance(categorical, dict) or len(categorical) != 1:
        raise ValueError(f"categorical must be one {{name: [values...]}}, got {categorical!r}")
    (name, values), = categorical.items()
    if name in continuous:
        raise ValueError(f"categorical: {name!r} is also in hyperparam_bounds")
    if isinstance(values, (str, bytes)) or len(list(values)) == 0:
        raise ValueError(f"categorical[{name!r}] must be a non-empty list of values, got {values!r}")
    return name, list(values)


def _positive_int(name, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


def _positive_number(name, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) \
            or not np.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def _quantile(value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) \
            or not 0 < value <= 0.5:
        raise ValueError(f"quantile_fraction must be in (0, 0.5], got {value!r}")
    return float(value)


def _seed(value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"seed must be an integer >= 0, got {value!r}")
    return int(value)
