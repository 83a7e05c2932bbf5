"""Many inner agents at once: the DDQN agents of one NES iteration, each on its own synthetic
environment, stepped in lockstep as one batched computation (the inner loop of the paper's
Algorithm 1, vectorised across agents instead of run one agent at a time).

Each agent is exactly the DDQN of `deep_agents.py` on the SE of `proxies.py`: the same initial
weights, the same random streams (its ε-greedy draws, its replay sampler, its env's resets),
the same update (Double-DQN target, MSE, Adam, soft target update), the same stopping rule
(`inner.plateaued`) and the same final test on the real env. Only the arithmetic is batched:
agent p's networks are slice p of stacked weights, multiplied with `torch.baddbmm`, so an agent's
result does not depend on which other agents share its population, and it equals the
one-at-a-time path to float rounding (tests/test_synthetic_envs_population.py).

Why: one agent's step is ~1 ms of PyTorch per-op overhead on a 57-unit network; 24 agents in one
batched step cost a few ms (bench/synthetic_envs_population.py).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from common.activations import fast_activation
from common.device import keep_freed_memory
from synthetic_envs import inner
from synthetic_envs.envs import env_spec, is_discrete_action, is_discrete_state, make_real_env
from synthetic_envs.proxies import SyntheticEnv, build_proxy, set_flat


def supports(setup: dict) -> bool:
    """Whether a run's inner agents can train as one population: DDQN agents with shared,
    unvaried hyperparameters and a parameter-free activation, on SEs of a continuous-state,
    discrete-action env."""
    hp = setup.get("agent_hp", {})
    if not (setup.get("population", True) and setup.get("kind") == "se" and setup.get("agent") == "ddqn"
            and not setup.get("vary_hp", False) and hp.get("activation", "") != "prelu"
            and hp.get("same_action_num", 1) == 1):
        return False
    real_env = make_real_env(setup["env"], 0)
    try:
        return is_discrete_action(real_env) and not is_discrete_state(real_env)
    finally:
        real_env.close()


# ---------------------------------------------------------------------------------------------
# P networks of one architecture as stacked weights
# ---------------------------------------------------------------------------------------------

def _elementwise(module: nn.Module):
    # torch 2.13's CPU tanh is several times slower than numpy's on some CPUs (common/activations.py)
    return fast_activation("tanh") if isinstance(module, nn.Tanh) else module


class StackedMLP:
    """P MLPs of `common.nets.mlp`'s layout (Linear, activation, ..., Linear) as weights
    [P, in, out] and biases [P, 1, out]; `forward(x [P, B, in]) -> [P, B, out]`."""

    def __init__(self, nets: list[nn.Sequential]):
        self.activations = [_elementwise(m) for m in nets[0] if not isinstance(m, nn.Linear)]
        for net in nets:   # an activation with weights (PReLU) must be the same in every net
            for mine, first in zip([m for m in net if not isinstance(m, nn.Linear)],
                                   [m for m in nets[0] if not isinstance(m, nn.Linear)]):
                for a, b in zip(mine.parameters(), first.parameters()):
                    if not torch.equal(a, b):
                        raise ValueError("stacked networks need identical activation parameters")
        layers = zip(*[[m for m in net if isinstance(m, nn.Linear)] for net in nets])
        self.params: list[torch.Tensor] = []
        for linears in layers:
            self.params.append(torch.stack([lin.weight.detach().t() for lin in linears]).contiguous())
            self.params.append(torch.stack([lin.bias.detach() for lin in linears]).unsqueeze(1).contiguous())

    def forward(self, x: torch.Tensor, params: list[torch.Tensor] | None = None) -> torch.Tensor:
        params = self.params if params is None else params
        layers = len(params) // 2
        for i in range(layers):
            x = torch.baddbmm(params[2 * i + 1], x, params[2 * i])
            if i < layers - 1:
                x = self.activations[i](x)
        return x

    @torch.no_grad()
    def write_back(self, p: int, net: nn.Sequential) -> None:
        """Copy member p's weights into an nn.Sequential of the same layout."""
        for i, lin in enumerate(m for m in net if isinstance(m, nn.Linear)):
            lin.weight.copy_(self.params[2 * i][p].t())
            lin.bias.copy_(self.params[2 * i + 1][p, 0])


def _rows(params: list[torch.Tensor], index: torch.Tensor | None) -> list[torch.Tensor]:
    return params if index is None else [p.index_select(0, index) for p in params]


class StackedSE:
    """P synthetic environments (proxies.SyntheticEnvModel) stepped together."""

    def __init__(self, models):
        self.n_actions = models[0].n_actions
        self.heads = [StackedMLP([getattr(m, name) for m in models])
                      for name in ("state_net", "reward_net", "done_net")]

    @torch.no_grad()
    def step(self, states: np.ndarray, actions: np.ndarray, index: torch.Tensor | None):
        """states [M, S], actions [M] of the members `index` (None: all) ->
        next states [M, S] float32, rewards [M] float32, done [M] bool (done head > 0.5)."""
        x = torch.cat([nn.functional.one_hot(torch.from_numpy(actions), self.n_actions).float(),
                       torch.from_numpy(states)], dim=-1).unsqueeze(1)
        nxt, reward, done = (head.forward(x, _rows(head.params, index)).squeeze(1) for head in self.heads)
        return nxt.numpy(), reward.squeeze(-1).numpy(), (done.squeeze(-1) > 0.5).numpy()


# ---------------------------------------------------------------------------------------------
# P DDQN agents (deep_agents.DDQN) trained together
# ---------------------------------------------------------------------------------------------

class DDQNPopulation:
    """The DDQN agents `agents` (built by deep_agents.DDQN, so their weights, ε schedule and
    random streams are theirs) with their Q-networks, Adam states and replay memories stacked."""

    BETAS, ADAM_EPS = (0.9, 0.999), 1e-8   # torch.optim.Adam's defaults, as DDQN's optimiser

    def __init__(self, agents: list, obs_dim: int):
        hp = agents[0].hp
        if any(a.hp != hp for a in agents):
            raise ValueError("a population's agents share one set of hyperparameters")
        self.agents, self.n = agents, len(agents)
        self.gamma, self.tau, self.lr = agents[0].gamma, agents[0].tau, float(hp["lr"])
        self.batch_size, self.n_actions = agents[0].batch_size, agents[0].n_actions
        self.q = StackedMLP([a.q for a in agents])
        self.target = StackedMLP([a.q_target for a in agents])
        self.q_target = self.target.params   # the same list: updates land in self.target
        self.exp_avg = [torch.zeros_like(p) for p in self.q.params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in self.q.params]
        self.adam_steps = torch.zeros(self.n, dtype=torch.float64)
        capacity = agents[0].buffer.capacity
        # one row per transition: obs, next obs, action, reward, terminated (one gather per batch)
        self.obs_dim = obs_dim
        self.memory = np.zeros((self.n, capacity, 2 * obs_dim + 3), np.float32)
        self.pos = np.zeros(self.n, np.int64)
        self.size = np.zeros(self.n, np.int64)
        self.capacity = capacity

    @torch.no_grad()
    def act(self, obs: np.ndarray, members: np.ndarray, index: torch.Tensor | None) -> np.ndarray:
        """DDQN.act(obs, explore=True) for each member: ε-greedy from the agent's own stream."""
        greedy = self.q.forward(torch.from_numpy(obs).unsqueeze(1), _rows(self.q.params, index))
        greedy = greedy.squeeze(1).argmax(-1).numpy()
        actions = np.empty(len(members), np.int64)
        for i, p in enumerate(members):
            agent = self.agents[p]
            if agent.np_rng.random() < agent.eps:
                actions[i] = agent.np_rng.integers(self.n_actions)
            else:
                actions[i] = greedy[i]
        return actions

    def store(self, members, obs, actions, rewards, next_obs, terminated) -> None:
        """ReplayBuffer.add for each member, into its own slots."""
        slots = self.pos[members]
        self.memory[members, slots] = np.concatenate(
            [obs, next_obs, actions[:, None], rewards[:, None], terminated[:, None]], axis=1)
        self.pos[members] = (slots + 1) % self.capacity
        self.size[members] = np.minimum(self.size[members] + 1, self.capacity)

    def update(self, members: np.ndarray) -> None:
        """DDQN.update for each member: a replay batch from its own sampler, the Double-DQN
        target, the MSE loss (summed over members: each member's gradient is its own), Adam, and
        the soft target update."""
        rows = np.stack([self.agents[p].buffer.rng.integers(0, self.size[p], size=self.batch_size)
                         for p in members])
        batch = torch.from_numpy(self.memory[members[:, None], rows])
        d = self.obs_dim
        obs, next_obs = batch[..., :d], batch[..., d:2 * d]
        actions, rewards, terminated = batch[..., 2 * d].long(), batch[..., 2 * d + 1], batch[..., 2 * d + 2]
        index = None if len(members) == self.n else torch.from_numpy(members)
        params = [p.requires_grad_(True) for p in (_rows([t.detach() for t in self.q.params], index))]
        targets = _rows(self.q_target, index)
        with torch.no_grad():   # DDQN.td_target: the online net picks, the target net evaluates
            best = self.q.forward(next_obs, [p.detach() for p in params]).argmax(-1, keepdim=True)
            next_q = self.q.forward(next_obs, targets).gather(-1, best).squeeze(-1)
            y = rewards + self.gamma * (1.0 - terminated) * next_q
        q = self.q.forward(obs, params).gather(-1, actions.unsqueeze(-1)).squeeze(-1)
        loss = ((q - y) ** 2).mean(dim=1).sum()
        grads = torch.autograd.grad(loss, params)
        self._adam(members, index, params, grads, targets)

    @torch.no_grad()
    def _adam(self, members, index, params, grads, targets) -> None:
        """torch.optim.Adam's step with each member's own step count, then the Polyak update."""
        steps = self.adam_steps[members] + 1
        self.adam_steps[members] = steps
        beta1, beta2 = self.BETAS
        shape = (-1, 1, 1)
        step_size = (self.lr / (1 - beta1 ** steps)).float().view(shape)
        root_bc2 = torch.sqrt(1 - beta2 ** steps).float().view(shape)
        for k, (param, grad) in enumerate(zip(params, grads)):
            m = _rows([self.exp_avg[k]], index)[0].lerp_(grad, 1 - beta1)
            v = _rows([self.exp_avg_sq[k]], index)[0].mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            new = param.detach() - step_size * m / (v.sqrt() / root_bc2 + self.ADAM_EPS)
            target = targets[k].lerp(new, self.tau) if index is not None else targets[k].lerp_(new, self.tau)
            for store, value in ((self.q.params, new), (self.exp_avg, m), (self.exp_avg_sq, v),
                                 (self.q_target, target)):
                if index is None:
                    store[k] = value
                else:
                    store[k].index_copy_(0, index, value)

    def write_back(self, p: int) -> None:
        """Member p's learned weights into its agent's own networks (for its real-env test)."""
        self.q.write_back(p, self.agents[p].q)
        self.target.write_back(p, self.agents[p].q_target)


# ---------------------------------------------------------------------------------------------
# The inner loop for a population: train every agent on its SE, then test it on the real env
# ---------------------------------------------------------------------------------------------

def train_on_ses(setup: dict, jobs: list[tuple[np.ndarray, int]]) -> list[inner.InnerResult]:
    """`nes.score_proxy` for every (ψ, seed) job at once: a fresh DDQN agent (seed) trained on the
    SE with parameters ψ until its SE return plateaus (inner.train_agent's SE rule), then tested
    on the real env seeded seed + 100. Returns each job's InnerResult, in order."""
    keep_freed_memory()   # the batched update frees MB-sized activations every step
    spec, hp, settings = env_spec(setup["env"]), dict(setup["agent_hp"]), setup["inner"]
    agents, envs, test_envs, models = [], [], [], []
    for psi, seed in jobs:
        torch.manual_seed(seed)   # as score_proxy: the proxy is built under the job's seed
        real_env = make_real_env(setup["env"], seed)
        test_envs.append(make_real_env(setup["env"], seed + 100))
        agents.append(inner.make_agent("ddqn", real_env, hp, seed))
        models.append(set_flat(build_proxy("se", real_env, setup["proxy"], 0, spec.info_dim), psi))
        envs.append(SyntheticEnv(models[-1], real_env, spec.max_steps))
    population = DDQNPopulation(agents, envs[0].observation_space.shape[0])
    _train(population, StackedSE(models), envs, hp, settings)
    results = []
    for p, agent in enumerate(agents):
        population.write_back(p)
        result = population.results[p]
        result.final_return, test_steps = inner.test_agent(agent, test_envs[p], settings["test_episodes"])
        result.real_test_steps += test_steps
        result.curve.append((result.train_steps, 0, result.final_return))
        if result.final_return >= spec.threshold:
            result.solved_at = 0
        results.append(result)
        envs[p].real_env.close()
        test_envs[p].close()
    return results


def _train(population: DDQNPopulation, ses: StackedSE, envs: list[SyntheticEnv], hp: dict,
           settings: dict) -> None:
    """Every agent's episodes on its SE, in lockstep, until each one's training return plateaus
    or it reaches max_episodes (inner.train_agent with on_se=True, repeat 1)."""
    n, window = population.n, settings["early_out_num"]
    population.results = [inner.InnerResult() for _ in range(n)]
    returns: list[list[float]] = [[] for _ in range(n)]
    obs = np.stack([env.reset()[0] for env in envs]).astype(np.float32)
    t, episode_return = np.zeros(n, np.int64), np.zeros(n)
    active = np.ones(n, bool)
    while active.any():
        members = np.flatnonzero(active)
        index = None if len(members) == n else torch.from_numpy(members)
        actions = population.act(obs[members], members, index)
        nxt, rewards, done = ses.step(obs[members], actions, index)
        t[members] += 1
        truncated = ~done & (t[members] >= envs[0].max_steps)
        population.store(members, obs[members], actions, rewards, nxt, done)
        learning = members[[population.agents[p].episode >= population.agents[p].init_episodes for p in members]]
        if len(learning):
            population.update(learning)
        episode_return[members] += rewards
        obs[members] = nxt
        for p in members[done | truncated]:
            agent, result = population.agents[p], population.results[p]
            agent.end_episode()
            returns[p].append(float(episode_return[p]))
            result.train_steps += int(t[p])
            result.episodes += 1
            stop = (result.episodes - 1 >= hp["init_episodes"] + window
                    and inner.plateaued(returns[p], window, settings["se_plateau"]))
            if stop or result.episodes >= hp["max_episodes"]:
                active[p] = False
                continue
            obs[p], t[p], episode_return[p] = envs[p].reset()[0], 0, 0.0
