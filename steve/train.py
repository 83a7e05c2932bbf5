"""STEVE, MVE and DDPG (Buckman et al., NeurIPS 2018) from a config file, in one process.

    python steve/train.py steve/configs/experiments/goodruns/pendulum/steve0.json
    python steve/train.py experiments/goodruns/humanoid/steve0.json 0          # GPU id, as the seed
    python steve/train.py experiments/goodruns/humanoid/steve0.json --device cpu
    python steve/train.py CONFIG --resume                                      # continue from the backup
    python steve/train.py CONFIG --env Hopper-v5 --set policy_config.batch_size=256
    python steve/train.py experiments/goodruns/pendulum/steve0.json --smoke    # seconds

One process interleaves acting, world-model learning and value learning so that each learner
keeps the reference's data ratio exactly: after its own frames_before_learning frames (and, for
the world model, pretrain_n updates), a learner makes update i only while frames gathered since
then > frames_per_update * i. agent_config.count x batch_size envs act in lockstep with the
interactors' copy of the policy, refreshed every reload_every_n frames; every --eval-every
frames evaluator_config.count x batch_size greedy episodes are played. A seeded run is
reproducible, and a backup (learners, replay, RNGs, the envs' episodes in progress, the log
positions) every --backup-every frames lets `--resume` continue exactly after any kill.
Output: <output-root>/<ENV>/<EXPERIMENT>/log/{hps.json, valuerl.log, worldmodel.log,
<EXPERIMENT>.greedy.csv (hours,epochs,frames,score)}, checkpoints/ (valuerl.pt and
worldmodel.pt every epoch_every_n updates, backup.pt), metrics.csv, summary.json.
"""
from __future__ import annotations

import argparse
import copy
import csv
import json
import shutil
import os
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

if __package__ in (None, ""):  # run as a script: make this paper's package and common/ importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.buffers import ReplayBuffer  # noqa: E402
from common.cli import ArgumentParser, Diverged, UsageError, run_main  # noqa: E402
from common.config import SEED  # noqa: E402
from common.device import flush_denormals, resolve_device, seed_everything, set_single_thread  # noqa: E402
from common.envs import env_state, make_env, restore_env_state  # noqa: E402
from common.runs import (check_out_dir, is_temporary, load_checkpoint, lock_run_dir, require_finite,  # noqa: E402
                         require_writable, run_id_of, save_checkpoint, seal_checkpoint, unseal_checkpoint,
                         versions, write_divergence, write_json_atomic)
from steve.config import apply_overrides, experiment_dir, load_config, validate_config  # noqa: E402
from steve.models import calibration  # noqa: E402
from steve.valuerl import ValueConfig, ValueLearner, WorldModelLearner  # noqa: E402

SMOKE = {"frames": 1500, "eval_every": 500}
SMOKE_CONFIG = {"full_random_n": 500, "frames_before_learning": 500, "pretrain_n": 100}
LOGS = ("metrics.csv", "log/{name}.greedy.csv", "log/valuerl.log", "log/worldmodel.log")


def parse_args(argv):
    parser = ArgumentParser(prog="steve/train.py", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config_file", nargs="?", default=None,
                        help="experiment JSON (a path, or one under steve/configs/)")
    parser.add_argument("gpu_id", nargs="?", default=None,
                        help="the seed's GPU id: train on cuda:<id> (--device overrides it)")
    parser.add_argument("--config", default=None, help="the experiment JSON, as a flag")
    parser.add_argument("--env", default=None,
                        help="another gymnasium id; obs_dims, action_dim and max_frames follow the env")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key, e.g. policy_config.batch_size=256 (repeatable)")
    parser.add_argument("--resume", action="store_true", help="continue the experiment from its backup")
    parser.add_argument("--output-root", default=None, help="root of the output folders (default: output/)")
    parser.add_argument("--out-dir", default=None,
                        help="the experiment folder itself (default: <output-root>/<ENV>/<EXPERIMENT>)")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG at the end")
    parser.add_argument("--frames", type=int, default=None,
                        help="env frames to train for (default: 1M; --smoke: 1500)")
    parser.add_argument("--eval-every", type=int, default=None,
                        help="frames between greedy evaluations (default: 10k; --smoke: 500)")
    parser.add_argument("--backup-every", type=int, default=None,
                        help="frames between backups for --resume (default: a tenth of --frames); "
                             "a learner's backup_every_n updates also trigger one, and the end always does")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: 0)")
    parser.add_argument("--device", default=None,
                        help="auto | cpu | cuda | cuda:N (default: the GPU id if given, else auto)")
    parser.add_argument("--smoke", action="store_true", help="a tiny budget of the same run")
    parser.add_argument("--speedrun", action="store_true",
                        help="the reference's concurrent layout: both learners train freely in their own "
                             "processes while this one acts (also on when the config's frames_per_update "
                             "is false, as the speedrun configs); not reproducible run to run")
    parser.add_argument("--corrupt-model", type=float, default=None, metavar="STD",
                        help="robustness test: add N(0, STD) to every imagined next state (default: 0)")
    parser.add_argument("--compile", action="store_true",
                        help="the value and world-model updates through torch.compile (equal to eager up "
                             "to float rounding; eager, with one line, where compiling fails); kept by --resume")
    # intermixed: the positional GPU id may also come after flags (`CONFIG --no-plots 0`)
    return parser.parse_intermixed_args(argv)


# -- the config and the learners -----------------------------------------------------------------
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
                       corrupt_std=corrupt_std, q_routing=policy.get("q_routing", "random"),
                       q_train_samples=bayes.get("train_sample_count"),
                       q_eval_samples=bayes.get("eval_sample_count"))


def make_world_model(cfg: dict, obs_dim: int, action_dim: int, seed: int,
                     device: str | torch.device = "cpu", compile: bool = False) -> WorldModelLearner | None:
    model = cfg.get("model_config")
    if not model:
        return None
    bayes = model.get("bayesian") or {}
    transition, reward = bayes.get("transition", {}), bayes.get("reward", {})
    return WorldModelLearner(obs_dim, action_dim, transition.get("ensemble_size", 1),
                             reward.get("ensemble_size", 1), seed,
                             lr=model["learning_rate"], l2_weight=model["l2_reg"],
                             transition_hidden=model["transition_hidden_dim"],
                             transition_layers=model["transition_hidden_layers"],
                             aux_hidden=model["aux_hidden_dim"], aux_layers=model["aux_hidden_layers"],
                             device=device, transition_samples=_samples(transition),
                             reward_samples=_samples(reward), full_batch=model.get("full_batch", False),
                             compile=compile)


def _samples(ensemble: dict) -> tuple[int, int] | None:
    return (ensemble["train_sample_count"], ensemble["eval_sample_count"]) if ensemble else None


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
    """Everything a backup holds: learners, replay, the interactors' policy, counters, RNGs."""

    def __init__(self, cfg: dict, seed: int, corrupt_std: float = 0.0, device="cpu", compile: bool = False):
        self.cfg, self.seed, self.device = cfg, seed, torch.device(device)
        policy, model = cfg["policy_config"], cfg.get("model_config")
        obs_dim, action_dim = int(np.prod(cfg["env"]["obs_dims"])), cfg["env"]["action_dim"]
        self.value = ValueLearner(obs_dim, action_dim, value_config(cfg, corrupt_std), seed, device=device,
                                  compile=compile)
        self.world = make_world_model(cfg, obs_dim, action_dim, seed, device, compile=compile)
        self.replay = ReplayBuffer(policy["replay_size"], (obs_dim,), (action_dim,), seed=seed)
        # the world-model learner keeps its own replay in the reference; one buffer serves both
        # when the sizes agree (same contents), a second one holds model_config.replay_size
        separate = model is not None and model["replay_size"] != policy["replay_size"]
        self.model_replay = (ReplayBuffer(model["replay_size"], (obs_dim,), (action_dim,), seed=seed + 7)
                             if separate else self.replay)
        self.actor = copy.deepcopy(self.value.policy).requires_grad_(False)  # the interactors' copy
        self.rng = np.random.default_rng(seed)
        self.frames = self.episodes = self.evals = self.test_steps = self.actor_frame = 0
        self.hours_before = 0.0
        self.pretrained = self.world is None
        self.concurrent = None  # the SpeedrunLearners in the speedrun layout
        self.world_loads = 0    # world-model weights the value learner received there
        self.first_world_seconds = None

    def state_dict(self) -> dict:
        state = {"value": self.value.state_dict(), "world": self.world.state_dict() if self.world else None,
                 "replay": self.replay.state_dict(), "actor": self.actor.state_dict(),
                 "rng": self.rng.bit_generator.state, "torch_rng": torch.get_rng_state(),
                 "frames": self.frames, "episodes": self.episodes, "evals": self.evals,
                 "test_steps": self.test_steps, "actor_frame": self.actor_frame,
                 "hours": self.hours_before, "pretrained": self.pretrained}
        if self.model_replay is not self.replay:
            state["model_replay"] = self.model_replay.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        self.value.load_state_dict(state["value"])
        if self.world:
            self.world.load_state_dict(state["world"])
        self.replay.load_state_dict(state["replay"])
        if self.model_replay is not self.replay:
            self.model_replay.load_state_dict(state["model_replay"])
        self.actor.load_state_dict(state["actor"])
        self.rng.bit_generator.state = state["rng"]
        torch.set_rng_state(state["torch_rng"])
        self.frames, self.episodes, self.evals = state["frames"], state["episodes"], state["evals"]
        self.test_steps, self.actor_frame = state["test_steps"], state["actor_frame"]
        self.hours_before, self.pretrained = state["hours"], state["pretrained"]


def to_env(action: np.ndarray, space) -> np.ndarray:
    """[-1, 1] -> the env's action box."""
    return (space.low + (action + 1.0) * 0.5 * (space.high - space.low)).astype(np.float32)


def greedy_episode(run: Run, env, record: list | None = None) -> tuple[float, int]:
    """One greedy episode; `record` (a list) gets its transitions (s, a in [-1, 1], r, s')."""
    obs, _ = env.reset()
    total, steps, done = 0.0, 0, False
    while not done:
        action = run.value.act(torch.as_tensor(obs)).numpy()
        nxt, reward, terminated, truncated, _ = env.step(to_env(action, env.action_space))
        if record is not None:
            record.append((obs, action, reward, nxt))
        obs, total, steps, done = nxt, total + reward, steps + 1, terminated or truncated
    return total, steps


CALIBRATION_COLUMNS = ("calib_state_1", "calib_state_H", "calib_reward_1")


def model_calibration(run: Run, transitions: list) -> dict:
    """steve.models.calibration on an evaluation episode the model never trained on: the
    one-step and H-step state error over ensemble variance and the reward's (H = rollout_len)."""
    horizon = run.value.cfg.rollout_len
    obs, action, reward, next_obs = (torch.as_tensor(np.array(column), dtype=torch.float32, device=run.device)
                                     for column in zip(*transitions))
    ratios = calibration(run.world.model, obs, action, reward, next_obs, horizon)
    deepest = max((k for k in range(1, horizon + 1) if f"state_{k}" in ratios), default=1)
    # a one-member ensemble (MVE's model) has no spread: those columns stay empty
    return {"calib_state_1": ratios.get("state_1", ""), "calib_state_H": ratios.get(f"state_{deepest}", ""),
            "calib_reward_1": ratios.get("reward_1", "")}


# -- acting ----------------------------------------------------------------------------------------
def choose_actions(run: Run, obs: np.ndarray, budget: dict) -> np.ndarray:
    """Uniform random actions for the first random frames, then the interactors' copy of the
    policy (reloaded from the learner every reload_every_n frames) with exploration noise."""
    if run.frames < budget["random_frames"]:
        return run.rng.uniform(-1, 1, (len(obs), run.cfg["env"]["action_dim"]))
    reload_every = run.cfg["agent_config"]["reload_every_n"]
    actor = run.value.policy   # reloaded at every step anyway: act with the learner's weights, no copy
    if reload_every > len(obs):
        if run.frames - run.actor_frame >= reload_every:
            run.actor.load_state_dict(run.value.policy.state_dict())
            run.actor_frame = run.frames
        actor = run.actor
    with torch.no_grad():
        pre = actor.pre_tanh(torch.as_tensor(obs, device=run.device)).cpu().numpy()
    return explore(pre, run.cfg["policy_config"]["exploration"], run.rng)


def act(run: Run, envs: list, obs: np.ndarray, budget: dict) -> np.ndarray:
    """One step of every acting env; their transitions go to the replay memories."""
    actions = choose_actions(run, obs, budget)
    for i, env in enumerate(envs):
        nxt, reward, terminated, truncated, _ = env.step(to_env(actions[i], env.action_space))
        transition = (obs[i], actions[i], reward, nxt, terminated, truncated)
        run.replay.add(*transition)
        if run.model_replay is not run.replay:
            run.model_replay.add(*transition)
        if run.concurrent:   # a copy: obs[i] is overwritten below
            run.concurrent.send((obs[i].copy(), *transition[1:]))
        run.frames += 1
        if terminated or truncated:
            run.episodes += 1
            nxt, _ = env.reset()
        obs[i] = nxt
    return obs


# -- learning ----------------------------------------------------------------------------------
def learn(run: Run, logs: dict) -> dict:
    """Each learner catches up with its data ratio (reference learner.py: update i is allowed
    while frames gathered since frames_before_learning > frames_per_update * i); the world
    model first pretrains pretrain_n updates once it has its frames. World then value, so
    equal settings interleave one world update with one value update."""
    cfg, info = run.cfg, {}
    policy, model = cfg["policy_config"], cfg.get("model_config")
    if run.concurrent:
        return learn_from_learner_processes(run, logs)
    if run.world is not None and not run.pretrained and run.frames >= model["frames_before_learning"]:
        pretrain_n = model["pretrain_n"] or 0   # the speedrun configs say false
        for _ in range(pretrain_n):
            winfo = run.world.update(world_batch(run))
        if pretrain_n:
            logs["world"].write(json.dumps({"pretrain_updates": pretrain_n, **winfo}) + "\n")
        run.world.updates, run.pretrained = 0, True   # the reference restarts the count after pretraining
    while True:
        progressed = False
        if run.world is not None and run.pretrained and allowed(run.frames, model, run.world.updates):
            winfo = run.world.update(world_batch(run))
            require_finite("the world model's loss", list(winfo.values()), run.frames)
            if run.world.updates % model["log_every_n"] == 0:
                logs["world"].write(json.dumps({"updates": run.world.updates, **winfo}) + "\n")
            if run.world.updates % model["epoch_every_n"] == 0:
                save_checkpoint(run.world.state_dict(), logs["checkpoints"] / "worldmodel.pt")
            progressed = True
        if allowed(run.frames, policy, run.value.updates):
            info = value_step(run, logs)
            progressed = True
        if not progressed:
            return info


def allowed(frames: int, learner: dict, updates: int) -> bool:
    """frames_per_update false (the speedrun configs: learners run freely in the reference)
    means one update per frame when the learner shares this process with acting."""
    gathered = frames - learner["frames_before_learning"]
    rate = learner["frames_per_update"]
    return gathered > (1.0 if rate is False else rate) * updates


def world_batch(run: Run) -> tuple:
    return tuple(run.model_replay.sample(run.cfg["model_config"]["batch_size"])[:5])


def value_step(run: Run, logs: dict) -> dict:
    policy = run.cfg["policy_config"]
    batch = tuple(run.replay.sample(policy["batch_size"])[:5])   # obs, act, rew, next, terminated
    info = run.value.update(batch, run.world.model if run.world is not None and run.pretrained else None)
    require_finite("the value learner's loss", list(info.values()), run.frames)
    if run.value.updates % policy["log_every_n"] == 0:
        logs["value"].write(json.dumps({"updates": run.value.updates, "frames": run.frames, **info}) + "\n")
    if run.value.updates % policy["epoch_every_n"] == 0:
        save_checkpoint(run.value.state_dict(), logs["checkpoints"] / "valuerl.pt")
    return info


def learn_from_learner_processes(run: Run, logs: dict) -> dict:
    """The speedrun layout: both learners train freely in their own processes; take their newest
    published states (the policy the interactors reload, and what the backups hold)."""
    world = run.concurrent.newest_world()
    if world is not None:
        run.world.load_state_dict(world)
        run.pretrained = True
    return take_value_state(run, run.concurrent.newest_value())


def take_value_state(run: Run, published: dict | None) -> dict:
    if published is None:
        return {}
    run.value.load_state_dict(published["value"])
    run.world_loads, run.first_world_seconds = published["world_loads"], published["first_world_weights_s"]
    return {"model_use": published["model_use"]}


# -- the run --------------------------------------------------------------------------------------
def train(run: Run, args, out: Path, budget: dict, envs: list, eval_envs: list, saved: dict | None) -> dict:
    cfg, policy = run.cfg, run.cfg["policy_config"]
    paths = log_paths(out, cfg)
    if saved is not None:   # rows and log lines written after the backup are dropped
        for key, size in saved["logs"].items():
            learners_own = run.concurrent and key in ("value", "world")   # speedrun: written elsewhere, racing
            if paths[key].exists() and not learners_own:
                os.truncate(paths[key], size)
    new = {key: not path.exists() or path.stat().st_size == 0 for key, path in paths.items()}
    files = {key: open(path, "a", newline="") for key, path in paths.items()}
    greedy_csv, metrics_csv = csv.writer(files["greedy"]), csv.DictWriter(
        files["metrics"], METRICS_COLUMNS if new["metrics"] else csv_header(paths["metrics"]), extrasaction="ignore")
    if new["greedy"]:
        greedy_csv.writerow(["hours", "epochs", "frames", "score"])
    if new["metrics"]:
        metrics_csv.writeheader()
    logs = {"value": files["value"], "world": files["world"], "checkpoints": out / cfg["save_model_path"]}
    if saved is not None:
        for env, state in zip(envs, saved["envs"]):
            restore_env_state(env, state)
        for env, state in zip(eval_envs, saved["eval_envs"]):
            restore_env_state(env, state)
        obs = np.array(saved["obs"], dtype=np.float32)
    else:
        obs = np.stack([env.reset()[0] for env in envs]).astype(np.float32)
    start, last = time.time(), {"model_use": 0.0}
    backups_at = (run.value.updates // policy["backup_every_n"],
                  run.world.updates // cfg["model_config"]["backup_every_n"] if run.world else 0)
    bar = tqdm(total=budget["frames"], initial=run.frames, unit="frame", desc=cfg["name"], dynamic_ncols=True)
    try:
        while run.frames < budget["frames"]:
            before = run.frames
            obs = act(run, envs, obs, budget)
            last.update(learn(run, logs))
            if crossed(before, run.frames, budget["eval_every"]) or run.frames >= budget["frames"]:
                evaluate(run, eval_envs, start, last, greedy_csv, metrics_csv, files)
            updates_now = (run.value.updates // policy["backup_every_n"],
                           run.world.updates // cfg["model_config"]["backup_every_n"] if run.world else 0)
            if (crossed(before, run.frames, budget["backup_every"]) or run.frames >= budget["frames"]
                    or updates_now != backups_at):
                run.hours_before += (time.time() - start) / 3600
                start, backups_at = time.time(), updates_now
                backup(run, out, envs, eval_envs, obs, files, paths)
            bar.update(run.frames - before)
        if run.concurrent:   # the value learner's last state, then a backup that holds it
            last.update(take_value_state(run, run.concurrent.close()))
            backup(run, out, envs, eval_envs, obs, files, paths)
    finally:
        bar.close()
        for f in files.values():
            f.close()
    save_checkpoint(run.value.state_dict(), out / cfg["save_model_path"] / "valuerl.pt")
    if run.world:
        save_checkpoint(run.world.state_dict(), out / cfg["save_model_path"] / "worldmodel.pt")
    return last


METRICS_COLUMNS = ["env_steps", "test_steps", "score", "model_use", "updates", "hours", "wall_seconds",
                   *CALIBRATION_COLUMNS]


def csv_header(path: Path) -> list[str]:
    """The columns of a metrics.csv being continued (a run started before a column existed keeps
    its own columns)."""
    with open(path, newline="") as f:
        return next(csv.reader(f))


def crossed(before: int, now: int, every: int) -> bool:
    return now // every > before // every


def evaluate(run: Run, eval_envs: list, start: float, last: dict, greedy_csv, metrics_csv, files) -> None:
    """The evaluators: one greedy episode per evaluator env, one greedy.csv row each (as the
    reference's evaluators write); metrics.csv gets their mean."""
    scores = []
    hours = run.hours_before + (time.time() - start) / 3600
    epochs = run.value.updates // run.cfg["policy_config"]["epoch_every_n"]
    # the first evaluator's episode, for the calibration (not in the speedrun layout, where the
    # world model trains in its own process and this one's copy is not kept current)
    episode = [] if run.world is not None and not run.concurrent else None
    for env in eval_envs:
        score, steps = greedy_episode(run, env, episode if env is eval_envs[0] else None)
        require_finite("the greedy episode's score", score, run.frames)
        run.test_steps += steps
        scores.append(score)
        greedy_csv.writerow([f"{hours:.5f}", epochs, run.frames, f"{score:.3f}"])
    run.evals += 1
    steve = run.cfg["policy_config"]["algo"] == "steve"
    metrics_csv.writerow({"env_steps": run.frames, "test_steps": run.test_steps,
                          "score": round(float(np.mean(scores)), 3),
                          "model_use": round(float(last["model_use"]), 4) if steve else "",
                          "updates": run.value.updates, "hours": round(hours, 5),
                          "wall_seconds": round(hours * 3600, 1),
                          **({key: value if value == "" else round(value, 4)
                              for key, value in model_calibration(run, episode).items()}
                             if episode else dict.fromkeys(CALIBRATION_COLUMNS, ""))})
    for f in files.values():
        f.flush()


def backup(run: Run, out: Path, envs: list, eval_envs: list, obs: np.ndarray, files: dict, paths: dict) -> None:
    """An atomic backup: everything to continue exactly, and how long each log was then."""
    for f in files.values():
        f.flush()
    state = {**run.state_dict(), "envs": [env_state(env) for env in envs],
             "eval_envs": [env_state(env) for env in eval_envs], "obs": obs.copy(),
             "logs": {key: path.stat().st_size for key, path in paths.items()}}
    save_checkpoint(seal_checkpoint(state, out), out / run.cfg["save_model_path"] / "backup.pt")


def log_paths(out: Path, cfg: dict) -> dict[str, Path]:
    names = [name.format(name=cfg["name"]) for name in LOGS]
    return {key: out / name for key, name in zip(("metrics", "greedy", "value", "world"), names)}


# -- setup ----------------------------------------------------------------------------------------
def pick_device(args) -> torch.device:
    """--device wins; else the seed's GPU id (which must exist); else auto (CUDA when present)."""
    if args.device is not None:
        return resolve_device(args.device)
    if args.gpu_id is not None:
        if not args.gpu_id.isdigit():
            raise UsageError(f"the GPU id must be a number such as 0, got {args.gpu_id!r}")
        if not torch.cuda.is_available():
            raise UsageError(f"GPU id {args.gpu_id} asks for cuda:{args.gpu_id}, but torch finds no CUDA "
                             "device here; add --device cpu to train on the CPU")
        return resolve_device(f"cuda:{args.gpu_id}")
    return resolve_device("auto")


def resolve_experiment(args, smoke: bool) -> dict:
    """The config file (positional or --config), --smoke's settings, --env and --set applied, checked."""
    if args.config_file and args.config and args.config_file != args.config:
        raise UsageError("give the experiment JSON once: as the first argument or as --config")
    path = args.config or args.config_file
    if path is None:
        raise UsageError("an experiment JSON is needed, e.g. experiments/goodruns/pendulum/steve0.json")
    cfg = load_config(path)
    if args.output_root:
        cfg["output_root"] = args.output_root
    if smoke:   # a tiny budget of the same run: fewer random frames and pretraining updates
        cfg["agent_config"]["full_random_n"] = SMOKE_CONFIG["full_random_n"]
        for section in ("policy_config", "model_config"):
            if section in cfg:
                cfg[section]["frames_before_learning"] = SMOKE_CONFIG["frames_before_learning"]
        if cfg.get("model_config", {}).get("pretrain_n"):
            cfg["model_config"]["pretrain_n"] = SMOKE_CONFIG["pretrain_n"]
    if args.env:
        cfg = with_env(cfg, args.env)
    if args.overrides:   # after --smoke, so a --set key always wins
        cfg = apply_overrides(cfg, args.overrides)
    return cfg


def with_env(cfg: dict, env_id: str) -> dict:
    """The experiment on another env: its observation and action sizes and episode limit."""
    probe = make_env(env_id)
    obs_space, action_space = probe.observation_space, probe.action_space
    limit = probe.spec.max_episode_steps if probe.spec else None
    probe.close()
    if len(getattr(action_space, "shape", ()) or ()) != 1 or not hasattr(action_space, "low"):
        raise UsageError(f"--env {env_id}: STEVE needs a continuous (Box) action space, got {action_space}")
    cfg = copy.deepcopy(cfg)
    cfg["env"].update(name=env_id, obs_dims=list(obs_space.shape), action_dim=int(action_space.shape[0]),
                      max_frames=limit or cfg["env"]["max_frames"])
    validate_config(cfg, f"--env {env_id}")
    return cfg


def check_env_matches(cfg: dict, env) -> None:
    obs_shape, action_shape = tuple(env.observation_space.shape), tuple(env.action_space.shape)
    if int(np.prod(obs_shape)) != int(np.prod(cfg["env"]["obs_dims"])) or action_shape != (cfg["env"]["action_dim"],):
        raise UsageError(f"{cfg['env']['name']} has observations {obs_shape} and actions {action_shape}, but the "
                         f"config says obs_dims {cfg['env']['obs_dims']} and action_dim {cfg['env']['action_dim']}")


def make_budget(args, cfg: dict, saved_run: dict | None) -> dict:
    budget = {"frames": 1_000_000, "eval_every": 10_000}
    if args.smoke:
        budget.update(SMOKE)
    if saved_run is not None:
        budget.update(eval_every=saved_run["eval_every"], frames=saved_run["frames"])
    budget.update({key: value for key, value in (("frames", args.frames), ("eval_every", args.eval_every))
                   if value is not None})
    budget["backup_every"] = args.backup_every or (saved_run or {}).get("backup_every") or max(1, budget["frames"] // 10)
    budget["random_frames"] = max(cfg["agent_config"]["full_random_n"], cfg["policy_config"]["frames_before_learning"])
    return budget


def _saved_run(out: Path) -> dict:
    try:
        return json.loads((out / "config.json").read_text()).get("_run") or {}
    except (OSError, ValueError, AttributeError):   # ValueError: JSON or UTF-8 decoding
        return {}


def check_resume(args, cfg: dict, out: Path) -> dict:
    """The saved run's `_run` settings; a different seed, config or flag is refused."""
    saved_path = out / "config.json"
    try:
        saved = json.loads(saved_path.read_text())
    except (OSError, ValueError):   # ValueError: JSON or UTF-8 decoding
        saved = None
    if not isinstance(saved, dict):
        raise UsageError(f"--resume: {saved_path} is missing or damaged; this is not a steve run folder")
    saved_run = saved.pop("_run", None) or {}
    now = json.loads(json.dumps({**cfg, "output_root": saved.get("output_root")}))  # where, not what
    if saved != now:
        key = _first_difference(saved, now)
        raise UsageError(f"--resume continues the run's saved config; {key} differs from {saved_path} "
                         "(only --frames may change)")
    for flag, value, name in (("--seed", args.seed, "seed"), ("--eval-every", args.eval_every, "eval_every"),
                              ("--corrupt-model", args.corrupt_model, "corrupt_model"),
                              ("--backup-every", args.backup_every, "backup_every")):
        if value is not None and saved_run.get(name) != value:
            raise UsageError(f"--resume continues the run's saved settings; {flag} {value} differs from "
                             f"the run's {saved_run.get(name)} (only --frames may change)")
    if args.speedrun and saved_run.get("layout") != "speedrun":
        raise UsageError("--resume continues the run's saved settings; --speedrun was not used by this run")
    if args.compile and not saved_run.get("compile"):
        raise UsageError("--resume continues the run's saved settings; --compile was not used by this run "
                         "(its float rounding differs from eager's)")
    return saved_run


def check_logs_kept(out: Path, cfg: dict, sizes: dict, speedrun: bool) -> None:
    """--resume cuts every log back to its length at the backup; a log that is shorter now (deleted,
    emptied, cut) would lose its history silently (or be padded with NUL bytes), and one whose kept
    part is not text (overwritten) could not be continued: one line, exit 2."""
    paths = log_paths(out, cfg)
    for key, size in sizes.items():
        if speedrun and key in ("value", "world"):   # the learner processes' own logs, racing
            continue
        have = paths[key].stat().st_size if paths[key].is_file() else None
        if size and (have is None or have < size):
            raise UsageError(f"--resume: {paths[key]} " + ("is missing" if have is None else f"holds {have} bytes")
                             + f", the backup expects at least {size} (restore it, or start a new run in "
                             "another --out-dir)")
        if size:
            with open(paths[key], "rb") as f:
                kept = f.read(size)
            try:
                kept.decode("utf-8")
            except UnicodeDecodeError as error:
                raise UsageError(f"--resume: {paths[key]} is not the text it was at the backup (byte {error.start} "
                                 f"is not UTF-8); restore it, or start a new run in another --out-dir") from None


def restartable(out: Path, cfg: dict, args) -> bool:
    """Whether `out` holds only an earlier start of this same run (config, seed, --corrupt-model,
    --compile) that was stopped before its first backup: nothing to resume and nothing to lose, so
    the same command starts it afresh instead of refusing the folder."""
    checkpoints, logs = out / cfg["save_model_path"], out / cfg["log_path"]
    if not out.is_dir() or (checkpoints / "backup.pt").exists():
        return False
    allowed = {"config.json": Path.is_file, "metrics.csv": Path.is_file, checkpoints.name: Path.is_dir,
               logs.name: Path.is_dir}
    if any(not (is_temporary(e) or (e.name in allowed and allowed[e.name](e))) for e in out.iterdir()):
        return False
    if checkpoints.is_dir() and any(not (is_temporary(e) or e.name in ("valuerl.pt", "worldmodel.pt"))
                                    for e in checkpoints.iterdir()):
        return False
    if logs.is_dir() and any(not (e.is_file() and e.suffix in (".json", ".log", ".csv")) for e in logs.iterdir()):
        return False
    if not (out / "config.json").is_file():   # killed before config.json: no log line can be there yet
        return not (out / "metrics.csv").exists() and not (logs.is_dir() and any(logs.iterdir()))
    try:
        saved = json.loads((out / "config.json").read_text())
        saved_run = saved.pop("_run", None) or {}
        now = json.loads(json.dumps({**cfg, "output_root": saved.get("output_root")}))
        flags = (saved_run.get("seed"), saved_run.get("corrupt_model"), bool(saved_run.get("compile")))
        return saved == now and flags == (args.seed if args.seed is not None else 0, args.corrupt_model or 0.0,
                                          args.compile)
    except (OSError, ValueError, TypeError, AttributeError):
        return False


def clear_folder(out: Path) -> None:
    for entry in out.iterdir():
        shutil.rmtree(entry) if entry.is_dir() else entry.unlink()


def _first_difference(a, b, prefix: str = "") -> str:
    for key in sorted(set(a) | set(b)):
        if a.get(key) != b.get(key):
            if isinstance(a.get(key), dict) and isinstance(b.get(key), dict):
                return _first_difference(a[key], b[key], f"{prefix}{key}.")
            return f"'{prefix}{key}'"
    return "the config"


def main(argv=None) -> None:
    args = parse_args(argv)
    for flag, value in (("--frames", args.frames), ("--eval-every", args.eval_every),
                        ("--backup-every", args.backup_every)):
        if value is not None and value <= 0:
            raise UsageError(f"{flag} must be positive, got {value}")
    cfg = resolve_experiment(args, args.smoke)
    device = pick_device(args)
    if args.corrupt_model is not None and args.corrupt_model < 0:
        raise UsageError(f"--corrupt-model must be >= 0, got {args.corrupt_model}")
    if args.seed is not None and not SEED.allows(args.seed):   # what every RNG here takes
        raise UsageError(f"--seed must be {SEED}, got {args.seed}")
    out = Path(args.out_dir) if args.out_dir else experiment_dir(cfg)
    backup_path = out / cfg["save_model_path"] / "backup.pt"
    saved_run = None
    if args.resume:
        if not backup_path.is_file():
            raise UsageError(f"--resume: no backup at {backup_path}")
        lock_run_dir(out)   # a second writer of this folder: one line, exit 2
        if not args.smoke and _saved_run(out).get("smoke"):   # a smoke run continues as one
            args.smoke, cfg = True, resolve_experiment(args, True)
        saved_run = check_resume(args, cfg, out)
    elif out.exists() and not restartable(out, cfg, args):
        raise UsageError(f"{out} already exists; continue it with --resume or choose another --output-root")
    elif out.exists():   # an earlier start of this same run (or an empty folder), killed before its first backup
        lock_run_dir(out)   # taken before anything is cleared: a live run's folder is never touched
        require_writable(out)   # a read-only folder: one line, exit 2, before anything is written
        clear_folder(out)
    else:
        check_out_dir(out)   # a writable place, before anything is written
    seed = args.seed if args.seed is not None else (saved_run or {}).get("seed", 0)
    corrupt = args.corrupt_model if args.corrupt_model is not None else (saved_run or {}).get("corrupt_model", 0.0)
    budget = make_budget(args, cfg, saved_run)
    agents = cfg["agent_config"]["count"] * cfg["agent_config"]["batch_size"]
    evaluators = cfg["evaluator_config"]["count"] * cfg["evaluator_config"]["batch_size"]
    limit = cfg["env"]["max_frames"]
    envs = [make_env(cfg["env"]["name"], seed=seed + i, max_episode_steps=limit) for i in range(agents)]
    eval_envs = [make_env(cfg["env"]["name"], seed=seed + 100 + j, max_episode_steps=limit)
                 for j in range(evaluators)]
    check_env_matches(cfg, envs[0])
    # a damaged backup, another run's or an edited config.json: one line, exit 2
    # (backups older than the seal, including those without env or log positions, are refused there)
    saved = unseal_checkpoint(load_checkpoint(backup_path), out, backup_path) if args.resume else None
    speedrun = args.speedrun or cfg["policy_config"]["frames_per_update"] is False
    if saved is not None:
        check_logs_kept(out, cfg, saved["logs"], speedrun)
    compile = args.compile or bool((saved_run or {}).get("compile"))
    if compile and (speedrun or corrupt):
        raise UsageError("--compile is for the one-process layout without --corrupt-model "
                         f"(this run: {'the speedrun layout' if speedrun else '--corrupt-model'})")
    (out / cfg["log_path"]).mkdir(parents=True, exist_ok=True)
    lock_run_dir(out)
    write_json_atomic(out / cfg["log_path"] / "hps.json", cfg)
    write_json_atomic(out / "config.json", {**cfg, "_run": {
        "seed": seed, "smoke": args.smoke, "frames": budget["frames"], "eval_every": budget["eval_every"],
        "backup_every": budget["backup_every"], "corrupt_model": corrupt, "compile": compile,
        "layout": "speedrun" if speedrun else "one process", "device": str(device),
        # as common.runs.write_run_config: what ran it, and an id a resume keeps (check compares it)
        "versions": versions(), "command": " ".join(sys.argv),
        "started": (saved_run or {}).get("started") or time.strftime("%Y-%m-%d %H:%M:%S"),
        "id": (saved_run or {}).get("id") or uuid.uuid4().hex}})
    seed_everything(seed)
    set_single_thread()
    flush_denormals()   # dead units' weights decay into subnormals, which slowed a frame 4x or more
    run = Run(cfg, seed, corrupt, device, compile)
    if saved is not None:
        run.load_state_dict(saved)
    if speedrun:
        start_learner_processes(run, cfg, seed, corrupt, out)
    started = time.time()
    try:
        last = train(run, args, out, budget, envs, eval_envs, saved)
    except Diverged as error:   # summary.json says so; the last backup stays as it was
        scores = [float(row["score"]) for row in csv.DictReader(open(out / "metrics.csv"))]
        write_divergence(out, error, {"env_steps": run.frames, "test_steps": run.test_steps,
                                      "final_return": scores[-1] if scores else None,
                                      "best_return": max(scores) if scores else None,
                                      "wall_seconds": round(time.time() - started, 1),
                                      "updates": run.value.updates}, backup_path)
        raise
    finally:
        if run.concurrent:
            run.concurrent.close()
    seconds = time.time() - started
    if not args.no_plots:   # before the summary: a finished summary is the run's last write
        from steve.plots import plot_run

        plot_run(out)
    write_summary(run, out, cfg, last, seed, seconds, str(device))


def start_learner_processes(run: Run, cfg: dict, seed: int, corrupt: float, out: Path) -> None:
    """The speedrun layout: both learners in their own processes, from the backup's states when
    resuming, with all the data so far."""
    from steve.speedrun import SpeedrunLearners

    dims = (int(np.prod(cfg["env"]["obs_dims"])), cfg["env"]["action_dim"])
    resumed = run.frames > 0
    run.concurrent = SpeedrunLearners(cfg, seed, dims, out / cfg["log_path"], run.device,
                                      value_state=run.value.state_dict() if resumed else None,
                                      world_state=run.world.state_dict() if resumed and run.world else None,
                                      corrupt_std=corrupt)
    if run.replay.size:
        b = run.replay
        run.concurrent.send_batch((b.obs[:b.size], b.actions[:b.size], b.rewards[:b.size],
                                   b.next_obs[:b.size], b.terminated[:b.size], b.truncated[:b.size]))


def write_summary(run: Run, out: Path, cfg: dict, last: dict, seed: int, seconds: float, device: str) -> None:
    scores = [float(row["score"]) for row in csv.DictReader(open(out / "metrics.csv"))]
    steve = cfg["policy_config"]["algo"] == "steve"
    summary = {"env_steps": run.frames, "test_steps": run.test_steps, "final_return": scores[-1] if scores else None,
               "best_return": max(scores) if scores else None, "wall_seconds": round(seconds, 1),
               "algo": cfg["policy_config"]["algo"], "env": cfg["env"]["name"], "experiment": cfg["name"],
               "updates": run.value.updates, "world_model_updates": run.world.updates if run.world else None,
               "model_use": float(last.get("model_use", 0.0)) if steve else None, "seed": seed,
               "device": device, "layout": "speedrun" if run.concurrent else "one process",
               "world_model_loads": run.world_loads}
    if run.concurrent:
        summary.update(learners_ready_s=run.concurrent.ready_seconds,
                       first_world_weights_s=run.first_world_seconds)
    summary.update(status="finished", run_id=run_id_of(out))
    write_json_atomic(out / "summary.json", summary)
    print(f"{cfg['name']} on {cfg['env']['name']}: last greedy score {summary['final_return']}, "
          f"best {summary['best_return']}, {run.frames} frames, {run.value.updates} updates -> {out}")


if __name__ == "__main__":
    run_main(main, prog="steve/train.py")
