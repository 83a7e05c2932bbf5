"""The two proxies NES learns (paper Sec. 3): a synthetic environment (SE) that replaces the real
env entirely, and a reward network (RN) that replaces or augments the real env's reward.

Both are nn.Modules whose nn.Linear weights and biases are what NES perturbs (the reference
perturbs exactly these; PReLU slopes keep their initial value). `as_env(...)` wraps a proxy into
a gymnasium-style env an inner agent can train on.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from common.cli import UsageError
from common.nets import mlp
from synthetic_envs.envs import is_discrete_action, is_discrete_state, one_hot, state_dim

# ---------------------------------------------------------------------------------------------
# Synthetic environment (Sec. 3.1, Appendix: "three MLPs on (one-hot action, state)")
# ---------------------------------------------------------------------------------------------


class SyntheticEnvModel(nn.Module):
    """Three MLPs on concat(one-hot action, state): next state, reward and done (done when the
    done head's output exceeds 0.5). Discrete states go in one-hot and come out as the argmax
    of the next-state head."""

    def __init__(self, n_state_inputs: int, n_actions: int, hidden_size: int, hidden_layer: int,
                 activation: str):
        super().__init__()
        hidden = (hidden_size,) * hidden_layer
        width = n_actions + n_state_inputs
        self.n_actions = n_actions
        self.state_net = mlp(width, n_state_inputs, hidden, activation)
        self.reward_net = mlp(width, 1, hidden, activation)
        self.done_net = mlp(width, 1, hidden, activation)

    def forward(self, state_input: torch.Tensor, action: torch.Tensor):
        """state_input [B, S] (one-hot for discrete states), action [B] long ->
        next-state output [B, S], reward [B], done [B] bool."""
        x = torch.cat([nn.functional.one_hot(action, self.n_actions).float(), state_input], dim=-1)
        return self.state_net(x), self.reward_net(x).squeeze(-1), self.done_net(x).squeeze(-1) > 0.5


class SyntheticEnv:
    """An SE as an env: resets from the real env's initial-state distribution, steps with the
    model, caps episodes at the real env's length. On a discrete-state env the whole transition
    table (every state x action) is computed once, since the model is fixed during inner training."""

    def __init__(self, model: SyntheticEnvModel, real_env, max_steps: int):
        self.model, self.real_env, self.max_steps = model, real_env, max_steps
        self.observation_space, self.action_space = real_env.observation_space, real_env.action_space
        self.discrete = is_discrete_state(real_env)
        self.n_states = state_dim(real_env)
        self.table = self._transition_table() if self.discrete else None
        self.state, self.t = None, 0

    @torch.no_grad()
    def _transition_table(self):
        states = torch.eye(self.n_states).repeat_interleave(self.model.n_actions, dim=0)
        actions = torch.arange(self.model.n_actions).repeat(self.n_states)
        nxt, reward, done = self.model(states, actions)
        rows = list(zip(nxt.argmax(-1).tolist(), reward.tolist(), done.tolist()))
        return [rows[s * self.model.n_actions:(s + 1) * self.model.n_actions] for s in range(self.n_states)]

    def reset(self, seed=None, options=None):
        self.state, _ = self.real_env.reset(seed=seed)  # a reset only: no real step is taken
        self.t = 0
        return self.state, {}

    @torch.no_grad()
    def step(self, action):
        self.t += 1
        if self.discrete:
            nxt, reward, done = self.table[self.state][int(action)]
        else:
            state = torch.as_tensor(self.state, dtype=torch.float32).unsqueeze(0)
            nxt, reward, done = self.model(state, torch.as_tensor([int(action)]))
            nxt, reward, done = nxt[0].numpy(), float(reward[0]), bool(done[0])
        self.state = nxt
        truncated = not done and self.t >= self.max_steps
        return nxt, reward, done, truncated, {}

    def close(self) -> None:
        pass


# ---------------------------------------------------------------------------------------------
# Reward network (Sec. 3.2): the modes of the seed's README
# ---------------------------------------------------------------------------------------------

RN_MODES = {
    -1: "intrinsic-motivation baseline (count-based bonus / ICM), nothing learned",
    0: "real reward r, nothing learned",
    1: "potential, exclusive: γΦ(s') − Φ(s)",
    2: "potential, additive: r + γΦ(s') − Φ(s)",
    3: "potential with info vector, exclusive",
    4: "potential with info vector, additive",
    5: "non-potential, exclusive: Φ(s')",
    6: "non-potential, additive: r + Φ(s')",
    7: "non-potential with info vector, exclusive",
    8: "non-potential with info vector, additive",
    101: "weighted info vector, exclusive: w·info",
    102: "weighted info vector, additive: r + w·info",
}
LEARNED_MODES = (1, 2, 3, 4, 5, 6, 7, 8, 101, 102)
POTENTIAL_MODES = (1, 2, 3, 4)
INFO_MODES = (3, 4, 7, 8, 101, 102)
ADDITIVE_MODES = (2, 4, 6, 8, 102)


def check_mode(mode: int) -> None:
    if mode not in RN_MODES:
        raise UsageError(f"unknown reward-network mode {mode}; allowed: "
                         + ", ".join(f"{m} ({d})" for m, d in RN_MODES.items()))


class RewardNet(nn.Module):
    """Φ: an MLP on the state (one-hot if discrete), plus the info vector in modes 3/4/7/8; for
    modes 101/102 a bias-free linear map w·info with nn.Linear's default initialisation, which
    NES perturbs (the original's since its commit 8cc23a1; before, a zero Parameter NES never moved)."""

    def __init__(self, mode: int, n_state_inputs: int, info_dim: int, hidden_size: int,
                 hidden_layer: int, activation: str):
        super().__init__()
        check_mode(mode)
        if mode not in LEARNED_MODES:
            raise UsageError(f"mode {mode} has no reward network to learn ({RN_MODES[mode]})")
        if mode in INFO_MODES and info_dim == 0:
            raise UsageError(f"mode {mode} needs an info vector and this env has none")
        self.mode = mode
        if mode in (101, 102):
            self.net = nn.Linear(info_dim, 1, bias=False)
        else:
            width = n_state_inputs + (info_dim if mode in INFO_MODES else 0)
            self.net = mlp(width, 1, (hidden_size,) * hidden_layer, activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1)


def shaped_reward(mode: int, reward: float, gamma: float, phi_state: float, phi_next: float) -> float:
    """The reward the agent sees (seed README's mode list). For modes 101/102, phi_next is w·info."""
    if mode in (1, 3):
        return gamma * phi_next - phi_state
    if mode in (2, 4):
        return reward + gamma * phi_next - phi_state
    if mode in (5, 7, 101):
        return phi_next
    if mode in (6, 8, 102):
        return reward + phi_next
    return reward


class RewardEnv:
    """The real env with the RN's reward. Every step is a real env step. Terminal next states
    get their potential like any other state, as in the original (reward_env.py): that is what
    lets an exclusive potential RN (mode 1) tell the goal from the cliff. With
    `zero_terminal_potential` the potential of a terminal s' is 0 instead (Ng et al. 1999: only
    then does potential shaping provably keep the optimal policy of an episodic task, and mode 1
    then gives every policy the return −Φ(s₀)). On discrete states, Φ is cached per
    (state, info) since the RN is fixed during training."""

    def __init__(self, net: RewardNet, real_env, gamma: float, zero_terminal_potential: bool = False):
        self.net, self.real_env, self.gamma = net, real_env, gamma
        self.mode = net.mode
        self.observation_space, self.action_space = real_env.observation_space, real_env.action_space
        self.discrete = is_discrete_state(real_env)
        self.n_states = state_dim(real_env)
        self.zero_terminal = zero_terminal_potential
        self.cache: dict = {}
        self.state = None

    def _input(self, state, vector) -> np.ndarray:
        x = one_hot(state, self.n_states) if self.discrete else np.asarray(state, np.float32)
        return np.concatenate([x, vector]) if self.mode in INFO_MODES else x

    def phi(self, state, vector) -> float:
        if self.discrete and self.mode not in (101, 102):
            key = (state, vector.tobytes() if self.mode in INFO_MODES else b"")
            cached = self.cache.get(key)   # a cache hit needs no torch call (nor no_grad's cost)
            if cached is None:
                cached = self.cache[key] = self._net_phi(self._input(state, vector))
            return cached
        return self._net_phi(vector if self.mode in (101, 102) else self._input(state, vector))

    @torch.no_grad()
    def _net_phi(self, x: np.ndarray) -> float:
        return float(self.net(torch.as_tensor(x)))

    def reset(self, seed=None, options=None):
        self.state, info = self.real_env.reset(seed=seed)
        return self.state, info

    def reward(self, state, reward: float, next_state, terminated: bool, vector: np.ndarray) -> float:
        """The reward the agent sees for the real transition state -> next_state."""
        phi_next = 0.0 if (terminated and self.zero_terminal and self.mode in POTENTIAL_MODES) \
            else self.phi(next_state, vector)
        phi_state = self.phi(state, vector) if self.mode in POTENTIAL_MODES else 0.0
        return shaped_reward(self.mode, reward, self.gamma, phi_state, phi_next)

    def step(self, action):
        nxt, reward, terminated, truncated, info = self.real_env.step(action)
        shaped = self.reward(self.state, reward, nxt, terminated, info.get("vector", np.zeros(0, np.float32)))
        self.state = nxt
        info["real_reward"] = reward
        return nxt, shaped, terminated, truncated, info

    def close(self) -> None:
        self.real_env.close()


# ---------------------------------------------------------------------------------------------
# Building proxies from a config, and the parameters NES perturbs
# ---------------------------------------------------------------------------------------------

def build_proxy(kind: str, real_env, proxy_cfg: dict, mode: int, info_dim: int) -> nn.Module:
    """A freshly initialised SE model (kind "se") or reward network (kind "rn")."""
    n_inputs = state_dim(real_env)
    sizes = (proxy_cfg["hidden_size"], proxy_cfg["hidden_layer"], proxy_cfg["activation"])
    if kind == "se":
        if not is_discrete_action(real_env):
            raise UsageError("synthetic environments are defined for discrete actions (CartPole, "
                             "Acrobot, Cliff) as in the paper; use --kind rn for continuous actions")
        return SyntheticEnvModel(n_inputs, int(real_env.action_space.n), *sizes)
    return RewardNet(mode, n_inputs, info_dim, *sizes)


def as_env(kind: str, proxy: nn.Module, real_env, max_steps: int, gamma: float,
           zero_terminal_potential: bool = False):
    """The env an inner agent trains on: the SE itself, or the real env behind the RN."""
    if kind == "se":
        return SyntheticEnv(proxy, real_env, max_steps)
    return RewardEnv(proxy, real_env, gamma, zero_terminal_potential)


def perturbed_parameters(proxy: nn.Module) -> list[torch.Tensor]:
    """The tensors NES perturbs: every nn.Linear's weight and bias, in module order."""
    params = []
    for module in proxy.modules():
        if isinstance(module, nn.Linear):
            params.append(module.weight)
            if module.bias is not None:
                params.append(module.bias)
    return params


def get_flat(proxy: nn.Module) -> np.ndarray:
    """ψ as one float64 vector (float64 so that many NES updates do not accumulate rounding)."""
    return np.concatenate([p.detach().double().reshape(-1).numpy() for p in perturbed_parameters(proxy)])


@torch.no_grad()
def set_flat(proxy: nn.Module, flat: np.ndarray) -> nn.Module:
    offset = 0
    for p in perturbed_parameters(proxy):
        n = p.numel()
        p.copy_(torch.as_tensor(flat[offset:offset + n]).view_as(p))
        offset += n
    if offset != len(flat):
        raise ValueError(f"parameter vector has {len(flat)} entries, the proxy {offset}")
    return proxy
