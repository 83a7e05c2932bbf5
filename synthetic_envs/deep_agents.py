"""The deep inner-loop agents that NES trains on synthetic environments (SEs) and reward
networks (RNs): DDQN, Dueling DDQN, TD3 with a Gumbel-softmax actor for discrete actions, TD3,
PPO, and the ICM curiosity baseline (mode -1). Ferreira et al., ICLR 2022, Sec. 4-6 and App.

Every agent has the same small interface, used by `synthetic_envs.inner`:
`act(obs, explore)`, `observe(obs, action, reward, next_obs, terminated, truncated)`,
`end_episode()`, and the attributes `name` and `gamma` (the RN's potential shaping uses it).

Conventions kept everywhere: CPU float32; `terminated` cuts the bootstrap, `truncated` (a time
limit) does not; continuous policies work in a normalised action space [-1, 1] that is mapped
linearly onto the Box bounds (the identity for CMC and HalfCheetah, as in the reference); each
agent owns its RNGs (numpy and torch generators seeded from `seed`, networks initialised under
a forked global RNG), so two agents with the same seed fed the same transitions act identically.
"""
from __future__ import annotations

import contextlib
import copy

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from common.buffers import ReplayBuffer
from common.nets import mlp

# ------------------------------------------------------------------------------------------
# small helpers
# ------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _seeded(seed: int):
    """Initialise networks from `seed` without touching the caller's global torch RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def _hidden(hp: dict) -> tuple[int, ...]:
    """hidden_layer x hidden_size: the reference's final build_nn_from_config (hidden_layer =
    number of hidden layers; 0 behaved like 1 there, so at least one)."""
    return (int(hp["hidden_size"]),) * max(1, int(hp["hidden_layer"]))


def _obs_tensor(obs) -> torch.Tensor:
    return torch.as_tensor(obs, dtype=torch.float32)


def _frozen_copy(net: nn.Module) -> nn.Module:
    return copy.deepcopy(net).requires_grad_(False)


@torch.no_grad()
def _soft_update(target: list[torch.Tensor], online: list[torch.Tensor], tau: float) -> None:
    """Polyak averaging theta' <- tau * theta + (1 - tau) * theta', in one fused call."""
    torch._foreach_lerp_(target, online, tau)


def _params(*nets: nn.Module) -> list[torch.Tensor]:
    return [p for net in nets for p in net.parameters()]


def _adam(params, lr: float) -> torch.optim.Adam:
    # fused: one C++ kernel per step; about 2.5x cheaper than the default per-tensor loop
    # for these tiny networks on CPU (same update rule).
    return torch.optim.Adam(params, lr=lr, fused=True)


def _gumbel_softmax(logits: torch.Tensor, temp: float, hard: bool,
                    gen: torch.Generator) -> torch.Tensor:
    """F.gumbel_softmax with the agent's own generator: softmax((logits + Gumbel noise) / temp);
    `hard` returns the one-hot argmax with the soft sample's gradient (straight-through)."""
    gumbels = -torch.empty_like(logits).exponential_(generator=gen).log()
    soft = ((logits + gumbels) / temp).softmax(-1)
    if not hard:
        return soft
    one_hot = torch.zeros_like(soft).scatter_(-1, soft.argmax(-1, keepdim=True), 1.0)
    return one_hot - soft.detach() + soft


def _require(space: gym.Space, kind: type, agent: str) -> None:
    if not isinstance(space, kind):
        raise ValueError(f"{agent} needs a {kind.__name__} action space, got {space}")


class _BoxScale:
    """Linear map between the normalised action space [-1, 1]^d and a bounded Box."""

    def __init__(self, space: gym.spaces.Box):
        if not np.all(np.isfinite(space.low)) or not np.all(np.isfinite(space.high)):
            raise ValueError(f"continuous agents need a bounded action Box, got {space}")
        self.low = space.low.astype(np.float32)
        self.high = space.high.astype(np.float32)
        self.center = (self.high + self.low) / 2
        self.half = (self.high - self.low) / 2
        self.dim = int(space.shape[0])

    def to_env(self, a: np.ndarray) -> np.ndarray:
        return np.clip(self.center + self.half * a, self.low, self.high).astype(np.float32)

    def to_unit(self, action) -> np.ndarray:
        return ((np.asarray(action, dtype=np.float32) - self.center) / self.half).astype(np.float32)


# ------------------------------------------------------------------------------------------
# ICM (Pathak et al. 2017), the paper's mode -1 baseline for deep agents
# ------------------------------------------------------------------------------------------


class _ResidualBlock(nn.Module):
    """x + W2 [LeakyReLU(W1 [x, a]), a]: the forward model's residual block (reference, after
    openai/large-scale-curiosity)."""

    def __init__(self, feature_dim: int, action_dim: int):
        super().__init__()
        self.fc1 = nn.Sequential(nn.Linear(feature_dim + action_dim, feature_dim), nn.LeakyReLU())
        self.fc2 = nn.Linear(feature_dim + action_dim, feature_dim)

    def forward(self, x: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        return x + self.fc2(torch.cat([self.fc1(torch.cat([x, a], 1)), a], 1))


class ICM(nn.Module):
    """Intrinsic curiosity module (Pathak et al. 2017; reference models/icm_baseline.py):
    encoder phi, inverse model (phi(s), phi(s')) -> a, forward model (phi(s), a) -> phi(s');
    intrinsic reward eta * mean_k (phi_hat(s')_k - phi(s')_k)^2."""

    def __init__(self, obs_dim: int, action_space: gym.Space, feature_dim: int = 32,
                 hidden_size: int = 128, lr: float = 1e-4, beta: float = 0.2, eta: float = 0.5):
        super().__init__()
        self.discrete = isinstance(action_space, gym.spaces.Discrete)
        self.action_dim = int(action_space.n) if self.discrete else int(action_space.shape[0])
        self.beta, self.eta = float(beta), float(eta)
        f, h, a = int(feature_dim), (int(hidden_size),) * 2, self.action_dim
        self.encoder = mlp(obs_dim, f, h, act="leaky_relu")
        self.inverse = mlp(2 * f, a, h, act="relu")
        self.forward_pre = mlp(f + a, f, h, act="leaky_relu")
        self.blocks = nn.ModuleList(_ResidualBlock(f, a) for _ in range(4))
        self.forward_post = mlp(f, f, (int(hidden_size),), act="leaky_relu")
        self.opt = _adam(self.parameters(), lr)

    def _encode_action(self, actions: torch.Tensor) -> torch.Tensor:
        """Discrete actions (indices) go in one-hot; continuous ones as they are."""
        if self.discrete:
            return F.one_hot(actions.long(), self.action_dim).float()
        return actions.float()

    def _predict(self, obs, next_obs, a):
        """(phi(s'), predicted phi(s'), predicted action) for a batch."""
        phi, phi_next = self.encoder(obs), self.encoder(next_obs)
        action_pred = self.inverse(torch.cat([phi, phi_next], 1))
        x = self.forward_pre(torch.cat([phi, a], 1))
        for block in self.blocks:
            x = block(x, a)
        return phi_next, self.forward_post(x), action_pred

    def update(self, obs, next_obs, actions) -> float:
        """One Adam step on (1 - beta) * inverse loss + beta * forward loss."""
        a = self._encode_action(actions)
        phi_next, phi_next_pred, action_pred = self._predict(obs, next_obs, a)
        inverse_loss = (F.cross_entropy(action_pred, actions.long()) if self.discrete
                        else F.mse_loss(action_pred, a))
        loss = (1 - self.beta) * inverse_loss + self.beta * F.mse_loss(phi_next_pred, phi_next)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return loss.item()

    @torch.no_grad()
    def intrinsic_reward(self, obs, next_obs, actions) -> torch.Tensor:
        """eta * forward-model error per transition, shape [B]."""
        phi_next, phi_next_pred, _ = self._predict(obs, next_obs, self._encode_action(actions))
        return self.eta * (phi_next_pred - phi_next).pow(2).mean(-1)


def _make_icm(obs_dim: int, action_space: gym.Space, hp: dict, seed: int) -> ICM | None:
    """The agent's ICM when hp["icm"] (seeded apart, so turning it on keeps the agent's nets)."""
    if not hp.get("icm", False):
        return None
    with _seeded(seed + 7919):
        return ICM(obs_dim, action_space, feature_dim=hp["icm_feature_dim"],
                   hidden_size=hp["icm_hidden_size"], lr=hp["icm_lr"], beta=hp["icm_beta"],
                   eta=hp["icm_eta"])


# ------------------------------------------------------------------------------------------
# off-policy agents
# ------------------------------------------------------------------------------------------


class _OffPolicyAgent:
    """Replay, episode counting and ICM plumbing shared by the off-policy agents (reference
    base_agent.train: learn once per env step from episode `init_episodes` on)."""

    name = ""

    def __init__(self, obs_dim: int, action_space: gym.Space, hp: dict, seed: int,
                 action_shape: tuple, action_dtype):
        self.hp = dict(hp)
        self.gamma = float(hp["gamma"])
        self.batch_size = int(hp["batch_size"])
        self.init_episodes = int(hp["init_episodes"])
        self.episode = 0
        self.updates = 0
        self.np_rng = np.random.default_rng(seed)
        self.gen = torch.Generator().manual_seed(seed)
        self.buffer = ReplayBuffer(int(hp["rb_size"]), (obs_dim,), action_shape,
                                   action_dtype=action_dtype, seed=seed)
        self.icm = _make_icm(obs_dim, action_space, hp, seed)

    def observe(self, obs, action, reward, next_obs, terminated, truncated) -> None:
        """Store the transition; one gradient update per env step after the init episodes."""
        self.buffer.add(obs, self._stored_action(action), reward, next_obs, terminated, truncated)
        if self.episode >= self.init_episodes:
            self.update()
            self.updates += 1

    def end_episode(self) -> None:
        self.episode += 1

    def _stored_action(self, action):
        return action

    def _icm_actions(self, actions: torch.Tensor) -> torch.Tensor:
        return actions

    def _sample(self):
        """A replay batch and its training rewards (extrinsic + ICM's intrinsic when on; the
        ICM is trained on the same batch first, as in the reference)."""
        batch = self.buffer.sample(self.batch_size)
        if self.icm is None:
            return batch, batch.rewards
        actions = self._icm_actions(batch.actions)
        self.icm.update(batch.obs, batch.next_obs, actions)
        return batch, batch.rewards + self.icm.intrinsic_reward(batch.obs, batch.next_obs, actions)

    def update(self) -> None:
        raise NotImplementedError


class DuelingQNet(nn.Module):
    """Dueling Q-network (Wang et al. 2016; reference Critic_DuelingDQN): a feature MLP, then
    value and advantage heads with one hidden layer of feature_dim; Q = V + A - mean_a A."""

    def __init__(self, obs_dim: int, n_actions: int, hidden: tuple[int, ...], act: str,
                 feature_dim: int):
        super().__init__()
        self.features = mlp(obs_dim, feature_dim, hidden, act=act)
        self.value = mlp(feature_dim, 1, (feature_dim,), act=act)
        self.advantage = mlp(feature_dim, n_actions, (feature_dim,), act=act)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        x = self.features(obs)
        adv = self.advantage(x)
        # mean over the action axis only (per state), whether obs is batched or not
        return self.value(x) + adv - adv.mean(-1, keepdim=True)


class DDQN(_OffPolicyAgent):
    """Double DQN (van Hasselt et al. 2016; reference agents/DDQN.py): epsilon-greedy with a
    per-episode multiplicative decay, MSE TD loss, Adam, soft target updates every step."""

    name = "ddqn"

    def __init__(self, obs_dim: int, action_space: gym.Space, hp: dict, seed: int):
        _require(action_space, gym.spaces.Discrete, self.name)
        super().__init__(obs_dim, action_space, hp, seed, action_shape=(), action_dtype=np.int64)
        self.n_actions = int(action_space.n)
        self.tau = float(hp["tau"])
        self.eps_init, self.eps_min = float(hp["eps_init"]), float(hp["eps_min"])
        self.eps_decay = float(hp["eps_decay"])
        self.eps = self.eps_init
        with _seeded(seed):
            self.q = self._build_q(obs_dim)
        self.q_target = _frozen_copy(self.q)
        self.opt = _adam(self.q.parameters(), float(hp["lr"]))
        self._target_pairs = (_params(self.q_target), _params(self.q))

    def _build_q(self, obs_dim: int) -> nn.Module:
        return mlp(obs_dim, self.n_actions, _hidden(self.hp), act=self.hp["activation"])

    def act(self, obs, explore: bool) -> int:
        """Epsilon-greedy when exploring (also in the init episodes, as in the reference)."""
        if explore and self.np_rng.random() < self.eps:
            return int(self.np_rng.integers(self.n_actions))
        with torch.inference_mode():
            return int(self.q(_obs_tensor(obs)).argmax())

    def end_episode(self) -> None:
        """eps_k = max(eps_min, eps_init * eps_decay^k) after k episodes."""
        super().end_episode()
        self.eps = max(self.eps_min, self.eps * self.eps_decay)

    @torch.no_grad()
    def td_target(self, rewards, next_obs, terminated) -> torch.Tensor:
        """r + gamma (1 - term) Q_target(s', argmax_a Q(s', a)): the online net picks, the
        target net evaluates."""
        best = self.q(next_obs).argmax(1, keepdim=True)
        next_q = self.q_target(next_obs).gather(1, best).squeeze(1)
        return rewards + self.gamma * (1.0 - terminated) * next_q

    def update(self) -> None:
        batch, rewards = self._sample()
        q = self.q(batch.obs).gather(1, batch.actions.unsqueeze(1)).squeeze(1)
        loss = F.mse_loss(q, self.td_target(rewards, batch.next_obs, batch.terminated))
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        _soft_update(*self._target_pairs, self.tau)


class DuelingDDQN(DDQN):
    """DDQN on a dueling Q-network (reference agents/DuelingDDQN.py)."""

    name = "dueling_ddqn"

    def _build_q(self, obs_dim: int) -> nn.Module:
        return DuelingQNet(obs_dim, self.n_actions, _hidden(self.hp), self.hp["activation"],
                           int(self.hp["feature_dim"]))


class _TwinDelayed(_OffPolicyAgent):
    """TD3's update (Fujimoto et al. 2018; reference agents/TD3.py): twin critics and the min of
    their targets, clipped target-policy noise, actor and target updates every policy_delay
    critic updates. Subclasses say what an action vector is."""

    def _init_nets(self, obs_dim: int, action_dim: int, seed: int, actor_out_act: str | None):
        hp, hidden, act = self.hp, _hidden(self.hp), self.hp["activation"]
        self.action_dim = action_dim
        self.tau, self.policy_delay = float(hp["tau"]), int(hp["policy_delay"])
        self.action_std, self.policy_std = float(hp["action_std"]), float(hp["policy_std"])
        self.policy_std_clip = float(hp["policy_std_clip"])
        with _seeded(seed):
            self.actor = mlp(obs_dim, action_dim, hidden, act=act, output_act=actor_out_act)
            self.critic1 = mlp(obs_dim + action_dim, 1, hidden, act=act)
            self.critic2 = mlp(obs_dim + action_dim, 1, hidden, act=act)
        self.actor_target = _frozen_copy(self.actor)
        self.critic1_target = _frozen_copy(self.critic1)
        self.critic2_target = _frozen_copy(self.critic2)
        self.actor_opt = _adam(self.actor.parameters(), float(hp["lr"]))
        self.critic_opt = _adam(_params(self.critic1, self.critic2), float(hp["lr"]))
        self._target_pairs = (_params(self.actor_target, self.critic1_target, self.critic2_target),
                              _params(self.actor, self.critic1, self.critic2))

    @staticmethod
    def _q(critic: nn.Module, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return critic(torch.cat([obs, actions], 1)).squeeze(1)

    def _policy(self, actor: nn.Module, obs: torch.Tensor) -> torch.Tensor:
        """The action vector `actor` chooses for a batch (differentiable)."""
        raise NotImplementedError

    def _smoothed(self, actions: torch.Tensor) -> torch.Tensor:
        """Where the noisy target action is kept (TD3: inside the bounds)."""
        return actions

    def target_noise(self, shape) -> torch.Tensor:
        """Target policy smoothing noise: N(0, policy_std) clipped to +-policy_std_clip."""
        noise = torch.randn(shape, generator=self.gen) * self.policy_std
        return noise.clamp(-self.policy_std_clip, self.policy_std_clip)

    @torch.no_grad()
    def td_target(self, rewards, next_obs, terminated) -> torch.Tensor:
        """r + gamma (1 - term) min_i Q'_i(s', pi'(s') + clipped noise)."""
        next_a = self._policy(self.actor_target, next_obs)
        next_a = self._smoothed(next_a + self.target_noise(next_a.shape))
        next_q = torch.min(self._q(self.critic1_target, next_obs, next_a),
                           self._q(self.critic2_target, next_obs, next_a))
        return rewards + self.gamma * (1.0 - terminated) * next_q

    def update(self) -> None:
        batch, rewards = self._sample()
        target = self.td_target(rewards, batch.next_obs, batch.terminated)
        critic_loss = (F.mse_loss(self._q(self.critic1, batch.obs, batch.actions), target)
                       + F.mse_loss(self._q(self.critic2, batch.obs, batch.actions), target))
        self.critic_opt.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.critic_opt.step()
        if (self.updates + 1) % self.policy_delay == 0:  # the reference counts from 1
            chosen = self._policy(self.actor, batch.obs)
            actor_loss = -self._q(self.critic1, batch.obs, chosen).mean()
            self.actor_opt.zero_grad(set_to_none=True)
            actor_loss.backward()
            self.actor_opt.step()
            _soft_update(*self._target_pairs, self.tau)


class TD3(_TwinDelayed):
    """TD3 for a bounded Box: tanh actor, Gaussian exploration noise action_std (relative to
    the half range), uniform random actions during the init episodes."""

    name = "td3"

    def __init__(self, obs_dim: int, action_space: gym.Space, hp: dict, seed: int):
        _require(action_space, gym.spaces.Box, self.name)
        self.scale = _BoxScale(action_space)
        super().__init__(obs_dim, action_space, hp, seed, action_shape=(self.scale.dim,),
                         action_dtype=np.float32)
        self._init_nets(obs_dim, self.scale.dim, seed, actor_out_act="tanh")

    def act(self, obs, explore: bool) -> np.ndarray:
        if explore and self.episode < self.init_episodes:
            return self.scale.to_env(self.np_rng.uniform(-1.0, 1.0, self.scale.dim))
        with torch.inference_mode():
            a = self.actor(_obs_tensor(obs)).numpy()
        if explore:
            a = np.clip(a + self.action_std * self.np_rng.standard_normal(self.scale.dim), -1, 1)
        return self.scale.to_env(a)

    def _stored_action(self, action):
        return self.scale.to_unit(action)

    def _policy(self, actor, obs):
        return actor(obs)

    def _smoothed(self, actions):
        return actions.clamp(-1.0, 1.0)


class TD3Discrete(_TwinDelayed):
    """TD3 for discrete actions (reference agents/TD3_discrete_vary.py). The actor's n logits
    go through a Gumbel-softmax (temperature annealed linearly from gumbel_softmax_temp to 1/20
    of it over the first 2000 updates; `hard` gives one-hot samples with straight-through
    gradients), the critics score (s, action vector), and the env gets the argmax. Exploration
    adds N(0, action_std) to the sampled vector, which is what the replay stores."""

    name = "td3_discrete"
    ANNEAL_UPDATES = 2000   # reference: np.linspace(temp, temp / 20, 2000), indexed by update
    ANNEAL_FACTOR = 20

    def __init__(self, obs_dim: int, action_space: gym.Space, hp: dict, seed: int):
        _require(action_space, gym.spaces.Discrete, self.name)
        self.n_actions = int(action_space.n)
        super().__init__(obs_dim, action_space, hp, seed, action_shape=(self.n_actions,),
                         action_dtype=np.float32)
        self._init_nets(obs_dim, self.n_actions, seed, actor_out_act=None)
        self.temp0 = float(hp["gumbel_softmax_temp"])
        self.hard = bool(hp["gumbel_softmax_hard"])
        self.temp = self.temp0
        self._eye = np.eye(self.n_actions, dtype=np.float32)
        self._last = (-1, None)  # (env action, stored vector) of the last explore act

    def _anneal(self) -> None:
        frac = min(self.updates, self.ANNEAL_UPDATES - 1) / (self.ANNEAL_UPDATES - 1)
        self.temp = self.temp0 * (1.0 - frac * (1.0 - 1.0 / self.ANNEAL_FACTOR))

    def act(self, obs, explore: bool) -> int:
        if not explore:  # greedy: the most likely action of the actor
            with torch.inference_mode():
                return int(self.actor(_obs_tensor(obs)).argmax())
        if self.episode < self.init_episodes:
            vector = self._eye[self.np_rng.integers(self.n_actions)]
        else:
            with torch.inference_mode():
                sample = _gumbel_softmax(self.actor(_obs_tensor(obs)), self.temp, self.hard,
                                         self.gen).numpy()
            vector = (sample + self.action_std * self.np_rng.standard_normal(self.n_actions)
                      ).astype(np.float32)
        action = int(vector.argmax())
        self._last = (action, vector)
        return action

    def _stored_action(self, action):
        """The vector behind the last act() if it produced this action, else its one-hot."""
        last_action, vector = self._last
        return vector if last_action == int(action) else self._eye[int(action)]

    def _icm_actions(self, actions):
        return actions.argmax(1)

    def _policy(self, actor, obs):
        return _gumbel_softmax(actor(obs), self.temp, self.hard, self.gen)

    def update(self) -> None:
        self._anneal()
        super().update()


# ------------------------------------------------------------------------------------------
# PPO
# ------------------------------------------------------------------------------------------


class PPO:
    """PPO with the clipped surrogate (Schulman et al. 2017; reference agents/PPO.py): collect
    until more than update_episodes x episode_steps env steps, then ppo_epochs Adam steps on
    -min(r A, clip(r) A) + vf_coef MSE(V, R) - ent_coef H, where R are normalised Monte-Carlo
    returns and A = R - V. Gaussian policy tanh(mean) with a learned std for a Box, categorical
    for Discrete."""

    name = "ppo"
    MIN_STD = 0.01   # the reference clamps the std parameter to >= 0.01 during updates

    def __init__(self, obs_dim: int, action_space: gym.Space, hp: dict, seed: int):
        self.hp = dict(hp)
        self.discrete = isinstance(action_space, gym.spaces.Discrete)
        if not self.discrete:
            _require(action_space, gym.spaces.Box, self.name)
            self.scale = _BoxScale(action_space)
        self.gamma = float(hp["gamma"])
        self.ppo_epochs, self.eps_clip = int(hp["ppo_epochs"]), float(hp["eps_clip"])
        self.vf_coef, self.ent_coef = float(hp["vf_coef"]), float(hp["ent_coef"])
        self.batch_size = None if hp.get("batch_size") is None else int(hp["batch_size"])
        # reference: learn when (env steps since the last update) / max steps > update_episodes
        self.rollout_env_steps = float(hp["update_episodes"]) * int(hp["episode_steps"])
        self.same_action_num = int(hp.get("same_action_num", 1))
        self.episode = 0
        self.np_rng = np.random.default_rng(seed)
        self.gen = torch.Generator().manual_seed(seed)
        out_dim = int(action_space.n) if self.discrete else self.scale.dim
        with _seeded(seed):
            self.actor = mlp(obs_dim, out_dim, _hidden(hp), act=hp["activation"])
            self.critic = mlp(obs_dim, 1, _hidden(hp), act=hp["activation"])
        params = _params(self.actor, self.critic)
        if not self.discrete:
            self.std = nn.Parameter(torch.full((out_dim,), float(hp["action_std"])))
            params.append(self.std)
        self.opt = _adam(params, float(hp["lr"]))
        self.icm = _make_icm(obs_dim, action_space, hp, seed)
        self._rollout: list[tuple] = []
        self._last = (None, None)  # (env action, policy-space action) of the last act

    # -- acting -------------------------------------------------------------------------
    def act(self, obs, explore: bool):
        with torch.inference_mode():
            out = self.actor(_obs_tensor(obs))
            if self.discrete:
                action = (int(torch.multinomial(out.softmax(-1), 1, generator=self.gen))
                          if explore else int(out.argmax()))
                return action
            mean = out.tanh()
            raw = mean + self.std * torch.randn(mean.shape, generator=self.gen) if explore else mean
        raw = raw.numpy().astype(np.float32)
        action = self.scale.to_env(raw)
        self._last = (action, raw)
        return action

    def _policy_action(self, action) -> np.ndarray | int:
        """The unclipped sample behind an env action (its log-prob is what PPO needs)."""
        if self.discrete:
            return int(action)
        env_action, raw = self._last
        if env_action is not None and np.array_equal(env_action, action):
            return raw
        return self.scale.to_unit(action)

    # -- learning -------------------------------------------------------------------------
    def observe(self, obs, action, reward, next_obs, terminated, truncated) -> None:
        self._rollout.append((np.asarray(obs, np.float32), self._policy_action(action),
                              float(reward), np.asarray(next_obs, np.float32),
                              bool(terminated or truncated)))
        if len(self._rollout) * self.same_action_num > self.rollout_env_steps:
            self.update()
            self._rollout.clear()

    def end_episode(self) -> None:
        self.episode += 1

    def _dist(self, obs: torch.Tensor):
        out = self.actor(obs)
        if self.discrete:
            return torch.distributions.Categorical(logits=out)
        return torch.distributions.Normal(out.tanh(), self.std)

    def _log_prob_entropy(self, obs, actions):
        dist = self._dist(obs)
        if self.discrete:
            return dist.log_prob(actions), dist.entropy()
        return dist.log_prob(actions).sum(-1), dist.entropy().sum(-1)

    def _returns(self, rewards: torch.Tensor, dones: list[bool]) -> torch.Tensor:
        """Discounted Monte-Carlo returns, restarted at episode ends, normalised."""
        returns, running = [], 0.0
        for reward, done in zip(reversed(rewards.tolist()), reversed(dones)):
            running = reward + self.gamma * (0.0 if done else running)
            returns.append(running)
        ret = torch.tensor(returns[::-1], dtype=torch.float32)
        return (ret - ret.mean()) / (ret.std() + 1e-5) if len(ret) > 1 else ret - ret.mean()

    def update(self) -> None:
        obs, actions, rewards, next_obs, dones = zip(*self._rollout)
        obs, next_obs = torch.from_numpy(np.stack(obs)), torch.from_numpy(np.stack(next_obs))
        actions = (torch.tensor(actions) if self.discrete
                   else torch.from_numpy(np.stack(actions)))
        rewards = torch.tensor(rewards, dtype=torch.float32)
        if self.icm is not None:  # reference: intrinsic reward first, ICM trained after PPO
            rewards = rewards + self.icm.intrinsic_reward(obs, next_obs, actions)
        returns = self._returns(rewards, list(dones))
        with torch.no_grad():
            old_log_prob, _ = self._log_prob_entropy(obs, actions)
        n = len(returns)
        for _ in range(self.ppo_epochs):
            order = (torch.randperm(n, generator=self.gen) if self.batch_size else torch.arange(n))
            for idx in order.split(self.batch_size or n):
                self._ppo_step(obs[idx], actions[idx], returns[idx], old_log_prob[idx])
        if self.icm is not None:
            self.icm.update(obs, next_obs, actions)

    def _ppo_step(self, obs, actions, returns, old_log_prob) -> None:
        log_prob, entropy = self._log_prob_entropy(obs, actions)
        values = self.critic(obs).squeeze(1)
        ratio = (log_prob - old_log_prob).exp()
        adv = (returns - values).detach()
        surrogate = torch.min(ratio * adv, ratio.clamp(1 - self.eps_clip, 1 + self.eps_clip) * adv)
        loss = (-surrogate.mean() + self.vf_coef * F.mse_loss(values, returns)
                - self.ent_coef * entropy.mean())
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        if not self.discrete:
            with torch.no_grad():
                self.std.clamp_(min=self.MIN_STD)


# ------------------------------------------------------------------------------------------
# registry, hyperparameters, variation
# ------------------------------------------------------------------------------------------

AGENTS = {"ddqn": DDQN, "dueling_ddqn": DuelingDDQN, "td3_discrete": TD3Discrete, "td3": TD3,
          "ppo": PPO}
DISCRETE_ONLY = {"ddqn", "dueling_ddqn", "td3_discrete"}
CONTINUOUS_ONLY = {"td3"}

_COMMON_KEYS = ("lr", "batch_size", "hidden_size", "hidden_layer", "activation", "gamma",
                "max_episodes", "init_episodes", "same_action_num", "icm", "icm_lr", "icm_beta",
                "icm_eta", "icm_feature_dim", "icm_hidden_size")
_TD3_KEYS = ("tau", "policy_delay", "rb_size", "action_std", "policy_std", "policy_std_clip")
HP_KEYS: dict[str, tuple[str, ...]] = {   # the keys each agent reads
    "ddqn": _COMMON_KEYS + ("tau", "rb_size", "eps_init", "eps_min", "eps_decay"),
    "dueling_ddqn": _COMMON_KEYS + ("tau", "rb_size", "eps_init", "eps_min", "eps_decay",
                                    "feature_dim"),
    "td3_discrete": _COMMON_KEYS + _TD3_KEYS + ("gumbel_softmax_temp", "gumbel_softmax_hard"),
    "td3": _COMMON_KEYS + _TD3_KEYS,
    "ppo": _COMMON_KEYS + ("update_episodes", "episode_steps", "ppo_epochs", "vf_coef",
                           "ent_coef", "eps_clip", "action_std"),
}


def _icm_hp(feature_dim: int) -> dict:
    """ICM baseline settings, off by default (the `icm:` block of the yamls: lr 1e-4,
    beta 0.2, eta 0.5, 128 hidden; feature_dim 32 for CartPole/Acrobot, 64 for CMC/HalfCheetah)."""
    return {"icm": False, "icm_lr": 1e-4, "icm_beta": 0.2, "icm_eta": 0.5,
            "icm_feature_dim": feature_dim, "icm_hidden_size": 128}


# The reference's yaml configs (train_episodes -> max_episodes, activation_fn -> activation;
# 'leakyrelu' -> 'leaky_relu'). same_action_num is action repeat, applied by the env loop.
DEFAULT_HP: dict[str, dict[str, dict]] = {
    "ddqn": {
        # configurations/default_config_cartpole_syn_env.yaml (the paper's tuned CartPole-SE DDQN)
        "cartpole": dict(lr=3.04e-4, batch_size=199, hidden_size=57, hidden_layer=1,
                         activation="tanh", gamma=0.988, max_episodes=1000, init_episodes=1,
                         same_action_num=1, tau=0.00848, rb_size=100_000, eps_init=0.809,
                         eps_min=0.0371, eps_decay=0.961, **_icm_hp(32)),
        # default_config_acrobot_syn_env.yaml
        "acrobot": dict(lr=2.22e-3, batch_size=149, hidden_size=112, hidden_layer=1,
                        activation="leaky_relu", gamma=0.991, max_episodes=1000, init_episodes=20,
                        same_action_num=1, tau=0.0209, rb_size=100_000, eps_init=0.904,
                        eps_min=0.0471, eps_decay=0.899, **_icm_hp(32)),
    },
    # configurations/default_config_cartpole.yaml (duelingddqn): the block the reference's
    # CartPole Dueling-DDQN experiment loads. (The syn_env yaml's block -- lr 9.14e-3, batch 193,
    # gamma 0.961, tau 0.0735, eps 0.906/0.00645/0.8267, tanh 61x1, feature 60 -- is used by no
    # experiment and does not learn real CartPole in 300 episodes.) default_config_acrobot.yaml
    # has the same values, and the reference's Acrobot Dueling-DDQN experiment loads them.
    "dueling_ddqn": {env: dict(lr=1e-3, batch_size=128, hidden_size=128, hidden_layer=2,
                               activation="relu", gamma=0.99, max_episodes=1000, init_episodes=10,
                               same_action_num=1, tau=0.01, rb_size=100_000, eps_init=1.0,
                               eps_min=0.01, eps_decay=0.9, feature_dim=128, **_icm_hp(32))
                     for env in ("cartpole", "acrobot")},
    # configurations/default_config_cartpole_syn_env.yaml and default_config_acrobot_syn_env.yaml
    # (td3_discrete_vary: the same values in both)
    "td3_discrete": {env: dict(lr=1.7496e-3, batch_size=122, hidden_size=510, hidden_layer=2,
                               activation="tanh", gamma=0.9989, max_episodes=1000, init_episodes=1,
                               same_action_num=1, tau=0.0724303, policy_delay=1, rb_size=1_000_000,
                               action_std=0.037275, policy_std=0.2225286, policy_std_clip=0.5,
                               gumbel_softmax_temp=2.3076235, gumbel_softmax_hard=True, **_icm_hp(32))
                     for env in ("cartpole", "acrobot")},
    "td3": {
        # default_config_cmc_reward_env.yaml (the RN experiments' inner-loop TD3)
        "cmc": dict(lr=3e-3, batch_size=192, hidden_size=128, hidden_layer=2,
                    activation="leaky_relu", gamma=0.99, max_episodes=100, init_episodes=50,
                    same_action_num=5, tau=0.01, policy_delay=1, rb_size=1_000_000,
                    action_std=0.05, policy_std=0.2, policy_std_clip=0.5, **_icm_hp(64)),
        # configurations/default_config_halfcheetah_reward_env.yaml
        "halfcheetah": dict(lr=3e-3, batch_size=192, hidden_size=128, hidden_layer=2,
                            activation="relu", gamma=0.98, max_episodes=100, init_episodes=20,
                            same_action_num=1, tau=0.01, policy_delay=1, rb_size=1_000_000,
                            action_std=0.05, policy_std=0.2, policy_std_clip=0.5, **_icm_hp(64)),
    },
    "ppo": {
        # no reference config (its PPO is continuous only): derived from
        # configurations/default_config_cmc_ppo.yaml without action repeat; episode_steps = 200
        "cartpole": dict(lr=3e-4, batch_size=None, hidden_size=64, hidden_layer=2,
                         activation="relu", gamma=0.99, max_episodes=1000, init_episodes=0,
                         same_action_num=1, update_episodes=10, episode_steps=200, ppo_epochs=80,
                         vf_coef=1.0, ent_coef=0.01, eps_clip=0.2, action_std=0.5, **_icm_hp(32)),
        # no reference config: derived from configurations/default_config_cmc_ppo.yaml as above
        "acrobot": dict(lr=3e-4, batch_size=None, hidden_size=64, hidden_layer=2,
                        activation="relu", gamma=0.99, max_episodes=1000, init_episodes=0,
                        same_action_num=1, update_episodes=10, episode_steps=500, ppo_epochs=80,
                        vf_coef=1.0, ent_coef=0.01, eps_clip=0.2, action_std=0.5, **_icm_hp(32)),
        # configurations/default_config_cmc_ppo.yaml (= the CMC RN transfer-to-PPO settings)
        "cmc": dict(lr=3e-4, batch_size=None, hidden_size=64, hidden_layer=2, activation="relu",
                    gamma=0.99, max_episodes=10_000, init_episodes=0, same_action_num=5,
                    update_episodes=10, episode_steps=999, ppo_epochs=80, vf_coef=1.0,
                    ent_coef=0.01, eps_clip=0.2, action_std=0.5, **_icm_hp(64)),
        # configurations/default_config_halfcheetah.yaml (ppo)
        "halfcheetah": dict(lr=3e-4, batch_size=None, hidden_size=128, hidden_layer=2,
                            activation="relu", gamma=0.99, max_episodes=10_000, init_episodes=0,
                            same_action_num=1, update_episodes=5, episode_steps=1000,
                            ppo_epochs=80, vf_coef=1.0, ent_coef=0.01, eps_clip=0.2,
                            action_std=0.2, **_icm_hp(64)),
    },
}


def _log_uniform(rng: np.random.Generator, x: float) -> float:
    return float(np.exp(rng.uniform(np.log(x / 3), np.log(x * 3))))


def vary_hp(hp: dict, rng: np.random.Generator) -> dict:
    """The paper's hyperparameter variation (reference *_vary.py): lr, batch_size and
    hidden_size log-uniform in [x/3, 3x] (ints rounded, >= 1), hidden_layer uniform from
    {L-1, L, L+1} (>= 1); everything else kept. A None batch_size (full-batch PPO) stays."""
    out = dict(hp)
    out["lr"] = _log_uniform(rng, float(hp["lr"]))
    for key in ("batch_size", "hidden_size"):
        if hp.get(key) is not None:
            out[key] = max(1, int(round(_log_uniform(rng, float(hp[key])))))
    out["hidden_layer"] = max(1, int(hp["hidden_layer"]) + int(rng.integers(-1, 2)))
    return out


__all__ = ["AGENTS", "CONTINUOUS_ONLY", "DDQN", "DEFAULT_HP", "DISCRETE_ONLY", "DuelingDDQN",
           "DuelingQNet", "HP_KEYS", "ICM", "PPO", "TD3", "TD3Discrete", "vary_hp"]
