"""SEARL's speed per generation (issue 32): the wall seconds of one generation of
`searl/configs/searl_td3.yaml` (10 individuals x 5 000 updates, 10 000 frames of side-by-side
evaluation, the elite's 10 test episodes), for two populations, each by three paths in its own
one-thread child process:
- `before`: the path before issue 32: one process (`--workers 1`, the old README command),
  torch's tanh / elu kernels;
- `default`: the README's command, `--workers 2 --backend process`: numpy's tanh / elu kernels
  (common/activations.py), each batching group cut into two chunks of similar network sizes;
- `compile`: `default` plus `--compile` (torch.compile of the losses and gradients).
Populations: `initial` (generation 1: [128], relu) and `grown` (a seeded fixture of tanh actors
and critics with 2-3 layers of 256-400 units: from generation 9 on, every individual of the
2026-12-07 2M run had two or three hidden layers of 256-416 units, most of them tanh,
searl/results/small_runs/searl_hc_2m_s0/population.csv). After a warm-up call (worker
start-up and torch.compile's compiling, reported apart), training is timed by a call of 20 and
one of 20 + `--gen-updates` updates per individual: their difference gives the cost per update,
the short call the fixed cost of a call (shipping the population to the workers and back), and
the two make the 5 000-update generation. Evaluation and test are timed whole.

Also: each activation's kernel, torch's against the one used (common/activations.py), and a
torch.profiler table of the grown population's batched update by operator (one process,
`--profile-updates` updates). Run alone (nothing else on the cores):

    python bench/searl_generation_speed.py               # ~6 min on 2 cores
    python bench/searl_generation_speed.py --gen-updates 20 --profile-updates 2   # a quick look

Writes bench/results/searl_generation_speed.json.
"""
from __future__ import annotations

import argparse
import resource
import time

import benchlib
import numpy as np
from searl_population_speed import BATCH, POPULATION, fill_buffer, make_population

from common.cli import ArgumentParser, UsageError, run_main

GENERATION_UPDATES = 5_000   # per individual: train_fraction 0.5 x 10 000 frames
GENERATION_PATHS = ("before", "default", "compile")
WARM_UP = 20   # updates per individual of the warm-up call and of the short timed call


def grown_tanh_population(seed: int = 0):
    """10 TD3 individuals, tanh actors and critics, 2-3 hidden layers of 256-400 units (seeded)."""
    import torch

    from searl.td3 import TD3_DEFAULTS, TD3Individual

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    population = []
    for i in range(POPULATION):
        hidden = [int(w) for w in rng.choice(np.arange(256, 401, 16), size=int(rng.integers(2, 4)))]
        config = {**TD3_DEFAULTS, "hidden": hidden, "activation": "tanh", "batch_size": BATCH,
                  "lr_actor": 1e-3 * float(rng.uniform(0.5, 2)), "lr_critic": 1e-3 * float(rng.uniform(0.2, 1))}
        population.append(TD3Individual(i, 17, 6, config, seed=i))
    return population


def generation_child(path: str, grown: bool, updates: int) -> dict:
    """Seconds of one SEARL generation by `path` (see the module docstring)."""
    import torch
    import torch.nn.functional as F

    from common.envs import make_env
    from common.parallel import WorkerPool
    from searl import algorithm, batched_td3

    torch.set_num_threads(1)
    batched_td3.reuse_freed_memory()
    if path == "before":   # torch's kernels, as before issue 32
        batched_td3.ACTIVATION_FUNCTIONS.update(relu=F.relu, elu=F.elu, tanh=torch.tanh)
        batched_td3.TANH = torch.tanh
    buffer = fill_buffer(20_000)
    population = grown_tanh_population() if grown else make_population(grown=False)
    workers, backend = (1, "serial") if path == "before" else (2, "process")
    rng = np.random.default_rng(0)
    with WorkerPool(workers, backend) as pool:
        def train(n: int) -> float:
            start = time.perf_counter()
            algorithm.train_population(population, buffer, n, rng, pool, batched=True,
                                       compile=path == "compile")
            return time.perf_counter() - start
        # worker start-up, first touch of memory, compiling: with 2 workers a chunk may reach the
        # other worker in the next call, which then compiles it too, so --compile warms up 3 times
        warm_up = sum(train(WARM_UP) for _ in range(3 if path == "compile" else 1))
        short, long = train(WARM_UP), train(WARM_UP + updates)
        if long <= short:
            raise RuntimeError(f"{path}: a call of {WARM_UP + updates} updates took {long:.1f} s, "
                               f"one of {WARM_UP} {short:.1f} s: something else ran meanwhile")
        # each call ships the population to the workers and back: a fixed cost per generation,
        # apart from the cost per update (the difference of the two calls)
        per_update = (long - short) / updates
        train_s = long + (GENERATION_UPDATES - WARM_UP - updates) * per_update
    envs = [make_env("HalfCheetah-v5", i) for i in range(POPULATION)]
    start = time.perf_counter()
    evaluations = algorithm.evaluate_population(population, envs, buffer, rng, random_actions=False,
                                                min_steps=250,
                                                policy=batched_td3.PopulationPolicy(population))
    eval_s = time.perf_counter() - start
    start = time.perf_counter()
    algorithm.test_individual(population[0], envs[0], 10, list(range(10)))
    test_s = time.perf_counter() - start
    return {"path": path, "population": "grown" if grown else "initial", "workers": workers,
            "hidden": [ind.actor.hidden for ind in population],
            "groups": [len(g) for g in population[0].batching_groups(population)],
            "warm_up_s": warm_up, "timed_updates": updates, "short_call_s": short, "long_call_s": long,
            "per_update_ms": 1000 * per_update, "train_s": train_s,
            "eval_frames": sum(e.steps for e in evaluations), "eval_s": eval_s,
            "test_s": test_s, "generation_s": train_s + eval_s + test_s,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def profile_child(updates: int) -> dict:
    """Where a grown population's batched update spends its time: torch.profiler's self CPU
    time per operator over `updates` updates of every batching group, one process."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    from searl import batched_td3

    torch.set_num_threads(1)
    batched_td3.reuse_freed_memory()
    buffer = fill_buffer(20_000)
    population = grown_tanh_population()
    groups = batched_td3.batching_groups(population)
    rngs = [np.random.default_rng(100 + i) for i in range(POPULATION)]

    def train(n: int) -> None:
        for group in groups:
            batched_td3.learn_together([population[i] for i in group], buffer, n, [rngs[i] for i in group])
    train(5)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        train(updates)
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    top = sorted(events, key=lambda e: -e.self_cpu_time_total)[:15]
    return {"updates": updates, "groups": [len(g) for g in groups],
            "hidden": [ind.actor.hidden for ind in population],
            "ms_per_update_step": total / 1000 / updates,
            "top_ops": [{"op": e.key, "share": e.self_cpu_time_total / total, "calls": e.count}
                        for e in top]}


def kernels() -> dict:
    """Microseconds per call, one thread, (10, 100, 400) float32: torch's and common.activations'."""
    import torch
    import torch.nn.functional as F

    from common.activations import fast_activation

    torch.set_num_threads(1)
    x = torch.randn(POPULATION, BATCH, 400)
    torch_fns = {"relu": torch.relu, "elu": F.elu, "tanh": torch.tanh, "sigmoid": torch.sigmoid}

    def best_us(fn) -> float:
        fn(x)
        times = []
        for _ in range(5):
            start = time.perf_counter()
            for _ in range(50):
                fn(x)
            times.append((time.perf_counter() - start) / 50 * 1e6)
        return min(times)
    return {name: {"torch_us": best_us(fn), "used_us": best_us(fast_activation(name))}
            for name, fn in torch_fns.items()}


def generations(updates: int) -> dict:
    results = {}
    for population in ("initial", "grown"):
        runs = {path: benchlib.run_child(__file__, ["--child", "generation", "--path", path,
                                                    "--gen-updates", updates]
                                         + (["--grown"] if population == "grown" else []))
                for path in GENERATION_PATHS}
        before = runs["before"]["generation_s"]
        results[population] = {"runs": runs, "generation_s": {p: r["generation_s"] for p, r in runs.items()},
                               "speedup": {p: before / r["generation_s"] for p, r in runs.items()}}
    return results



def print_generations(payload: dict) -> None:
    rows = [[population, path, f"{r['workers']}", f"{r['train_s']:.1f}", f"{r['eval_s'] + r['test_s']:.1f}",
             f"{r['generation_s']:.1f}", f"{result['speedup'][path]:.2f}x", f"{r['warm_up_s']:.1f}"]
            for population, result in payload["generations"].items() for path, r in result["runs"].items()]
    print(benchlib.markdown_table(["population", "path", "workers", "train s", "eval + test s",
                                   "s per generation", "vs before", "warm-up s"], rows))
    print(benchlib.markdown_table(["activation", "torch us", "used us"],
                                  [[n, f"{k['torch_us']:.0f}", f"{k['used_us']:.0f}"]
                                   for n, k in payload["kernels"].items()]))


def parse_args(argv):
    parser = ArgumentParser(prog="bench/searl_generation_speed.py", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    benchlib.add_output_args(parser)
    parser.add_argument("--gen-updates", dest="gen_updates", type=int, default=200,
                        help="timed updates per individual, scaled to 5000 (default: 200)")
    parser.add_argument("--profile-updates", dest="profile_updates", type=int, default=30,
                        help="updates of the grown population under torch.profiler (default: 30)")
    parser.add_argument("--child", choices=("generation", "kernels", "profile"), help=argparse.SUPPRESS)
    parser.add_argument("--path", choices=GENERATION_PATHS, help=argparse.SUPPRESS)
    parser.add_argument("--grown", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.gen_updates < 1 or args.profile_updates < 1:
        raise UsageError(f"--gen-updates and --profile-updates must be at least 1, got "
                         f"{args.gen_updates} and {args.profile_updates}")
    if args.child == "generation":
        benchlib.emit(generation_child(args.path, args.grown, args.gen_updates))
        return
    if args.child == "kernels":
        benchlib.emit(kernels())
        return
    if args.child == "profile":
        benchlib.emit(profile_child(args.profile_updates))
        return
    payload = {"kernels": benchlib.run_child(__file__, ["--child", "kernels"]),
               "generation_updates": GENERATION_UPDATES, "timed_updates": args.gen_updates,
               "generations": generations(args.gen_updates),
               "grown_profile": benchlib.run_child(__file__, ["--child", "profile",
                                                              "--profile-updates", args.profile_updates]),
               "target_grown_generation_s": 36.0}
    payload["target_met"] = payload["generations"]["grown"]["generation_s"]["default"] <= 36.0
    path = benchlib.write_result("searl_generation_speed", payload, args.results_dir)
    print_generations(payload)
    print(benchlib.markdown_table(["op", "share of CPU time", "calls"],
                                  [[o["op"], f"{100 * o['share']:.1f}%", o["calls"]]
                                   for o in payload["grown_profile"]["top_ops"]]))
    print(f"-> {path}")


if __name__ == "__main__":
    run_main(main, prog="bench/searl_generation_speed.py")
