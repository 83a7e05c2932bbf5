"""SEARL (searl/train.py, the searl_td3 config) against AgileRL 2.58's evolutionary TD3
(`train_off_policy` with `TournamentSelection` and `Mutations`), same population size, same seeds,
same total number of environment steps: the best agent's noise-free test return and wall time.

    python bench/searl_vs_agilerl.py --quick     # Pendulum-v1, population 4, 2 seeds, 9 600 steps
    python bench/searl_vs_agilerl.py             # HalfCheetah-v5, population 10, 3 seeds, 220 000 steps

Quick mode: about 3.5 minutes on an idle 2-core machine (6 when the cores are shared). Full mode:
about 3.5-4 hours idle (estimate from per-update times, not run): per seed SEARL does ~1.05M TD3
updates (5 per env step at population 10) at ~2.5 ms, AgileRL ~200k at ~7.5 ms.
Each (side, seed) runs in a fresh child process with one torch thread, one at a time, alternating
(seed 0: SEARL, AgileRL; seed 1: SEARL, AgileRL; ...).

What is counted (every real environment step a method consumed, the collection's protocol):
- SEARL: `env_steps` of its summary, i.e. every step of every individual's fitness episodes (these
  are also its training data). The elite's 10 noise-free test episodes per generation select
  nothing and are discarded; they are reported apart as `test_steps` (SEARL's protocol).
- AgileRL: a `common.envs.CountSteps` wrapper under AgileRL's own vector wrapper counts every real
  `env.step`: the training steps AND the fitness episodes of `agent.test` inside
  `train_off_policy` (AgileRL's own step counter leaves those out). AgileRL autoresets on the
  NEXT step call (gymnasium >= 1.0); that call resets and steps nothing, so it is not counted,
  but AgileRL counts it in `evo_steps` and also stores its fake transition in the replay memory
  (its behaviour, left as is). `evo_steps` is therefore given as calls = real steps + autoresets.
- Budget: AgileRL runs `generations` generations of population x (evo_steps real training steps
  + `eval_loop` fitness episodes); that total is SEARL's `--total-steps` (quick: 3 x 4 x
  (600 + 200) = 9 600, SEARL 6 generations of 4 x 400; full: 2 x 10 x (10 000 + 1 000) = 220 000,
  SEARL 22 generations of 10 x 1 000). Both envs here never
  terminate early (fixed episode lengths), so both sides consume exactly the budget; the JSON
  holds both counts and `budgets_equal`.
- Final comparison: after training, each side's best agent plays the same N noise-free test
  episodes (seeds 10000..10000+N-1) through one function (`test_return`); these steps are in
  neither budget. SEARL's best agent is the final elite (the checkpoint's `elite`: the best
  fitness of the last evaluation). AgileRL's is the best agent by fitness at the last selection,
  copied in `TournamentSelection.select` before `Mutations` runs: `train_off_policy` mutates the
  population, elite included (mutate_elite=True), after the last evaluation.
- Wall time: seconds of the training call only (SEARL: `searl.train.main` with --no-plots, which
  includes its per-generation elite tests and checkpoints; AgileRL: population creation and
  `train_off_policy`), measured in the child; imports and the final test are left out.
  `target_met`: SEARL's mean test return >= AgileRL's, and SEARL's mean wall <= AgileRL's.

Settings chosen for AgileRL (its Lunar Lander TD3 tutorial and configs/training/td3.yaml):
batch 128, lr_actor 1e-4, lr_critic 1e-3, learn_step 1, gamma 0.99, tau 0.005, policy_freq 2,
Ornstein-Uhlenbeck noise (0.1, theta 0.15, dt 0.01); hp_config ranges lr 1e-4..1e-2,
batch 8..512, learn_step 1..16 (one object passed to `TD3.population`, as the tutorial does);
mutations none 0.4 / architecture 0.2 (new layer 0.2) / parameters 0.2 / activation 0 (TD3 has
none in 2.58) / RL hyperparameter 0.2, sd 0.1, rand_seed = seed; tournament size 2 with elitism;
eval_loop 1 full episode; learning_delay 1000; full mode keeps evo_steps 10 000. Chosen here:
- evo_steps 600 in quick mode: the default 10 000 x 4 agents is 4x the whole quick budget.
- One env (not the tutorial's 8 async envs), as SEARL; device cpu; wandb, tensorboard,
  checkpoints and elite saving off; verbose off.
- Replay memory 1M for both (SEARL's config; the tutorial's is 100k).
- Networks: SEARL starts with one hidden layer of 128 (Linear, LayerNorm, ReLU) in the actor
  and both critics. AgileRL always builds encoder MLP -> latent -> head MLP and TD3 forces the
  encoder's LayerNorm off, so the closest is encoder [128] -> latent 128 -> head [128] with
  LayerNorm: three hidden layers of 128 (only the head's has LayerNorm); the critic's head also
  takes the action.
SEARL runs its config unchanged (tournament 3, elitism, mutation probabilities 0.2 each,
updates per individual = max(250, 0.5 x generation steps), fresh optimizers each generation),
with --env, --population, --total-steps, --seed, --device cpu.

AgileRL 2.58 imports peft and transformers at import time (its [llm] extra), even for TD3;
requirements-bench.txt installs them.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import benchlib
from common.cli import ArgumentParser, UsageError, run_main

NAME = "searl_vs_agilerl"
SIDES = ("searl", "agilerl")
LABELS = {"searl": "SEARL", "agilerl": "AgileRL"}
SEARL_CONFIG = benchlib.ROOT / "searl" / "configs" / "searl_td3.yaml"
SEARL_MIN_EVAL_STEPS = 250  # searl_td3.yaml: each individual plays >= 1 episode and >= 250 steps
MODES = {
    "quick": {"env": "Pendulum-v1", "population": 4, "seeds": 2, "evo_steps": 600,
              "generations": 3, "test_episodes": 10},
    "full": {"env": "HalfCheetah-v5", "population": 10, "seeds": 3, "evo_steps": 10_000,
             "generations": 2, "test_episodes": 10},
}
TEST_SEED = 10_000          # final test episodes: seeds TEST_SEED .. TEST_SEED + N - 1, both sides
REPLAY_SIZE = 1_000_000     # SEARL's replay_size; AgileRL gets the same memory
AGILERL_TD3 = {"batch_size": 128, "lr_actor": 1e-4, "lr_critic": 1e-3, "learn_step": 1,
               "gamma": 0.99, "tau": 0.005, "policy_freq": 2, "O_U_noise": True,
               "expl_noise": 0.1, "mean_noise": 0.0, "theta": 0.15, "dt": 0.01}
AGILERL_NET = {"latent_dim": 128, "encoder_config": {"hidden_size": [128]},
               "head_config": {"hidden_size": [128]}}
AGILERL_HP_RANGES = {"lr_actor": (1e-4, 1e-2, float), "lr_critic": (1e-4, 1e-2, float),
                     "batch_size": (8, 512, int), "learn_step": (1, 16, int)}
AGILERL_MUTATIONS = {"no_mutation": 0.4, "architecture": 0.2, "new_layer_prob": 0.2,
                     "parameters": 0.2, "activation": 0.0, "rl_hp": 0.2, "mutation_sd": 0.1}
AGILERL_TOURNAMENT = {"tournament_size": 2, "elitism": True}
AGILERL_EVAL_LOOP = 1
AGILERL_LEARNING_DELAY = 1000


# -- budget ---------------------------------------------------------------------------------------
def episode_length(env_id: str) -> int:
    import gymnasium as gym

    return int(gym.spec(env_id).max_episode_steps)


def agilerl_calls(real_steps: int, length: int) -> int:
    """Vector-env calls that make `real_steps` real steps: one call per episode end is AgileRL's
    NEXT_STEP autoreset, which steps nothing."""
    return real_steps + (real_steps - 1) // length


def make_budget(settings: dict) -> dict:
    """AgileRL's consumption of `generations` generations; SEARL gets the same total."""
    length = episode_length(settings["env"])
    population, generations = settings["population"], settings["generations"]
    per_agent = settings["evo_steps"] + AGILERL_EVAL_LOOP * length
    total = generations * population * per_agent
    searl_generation = population * math.ceil(SEARL_MIN_EVAL_STEPS / length) * length
    if total % searl_generation:
        raise UsageError(f"budget {total} (AgileRL: {generations} generations x {population} "
                         f"agents x {per_agent} steps) is not a multiple of SEARL's generation "
                         f"({searl_generation} steps); change --generations or --evo-steps")
    calls = agilerl_calls(settings["evo_steps"], length)
    return {"env_steps": total, "episode_length": length,
            "searl_generations": total // searl_generation,
            "searl_steps_per_generation": searl_generation,
            "agilerl_generations": generations, "agilerl_evo_steps_real": settings["evo_steps"],
            "agilerl_evo_steps_calls": calls, "agilerl_max_steps": generations * calls,
            "agilerl_eval_steps": generations * population * AGILERL_EVAL_LOOP * length}


# -- the common final test ------------------------------------------------------------------------
def test_return(act, env_id: str, episodes: int) -> list[float]:
    """Noise-free episodes with seeds TEST_SEED + i; `act(obs)` returns the env's action."""
    from common.envs import make_env

    env = make_env(env_id)
    returns = []
    for episode in range(episodes):
        obs, _ = env.reset(seed=TEST_SEED + episode)
        done, total = False, 0.0
        while not done:
            obs, reward, terminated, truncated, _ = env.step(act(obs))
            total, done = total + float(reward), terminated or truncated
        returns.append(total)
    env.close()
    return returns


# -- one side per child process -------------------------------------------------------------------
def run_searl(settings: dict, budget: dict, seed: int) -> dict:
    from common.runs import load_checkpoint
    from searl.algorithm import to_env_action
    from searl.train import main as searl_main

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        argv = ["--config_file", str(SEARL_CONFIG), "--env", settings["env"],
                "--population", str(settings["population"]),
                "--total-steps", str(budget["env_steps"]), "--seed", str(seed),
                "--device", "cpu", "--out-dir", str(out), "--no-plots"]
        start = time.perf_counter()
        searl_main(argv)
        wall = time.perf_counter() - start
        summary = json.loads((out / "summary.json").read_text())
        elite = load_checkpoint(out / "checkpoints" / "latest.pt")["elite"]
    from common.envs import make_env

    space = make_env(settings["env"]).action_space
    returns = test_return(lambda obs: to_env_action(elite.act(obs, explore=False), space),
                          settings["env"], settings["test_episodes"])
    return {"env_steps": summary["env_steps"], "test_steps": summary["test_steps"],
            "generations": summary["generations"], "wall_seconds": wall,
            "test_returns": returns, "own_elite_test_return": summary["final_return"],
            "best_agent": summary["elite"]}


def run_agilerl(settings: dict, budget: dict, seed: int) -> dict:
    from agilerl.algorithms.core.registry import HyperparameterConfig, RLParameter
    from agilerl.algorithms.td3 import TD3
    from agilerl.components.replay_buffer import ReplayBuffer
    from agilerl.hpo.mutation import Mutations
    from agilerl.hpo.tournament import TournamentSelection
    from agilerl.training.train_off_policy import train_off_policy

    from common.envs import StepCounter, make_env

    class EliteCopyTournament(TournamentSelection):
        """AgileRL's tournament, plus a copy of the elite before Mutations changes it."""

        elite = None

        def select(self, population):
            elite, new_population, indices = super().select(population)
            self.elite = elite.clone(index=elite.index, wrap=False)
            return elite, new_population, indices

    counter = StepCounter()
    env = make_env(settings["env"], seed, counter=counter)  # the same env stack as SEARL's
    population = settings["population"]
    start = time.perf_counter()
    mutations = Mutations(**AGILERL_MUTATIONS, rand_seed=seed, device="cpu")  # seeds np, torch
    hp_config = HyperparameterConfig(**{name: RLParameter(min=low, max=high, dtype=dtype)
                                        for name, (low, high, dtype) in AGILERL_HP_RANGES.items()})
    agents = TD3.population(size=population, observation_space=env.observation_space,
                            action_space=env.action_space, net_config=AGILERL_NET,
                            hp_config=hp_config, device="cpu", **AGILERL_TD3)
    tournament = EliteCopyTournament(population_size=population, **AGILERL_TOURNAMENT)
    memory = ReplayBuffer(max_size=REPLAY_SIZE, device="cpu")
    _, fitnesses = train_off_policy(
        env=env, env_name=settings["env"], algo="TD3", pop=agents, memory=memory,
        max_steps=budget["agilerl_max_steps"], evo_steps=budget["agilerl_evo_steps_calls"],
        eval_steps=None, eval_loop=AGILERL_EVAL_LOOP, learning_delay=AGILERL_LEARNING_DELAY,
        selection_strategy=tournament, mutation=mutations, checkpoint=None, save_elite=False,
        wb=False, tensorboard=False, verbose=False)
    wall = time.perf_counter() - start
    elite = tournament.elite
    returns = test_return(lambda obs: elite.get_action(obs[None], training=False)[0],
                          settings["env"], settings["test_episodes"])
    return {"env_steps": counter.count, "test_steps": 0, "generations": settings["generations"],
            "wall_seconds": wall, "test_returns": returns,
            "own_elite_test_return": None, "elite_fitness": float(elite.fitness[-1]),
            "best_agent": {"index": elite.index, "lr_actor": elite.lr_actor,
                           "lr_critic": elite.lr_critic, "batch_size": elite.batch_size,
                           "learn_step": elite.learn_step, "actor": describe_network(elite.actor),
                           "critic": describe_network(elite.critic_1)},
            "replay_transitions": len(memory)}


def describe_network(network) -> str:
    """AgileRL's encoder -> latent -> head sizes after its architecture mutations."""
    return (f"encoder {network.encoder.hidden_size} -> latent {network.latent_dim} -> "
            f"head {network.head_net.hidden_size}")


def worker(args) -> None:
    import torch

    torch.set_num_threads(1)
    settings = json.loads(args.settings)
    budget = make_budget(settings)
    run = run_searl if args.worker == "searl" else run_agilerl
    result = run(settings, budget, args.seed)
    result.update(side=args.worker, seed=args.seed,
                  test_return=float(np.mean(result["test_returns"])))
    sys.stdout.write("\n")  # the JSON answer starts a line of its own
    benchlib.emit(result)


# -- the comparison -------------------------------------------------------------------------------
def parse_args(argv):
    parser = ArgumentParser(prog="bench/searl_vs_agilerl.py", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    benchlib.add_output_args(parser)
    parser.add_argument("--seeds", type=int, default=None,
                        help="number of seeds, 0..N-1 (quick: 2, full: 3)")
    parser.add_argument("--population", type=int, default=None,
                        help="population size of both sides (quick: 4, full: 10)")
    parser.add_argument("--generations", type=int, default=None,
                        help="AgileRL generations that set the budget (quick: 3, full: 2)")
    parser.add_argument("--evo-steps", dest="evo_steps", type=int, default=None,
                        help="AgileRL real training steps per agent per generation "
                             "(quick: 600, full: 10000)")
    parser.add_argument("--test-episodes", dest="test_episodes", type=int, default=None,
                        help="final noise-free test episodes per best agent (default: 10)")
    parser.add_argument("--worker", choices=SIDES, help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--settings", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def resolve_settings(args) -> dict:
    settings = dict(MODES["quick" if args.quick else "full"])
    for key in ("seeds", "population", "generations", "evo_steps", "test_episodes"):
        value = getattr(args, key)
        if value is not None:
            if value < 1:
                raise UsageError(f"--{key.replace('_', '-')} must be at least 1, got {value}")
            settings[key] = value
    if settings["population"] < 2:
        raise UsageError("--population must be at least 2 (a tournament needs a population)")
    return settings


def require_agilerl() -> None:
    # agilerl 2.58 imports peft and transformers even for TD3 (requirements-bench.txt has them)
    benchlib.require("agilerl", "peft", "transformers", "gymnasium", "mujoco")


def summarise(runs: list[dict], settings: dict, budget: dict) -> dict:
    sides = {}
    for side in SIDES:
        mine = [run for run in runs if run["side"] == side]
        mean, se = benchlib.mean_se([run["test_return"] for run in mine])
        wall, wall_se = benchlib.mean_se([run["wall_seconds"] for run in mine])
        sides[side] = {"test_return_mean": mean, "test_return_se": se,
                       "wall_seconds_mean": wall, "wall_seconds_se": wall_se,
                       "env_steps": sorted({run["env_steps"] for run in mine})}
    searl, agilerl = sides["searl"], sides["agilerl"]
    own = [run["own_elite_test_return"] for run in runs if run["side"] == "searl"]
    paired = [(s["test_return"], a["test_return"]) for s in runs if s["side"] == "searl"
              for a in runs if a["side"] == "agilerl" and a["seed"] == s["seed"]]
    return_ok = searl["test_return_mean"] >= agilerl["test_return_mean"]
    wall_ok = searl["wall_seconds_mean"] <= agilerl["wall_seconds_mean"]
    return {"sides": sides, "searl_own_elite_test_return_mean": float(np.mean(own)),
            "return_difference": searl["test_return_mean"] - agilerl["test_return_mean"],
            "wall_ratio_searl_over_agilerl": searl["wall_seconds_mean"] / agilerl["wall_seconds_mean"],
            "searl_wins_per_seed": sum(s >= a for s, a in paired), "seeds": len(paired),
            "budgets_equal": all(run["env_steps"] == budget["env_steps"] for run in runs),
            "target_return_met": bool(return_ok), "target_wall_met": bool(wall_ok),
            "target_met": bool(return_ok and wall_ok)}


def table(runs: list[dict], aggregate: dict, settings: dict) -> str:
    n = settings["test_episodes"]
    headers = ["seed", "method", "env steps", "test steps (apart)", "generations",
               f"best agent, {n} test eps", "own elite test", "wall s"]
    rows = []
    for run in runs:
        own = run["own_elite_test_return"]
        rows.append([run["seed"], LABELS[run["side"]], run["env_steps"], run["test_steps"],
                     run["generations"], f"{run['test_return']:.1f}",
                     "-" if own is None else f"{own:.1f}", f"{run['wall_seconds']:.0f}"])
    for side in SIDES:
        s = aggregate["sides"][side]
        own = aggregate["searl_own_elite_test_return_mean"] if side == "searl" else None
        rows.append(["mean", LABELS[side], "/".join(map(str, s["env_steps"])), "", "",
                     f"{s['test_return_mean']:.1f} ± {s['test_return_se']:.1f}",
                     "-" if own is None else f"{own:.1f}",
                     f"{s['wall_seconds_mean']:.0f}"])
    return benchlib.markdown_table(headers, rows)


def compare(args) -> None:
    settings = resolve_settings(args)
    budget = make_budget(settings)
    require_agilerl()
    print(f"{settings['env']}: population {settings['population']}, {settings['seeds']} seeds, "
          f"{budget['env_steps']} env steps each (SEARL {budget['searl_generations']} "
          f"generations, AgileRL {budget['agilerl_generations']})", file=sys.stderr)
    runs, start = [], time.time()
    for seed in range(settings["seeds"]):
        for side in SIDES:  # alternating: seed 0 SEARL, AgileRL; seed 1 SEARL, AgileRL; ...
            t0 = time.time()
            run = benchlib.run_child(__file__, ["--worker", side, "--seed", seed,
                                                "--settings", json.dumps(settings)])
            print(f"  {LABELS[side]:7s} seed {seed}: test return {run['test_return']:8.1f}, "
                  f"{run['env_steps']} env steps, train {run['wall_seconds']:.0f} s "
                  f"(child {time.time() - t0:.0f} s)", file=sys.stderr)
            runs.append(run)
    aggregate = summarise(runs, settings, budget)
    print(table(runs, aggregate, settings))
    print(f"\ntarget_met: {aggregate['target_met']} (return: {aggregate['target_return_met']}, "
          f"wall: {aggregate['target_wall_met']}); budgets equal: {aggregate['budgets_equal']}; "
          f"total {time.time() - start:.0f} s")
    payload = {
        "mode": "quick" if args.quick else "full", "settings": settings, "budget": budget,
        "runs": runs, **aggregate, "total_wall_seconds": time.time() - start,
        "searl": {"config": str(SEARL_CONFIG.relative_to(benchlib.ROOT)),
                  "flags": ["--env", settings["env"], "--population", settings["population"],
                            "--total-steps", budget["env_steps"], "--device", "cpu",
                            "--no-plots"],
                  "network": "actor and 2 critics: one hidden layer of 128, Linear-LayerNorm-ReLU"},
        "agilerl": {"td3": AGILERL_TD3, "net_config": AGILERL_NET,
                    "network": "encoder [128] (no LayerNorm, forced by TD3) -> latent 128 -> "
                               "head [128] with LayerNorm: 3 hidden layers",
                    "hp_ranges": {k: [lo, hi] for k, (lo, hi, _) in AGILERL_HP_RANGES.items()},
                    "mutations": AGILERL_MUTATIONS, "tournament": AGILERL_TOURNAMENT,
                    "eval_loop": AGILERL_EVAL_LOOP, "learning_delay": AGILERL_LEARNING_DELAY,
                    "replay_size": REPLAY_SIZE, "num_envs": 1},
        "test_seeds": [TEST_SEED, TEST_SEED + settings["test_episodes"] - 1],
        "versions": benchlib.package_versions("agilerl", "torch", "gymnasium", "mujoco",
                                              "peft", "transformers"),
    }
    path = benchlib.write_result(NAME, payload, args.results_dir)
    print(f"-> {path}", file=sys.stderr)


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.worker:
        worker(args)
    else:
        compare(args)


if __name__ == "__main__":
    run_main(main, prog="bench/searl_vs_agilerl.py")
