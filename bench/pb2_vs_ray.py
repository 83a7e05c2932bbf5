"""Our PB2 and PBT (pb2_procgen/) against Ray Tune's PB2 and PopulationBasedTraining schedulers on
the PBT toy problem (Jaderberg et al. 2017, Sec. 4.1; pb2_procgen/toy.py), with the same
population, perturbation interval and budget, over paired seeds.

    python bench/pb2_vs_ray.py --quick          # 4 seeds, about 2 min on 2 cores
    python bench/pb2_vs_ray.py                  # full mode: 20 seeds, about 10 min
    python bench/pb2_vs_ray.py --seeds 10       # any number of seeds

What is counted, per method (PB2, PBT) and side (ours, Ray):
- best final Q: max over the 4 agents / trials of Q(θ) = 1.2 − ‖θ‖² after 40 toy steps (what
  train.py writes as `best_return`; Ray: the last reported metric "Q" of each trial), mean ± s.e.
  over the seeds. The optimum after 40 steps is ≈ 0.878 (h = (1, 1) throughout).
- scheduler overhead per perturbation round, ms: the time the scheduler itself spends in one
  exploit/explore round, training excluded, summed over a run and divided by its rounds.
  Ours: pbt.truncation_selection + pbt.explore_round (exploit + explore) + PB2Explorer.observe
  (PB2's data rows; Ray does the same bookkeeping inside on_trial_result), timed by wrapping the
  module functions train.py calls. Ray: everything in the scheduler's on_trial_result (data row,
  quantiles, checkpoint-or-exploit, _exploit with the explore and its default log_config
  writes, pausing), timed in a subclass, MINUS the time on_trial_result blocks in
  _FutureTrainingResult.resolve() waiting for a trial actor to finish saving its checkpoint
  (that wait is the actor's, not the scheduler's; reported apart as `ray_checkpoint_wait_ms`).
  Also reported: the explore step alone (ours: PB2Explorer.select / pbt_explore; Ray:
  _get_new_config), and Ray's other scheduler callbacks (choose_trial_to_run, on_trial_add,
  on_trial_complete) per round.
- wall per run, s: ours, the train.py main() call (it writes config, metrics.csv, a checkpoint per
  round and summary.json, as users get); Ray, Tuner.fit() (ray.init excluded, reported once as
  `ray_init_s`).

The toy run (pb2_procgen/train.py --env toy --batchsize 4 --no-plots, all else default):
population 4, t_ready 4 toy steps, max_budget 40 toy steps per agent -> 10 segments and 9
exploit/explore rounds; h ∈ [0, 1]², initial h drawn uniformly by toy_space().sample from
the seed's initial-config stream (train.seed_streams); θ₀ = (0.9, 0.9); quantile 0.25 (1 agent replaced per round by a
copy of the best); metric = the segment's train return Q. Ray is configured identically:
- A class Trainable wrapping pb2_procgen.toy.ToyAgent (no re-implementation): step() =
  ToyAgent.train_segment(t_ready), reporting Q and agent_steps; save/load_checkpoint copy θ and
  agent_steps (so exploit copies θ). reuse_actors=True (as Ray recommends for PBT; without it
  synch mode restarts every actor every round, ~4x slower here): reset_config rebuilds the agent
  from the new config, since a reused actor may have run another trial, and Tune then restores
  the trial's checkpoint if it has one.
- time_attr = "agent_steps", perturbation_interval = 4 (= our t_ready, in toy steps; PB2's
  y = ΔQ/Δt is then per toy step like ours), stop at agent_steps >= 40, quantile_fraction 0.25
  (ceil(4 × 0.25) = 1 trial), synch=True (our loop is synchronous), metric "Q", mode "max".
- The 4 initial h are OUR draws for that seed, passed in as param_space (grid_search over the
  member index + sample_from), so both sides start from the same population.
- Bounds: PB2 hyperparam_bounds {h0: [0, 1], h1: [0, 1]}. PBT hyperparam_mutations
  tune.uniform(0, 1) with resample_probability=0 (ours never resamples a continuous value) and
  the default perturbation factors (1.2, 0.8) (ours: 0.8 / 1.2); Ray's PBT does not clip a
  perturbed value into its domain, so a custom_explore_fn clips h into [0, 1] as ours does
  (h > 1 would step past what the toy allows and beat the optimum).
- Seeds: before each Tuner.fit the driver seeds python `random` (PBT's choice of parent and
  factor) and numpy's global generator (PB2's acquisition starts) with the seed. Ray's own
  machinery may draw from them too, so a seed is reproducible only as far as Ray's event order is.
- ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False) once per Ray child; every
  trial asks for 0.5 CPU so the whole population runs at once (as our population does, serially);
  Tune's output goes to a temporary storage_path with verbose=0 and its default loggers.

Differences Ray cannot be configured away from (they are the libraries' own algorithms):
- Ray's PB2 does not explore in the first round: its data rows need two results of a trial with
  the same h, so at t = 4 the replaced trial just copies the parent's h. Ours draws h uniformly in
  that round (no GP data yet). From round 2 both fit a time-varying GP on [t, R_before, h] ->
  ΔR/Δt and maximise UCB (Ray: scikit-learn GP and 10 uniform L-BFGS-B starts; ours: own GP with
  screened starts, see pb2_procgen/pb2.py).
- Ray's synch mode pauses every trial at each perturbation time and restarts it (checkpointing
  through its storage); our loop keeps the agents in memory. That cost is in Ray's wall time,
  not in its scheduler overhead.

Order: one child process per side and method, all seeds in it (Ray's start-up is paid once):
ours-PB2, Ray-PB2, ours-PBT, Ray-PBT. Alternating per seed would pay ray.init per seed.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import benchlib
from common.cli import ArgumentParser, UsageError, run_main

NAME = "pb2_vs_ray"
METHODS = ("PB2", "PBT")
SIDES = ("ours", "ray")
POPULATION = 4
T_READY = 4          # toy steps per segment (train.py KIND_DEFAULTS["toy"])
MAX_BUDGET = 40      # toy steps per agent
QUANTILE = 0.25
ROUNDS = MAX_BUDGET // T_READY - 1  # exploit/explore rounds: after every segment but the last
FULL_SEEDS, QUICK_SEEDS = 20, 4


# -- our side -------------------------------------------------------------------------------------
class Stopwatch:
    """Accumulated seconds of the wrapped functions, per label."""

    def __init__(self):
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}

    def wrap(self, label: str, function):
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.seconds[label] = self.seconds.get(label, 0.0) + time.perf_counter() - start
                self.calls[label] = self.calls.get(label, 0) + 1
        return timed

    def take(self) -> tuple[dict, dict]:
        seconds, calls = self.seconds, self.calls
        self.seconds, self.calls = {}, {}
        return seconds, calls


def instrument_ours(watch: Stopwatch) -> None:
    """Time the scheduler steps train.py calls through module attributes (pbt.truncation_selection,
    pbt.explore_round, and inside it pbt_explore / PB2Explorer.select; PB2Explorer.observe)."""
    from pb2_procgen import pbt
    from pb2_procgen.pb2 import PB2Explorer

    pbt.truncation_selection = watch.wrap("selection", pbt.truncation_selection)
    pbt.explore_round = watch.wrap("explore_round", pbt.explore_round)
    pbt.pbt_explore = watch.wrap("explore", pbt.pbt_explore)
    PB2Explorer.select = watch.wrap("explore", PB2Explorer.select)
    PB2Explorer.observe = watch.wrap("observe", PB2Explorer.observe)


def run_ours(method: str, seed: int, root: Path, watch: Stopwatch) -> dict:
    from pb2_procgen.train import main as train_main

    out = root / f"{method}_{seed}"
    start = time.perf_counter()
    train_main(["--env", "toy", "--search", method, "--seed", str(seed),
                "--batchsize", str(POPULATION), "--t_ready", str(T_READY),
                "--max_budget", str(MAX_BUDGET), "--set", f"quantile={QUANTILE}",
                "--no-plots", "--out-dir", str(out)])
    wall = time.perf_counter() - start
    summary = json.loads((out / "summary.json").read_text())
    seconds, calls = watch.take()
    rounds = calls.get("explore_round", 0)
    overhead = sum(seconds.get(k, 0.0) for k in ("selection", "explore_round", "observe"))
    return {"seed": seed, "best_q": summary["best_return"], "wall_s": wall, "rounds": rounds,
            "overhead_ms_per_round": 1e3 * overhead / max(rounds, 1),
            "explore_ms_per_round": 1e3 * seconds.get("explore", 0.0) / max(rounds, 1)}


def worker_ours(method: str, seeds: list[int]) -> dict:
    import torch

    torch.set_num_threads(1)
    watch = Stopwatch()
    instrument_ours(watch)
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in seeds:
            runs.append(run_ours(method, seed, Path(tmp), watch))
            progress(f"ours {method} seed {seed}: Q {runs[-1]['best_q']:.4f}, "
                     f"{runs[-1]['wall_s']:.2f} s")
    return {"runs": runs}


# -- Ray's side -----------------------------------------------------------------------------------
def initial_population(seed: int) -> list[dict]:
    """The same initial h as train.py's new_state draws for this seed."""
    from pb2_procgen.search_space import toy_space
    from pb2_procgen.train import seed_streams

    rng = np.random.default_rng(seed_streams(seed)[0])
    space = toy_space()
    return [space.sample(rng) for _ in range(POPULATION)]


def clip_to_unit_box(config: dict) -> dict:
    """custom_explore_fn for Ray's PBT: keep h in [0, 1]² as our pbt_explore does."""
    for name in ("h0", "h1"):
        config[name] = float(min(max(config[name], 0.0), 1.0))
    return config


def make_toy_trainable():
    """A class Trainable around pb2_procgen.toy.ToyAgent: one step() = one segment."""
    from ray import tune

    from pb2_procgen.toy import ToyAgent

    class ToyTrainable(tune.Trainable):
        def setup(self, config):
            self.t_ready = int(config["t_ready"])
            self.agent = ToyAgent({"h0": config["h0"], "h1": config["h1"]})

        def step(self):
            result = self.agent.train_segment(self.t_ready)
            return {"Q": result["train_return"], "agent_steps": self.agent.agent_steps}

        def save_checkpoint(self, checkpoint_dir):
            state = self.agent.state_dict()
            Path(checkpoint_dir, "toy.json").write_text(json.dumps(
                {"theta": state["theta"].tolist(), "agent_steps": state["agent_steps"]}))

        def load_checkpoint(self, checkpoint_dir):
            state = json.loads(Path(checkpoint_dir, "toy.json").read_text())
            self.agent.load_state_dict({"theta": np.array(state["theta"]),
                                        "agent_steps": state["agent_steps"]})

        def reset_config(self, new_config):
            # A reused actor may come from another trial: start afresh (θ₀, 0 steps); Tune then
            # calls load_checkpoint when the trial has one (an exploit, or a paused trial).
            self.setup(new_config)
            return True

    return ToyTrainable


def make_timed_scheduler(method: str):
    """Ray's PB2 / PopulationBasedTraining with every scheduler callback timed. The time
    on_trial_result spends waiting in _FutureTrainingResult.resolve (a trial actor still saving
    its checkpoint) is measured apart."""
    from ray.tune.schedulers import PopulationBasedTraining
    from ray.tune.schedulers import pbt as ray_pbt
    from ray.tune.schedulers.pb2 import PB2

    watch = Stopwatch()
    future = ray_pbt._FutureTrainingResult
    if not getattr(future.resolve, "_bench_timed", False):
        future.resolve = watch.wrap("checkpoint_wait", future.resolve)
        future.resolve._bench_timed = True
    base = PB2 if method == "PB2" else PopulationBasedTraining

    class Timed(base):
        def on_trial_result(self, *args, **kwargs):
            return watch.wrap("on_trial_result", super().on_trial_result)(*args, **kwargs)

        def _quantiles(self):  # called once per synchronised perturbation round
            return watch.wrap("rounds", super()._quantiles)()

        def _get_new_config(self, *args, **kwargs):
            return watch.wrap("explore", super()._get_new_config)(*args, **kwargs)

        def choose_trial_to_run(self, *args, **kwargs):
            return watch.wrap("other", super().choose_trial_to_run)(*args, **kwargs)

        def on_trial_add(self, *args, **kwargs):
            return watch.wrap("other", super().on_trial_add)(*args, **kwargs)

        def on_trial_complete(self, *args, **kwargs):
            return watch.wrap("other", super().on_trial_complete)(*args, **kwargs)

    common = dict(time_attr="agent_steps", metric="Q", mode="max",
                  perturbation_interval=T_READY, quantile_fraction=QUANTILE, synch=True)
    if method == "PB2":
        scheduler = Timed(hyperparam_bounds={"h0": [0.0, 1.0], "h1": [0.0, 1.0]}, **common)
    else:
        from ray import tune

        scheduler = Timed(hyperparam_mutations={"h0": tune.uniform(0.0, 1.0),
                                                "h1": tune.uniform(0.0, 1.0)},
                          resample_probability=0.0, custom_explore_fn=clip_to_unit_box,
                          **common)
    return scheduler, watch


def run_ray(method: str, seed: int, trainable, storage: str) -> dict:
    import random

    from ray import tune

    inits = initial_population(seed)
    param_space = {
        "member": tune.grid_search(list(range(POPULATION))),
        "h0": tune.sample_from(lambda spec: inits[spec.config["member"]]["h0"]),
        "h1": tune.sample_from(lambda spec: inits[spec.config["member"]]["h1"]),
        "t_ready": T_READY,
    }
    scheduler, watch = make_timed_scheduler(method)
    random.seed(seed)
    np.random.seed(seed)
    tuner = tune.Tuner(
        tune.with_resources(trainable, {"cpu": 0.5}),
        param_space=param_space,
        tune_config=tune.TuneConfig(scheduler=scheduler, reuse_actors=True),
        run_config=tune.RunConfig(name=f"{method}_{seed}", storage_path=storage, verbose=0,
                                  stop={"agent_steps": MAX_BUDGET}))
    start = time.perf_counter()
    grid = tuner.fit()
    wall = time.perf_counter() - start
    finals = [result.metrics for result in grid]
    if grid.errors or any(m["agent_steps"] != MAX_BUDGET for m in finals):
        raise RuntimeError(f"Ray {method} seed {seed}: a trial failed or stopped early: "
                           f"{grid.errors or [m['agent_steps'] for m in finals]}")
    seconds, calls = watch.take()
    rounds = calls.get("rounds", 0)
    wait = seconds.get("checkpoint_wait", 0.0)
    overhead = seconds.get("on_trial_result", 0.0) - wait
    per_round = 1e3 / max(rounds, 1)
    return {"seed": seed, "best_q": max(m["Q"] for m in finals), "wall_s": wall,
            "rounds": rounds, "overhead_ms_per_round": overhead * per_round,
            "explore_ms_per_round": seconds.get("explore", 0.0) * per_round,
            "checkpoint_wait_ms_per_round": wait * per_round,
            "other_callbacks_ms_per_round": seconds.get("other", 0.0) * per_round,
            "initial_h": inits}


def worker_ray(method: str, seeds: list[int]) -> dict:
    import logging

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    start = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             logging_level=logging.ERROR)
    init_s = time.perf_counter() - start
    for name in ("ray", "ray.tune", "ray.train"):
        logging.getLogger(name).setLevel(logging.ERROR)
    trainable = make_toy_trainable()
    runs = []
    try:
        with tempfile.TemporaryDirectory() as storage:
            for seed in seeds:
                runs.append(run_ray(method, seed, trainable, storage))
                progress(f"ray {method} seed {seed}: Q {runs[-1]['best_q']:.4f}, "
                         f"{runs[-1]['wall_s']:.2f} s")
    finally:
        ray.shutdown()
    return {"runs": runs, "ray_init_s": init_s}


# -- the comparison -------------------------------------------------------------------------------
def progress(message: str) -> None:
    print(f"[{NAME}] {message}", file=sys.stderr, flush=True)


def parse_args(argv):
    parser = ArgumentParser(prog="bench/pb2_vs_ray.py", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    benchlib.add_output_args(parser)
    parser.add_argument("--seeds", type=int, default=None,
                        help=f"number of seeds 0..N-1 (default: {FULL_SEEDS}; --quick: "
                             f"{QUICK_SEEDS})")
    parser.add_argument("--worker", nargs=2, metavar=("SIDE", "METHOD"), default=None,
                        help=argparse.SUPPRESS)
    parser.add_argument("--seed-list", default="", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.seeds is None:
        args.seeds = QUICK_SEEDS if args.quick else FULL_SEEDS
    if args.seeds < 2:
        raise UsageError(f"--seeds must be at least 2 (a standard error needs two), "
                         f"got {args.seeds}")
    if args.worker and (args.worker[0] not in SIDES or args.worker[1] not in METHODS):
        raise UsageError(f"--worker takes SIDE in {SIDES} and METHOD in {METHODS}")
    return args


def summarise(runs: list[dict], key: str) -> tuple[float, float]:
    return benchlib.mean_se([run[key] for run in runs])


def aggregate(results: dict) -> dict:
    aggregates = {}
    for (side, method), result in results.items():
        runs = result["runs"]
        entry = {key: dict(zip(("mean", "se"), summarise(runs, key)))
                 for key in ("best_q", "wall_s", "overhead_ms_per_round", "explore_ms_per_round")}
        if side == "ray":
            for key in ("checkpoint_wait_ms_per_round", "other_callbacks_ms_per_round"):
                entry[key] = dict(zip(("mean", "se"), summarise(runs, key)))
            entry["ray_init_s"] = result["ray_init_s"]
        entry["rounds"] = sorted({run["rounds"] for run in runs})
        aggregates[f"{side}_{method}"] = entry
    return aggregates


def targets(aggregates: dict) -> dict:
    """Our PB2's Q at least Ray's PB2's; our overhead per round below Ray's (each method)."""
    out = {"pb2_q": {"ours": aggregates["ours_PB2"]["best_q"]["mean"],
                     "ray": aggregates["ray_PB2"]["best_q"]["mean"]}}
    out["pb2_q"]["target_met"] = out["pb2_q"]["ours"] >= out["pb2_q"]["ray"]
    for method in METHODS:
        ours = aggregates[f"ours_{method}"]["overhead_ms_per_round"]["mean"]
        ray = aggregates[f"ray_{method}"]["overhead_ms_per_round"]["mean"]
        out[f"{method.lower()}_overhead"] = {"ours_ms": ours, "ray_ms": ray,
                                             "ratio_ours_over_ray": ours / ray,
                                             "target_met": ours < ray}
    return out


def paired_differences(results: dict) -> dict:
    """Per-seed ours - Ray of best final Q, per method (same seeds, same initial h)."""
    out = {}
    for method in METHODS:
        ours = np.array([r["best_q"] for r in results[("ours", method)]["runs"]])
        ray = np.array([r["best_q"] for r in results[("ray", method)]["runs"]])
        mean, se = benchlib.mean_se(ours - ray)
        out[method] = {"mean": mean, "se": se, "ours_better": int(np.sum(ours > ray)),
                       "ray_better": int(np.sum(ours < ray)), "seeds": len(ours)}
    return out


def table(aggregates: dict, seeds: int) -> str:
    def pm(entry, digits):
        return f"{entry['mean']:.{digits}f} ± {entry['se']:.{digits}f}"

    rows = []
    for method in METHODS:
        for side in SIDES:
            entry = aggregates[f"{side}_{method}"]
            rows.append([f"{'ours' if side == 'ours' else 'Ray Tune'} {method}",
                         pm(entry["best_q"], 4), pm(entry["overhead_ms_per_round"], 2),
                         pm(entry["explore_ms_per_round"], 2), pm(entry["wall_s"], 2)])
    headers = ["method", f"best final Q ({seeds} seeds)", "scheduler ms / round",
               "explore ms / round", "wall s / run"]
    return benchlib.markdown_table(headers, rows)


def run_comparison(args) -> None:
    seeds = list(range(args.seeds))
    seed_list = ",".join(map(str, seeds))
    results, started = {}, time.perf_counter()
    for method in METHODS:
        for side in SIDES:  # ours first, then Ray, per method
            start = time.perf_counter()
            results[(side, method)] = benchlib.run_child(
                __file__, ["--worker", side, method, "--seed-list", seed_list])
            progress(f"{side} {method}: {len(seeds)} seeds in {time.perf_counter() - start:.1f} s")
    total = time.perf_counter() - started
    aggregates = aggregate(results)
    print(table(aggregates, len(seeds)))
    payload = {
        "mode": "quick" if args.quick else "full", "seeds": seeds, "wall_seconds": round(total, 1),
        "settings": {"population": POPULATION, "t_ready_toy_steps": T_READY,
                     "max_budget_toy_steps": MAX_BUDGET, "exploit_explore_rounds": ROUNDS,
                     "quantile": QUANTILE, "h_bounds": [[0.0, 1.0], [0.0, 1.0]],
                     "theta0": [0.9, 0.9], "metric": "Q = 1.2 - |theta|^2 of the segment",
                     "ours": "pb2_procgen/train.py --env toy --batchsize 4 --t_ready 4 "
                             "--max_budget 40 --set quantile=0.25 --no-plots",
                     "ray": {"time_attr": "agent_steps", "perturbation_interval": T_READY,
                             "stop": {"agent_steps": MAX_BUDGET}, "synch": True,
                             "quantile_fraction": QUANTILE, "reuse_actors": True,
                             "cpu_per_trial": 0.5, "ray_init_num_cpus": 2,
                             "pb2_hyperparam_bounds": {"h0": [0, 1], "h1": [0, 1]},
                             "pbt_hyperparam_mutations": "tune.uniform(0, 1) each",
                             "pbt_resample_probability": 0.0,
                             "pbt_perturbation_factors": [1.2, 0.8],
                             "pbt_custom_explore_fn": "clip h into [0, 1]",
                             "seeding": "random.seed(seed), np.random.seed(seed) in the driver "
                                        "before each fit; initial h = ours"}},
        "order": "one child per side and method, all seeds in it: ours-PB2, Ray-PB2, "
                 "ours-PBT, Ray-PBT",
        "aggregates": aggregates,
        "paired_q_difference_ours_minus_ray": paired_differences(results),
        "targets": targets(aggregates),
        "target_met": None,  # filled below: every target met
        "per_seed": {f"{side}_{method}": result["runs"]
                     for (side, method), result in results.items()},
        "versions": benchlib.package_versions("ray", "scikit-learn", "pandas", "numpy", "scipy"),
    }
    payload["target_met"] = all(t["target_met"] for t in payload["targets"].values())
    path = benchlib.write_result(NAME, payload, args.results_dir)
    for method, diff in payload["paired_q_difference_ours_minus_ray"].items():
        print(f"{method}: best final Q ours - Ray, paired: {diff['mean']:+.4f} ± {diff['se']:.4f}"
              f" (ours better on {diff['ours_better']}/{diff['seeds']} seeds, Ray on "
              f"{diff['ray_better']})")
    for name, target in payload["targets"].items():
        print(f"{name}: target_met = {target['target_met']}")
    print(f"wall {total:.0f} s -> {path}")


def main(argv=None) -> None:
    args = parse_args(argv)
    benchlib.require("ray", "sklearn", "pandas")
    if args.worker:
        side, method = args.worker
        seeds = [int(s) for s in args.seed_list.split(",") if s]
        benchlib.emit((worker_ours if side == "ours" else worker_ray)(method, seeds))
        return
    run_comparison(args)


if __name__ == "__main__":
    run_main(main, prog="bench/pb2_vs_ray.py")
