"""SEARL: Sample-Efficient Automated Deep RL (Franke et al., ICLR 2021), and the single-agent
TD3 / DQN baselines it is compared against.

    python searl/train.py --config_file searl/configs/searl_td3.yaml [--expt_dir DIR]
    python searl/train.py --config_file searl/configs/searl_dqn.yaml --env ALE/Pong-v5
    python searl/train.py --config_file searl/configs/td3.yaml --env Pendulum-v1
    python searl/train.py --smoke                     # Pendulum-v1, 3 individuals, 3k steps

Every environment step the population takes is counted in env_steps (the paper's protocol);
the elite's noise-free test episodes are counted apart as test_steps.
"""
from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from tqdm import tqdm

if __package__ in (None, ""):  # run as a script: make this paper's package and common/ importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.buffers import ReplayBuffer, require_shared_memory  # noqa: E402
from common.cli import (ArgumentParser, Diverged, UsageError, add_common_args,  # noqa: E402
                        add_parallel_args, run_main)
from common.config import (AT_LEAST_ONE, NON_NEGATIVE, POSITIVE, PROBABILITY, SEED,  # noqa: E402
                           load_config_file, parse_overrides, resolve_config)
from common.device import resolve_device, seed_everything  # noqa: E402
from common.envs import check_env_id, make_env  # noqa: E402
from common.nets import activation as activation_module  # noqa: E402
from common.parallel import WorkerPool  # noqa: E402
from common.runs import RunDir, default_run_dir, reopen_run, require_finite  # noqa: E402
from searl import algorithm  # noqa: E402
from searl.atari import FrameReplayBuffer, is_atari, make_atari_env  # noqa: E402
from searl.baselines import run_baseline  # noqa: E402
from searl.batched_td3 import reuse_freed_memory  # noqa: E402
from searl.dqn import DQN_DEFAULTS, DQNIndividual  # noqa: E402
from searl.evaluate import ELITE_FILE, export_policy  # noqa: E402
from searl.td3 import (ACTIVATIONS, HYPERPARAMETER_BOUNDS, OPTIMIZERS, TD3_DEFAULTS,  # noqa: E402
                        TD3Individual)

ALGORITHMS = ("searl_td3", "searl_dqn", "td3", "dqn")
DEFAULTS = {
    "algorithm": "searl_td3",        # searl_td3 | searl_dqn | td3 | dqn (single-agent baselines)
    "env": "HalfCheetah-v5",
    "seed": 0,
    "total_steps": 2_000_000,        # env-step budget, every interaction counted
    "population": 10,
    "tournament_size": 3,
    "elitism": True,
    "replay_size": 1_000_000,
    "min_eval_steps": 250,           # each individual: >= 1 episode and >= this many steps
    "test_episodes": 10,             # the elite's noise-free test episodes per generation
    "train_fraction": 0.5,           # updates per individual = fraction x generation env steps
    "min_train_steps": 250,
    "max_train_steps": 0,            # 0: no upper clip (SEARL-DQN: 50000)
    "mutation_probabilities": {"none": 0.2, "parameters": 0.2, "architecture": 0.2,
                               "activation": 0.2, "rl_hyperparameter": 0.2},
    "init_random": False,            # initial lrs log-uniform in [1e-5, 5e-3], random activations
    "random_first_generation": True, # uniform random actions in generation 0 (TD3 reference)
    "random_steps": 10_000,          # baselines: uniform random steps before learning starts
    "eval_every": 5_000,             # baselines: test every this many env steps
    "torch_threads": 1,              # 0: torch's default
    "batched": True,                 # SEARL-TD3: train and evaluate the population as one batched
                                     # computation (searl/batched_td3.py); false: one by one
    "compile": False,                # batched SEARL-TD3: its update through torch.compile (--compile)
    "td3": TD3_DEFAULTS,
    "dqn": DQN_DEFAULTS,
}
SMOKE = {  # a small budget of the real thing for each algorithm
    "searl_td3": {"env": "Pendulum-v1", "population": 3, "total_steps": 3_000,
                  "test_episodes": 2, "replay_size": 10_000},
    "searl_dqn": {"env": "CartPole-v1", "population": 3, "total_steps": 3_000,
                  "test_episodes": 2, "replay_size": 10_000, "min_train_steps": 100,
                  "torch_threads": 1},
    "td3": {"env": "Pendulum-v1", "total_steps": 2_000, "random_steps": 500,
            "eval_every": 1_000, "test_episodes": 2, "replay_size": 10_000},
    "dqn": {"env": "CartPole-v1", "total_steps": 2_000, "random_steps": 500,
            "eval_every": 1_000, "test_episodes": 2, "replay_size": 10_000,
            "torch_threads": 1},
}
# the values each numeric key allows (checked with the config, before anything is written)
RANGES = {
    **{key: AT_LEAST_ONE for key in ("total_steps", "population", "tournament_size", "replay_size",
                                     "min_eval_steps", "test_episodes", "eval_every")},
    **{key: NON_NEGATIVE for key in ("train_fraction", "min_train_steps", "max_train_steps",
                                     "random_steps", "torch_threads")},
    "seed": SEED,
    **{f"td3.{key}": POSITIVE for key in ("lr_actor", "lr_critic", "clip_grad")},
    **{f"td3.{key}": AT_LEAST_ONE for key in ("hidden", "batch_size", "policy_delay",
                                              "max_layers", "max_nodes")},
    **{f"td3.{key}": NON_NEGATIVE for key in ("policy_noise", "noise_clip", "exploration_noise")},
    "td3.gamma": PROBABILITY, "td3.tau": PROBABILITY,
    **{f"dqn.{key}": POSITIVE for key in ("lr", "lr_min", "lr_max")},
    **{f"dqn.{key}": AT_LEAST_ONE for key in ("num_atoms", "channels", "kernels", "strides", "hidden",
                                              "batch_size", "target_update_every",
                                              "noise_reset_every", "max_mlp_layers",
                                              "max_cnn_layers", "max_channels", "max_nodes")},
    **{f"dqn.{key}": NON_NEGATIVE for key in ("noise_std", "reward_clip", "paddings")},
    "dqn.gamma": PROBABILITY, "dqn.tau": PROBABILITY,
}
FLAG_KEYS = ("env", "seed", "total_steps", "population")  # flags that set config keys


def parse_args(argv):
    parser = ArgumentParser(prog="searl/train.py", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser, config_aliases=("--config_file",))
    add_parallel_args(parser)
    parser.add_argument("--expt_dir", default="runs",
                        help="root of the default run folder (the seed's flag; default: runs)")
    parser.add_argument("--total-steps", dest="total_steps", type=int, default=argparse.SUPPRESS,
                        help="env-step budget (default: 2000000)")
    parser.add_argument("--population", type=int, default=argparse.SUPPRESS,
                        help="population size (default: 10)")
    parser.add_argument("--one-by-one", action="store_true",
                        help="train and evaluate the individuals one after another instead of "
                             "as one batched computation (sets batched: false; the same computation, "
                             "equal up to float rounding)")
    parser.add_argument("--compile", action="store_true",
                        help="batched SEARL-TD3: run the population's update through torch.compile "
                             "(sets compile: true; equal to the eager update up to float rounding; "
                             "falls back to eager, with one line, where compiling fails)")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNGs at the end")
    return parser.parse_args(argv)


def build_config(args) -> dict:
    file_layer = load_config_file(args.config) if args.config else {}
    overrides = parse_overrides(args.overrides)
    algorithm = {**DEFAULTS, **file_layer, **overrides}.get("algorithm")   # --set may choose it
    if algorithm not in ALGORITHMS:
        raise UsageError(f"unknown algorithm {algorithm!r}; allowed: {', '.join(ALGORITHMS)}")
    flags = {key: getattr(args, key) for key in FLAG_KEYS if hasattr(args, key)}
    smoke = SMOKE[algorithm] if args.smoke else None
    if args.one_by_one:
        flags["batched"] = False
    if args.compile:
        flags["compile"] = True
    config = resolve_config(DEFAULTS, file_layer, smoke, overrides, flags, ranges=RANGES)
    if algorithm.endswith("dqn"):  # C51's value support for this env unless the user set one
        explicit = {**(file_layer.get("dqn") or {}), **overrides.get("dqn", {})}
        for key, value in value_support_for(config["env"]).items():
            if key not in explicit:
                config["dqn"][key] = value
    check_config(config)
    return config


def check_config(config: dict) -> None:
    """Everything a user can get wrong, before any file is written."""
    if any(p < 0 for p in config["mutation_probabilities"].values()) or \
            sum(config["mutation_probabilities"].values()) <= 0:
        raise UsageError("mutation_probabilities must be non-negative and not all zero")
    if config["algorithm"] == "searl_td3" and config["batched"] and not config["td3"]["reset_each_learn"]:
        raise UsageError("batched training re-creates targets and optimizers each generation "
                         "(td3.reset_each_learn: true); with td3.reset_each_learn=false use --one-by-one")
    if config["compile"] and not uses_batched_population(config):
        raise UsageError("compile applies to the batched SEARL-TD3 population (algorithm: searl_td3, "
                         "batched: true); leave it off here")
    check_agent_config(config)
    check_env_id(config["env"])
    space = "Discrete (Atari)" if is_atari(config["env"]) else action_space_of(config["env"])
    continuous = isinstance(space, gym.spaces.Box)
    if config["algorithm"].endswith("td3") and not continuous:
        raise UsageError(f"{config['algorithm']} needs a continuous (Box) action space; "
                         f"{config['env']} has {space}: use searl/configs/searl_dqn.yaml")
    if config["algorithm"].endswith("dqn") and continuous:
        raise UsageError(f"{config['algorithm']} needs a discrete action space; {config['env']} "
                         f"has {space}: use searl/configs/searl_td3.yaml")


def check_agent_config(config: dict) -> None:
    """The agent keys that name a choice, checked here: the population is built only after the
    run folder exists."""
    name = "td3" if config["algorithm"].endswith("td3") else "dqn"
    agent = config[name]
    try:
        activation_module(agent["activation"])
    except UsageError as error:   # an unknown name: which key, and the allowed ones
        raise UsageError(f"{name}.activation: {error}") from None
    if not agent["hidden"]:
        raise UsageError(f"{name}.hidden needs at least one layer width, got []")
    if name == "dqn":
        return
    if agent["optimizer"] not in OPTIMIZERS:
        raise UsageError(f"unknown td3.optimizer {agent['optimizer']!r}; allowed: {', '.join(OPTIMIZERS)}")
    mutable, listed = (*HYPERPARAMETER_BOUNDS, "optimizer"), agent["mutate_hyperparameters"]
    if config["algorithm"] == "searl_td3" and (any(key not in mutable for key in listed) or (
            not listed and config["mutation_probabilities"]["rl_hyperparameter"] > 0)):
        raise UsageError(f"td3.mutate_hyperparameters must list some of {', '.join(mutable)} "
                         f"(an rl_hyperparameter mutation picks one), got {listed}")


# C51's support must cover the env's discounted returns: Atari's clipped-scale [-10, 10] (the
# reference), or the per-step reward range / (1 - gamma) of the classic-control tasks
VALUE_SUPPORTS = {"CartPole": (0.0, 100.0), "Acrobot": (-100.0, 0.0), "MountainCar": (-100.0, 0.0)}


def value_support_for(env_id: str) -> dict:
    """The C51 value support for `env_id` ({} keeps the config's, [-10, 10] by default)."""
    name = env_id.split("/")[-1].split("-")[0]
    if is_atari(env_id) or name not in VALUE_SUPPORTS:
        return {}
    v_min, v_max = VALUE_SUPPORTS[name]
    return {"v_min": v_min, "v_max": v_max}


def uses_batched_population(config: dict) -> bool:
    """SEARL-TD3 trains and evaluates its population batched unless `batched: false`; SEARL-DQN
    (CNNs of different shapes) trains one individual at a time."""
    return config["algorithm"] == "searl_td3" and config["batched"]


def action_space_of(env_id: str) -> gym.Space:
    env = make_env(env_id)
    env.close()
    return env.action_space


def make_env_for(config: dict, seed: int) -> gym.Env:
    if is_atari(config["env"]):
        return make_atari_env(config["env"], seed)
    return make_env(config["env"], seed)


def make_buffer(config: dict, env: gym.Env, seed: int):
    if is_atari(config["env"]):
        return FrameReplayBuffer(config["replay_size"], env.observation_space.shape, seed=seed)
    discrete = isinstance(env.action_space, gym.spaces.Discrete)
    return ReplayBuffer(config["replay_size"], env.observation_space.shape,
                        () if discrete else env.action_space.shape,
                        obs_dtype=env.observation_space.dtype,
                        action_dtype=np.int64 if discrete else np.float32, seed=seed)


def make_individual(config: dict, env: gym.Env, index: int, seed: int, rng: np.random.Generator,
                    device: torch.device):
    """One population member; with `init_random`, its lrs and activations are sampled."""
    single_agent = config["algorithm"] in ("td3", "dqn")  # keeps targets and optimizer
    if config["algorithm"].endswith("td3"):
        agent_config = dict(config["td3"])
        agent_config["reset_each_learn"] = agent_config["reset_each_learn"] and not single_agent
        if config["init_random"]:
            agent_config.update(
                lr_actor=float(np.exp(rng.uniform(np.log(1e-5), np.log(5e-3)))),
                lr_critic=float(np.exp(rng.uniform(np.log(1e-5), np.log(5e-3)))),
                actor_activation=str(rng.choice(ACTIVATIONS)),
                critic_activation=str(rng.choice(ACTIVATIONS)))
        return TD3Individual(index, env.observation_space.shape[0], env.action_space.shape[0],
                             agent_config, seed, device)
    agent_config = dict(config["dqn"])
    agent_config["reset_each_learn"] = agent_config["reset_each_learn"] and not single_agent
    return DQNIndividual(index, env.observation_space.shape, int(env.action_space.n),
                         agent_config, seed, device)


# -- the SEARL run ----------------------------------------------------------------------------------
def new_searl_state(config, env, device) -> dict:
    rng = np.random.default_rng(config["seed"])
    population = [make_individual(config, env, i, config["seed"] * 1000 + i, rng, device)
                  for i in range(config["population"])]
    return {"generation": 0, "env_steps": 0, "test_steps": 0, "next_index": len(population),
            "population": population, "elite": None, "elite_returns": [], "last_steps": 0,
            "rng": rng, "metric_rows": 0, "population_rows": 0, "wall_seconds": 0.0}


def run_searl(config, run, state, buffer, envs, test_env, pool) -> dict:
    """Algorithm 1: [mutate -> train] -> evaluate -> select -> test elite, per generation.
    A checkpoint closes every generation (the selected population, before mutation).
    `envs`: one env per individual (batched evaluation) or a list of one."""
    rng = state["rng"]
    batched = uses_batched_population(config)
    metrics = run.metrics(keep_rows=state["metric_rows"] if run.resume else None)
    population_log = run.metrics(keep_rows=state["population_rows"] if run.resume else None,
                                 name="population.csv")
    probabilities = [config["mutation_probabilities"][m] for m in algorithm.MUTATIONS]
    start, wall_before = time.time(), state["wall_seconds"]
    bar = tqdm(total=config["total_steps"], initial=min(state["env_steps"], config["total_steps"]),
               unit="step", desc="SEARL", dynamic_ncols=True)
    population = state["population"]
    try:
        while state["env_steps"] < config["total_steps"]:
            generation = state["generation"]
            updates = 0
            if generation > 0:  # Sec. 3.3 and 3.4 on the population selected last generation
                algorithm.mutate_population(population, rng, probabilities)
                updates = algorithm.updates_per_individual(
                    state["last_steps"], config["train_fraction"], config["min_train_steps"],
                    config["max_train_steps"])
                population = algorithm.train_population(population, buffer, updates, rng, pool,
                                                        batched=batched, compile=config["compile"])
            policy = type(population[0]).population_policy(population) if batched else None
            evaluations = algorithm.evaluate_population(
                population, envs, buffer, rng, random_actions=generation == 0
                and config["random_first_generation"], min_steps=config["min_eval_steps"], policy=policy)
            generation_steps = sum(e.steps for e in evaluations)
            state["env_steps"] += generation_steps
            diverged = [ind.index for ind, e in zip(population, evaluations) if e is algorithm.DIVERGED]
            if diverged:   # the worst fitness: selection drops them, the run carries on
                state["diverged_individuals"] = state.get("diverged_individuals", 0) + len(diverged)
                tqdm.write(f"generation {generation}: individuals {diverged} diverged (non-finite "
                           f"weights after training): fitness -inf, not played", file=sys.stderr)
            if len(diverged) == len(population):
                raise Diverged(f"every individual's weights are non-finite after generation "
                               f"{generation}'s training", state["env_steps"])
            for individual, evaluation in zip(population, evaluations):
                population_log.write({"generation": generation, "env_steps": state["env_steps"],
                                      "id": individual.index, "parent": individual.parent,
                                      "mutation": individual.mutation, "fitness": evaluation.fitness,
                                      "eval_steps": evaluation.steps, **individual.describe()})
            elite, population, state["next_index"] = algorithm.tournament_selection(
                population, config["tournament_size"], rng, state["next_index"], config["elitism"])
            seeds = [int(s) for s in np.random.SeedSequence([config["seed"] + 100, generation])
                     .generate_state(config["test_episodes"])]
            test_return, test_steps = algorithm.test_individual(elite, test_env, config["test_episodes"], seeds)
            require_finite("the elite's test return", test_return, state["env_steps"])
            state["test_steps"] += test_steps
            state["elite_returns"].append(test_return)
            fitness = [e.fitness for e in evaluations if e is not algorithm.DIVERGED]
            wall = wall_before + time.time() - start
            metrics.write({"generation": generation, "env_steps": state["env_steps"],
                           "test_steps": state["test_steps"], "elite_test_return": test_return,
                           "best_fitness": max(fitness), "mean_fitness": float(np.mean(fitness)),
                           "elite_id": elite.index, "updates_per_individual": updates,
                           "wall_seconds": round(wall, 2)})
            state.update(generation=generation + 1, population=population, elite=elite,
                         last_steps=generation_steps, metric_rows=metrics.rows_written,
                         population_rows=population_log.rows_written, wall_seconds=wall)
            run.save_checkpoint(checkpoint_of(state, buffer))
            export_policy(run.path / ELITE_FILE, elite, config, envs[0])
            bar.update(min(generation_steps, config["total_steps"] - bar.n))
            bar.set_postfix(gen=generation, elite=f"{test_return:.1f}", best_fit=f"{max(fitness):.1f}")
    finally:
        bar.close()
    returns = state["elite_returns"]
    return {"env_steps": state["env_steps"], "test_steps": state["test_steps"],
            "final_return": returns[-1], "best_return": max(returns),
            "wall_seconds": round(state["wall_seconds"], 2), "generations": state["generation"],
            "diverged_individuals": state.get("diverged_individuals", 0),
            "elite": state["elite"].describe() if state["elite"] is not None else None}


def summary_so_far(state: dict) -> dict:
    """What a run had reached when it stopped (for a diverged run's summary.json)."""
    returns = state.get("elite_returns", state.get("test_returns", []))
    return {"env_steps": state.get("env_steps", 0), "test_steps": state.get("test_steps", 0),
            "final_return": returns[-1] if returns else None,
            "best_return": max(returns) if returns else None,
            "wall_seconds": round(state.get("wall_seconds", 0.0), 2),
            "diverged_individuals": state.get("diverged_individuals", 0)}


@contextlib.contextmanager
def divergence_recorded(run: RunDir, state: dict):
    """A NaN / inf that stops the run goes into summary.json (status: diverged) before the
    one-line exit; the last checkpoint (the last good generation) stays as it was."""
    try:
        yield
    except Diverged as error:
        run.write_divergence(error, summary_so_far(state))
        raise


def checkpoint_of(state: dict, buffer) -> dict:
    """What --resume needs: the loop state, the replay memory and every RNG drawn from."""
    saved = {key: value for key, value in state.items() if key != "rng"}
    saved.update(rng=state["rng"].bit_generator.state, torch_rng=torch.get_rng_state(),
                 buffer=buffer.state_dict())
    return saved


def restore_state(saved: dict) -> dict:
    rng = np.random.default_rng()
    rng.bit_generator.state = saved.pop("rng")
    torch.set_rng_state(saved.pop("torch_rng"))
    return {**saved, "rng": rng}


# -- entry point ------------------------------------------------------------------------------------
def main(argv=None) -> None:
    args = parse_args(argv)
    device = resolve_device(args.device)
    run = state = buffer_state = None
    if args.resume:
        if args.compile or args.one_by_one:
            raise UsageError("--resume continues the run's saved config (its compile and batched keys); "
                             "pass --compile / --one-by-one at the run's first start")
        run, saved_config = reopen_run(args, FLAG_KEYS, budget_key="total_steps")
        config = resolve_config(DEFAULTS, saved_config, ranges=RANGES)
        saved = run.load_checkpoint()
        buffer_state = saved.pop("buffer")
        state = restore_state(saved)
    else:
        config = build_config(args)
    if config["torch_threads"]:
        torch.set_num_threads(config["torch_threads"])
    if uses_batched_population(config) and device.type == "cpu":
        reuse_freed_memory()
    seed_everything(config["seed"])
    env = make_env_for(config, config["seed"])
    test_env = make_env_for(config, config["seed"] + 100)
    buffer = make_buffer(config, env, config["seed"])
    if args.backend == "process" and config["algorithm"].startswith("searl"):
        require_shared_memory(buffer.shared_bytes())   # workers read the memory from /dev/shm
    if run is None:  # every check done: only now the run folder
        run = RunDir(args.out_dir or default_run_dir("searl", config["env"], config["seed"],
                                                     root=args.expt_dir), config=config)
    run.write_config(config)
    if buffer_state is not None:
        buffer.load_state_dict(buffer_state)

    if config["algorithm"].startswith("searl"):
        if state is None:
            state = new_searl_state(config, env, device)
        # batched evaluation plays one env per individual (episode seeds come from the run's RNG)
        envs = [env] + [make_env_for(config, config["seed"])
                        for _ in range(config["population"] - 1)] \
            if uses_batched_population(config) else [env]
        with WorkerPool(args.workers, args.backend, args.ray_address) as pool, \
                divergence_recorded(run, state):
            summary = run_searl(config, run, state, buffer, envs, test_env, pool)
    else:
        if state is None:
            rng = np.random.default_rng(config["seed"])
            state = {"agent": make_individual(config, env, 0, config["seed"], rng, device),
                     "rng": rng}
        with divergence_recorded(run, state):
            summary = run_baseline(config, run, state, buffer, env, test_env, checkpoint_of)
        export_policy(run.path / ELITE_FILE, state["agent"], config, env)
    summary.update(algorithm=config["algorithm"], env=config["env"], seed=config["seed"])
    if not args.no_plots:   # before the summary: a finished summary is the run's last write
        from searl.plots import plot_run

        plot_run(run.path)
    run.write_summary(summary)
    print(f"{config['algorithm']} on {config['env']}: final return {summary['final_return']:.1f}, "
          f"best {summary['best_return']:.1f}, {summary['env_steps']} env steps, "
          f"{summary['wall_seconds']:.0f}s -> {run.path}")


if __name__ == "__main__":
    run_main(main, prog="searl/train.py")
