"""How much does each SEARL mutation change what an individual computes?

Trains one TD3 individual briefly on Pendulum-v1 data, then applies every mutation type under
both growth schemes (function-preserving, ours; the reference's slice copy) and reports the mean
absolute change of the actor's actions and of the first critic's Q values on 1024 replay states,
averaged over 20 seeded mutations. Run by hand:

    python bench/searl_mutation_drift.py [--out searl/results/mutation_drift.json]

It prints the table and writes its data (with the machine and date) as JSON to `--out`, from
which `searl/results.py` writes searl/README.md's table (`--out ''`: print only).
"""
from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import numpy as np
import torch

import benchlib
from common.buffers import ReplayBuffer
from common.envs import make_env
from searl.algorithm import evaluate_individual
from searl.td3 import TD3_DEFAULTS, TD3Individual


def trained_individual(preserve: bool) -> tuple[TD3Individual, ReplayBuffer]:
    torch.manual_seed(0)
    env = make_env("Pendulum-v1", 0)
    buffer = ReplayBuffer(10_000, (3,), (1,), seed=0)
    evaluate_individual(None, env, buffer, np.random.default_rng(0), random_actions=True,
                        min_steps=4000)
    individual = TD3Individual(0, 3, 1, {**TD3_DEFAULTS, "preserve_growth": preserve}, seed=0)
    individual.learn(buffer, 2000, np.random.default_rng(0))
    return individual, buffer


def drift(individual, mutated, obs, actions) -> tuple[float, float]:
    with torch.no_grad():
        q_in = torch.cat([obs, actions], 1)
        action_change = (mutated.actor(obs) - individual.actor(obs)).abs().mean().item()
        q_change = (mutated.critics[0](q_in) - individual.critics[0](q_in)).abs().mean().item()
    return action_change, q_change


def add_nodes(ind, rng):
    for net in (ind.actor, *ind.critics):
        net.add_nodes(0, 32, np.random.default_rng(rng.integers(1 << 30)), preserve=ind.preserve)


def add_layer(ind, rng):
    for net in (ind.actor, *ind.critics):
        net.add_layer(rng, preserve=ind.preserve)


MUTATIONS = {
    "add 32 nodes": add_nodes,
    "add a layer": add_layer,
    "activation": lambda ind, rng: ind.mutate_activation(rng),
    "parameter noise": lambda ind, rng: ind.mutate_parameters(rng),
}


SEEDS = 20
STATES = 1024
DEFAULT_OUT = benchlib.ROOT / "searl" / "results" / "mutation_drift.json"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(DEFAULT_OUT),
                        help="JSON file for the table's data (default: %(default)s; '' = none)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    start = time.process_time()
    rows = []
    print("| mutation | scheme | mean abs change of actions | mean abs change of Q |")
    print("|---|---|---|---|")
    for name, apply in MUTATIONS.items():
        for preserve in (True, False):
            individual, buffer = trained_individual(preserve)
            batch = buffer.batch_at(np.arange(STATES))
            changes = []
            for seed in range(SEEDS):
                mutated = copy.deepcopy(individual)
                apply(mutated, np.random.default_rng(seed))
                changes.append(drift(individual, mutated, batch.obs, batch.actions))
            action_change, q_change = np.mean(changes, axis=0)
            scheme = "function-preserving" if preserve else "slice copy (reference)"
            print(f"| {name} | {scheme} | {action_change:.2e} | {q_change:.2e} |")
            rows.append({"mutation": name, "preserve_growth": preserve,
                         "action_change": float(action_change), "q_change": float(q_change),
                         "per_seed": [[float(a), float(q)] for a, q in changes]})
    if args.out:
        path = Path(args.out)
        path.parent.mkdir(parents=True, exist_ok=True)
        record = {"name": "searl_mutation_drift",
                  "command": " ".join(["python", "bench/searl_mutation_drift.py", *sys.argv[1:]]),
                  "machine": benchlib.machine(), "env": "Pendulum-v1", "seeds": SEEDS,
                  "states": STATES, "cpu_seconds": time.process_time() - start, "rows": rows}
        benchlib.write_json_atomic(path, record)
        print(path)


if __name__ == "__main__":
    main()
