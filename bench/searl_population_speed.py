"""SEARL's generation training (Sec. 3.4): the whole population as one batched computation vs
one individual after another, side by side, at SEARL's HalfCheetah-v5 sizes.

Population 10, TD3 networks with one hidden layer of 128 (Linear -> LayerNorm -> relu), batch
100, a replay memory of real HalfCheetah-v5 transitions (uniformly random actions). Each side runs
in its own one-thread child process, alternating (serial, batched) pairs so both see the same
machine load; the children report updates per second (per individual update: one TD3 critic
step, and an actor step every second one), CPU seconds and peak memory. `--grown` populations
first take 12 random architecture / activation mutations each, so the batched side pads
different widths, depths and activations.

Generations (issue 32): the wall seconds of one generation of `searl/configs/searl_td3.yaml`
(10 individuals x 5 000 updates, 10 000 frames of side-by-side evaluation, the elite's 10 test
episodes) for two populations, each by three paths in child processes:
- `before`: the path before issue 32: one process (`--workers 1`, the old README command),
  torch's tanh / elu kernels;
- `default`: the README's command, `--workers 2 --backend process`: numpy's tanh / elu kernels
  (common/activations.py), each batching group cut into two chunks of similar network sizes;
- `compile`: `default` plus `--compile` (torch.compile of the losses and gradients).
Populations: `initial` (generation 1: [128], relu) and `grown` (a seeded fixture of tanh actors
and critics with 2-3 layers of 256-400 units; the lost 2M run's fittest networks had two or three
layers of 352-416 units by generations 44-49, searl/README.md).
After a warm-up call (worker start-up and torch.compile's compiling, reported apart), training
is timed by a call of 20 and one of 20 + `--gen-updates` updates per individual: their difference
gives the cost per update, the short call the fixed cost of a call (shipping the population to
the workers and back), and the two make the 5 000-update generation. Evaluation and test are
timed whole.

    python bench/searl_population_speed.py --generations-only     # ~5 min: generations, kernels
    python bench/searl_population_speed.py --profile-grown --gen-updates 30   # where the time goes
    python bench/searl_population_speed.py --quick      # ~3 min, no generations
    python bench/searl_population_speed.py              # 5 pairs x 1000 updates, both populations
"""
from __future__ import annotations

import argparse
import resource
import time

import benchlib
import numpy as np

from common.cli import ArgumentParser, UsageError, run_main

POPULATION, BATCH, HIDDEN = 10, 100, [128]
SCALING_SIZES = (2, 5, 10)


def fill_buffer(n: int, seed: int = 0):
    from common.buffers import ReplayBuffer
    from common.envs import make_env

    env = make_env("HalfCheetah-v5", seed)
    buffer = ReplayBuffer(n, env.observation_space.shape, env.action_space.shape, seed=seed)
    rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    for _ in range(n):
        action = rng.uniform(-1, 1, env.action_space.shape).astype(np.float32)
        next_obs, reward, terminated, truncated, _ = env.step(action)
        buffer.add(obs, action, reward, next_obs, terminated, truncated)
        obs = env.reset()[0] if terminated or truncated else next_obs
    return buffer


def make_population(grown: bool, seed: int = 0):
    import torch

    from searl.td3 import TD3_DEFAULTS, TD3Individual

    torch.manual_seed(seed)
    config = {**TD3_DEFAULTS, "hidden": HIDDEN, "batch_size": BATCH}
    population = [TD3Individual(i, 17, 6, dict(config), seed=i) for i in range(POPULATION)]
    rng = np.random.default_rng(seed)
    if grown:
        for individual in population:
            for _ in range(12):
                if rng.random() < 0.7:
                    individual.mutate_architecture(rng)
                else:
                    individual.mutate_activation(rng)
    return population


def child(side: str, updates: int, grown: bool) -> dict:
    """One side's measurement (run in its own process by `run_child`)."""
    import torch

    from searl.batched_td3 import reuse_freed_memory
    from searl.td3 import TD3Individual

    torch.set_num_threads(1)
    reuse_freed_memory()   # what searl/train.py does on a CPU; the one-by-one side gains too
    buffer = fill_buffer(20_000)
    population = make_population(grown)
    rngs = [np.random.default_rng(100 + i) for i in range(POPULATION)]
    groups = TD3Individual.batching_groups(population)   # as searl.algorithm.train_population

    def train(n: int) -> None:
        if side == "batched":
            for group in groups:
                TD3Individual.learn_together([population[i] for i in group], buffer, n,
                                             [rngs[i] for i in group])
        else:
            for individual, rng in zip(population, rngs):
                individual.learn(buffer, n, rng)

    train(max(10, updates // 20))   # warm-up
    wall, cpu = time.perf_counter(), time.process_time()
    train(updates)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    total = updates * POPULATION
    return {"side": side, "updates_per_s": total / wall, "cpu_updates_per_s": total / cpu,
            "wall_s": wall, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "hidden": [ind.actor.hidden for ind in population]}


def scaling(updates: int) -> dict:
    """Batched CPU ms per group step for groups of 2, 5 and 10 (the best of 5 bursts each),
    fitted as overhead + per_individual x P: the per-individual part is the work batching
    cannot remove, so serial ms per update / per_individual bounds the speedup of any group."""
    import torch

    from searl.batched_td3 import learn_together, reuse_freed_memory

    torch.set_num_threads(1)
    reuse_freed_memory()
    buffer = fill_buffer(20_000)
    population = make_population(grown=False)
    rngs = [np.random.default_rng(100 + i) for i in range(POPULATION)]
    burst = max(10, updates // 5)
    ms_per_step = []
    for size in SCALING_SIZES:
        group = population[:size]
        learn_together(group, buffer, max(10, burst // 4), rngs[:size])   # warm-up
        best = float("inf")
        for _ in range(5):
            cpu = time.process_time()
            learn_together(group, buffer, burst, rngs[:size])
            best = min(best, 1000 * (time.process_time() - cpu) / burst)
        ms_per_step.append(best)
    per_individual, overhead = np.polyfit(SCALING_SIZES, ms_per_step, 1)
    return {"sizes": list(SCALING_SIZES), "cpu_ms_per_group_step": ms_per_step,
            "overhead_ms": float(overhead), "per_individual_ms": float(per_individual)}


def compare(updates: int, pairs: int, grown: bool) -> dict:
    runs = {"serial": [], "batched": []}
    for _ in range(pairs):
        for side in ("serial", "batched"):
            runs[side].append(benchlib.run_child(__file__, ["--child", side, "--updates", updates]
                                                 + (["--grown"] if grown else [])))
    serial = np.mean([r["updates_per_s"] for r in runs["serial"]])
    batched = np.mean([r["updates_per_s"] for r in runs["batched"]])
    serial_cpu = np.mean([r["cpu_updates_per_s"] for r in runs["serial"]])
    batched_cpu = np.mean([r["cpu_updates_per_s"] for r in runs["batched"]])
    return {"serial_updates_per_s": float(serial), "batched_updates_per_s": float(batched),
            "speedup": float(batched / serial), "speedup_cpu": float(batched_cpu / serial_cpu),
            "serial_peak_rss_mb": max(r["peak_rss_mb"] for r in runs["serial"]),
            "batched_peak_rss_mb": max(r["peak_rss_mb"] for r in runs["batched"]),
            "hidden": runs["batched"][0]["hidden"], "runs": runs}


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


def parse_args(argv):
    parser = ArgumentParser(prog="bench/searl_population_speed.py", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    benchlib.add_output_args(parser)
    parser.add_argument("--pairs", type=int, default=None,
                        help="alternating (serial, batched) child pairs (default: 5, quick: 2)")
    parser.add_argument("--updates", type=int, default=None,
                        help="updates per individual per child (default: 1000, quick: 300)")
    parser.add_argument("--gen-updates", dest="gen_updates", type=int, default=300,
                        help="generations: timed updates per individual, scaled to 5000 (default: 300)")
    parser.add_argument("--generations-only", action="store_true",
                        help="time the generations and the activation kernels only")
    parser.add_argument("--profile-grown", action="store_true",
                        help="profile the grown population's batched update (torch.profiler, one process)")
    parser.add_argument("--child", choices=("serial", "batched", "scaling", "generation", "kernels", "profile"),
                        help=argparse.SUPPRESS)
    parser.add_argument("--path", choices=GENERATION_PATHS, help=argparse.SUPPRESS)
    parser.add_argument("--grown", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    updates = args.updates if args.updates is not None else (300 if args.quick else 1000)
    pairs = args.pairs if args.pairs is not None else (2 if args.quick else 5)
    if updates < 1 or pairs < 1 or args.gen_updates < 1:
        raise UsageError(f"--updates, --pairs and --gen-updates must be at least 1, got {updates}, "
                         f"{pairs} and {args.gen_updates}")
    if args.child:
        if args.child == "generation":
            benchlib.emit(generation_child(args.path, args.grown, args.gen_updates))
        elif args.child == "kernels":
            benchlib.emit(kernels())
        elif args.child == "profile":
            benchlib.emit(profile_child(args.gen_updates))
        else:
            benchlib.emit(scaling(updates) if args.child == "scaling"
                          else child(args.child, updates, args.grown))
        return
    if args.profile_grown:
        payload = benchlib.run_child(__file__, ["--child", "profile", "--gen-updates", args.gen_updates])
        path = benchlib.write_result("searl_grown_profile", payload, args.results_dir)
        print(benchlib.markdown_table(["op", "share of CPU time", "calls"],
                                      [[o["op"], f"{100 * o['share']:.1f}%", o["calls"]]
                                       for o in payload["top_ops"]]))
        print(f"-> {path}")
        return
    if args.generations_only:
        payload = {"kernels": benchlib.run_child(__file__, ["--child", "kernels"]),
                   "generation_updates": GENERATION_UPDATES, "timed_updates": args.gen_updates,
                   "generations": generations(args.gen_updates)}
        payload["target_grown_generation_s"] = 36.0
        payload["target_met"] = payload["generations"]["grown"]["generation_s"]["default"] <= 36.0
        path = benchlib.write_result("searl_generation_speed", payload, args.results_dir)
        print_generations(payload)
        print(f"-> {path}")
        return
    results = {"initial": compare(updates, pairs, grown=False)}
    fit = benchlib.run_child(__file__, ["--child", "scaling", "--updates", updates])
    # the fastest one-by-one child (best case for it), as the fit takes the best bursts
    serial_ms = 1000 / max(r["cpu_updates_per_s"] for r in results["initial"]["runs"]["serial"])
    fit["serial_cpu_ms_per_update"] = serial_ms
    fit["speedup_limit"] = serial_ms / fit["per_individual_ms"]
    if not args.quick:
        results["grown"] = compare(updates, pairs, grown=True)
    headline = results["initial"]
    payload = {"population": POPULATION, "batch_size": BATCH, "hidden": HIDDEN,
               "updates_per_child": updates, "pairs": pairs,
               "batched_updates_per_s": headline["batched_updates_per_s"],
               "serial_updates_per_s": headline["serial_updates_per_s"],
               "speedup": headline["speedup"], "speedup_cpu": headline["speedup_cpu"],
               "serial_peak_rss_mb": headline["serial_peak_rss_mb"],
               "batched_peak_rss_mb": headline["batched_peak_rss_mb"],
               "target": 4.0, "target_met": headline["speedup"] >= 4.0,
               "scaling": fit, "results": results}
    path = benchlib.write_result("searl_population_speed", payload, args.results_dir)
    rows = [[name, f"{r['serial_updates_per_s']:.0f}", f"{r['batched_updates_per_s']:.0f}",
             f"{r['speedup']:.2f}x", f"{r['speedup_cpu']:.2f}x",
             f"{r['serial_peak_rss_mb']:.0f} / {r['batched_peak_rss_mb']:.0f}"]
            for name, r in results.items()]
    print(benchlib.markdown_table(["population", "one by one (updates/s)", "batched (updates/s)",
                                   "speedup (wall)", "speedup (CPU)", "peak RSS MB (1x1 / batched)"],
                                  rows))
    print(f"batched CPU ms per group step = {fit['overhead_ms']:.2f} + {fit['per_individual_ms']:.2f}"
          f" x P (P = {', '.join(map(str, SCALING_SIZES))}); one by one {serial_ms:.2f} ms per update:"
          f" no group size can be more than {fit['speedup_limit']:.2f}x faster on this machine")
    print(f"-> {path}")


def print_generations(payload: dict) -> None:
    rows = [[population, path, f"{r['workers']}", f"{r['train_s']:.1f}", f"{r['eval_s'] + r['test_s']:.1f}",
             f"{r['generation_s']:.1f}", f"{result['speedup'][path]:.2f}x", f"{r['warm_up_s']:.1f}"]
            for population, result in payload["generations"].items() for path, r in result["runs"].items()]
    print(benchlib.markdown_table(["population", "path", "workers", "train s", "eval + test s",
                                   "s per generation", "vs before", "warm-up s"], rows))
    print(benchlib.markdown_table(["activation", "torch us", "used us"],
                                  [[n, f"{k['torch_us']:.0f}", f"{k['used_us']:.0f}"]
                                   for n, k in payload["kernels"].items()]))


if __name__ == "__main__":
    run_main(main, prog="bench/searl_population_speed.py")
