"""The synchronous population loop of PBT / PB2 (Jaderberg et al. 2017; Parker-Holder et al.
2020, 2021), as the reference runs it:

    every agent trains one segment of >= t_ready env steps -> rank by the mean training return R
    of the segment -> the bottom 25% copy the weights and optimizer state of a random top-25%
    agent (exploit) -> and get a new configuration (explore: PBT perturbation or PB2's GP bandit)
    -> next round, until every agent has used max_budget steps.

The agents (PPO/DrAC or the toy) share one interface: train_segment, test_return,
set_hyperparameters, state_dict / load_state_dict, agent_steps, hyperparameters.
"""
from __future__ import annotations

import numpy as np

from pb2_procgen.search_space import SearchSpace

PERTURB_FACTORS = (0.8, 1.2)


# -- one round: every agent trains a segment -----------------------------------------------------
def train_segment(job):
    """A module-level function so worker processes can run it: (agent, t_ready, seed) ->
    (trained agent, segment result)."""
    agent, t_ready, seed = job
    result = agent.train_segment(t_ready, seed)
    return agent, result


# -- exploit: truncation selection ---------------------------------------------------------------
def truncation_selection(rewards, rng: np.random.Generator, fraction: float = 0.25):
    """(bottom, parents): the max(int(fraction x B), 1) worst agents and, for each, a random agent
    of the same number of best ones to copy."""
    order = np.argsort(rewards, kind="stable")  # ascending: worst first
    n = max(int(fraction * len(rewards)), 1)
    bottom, top = order[:n], order[-n:]
    parents = [int(top[rng.integers(len(top))]) for _ in bottom]
    return [int(i) for i in bottom], parents


def exploit(agent, parent) -> None:
    """Copy the parent's weights and optimizer state (and its normalisation statistics). The
    caller then applies the explored configuration, lr included: loading an optimizer state
    restores the parent's lr, which the reference left in place (its lr tuning had no effect)."""
    agent.load_state_dict(parent.state_dict())


# -- explore: PBT ----------------------------------------------------------------------------------
def pbt_explore(config: dict, space: SearchSpace, rng: np.random.Generator,
                resample_probability: float = 0.5) -> dict:
    """Each continuous hyperparameter x0.8 or x1.2 (p = 0.5 each), clipped to its range; the
    categorical resampled uniformly with probability 0.5."""
    new = dict(config)
    for name in space.continuous:
        new[name] = config[name] * PERTURB_FACTORS[rng.integers(2)]
    if space.categorical and rng.random() < resample_probability:
        name, values = space.categorical
        new[name] = values[int(rng.integers(len(values)))]
    return space.clip(new)


def explore_round(agents, configs, rewards, bottom, parents, space, search, explorer, rng):
    """Exploit and explore for every bottom agent; returns the new configs (explore_configs)."""
    times = [agent.agent_steps for agent in agents]   # the parents' contexts, before any copy
    new_configs = explore_configs(configs, rewards, times, bottom, parents, space, search,
                                  explorer, rng)
    for agent_index, parent_index in zip(bottom, parents):
        exploit(agents[agent_index], agents[parent_index])
        agents[agent_index].set_hyperparameters(new_configs[agent_index])
    return new_configs


def explore_configs(configs, rewards, times, bottom, parents, space, search, explorer, rng):
    """The explore step alone, on configs (no agents): the new config of every bottom agent, from
    its parent's config (PBT perturbation, or PB2's explorer at the parent's (time, reward)).
    PB2 chooses the round's configs as a batch (GP-BUCB, as the reference): the configs of every
    agent outside the top quantile are pending, each bottom agent's replaced by its new config
    once chosen."""
    new_configs = list(configs)
    ranked = [r if r is not None and np.isfinite(r) else -np.inf for r in rewards]   # None: no episode ended
    top = set(np.argsort(ranked, kind="stable")[-len(bottom):].tolist()) if bottom else set()
    running = [i for i in range(len(configs)) if i not in top]
    for agent_index, parent_index in zip(bottom, parents):
        parent_config = configs[parent_index]
        if search == "PBT":
            new = pbt_explore(parent_config, space, rng)
        else:
            pending = [new_configs[i] for i in running]
            new = explorer.select(times[parent_index], rewards[parent_index], parent_config, pending)
        new_configs[agent_index] = new
    return new_configs
