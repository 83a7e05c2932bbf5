"""How much does each SEARL mutation change what an individual computes?

Trains one TD3 individual briefly on Pendulum-v1 data, then applies every mutation type under
both growth schemes (function-preserving, ours; the reference's slice copy) and reports the mean
absolute change of the actor's actions and of the first critic's Q values on 1024 replay states,
averaged over 20 seeded mutations. Run by hand:

    python bench/searl_mutation_drift.py
"""
from __future__ import annotations

import copy

import numpy as np
import torch

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


def main() -> None:
    torch.set_num_threads(1)
    print("| mutation | scheme | mean abs change of actions | mean abs change of Q |")
    print("|---|---|---|---|")
    for name, apply in MUTATIONS.items():
        for preserve in (True, False):
            individual, buffer = trained_individual(preserve)
            batch = buffer.batch_at(np.arange(1024))
            changes = []
            for seed in range(20):
                mutated = copy.deepcopy(individual)
                apply(mutated, np.random.default_rng(seed))
                changes.append(drift(individual, mutated, batch.obs, batch.actions))
            action_change, q_change = np.mean(changes, axis=0)
            scheme = "function-preserving" if preserve else "slice copy (reference)"
            print(f"| {name} | {scheme} | {action_change:.2e} | {q_change:.2e} |")


if __name__ == "__main__":
    main()
