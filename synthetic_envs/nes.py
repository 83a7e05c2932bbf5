"""The paper's outer loop (Sec. 3, Algorithm 1): a natural evolution strategy over the proxy's
parameters ψ (an SE's or an RN's nn.Linear weights and biases).

One iteration, in the paper's order:
  1. every worker i draws ε_i = σ·N(0, I) (regenerated from a seed, never shipped),
  2. trains fresh agents on the proxy at ψ (to score the current proxy), ψ + ε_i and ψ − ε_i,
     and scores each by its agent's real-env performance (`inner.fitness`),
  3. mirrored sampling keeps the better of ±ε_i (the reference) — or the standard antithetic
     estimator keeps both,
  4. the scores become weights (`score_transform`, eight variants),
  5. ψ ← (1 − weight decay)·ψ + α Σ_i w_i ε_i (`nes_update`; no 1/(nσ) factor, as in the reference).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from common.cli import Diverged
from common.runs import require_finite
from synthetic_envs import inner, population
from synthetic_envs.envs import env_spec, make_real_env
from synthetic_envs.proxies import build_proxy, get_flat, set_flat

ESTIMATORS = ("mirrored", "antithetic")
SCORE_TRANSFORMS = {
    0: "linear min-max to [0, 1]",
    1: "rank, scaled to [0, 1]",
    2: "NES fitness shaping (Wierstra et al. 2014), zero mean",
    3: "NES fitness shaping without the -1/n (the paper's tuned choice)",
    4: "single best",
    5: "single best, if it beats the current proxy",
    6: "all better than the current proxy, weighted by the excess, normalised by the max",
    7: "all better than the current proxy, weighted by the excess, normalised by the sum",
}


def seed_for(*keys: int) -> int:
    """A 32-bit seed from integer keys (run seed, iteration, worker, ...)."""
    return int(np.random.SeedSequence([int(k) for k in keys]).generate_state(1)[0])


def noise(noise_seed: int, dim: int, sigma: float) -> np.ndarray:
    """ε = σ·N(0, I), regenerated from its seed wherever it is needed."""
    return sigma * np.random.default_rng(noise_seed).standard_normal(dim)


# ---------------------------------------------------------------------------------------------
# Step 2: scoring one proxy by the agent trained on it
# ---------------------------------------------------------------------------------------------

def score_proxy(setup: dict, psi: np.ndarray, seed: int) -> tuple[float, inner.InnerResult]:
    """Train one fresh agent on the proxy with parameters ψ and score it on the real env."""
    torch.manual_seed(seed)  # the proxy's PReLU slopes (not perturbed) keep their init value
    spec = env_spec(setup["env"])
    threshold = nes_threshold(setup)
    result, _ = inner.train_fresh_agent(
        setup["env"], setup["agent"], setup["agent_hp"], seed, setup["vary_hp"], setup["inner"],
        make_proxy=lambda real_env: set_flat(build_proxy(setup["kind"], real_env, setup["proxy"],
                                                         setup["mode"], spec.info_dim), psi),
        kind=setup["kind"], zero_terminal_potential=setup["zero_terminal_potential"], threshold=threshold)
    return inner.fitness(setup["kind"], result, threshold, setup["unsolved_weight"],
                         setup.get("rn_score", "steps")), result


def nes_threshold(setup: dict) -> float:
    """The return NES's inner agents aim at: the env's threshold, or the run's `nes_threshold`.
    The reference's own Cliff RN runs set it out of reach (10000, "AUC"): no agent stops
    early, and the RN score becomes minus the real steps of all its training episodes plus
    `unsolved_weight` times its final test return (an area under the learning curve)."""
    value = setup.get("nes_threshold")
    return env_spec(setup["env"]).threshold if value is None else float(value)


def score_meaning(setup: dict) -> str:
    """What a run's proxy scores are, in words (summary.json, the console, plot labels)."""
    if setup["kind"] == "se":
        return "mean real test return of agents trained on the SE"
    if setup.get("rn_score", "steps") == "final_return":
        return f"final real test return (agents stop once solved at {nes_threshold(setup):g})"
    return (f"minus real steps to solve, minus {setup['unsolved_weight']:g} per return point short of "
            f"{nes_threshold(setup):g}")


def score_many(setup: dict, psi: np.ndarray, seeds: list[int]) -> tuple[float, int, int]:
    """Agents on one proxy, one per seed: (combined score, real steps, of which test steps)."""
    scores, real, test = [], 0, 0
    for seed in seeds:
        score, result = score_proxy(setup, psi, seed)
        scores.append(score)
        real += result.real_steps
        test += result.real_test_steps
    return _combined(setup, scores), real, test


def _combined(setup: dict, scores: list[float]) -> float:
    """The agents' scores of one proxy as one (grad_eval_type: mean or min)."""
    return float(np.mean(scores)) if setup["grad_eval_type"] == "mean" else float(np.min(scores))


@dataclass
class WorkerTask:
    setup: dict
    psi: np.ndarray
    noise_seed: int
    agent_seeds: tuple[list[int], list[int], list[int]]  # for ψ, ψ + ε, ψ − ε


@dataclass
class WorkerResult:
    score_orig: float   # the current proxy ψ
    score_add: float    # ψ + ε
    score_sub: float    # ψ − ε
    real_steps: int
    test_steps: int


def evaluate_worker(task: WorkerTask) -> WorkerResult:
    """Steps 1-2 for one worker (runs in a worker process)."""
    eps = noise(task.noise_seed, len(task.psi), task.setup["sigma"])
    seeds_orig, seeds_add, seeds_sub = task.agent_seeds
    orig = score_many(task.setup, task.psi, seeds_orig)
    add = score_many(task.setup, task.psi + eps, seeds_add)
    sub = score_many(task.setup, task.psi - eps, seeds_sub)
    return WorkerResult(orig[0], add[0], sub[0], orig[1] + add[1] + sub[1], orig[2] + add[2] + sub[2])


def evaluate_workers(tasks: list[WorkerTask]) -> list[WorkerResult]:
    """Steps 1-2 for several workers at once: every agent of every task trains in one batched
    population (population.py), with the agents, seeds and scores evaluate_worker gives."""
    setup = tasks[0].setup
    jobs, owners = [], []
    for t, task in enumerate(tasks):
        eps = noise(task.noise_seed, len(task.psi), setup["sigma"])
        for which, psi in enumerate((task.psi, task.psi + eps, task.psi - eps)):
            for seed in task.agent_seeds[which]:
                jobs.append((psi, seed))
                owners.append((t, which))
    threshold = nes_threshold(setup)
    scores = [([], [], []) for _ in tasks]
    real, test = [0] * len(tasks), [0] * len(tasks)
    for (t, which), result in zip(owners, population.train_on_ses(setup, jobs)):
        scores[t][which].append(inner.fitness(setup["kind"], result, threshold, setup["unsolved_weight"],
                                              setup.get("rn_score", "steps")))
        real[t] += result.real_steps
        test[t] += result.real_test_steps
    return [WorkerResult(*(_combined(setup, s) for s in scores[t]), real[t], test[t]) for t in range(len(tasks))]


def score_workers(tasks: list[WorkerTask], setup: dict, pool) -> list[WorkerResult]:
    """Step 2 for all workers: one task per pool job, or, where the inner agents can train as a
    population, the tasks split into one population per pool worker."""
    if not population.supports(setup):
        return pool.map(evaluate_worker, tasks)
    groups = np.array_split(np.arange(len(tasks)), min(len(tasks), getattr(pool, "workers", 1)))
    done = pool.map(evaluate_workers, [[tasks[i] for i in group] for group in groups])
    return [result for group in done for result in group]


# ---------------------------------------------------------------------------------------------
# Steps 3-5: mirrored sampling, score transform, update
# ---------------------------------------------------------------------------------------------

def mirrored_choice(score_add: float, score_sub: float) -> tuple[float, int]:
    """The reference's mirrored sampling: keep the better sign (ties keep +ε)."""
    return (score_sub, -1) if score_sub > score_add else (score_add, 1)


def score_transform(scores, scores_orig, kind: int) -> np.ndarray:
    """Worker scores -> update weights (GTN_master.score_transform in the reference).
    `scores_orig` are the workers' scores of the current proxy ψ (transforms 5-7 compare against
    their mean)."""
    if kind not in SCORE_TRANSFORMS:
        raise ValueError(f"unknown score transform {kind}; allowed: {sorted(SCORE_TRANSFORMS)}")
    scores = np.asarray(scores, dtype=np.float64)
    n = len(scores)
    if kind == 0:
        return (scores - scores.min()) / (scores.max() - scores.min() + 1e-9)
    if kind == 1:
        if n == 1:
            return np.ones(1)
        weights = np.empty(n)
        weights[np.argsort(scores, kind="stable")] = np.arange(n) / (n - 1)
        return weights
    if kind in (2, 3):
        ranks = np.empty(n)
        ranks[np.argsort(-scores, kind="stable")] = np.arange(1, n + 1)  # best gets rank 1
        weights = np.maximum(0.0, np.log(n / 2 + 1) - np.log(ranks))
        weights /= weights.sum()
        if kind == 2:
            weights -= 1.0 / n
        top = weights.max()
        return weights / top if top > 0 else weights  # zero-mean with one worker: no step
    if kind == 4:
        return np.eye(n)[np.argmax(scores)]
    baseline = float(np.mean(scores_orig))
    better = scores > baseline + 1e-6  # 1e-6 against rounding, as the reference
    if not better.any():
        return np.zeros(n)
    if kind == 5:
        return np.eye(n)[np.argmax(scores)]
    weights = better * (scores - baseline) / (scores.max() - baseline + 1e-9)
    return weights / (weights.max() if kind == 6 else weights.sum())


def worst_for_non_finite(scores, scores_orig) -> tuple[list[float], list[float], int]:
    """A diverged inner agent (NaN / inf score) ranks below every finite score of the
    iteration: its score becomes (lowest finite score) − 1, so no transform can move ψ towards
    it. Returns both lists and how many scores were replaced."""
    finite = [x for x in list(scores) + list(scores_orig) if np.isfinite(x)]
    if not finite:
        raise Diverged("every inner agent's score is non-finite")
    worst = min(finite) - 1.0

    def fixed(values):
        return [float(x) if np.isfinite(x) else worst for x in values]
    replaced = sum(not np.isfinite(x) for x in list(scores) + list(scores_orig))
    return fixed(scores), fixed(scores_orig), replaced


def nes_update(psi: np.ndarray, noises: list[np.ndarray], weights, step_size: float,
               weight_decay: float = 0.0) -> np.ndarray:
    """ψ ← (1 − λ)ψ + α Σ_i w_i ε_i (the reference's update: no 1/(nσ) normalisation)."""
    step = sum(w * eps for w, eps in zip(weights, noises))
    return psi * (1.0 - weight_decay) + step_size * step


# ---------------------------------------------------------------------------------------------
# One NES iteration, and the state that --resume restores
# ---------------------------------------------------------------------------------------------

@dataclass
class NESState:
    psi: np.ndarray
    iteration: int = 0
    env_steps: int = 0
    test_steps: int = 0
    best_score: float = -float("inf")
    best_psi: np.ndarray | None = None
    last_score: float = float("nan")  # the current proxy's score in the last iteration
    solved: bool = False
    non_finite_scores: int = 0         # diverged inner agents, ranked worst (worst_for_non_finite)


@dataclass
class IterationStats:
    iteration: int
    proxy_score: float        # mean score of the current proxy ψ over the workers
    best_worker_score: float
    mean_worker_score: float
    real_steps: int
    test_steps: int
    weights: np.ndarray


def initial_psi(setup: dict, seed: int) -> np.ndarray:
    """ψ_0: the proxy's default PyTorch initialisation under the run's seed."""
    torch.manual_seed(seed)
    real_env = make_real_env(setup["env"], seed)
    return get_flat(build_proxy(setup["kind"], real_env, setup["proxy"], setup["mode"],
                                env_spec(setup["env"]).info_dim))


def worker_tasks(state: NESState, setup: dict, seed: int) -> list[WorkerTask]:
    tasks = []
    k = setup["num_grad_evals"]
    for worker in range(setup["num_workers"]):
        # the current proxy by one agent, each of ψ ± ε by num_grad_evals (GTN_worker.run)
        seeds = tuple([seed_for(seed, state.iteration, worker, which, j) % 2**31 for j in range(k if which else 1)]
                      for which in range(3))
        tasks.append(WorkerTask(setup, state.psi, seed_for(seed, state.iteration, worker, 99), seeds))
    return tasks


def nes_step(state: NESState, setup: dict, seed: int, pool) -> IterationStats:
    """One outer iteration; updates `state` in place (ψ, counters, best proxy)."""
    tasks = worker_tasks(state, setup, seed)
    results = score_workers(tasks, setup, pool)
    noises = [noise(t.noise_seed, len(state.psi), setup["sigma"]) for t in tasks]
    perturbed, scores_orig, replaced = worst_for_non_finite(
        [r.score_add for r in results] + [r.score_sub for r in results],
        [r.score_orig for r in results])
    state.non_finite_scores += replaced
    n = len(results)
    score_add, score_sub = perturbed[:n], perturbed[n:]
    proxy_score = float(np.mean(scores_orig))
    if setup["estimator"] == "mirrored":
        chosen = [mirrored_choice(add, sub) for add, sub in zip(score_add, score_sub)]
        scores = [score for score, _ in chosen]
        weights = score_transform(scores, scores_orig, setup["score_transform"])
        directions = [sign * eps for (_, sign), eps in zip(chosen, noises)]
    else:  # antithetic: transform all 2n scores together; ε_i gets w(+ε_i) − w(−ε_i)
        scores = score_add + score_sub
        both = score_transform(scores, scores_orig, setup["score_transform"])
        weights = both[:n] - both[n:]
        directions = noises
    stats = IterationStats(state.iteration, proxy_score, float(np.max(scores)), float(np.mean(scores)),
                           sum(r.real_steps for r in results), sum(r.test_steps for r in results), weights)
    state.last_score = proxy_score
    if proxy_score > state.best_score:  # the proxy that was just scored is the best so far
        state.best_score, state.best_psi = proxy_score, state.psi.copy()
    state.solved = setup["kind"] == "se" and proxy_score >= env_spec(setup["env"]).threshold
    state.env_steps += stats.real_steps
    state.test_steps += stats.test_steps
    if not (state.solved and setup["quit_when_solved"]):
        psi = nes_update(state.psi, directions, weights, setup["step_size"], setup["weight_decay"])
        require_finite("the proxy's parameters ψ after the NES update", psi, state.env_steps)
        state.psi = psi
    state.iteration += 1
    return stats
