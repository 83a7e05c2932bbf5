"""STEVE, MVE and DDPG (Buckman et al., NeurIPS 2018) from a config file, in one process.

    python steve/train.py steve/configs/experiments/goodruns/pendulum/steve0.json
    python steve/train.py experiments/goodruns/humanoid/steve0.json 0          # GPU id, as the seed
    python steve/train.py CONFIG --resume                                      # continue from the backup
    python steve/train.py experiments/goodruns/pendulum/steve0.json --smoke    # seconds

One process interleaves acting, world-model learning and value learning so that the data ratio
of the reference (at most 1/frames_per_update updates per frame for each learner, after
frames_before_learning random frames and pretrain_n world-model updates) holds exactly and a
seeded run is reproducible. Output: <output-root>/<ENV>/<EXPERIMENT>/log/{hps.json, valuerl.log,
worldmodel.log, <EXPERIMENT>.greedy.csv (hours,epochs,frames,score)}, checkpoints/ (latest
valuerl.pt and worldmodel.pt, backup.pt with the replay buffer and counters), metrics.csv,
summary.json.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

if __package__ in (None, ""):  # run as a script: make this paper's package and common/ importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.buffers import ReplayBuffer  # noqa: E402
from common.cli import ArgumentParser, Diverged, UsageError, run_main  # noqa: E402
from common.device import resolve_device, seed_everything, set_single_thread  # noqa: E402
from common.envs import make_env  # noqa: E402
from common.runs import (check_out_dir, load_checkpoint, require_finite,  # noqa: E402
                         save_checkpoint, write_divergence, write_json_atomic)
from steve.config import experiment_dir, load_config  # noqa: E402
from steve.valuerl import ValueConfig, ValueLearner, WorldModelLearner  # noqa: E402

SMOKE = {"frames": 1500, "full_random_n": 500, "pretrain_n": 100, "eval_every": 500}


def parse_args(argv):
    parser = ArgumentParser(prog="steve/train.py", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", help="experiment JSON (a path, or one under steve/configs/)")
    parser.add_argument("gpu_id", nargs="?", default=None,
                        help="the seed's GPU id (cuda:<id>); --device overrides it")
    parser.add_argument("--resume", action="store_true", help="continue the experiment from its backup")
    parser.add_argument("--output-root", default=None, help="root of the output folders (default: output/)")
    parser.add_argument("--out-dir", default=None,
                        help="the experiment folder itself (default: <output-root>/<ENV>/<EXPERIMENT>)")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG at the end")
    parser.add_argument("--frames", type=int, default=None,
                        help="env frames to train for (default: 1M; --smoke: 1500)")
    parser.add_argument("--eval-every", type=int, default=None,
                        help="frames between greedy episodes (default: 10k; --smoke: 500)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default=None, help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--smoke", action="store_true", help="a tiny budget of the same run")
    parser.add_argument("--speedrun", action="store_true",
                        help="train the world model concurrently in its own process (also on when the "
                             "config's frames_per_update is false, as the speedrun configs)")
    parser.add_argument("--corrupt-model", type=float, default=0.0, metavar="STD",
                        help="robustness test: add N(0, STD) to every imagined next state (default: 0)")
    return parser.parse_args(argv)


def value_config(cfg: dict, corrupt_std: float = 0.0) -> ValueConfig:
    policy = cfg["policy_config"]
    expansion = policy.get("value_expansion") or {}
    algo = {"mve_tdk": "mve"}.get(policy["algo"], policy["algo"])
    bayes = policy.get("bayesian") or {}
    return ValueConfig(algo=algo, rollout_len=expansion.get("rollout_len", 0),
                       tdk_trick=bool(expansion.get("tdk_trick", False)),
                       q_members=bayes.get("ensemble_size", 1), hidden_dim=policy["hidden_dim"],
                       hidden_layers=policy["hidden_layers"], discount=cfg["env"]["discount"],
                       reward_scale=cfg["env"]["reward_scale"], lr=policy["learning_rate"],
                       policy_reg=policy["pretanh_reg"], target_copy_every=policy["epoch_every_n"],
                       corrupt_std=corrupt_std)


def make_world_model(cfg: dict, obs_dim: int, action_dim: int, seed: int) -> WorldModelLearner | None:
    model = cfg.get("model_config")
    if not model:
        return None
    bayes = model.get("bayesian") or {}
    return WorldModelLearner(obs_dim, action_dim, bayes.get("transition", {}).get("ensemble_size", 1),
                             bayes.get("reward", {}).get("ensemble_size", 1), seed,
                             lr=model["learning_rate"], l2_weight=model["l2_reg"],
                             transition_hidden=model["transition_hidden_dim"],
                             transition_layers=model["transition_hidden_layers"],
                             aux_hidden=model["aux_hidden_dim"], aux_layers=model["aux_hidden_layers"])


def explore(pre_tanh: np.ndarray, rule: dict, rng: np.random.Generator) -> np.ndarray:
    """The exploration rule the reference intended (per action dimension, with probability p,
    tanh(pre-tanh + std·N(0,1))), Gaussian noise on the action, or none (what it ran)."""
    action = np.tanh(pre_tanh)
    if rule["type"] == "per_dim_tanh_noise":
        noisy = np.tanh(pre_tanh + rule.get("std", 1.0) * rng.standard_normal(pre_tanh.shape))
        return np.where(rng.random(pre_tanh.shape) < rule.get("prob", 0.05), noisy, action)
    if rule["type"] == "gaussian":
        return np.clip(action + rule.get("std", 0.1) * rng.standard_normal(action.shape), -1, 1)
    return action


class Run:
    """Everything a backup holds: learners, replay, counters, RNGs."""

    def __init__(self, cfg: dict, seed: int, corrupt_std: float = 0.0):
        self.cfg, self.seed = cfg, seed
        obs_dim, action_dim = int(np.prod(cfg["env"]["obs_dims"])), cfg["env"]["action_dim"]
        self.value = ValueLearner(obs_dim, action_dim, value_config(cfg, corrupt_std), seed)
        self.world = make_world_model(cfg, obs_dim, action_dim, seed)
        self.replay = ReplayBuffer(cfg["policy_config"]["replay_size"], (obs_dim,), (action_dim,), seed=seed)
        self.rng = np.random.default_rng(seed)
        self.frames = self.episodes = self.evals = self.test_steps = 0
        self.hours_before = 0.0
        self.pretrained = self.world is None
        self.concurrent = None  # a WorldModelProcess in the speedrun layout
        self.world_loads = 0    # world-model weights received from it

    def state_dict(self) -> dict:
        return {"value": self.value.state_dict(), "world": self.world.state_dict() if self.world else None,
                "replay": self.replay.state_dict(), "rng": self.rng.bit_generator.state,
                "frames": self.frames, "episodes": self.episodes, "evals": self.evals,
                "test_steps": self.test_steps,
                "hours": self.hours_before, "pretrained": self.pretrained}

    def load_state_dict(self, state: dict) -> None:
        self.value.load_state_dict(state["value"])
        if self.world:
            self.world.load_state_dict(state["world"])
        self.replay.load_state_dict(state["replay"])
        self.rng.bit_generator.state = state["rng"]
        self.frames, self.episodes, self.evals = state["frames"], state["episodes"], state["evals"]
        self.test_steps = state["test_steps"]
        self.hours_before, self.pretrained = state["hours"], state["pretrained"]


def to_env(action: np.ndarray, space) -> np.ndarray:
    """[-1, 1] -> the env's action box."""
    return (space.low + (action + 1.0) * 0.5 * (space.high - space.low)).astype(np.float32)


def greedy_episode(run: Run, env) -> tuple[float, int]:
    obs, _ = env.reset()
    total, steps, done = 0.0, 0, False
    while not done:
        action = run.value.act(torch.as_tensor(obs)).numpy()
        obs, reward, terminated, truncated, _ = env.step(to_env(action, env.action_space))
        total, steps, done = total + reward, steps + 1, terminated or truncated
    return total, steps


def train(run: Run, args, out: Path, budget: dict, env, eval_env) -> dict:
    cfg, policy = run.cfg, run.cfg["policy_config"]
    log_dir = out / cfg["log_path"]
    greedy_path = log_dir / f"{cfg['name']}.greedy.csv"
    new_greedy = not greedy_path.exists()
    greedy = open(greedy_path, "a", newline="")
    greedy_csv = csv.writer(greedy)
    if new_greedy:
        greedy_csv.writerow(["hours", "epochs", "frames", "score"])
    metrics_path = out / "metrics.csv"
    new_metrics = not metrics_path.exists()
    metrics = open(metrics_path, "a", newline="")
    metrics_csv = csv.DictWriter(metrics, ["env_steps", "test_steps", "score", "model_use", "updates", "hours",
                                           "wall_seconds"])
    if new_metrics:
        metrics_csv.writeheader()
    value_log, world_log = open(log_dir / "valuerl.log", "a"), open(log_dir / "worldmodel.log", "a")
    start, last = time.time(), {"model_use": 0.0}
    obs, _ = env.reset(seed=args.seed + run.episodes if run.frames == 0 else None)
    bar = tqdm(total=budget["frames"], initial=run.frames, unit="frame", desc=cfg["name"], dynamic_ncols=True)
    try:
        while run.frames < budget["frames"]:
            if run.frames < budget["random_frames"]:
                action = run.rng.uniform(-1, 1, env.action_space.shape)
            else:
                with torch.no_grad():
                    pre = run.value.policy.pre_tanh(torch.as_tensor(obs)).numpy()
                action = explore(pre, policy["exploration"], run.rng)
            nxt, reward, terminated, truncated, _ = env.step(to_env(action, env.action_space))
            run.replay.add(obs, action, reward, nxt, terminated, truncated)
            if run.concurrent:
                run.concurrent.send((obs, action, reward, nxt, terminated, truncated))
            run.frames += 1
            obs = nxt
            if terminated or truncated:
                run.episodes += 1
                obs, _ = env.reset()
            if run.frames >= budget["random_frames"]:
                last.update(learn(run, budget, value_log, world_log))
            if run.frames % budget["eval_every"] == 0 or run.frames == budget["frames"]:
                score, steps = greedy_episode(run, eval_env)
                require_finite("the greedy episode's score", score, run.frames)
                run.evals += 1
                run.test_steps += steps
                hours = run.hours_before + (time.time() - start) / 3600
                epochs = run.value.updates // policy["epoch_every_n"]
                greedy_csv.writerow([f"{hours:.5f}", epochs, run.frames, f"{score:.3f}"])
                metrics_csv.writerow({"env_steps": run.frames, "test_steps": run.test_steps, "score": round(score, 3),
                                      "model_use": round(last["model_use"], 4), "updates": run.value.updates,
                                      "hours": round(hours, 5), "wall_seconds": round(hours * 3600, 1)})
                greedy.flush(), metrics.flush()
                bar.set_postfix(score=f"{score:.1f}", model_use=f"{last['model_use']:.2f}")
                save_latest(run, out)
            if run.frames % budget["backup_every"] == 0 or run.frames == budget["frames"]:
                run.hours_before += (time.time() - start) / 3600
                start = time.time()
                save_checkpoint(run.state_dict(), out / cfg["save_model_path"] / "backup.pt")
            bar.update(1)
    finally:
        bar.close()
        for f in (greedy, metrics, value_log, world_log):
            f.close()
    return last


def learn(run: Run, budget: dict, value_log, world_log) -> dict:
    """World-model pretraining once, then each learner catches up to its update allowance."""
    cfg, batch_size = run.cfg, run.cfg["policy_config"]["batch_size"]
    sample = lambda: tuple(run.replay.sample(batch_size)[:5])  # noqa: E731  obs, act, rew, next, term
    info = {}
    if run.concurrent:  # the world model trains elsewhere: take its newest weights, one update per frame
        state = run.concurrent.newest()
        if state is not None:
            run.world.model.load_state_dict(state)
            run.pretrained = True
            run.world_loads += 1
        while run.value.updates < run.frames - budget["random_frames"]:
            info = run.value.update(sample(), run.world.model if run.pretrained else None)
            require_finite("the value learner's loss", list(info.values()), run.frames)
            if run.value.updates % cfg["policy_config"]["log_every_n"] == 0:
                value_log.write(json.dumps({"updates": run.value.updates, "frames": run.frames, **info}) + "\n")
        return info
    if not run.pretrained:
        for _ in range(budget["pretrain_n"]):
            info = run.world.update(sample())
        world_log.write(json.dumps({"pretrain_updates": budget["pretrain_n"], **info}) + "\n")
        run.pretrained = True
    learning_frames = run.frames - budget["random_frames"]
    allowance = int(learning_frames / run.cfg["policy_config"]["frames_per_update"])
    while run.value.updates < allowance:
        if run.world is not None:
            winfo = run.world.update(sample())
            if run.world.updates % cfg["model_config"]["log_every_n"] == 0:
                world_log.write(json.dumps({"updates": run.world.updates, **winfo}) + "\n")
        info = run.value.update(sample(), run.world.model if run.world else None)
        require_finite("the value learner's loss", list(info.values()), run.frames)
        if run.value.updates % cfg["policy_config"]["log_every_n"] == 0:
            value_log.write(json.dumps({"updates": run.value.updates, "frames": run.frames, **info}) + "\n")
    return info


def save_latest(run: Run, out: Path) -> None:
    ckpt = out / run.cfg["save_model_path"]
    save_checkpoint(run.value.state_dict(), ckpt / "valuerl.pt")
    if run.world:
        save_checkpoint(run.world.state_dict(), ckpt / "worldmodel.pt")


def main(argv=None) -> None:
    args = parse_args(argv)
    cfg = load_config(args.config)
    if args.output_root:
        cfg["output_root"] = args.output_root
    device = args.device or (f"cuda:{args.gpu_id}" if args.gpu_id is not None else "cpu")
    resolve_device(device)  # validates; the networks here are small and run on the CPU
    budget = {"frames": 1_000_000, "eval_every": 10_000,
              "full_random_n": cfg["agent_config"]["full_random_n"],
              "pretrain_n": (cfg.get("model_config") or {}).get("pretrain_n") or 0,
              "backup_every": cfg["policy_config"]["backup_every_n"]}
    if args.smoke:
        budget.update(SMOKE)
        cfg["policy_config"]["frames_before_learning"] = SMOKE["full_random_n"]
    budget.update({key: value for key, value in (("frames", args.frames), ("eval_every", args.eval_every))
                   if value is not None})
    budget["random_frames"] = max(budget["full_random_n"], cfg["policy_config"]["frames_before_learning"])
    for key in ("frames", "eval_every"):
        if budget[key] <= 0:
            raise UsageError(f"--{key.replace('_', '-')} must be positive, got {budget[key]}")
    if args.corrupt_model < 0:
        raise UsageError(f"--corrupt-model must be >= 0, got {args.corrupt_model}")
    if args.seed < 0:   # gymnasium and numpy take no negative seed
        raise UsageError(f"--seed must be non-negative, got {args.seed}")
    out = Path(args.out_dir) if args.out_dir else experiment_dir(cfg)
    backup = out / cfg["save_model_path"] / "backup.pt"
    if args.resume and not backup.is_file():
        raise UsageError(f"--resume: no backup at {backup}")
    if not args.resume and out.exists():
        raise UsageError(f"{out} already exists; continue it with --resume or choose another --output-root")
    if not args.resume:
        check_out_dir(out)   # a writable place, before anything is written
    env = make_env(cfg["env"]["name"], seed=args.seed, max_episode_steps=cfg["env"]["max_frames"])
    eval_env = make_env(cfg["env"]["name"], seed=args.seed + 100, max_episode_steps=cfg["env"]["max_frames"])
    saved = load_checkpoint(backup) if args.resume else None   # a damaged backup: one line, exit 2
    (out / cfg["log_path"]).mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / cfg["log_path"] / "hps.json", cfg)
    write_json_atomic(out / "config.json", {**cfg, "_run": {"seed": args.seed, "frames": budget["frames"],
                                                            "eval_every": budget["eval_every"],
                                                            "corrupt_model": args.corrupt_model}})
    seed_everything(args.seed)
    set_single_thread()
    run = Run(cfg, args.seed, args.corrupt_model)
    if saved is not None:
        run.load_state_dict(saved)
    speedrun = args.speedrun or cfg["policy_config"]["frames_per_update"] is False
    if speedrun and run.world is not None:
        from steve.speedrun import WorldModelProcess

        obs_dim = int(np.prod(cfg["env"]["obs_dims"]))
        run.concurrent = WorldModelProcess(cfg, args.seed, obs_dim, cfg["env"]["action_dim"],
                                           out / cfg["log_path"] / "worldmodel.log")
        run.pretrained = False  # until the first weights arrive, the targets are DDPG's
        if run.replay.size:  # resuming: the world-model process starts from all the data so far
            for i in range(run.replay.size):
                b = run.replay
                run.concurrent.send((b.obs[i], b.actions[i], b.rewards[i], b.next_obs[i],
                                     b.terminated[i], b.truncated[i]))
    started = time.time()
    try:
        last = train(run, args, out, budget, env, eval_env)
    except Diverged as error:   # summary.json says so; the last backup stays as it was
        scores = [float(row["score"]) for row in csv.DictReader(open(out / "metrics.csv"))]
        write_divergence(out, error, {"env_steps": run.frames, "test_steps": run.test_steps,
                                      "final_return": scores[-1] if scores else None,
                                      "best_return": max(scores) if scores else None,
                                      "wall_seconds": round(time.time() - started, 1),
                                      "updates": run.value.updates}, backup)
        raise
    finally:
        if run.concurrent:
            run.concurrent.close()
    scores = [float(row["score"]) for row in csv.DictReader(open(out / "metrics.csv"))]
    summary = {"env_steps": run.frames, "test_steps": run.test_steps, "final_return": scores[-1] if scores else None,
               "best_return": max(scores) if scores else None, "wall_seconds": round(time.time() - started, 1),
               "algo": cfg["policy_config"]["algo"], "env": cfg["env"]["name"], "experiment": cfg["name"],
               "updates": run.value.updates, "model_use": last.get("model_use", 0.0), "seed": args.seed,
               "layout": "speedrun" if run.concurrent else "one process", "world_model_loads": run.world_loads}
    write_json_atomic(out / "summary.json", summary)
    if not args.no_plots:
        from steve.plots import plot_run

        plot_run(out)
    print(f"{cfg['name']} on {cfg['env']['name']}: last greedy score {summary['final_return']}, "
          f"best {summary['best_return']}, {run.frames} frames, {run.value.updates} updates -> {out}")


if __name__ == "__main__":
    run_main(main, prog="steve/train.py")
