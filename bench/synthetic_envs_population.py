"""The CartPole SE inner loop (Ferreira et al., ICLR 2022, Algorithm 1): one NES iteration's DDQN
agents trained one after another (`nes.evaluate_worker`, the path before population.py) against
the same agents trained as one batched population (`nes.evaluate_workers`, the default of
`synthetic_envs/train.py`), side by side in one process with one torch thread.

The setting is the paper's CartPole-v0 SE (`configs/se_cartpole.yaml`: LeakyReLU 83-unit SE,
the tuned DDQN: tanh 57 units, batch 199) at its initial ψ: each NES worker trains three agents
(on ψ, ψ + ε and ψ − ε) until their SE return plateaus, then tests each on the real CartPole for
10 episodes. `--workers W` NES workers make 3W agents: W = 8 is one process's share of the
paper's 16 workers under `--workers 2`. The rounds alternate which side goes first; the script
reports which workers' scores differ between the sides (float rounding can flip a greedy action
late in a long training, after which the two agents' trajectories part).

    python bench/synthetic_envs_population.py --quick     # 2 workers, 10 episodes per agent (~1 min)
    python bench/synthetic_envs_population.py             # 8 workers, the full inner loop, 2 rounds (~15 min)
"""
from __future__ import annotations

import time

import benchlib

from common.cli import ArgumentParser, UsageError, run_main


def parse_args(argv):
    parser = ArgumentParser(prog="bench/synthetic_envs_population.py", description=__doc__)
    benchlib.add_output_args(parser)
    parser.add_argument("--workers", type=int, default=8, help="NES workers (3 agents each; default 8)")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds of both sides (default 2)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.workers < 1 or args.rounds < 1:
        raise UsageError("--workers and --rounds must be at least 1")
    return args


def cartpole_setup(quick: bool) -> dict:
    from synthetic_envs.train import build_config
    from synthetic_envs.train import parse_args as train_args
    setup = build_config(train_args(["--kind", "se", "--env", "cartpole"]))
    if quick:
        setup["agent_hp"] = dict(setup["agent_hp"], max_episodes=10)
    return setup


def main(argv=None) -> int:
    args = parse_args(argv)
    from common.device import set_single_thread
    from synthetic_envs import nes

    set_single_thread()
    workers = 2 if args.quick else args.workers
    rounds = 1 if args.quick else args.rounds
    setup = dict(cartpole_setup(args.quick), num_workers=workers)
    state = nes.NESState(psi=nes.initial_psi(setup, args.seed))
    tasks = nes.worker_tasks(state, setup, args.seed)
    sides = {"one by one": lambda: [nes.evaluate_worker(task) for task in tasks],
             "population": lambda: nes.evaluate_workers(tasks)}
    seconds = {name: [] for name in sides}
    results = {}
    for r in range(rounds):
        for name in (list(sides) if r % 2 == 0 else list(sides)[::-1]):
            start = time.perf_counter()
            results[name] = sides[name]()
            seconds[name].append(time.perf_counter() - start)
            print(f"round {r + 1}: {name}: {seconds[name][-1]:.1f} s", flush=True)
    scores = {name: [[w.score_orig, w.score_add, w.score_sub] for w in found] for name, found in results.items()}
    differ = [i for i, (a, b) in enumerate(zip(*scores.values())) if a != b]
    same = not differ
    best = {name: min(times) for name, times in seconds.items()}
    payload = {"setting": "CartPole-v0 SE, configs/se_cartpole.yaml, initial psi",
               "nes_workers": workers, "agents": 3 * workers, "rounds": rounds, "quick": args.quick,
               "seconds": seconds, "best_seconds": best,
               "speedup": best["one by one"] / best["population"], "same_scores": same,
               "workers_with_other_scores": differ, "scores": scores}
    path = benchlib.write_result("synthetic_envs_population", payload, args.results_dir)
    print(benchlib.markdown_table(
        ["agents", "one by one (s)", "population (s)", "speedup", "same scores"],
        [[3 * workers, f"{best['one by one']:.1f}", f"{best['population']:.1f}",
          f"{payload['speedup']:.2f}x", same]]))
    if differ:   # float rounding (numpy's tanh, the batched sums) can flip a greedy action late in training
        print(f"workers whose scores differ: {differ}")
    print(f"-> {path}")
    return 0


if __name__ == "__main__":
    run_main(main)
