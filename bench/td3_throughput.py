"""Env steps per second of the collection's single-agent TD3 (SEARL's baseline: `searl/train.py
--config searl/configs/td3.yaml`) against Stable-Baselines3's TD3 on HalfCheetah-v5.

    python bench/td3_throughput.py --quick      # 3k steps, 2 alternating pairs (~2 min)
    python bench/td3_throughput.py              # 20k steps, 3 alternating pairs per network

Both sides train with the same settings: one update per env step (SB3 train_freq=1,
gradient_steps=1), batch 100, Adam lr 1e-3 for actor and critics, gamma 0.99, tau 0.005,
policy delay 2, target noise 0.2 clipped at 0.5, exploration noise N(0, 0.1), the same number
of uniform random steps first (ours random_steps, SB3 learning_starts), a replay memory as
large as the budget, one torch thread, the same seed. The networks (actor and both critics):

* `128`: SEARL's baseline sizes, one hidden layer of 128, on both sides (ours with
  `td3.layer_norm=false`, SB3 net_arch=[128]): the same function class and the same arithmetic,
  so the ratio measures the implementations. This is `ratio` in the JSON (target >= 1.5).
* `128+layernorm`: ours as SEARL's config ships it, with a LayerNorm after the hidden
  layer, which SB3's MlpPolicy cannot express: extra work on our side only (full mode).
* `256x256`: two hidden layers of 256 on both sides, where the matrix products dominate both
  sides' time and the ratio tends to 1 (full mode).

Each side runs in its own child process; the pairs alternate which side goes first. Timed per
child: from building the agent and env to the end of training (ours: searl/train.py's main with
one noise-free test episode at the end and its checkpoint; SB3: TD3(...) and learn()). Reported:
env steps per second by wall clock and by the process's CPU time (steadier on a shared
machine), and their ratio ours/SB3 of the medians.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import benchlib
from common.cli import ArgumentParser, UsageError, run_main

ENV = "HalfCheetah-v5"
TARGET_RATIO = 1.5
# name -> our networks; SB3 gets net_arch=hidden (its MlpPolicy has no LayerNorm)
NETWORKS = {"128": {"hidden": [128], "layer_norm": False},
            "128+layernorm": {"hidden": [128], "layer_norm": True},
            "256x256": {"hidden": [256, 256], "layer_norm": False}}
PRIMARY = "128"  # identical networks on both sides: the `ratio` the target is about
SHARED = {"batch_size": 100, "lr": 1e-3, "gamma": 0.99, "tau": 0.005, "policy_delay": 2,
          "target_noise": 0.2, "target_noise_clip": 0.5, "exploration_noise": 0.1}
QUICK = {"steps": 3_000, "random_steps": 500, "pairs": 2, "networks": [PRIMARY]}
FULL = {"steps": 20_000, "random_steps": 1_000, "pairs": 3, "networks": list(NETWORKS)}


def parse_args(argv):
    parser = ArgumentParser(prog="bench/td3_throughput.py", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    benchlib.add_output_args(parser)
    parser.add_argument("--steps", type=int, help="env steps per run (quick 3000, full 20000)")
    parser.add_argument("--pairs", type=int,
                        help="alternating (ours, SB3) pairs per network (quick 2, full 3)")
    parser.add_argument("--seed", type=int, default=0, help="seed of every run (default: 0)")
    parser.add_argument("--worker", choices=["ours", "sb3"], help=argparse.SUPPRESS)
    parser.add_argument("--network", choices=list(NETWORKS), help=argparse.SUPPRESS)
    parser.add_argument("--random-steps", type=int, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


# -- one side, in a child process --------------------------------------------------------------
def run_ours(steps: int, random_steps: int, network: str, seed: int) -> dict:
    """SEARL's single-agent TD3 through searl/train.py, what a user runs."""
    from searl.train import main as searl_main

    net = NETWORKS[network]
    sets = {"random_steps": random_steps, "eval_every": steps, "test_episodes": 1,
            "replay_size": steps, "torch_threads": 1,
            "td3.hidden": json.dumps(net["hidden"]),
            "td3.layer_norm": str(net["layer_norm"]).lower(),
            "td3.batch_size": SHARED["batch_size"], "td3.lr_actor": SHARED["lr"],
            "td3.lr_critic": SHARED["lr"], "td3.gamma": SHARED["gamma"], "td3.tau": SHARED["tau"],
            "td3.policy_delay": SHARED["policy_delay"], "td3.policy_noise": SHARED["target_noise"],
            "td3.noise_clip": SHARED["target_noise_clip"],
            "td3.exploration_noise": SHARED["exploration_noise"]}
    with tempfile.TemporaryDirectory() as tmp:
        argv = ["--config", "searl/configs/td3.yaml", "--env", ENV, "--seed", str(seed),
                "--total-steps", str(steps), "--device", "cpu", "--no-plots",
                "--out-dir", str(Path(tmp) / "run")]
        for key, value in sets.items():
            argv += ["--set", f"{key}={value}"]
        wall, cpu = time.perf_counter(), time.process_time()
        searl_main(argv)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        summary = json.loads((Path(tmp) / "run" / "summary.json").read_text())
    return {"env_steps": summary["env_steps"], "updates": summary["updates"],
            "wall_seconds": wall, "cpu_seconds": cpu}


def run_sb3(steps: int, random_steps: int, network: str, seed: int) -> dict:
    """Stable-Baselines3's TD3 with the same settings (see the module docstring)."""
    import gymnasium as gym
    import numpy as np
    import torch
    from stable_baselines3 import TD3
    from stable_baselines3.common.noise import NormalActionNoise

    torch.set_num_threads(1)
    wall, cpu = time.perf_counter(), time.process_time()
    env = gym.make(ENV)
    n_actions = env.action_space.shape[0]
    noise = NormalActionNoise(np.zeros(n_actions), SHARED["exploration_noise"] * np.ones(n_actions))
    model = TD3("MlpPolicy", env, learning_rate=SHARED["lr"], buffer_size=steps,
                learning_starts=random_steps, batch_size=SHARED["batch_size"], tau=SHARED["tau"],
                gamma=SHARED["gamma"], train_freq=1, gradient_steps=1, action_noise=noise,
                policy_delay=SHARED["policy_delay"], target_policy_noise=SHARED["target_noise"],
                target_noise_clip=SHARED["target_noise_clip"],
                policy_kwargs={"net_arch": NETWORKS[network]["hidden"]}, device="cpu",
                seed=seed, verbose=0)
    model.learn(total_timesteps=steps)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {"env_steps": int(model.num_timesteps), "updates": int(model._n_updates),
            "wall_seconds": wall, "cpu_seconds": cpu}


# -- the comparison ------------------------------------------------------------------------------
def compare_network(network: str, steps: int, random_steps: int, pairs: int, seed: int) -> dict:
    runs = {"ours": [], "sb3": []}
    for pair in range(pairs):
        order = ("ours", "sb3") if pair % 2 == 0 else ("sb3", "ours")  # cancels drift
        for side in order:
            result = benchlib.run_child(__file__, ["--worker", side, "--network", network,
                                                   "--steps", steps, "--random-steps",
                                                   random_steps, "--seed", seed])
            result["steps_per_second"] = result["env_steps"] / result["wall_seconds"]
            result["steps_per_cpu_second"] = result["env_steps"] / result["cpu_seconds"]
            runs[side].append(result)
            print(f"[{network}] pair {pair}: {side:4s} {result['steps_per_second']:6.1f} steps/s "
                  f"({result['wall_seconds']:.1f} s wall, {result['cpu_seconds']:.1f} s cpu)",
                  file=sys.stderr, flush=True)
    median = {side: {key: statistics.median(r[key] for r in runs[side])
                     for key in ("steps_per_second", "steps_per_cpu_second")} for side in runs}
    return {"runs": runs, "median": median,
            "ratio": median["ours"]["steps_per_second"] / median["sb3"]["steps_per_second"],
            "ratio_cpu": median["ours"]["steps_per_cpu_second"] / median["sb3"]["steps_per_cpu_second"]}


def table(results: dict) -> str:
    rows = []
    for network, result in results.items():
        m = result["median"]
        rows.append([network, f"{m['ours']['steps_per_second']:.0f}", f"{m['sb3']['steps_per_second']:.0f}",
                     f"**{result['ratio']:.2f}x**", f"{m['ours']['steps_per_cpu_second']:.0f}",
                     f"{m['sb3']['steps_per_cpu_second']:.0f}", f"{result['ratio_cpu']:.2f}x"])
    return benchlib.markdown_table(["networks", "ours steps/s", "SB3 steps/s", "ratio",
                                    "ours steps/CPU-s", "SB3 steps/CPU-s", "ratio (CPU)"], rows)


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.worker:
        run = run_ours if args.worker == "ours" else run_sb3
        benchlib.emit(run(args.steps, args.random_steps, args.network, args.seed))
        return
    benchlib.require("stable_baselines3")
    preset = dict(QUICK if args.quick else FULL)
    for key in ("steps", "pairs"):
        if getattr(args, key) is not None:
            preset[key] = getattr(args, key)
    if preset["steps"] <= preset["random_steps"]:
        raise UsageError(f"--steps must exceed the {preset['random_steps']} random steps")
    if preset["pairs"] < 1:
        raise UsageError(f"--pairs must be at least 1, got {preset['pairs']}")
    results = {network: compare_network(network, preset["steps"], preset["random_steps"],
                                        preset["pairs"], args.seed)
               for network in preset["networks"]}
    print(table(results))
    ratio = results[PRIMARY]["ratio"]
    print(f"\nours / SB3 (identical networks, wall clock): {ratio:.2f}x "
          f"(target {TARGET_RATIO}x: {'met' if ratio >= TARGET_RATIO else 'missed'})")
    benchlib.write_result("td3_throughput", {
        "env": ENV, "mode": "quick" if args.quick else "full", "settings": {**preset, **SHARED},
        "networks": NETWORKS, "primary": PRIMARY, "ratio": ratio, "ratio_cpu": results[PRIMARY]["ratio_cpu"],
        "target_ratio": TARGET_RATIO, "target_met": ratio >= TARGET_RATIO,
        "results": results, "versions": benchlib.package_versions("stable-baselines3", "torch")},
        args.results_dir)


if __name__ == "__main__":
    run_main(main, prog="bench/td3_throughput.py")
