"""STEVE and our DDPG (steve/) against Stable-Baselines3's TD3 on InvertedDoublePendulum-v5 at a
fixed frame budget: greedy (noise-free) return at the budget and frames to reach a threshold
(the paper's claim is sample efficiency). Run by hand:

    python bench/steve_vs_sb3.py --quick   # 1 seed x 3,000 frames: checks the machinery (1-2.5 min)
    python bench/steve_vs_sb3.py           # 3 seeds x 30,000 frames (~73 min on 2 cores)

Time: STEVE is compute-bound: its updates alone run at ~56 frames/s on one thread
(bench/steve_update.py), ~24 frames/s end to end with evaluation and world-model pretraining,
so each 30,000-frame STEVE run takes ~21 min (measured 1227-1283 s); DDPG and TD3 take
~1.5-2 min per run. The measured full run took 4,360 s.

Each (method, seed) runs in its own child process with one torch thread, one after the other,
alternating methods within a seed (seed 0: STEVE, DDPG, TD3; seed 1: ...).

Our side is the real code path: `steve/train.py`'s `main` with the laptop experiment configs
`steve/configs/experiments/laptop/inverted_double_pendulum/{steve0,ddpg0}.json` (the
laptop/halfcheetah set-up with this env), `--frames`, `--eval-every`, `--seed` and `--out-dir`
in a temporary folder; the figures come from its `log/<EXPERIMENT>.greedy.csv` (one greedy
episode every `eval_every` frames, on its own env seeded seed + 100) and `summary.json`.

The peer is SB3 TD3 (`TD3("MlpPolicy", ...)`, its documented API) on the same env built by the
same `common.envs.make_env` (float32 observations, 1000-step episodes, first reset seeded
`seed`), with an `EvalCallback`-style callback that, every `eval_every` frames, runs the same
number of deterministic episodes as our evaluator (1) on a separate env seeded seed + 100. Both
evaluation envs continue their own RNG between episodes, so the k-th evaluation of every method
starts from the same initial state.

Settings matched to the laptop configs: 3 hidden layers of 64 units for the actor and the
critic(s) (`net_arch=[64, 64, 64]`), batch 128, replay 100,000, learning rate 3e-4, discount
0.99, 1,000 uniformly random frames before learning (`learning_starts=1000`), one gradient step
per env step (`train_freq=1, gradient_steps=1`). Differences that are TD3 itself or SB3's
defaults, kept as they are: two critics with clipped double-Q, a target policy, target-policy
smoothing (0.2, clip 0.5), the actor updated every 2 critic steps, Polyak targets (tau 0.005;
ours copy the target Q every 200 updates and keep no target policy). Exploration: ours adds, per
action dimension with probability 0.05, N(0, 1) to the pre-tanh action (the paper's rule);
TD3 gets Gaussian action noise N(0, 0.1) (the RL Zoo's TD3 setting; SB3's default is none).
STEVE also pretrains its world model for 1,000 updates at frame 1,000 and then makes one
world-model update per frame: that is the method. SB3 calls the callback after a frame's env
step and before that frame's gradient step, so its evaluation at frame N has seen one update
fewer than ours.

Counted: env frames (the training env's steps; evaluation steps are not training data). Per
method: the mean over seeds of each seed's mean greedy return over its last `--last`
evaluations (the return at the budget), and the frames of the first evaluation with a greedy
return >= `--threshold` (default 9,100: gymnasium's registered `reward_threshold` for this env,
i.e. the double pendulum kept up for (nearly) the whole 1000-step episode, at ~9.35 per step);
"not reached" when no evaluation got there. Why 30,000 frames: in a seed-0 probe (eval every
1,000 frames) our DDPG first scored >= 9,100 at 18,000 frames and TD3 at 17,000, so the budget
leaves room for an earlier STEVE and for the plateau after it. Wall seconds and frames/s are the
child's training loop only (imports and start-up excluded).
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import benchlib
from common.cli import ArgumentParser, UsageError, run_main

NAME = "steve_vs_sb3"
ENV_ID = "InvertedDoublePendulum-v5"
MAX_EPISODE_STEPS = 1000
CONFIGS = {"STEVE": "experiments/laptop/inverted_double_pendulum/steve0.json",
           "DDPG": "experiments/laptop/inverted_double_pendulum/ddpg0.json"}
METHODS = ("STEVE", "DDPG", "SB3 TD3")
# What the laptop configs set, given to TD3 as well (see the docstring).
HIDDEN, BATCH, REPLAY, LR, GAMMA, RANDOM_FRAMES, EVAL_EPISODES = [64, 64, 64], 128, 100_000, 3e-4, 0.99, 1000, 1
TD3_ACTION_NOISE = 0.1
FULL = {"seeds": 3, "frames": 30_000, "eval_every": 1000, "last": 3}
QUICK = {"seeds": 1, "frames": 3000, "eval_every": 500, "last": 2}
THRESHOLD = 9100.0  # gymnasium.spec("InvertedDoublePendulum-v5").reward_threshold


def parse_args(argv):
    parser = ArgumentParser(prog="bench/steve_vs_sb3.py", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    benchlib.add_output_args(parser)
    parser.add_argument("--seeds", type=int, default=None, help="seeds 0..N-1 (default: 3; --quick: 1)")
    parser.add_argument("--frames", type=int, default=None, help="env frames per run (default: 30000; --quick: 3000)")
    parser.add_argument("--eval-every", type=int, default=None,
                        help="frames between greedy evaluations (default: 1000; --quick: 500)")
    parser.add_argument("--last", type=int, default=None,
                        help="evaluations averaged for the return at the budget (default: 3; --quick: 2)")
    parser.add_argument("--threshold", type=float, default=THRESHOLD,
                        help=f"greedy return that counts as reached (default: {THRESHOLD:g}, the env's "
                             "registered reward_threshold)")
    parser.add_argument("--worker", choices=METHODS, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    preset = QUICK if args.quick else FULL
    for key, value in preset.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    for key in ("seeds", "frames", "eval_every", "last"):
        if getattr(args, key) <= 0:
            raise UsageError(f"--{key.replace('_', '-')} must be positive, got {getattr(args, key)}")
    if args.eval_every > args.frames:
        raise UsageError(f"--eval-every ({args.eval_every}) exceeds --frames ({args.frames}): no evaluation")
    if args.frames <= RANDOM_FRAMES:
        raise UsageError(f"--frames must exceed the {RANDOM_FRAMES} random frames, got {args.frames}")
    return args


# -- the workers: one (method, seed) each, in its own process --------------------------------------
def run_ours(method: str, seed: int, frames: int, eval_every: int) -> dict:
    """steve/train.py's main, as a user runs it, in a temporary folder; read back its greedy CSV."""
    from steve.train import main as train_main

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        start = time.time()
        train_main([CONFIGS[method], "--out-dir", str(out), "--frames", str(frames),
                    "--eval-every", str(eval_every), "--seed", str(seed), "--no-plots"])
        wall = time.time() - start
        summary = json.loads((out / "summary.json").read_text())
        greedy_csv = out / "log" / f"{Path(CONFIGS[method]).stem}.greedy.csv"
        rows = list(csv.DictReader(greedy_csv.read_text().splitlines()))
    return {"frames": [int(r["frames"]) for r in rows], "scores": [float(r["score"]) for r in rows],
            "updates": summary["updates"], "model_use": summary["model_use"], "wall_seconds": wall}


def run_td3(seed: int, frames: int, eval_every: int) -> dict:
    """SB3 TD3 with the laptop sizes, evaluated greedily on its own env every eval_every frames."""
    from stable_baselines3 import TD3
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.noise import NormalActionNoise

    from common.envs import make_env

    env = make_env(ENV_ID, seed=seed, max_episode_steps=MAX_EPISODE_STEPS)
    eval_env = make_env(ENV_ID, seed=seed + 100, max_episode_steps=MAX_EPISODE_STEPS)
    action_dim = env.action_space.shape[0]

    class GreedyEvaluation(BaseCallback):
        """EVAL_EPISODES deterministic episodes every eval_every frames (our evaluator's protocol)."""

        def __init__(self):
            super().__init__()
            self.frames, self.scores = [], []

        def _on_step(self) -> bool:
            if self.num_timesteps % eval_every == 0:
                returns = [greedy_return(self.model, eval_env) for _ in range(EVAL_EPISODES)]
                self.frames.append(self.num_timesteps)
                self.scores.append(float(np.mean(returns)))
            return True

    model = TD3("MlpPolicy", env, learning_rate=LR, buffer_size=REPLAY, learning_starts=RANDOM_FRAMES,
                batch_size=BATCH, gamma=GAMMA, train_freq=1, gradient_steps=1,
                action_noise=NormalActionNoise(np.zeros(action_dim), TD3_ACTION_NOISE * np.ones(action_dim)),
                policy_kwargs={"net_arch": HIDDEN}, seed=seed, device="cpu", verbose=0)
    evaluation = GreedyEvaluation()
    start = time.time()
    model.learn(total_timesteps=frames, callback=evaluation)
    return {"frames": evaluation.frames, "scores": evaluation.scores, "updates": int(model._n_updates),
            "model_use": None, "wall_seconds": time.time() - start}


def greedy_return(model, env) -> float:
    obs, _ = env.reset()
    total, done = 0.0, False
    while not done:
        action, _ = model.predict(obs, deterministic=True)
        obs, reward, terminated, truncated, _ = env.step(action)
        total, done = total + float(reward), terminated or truncated
    return total


def worker(args) -> None:
    import torch

    torch.set_num_threads(1)
    if args.worker == "SB3 TD3":
        result = run_td3(args.seed, args.frames, args.eval_every)
    else:
        result = run_ours(args.worker, args.seed, args.frames, args.eval_every)
    benchlib.emit({"method": args.worker, "seed": args.seed, **result})


# -- the comparison ------------------------------------------------------------------------------
def frames_to_threshold(run: dict, threshold: float) -> int | None:
    """Frames of the first evaluation at or above the threshold; None when never reached."""
    return next((f for f, s in zip(run["frames"], run["scores"]) if s >= threshold), None)


def final_return(run: dict, last: int) -> float:
    return float(np.mean(run["scores"][-last:]))


def aggregate(runs: list[dict], args) -> dict:
    finals = [final_return(r, args.last) for r in runs]
    reached = [frames_to_threshold(r, args.threshold) for r in runs]
    hit = [f for f in reached if f is not None]
    mean, se = benchlib.mean_se(finals)
    return {"final_return_per_seed": finals, "final_return_mean": mean,
            "final_return_se": None if np.isnan(se) else se,  # one seed: no spread (and JSON has no NaN)
            "frames_to_threshold_per_seed": reached, "seeds_reached": len(hit),
            "frames_to_threshold_mean_of_reached": float(np.mean(hit)) if hit else None,
            "frames_to_threshold_median": median_frames(reached),
            "wall_seconds_per_seed": [r["wall_seconds"] for r in runs],
            "frames_per_second": float(np.mean([args.frames / r["wall_seconds"] for r in runs]))}


def median_frames(reached: list[int | None]) -> int | None:
    """Median over seeds, a seed that never reached the threshold counting as beyond the budget;
    None when the median itself is beyond it."""
    median = float(np.median([np.inf if f is None else f for f in reached]))
    return None if np.isinf(median) else int(median)


def fmt_frames(agg: dict, seeds: int) -> str:
    per_seed = ", ".join("not reached" if f is None else f"{f:,}" for f in agg["frames_to_threshold_per_seed"])
    if seeds == 1:
        return per_seed
    median = agg["frames_to_threshold_median"]
    return f"{'not reached' if median is None else f'{median:,}'} ({per_seed})"


def table(aggregates: dict, args) -> str:
    rows = []
    for method, agg in aggregates.items():
        se = "" if agg["final_return_se"] is None else f" ± {agg['final_return_se']:.0f}"
        rows.append([method, f"{agg['final_return_mean']:.0f}{se}",
                     ", ".join(f"{v:.0f}" for v in agg["final_return_per_seed"]),
                     fmt_frames(agg, args.seeds), f"{agg['seeds_reached']}/{args.seeds}",
                     f"{np.mean(agg['wall_seconds_per_seed']):.0f}", f"{agg['frames_per_second']:.0f}"])
    reach = f"frames to >= {args.threshold:g}" + (" (median; per seed)" if args.seeds > 1 else "")
    return benchlib.markdown_table(
        ["method", f"greedy return, last {args.last} evals (mean ± s.e.)", "per seed",
         reach, "seeds reached", "wall s / run", "frames/s"], rows)


def settings(args) -> dict:
    return {"env": ENV_ID, "frames": args.frames, "eval_every": args.eval_every,
            "eval_episodes": EVAL_EPISODES, "last_evals_averaged": args.last, "threshold": args.threshold,
            "seeds": list(range(args.seeds)), "order": "per seed: " + ", ".join(METHODS),
            "ours": {"configs": CONFIGS, "entry": "steve/train.py main", "hidden": HIDDEN, "batch": BATCH,
                     "replay": REPLAY, "lr": LR, "random_frames": RANDOM_FRAMES, "updates_per_frame": 1,
                     "target": "hard copy of Q every 200 updates, no target policy",
                     "exploration": "per-dimension p=0.05 N(0,1) on the pre-tanh action",
                     "steve": "ensembles 4/4/4, H=3, 128x3 transition nets, 1000 pretraining updates"},
            "sb3_td3": {"net_arch": HIDDEN, "batch_size": BATCH, "buffer_size": REPLAY, "learning_rate": LR,
                        "gamma": GAMMA, "learning_starts": RANDOM_FRAMES, "train_freq": 1, "gradient_steps": 1,
                        "action_noise": f"Normal(0, {TD3_ACTION_NOISE})", "tau": 0.005, "policy_delay": 2,
                        "target_policy_noise": 0.2, "target_noise_clip": 0.5, "n_critics": 2}}


def main(argv=None) -> None:
    args = parse_args(argv)
    benchlib.require("stable_baselines3", "gymnasium", "mujoco")
    if args.worker:
        worker(args)
        return
    runs = {method: [] for method in METHODS}
    start = time.time()
    for seed in range(args.seeds):
        for method in METHODS:  # alternating: every method once per seed, same order every seed
            t0 = time.time()
            result = benchlib.run_child(__file__, ["--worker", method, "--seed", seed, "--frames", args.frames,
                                                   "--eval-every", args.eval_every])
            runs[method].append(result)
            print(f"{method:8s} seed {seed}: last greedy {result['scores'][-1]:8.1f}, "
                  f"{time.time() - t0:6.1f} s", file=sys.stderr, flush=True)
    wall = time.time() - start
    aggregates = {method: aggregate(method_runs, args) for method, method_runs in runs.items()}
    print(table(aggregates, args))
    print(f"\n{ENV_ID}, {args.frames:,} frames, {args.seeds} seed(s), one greedy episode every "
          f"{args.eval_every:,} frames; total wall {wall:.0f} s")
    reached = {m: a["seeds_reached"] for m, a in aggregates.items()}
    first = steve_reached_first(aggregates)
    payload = {"settings": settings(args), "aggregates": aggregates,
               "runs": {m: [{k: v for k, v in r.items() if k != "method"} for r in rs] for m, rs in runs.items()},
               "threshold_reached": reached,
               "steve_reached_first": first,
               "target_met": bool(first),  # the paper's claim: STEVE reaches the threshold in fewest frames
               "wall_seconds_total": wall, "quick": args.quick,
               "versions": benchlib.package_versions("stable-baselines3", "gymnasium", "mujoco", "torch")}
    path = benchlib.write_result(NAME, payload, args.results_dir)
    print(f"wrote {path}")


def steve_reached_first(aggregates: dict) -> bool | None:
    """The paper's claim on this budget: STEVE's median frames to threshold below both others'
    (None when STEVE's median never reached it)."""
    steve = aggregates["STEVE"]["frames_to_threshold_median"]
    if steve is None:
        return None
    others = [aggregates[m]["frames_to_threshold_median"] for m in METHODS if m != "STEVE"]
    return all(o is None or steve < o for o in others)


if __name__ == "__main__":
    run_main(main, prog="bench/steve_vs_sb3.py")
