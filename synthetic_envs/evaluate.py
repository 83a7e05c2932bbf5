"""Train fresh agents on a learned proxy and on the real env, and compare them (the paper's
evaluation: Figs. 2-5): real steps until solved, solved fraction, final real return, learning
curves, return histograms; with other agent types for transfer and varied hyperparameters.

    python synthetic_envs/evaluate.py RUN_DIR                         # 100 agents of the run's type
    python synthetic_envs/evaluate.py RUN_DIR --agents ql,sarsa --intrinsic --vary-hp

Writes RUN_DIR/evaluation.json (or --name) and the figures. The protocol is the original's
comparison scripts': every agent trains its whole episode budget (no early stop) with a greedy
test on the real env after every training episode; it is "solved" when the mean of its last 10
tests is at or above the env's threshold, and its steps to solve are the real *training* steps
until that mean first reached the threshold (test episodes are counted apart). `--early-stop`
instead stops each agent as soon as the rule holds (what NES does). An SE costs 0 real training
steps: its agents are solved when their final real test reaches the threshold.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

if __package__ in (None, ""):  # run as a script: make this paper's package and common/ importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.cli import ArgumentParser, UsageError, add_parallel_args, run_main  # noqa: E402
from common.config import load_config_file  # noqa: E402
from common.parallel import WorkerPool  # noqa: E402
from common.runs import load_checkpoint, write_json_atomic  # noqa: E402
from synthetic_envs import inner, population  # noqa: E402
from synthetic_envs.envs import env_spec, make_real_env  # noqa: E402
from synthetic_envs.nes import seed_for  # noqa: E402
from synthetic_envs.proxies import build_proxy, get_flat  # noqa: E402
from synthetic_envs.tabular import EVAL_OVERRIDES, TABULAR_AGENTS  # noqa: E402

GROUPS = ("proxy", "baseline", "intrinsic")


def parse_args(argv):
    parser = ArgumentParser(prog="synthetic_envs/evaluate.py", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", help="a run folder written by synthetic_envs/train.py")
    parser.add_argument("--agents", default="",
                        help="comma-separated agent types to train (default: the run's agent); "
                             f"allowed: {', '.join(inner.AGENT_NAMES)}")
    parser.add_argument("--n-agents", type=int, default=100, help="fresh agents per group (default: 100)")
    parser.add_argument("--vary-hp", action="store_true", help="sample each agent's hyperparameters")
    parser.add_argument("--intrinsic", action="store_true",
                        help="also train the mode -1 baseline (count-based bonus / ICM) on the real env")
    parser.add_argument("--test-episodes", type=int, default=None,
                        help="greedy episodes per test (default: the run's inner.test_episodes)")
    parser.add_argument("--check-every", type=int, default=1, help="test every N training episodes (default: 1)")
    parser.add_argument("--solved-window", type=int, default=10,
                        help="solved = mean of the last N tests at or above the threshold (default: 10)")
    parser.add_argument("--early-stop", action="store_true",
                        help="stop each agent once it is solved (default: train the whole budget, as the original)")
    parser.add_argument("--max-episodes", type=int, default=0,
                        help="training episodes per agent (default: the agent's; 500 for tabular agents)")
    parser.add_argument("--eps", type=float, default=None,
                        help="tabular agents' exploration rate (default: 0.1, the spec's; the reference's "
                             "comparison scripts keep the run's own, 0.01 on the Cliff)")
    parser.add_argument("--argmax-ties", choices=("first", "last"), default=None,
                        help="tabular agents' greedy tie-break: first (torch >= 1.7) or last index (torch <= 1.6, "
                             "the reference's); default: the run's agent_hp")
    parser.add_argument("--seed", type=int, default=1000, help="evaluation seed (default: 1000)")
    parser.add_argument("--name", default="evaluation", help="output name: NAME.json (default: evaluation)")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNGs")
    add_parallel_args(parser)
    return parser.parse_args(argv)


def load_run(run_dir: Path) -> tuple[dict, dict]:
    if not run_dir.is_dir():
        raise UsageError(f"no run folder at {run_dir}")
    proxy_path = run_dir / "proxy.pt"
    if not proxy_path.is_file():
        raise UsageError(f"no proxy file {proxy_path} (train.py saves it after its first iteration)")
    config = load_config_file(run_dir / "config.json")   # missing or damaged: one line
    return config, load_checkpoint(proxy_path)


def eval_hp(agent: str, config: dict, args) -> dict:
    """The run's own hyperparameters for its agent, the tuned defaults for other agents; tabular
    agents evaluate with the spec's ε 0.1 and 500 episodes."""
    hp = dict(config["agent_hp"]) if agent == config["agent"] else inner.agent_hp(agent, config["env"])
    if agent in TABULAR_AGENTS:
        hp.update(EVAL_OVERRIDES)
        if args.eps is not None:
            hp.update(eps_init=args.eps, eps_min=args.eps)
        if getattr(args, "argmax_ties", None):
            hp["argmax_ties"] = args.argmax_ties
    if args.max_episodes:
        hp["max_episodes"] = args.max_episodes
    return hp


def load_proxy(job: dict, real_env):
    """The run's saved proxy as a module."""
    proxy = job["proxy"]
    module = build_proxy(proxy["kind"], real_env, proxy["proxy_config"], proxy["mode"],
                         env_spec(job["config"]["env"]).info_dim)
    module.load_state_dict(proxy["state_dict"])
    return module


def train_one(job: dict) -> dict:
    """One fresh agent of one group (runs in a worker process)."""
    seed, group, proxy = job["seed"], job["group"], job["proxy"]
    torch.manual_seed(seed)
    overrides = {}
    if group == "intrinsic":
        overrides["count_based" if job["agent"] in TABULAR_AGENTS else "icm"] = True
    settings = job["settings"]
    result, hp = inner.train_fresh_agent(
        job["config"]["env"], job["agent"], job["hp"], seed, job["vary_hp"], settings,
        hp_overrides=overrides, make_proxy=(lambda env: load_proxy(job, env)) if group == "proxy" else None,
        kind=proxy["kind"], zero_terminal_potential=proxy.get("zero_terminal_potential", False),
        early_stop=job["early_stop"])
    on_se = group == "proxy" and proxy["kind"] == "se"
    if on_se or job["early_stop"]:   # SE agents: one real test after training
        solved, final = result.solved_at is not None, result.final_return
    else:                            # the original's rule on the last tests of the whole budget
        final = result.last_tests_mean(settings["solved_window"])
        # the rule held at the last test, so it first held at some test: solved_at is set
        solved = final >= env_spec(job["config"]["env"]).threshold and result.solved_at is not None
    return agent_record(seed, result, solved, final, hp)


def population_setup(job: dict) -> dict:
    """The setup population.py reads, for one evaluation job's agent."""
    return dict(job["config"], agent=job["agent"], agent_hp=job["hp"], vary_hp=job["vary_hp"],
                inner=job["settings"])


def batchable(job: dict) -> bool:
    """SE agents that can train as one population (population.supports)."""
    return job["group"] == "proxy" and job["proxy"]["kind"] == "se" and population.supports(population_setup(job))


def train_se_population(jobs: list[dict]) -> list[dict]:
    """train_one for many SE agents at once (population.py: the same agents, batched)."""
    real_env = make_real_env(jobs[0]["config"]["env"], 0)
    psi = get_flat(load_proxy(jobs[0], real_env))
    real_env.close()
    results = population.train_on_ses(population_setup(jobs[0]), [(psi, job["seed"]) for job in jobs])
    return [agent_record(job["seed"], result, result.solved_at is not None, result.final_return, job["hp"])
            for job, result in zip(jobs, results)]


def train_all(jobs: list[dict], pool) -> list[dict]:
    """Every job's agent record, in job order: SE agents that can train as a population in one
    population per pool worker, the rest one job at a time."""
    can_batch = {}   # per (agent, group): every job of one shares the answer
    for job in jobs:
        key = (job["agent"], job["group"])
        if key not in can_batch:
            can_batch[key] = batchable(job)
    together = [i for i, job in enumerate(jobs) if can_batch[(job["agent"], job["group"])]]
    alone = [i for i, job in enumerate(jobs) if not can_batch[(job["agent"], job["group"])]]
    records: list = [None] * len(jobs)
    for i, record in zip(alone, pool.map(train_one, [jobs[i] for i in alone])):
        records[i] = record
    if together:
        groups = np.array_split(np.array(together), min(len(together), pool.workers))
        for group, found in zip(groups, pool.map(train_se_population, [[jobs[i] for i in g] for g in groups])):
            for i, record in zip(group, found):
                records[i] = record
    return records


def agent_record(seed: int, result: inner.InnerResult, solved: bool, final: float, hp: dict) -> dict:
    return {"seed": seed, "solved": solved, "steps_to_solve": result.solved_at if solved else None,
            "first_reached": result.solved_at,
            "final_return": final, "real_train_steps": result.real_train_steps,
            "real_test_steps": result.real_test_steps, "train_steps": result.train_steps,
            "episodes": result.episodes, "curve": result.curve,
            "hp": {k: v for k, v in hp.items() if isinstance(v, (int, float, bool, str))}}


def summarise(agents: list[dict]) -> dict:
    solved = [a for a in agents if a["solved"]]
    finals = [a["final_return"] for a in agents]
    return {"n_agents": len(agents), "solved_fraction": len(solved) / len(agents),
            "steps_to_solve": float(np.mean([a["steps_to_solve"] for a in solved])) if solved else None,
            "steps_to_solve_std": float(np.std([a["steps_to_solve"] for a in solved])) if solved else None,
            # unsolved agents counted at all the real steps they trained (a lower bound for them)
            "steps_all_agents": float(np.mean([a["steps_to_solve"] if a["solved"] else a["real_train_steps"]
                                               for a in agents])),
            "final_return": float(np.mean(finals)), "final_return_std": float(np.std(finals)),
            "real_steps": int(sum(a["real_train_steps"] + a["real_test_steps"] for a in agents))}


def evaluate(run_dir: Path, args) -> dict:
    config, proxy = load_run(run_dir)
    agents = [a for a in args.agents.split(",") if a] or [config["agent"]]
    real_env = make_real_env(config["env"], 0)
    for agent in agents:
        inner.check_agent(agent, real_env)
    for key in ("n_agents", "check_every", "solved_window"):
        if getattr(args, key) <= 0:
            raise UsageError(f"--{key.replace('_', '-')} must be positive, got {getattr(args, key)}")
    if args.max_episodes < 0:
        raise UsageError(f"--max-episodes must be positive, got {args.max_episodes}")
    if args.test_episodes is not None and args.test_episodes <= 0:
        raise UsageError(f"--test-episodes must be positive, got {args.test_episodes}")
    if args.eps is not None and not 0.0 <= args.eps <= 1.0:   # also refuses nan
        raise UsageError(f"--eps must be in [0, 1], got {args.eps}")
    if args.seed < 0:   # numpy takes no negative seed
        raise UsageError(f"--seed must be non-negative, got {args.seed}")
    groups = [g for g in GROUPS if g != "intrinsic" or args.intrinsic]
    test_episodes = args.test_episodes or config["inner"]["test_episodes"]   # None: the run's
    settings = dict(config["inner"], test_episodes=test_episodes, check_every=args.check_every,
                    solved_window=args.solved_window)
    jobs = []
    for a_index, agent in enumerate(agents):
        hp = eval_hp(agent, config, args)
        for g_index, group in enumerate(groups):
            for i in range(args.n_agents):
                # the same seeds for every group: agent i starts identically on proxy and real env
                jobs.append({"seed": seed_for(args.seed, a_index, i) % 2**31, "config": config,
                             "group": group, "agent": agent, "hp": hp, "vary_hp": args.vary_hp,
                             "proxy": proxy, "settings": settings, "early_stop": args.early_stop})
    with WorkerPool(args.workers, args.backend, args.ray_address) as pool:
        results = train_all(jobs, pool)
    report = {"run_dir": str(run_dir), "kind": config["kind"], "env": config["env"],
              "mode": config["mode"], "threshold": env_spec(config["env"]).threshold,
              "vary_hp": args.vary_hp, "seed": args.seed, "test_episodes": test_episodes,
              "protocol": "early stop" if args.early_stop else "whole budget (the original's)",
              "solved_window": args.solved_window, "tabular_eps": args.eps,
              "argmax_ties": getattr(args, "argmax_ties", None),
              "agents": agents, "groups": {}}
    for agent in agents:
        report["groups"][agent] = {}
        for group in groups:
            members = [r for r, j in zip(results, jobs) if j["agent"] == agent and j["group"] == group]
            report["groups"][agent][group] = dict(summarise(members), agents=members)
    head = report["groups"][agents[0]]
    for group in groups:
        for key in ("steps_to_solve", "solved_fraction", "final_return"):
            report[f"{group}_{key}"] = head[group][key]
    proxy_steps, base_steps = head["proxy"]["steps_to_solve"], head["baseline"]["steps_to_solve"]
    report["steps_ratio"] = (proxy_steps / base_steps) if proxy_steps is not None and base_steps else None
    return report


def main(argv=None) -> None:
    args = parse_args(argv)
    run_dir = Path(args.run_dir)
    report = evaluate(run_dir, args)
    report["figures"] = []
    if not args.no_plots:
        from synthetic_envs.plots import plot_evaluation

        report["figures"] = [str(p) for p in plot_evaluation(run_dir, report, args.name)]
    write_json_atomic(run_dir / f"{args.name}.json", report)
    for agent in report["agents"]:
        for group, s in report["groups"][agent].items():
            steps = "-" if s["steps_to_solve"] is None else f"{s['steps_to_solve']:.0f}"
            print(f"{agent:>12} {group:>9}: solved {100 * s['solved_fraction']:5.1f}%  "
                  f"steps to solve {steps:>7}  final return {s['final_return']:8.2f}")
    if report["steps_ratio"] is not None:
        print(f"proxy / baseline real steps to solve: {report['steps_ratio']:.3f} -> "
              f"{run_dir / (args.name + '.json')}")


if __name__ == "__main__":
    run_main(main, prog="synthetic_envs/evaluate.py")
