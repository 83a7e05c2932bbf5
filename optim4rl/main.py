"""Run one configuration of a sweep, as the seed does:

    python optim4rl/main.py --config_file optim4rl/configs/catch_meta.json --config_idx 1
    python optim4rl/main.py --config_file optim4rl/configs/catch_lopt.json --config_idx 1

Every value in a config file is a list; `python optim4rl/sweeper.py` prints how many
combinations each file has, and index i + k·N is run k of combination i. Output goes to
logs/<config name>/<config_idx>/: config.json, log.txt (ending with the memory and time lines),
result_<env>.csv (Env,Agent,Step,Return), metrics.csv, summary.json, a return-curve PNG, and
param.pt (MetaA2C) or data.npz + grad_hist.png (CollectA2C) or identity.csv + identity_perf.png
(RNNIdentity).

Agents (the config's agent.name): A2C (any optimizer, including a meta-learned one loaded from
param_load_path), CollectA2C, MetaA2C, RNNIdentity, PPO (MuJoCo, any optimizer).
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch

if __package__ in (None, ""):  # run as a script: make this paper's package and common/ importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.cli import ArgumentParser, Diverged, UsageError, run_main  # noqa: E402
from common.runs import (is_temporary, load_checkpoint, lock_run_dir, require_finite, save_checkpoint,  # noqa: E402
                         seal_checkpoint, unseal_checkpoint, write_divergence)
from common.config import (AT_LEAST_ONE, NON_NEGATIVE, POSITIVE, PROBABILITY, SEED, Range, check_ranges,  # noqa: E402
                           coerce_value, parse_overrides)
from common.device import resolve_device  # noqa: E402
from optim4rl import logs  # noqa: E402
from optim4rl.agents import BIG_MAP_TORSOS  # noqa: E402
from optim4rl.envs import make_env  # noqa: E402
from optim4rl.meta import A2CHyper, MetaA2C, Task  # noqa: E402
from optim4rl.optimizers import OPTIMIZERS, make_optimizer, save_meta_params  # noqa: E402
from optim4rl.sweeper import Sweeper, find_config  # noqa: E402

# --smoke: at most this many env steps and envs (MetaA2C: meta-training steps, 20 meta-iterations of
# the laptop Catch set, ~20 s on one core; the full 62 of `catch_meta` are the learned-optimizer check)
SMOKE_STEPS, SMOKE_META_STEPS, SMOKE_ENVS, SMOKE_PPO_STEPS = 2e5, 6.4e4, 64, 2e4
CHECKPOINT = logs.RESUMABLE    # a MetaA2C run's state for --resume (removed when the run finishes)
AGENTS = ("A2C", "CollectA2C", "MetaA2C", "RNNIdentity", "PPO")
ALIASES = {"RNNIndentity": "RNNIdentity"}  # the reference's spelling


def parse_args(argv, prog: str = "optim4rl/main.py"):
    parser = ArgumentParser(prog=prog, description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config_file", "--config", dest="config_file", required=True,
                        help="a JSON config (a path, or a name in optim4rl/configs/)")
    parser.add_argument("--config_idx", type=int, default=1,
                        help="configuration index, 1-based; i + k*N is run k of combination i; "
                             "an index <= 0 runs combination i + N, as the reference's (i - 1) mod N")
    parser.add_argument("--logs-root", default="logs", help="root of the log folders (default: logs)")
    parser.add_argument("--overwrite", action="store_true",
                        help="rerun an index whose log folder already holds this same run, finished "
                             "(a folder of another run is never written)")
    parser.add_argument("--out-dir", default=None,
                        help="write this run into OUT_DIR instead of <logs-root>/<config name>/<config_idx>")
    parser.add_argument("--param-load-path", default=None,
                        help="override agent_optimizer.kwargs.param_load_path (a meta-trained param.pt)")
    parser.add_argument("--seed", type=int, default=None, help="override the decoded config's seed")
    parser.add_argument("--env", default=None,
                        help="override env.name (a comma-separated list of tasks for MetaA2C)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a decoded config key, e.g. --set env.train_steps=1e5 "
                             "(repeatable; the key must exist; VALUE takes its type and must lie in its range)")
    parser.add_argument("--smoke", action="store_true",
                        help=f"a small budget of the same run: at most {SMOKE_STEPS:.0e} env steps "
                             f"({SMOKE_META_STEPS:.1e} for MetaA2C) and {SMOKE_ENVS} envs; "
                             f"PPO {SMOKE_PPO_STEPS:.0e} steps")
    parser.add_argument("--device", default="auto",
                        help="auto | cpu | cuda | cuda:N for A2C, CollectA2C and MetaA2C (default auto: CUDA "
                             "when torch sees it); PPO and RNNIdentity run on the CPU")
    parser.add_argument("--resume", action="store_true",
                        help="continue a killed MetaA2C run from the checkpoint.pt in its folder (same command)")
    parser.add_argument("--threads", type=int, default=1, metavar="N",
                        help="torch CPU threads of this run (default 1, as every paper here: the fastest for "
                             "these small networks when other processes share the cores, and a result that does "
                             "not depend on the machine's core count; 0: torch's default). A resumed MetaA2C run "
                             "keeps the killed run's count")
    parser.add_argument("--checkpoint-every", type=int, default=0, metavar="N",
                        help="MetaA2C: meta-iterations between checkpoints for --resume (default 0: a twentieth "
                             "of the run)")
    return parser.parse_args(argv)


# -- config helpers ------------------------------------------------------------------------------
def optimizer_spec(cfg: dict, key: str) -> tuple[str, dict]:
    """(name, kwargs) of `agent_optimizer` / `meta_optimizer`, accepting the seed's spellings
    (agent_optim, gradient_clip)."""
    section = cfg.get(key) or cfg.get(key.replace("optimizer", "optim"))
    if section is None:
        raise UsageError(f"config has no '{key}' section")
    kwargs = dict(section.get("kwargs", {}))
    if "gradient_clip" in kwargs:
        kwargs["grad_clip"] = kwargs.pop("gradient_clip")
    return section["name"], kwargs


def env_names(cfg: dict) -> list[str]:
    names = cfg["env"]["name"]
    return [names] if isinstance(names, str) else list(names)


def per_task(value, count: int, what: str) -> list:
    """A per-task setting given once (applies to all tasks) or as a list with one per task."""
    if isinstance(value, list):
        if len(value) != count:
            raise UsageError(f"{what} lists {len(value)} values for {count} env(s)")
        return value
    return [value] * count


def big_map_torso(cfg: dict) -> str:
    """agent.big_map_torso: how the big maps' convolution reads a board (agents.BIG_MAP_TORSOS;
    default the reference's)."""
    return cfg["agent"].get("big_map_torso", "reference")


def a2c_hyper(cfg: dict) -> A2CHyper:
    agent = cfg["agent"]
    return A2CHyper(discount=cfg.get("discount", 0.995), gae_lambda=agent.get("gae_lambda", 0.95),
                    rollout_steps=int(agent.get("rollout_steps", 20)),
                    critic_loss_weight=agent.get("critic_loss_weight", 0.5),
                    entropy_weight=agent.get("entropy_weight", 0.01))


def resolve_load_path(path: str, logs_root: Path) -> str:
    """A `logs/...` param_load_path or datapath follows --logs-root."""
    if not path or Path(path).is_file() or not path.startswith("logs/"):
        return path
    return str(Path(logs_root) / path[len("logs/"):])


def make_agent_optimizer(cfg: dict, learning_rate=None, device="cpu"):
    name, kwargs = optimizer_spec(cfg, "agent_optimizer")
    lr = kwargs.pop("learning_rate", 1e-3) if learning_rate is None else learning_rate
    kwargs.pop("learning_rate", None)
    if str(name).lower() in ("adam", "rmsprop", "sgd", "signsgd"):
        kwargs.pop("param_load_path", None)
    path = kwargs.get("param_load_path", "")
    if not path:
        kwargs.pop("param_load_path", None)
    if path and not Path(path).is_file():
        raise UsageError(f"param_load_path {path} does not exist (run the meta-training config first)")
    return make_optimizer(name, lr, seed=cfg["seed"], device=device, **kwargs)


# -- the agents ----------------------------------------------------------------------------------
def run_a2c(cfg: dict, log_dir: Path, logger, collect: bool = False, device="cpu") -> list[dict]:
    from optim4rl.a2c import train_a2c
    hyper, rows = a2c_hyper(cfg), []
    opt_name, _ = optimizer_spec(cfg, "agent_optimizer")
    for i, name in enumerate(env_names(cfg)):
        env = make_env(name, int(cfg["env"]["num_envs"]), cfg["seed"] + i, device,
                       reward_scaling=per_task(cfg["env"].get("reward_scaling", 1.0), len(env_names(cfg)),
                                               "reward_scaling")[i])
        optimizer = make_agent_optimizer(cfg, device=device)
        logger.info(f"<{cfg['config_idx']}> env {name}: A2C with {opt_name}, {cfg['env']['train_steps']:.0f} steps")
        every = int(cfg["agent"].get("data_reduce", 100)) if collect else 0

        def progress(iteration, result, name=name):
            if iteration % int(cfg.get("display_interval", 50)) == 0 and result.returns:
                logger.info(f"<{cfg['config_idx']}> {name} step {result.steps[-1]} return {result.returns[-1]:.3f}")
        result = train_a2c(env, name, optimizer, hyper, int(cfg["env"]["train_steps"]), cfg["seed"] + i,
                           collect_every=every, progress=progress, big_map_torso=big_map_torso(cfg))
        env_rows = [{"Env": name, "Agent": cfg["agent"]["name"], "Step": s, "Return": r}
                    for s, r in zip(result.steps, result.returns)]
        logs.write_results_csv(logs.result_file(log_dir, name), env_rows)
        rows += env_rows
        if collect:
            from optim4rl.identity import plot_gradient_histograms
            grad, update = np.stack(result.grads), np.stack(result.updates)
            np.savez_compressed(log_dir / "data.npz", grad=grad, update=update)
            plot_gradient_histograms(grad, log_dir)
            logger.info(f"collected {grad.shape[0]} steps x {grad.shape[1]} coordinates -> data.npz")
    return rows


def run_collect(cfg: dict, log_dir: Path, logger, device="cpu") -> list[dict]:
    return run_a2c(cfg, log_dir, logger, collect=True, device=device)


def run_ppo(cfg: dict, log_dir: Path, logger) -> list[dict]:
    from optim4rl.ppo import run_ppo as ppo   # gymnasium MuJoCo is imported only for PPO runs
    return ppo(cfg, log_dir, logger)


def run_meta_a2c(cfg: dict, log_dir: Path, logger, checkpoint: dict | None = None, checkpoint_every: int = 0,
                 started: float | None = None, device="cpu") -> list[dict]:
    """Meta-train φ. Every `checkpoint_every` meta-iterations (0: a twentieth of the run) the
    whole state goes to checkpoint.pt, atomically; `checkpoint` (that file's content) continues
    a killed run exactly."""
    agent, names = cfg["agent"], env_names(cfg)
    hyper, inner = a2c_hyper(cfg), int(agent.get("inner_updates", 4))
    _, opt_kwargs = optimizer_spec(cfg, "agent_optimizer")
    lrs = per_task(opt_kwargs.get("learning_rate", 1e-3), len(names), "agent_optimizer learning_rate")
    lopt = make_agent_optimizer(cfg, learning_rate=1.0, device=device)     # the task's lr scales the update
    _, meta_kwargs = optimizer_spec(cfg, "meta_optimizer")
    num_envs = int(cfg["env"]["num_envs"])
    scaling = per_task(cfg["env"].get("reward_scaling", 1.0), len(names), "reward_scaling")
    intervals = per_task(agent.get("reset_interval", 64), len(names), "reset_interval")
    tasks = [Task(make_env(n, num_envs, cfg["seed"] + i, device, reward_scaling=scaling[i]), n, num_envs, lopt,
                  lrs[i], int(intervals[i]), torch.Generator(device=device).manual_seed(cfg["seed"] + 1000 + i),
                  big_map_torso(cfg))
             for i, n in enumerate(names)]
    meta = MetaA2C(lopt, tasks, hyper, inner, meta_lr=meta_kwargs.get("learning_rate", 1e-3),
                   meta_grad_clip=meta_kwargs.get("grad_clip", -1), meta_grad_norm=meta_kwargs.get("grad_norm", -1),
                   max_norm=meta_kwargs.get("max_norm", -1), pipeline=agent.get("pipeline", True))
    macro_step = num_envs * hyper.rollout_steps * (inner + 1)
    iterations = int(cfg["env"]["train_steps"]) // macro_step
    save_every, display = int(cfg.get("save_param", 0)), int(cfg.get("display_interval", 10))
    every, started = checkpoint_every or max(1, iterations // 20), started or time.time()
    rows, first = [], 1
    if checkpoint is not None:
        meta.load_state_dict(checkpoint["meta"])
        rows, first = checkpoint["rows"], meta.iteration + 1
        torch.set_rng_state(checkpoint["torch_rng"])
        threads = checkpoint.get("torch_threads", torch.get_num_threads())
        torch.set_num_threads(threads)      # CPU sums are split per thread: the killed run's split gives its φ
        logger.info(f"<{cfg['config_idx']}> resumed after iteration {meta.iteration}/{iterations} from {CHECKPOINT} "
                    f"({threads} torch threads, as the killed run)")
    start = time.time()
    for t in range(first, iterations + 1):
        info = meta.step()
        require_finite("the meta loss", info["meta_loss"], t * macro_step * len(tasks))
        if t % display == 0 or t == iterations:
            for task, scale in zip(tasks, scaling):  # returns in the env's own reward units
                ret = float(np.mean(task.returns)) / scale if task.returns else float("nan")
                rows.append({"Env": task.env_name, "Agent": "MetaA2C", "Step": t * macro_step, "Return": ret,
                             "env_steps": t * macro_step * len(tasks), "meta_loss": info["meta_loss"]})
                task.returns.clear()
            speed = (t - first + 1) * macro_step * len(tasks) / (time.time() - start)
            logger.info(f"<{cfg['config_idx']}> Step {t * macro_step}/{iterations * macro_step} Iteration "
                        f"{t}/{iterations}: meta_loss={info['meta_loss']:.4f} return={rows[-1]['Return']:.3f} "
                        f"Speed={speed:.0f} (steps/s)")
        if save_every and t % save_every == 0:
            save_meta_params(lopt, str(log_dir / f"param_{t}.pt"))
        if t % every == 0 and t < iterations:
            state = {"meta": meta.state_dict(), "rows": rows, "torch_rng": torch.get_rng_state(),
                     "torch_threads": torch.get_num_threads(), "wall_seconds": time.time() - started,
                     "log_bytes": (log_dir / logs.LOG_FILE).stat().st_size}   # --resume cuts the log back to here
            save_checkpoint(seal_checkpoint(state, log_dir), log_dir / CHECKPOINT)
    save_meta_params(lopt, str(log_dir / "param.pt"))
    for name in names:
        logs.write_results_csv(logs.result_file(log_dir, name),
                               [{k: r[k] for k in logs.RESULT_COLUMNS} for r in rows if r["Env"] == name])
    return rows


def run_identity(cfg: dict, log_dir: Path, logger) -> list[dict]:
    from optim4rl.identity import run_identity as identity
    out = identity(cfg, cfg["datapath"], log_dir, cfg["seed"])
    logger.info(f"identity: {out['summary']}")
    return []


# -- main ----------------------------------------------------------------------------------------
def check_config(cfg: dict) -> None:
    if "agent" not in cfg:
        raise UsageError("config has no 'agent' section")
    name = cfg["agent"]["name"] = ALIASES.get(cfg["agent"].get("name"), cfg["agent"].get("name"))
    if name not in AGENTS:
        raise UsageError(f"unknown agent {name!r}; choose one of: {', '.join(AGENTS)}")
    if name != "RNNIdentity":
        if "env" not in cfg:
            raise UsageError("config has no 'env' section")
        opt_name, _ = optimizer_spec(cfg, "agent_optimizer")
        if str(opt_name).lower() not in {o.lower() for o in OPTIMIZERS}:
            raise UsageError(f"unknown optimizer {opt_name!r}; choose one of: {', '.join(OPTIMIZERS)}")


# Keys of this implementation that a config may leave out, with their defaults (--set adds them).
OPTIONAL_KEYS = {"agent.big_map_torso": "reference"}


def set_keys(cfg: dict, overrides: dict, prefix: str = "") -> None:
    """--set: replace existing keys of the decoded config with values of the same type (an
    unknown key, or a value of another type, is a usage error)."""
    for key, value in overrides.items():
        if key not in cfg and f"{prefix}{key}" in OPTIONAL_KEYS:
            cfg[key] = OPTIONAL_KEYS[f"{prefix}{key}"]
        if key not in cfg:
            raise UsageError(f"--set {prefix}{key}: no such key in the config (it has: {', '.join(cfg)})")
        if isinstance(value, dict) and isinstance(cfg[key], dict):
            set_keys(cfg[key], value, f"{prefix}{key}.")
        else:
            cfg[key] = typed_value(f"{prefix}{key}", cfg[key], value)


def typed_value(path: str, current, value):
    """VALUE of `--set path=VALUE` with the type of the key's current value (`1e5` is a number,
    NaN and non-numbers for a number are refused). A list key takes a list of values of its
    elements' type, or one such value (per-task settings accept one value for all tasks)."""
    if isinstance(current, list) and current and not isinstance(current[0], (list, dict)):
        if isinstance(value, list):
            return [coerce_value(path, current[0], item) for item in value]
        return coerce_value(path, current[0], value)
    return coerce_value(path, current, value)


# The numeric keys of the reference's configs and the values that mean something (a list value,
# e.g. a per-task learning rate, is checked element-wise). PPO's own keys: ppo.ppo_settings.
VALUE_RANGES = {
    "env.train_steps": AT_LEAST_ONE, "env.num_envs": AT_LEAST_ONE, "env.reward_scaling": POSITIVE,
    "agent.rollout_steps": AT_LEAST_ONE, "agent.inner_updates": NON_NEGATIVE,
    "agent.reset_interval": AT_LEAST_ONE, "agent.data_reduce": AT_LEAST_ONE,
    "agent.gae_lambda": PROBABILITY, "agent.critic_loss_weight": NON_NEGATIVE,
    "agent.entropy_weight": NON_NEGATIVE, "discount": PROBABILITY, "seed": SEED,
    "display_interval": AT_LEAST_ONE, "save_param": NON_NEGATIVE,
    **{f"{section}.kwargs.learning_rate": POSITIVE
       for section in ("agent_optimizer", "agent_optim", "meta_optimizer", "meta_optim")},
    **{f"{section}.kwargs.{key}": Range(-1)          # -1 (or any value <= 0) switches clipping off
       for section in ("agent_optimizer", "agent_optim", "meta_optimizer", "meta_optim")
       for key in ("gradient_clip", "grad_clip", "grad_norm", "max_norm")},
}


def check_values(cfg: dict) -> None:
    """Budgets, sizes, rates and factors in their ranges, and a budget of at least one update."""
    check_ranges(cfg, VALUE_RANGES)
    name = cfg["agent"]["name"]
    if big_map_torso(cfg) not in BIG_MAP_TORSOS:
        raise UsageError(f"agent.big_map_torso must be one of {', '.join(BIG_MAP_TORSOS)}, got {big_map_torso(cfg)!r}")
    if name in ("A2C", "CollectA2C", "MetaA2C"):
        agent = cfg["agent"]
        one_update = int(cfg["env"]["num_envs"]) * int(agent.get("rollout_steps", 20))
        if name == "MetaA2C":
            one_update *= int(agent.get("inner_updates", 4)) + 1
        if float(cfg["env"]["train_steps"]) < one_update:
            raise UsageError(f"env.train_steps={cfg['env']['train_steps']:g} is less than one "
                             f"{'meta-' if name == 'MetaA2C' else ''}update ({one_update} env steps: "
                             f"num_envs x rollout_steps{' x (inner_updates + 1)' if name == 'MetaA2C' else ''})")


def config_index(sweeper: Sweeper, config_idx: int) -> int:
    """The index to run. As in the reference, whose decoding is (config_idx - 1) mod N, an index
    <= 0 runs the combination i + N (mod N): -1 is combination N - 1, 0 is combination N; it is
    run (and logged) under that positive index."""
    if config_idx >= 1:
        return config_idx
    return (config_idx - 1) % sweeper.total_combinations + 1


def apply_flags(cfg: dict, args) -> dict:
    """--seed, --env, --set, --param-load-path, --smoke, and `logs/...` paths resolved against
    --logs-root."""
    if args.seed is not None:
        cfg["seed"] = args.seed
    if args.env is not None and "env" in cfg:
        names = args.env.split(",")
        cfg["env"]["name"] = names if len(names) > 1 or isinstance(cfg["env"]["name"], list) else names[0]
    set_keys(cfg, parse_overrides(args.overrides))
    name = cfg.get("agent", {}).get("name")
    section = next((cfg[k] for k in ("agent_optimizer", "agent_optim") if k in cfg), None)
    if section is not None:
        kwargs = section.setdefault("kwargs", {})
        if args.param_load_path is not None:
            kwargs["param_load_path"] = args.param_load_path
        if kwargs.get("param_load_path"):
            kwargs["param_load_path"] = resolve_load_path(kwargs["param_load_path"], args.logs_root)
    if cfg.get("datapath"):
        cfg["datapath"] = resolve_load_path(cfg["datapath"], args.logs_root)
    if args.smoke and "env" in cfg and name != "PPO":
        budget = SMOKE_META_STEPS if name == "MetaA2C" else SMOKE_STEPS
        cfg["env"]["train_steps"] = min(float(cfg["env"]["train_steps"]), budget)
        cfg["env"]["num_envs"] = min(int(cfg["env"]["num_envs"]), SMOKE_ENVS)
    elif args.smoke and name == "PPO":
        cfg["env"]["train_steps"] = min(float(cfg["env"]["train_steps"]), SMOKE_PPO_STEPS)
    return cfg


def check_meta_config(cfg: dict) -> None:
    opt_name, opt_kwargs = optimizer_spec(cfg, "agent_optimizer")
    if opt_name not in ("Optim4RL", "L2LGD2", "LinearOptim"):
        raise UsageError(f"MetaA2C meta-learns a learned optimizer (Optim4RL, L2LGD2, LinearOptim), not {opt_name}")
    meta_name, _ = optimizer_spec(cfg, "meta_optimizer")
    if meta_name != "Adam":
        raise UsageError(f"meta_optimizer must be Adam (the reference's), not {meta_name}")
    count = len(env_names(cfg))
    per_task(opt_kwargs.get("learning_rate", 1e-3), count, "agent_optimizer learning_rate")
    per_task(cfg["env"].get("reward_scaling", 1.0), count, "reward_scaling")
    per_task(cfg["agent"].get("reset_interval", 64), count, "reset_interval")


def preflight(cfg: dict) -> None:
    """Every user mistake we can see before the run starts (so a failed start leaves no folder):
    unknown agent / optimizer / option / env, a missing param_load_path or datapath."""
    check_config(cfg)
    name = cfg["agent"]["name"]
    if name != "RNNIdentity":
        check_values(cfg)
    if name == "RNNIdentity":
        path = cfg.get("datapath", "")
        if not path or not Path(path).is_file():
            raise UsageError(f"RNNIdentity needs 'datapath', the data.npz of a collect run; {path!r} does "
                             f"not exist (run the *_collect.json config first)")
        return
    if name == "MetaA2C":
        check_meta_config(cfg)
    make_agent_optimizer(cfg, learning_rate=1.0 if name == "MetaA2C" else None)
    if name == "PPO":
        from optim4rl.ppo import ppo_settings
        ppo_settings(cfg)                      # env id and PPO keys
    else:
        for env_name in env_names(cfg):
            make_env(env_name, 1, 0)


SECTIONS = ("env", "agent", "agent_optimizer", "agent_optim", "meta_optimizer", "meta_optim")


def check_sections(cfg: dict, config_file) -> None:
    """Each section (env, agent, the optimizers) is a mapping of its keys; a file that gives a
    section as a plain choice (`"env": ["catch"]`) is one line, not a traceback later."""
    if not isinstance(cfg.get("agent"), dict) or "name" not in cfg["agent"]:
        raise UsageError(f"config file {config_file}: 'agent' must be a list of sections such as "
                         f'[{{"name": ["A2C"], ...}}], got {json.dumps(cfg.get("agent"))[:60]}')
    for key in SECTIONS:
        if key in cfg and not isinstance(cfg[key], dict):
            raise UsageError(f"config file {config_file}: '{key}' must be a list of sections such as "
                             f'[{{"name": [...], ...}}], got the choice {json.dumps(cfg[key])[:60]}')


def main(argv=None, prog: str = "optim4rl/main.py") -> None:
    args = parse_args(argv, prog)
    device = resolve_device(args.device)
    sweeper = Sweeper(find_config(args.config_file))
    config_idx = config_index(sweeper, args.config_idx)
    cfg = sweeper.generate_config_for_idx(config_idx)
    check_sections(cfg, sweeper.config_file)
    cfg = apply_flags(cfg, args)
    preflight(cfg)
    if cfg["agent"]["name"] in ("PPO", "RNNIdentity"):
        if device.type != "cpu" and args.device != "auto":
            raise UsageError(f"--device {args.device}: {cfg['agent']['name']} runs on the CPU only (MuJoCo envs / "
                             f"a small LSTM); A2C, CollectA2C and MetaA2C take CUDA")
        device = torch.device("cpu")
    if args.checkpoint_every < 0:
        raise UsageError(f"--checkpoint-every must be >= 0, got {args.checkpoint_every}")
    if args.threads < 0:
        raise UsageError(f"--threads must be >= 0 (0: torch's default), got {args.threads}")
    if args.threads:
        torch.set_num_threads(args.threads)   # float sums are split per thread: the count is part of the result
    checkpoint = None
    target = Path(args.out_dir) if args.out_dir else Path(args.logs_root) / sweeper.config_name / str(config_idx)
    lock_run_dir(target)   # a run writing this folder now: one line, exit 2, nothing touched
    if args.resume:
        log_dir = target
        checkpoint = resume_checkpoint(log_dir, cfg, args)
    elif args.out_dir:
        log_dir = logs.prepare_run_folder(args.out_dir, cfg, overwrite=args.overwrite)
    else:
        log_dir = logs.make_log_dir(args.logs_root, sweeper.config_name, config_idx, overwrite=args.overwrite,
                                    config=cfg)
    lock_run_dir(log_dir)
    for entry in log_dir.iterdir():   # half-written files of a run killed while writing one
        if is_temporary(entry):
            entry.unlink()
    if checkpoint is None:
        (log_dir / CHECKPOINT).unlink(missing_ok=True)   # --overwrite: the old run's state is not this one's
        logs.write_config(log_dir, cfg)
    start = time.time() - (checkpoint["wall_seconds"] if checkpoint else 0.0)
    with logs.Logger(log_dir, mode="a" if checkpoint else "w") as logger:
        if checkpoint is None:
            logger.info(f"<{config_idx}> {sweeper.config_name}: {cfg['agent']['name']}, seed {cfg['seed']}, "
                        f"device {device}")
        torch.manual_seed(cfg["seed"])
        runner = {"A2C": partial(run_a2c, device=device), "CollectA2C": partial(run_collect, device=device),
                  "RNNIdentity": run_identity, "PPO": run_ppo,
                  "MetaA2C": partial(run_meta_a2c, checkpoint=checkpoint, checkpoint_every=args.checkpoint_every,
                                     started=start, device=device)}
        try:
            rows = runner[cfg["agent"]["name"]](copy.deepcopy(cfg), log_dir, logger)
        except Diverged as error:   # summary.json says so, and the log
            write_divergence(log_dir, error, {"wall_seconds": round(time.time() - start, 1)})
            logger.info(f"stopped: {error}")
            raise
        if rows and "Step" in rows[0]:
            write_outputs(log_dir, rows, start)
        logs.finish(logger, start)
    (log_dir / CHECKPOINT).unlink(missing_ok=True)      # a finished run has nothing to resume


def resume_checkpoint(log_dir: Path, cfg: dict, args) -> dict:
    """The checkpoint of the killed MetaA2C run in `log_dir`, after checking that this command
    is that run's (same decoded config) and that it did not finish."""
    if cfg["agent"]["name"] != "MetaA2C":
        raise UsageError(f"--resume continues MetaA2C (meta-training) runs; {cfg['agent']['name']} runs are "
                         f"short: run them again")
    if args.overwrite:
        raise UsageError("--resume continues a run and --overwrite starts it again: give one of them")
    if logs.is_finished_log(log_dir / logs.LOG_FILE):
        raise UsageError(f"--resume: {log_dir} holds a finished run (its {logs.LOG_FILE} ends with the time line)")
    if not (log_dir / CHECKPOINT).is_file():
        raise UsageError(f"--resume: no {CHECKPOINT} in {log_dir} (a run writes one every --checkpoint-every "
                         f"meta-iterations); start it without --resume")
    # a damaged checkpoint, another run's or an edited config.json: one line, exit 2
    checkpoint = unseal_checkpoint(load_checkpoint(log_dir / CHECKPOINT), log_dir, log_dir / CHECKPOINT)
    if not logs.holds_same_run(log_dir, cfg):
        raise UsageError(f"--resume: {log_dir} holds another run (its config.json is not this command's config)")
    cut_log_back(log_dir / logs.LOG_FILE, checkpoint["log_bytes"])
    return checkpoint


def cut_log_back(log_file: Path, size: int) -> None:
    """log.txt as it was at the checkpoint: the lines of the iterations after it are logged again
    by the resumed run. A log shorter than that (deleted, emptied, cut) would lose its history
    without a word, and one whose kept part is not text was overwritten: one line, exit 2, nothing
    written."""
    have = log_file.stat().st_size if log_file.is_file() else None
    if have is None or have < size:
        raise UsageError(f"--resume: {log_file} " + ("is missing" if have is None else f"holds {have} bytes")
                         + f", the checkpoint expects at least {size} (restore it, or start a new run in "
                         "another --out-dir)")
    with open(log_file, "r+b") as f:
        try:
            f.read(size).decode("utf-8")
        except UnicodeDecodeError as error:
            raise UsageError(f"--resume: {log_file} is not the text it was at the checkpoint (byte {error.start} "
                             f"is not UTF-8); restore it, or start a new run in another --out-dir") from None
        f.truncate(size)


def write_outputs(log_dir: Path, rows: list[dict], start: float) -> None:
    from optim4rl.plots import plot_returns
    table = [{"env_steps": r.get("env_steps", r["Step"]), "test_steps": r.get("test_steps", 0), "return": r["Return"],
              "env": r["Env"], "agent": r["Agent"]} for r in rows if r["Return"] == r["Return"]]
    if table:
        envs = ",".join(dict.fromkeys(r["env"] for r in table))
        logs.write_collection_outputs(log_dir, table, {"wall_seconds": round(time.time() - start, 1), "env": envs,
                                                       "torch_threads": torch.get_num_threads()})
        plot_returns(log_dir)


if __name__ == "__main__":
    run_main(main, prog="optim4rl/main.py")
