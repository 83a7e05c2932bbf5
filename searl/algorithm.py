"""SEARL's generation loop (Franke et al., ICLR 2021, Sec. 3 and Algorithm 1), in its order:

    initialise population -> [ evaluate (fills the shared replay memory, every step counted)
    -> select (elitism + tournaments) -> test the elite -> mutate -> train ] until the budget.

The loop is written against a small individual interface (`act`, `learn`, `clone`,
`mutate_parameters`, `mutate_architecture`, `mutate_activation`, `mutate_rl_hyperparameter`,
`describe`, `networks`, and the attributes `index`, `parent`, `mutation`, `fitness`) that both the TD3
individual (searl/td3.py) and the DQN individual (searl/dqn.py) implement. The TD3 individual
also offers the whole-population forms (`batching_groups`, `learn_together`,
`population_policy`; searl/batched_td3.py) that `train_population(batched=True)` and
`evaluate_population(policy=...)` use: the same computation, batched.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch

MUTATIONS = ("none", "parameters", "architecture", "activation", "rl_hyperparameter")


@dataclass
class Evaluation:
    fitness: float     # mean undiscounted return of the individual's evaluation episodes
    steps: int         # environment steps it took (all of them go into the budget)
    episodes: int


DIVERGED = Evaluation(-math.inf, 0, 0)   # a diverged individual: not played, worst fitness


def to_env_action(action, space: gym.Space):
    """The policy acts in [-1, 1]; the env wants its own bounds (discrete actions pass)."""
    if isinstance(space, gym.spaces.Box):
        return space.low + (np.asarray(action) + 1.0) * 0.5 * (space.high - space.low)
    return int(action)


def random_action(space: gym.Space, rng: np.random.Generator):
    """Uniform random action in the policy's action space (first generation, Sec. 3.1)."""
    if isinstance(space, gym.spaces.Box):
        return rng.uniform(-1.0, 1.0, size=space.shape).astype(np.float32)
    return int(rng.integers(space.n))


# -- Sec. 3.1: evaluation fills the shared replay memory ------------------------------------------
def evaluate_individual(individual, env: gym.Env, buffer, episode_rng: np.random.Generator,
                        random_actions: bool, min_steps: int, min_episodes: int = 1) -> Evaluation:
    """Play whole episodes until at least `min_episodes` and `min_steps`; every transition is
    stored (with `terminated` and `truncated` apart) and every step is counted. Episode seeds
    (and first-generation random actions) come from the individual's own `episode_rng`."""
    returns, steps = [], 0
    while len(returns) < min_episodes or steps < min_steps:
        obs, _ = env.reset(seed=int(episode_rng.integers(2**31)))
        episode_return, done = 0.0, False
        while not done:
            action = (random_action(env.action_space, episode_rng) if random_actions
                      else individual.act(obs, explore=True))
            next_obs, reward, terminated, truncated, _ = env.step(
                to_env_action(action, env.action_space))
            buffer.add(obs, action, reward, next_obs, terminated, truncated)
            obs, episode_return, steps = next_obs, episode_return + float(reward), steps + 1
            done = terminated or truncated
        returns.append(episode_return)
    return Evaluation(float(np.mean(returns)), steps, len(returns))


def has_diverged(individual) -> bool:
    """Non-finite weights: a training step blew up (e.g. a mutated learning rate far too high)."""
    return not all(bool(torch.isfinite(p).all()) for net in individual.networks()
                   for p in net.parameters())


def evaluate_population(population, envs, buffer, rng, random_actions, min_steps,
                        policy=None) -> list[Evaluation]:
    """Every individual's evaluation episodes. With a `policy` (one batched forward pass for
    the whole population, e.g. searl.batched_td3.PopulationPolicy) the individuals play side
    by side, one env each (`envs` is then a list); otherwise one after another on `envs`.
    Both give the same transitions, stored in the same order (individual by individual).
    A diverged individual (non-finite weights) does not play: its fitness is -inf (the worst,
    so selection drops it) and it adds nothing to the shared memory."""
    episode_rngs = [np.random.default_rng(seed) for seed in rng.integers(2**62, size=len(population))]
    diverged = {i for i, individual in enumerate(population) if has_diverged(individual)}
    if policy is None:
        env = envs[0] if isinstance(envs, (list, tuple)) else envs
        evaluations = [DIVERGED if i in diverged else
                       evaluate_individual(ind, env, buffer, episode_rng, random_actions, min_steps)
                       for i, (ind, episode_rng) in enumerate(zip(population, episode_rngs))]
    else:
        evaluations = evaluate_side_by_side(policy, envs, buffer, episode_rngs, random_actions,
                                            min_steps, skip=diverged)
    for individual, evaluation in zip(population, evaluations):
        individual.fitness.append(evaluation.fitness)
    return evaluations


def evaluate_side_by_side(policy, envs, buffer, episode_rngs, random_actions: bool,
                          min_steps: int, min_episodes: int = 1, skip=()) -> list[Evaluation]:
    """`evaluate_individual` for the whole population at once: env i plays individual i's
    episodes; each step is one forward pass of `policy` for every individual still playing.
    Transitions are stored when all are done, individual by individual. Individuals in `skip`
    (diverged) do not play."""
    n = len(envs)
    transitions = [[] for _ in range(n)]
    returns, episode_return, steps = [[] for _ in range(n)], [0.0] * n, [0] * n
    playing = [i for i in range(n) if i not in skip]
    obs = [envs[i].reset(seed=int(episode_rngs[i].integers(2**31)))[0] if i in playing
           else np.zeros(envs[i].observation_space.shape, envs[i].observation_space.dtype)
           for i in range(n)]
    while playing:
        if random_actions:
            actions = {i: random_action(envs[i].action_space, episode_rngs[i]) for i in playing}
        else:
            batch = policy.act(np.stack(obs), explore=True, rows=playing)
            actions = {i: batch[i] for i in playing}
        still = []
        for i in playing:
            next_obs, reward, terminated, truncated, _ = envs[i].step(
                to_env_action(actions[i], envs[i].action_space))
            transitions[i].append((obs[i], actions[i], reward, next_obs, terminated, truncated))
            episode_return[i] += float(reward)
            steps[i] += 1
            obs[i] = next_obs
            if terminated or truncated:
                returns[i].append(episode_return[i])
                episode_return[i] = 0.0
                if len(returns[i]) >= min_episodes and steps[i] >= min_steps:
                    continue
                obs[i] = envs[i].reset(seed=int(episode_rngs[i].integers(2**31)))[0]
            still.append(i)
        playing = still
    for trajectory in transitions:
        if trajectory:
            buffer.add_batch(*(np.asarray(column) for column in zip(*trajectory)))
    return [DIVERGED if i in skip else Evaluation(float(np.mean(r)), s, len(r))
            for i, (r, s) in enumerate(zip(returns, steps))]


# -- Sec. 3.2: selection ---------------------------------------------------------------------------
def tournament_selection(population, tournament_size: int, rng: np.random.Generator,
                         next_index: int, elitism: bool = True):
    """Rank by the latest fitness; clone the best into slot 0 (elitism), fill the other slots
    with the best of `tournament_size` individuals drawn uniformly with replacement.
    Returns (elite, new population, next free index); every clone gets a new index."""
    fitness = np.array([ind.fitness[-1] for ind in population])
    elite = population[int(np.argmax(fitness))]
    new_population = []
    if elitism:
        new_population.append(elite.clone(next_index))
        next_index += 1
    while len(new_population) < len(population):
        entrants = rng.integers(0, len(population), size=tournament_size)
        winner = population[int(entrants[np.argmax(fitness[entrants])])]
        new_population.append(winner.clone(next_index))
        next_index += 1
    return elite, new_population, next_index


def test_individual(individual, env: gym.Env, episodes: int, seeds: list[int]) -> tuple[float, int]:
    """Noise-free episodes on a separate env; the data is discarded (logged as test_steps)."""
    returns, steps = [], 0
    for episode in range(episodes):
        obs, _ = env.reset(seed=seeds[episode])
        done, episode_return = False, 0.0
        while not done:
            action = individual.act(obs, explore=False)
            obs, reward, terminated, truncated, _ = env.step(to_env_action(action, env.action_space))
            episode_return, steps, done = episode_return + float(reward), steps + 1, terminated or truncated
        returns.append(episode_return)
    return float(np.mean(returns)), steps


# -- Sec. 3.3: mutation ----------------------------------------------------------------------------
def mutate(individual, rng: np.random.Generator, probabilities) -> str:
    """Exactly one operation per individual, drawn with the configured probabilities."""
    operation = MUTATIONS[rng.choice(len(MUTATIONS), p=np.asarray(probabilities) / np.sum(probabilities))]
    if operation == "none":
        individual.mutation = "none"
    else:
        individual.mutation = getattr(individual, f"mutate_{operation}")(rng)
    return individual.mutation


def mutate_population(population, rng, probabilities) -> list[str]:
    return [mutate(individual, rng, probabilities) for individual in population]


# -- Sec. 3.4: training on the shared replay memory ------------------------------------------------
def updates_per_individual(generation_steps: int, fraction: float, min_updates: int,
                           max_updates: int | None = None) -> int:
    """TD3: max(250, 0.5 x env steps of the generation); DQN: clip(0.5 x frames, 1000, 50000)."""
    updates = max(min_updates, int(fraction * generation_steps))
    return min(updates, max_updates) if max_updates else updates


def train_one(job, buffer):
    """One individual's training (a module-level function so worker processes can run it)."""
    individual, n_updates, seed = job
    individual.learn(buffer, n_updates, np.random.default_rng(seed))
    return individual


def train_together(job, buffer):
    """A group of individuals trained as one batched computation (searl/batched_td3.py)."""
    individuals, n_updates, seeds, compile = job
    type(individuals[0]).learn_together(individuals, buffer, n_updates,
                                        [np.random.default_rng(seed) for seed in seeds], compile)
    return individuals


def network_size(individual) -> int:
    """Weights of an individual's networks: the cost of one of its updates, roughly."""
    nets = [individual.actor, *individual.critics] if hasattr(individual, "actor") else [individual.net]
    return sum(p.numel() for net in nets for p in net.parameters())


def split_evenly(costs: list[int], k: int) -> list[list[int]]:
    """Positions 0..n-1, ordered by cost, cut into k contiguous runs whose largest padded cost
    (members x the run's largest member, as a stacked computation pads to its widest network)
    is as small as possible: networks of similar sizes share a chunk, and the chunks take
    about equally long."""
    order = sorted(range(len(costs)), key=lambda i: (costs[i], i))
    c = [costs[i] for i in order]
    n = len(c)
    best = {(0, 0): (0, [])}   # (positions used, runs) -> (largest padded cost, cut points)
    for runs in range(1, k + 1):
        for end in range(runs, n - (k - runs) + 1):
            options = [(max(best[start, runs - 1][0], (end - start) * c[end - 1]),
                        best[start, runs - 1][1] + [end])
                       for start in range(runs - 1, end) if (start, runs - 1) in best]
            best[end, runs] = min(options)
    cuts = [0] + best[n, k][1]
    return [order[a:b] for a, b in zip(cuts, cuts[1:])]


def worker_chunks(population, groups, workers: int) -> list[list[int]]:
    """Each batching group cut into min(workers, size) chunks of similar network sizes (less
    padding, chunks of equal cost), the costliest chunks first so the pool's last job is short.
    Depends only on the population and `workers`, never on the machine."""
    chunks = []
    for group in groups:
        sizes = [network_size(population[i]) for i in group]
        for positions in split_evenly(sizes, min(workers, len(group))):
            chunk = sorted(group[p] for p in positions)
            chunks.append((len(chunk) * max(sizes[p] for p in positions), chunk))
    return [chunk for _, chunk in sorted(chunks, key=lambda item: -item[0])]


def train_population(population, buffer, n_updates: int, rng: np.random.Generator, pool,
                     batched: bool = False, compile: bool = False):
    """Every individual trains `n_updates` steps on the shared memory, each with its own seed.
    One by one (in parallel on `pool`, common.parallel), or `batched`: the individuals that
    can share a batched computation train together, the groups split over the pool's workers.
    The replay memory reaches workers through shared memory, never copied per job.
    `compile`: batched groups train through torch.compile (common.compiling.compiled)."""
    seeds = [int(seed) for seed in rng.integers(2**62, size=len(population))]
    if not batched:
        jobs = [(ind, n_updates, seed) for ind, seed in zip(population, seeds)]
        return pool.map(train_one, jobs, shared=buffer)
    workers = pool.workers if pool.backend != "serial" else 1
    chunks = worker_chunks(population, type(population[0]).batching_groups(population), workers)
    jobs = [([population[i] for i in chunk], n_updates, [seeds[i] for i in chunk], compile)
            for chunk in chunks]
    trained = list(population)
    for chunk, individuals in zip(chunks, pool.map(train_together, jobs, shared=buffer)):
        for i, individual in zip(chunk, individuals):
            trained[i] = individual
    return trained
