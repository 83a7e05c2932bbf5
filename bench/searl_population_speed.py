"""SEARL's generation training (Sec. 3.4): the whole population as one batched computation vs
one individual after another, side by side, at SEARL's HalfCheetah-v5 sizes.

Population 10, TD3 networks with one hidden layer of 128 (Linear -> LayerNorm -> relu), batch
100, a replay memory of real HalfCheetah-v5 transitions (uniformly random actions). Each side runs
in its own one-thread child process, alternating (serial, batched) pairs so both see the same
machine load; the children report updates per second (per individual update: one TD3 critic
step, and an actor step every second one), CPU seconds and peak memory. `--grown` populations
first take 12 random architecture / activation mutations each, so the batched side pads
different widths, depths and activations.

    python bench/searl_population_speed.py --quick      # ~3 min
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


def parse_args(argv):
    parser = ArgumentParser(prog="bench/searl_population_speed.py", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    benchlib.add_output_args(parser)
    parser.add_argument("--pairs", type=int, default=None,
                        help="alternating (serial, batched) child pairs (default: 5, quick: 2)")
    parser.add_argument("--updates", type=int, default=None,
                        help="updates per individual per child (default: 1000, quick: 300)")
    parser.add_argument("--child", choices=("serial", "batched", "scaling"), help=argparse.SUPPRESS)
    parser.add_argument("--grown", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    updates = args.updates if args.updates is not None else (300 if args.quick else 1000)
    pairs = args.pairs if args.pairs is not None else (2 if args.quick else 5)
    if updates < 1 or pairs < 1:
        raise UsageError(f"--updates and --pairs must be at least 1, got {updates} and {pairs}")
    if args.child:
        benchlib.emit(scaling(updates) if args.child == "scaling"
                      else child(args.child, updates, args.grown))
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


if __name__ == "__main__":
    run_main(main, prog="bench/searl_population_speed.py")
