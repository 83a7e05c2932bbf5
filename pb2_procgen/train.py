"""PBT, PB2-Rand, PB2-Mult and PB2-Mix tuning PPO/DrAC on Procgen (Parker-Holder et al.,
NeurIPS 2021), on gymnasium envs, and on the PBT toy problem.

    python pb2_procgen/train.py --env bigfish --search PB2 --cat_exp exp3_dep --seed 100 \\
        --gpu_per_trial 1 --max_budget 25000000 --t_ready 500000 --batchsize 4
    python pb2_procgen/train.py --env toy --search PB2              # the PBT toy, seconds
    python pb2_procgen/train.py --env CartPole-v1 --search PBT --max_budget 200000
    python pb2_procgen/train.py --env CartPole-v1 --search random   # the random-search baseline
    python pb2_procgen/train.py --smoke                             # toy + a tiny bigfish run

--search PBT|PB2 picks the explore step (random: no exploit, no explore; each agent keeps its
initial random config, the papers' random-search baseline); --cat_exp random (PB2-Rand) | exp3_dep (PB2-Mult) |
cocabo (PB2-Mix) picks how PB2 treats the categorical hyperparameter (aug_type).
env_steps counts every step of every agent; test episodes are counted apart as test_steps.
"""
from __future__ import annotations

import argparse
import difflib
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
                           Range, load_config_file, parse_overrides, resolve_config)
from common.device import resolve_device, seed_everything  # noqa: E402
from common.envs import check_env_id  # noqa: E402
from common.parallel import WorkerPool  # noqa: E402
from common.runs import RunDir, check_out_dir, default_run_dir, reopen_run  # noqa: E402
from pb2_procgen import pbt  # noqa: E402
from pb2_procgen.pb2 import PB2Explorer  # noqa: E402
from pb2_procgen.ppo import PPO_DEFAULTS, GymVecEnv, PPOAgent  # noqa: E402
from pb2_procgen.procgen_env import PROCGEN_GAMES, is_procgen  # noqa: E402
from pb2_procgen.search_space import SearchSpace, procgen_space, toy_space, vector_space  # noqa: E402
from pb2_procgen.toy import ToyAgent  # noqa: E402

SEARCHES = ("PBT", "PB2", "random")
CAT_EXPS = ("random", "exp3_dep", "cocabo")
DEFAULTS = {
    "env": "bigfish",          # a Procgen game, a gymnasium id, or "toy"
    "search": "PB2",
    "cat_exp": "random",
    "seed": 0,
    "batchsize": 4,            # population size B
    "max_budget": 0,           # env steps per agent; 0: the env kind's default (below)
    "t_ready": 0,              # env steps per segment; 0: the env kind's default
    "quantile": 0.25,          # bottom / top fraction for truncation selection
    "test_episodes": 10,       # per agent per round on the test distribution (0: skip)
    "bounds": {},              # override search-space bounds, e.g. {lr: [1e-5, 1e-3]}
    "torch_threads": 1,        # of this process (workers use 1); 0: torch's default. Another
                               # count can change PPO's float sums, so equal seeds need equal counts
    "agent": PPO_DEFAULTS,
}
KIND_DEFAULTS = {  # max_budget and t_ready per kind of env (the seed's values for Procgen)
    "toy": {"max_budget": 40, "t_ready": 4},
    "procgen": {"max_budget": 25_000_000, "t_ready": 500_000},
    "gym": {"max_budget": 200_000, "t_ready": 20_000},
}
# gymnasium envs train a small MLP agent: fewer envs, shorter rollouts, the usual discount
GYM_AGENT = {"num_envs": 8, "num_steps": 128, "gamma": 0.99, "epochs": 4, "minibatches": 4}
SMOKE = {
    "toy": {},
    "procgen": {"batchsize": 2, "max_budget": 1024, "t_ready": 512, "test_episodes": 1,
                "agent": {"num_envs": 4, "num_steps": 64, "minibatches": 2, "epochs": 1}},
    "gym": {"batchsize": 2, "max_budget": 4096, "t_ready": 1024, "test_episodes": 2},
}
# the values each numeric key allows (checked with the config, before anything is written)
RANGES = {
    "batchsize": AT_LEAST_ONE, "max_budget": NON_NEGATIVE, "t_ready": NON_NEGATIVE,
    "quantile": Range(0, 0.5, low_closed=False), "test_episodes": NON_NEGATIVE,
    "torch_threads": NON_NEGATIVE, "seed": SEED,
    **{f"agent.{key}": POSITIVE for key in ("lr", "clip_param", "max_grad_norm", "adam_eps",
                                            "reward_clip")},
    **{f"agent.{key}": NON_NEGATIVE for key in ("entropy_coef", "aug_coef", "value_coef",
                                                "num_levels", "start_level", "test_num_levels")},
    **{f"agent.{key}": AT_LEAST_ONE for key in ("num_envs", "num_steps", "epochs", "minibatches",
                                                "chunk_size", "channels", "hidden_size",
                                                "mlp_hidden", "procgen_threads", "test_num_envs")},
    **{f"agent.{key}": PROBABILITY for key in ("gamma", "gae_lambda", "reward_norm_gamma")},
}
FLAG_KEYS = ("env", "search", "cat_exp", "seed", "batchsize", "max_budget", "t_ready")



def select_round(rewards, rng, quantile: float) -> tuple[list[int], list[int]]:
    """pbt.truncation_selection over the agents that have a return. An agent with none (None: no
    episode ended in its segment) is never ranked: neither replaced nor copied this round. A
    diverged agent (-inf, or any non-finite return) ranks last."""
    rankable = [i for i, r in enumerate(rewards) if r is not None]
    ranked = [rewards[i] if np.isfinite(rewards[i]) else -np.inf for i in rankable]
    bottom, parents = pbt.truncation_selection(ranked, rng, quantile)
    return [rankable[i] for i in bottom], [rankable[i] for i in parents]


def is_number(value) -> bool:
    """A return to compare: not None (no episode ended) and finite."""
    return value is not None and bool(np.isfinite(value))

def parse_args(argv):
    parser = ArgumentParser(prog="pb2_procgen/train.py", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser)
    add_parallel_args(parser)
    parser.add_argument("--search", choices=SEARCHES, default=argparse.SUPPRESS,
                        help="explore step: PBT perturbation, PB2's GP bandit, or random (random search: "
                             "no exploit/explore) (default: PB2)")
    parser.add_argument("--cat_exp", choices=CAT_EXPS, default=argparse.SUPPRESS,
                        help="PB2's categorical: random (PB2-Rand), exp3_dep (PB2-Mult), "
                             "cocabo (PB2-Mix) (default: random)")
    parser.add_argument("--batchsize", type=int, default=argparse.SUPPRESS,
                        help="population size (default: 4)")
    parser.add_argument("--max_budget", type=int, default=argparse.SUPPRESS,
                        help="env steps per agent (default: 25M Procgen, 200k gymnasium, 40 toy)")
    parser.add_argument("--t_ready", type=int, default=argparse.SUPPRESS,
                        help="env steps per segment between exploit/explore steps "
                             "(default: 500k Procgen, 20k gymnasium, 4 toy)")
    parser.add_argument("--gpu_per_trial", type=float, default=None,
                        help="the seed's flag; accepted for compatibility (use --device)")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNGs at the end")
    return parser.parse_args(argv)


def env_kind(env_id: str) -> str:
    if env_id == "toy":
        return "toy"
    if is_procgen(env_id):
        return "procgen"
    try:
        check_env_id(env_id)
    except UsageError:
        close = difflib.get_close_matches(env_id, PROCGEN_GAMES + ["toy"], n=3, cutoff=0.6)
        if close:
            raise UsageError(f"unknown environment {env_id!r}; did you mean "
                             f"{', '.join(close)}? (Procgen games: {', '.join(PROCGEN_GAMES)})") from None
        raise
    return "gym"


def build_config(args) -> dict:
    file_layer = load_config_file(args.config) if args.config else {}
    flags = {key: getattr(args, key) for key in FLAG_KEYS if hasattr(args, key)}
    overrides = parse_overrides(args.overrides)
    env = flags.get("env", overrides.get("env", file_layer.get("env", DEFAULTS["env"])))
    kind = env_kind(env)
    kind_layer = {"agent": GYM_AGENT} if kind == "gym" else {}
    smoke = SMOKE[kind] if args.smoke else None
    config = resolve_config(DEFAULTS, kind_layer, file_layer, smoke, overrides, flags, ranges=RANGES)
    for key in ("max_budget", "t_ready"):
        if config[key] == 0:
            config[key] = KIND_DEFAULTS[kind][key]
    check_config(config)
    return config


def check_config(config: dict) -> None:
    for key in ("max_budget", "t_ready", "batchsize"):
        if config[key] <= 0:
            raise UsageError(f"{key} must be positive, got {config[key]}")
    if config["t_ready"] > config["max_budget"]:
        raise UsageError(f"--t_ready ({config['t_ready']}) is larger than --max_budget "
                         f"({config['max_budget']}): no exploit/explore step would ever happen")
    search_space(config)  # bounds are checked there
    if env_kind(config["env"]) == "gym":   # its spaces must suit the MLP agent
        refuse_atari_frames(config["env"])
        GymVecEnv(config["env"], 1, config["seed"]).close()


def refuse_atari_frames(env_id: str) -> None:
    """Atari ids (image frames) cannot feed the MLP agent: refused from their registry entry,
    before an ALE env exists (making one prints ALE's two-line banner on stderr)."""
    import gymnasium as gym

    spec = gym.registry.get(env_id)
    if spec is not None and str(spec.entry_point).startswith("ale_py") \
            and spec.kwargs.get("obs_type", "rgb") != "ram":
        raise UsageError(f"{env_id} is an Atari game (image observations): PPO here needs a 1-D "
                         f"Box observation (e.g. CartPole-v1, Acrobot-v1) or a Procgen game")


def search_space(config: dict) -> SearchSpace:
    kind = env_kind(config["env"])
    space = {"toy": toy_space, "procgen": procgen_space, "gym": vector_space}[kind]()
    for name, bounds in config["bounds"].items():
        if name not in space.continuous:
            raise UsageError(f"bounds: unknown hyperparameter {name!r}; "
                             f"allowed: {', '.join(space.continuous)}")
        numbers = [_number(b) for b in bounds] if isinstance(bounds, (list, tuple)) else []
        if len(numbers) != 2 or not all(b is not None and np.isfinite(b) for b in numbers):
            raise UsageError(f"bounds of {name!r} must be [low, high] (finite numbers), got {bounds}")
        bounds = numbers
        low, high = space.continuous[name]
        if low >= 0 and min(bounds) < 0:
            raise UsageError(f"bounds of {name!r} must be >= 0 (default {[low, high]}), got {bounds}")
        space.continuous[name] = (float(bounds[0]), float(bounds[1]))
    return SearchSpace(space.continuous, space.categorical)  # validates low <= high


def _number(value) -> float | None:
    """A float from a number or a numeric string (PyYAML reads `1e-4` as a string)."""
    if isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def make_agent(config: dict, hyperparameters: dict, seed: int, device):
    if config["env"] == "toy":
        return ToyAgent(hyperparameters, seed)
    return PPOAgent(config["env"], hyperparameters, config["agent"], seed, device)


# -- the population run -----------------------------------------------------------------------------
def seed_streams(seed: int) -> list[np.random.SeedSequence]:
    """One random stream per purpose, all from the seed: the initial configs, the exploit step and
    PBT's perturbations, PB2's explorer (agents and segments have seeds of their own)."""
    return np.random.SeedSequence(seed).spawn(3)


def new_state(config: dict, space: SearchSpace, device) -> dict:
    """Round 0: the population, its configs and the random streams (see seed_streams)."""
    initial, selection, explore = seed_streams(config["seed"])
    sampler = np.random.default_rng(initial)
    configs = [space.sample(sampler) for _ in range(config["batchsize"])]
    agents = [make_agent(config, hp, config["seed"] * 100 + i, device) for i, hp in enumerate(configs)]
    explorer = PB2Explorer(space, config["cat_exp"], seed=explore, population=config["batchsize"],
                           n_rounds=max(config["max_budget"] // config["t_ready"], 1))
    rng = np.random.default_rng(selection)
    return {"round": 0, "env_steps": 0, "test_steps": 0, "agents": agents, "configs": configs,
            "previous_rewards": [None] * len(agents), "explorer": explorer, "rng": rng,
            "final_tests": [], "metric_rows": 0, "wall_seconds": 0.0}


def run_population(config, run, state, space, pool) -> dict:
    """Rounds of [exploit and explore ->] train a segment -> test, until every agent used
    max_budget steps. A checkpoint closes every round."""
    agents, rng, explorer = state["agents"], state["rng"], state["explorer"]
    metrics = run.metrics(keep_rows=state["metric_rows"] if run.resume else None)
    start, wall_before = time.time(), state["wall_seconds"]
    total = config["max_budget"] * len(agents)
    bar = tqdm(total=total, initial=min(state["env_steps"], total), unit="step",
               desc=f"{config['search']}/{config['cat_exp']}", dynamic_ncols=True)
    try:
        while min(agent.agent_steps for agent in agents) < config["max_budget"]:
            round_index = state["round"]
            if round_index > 0 and config["search"] != "random":  # exploit and explore on the last round's ranking
                rewards = state["previous_rewards"]
                bottom, parents = select_round(rewards, rng, config["quantile"])
                state["configs"] = pbt.explore_round(agents, state["configs"], rewards, bottom,
                                                     parents, space, config["search"], explorer, rng)
                for agent_index, parent_index in zip(bottom, parents):
                    state["previous_rewards"][agent_index] = rewards[parent_index]
            seeds = [int(s) for s in np.random.SeedSequence([config["seed"], round_index])
                     .generate_state(len(agents))]
            jobs = [(agent, config["t_ready"], seed) for agent, seed in zip(agents, seeds)]
            outcomes = pool.map(pbt.train_segment, jobs)
            agents = [agent for agent, _ in outcomes]
            results = [result for _, result in outcomes]
            state["env_steps"] += sum(r["steps"] for r in results)
            # a diverged agent (NaN / inf weights or losses) ranks last: the next exploit step
            # replaces it with a copy of a top agent; it is not tested
            diverged = [i for i, r in enumerate(results) if r.get("diverged")]
            rewards = [-np.inf if i in diverged else r["train_return"] for i, r in enumerate(results)]
            if diverged:
                state["diverged_agents"] = state.get("diverged_agents", 0) + len(diverged)
                tqdm.write(f"round {round_index}: agents {diverged} diverged (non-finite weights or "
                           f"losses): ranked last, not tested", file=sys.stderr)
            if len(diverged) == len(agents):
                raise Diverged(f"every agent diverged in round {round_index}", state["env_steps"])
            tests = []
            for i, agent in enumerate(agents):  # played on the test distribution, data discarded
                tested = config["test_episodes"] and i not in diverged
                tests.append(agent.test_return(config["test_episodes"], seeds[i] + 1)
                             if tested else float("nan"))
                state["test_steps"] += agent.last_test_steps if tested else 0
            for i, (agent, result) in enumerate(zip(agents, results)):  # PB2's data: one row each
                before = state["previous_rewards"][i]
                if is_number(before) and is_number(rewards[i]):
                    explorer.observe(agent.agent_steps - result["steps"], before, rewards[i],  # the
                                     result["steps"], state["configs"][i])  # interval's start (t, R)
            wall = wall_before + time.time() - start
            for i, agent in enumerate(agents):
                metrics.write({"round": round_index, "agent": i, "env_steps": state["env_steps"],
                               "agent_steps": agent.agent_steps, "train_return": rewards[i],
                               "test_return": tests[i], "test_steps": state["test_steps"],
                               **state["configs"][i], "wall_seconds": round(wall, 2)})
            state["final_tests"] = tests
            state["previous_rewards"] = list(rewards)
            state.update(round=round_index + 1, agents=agents, metric_rows=metrics.rows_written,
                         wall_seconds=wall)
            run.save_checkpoint(checkpoint_of(state))
            bar.update(min(state["env_steps"], total) - bar.n)
            bar.set_postfix(round=round_index, best_test=f"{np.nanmax(tests + [-np.inf]):.3g}")
    finally:
        bar.close()
    finals = state["final_tests"]
    if not any(is_number(value) for value in finals):  # no test episodes: judge by the training return
        finals = state["previous_rewards"]
    finite = [value for value in finals if is_number(value)]
    if not finite:
        raise Diverged("no agent ends with a finite return", state["env_steps"])
    best = int(np.argmax([value if is_number(value) else -np.inf for value in finals]))
    return {"env_steps": state["env_steps"], "test_steps": state["test_steps"],
            "final_return": finals[best], "best_return": finals[best],
            "mean_final_return": float(np.mean(finite)), "wall_seconds": round(state["wall_seconds"], 2),
            "rounds": state["round"], "best_agent": best, "best_config": state["configs"][best],
            "diverged_agents": state.get("diverged_agents", 0)}


def summary_so_far(state: dict) -> dict:
    """What a run had reached when it stopped (for a diverged run's summary.json)."""
    finite = [value for value in state.get("final_tests", []) if is_number(value)]
    return {"env_steps": state["env_steps"], "test_steps": state["test_steps"],
            "final_return": max(finite) if finite else None,
            "best_return": max(finite) if finite else None,
            "wall_seconds": round(state["wall_seconds"], 2),
            "diverged_agents": state.get("diverged_agents", 0)}


def checkpoint_of(state: dict) -> dict:
    saved = {key: value for key, value in state.items() if key not in ("agents", "explorer", "rng")}
    saved.update(agents=[agent.state_dict() for agent in state["agents"]],
                 explorer=state["explorer"].state_dict(), rng=state["rng"].bit_generator.state)
    return saved


def restore_state(saved: dict, config: dict, space: SearchSpace, device) -> dict:
    state = new_state(config, space, device)
    for agent, agent_state, hp in zip(state["agents"], saved.pop("agents"), saved["configs"]):
        agent.load_state_dict(agent_state)
        agent.set_hyperparameters(hp)
    state["explorer"].load_state_dict(saved.pop("explorer"))
    state["rng"].bit_generator.state = saved.pop("rng")
    state.update(saved)
    return state


def main(argv=None) -> None:
    args = parse_args(argv)
    device = resolve_device(args.device)
    if args.resume:
        run, saved_config = reopen_run(args, FLAG_KEYS, budget_key="max_budget")
        config = resolve_config(DEFAULTS, saved_config, ranges=RANGES)
        check_config(config)   # a --max_budget given to --resume too (0 is no budget here)
    else:
        config = build_config(args)
        out_dir = args.out_dir or default_run_dir("pb2_procgen", config["env"], config["seed"])
        check_out_dir(out_dir, config=config)   # a stuck start of this same config may restart
    if config["torch_threads"]:
        torch.set_num_threads(config["torch_threads"])
    seed_everything(config["seed"])
    space = search_space(config)
    state = (restore_state(run.load_checkpoint(), config, space, device) if args.resume
             else new_state(config, space, device))
    if not args.resume:  # every check done and the agents built: only now the run folder
        run = RunDir(out_dir, config=config)
    run.write_config(config)
    with WorkerPool(args.workers, args.backend, args.ray_address) as pool:
        try:
            summary = run_population(config, run, state, space, pool)
        except Diverged as error:   # summary.json says so; the last round's checkpoint stays
            run.write_divergence(error, summary_so_far(state))
            raise
    summary.update(env=config["env"], search=config["search"], cat_exp=config["cat_exp"],
                   seed=config["seed"])
    if not args.no_plots:   # before the summary: a finished summary is the run's last write
        from pb2_procgen.plots import plot_run

        plot_run(run.path)
    run.write_summary(summary)
    print(f"{config['search']}/{config['cat_exp']} on {config['env']}: best final return "
          f"{summary['best_return']:.4g} (mean {summary['mean_final_return']:.4g}), "
          f"{summary['env_steps']} env steps, {summary['wall_seconds']:.0f}s -> {run.path}")


if __name__ == "__main__":
    run_main(main, prog="pb2_procgen/train.py")
