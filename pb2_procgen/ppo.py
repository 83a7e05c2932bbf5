"""PPO with DrAC data augmentation (Raileanu et al., 2021) -- the agent whose hyperparameters
PBT / PB2 tune in Parker-Holder et al. (NeurIPS 2021).

One `PPOAgent` is one member of the population. `train_segment` runs PPO iterations (collect
num_envs x num_steps transitions, then `epochs` passes of `minibatches` minibatches) until a
segment of at least `min_steps` env steps is done. The loss per minibatch is (DrAC, Alg. 1):

    L = L_clip + value_coef * L_value - entropy_coef * H
        + aug_coef * ( -log pi(a | aug(s))  +  1/2 (V(s).detach() - V(aug(s)))^2 ),

with a sampled from pi(. | s) by the current network (no gradient through the sample), the PPO
value loss clipped with clip_param as in the reference, and advantages from GAE.

Procgen: IMPALA ResNet (channels 16-32-32, FC 256), obs / 255, 15 actions, easy mode, 200 training
levels from level 0, test on the full level distribution (num_levels = 0). Gymnasium envs with a
vector observation (CartPole-v1) use an MLP torso (64-64 tanh, separate actor and critic as in
DrAC's MLPBase) and the vector augmentations.

Rewards are normalised like baselines' VecNormalize(ob=False), which the reference wraps around
Procgen: divide by the running std of a discounted return (gamma 0.99, VecNormalize's default),
clip to [-10, 10]. Training and test returns are always reported in raw reward units.
"""
from __future__ import annotations

import copy
import math
from collections import deque
from functools import partial

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from common.cli import UsageError
from common.device import resolve_device
from common.nets import activation
from pb2_procgen.augment import augment
from pb2_procgen.procgen_env import ProcgenVecEnv, is_procgen
from pb2_procgen.search_space import PROCGEN_AUGMENTATIONS, VECTOR_AUGMENTATIONS

HYPERPARAMETERS = ("entropy_coef", "lr", "clip_param", "aug_coef", "aug_type")

PPO_DEFAULTS: dict = {
    # The tuned hyperparameters; initial values are DrAC's defaults. aug_type None means the
    # first augmentation of the env's list ("crop" on Procgen, "gaussian" on vector envs).
    "entropy_coef": 0.01,
    "lr": 5e-4,
    "clip_param": 0.2,
    "aug_coef": 0.1,
    "aug_type": None,
    # PPO (DrAC's Procgen settings)
    "num_envs": 64,
    "num_steps": 256,
    "epochs": 3,
    "minibatches": 8,
    "gamma": 0.999,
    "gae_lambda": 0.95,
    "value_coef": 0.5,
    "max_grad_norm": 0.5,
    "adam_eps": 1e-5,
    "chunk_size": 128,              # gradient-accumulation chunk of a minibatch (None: whole)
    "norm_adv": True,
    "clip_value": True,             # value clipping with clip_param
    "norm_reward": True,            # VecNormalize-style return-std reward scaling
    "reward_norm_gamma": 0.99,      # VecNormalize's default, used as is by the reference
    "reward_clip": 10.0,
    # networks
    "channels": [16, 32, 32],       # IMPALA ResNet stages
    "hidden_size": 256,             # IMPALA FC layer
    "mlp_hidden": [64, 64],         # vector observations
    "mlp_activation": "tanh",
    # Procgen
    "distribution_mode": "easy",
    "num_levels": 200,
    "start_level": 0,
    "test_num_levels": 0,           # 0 = the full level distribution
    "procgen_threads": 4,
    # test episodes
    "test_num_envs": 8,
    "test_deterministic": False,    # the reference samples actions at test time
}


def _check_config(config: dict) -> dict:
    unknown = sorted(set(config) - set(PPO_DEFAULTS))
    if unknown:
        raise UsageError(f"unknown PPO config key(s) {', '.join(map(repr, unknown))}; "
                         f"allowed: {', '.join(PPO_DEFAULTS)}")
    resolved = {**copy.deepcopy(PPO_DEFAULTS), **copy.deepcopy(config)}
    for key in ("num_envs", "num_steps", "epochs", "minibatches", "hidden_size", "test_num_envs"):
        if int(resolved[key]) < 1:
            raise UsageError(f"PPO config {key} must be >= 1, got {resolved[key]}")
    if resolved["num_envs"] * resolved["num_steps"] < resolved["minibatches"]:
        raise UsageError("PPO config: num_envs * num_steps must be >= minibatches")
    return resolved


# ---------------------------------------------------------------------------------- networks

def _init(layer: nn.Module, gain: float) -> nn.Module:
    nn.init.orthogonal_(layer.weight, gain)
    nn.init.zeros_(layer.bias)
    return layer


class ResidualBlock(nn.Module):
    """IMPALA residual block: x + conv(relu(conv(relu(x))))."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x):
        return x + self.conv2(F.relu(self.conv1(F.relu(x))))


class ImpalaCNN(nn.Module):
    """IMPALA ResNet (Espeholt et al., 2018) as in DrAC: per stage conv 3x3, max-pool 3x3 stride
    2, two residual blocks; then ReLU, FC, ReLU. uint8 images are divided by 255."""

    def __init__(self, in_shape=(3, 64, 64), channels=(16, 32, 32), hidden_size: int = 256):
        super().__init__()
        layers, c, h, w = [], in_shape[0], in_shape[1], in_shape[2]
        for out in channels:
            layers += [nn.Conv2d(c, out, 3, padding=1), nn.MaxPool2d(3, stride=2, padding=1),
                       ResidualBlock(out), ResidualBlock(out)]
            c, h, w = out, (h + 1) // 2, (w + 1) // 2
        self.stages = nn.Sequential(*layers)
        for module in self.stages.modules():
            if isinstance(module, nn.Conv2d):   # DrAC: Xavier-uniform convs, zero bias
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
        # channels-last convolutions run about twice as fast on CPU (oneDNN); same results
        self.stages.to(memory_format=torch.channels_last)
        self.fc = _init(nn.Linear(c * h * w, hidden_size), math.sqrt(2))
        self.output_size = hidden_size

    def forward(self, obs):
        x = obs.float() / 255.0 if obs.dtype == torch.uint8 else obs
        x = self.stages(x.contiguous(memory_format=torch.channels_last))
        x = F.relu(x.contiguous().flatten(1))   # flatten in (C, H, W) order
        features = F.relu(self.fc(x))
        return features, features       # shared torso: (actor features, critic features)


class MLPTorso(nn.Module):
    """Separate actor and critic MLPs (DrAC's MLPBase), orthogonal init with gain sqrt(2)."""

    def __init__(self, in_dim: int, hidden=(64, 64), act: str = "tanh"):
        super().__init__()

        def tower():
            layers, width = [], in_dim
            for size in hidden:
                layers += [_init(nn.Linear(width, size), math.sqrt(2)), activation(act)]
                width = size
            return nn.Sequential(*layers)

        self.actor, self.critic = tower(), tower()
        self.output_size = hidden[-1] if hidden else in_dim

    def forward(self, obs):
        return self.actor(obs), self.critic(obs)


class ActorCritic(nn.Module):
    """Torso + categorical actor head (gain 0.01) + linear critic (gain 1)."""

    def __init__(self, torso: nn.Module, num_actions: int):
        super().__init__()
        self.torso = torso
        self.actor = _init(nn.Linear(torso.output_size, num_actions), 0.01)
        self.critic = _init(nn.Linear(torso.output_size, 1), 1.0)

    def forward(self, obs):
        actor_features, critic_features = self.torso(obs)
        return self.actor(actor_features), self.critic(critic_features).squeeze(-1)


def sample_actions(logits: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    probs = torch.softmax(logits.float(), -1)
    uniform = torch.rand(probs.shape[:-1] + (1,), generator=generator,
                         device=generator.device).to(probs.device)
    # inverse-CDF sampling; clamp guards against the last cumulative sum rounding below 1
    actions = (probs.cumsum(-1) < uniform).sum(-1)
    return actions.clamp_(max=probs.shape[-1] - 1)


# ------------------------------------------------------------------------- GAE and returns

def compute_gae(rewards, values, next_values, terminated, ended, gamma: float, lam: float):
    """Generalised advantage estimation over [T, N] tensors (Schulman et al., 2016, Eq. 11-16).

    delta_t = r_t + gamma (1 - terminated_t) V'_t - V(s_t), where V'_t is the value of the state
    after step t (for a time-limit end: the value of the final observation);
    A_t = delta_t + gamma lam (1 - ended_t) A_{t+1}, ended = terminated or truncated.
    """
    advantages = torch.zeros_like(rewards)
    last = torch.zeros_like(rewards[0])
    for t in reversed(range(rewards.shape[0])):
        delta = rewards[t] + gamma * (1.0 - terminated[t]) * next_values[t] - values[t]
        last = delta + gamma * lam * (1.0 - ended[t]) * last
        advantages[t] = last
    return advantages


class RewardNormalizer:
    """baselines' VecNormalize(ob=False) reward path: ret = gamma ret + r; reward / sqrt(Var[ret]
    + 1e-8), clipped; ret = 0 after an episode end. The running statistics persist across
    segments (they are part of the agent's state); `ret` restarts with every new env."""

    def __init__(self, gamma: float = 0.99, clip: float = 10.0, epsilon: float = 1e-8):
        self.gamma, self.clip, self.epsilon = gamma, clip, epsilon
        self.mean, self.var, self.count = 0.0, 1.0, 1e-4
        self.ret = None

    def reset(self, num_envs: int) -> None:
        self.ret = np.zeros(num_envs)

    def _update(self, x: np.ndarray) -> None:   # Chan et al.'s parallel mean/variance update
        batch_mean, batch_var, batch_count = float(x.mean()), float(x.var()), x.size
        delta, total = batch_mean - self.mean, self.count + batch_count
        m2 = self.var * self.count + batch_var * batch_count + delta ** 2 * self.count * \
            batch_count / total
        self.mean, self.var, self.count = self.mean + delta * batch_count / total, m2 / total, total

    def __call__(self, rewards: np.ndarray, dones: np.ndarray) -> np.ndarray:
        self.ret = self.ret * self.gamma + rewards
        self._update(self.ret)
        scaled = np.clip(rewards / np.sqrt(self.var + self.epsilon), -self.clip, self.clip)
        self.ret[dones] = 0.0
        return scaled

    def state_dict(self) -> dict:
        return {"mean": self.mean, "var": self.var, "count": self.count}

    def load_state_dict(self, state: dict) -> None:
        self.mean, self.var, self.count = float(state["mean"]), float(state["var"]), \
            float(state["count"])


# ------------------------------------------------------------------------------ environments

class GymVecEnv:
    """Gymnasium vector env in SAME_STEP autoreset mode (sub-env i seeded seed + i): every step
    is a real transition, the returned observation after an end is the next episode's first,
    and the end's final observation comes back for time-limit bootstrapping."""

    def __init__(self, env_id: str, num_envs: int, seed: int):
        import gymnasium as gym

        from common.envs import check_env_id, make_env

        check_env_id(env_id)
        fns = [partial(make_env, env_id, seed + i) for i in range(num_envs)]
        self.envs = gym.vector.SyncVectorEnv(fns,
                                             autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
        obs_space, act_space = self.envs.single_observation_space, self.envs.single_action_space
        if not isinstance(act_space, gym.spaces.Discrete):
            self.envs.close()
            raise UsageError(f"{env_id}: PPO here needs a discrete action space, got {act_space}")
        if not isinstance(obs_space, gym.spaces.Box) or len(obs_space.shape) != 1:
            self.envs.close()
            raise UsageError(f"{env_id}: PPO here needs a 1-D Box observation (or a Procgen "
                             f"game), got {obs_space}")
        self.num_envs, self.num_actions = num_envs, int(act_space.n)
        self.obs_shape = tuple(obs_space.shape)
        self._returns = np.zeros(num_envs)

    def reset(self) -> np.ndarray:
        self._returns[:] = 0.0
        return self.envs.reset()[0]

    def step(self, actions):
        obs, rewards, terminated, truncated, infos = self.envs.step(np.asarray(actions))
        dones = terminated | truncated
        self._returns += rewards
        finished = [float(self._returns[i]) for i in np.flatnonzero(dones)]
        self._returns[dones] = 0.0
        final = {}
        mask = infos.get("_final_obs")
        if mask is not None:
            final = {int(i): infos["final_obs"][i] for i in np.flatnonzero(mask & truncated
                                                                            & ~terminated)}
        return obs, rewards.astype(np.float32), terminated, truncated, final, finished

    def close(self) -> None:
        self.envs.close()


class _ProcgenSteps:
    """ProcgenVecEnv with GymVecEnv's step signature (every end is terminal, as in DrAC)."""

    def __init__(self, env: ProcgenVecEnv):
        self.env, self.num_envs = env, env.num_envs

    def reset(self):
        return self.env.reset()

    def step(self, actions):
        obs, rewards, dones, finished = self.env.step(actions)
        return obs, rewards, dones, np.zeros_like(dones), {}, finished

    def close(self):
        self.env.close()


# -------------------------------------------------------------------------------------- agent

def _torch_seed(*parts: int) -> int:
    return int(np.random.SeedSequence([int(p) % 2**63 for p in parts]).generate_state(1,
                                                                                 np.uint64)[0])


class PPOAgent:
    """PPO + DrAC on a Procgen game or a gymnasium env with vector observations.

    `train_segment(min_steps, seed)` is a pure function of (state, hyperparameters, seed): the
    env and the segment's random stream are both created from `seed`. Callers should give every
    (agent, round) its own seed.
    """

    def __init__(self, env_id: str, hyperparameters: dict | None = None,
                 config: dict | None = None, seed: int = 0, device="cpu"):
        self.env_id = env_id
        self.procgen = is_procgen(env_id)
        self.config = _check_config(config or {})
        self.seed = int(seed)
        self.device = device if isinstance(device, torch.device) else resolve_device(str(device))
        self.augmentations = PROCGEN_AUGMENTATIONS if self.procgen else VECTOR_AUGMENTATIONS
        self.agent_steps = 0
        self.last_test_steps = 0

        if self.procgen:
            obs_shape, num_actions = ProcgenVecEnv.obs_shape, ProcgenVecEnv.num_actions
        else:   # probe the env once for its spaces (raises a UsageError for a bad id)
            probe = GymVecEnv(env_id, 1, self.seed)
            obs_shape, num_actions = probe.obs_shape, probe.num_actions
            probe.close()
        self.obs_shape, self.num_actions = obs_shape, num_actions

        with torch.random.fork_rng(devices=[]):   # seeded init, global RNG left untouched
            torch.manual_seed(self.seed)
            if self.procgen:
                torso = ImpalaCNN(obs_shape, tuple(self.config["channels"]),
                                  int(self.config["hidden_size"]))
            else:
                torso = MLPTorso(obs_shape[0], tuple(self.config["mlp_hidden"]),
                                 self.config["mlp_activation"])
            self.net = ActorCritic(torso, num_actions).to(self.device)
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=float(self.config["lr"]),
                                          eps=float(self.config["adam_eps"]))
        self.reward_normalizer = RewardNormalizer(float(self.config["reward_norm_gamma"]),
                                                  float(self.config["reward_clip"]))
        self.generator = torch.Generator().manual_seed(_torch_seed(self.seed, 0))
        self.hyperparameters: dict = {}
        initial = {k: self.config[k] for k in HYPERPARAMETERS}
        initial.update(hyperparameters or {})
        self.set_hyperparameters(initial)

    # ------------------------------------------------------------------ hyperparameters

    def set_hyperparameters(self, hp: dict) -> None:
        """Set any of entropy_coef, lr, clip_param, aug_coef, aug_type. The lr is written into
        the optimizer's param groups (the reference forgot this after loading an optimizer
        state, which left lr untuned)."""
        unknown = sorted(set(hp) - set(HYPERPARAMETERS))
        if unknown:
            raise UsageError(f"unknown hyperparameter(s) {', '.join(map(repr, unknown))}; "
                             f"allowed: {', '.join(HYPERPARAMETERS)}")
        new = {**self.hyperparameters, **hp}
        for key in ("entropy_coef", "lr", "clip_param", "aug_coef"):
            new[key] = float(new[key])
            if not math.isfinite(new[key]) or new[key] < 0 or (key in ("lr", "clip_param")
                                                               and new[key] == 0):
                raise UsageError(f"hyperparameter {key} = {new[key]} is out of range "
                                 f"(lr and clip_param > 0, the others >= 0)")
        if new.get("aug_type") is None:
            new["aug_type"] = self.augmentations[0]
        if new["aug_type"] not in self.augmentations:
            raise UsageError(f"aug_type {new['aug_type']!r} does not apply to {self.env_id}; "
                             f"allowed: {', '.join(self.augmentations)}")
        self.hyperparameters = new
        for group in self.optimizer.param_groups:
            group["lr"] = new["lr"]

    # -------------------------------------------------------------------------- envs

    def _make_env(self, seed: int, num_envs: int, test: bool = False):
        c = self.config
        if self.procgen:
            return _ProcgenSteps(ProcgenVecEnv(
                self.env_id, num_envs, seed,
                num_levels=c["test_num_levels"] if test else c["num_levels"],
                start_level=0 if test else c["start_level"],
                distribution_mode=c["distribution_mode"], num_threads=c["procgen_threads"]))
        return GymVecEnv(self.env_id, num_envs, seed)

    def _obs_tensor(self, obs: np.ndarray) -> torch.Tensor:
        tensor = torch.from_numpy(np.asarray(obs))
        if not self.procgen:
            tensor = tensor.float()
        return tensor.to(self.device)

    # ---------------------------------------------------------------------- training

    def train_segment(self, min_steps: int, seed: int) -> dict:
        """PPO iterations until at least `min_steps` env steps (at least one iteration)."""
        if min_steps < 0:
            raise UsageError(f"min_steps must be >= 0, got {min_steps}")
        c = self.config
        n, t_len = int(c["num_envs"]), int(c["num_steps"])
        generator = torch.Generator().manual_seed(_torch_seed(seed, 1))
        env = self._make_env(seed, n)
        try:
            obs = self._obs_tensor(env.reset())
            self.reward_normalizer.reset(n)
            recent, episodes, steps, losses = deque(maxlen=100), 0, 0, []
            while True:
                batch, obs, finished = self._collect(env, obs, t_len, generator)
                recent.extend(finished)
                episodes += len(finished)
                losses.append(self._update(batch, generator))
                steps += n * t_len
                if steps >= min_steps:
                    break
        finally:
            env.close()
        self.agent_steps += steps
        self.generator = generator
        mean_losses = {k: float(np.mean([x[k] for x in losses])) for k in losses[0]}
        # NaN weights still play (softmax of NaN logits picks action 0), so look at them
        diverged = not all(math.isfinite(v) for v in mean_losses.values()) or \
            not all(bool(torch.isfinite(p).all()) for p in self.net.parameters())
        # no episode ended in the segment: no return to report (None, never ranked; not NaN)
        return {"steps": steps, "train_return": float(np.mean(recent)) if recent else None,
                "episodes": episodes, "diverged": diverged, **mean_losses}

    @torch.no_grad()
    def _collect(self, env, obs: torch.Tensor, t_len: int, generator: torch.Generator):
        n = env.num_envs
        dev = self.device
        obs_buf = torch.empty((t_len, n) + tuple(obs.shape[1:]), dtype=obs.dtype, device=dev)
        actions = torch.empty((t_len, n), dtype=torch.long, device=dev)
        logps, values, next_values, rewards, terminated, ended = (
            torch.zeros((t_len, n), device=dev) for _ in range(6))
        finished_all: list[float] = []
        logits, value = self.net(obs)
        for t in range(t_len):
            action = sample_actions(logits, generator)
            obs_buf[t] = obs
            actions[t] = action
            logps[t] = torch.log_softmax(logits, -1).gather(-1, action[:, None])[:, 0]
            values[t] = value
            next_obs, reward, term, trunc, final_obs, finished = env.step(action.cpu().numpy())
            finished_all.extend(finished)
            dones = term | trunc
            if self.config["norm_reward"]:
                reward = self.reward_normalizer(reward.astype(np.float64), dones)
            rewards[t] = torch.as_tensor(reward, dtype=torch.float32, device=dev)
            terminated[t] = torch.as_tensor(term, dtype=torch.float32, device=dev)
            ended[t] = torch.as_tensor(dones, dtype=torch.float32, device=dev)
            obs = self._obs_tensor(next_obs)
            logits, value = self.net(obs)
            next_values[t] = value
            if final_obs:   # time-limit ends: bootstrap from the final observation's value
                index = list(final_obs)
                final = self._obs_tensor(np.stack([final_obs[i] for i in index]))
                next_values[t, index] = self.net(final)[1]
        advantages = compute_gae(rewards, values, next_values, terminated, ended,
                                 float(self.config["gamma"]), float(self.config["gae_lambda"]))
        batch = {"obs": obs_buf.flatten(0, 1), "actions": actions.flatten(), "logps":
                 logps.flatten(), "values": values.flatten(), "advantages": advantages.flatten(),
                 "returns": (advantages + values).flatten()}
        return batch, obs, finished_all

    def _update(self, batch: dict, generator: torch.Generator) -> dict:
        """`epochs` passes over the batch in `minibatches` shuffled minibatches, one Adam step
        each. A minibatch's gradient is accumulated over chunks of at most `chunk_size` samples
        (every loss term is a mean, so each chunk's loss is weighted by its share): the same
        gradient as one pass over the whole minibatch, with a fraction of the memory."""
        c = self.config
        size = batch["actions"].shape[0]
        mb_size = size // int(c["minibatches"])
        chunk = int(c["chunk_size"] or mb_size)
        advantages = batch["advantages"]
        if c["norm_adv"]:
            advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-5)
        stats = {"policy_loss": 0.0, "value_loss": 0.0, "entropy": 0.0, "aug_loss": 0.0}
        updates = 0
        for _ in range(int(c["epochs"])):
            perm = torch.randperm(size, generator=generator).to(self.device)
            for k in range(int(c["minibatches"])):
                self.optimizer.zero_grad(set_to_none=True)
                for idx in perm[k * mb_size:(k + 1) * mb_size].split(chunk):
                    weight = len(idx) / mb_size
                    loss, parts = self._loss(batch, advantages, idx, generator)
                    (loss * weight).backward()
                    for key, value in parts.items():
                        stats[key] += value * weight
                nn.utils.clip_grad_norm_(self.net.parameters(), c["max_grad_norm"])
                self.optimizer.step()
                updates += 1
        return {k: v / updates for k, v in stats.items()}

    def _loss(self, batch: dict, advantages: torch.Tensor, idx: torch.Tensor,
              generator: torch.Generator):
        """The DrAC loss on the samples `idx` (PPO, Schulman et al. 2017, Eq. 9; DrAC Eq. 5-7)."""
        c, hp = self.config, self.hyperparameters
        clip, aug_coef = hp["clip_param"], hp["aug_coef"]
        obs, n = batch["obs"][idx], len(idx)
        if aug_coef > 0:   # one forward pass over [s; aug(s)]
            obs_aug = augment(hp["aug_type"], obs, generator)
            logits_all, values_all = self.net(torch.cat([obs, obs_aug]))
            logits, logits_aug = logits_all[:n], logits_all[n:]
            values, values_aug = values_all[:n], values_all[n:]
        else:
            logits, values = self.net(obs)
        log_probs = torch.log_softmax(logits, -1)
        logp = log_probs.gather(-1, batch["actions"][idx, None])[:, 0]
        entropy = -(log_probs.exp() * log_probs).sum(-1).mean()
        # clipped surrogate
        ratio = torch.exp(logp - batch["logps"][idx])
        adv = advantages[idx]
        policy_loss = -torch.min(ratio * adv, ratio.clamp(1.0 - clip, 1.0 + clip) * adv).mean()
        # value loss, clipped around the rollout's prediction with clip_param (as the reference)
        old_values, returns = batch["values"][idx], batch["returns"][idx]
        value_loss = (values - returns).pow(2)
        if c["clip_value"]:
            clipped = old_values + (values - old_values).clamp(-clip, clip)
            value_loss = torch.max(value_loss, (clipped - returns).pow(2))
        value_loss = 0.5 * value_loss.mean()
        loss = policy_loss + c["value_coef"] * value_loss - hp["entropy_coef"] * entropy
        parts = {"policy_loss": policy_loss.item(), "value_loss": value_loss.item(),
                 "entropy": entropy.item()}
        if aug_coef > 0:
            # DrAC: a ~ pi(.|s) from the current policy (no gradient through the sample);
            # policy term -log pi(a | aug(s)); value term 1/2 (V(s) detached - V(aug(s)))^2
            new_actions = sample_actions(logits.detach(), generator)
            logp_aug = torch.log_softmax(logits_aug, -1).gather(-1, new_actions[:, None])[:, 0]
            aug_loss = -logp_aug.mean() + 0.5 * (values.detach() - values_aug).pow(2).mean()
            loss = loss + aug_coef * aug_loss
            parts["aug_loss"] = aug_loss.item()
        return loss, parts

    # -------------------------------------------------------------------------- testing

    @torch.no_grad()
    def test_return(self, episodes: int, seed: int) -> float:
        """Mean raw return of `episodes` test episodes on the test distribution (Procgen: all
        levels, num_levels = 0), actions sampled from the policy as in the reference (argmax
        with config test_deterministic). Up to test_num_envs envs run side by side, each with a
        fixed quota of episodes, so short episodes are not over-represented. The env steps used
        are in `last_test_steps`."""
        if episodes < 1:
            raise UsageError(f"test episodes must be >= 1, got {episodes}")
        n = min(int(self.config["test_num_envs"]), int(episodes))
        quota = np.full(n, episodes // n) + (np.arange(n) < episodes % n)
        generator = torch.Generator().manual_seed(_torch_seed(seed, 2))
        env = self._make_env(seed, n, test=True)
        returns: list[list[float]] = [[] for _ in range(n)]
        current = np.zeros(n)
        steps = 0
        try:
            obs = self._obs_tensor(env.reset())
            while any(len(r) < q for r, q in zip(returns, quota)):
                logits, _ = self.net(obs)
                if self.config["test_deterministic"]:
                    action = logits.argmax(-1)
                else:
                    action = sample_actions(logits, generator)
                next_obs, reward, term, trunc, _, _ = env.step(action.cpu().numpy())
                steps += n
                current += reward
                for i in np.flatnonzero(term | trunc):
                    if len(returns[i]) < quota[i]:
                        returns[i].append(float(current[i]))
                    current[i] = 0.0
                obs = self._obs_tensor(next_obs)
        finally:
            env.close()
        self.last_test_steps = steps
        return float(np.mean([r for per_env in returns for r in per_env]))

    # ------------------------------------------------------------------------ state

    def state_dict(self) -> dict:
        """Weights, optimizer state, reward-normaliser statistics, agent_steps and RNG state
        (deep copies); not the hyperparameters."""
        return copy.deepcopy({
            "net": self.net.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "reward_normalizer": self.reward_normalizer.state_dict(),
            "agent_steps": self.agent_steps,
            "rng": self.generator.get_state(),
        })

    def load_state_dict(self, state: dict) -> None:
        """Restore a state. The agent keeps its own hyperparameters, so its current lr is
        written back into the optimizer after the loaded optimizer state (which carries the
        source agent's lr); call set_hyperparameters afterwards to apply a new config."""
        self.net.load_state_dict(state["net"])
        self.optimizer.load_state_dict(copy.deepcopy(state["optimizer"]))
        self.reward_normalizer.load_state_dict(state["reward_normalizer"])
        self.agent_steps = int(state["agent_steps"])
        self.generator.set_state(state["rng"].clone())
        for group in self.optimizer.param_groups:
            group["lr"] = self.hyperparameters["lr"]

    def __getstate__(self):
        return {"init": (self.env_id, dict(self.hyperparameters), dict(self.config), self.seed,
                         str(self.device)),
                "state": self.state_dict(), "last_test_steps": self.last_test_steps}

    def __setstate__(self, pickled):
        env_id, hp, config, seed, device = pickled["init"]
        self.__init__(env_id, hp, config, seed, device)
        self.load_state_dict(pickled["state"])
        self.last_test_steps = pickled["last_test_steps"]
