"""Learn a synthetic environment (--kind se) or a reward network (--kind rn) with NES
(Ferreira et al., ICLR 2022). Inner agents train on the proxy; NES moves the proxy so that
they do well on the real env (SE: their real test return; RN: how few real steps they need).

    python synthetic_envs/train.py --kind rn --env cliff --agent ql --mode 2        # ~1 min
    python synthetic_envs/train.py --kind se --env cliff --agent ql
    python synthetic_envs/train.py --kind se --env cartpole --agent ddqn --workers 2 --backend process
    python synthetic_envs/train.py --kind rn --env cmc --agent td3 --mode 6
    python synthetic_envs/train.py --smoke                                          # seconds

Reward-network modes (--mode): -1 count-based/ICM and 0 real reward are baselines with nothing
to learn (evaluate.py trains them); 1-8, 101, 102 are learned (see README).
env_steps counts every real step: the inner agents' training on the real env behind an RN and
all their real test episodes (the early-out checks and the fitness tests).
Then: python synthetic_envs/evaluate.py RUN_DIR --n-agents 100
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

if __package__ in (None, ""):  # run as a script: make this paper's package and common/ importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.cli import (ArgumentParser, Diverged, UsageError, add_common_args,  # noqa: E402
                        add_parallel_args, run_main)
from common.config import (AT_LEAST_ONE, NON_NEGATIVE, POSITIVE, PROBABILITY, SEED,  # noqa: E402
                           load_config_file, parse_overrides, resolve_config)
from common.device import resolve_device, seed_everything  # noqa: E402
from common.parallel import WorkerPool  # noqa: E402
from common.runs import RunDir, default_run_dir, reopen_run, save_checkpoint  # noqa: E402
from synthetic_envs import inner, nes  # noqa: E402
from synthetic_envs.envs import ENV_SPECS, env_spec, make_real_env  # noqa: E402
from synthetic_envs.tabular import ARGMAX_TIES  # noqa: E402
from synthetic_envs.proxies import LEARNED_MODES, RN_MODES, build_proxy, check_mode, set_flat  # noqa: E402

KINDS = ("se", "rn")
DEFAULTS = {
    "kind": "rn",
    "env": "cliff",
    "agent": "",               # "": the default agent of configs/<kind>_<env>.yaml
    "mode": 2,                 # reward-network mode (RN only)
    "seed": 0,
    "vary_hp": False,          # sample the inner agents' hyperparameters (Sec. 4)
    "iterations": 50,          # NES iterations (max_iterations)
    "num_workers": 16,         # NES population: perturbations per iteration
    "sigma": 0.1,              # noise_std
    "step_size": 0.5,          # α
    "score_transform": 3,      # 0-7, see nes.SCORE_TRANSFORMS
    "estimator": "mirrored",   # mirrored (the reference: keep the better of ±ε) | antithetic
    "num_grad_evals": 1,       # agents per score of ψ ± ε (ψ itself: one)
    "grad_eval_type": "mean",  # combine them by mean | min
    "weight_decay": 0.0,
    "quit_when_solved": True,  # SE: stop once the current proxy solves the env
    "rn_score": "steps",       # RN objective: steps (reward threshold objective) | final_return
    "unsolved_weight": 100.0,  # RN objective: penalty per return point below the threshold
    "nes_threshold": None,     # RN: the return NES's agents aim at (None: the env's; see nes.nes_threshold)
    "zero_terminal_potential": False,  # True: Φ(terminal s') = 0 in the potential modes
    "proxy": {"hidden_size": 32, "hidden_layer": 1, "activation": "prelu"},
    "inner": {"test_episodes": 1, "check_every": 1, "early_out_num": 10, "se_plateau": 0.01},
    "agent_hp": {},            # the inner agent's hyperparameters (default: its tuned ones)
    "population": True,        # SE + DDQN: train each pool worker's agents as one batched population
}
# The reference's tuned settings per (kind, env) live in configs/<kind>_<env>.yaml (with the
# reference file each comes from); the user's --config, --set and flags override them.
CONFIG_DIR = Path(__file__).resolve().parent / "configs"
# --smoke: small budgets of the same runs (the Cliff ones are cheap enough to stay nearly whole)
SMOKE = {"iterations": 2, "num_workers": 1, "agent_hp": {"max_episodes": 2, "init_episodes": 1}}
SMOKE_CLIFF = {"iterations": 20}
# the values each numeric key allows (checked with the config, before anything is written)
RANGES = {
    **{key: AT_LEAST_ONE for key in ("iterations", "num_workers", "num_grad_evals")},
    "sigma": POSITIVE, "step_size": POSITIVE, "weight_decay": PROBABILITY,
    "unsolved_weight": NON_NEGATIVE, "seed": SEED,
    "proxy.hidden_size": AT_LEAST_ONE, "proxy.hidden_layer": NON_NEGATIVE,
    "inner.test_episodes": AT_LEAST_ONE, "inner.check_every": AT_LEAST_ONE,
    "inner.early_out_num": AT_LEAST_ONE, "inner.se_plateau": NON_NEGATIVE,
    # the inner agents' hyperparameters (the keys an agent has; see inner.agent_hp)
    **{f"agent_hp.{key}": POSITIVE for key in ("lr", "icm_lr", "alpha", "gumbel_softmax_temp")},
    **{f"agent_hp.{key}": AT_LEAST_ONE for key in (
        "max_episodes", "batch_size", "hidden_size", "rb_size", "same_action_num", "policy_delay",
        "update_episodes", "episode_steps", "ppo_epochs", "feature_dim", "icm_feature_dim",
        "icm_hidden_size")},
    **{f"agent_hp.{key}": NON_NEGATIVE for key in (
        "hidden_layer", "init_episodes", "action_std", "policy_std", "policy_std_clip", "vf_coef",
        "ent_coef", "eps_clip", "beta", "icm_beta", "icm_eta")},
    **{f"agent_hp.{key}": PROBABILITY for key in ("gamma", "tau", "eps_init", "eps_min", "eps_decay")},
}
FLAG_KEYS = ("kind", "env", "agent", "mode", "seed", "vary_hp", "iterations")


def parse_args(argv):
    parser = ArgumentParser(prog="synthetic_envs/train.py", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser)
    add_parallel_args(parser)
    parser.add_argument("--kind", choices=KINDS, default=argparse.SUPPRESS,
                        help="se: synthetic environment, rn: reward network (default: rn)")
    parser.add_argument("--agent", choices=inner.AGENT_NAMES, default=argparse.SUPPRESS,
                        help="inner agent (default: ql on cliff, ddqn on cartpole/acrobot, td3 on cmc/halfcheetah)")
    parser.add_argument("--mode", type=int, default=argparse.SUPPRESS,
                        help="reward-network mode: " + "; ".join(f"{m}: {d}" for m, d in RN_MODES.items())
                        + " (default: 2)")
    parser.add_argument("--vary-hp", dest="vary_hp", action="store_true", default=argparse.SUPPRESS,
                        help="vary the inner agents' hyperparameters (lr, batch, hidden size x1/3..3, layers ±1)")
    parser.add_argument("--iterations", type=int, default=argparse.SUPPRESS,
                        help="NES iterations (default: 60 cliff RN, 200 CartPole/Acrobot SE, else 50)")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNGs at the end")
    return parser.parse_args(argv)


def _layer(value):
    return value if isinstance(value, dict) else {}


def build_config(args) -> dict:
    file_layer = load_config_file(args.config) if args.config else {}
    flags = {key: getattr(args, key) for key in FLAG_KEYS if hasattr(args, key)}
    overrides = parse_overrides(args.overrides)
    pick = lambda key: flags.get(key, overrides.get(key, file_layer.get(key, DEFAULTS[key])))  # noqa: E731
    kind, env = pick("kind"), pick("env")
    if kind not in KINDS:
        raise UsageError(f"unknown kind {kind!r}; allowed: {', '.join(KINDS)}")
    env_spec(env)
    preset_file = CONFIG_DIR / f"{kind}_{env}.yaml"
    if not preset_file.is_file():
        raise UsageError(f"--kind {kind} is not defined on {env} (the paper learns SEs for "
                         f"cliff, cartpole and acrobot, RNs for {', '.join(ENV_SPECS)})")
    preset = load_config_file(preset_file)
    agent = pick("agent") or preset["agent"]
    if agent not in inner.AGENT_NAMES:
        raise UsageError(f"unknown agent {agent!r}; allowed: {', '.join(inner.AGENT_NAMES)}")
    inner.check_agent(agent, make_real_env(env, 0))
    defaults = dict(DEFAULTS, agent_hp=inner.agent_hp(agent, env))
    smoke = (SMOKE_CLIFF if env == "cliff" else SMOKE) if args.smoke else None
    config = resolve_config(defaults, preset, file_layer, smoke, overrides, flags, {"agent": agent},
                            ranges=RANGES)
    check_config(config)
    return config


def check_config(config: dict) -> None:
    if config["kind"] == "rn":
        check_mode(config["mode"])
        if config["mode"] not in LEARNED_MODES:
            raise UsageError(f"mode {config['mode']} ({RN_MODES[config['mode']]}) has nothing to "
                             f"learn; evaluate.py trains it as a baseline")
    if config["nes_threshold"] is not None:
        if config["kind"] != "rn":
            raise UsageError("nes_threshold applies to reward networks only (an SE's score is its agents' return)")
        if isinstance(config["nes_threshold"], bool) or not isinstance(config["nes_threshold"], (int, float)) \
                or not np.isfinite(config["nes_threshold"]):
            raise UsageError(f"nes_threshold must be a number or null, got {config['nes_threshold']!r}")
    if config["rn_score"] not in inner.RN_SCORES:
        raise UsageError(f"rn_score must be one of {', '.join(inner.RN_SCORES)}, got {config['rn_score']!r}")
    ties = config["agent_hp"].get("argmax_ties")
    if ties is not None and ties not in ARGMAX_TIES:
        raise UsageError(f"agent_hp.argmax_ties must be one of {', '.join(ARGMAX_TIES)}, got {ties!r}")
    if config["score_transform"] not in nes.SCORE_TRANSFORMS:
        raise UsageError(f"score_transform must be one of {sorted(nes.SCORE_TRANSFORMS)}, "
                         f"got {config['score_transform']}")
    if config["estimator"] not in nes.ESTIMATORS:
        raise UsageError(f"estimator must be one of {', '.join(nes.ESTIMATORS)}, got {config['estimator']!r}")
    if config["grad_eval_type"] not in ("mean", "min"):
        raise UsageError(f"grad_eval_type must be mean or min, got {config['grad_eval_type']!r}")
    # the proxy's own options (its activation): built once now, before the run folder exists
    build_proxy(config["kind"], make_real_env(config["env"], 0), config["proxy"], config["mode"],
                env_spec(config["env"]).info_dim)


def save_proxy(path, config: dict, psi: np.ndarray, score: float, iteration: int) -> None:
    """proxy.pt: the proxy's state_dict plus what is needed to rebuild it (atomic write)."""
    spec = env_spec(config["env"])
    proxy = set_flat(build_proxy(config["kind"], make_real_env(config["env"], 0), config["proxy"],
                                 config["mode"], spec.info_dim), psi)
    save_checkpoint({"kind": config["kind"], "env": config["env"], "mode": config["mode"],
                     "agent": config["agent"], "proxy_config": config["proxy"],
                     "zero_terminal_potential": config["zero_terminal_potential"],
                     "state_dict": proxy.state_dict(), "score": score, "iteration": iteration}, path)


def run_nes(config: dict, run: RunDir, state: nes.NESState, pool, wall_before: float) -> float:
    """The outer loop: NES iterations with a metrics row, the best proxy and a checkpoint each."""
    metrics = run.metrics(keep_rows=state.iteration if run.resume else None)
    start = time.time()
    bar = tqdm(total=config["iterations"], initial=state.iteration, unit="it",
               desc=f"NES {config['kind']}/{config['env']}", dynamic_ncols=True)
    wall = wall_before
    try:
        while state.iteration < config["iterations"] and not (state.solved and config["quit_when_solved"]):
            best_before = state.best_score
            stats = nes.nes_step(state, config, config["seed"], pool)
            wall = wall_before + time.time() - start
            metrics.write({"iteration": stats.iteration, "env_steps": state.env_steps,
                           "test_steps": state.test_steps, "proxy_score": round(stats.proxy_score, 4),
                           "best_worker_score": round(stats.best_worker_score, 4),
                           "mean_worker_score": round(stats.mean_worker_score, 4),
                           "best_proxy_score": round(state.best_score, 4), "wall_seconds": round(wall, 2)})
            if state.best_score > best_before:
                save_proxy(run.path / "proxy.pt", config, state.best_psi, state.best_score, stats.iteration)
            run.save_checkpoint({"state": state, "wall_seconds": wall})
            bar.update(1)
            bar.set_postfix(proxy=f"{stats.proxy_score:.4g}", best=f"{state.best_score:.4g}")
    finally:
        bar.close()
    return wall


def main(argv=None) -> None:
    args = parse_args(argv)
    resolve_device(args.device)  # validates --device; the inner agents are small CPU nets
    if args.resume:
        run, saved = reopen_run(args, FLAG_KEYS, budget_key="iterations")
        # .get: another paper's run folder has no agent_hp; its keys are refused by name
        config = resolve_config(dict(DEFAULTS, agent_hp=saved.get("agent_hp", {})), saved, ranges=RANGES)
    else:
        config = build_config(args)   # every check: only then the run folder
        run = RunDir(args.out_dir or default_run_dir("synthetic_envs", f"{config['kind']}_{config['env']}",
                                                     config["seed"]), config=config)
    run.write_config(config)
    seed_everything(config["seed"])
    torch.set_num_threads(1)
    if args.resume:
        saved_state = run.load_checkpoint()
        state, wall_before = saved_state["state"], saved_state["wall_seconds"]
    else:
        state, wall_before = nes.NESState(psi=nes.initial_psi(config, config["seed"])), 0.0
    with WorkerPool(args.workers, args.backend, args.ray_address) as pool:
        try:
            wall = run_nes(config, run, state, pool, wall_before)
        except Diverged as error:   # summary.json says so; the last iteration's checkpoint stays
            error.step = state.env_steps if error.step is None else error.step
            run.write_divergence(error, summary_so_far(state, config))
            raise
    summary = {"env_steps": state.env_steps, "test_steps": state.test_steps,
               "final_return": state.last_score,
               "best_return": state.best_score, "wall_seconds": round(wall, 2),
               "iterations": state.iteration, "solved": state.solved, "kind": config["kind"],
               "env": config["env"], "agent": config["agent"], "mode": config["mode"],
               "seed": config["seed"], "score_meaning": nes.score_meaning(config),
               "non_finite_scores": state.non_finite_scores}
    if not args.no_plots:   # before the summary: a finished summary is the run's last write
        from synthetic_envs.plots import plot_run

        plot_run(run.path)
    run.write_summary(summary)
    print(f"NES {config['kind']} on {config['env']} ({config['agent']}"
          + (f", mode {config['mode']}" if config["kind"] == "rn" else "")
          + f"): proxy score {summary['final_return']:.4g}, best {state.best_score:.4g} "
          f"({nes.score_meaning(config)}), {state.env_steps} real env steps, {wall:.0f}s -> {run.path}")


def summary_so_far(state: nes.NESState, config: dict) -> dict:
    """What a run had reached when it stopped (for a diverged run's summary.json)."""
    return {"env_steps": state.env_steps, "test_steps": state.test_steps,
            "final_return": state.last_score, "best_return": state.best_score,
            "wall_seconds": None, "iterations": state.iteration, "kind": config["kind"],
            "env": config["env"], "non_finite_scores": state.non_finite_scores}


if __name__ == "__main__":
    run_main(main, prog="synthetic_envs/train.py")
