"""PPO on gymnasium MuJoCo (-v5) for the generalisation test of Optim4RL (Lan et al. 2023, Sec. 6):
an optimizer meta-learned on gridworlds trains PPO agents on continuous control, compared with
Adam and RMSProp at the same learning rate.

The algorithm follows the reference's agents/PPO.py, which is Brax's PPO (Schulman et al. 2017,
arXiv 1707.06347) with the optimizer swapped for any optimizer of optimizers.py:

- a tanh-Gaussian policy MLP (4 x 32) and a value MLP (5 x 256), swish activations, lecun-uniform
  kernels, zero biases (reference components/ppo_networks.py = brax make_ppo_networks);
- observations normalised with running statistics, updated once per training step with the
  whole batch before the SGD epochs (brax running_statistics);
- each training step collects batch_size * num_minibatches sequences of rollout_steps steps;
  update_epochs passes over them in num_minibatches shuffled minibatches of batch_size sequences;
- the loss is recomputed per minibatch with the current value network: Brax's GAE(lambda) on
  rewards * reward_scaling, advantages normalised per minibatch, the clipped surrogate, value loss
  0.25 * MSE and an entropy bonus (reference components/losses.py).

The policy and value parameters form ONE stacked Params dict (name -> [A, ...], A = 1) that the
optimizer steps as a whole, so the classical optimizers and a learned one (Optim4RL loaded from
param_load_path) are interchangeable.

Differences from the reference, for CPU and gymnasium (see run_ppo for the config keys):
- gymnasium envs, stepped `num_envs` at a time (SyncVectorEnv, same-step autoreset), instead of
  thousands of Brax envs on an accelerator; the CPU configs use smaller batches;
- a truncated (time-limit) step is bootstrapped from the value of its final observation, which
  gymnasium provides; Brax has no final observation and masks such steps out of the loss;
- tanh actions are mapped linearly onto the action space's bounds (Humanoid-v5: +-0.4,
  InvertedPendulum-v5: +-3), where Brax's envs all take [-1, 1];
- evaluation runs `eval_episodes` greedy (tanh of the mean) episodes on one env seeded seed + 100;
  the reference's evaluator samples actions in 128 envs.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Dict, Sequence

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from common.cli import UsageError
from common.envs import StepCounter, make_env
from common.runs import require_finite
from optim4rl import logs
from optim4rl.optimizers import make_optimizer

Params = Dict[str, Tensor]

# The reference's Brax task names -> the gymnasium MuJoCo task that plays the same role.
BRAX_TO_GYM = {
    "ant": "Ant-v5", "halfcheetah": "HalfCheetah-v5", "hopper": "Hopper-v5",
    "humanoid": "Humanoid-v5", "humanoidstandup": "HumanoidStandup-v5",
    "inverted_pendulum": "InvertedPendulum-v5", "inverted_double_pendulum": "InvertedDoublePendulum-v5",
    "pusher": "Pusher-v5", "reacher": "Reacher-v5", "swimmer": "Swimmer-v5", "walker2d": "Walker2d-v5",
}
MUJOCO_IDS = tuple(sorted(set(BRAX_TO_GYM.values())))

ENV_KEYS = ("name", "train_steps", "episode_length", "action_repeat", "reward_scaling", "num_envs",
            "num_evals", "eval_every", "eval_episodes", "normalize_obs")
AGENT_KEYS = ("name", "gae_lambda", "rollout_steps", "num_minibatches", "clipping_epsilon", "clip_ratio",
              "update_epochs", "entropy_weight", "policy_hidden_sizes", "value_hidden_sizes")
MIN_STD = 0.001          # brax NormalTanhDistribution: scale = softplus(.) + min_std
LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


# ---------------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------------

def resolve_env_id(name) -> str:
    """A gymnasium MuJoCo -v5 id, given one or a reference (Brax) name; UsageError otherwise."""
    if isinstance(name, (list, tuple)):
        if len(name) != 1:
            raise UsageError(f"PPO trains on one env at a time, got env.name {list(name)!r}")
        name = name[0]
    if name in MUJOCO_IDS:
        return name
    if str(name).lower() in BRAX_TO_GYM:
        return BRAX_TO_GYM[str(name).lower()]
    raise UsageError(f"unknown PPO env {name!r}; allowed: {', '.join(MUJOCO_IDS)} "
                     f"or the reference names {', '.join(BRAX_TO_GYM)}")


@dataclass
class PPOSettings:
    env_id: str
    train_steps: int
    episode_length: int = 1000
    reward_scaling: float = 1.0
    num_envs: int = 8
    eval_every: int = 0
    eval_episodes: int = 5
    normalize_obs: bool = True
    discount: float = 0.97
    gae_lambda: float = 0.95
    rollout_steps: int = 5
    batch_size: int = 32
    num_minibatches: int = 8
    clip_epsilon: float = 0.3
    update_epochs: int = 4
    entropy_weight: float = 1e-2
    policy_hidden: tuple = (32,) * 4
    value_hidden: tuple = (256,) * 5

    @property
    def unrolls_per_env(self) -> int:
        """Sequences each env contributes per training step (reference: batch * minibatches / envs)."""
        return self.batch_size * self.num_minibatches // self.num_envs

    @property
    def steps_per_iteration(self) -> int:
        return self.batch_size * self.num_minibatches * self.rollout_steps


def _check_keys(section: dict, allowed: Sequence[str], where: str) -> None:
    unknown = sorted(set(section) - set(allowed))
    if unknown:
        raise UsageError(f"unknown key(s) {', '.join(unknown)} in '{where}' of a PPO config; "
                         f"allowed: {', '.join(allowed)}")


def ppo_settings(cfg: dict) -> PPOSettings:
    """Read the reference's config keys (env, agent, batch_size, discount); check them."""
    env, agent = cfg["env"], cfg["agent"]
    _check_keys(env, ENV_KEYS, "env")
    _check_keys(agent, AGENT_KEYS, "agent")
    if int(env.get("action_repeat", 1)) != 1:
        raise UsageError(f"env.action_repeat must be 1 (gymnasium MuJoCo), got {env['action_repeat']}")
    train_steps = int(env.get("train_steps", 0))
    if train_steps <= 0:
        raise UsageError(f"env.train_steps must be a positive number of env steps, got {env.get('train_steps')}")
    num_evals = int(env.get("num_evals", 10))     # reference: evaluations over the run
    s = PPOSettings(
        env_id=resolve_env_id(env["name"]), train_steps=train_steps,
        episode_length=int(env.get("episode_length", 1000)), reward_scaling=float(env.get("reward_scaling", 1.0)),
        num_envs=int(env.get("num_envs", 8)),
        eval_every=int(env.get("eval_every", train_steps // max(num_evals, 1))),
        eval_episodes=int(env.get("eval_episodes", 5)), normalize_obs=bool(env.get("normalize_obs", True)),
        discount=float(cfg.get("discount", 0.97)), gae_lambda=float(agent.get("gae_lambda", 0.95)),
        rollout_steps=int(agent.get("rollout_steps", 5)), batch_size=int(cfg.get("batch_size", 32)),
        num_minibatches=int(agent.get("num_minibatches", 8)),
        clip_epsilon=float(agent.get("clipping_epsilon", agent.get("clip_ratio", 0.3))),
        update_epochs=int(agent.get("update_epochs", 4)), entropy_weight=float(agent.get("entropy_weight", 1e-2)),
        policy_hidden=tuple(int(h) for h in agent.get("policy_hidden_sizes", (32,) * 4)),
        value_hidden=tuple(int(h) for h in agent.get("value_hidden_sizes", (256,) * 5)))
    for field in ("num_envs", "rollout_steps", "batch_size", "num_minibatches", "update_epochs",
                  "eval_episodes", "episode_length"):
        if getattr(s, field) < 1:
            raise UsageError(f"PPO {field} must be a positive integer, got {getattr(s, field)}")
    if (s.batch_size * s.num_minibatches) % s.num_envs:
        raise UsageError(f"batch_size * num_minibatches ({s.batch_size} * {s.num_minibatches}) must be "
                         f"a multiple of num_envs ({s.num_envs}), as in the reference")
    s.eval_every = max(s.eval_every, 1)
    return s


def ppo_optimizer(cfg: dict, seed: int):
    """The agent's optimizer from agent_optimizer (or the older reference's optimizer / optim)
    section: name and kwargs (learning_rate, gradient_clip or grad_clip, param_load_path, ...)."""
    section = next((cfg[k] for k in ("agent_optimizer", "agent_optim", "optimizer", "optim") if k in cfg), None)
    if section is None:
        raise UsageError("PPO config has no 'agent_optimizer' section (name and kwargs)")
    kwargs = dict(section.get("kwargs", {}))
    if "gradient_clip" in kwargs:
        kwargs["grad_clip"] = kwargs.pop("gradient_clip")
    lr = kwargs.pop("learning_rate", 3e-4)
    path = kwargs.pop("param_load_path", "") or ""   # main.py resolved a `logs/...` path against --logs-root
    if path and section["name"] not in ("Adam", "RMSProp", "SGD"):
        if not Path(path).is_file():
            raise UsageError(f"param_load_path {path} does not exist (run the meta-training config first)")
        kwargs["param_load_path"] = path
    return make_optimizer(section["name"], lr, seed=seed, **kwargs)


# ---------------------------------------------------------------------------------------------
# Networks: stacked MLPs (brax networks.MLP) and the tanh-Gaussian policy
# ---------------------------------------------------------------------------------------------

def init_mlp(prefix: str, sizes: Sequence[int], generator: torch.Generator, agents: int = 1) -> Params:
    """Layers sizes[i] -> sizes[i+1]: kernels lecun-uniform (U(+-sqrt(3 / fan_in))), biases 0,
    each stacked on a population axis [A, ...]."""
    params = {}
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        limit = math.sqrt(3.0 / n_in)
        w = torch.empty(agents, n_in, n_out).uniform_(-limit, limit, generator=generator)
        params[f"{prefix}.{i}.weight"] = w
        params[f"{prefix}.{i}.bias"] = torch.zeros(agents, n_out)
    return params


def mlp(params: Params, prefix: str, x: Tensor) -> Tensor:
    """x [N, D] -> [A, N, out]; swish between layers, none after the last (brax MLP)."""
    layers = sum(1 for k in params if k.startswith(prefix + ".") and k.endswith(".weight"))
    h = x.expand(params[f"{prefix}.0.weight"].shape[0], *x.shape)
    for i in range(layers):
        h = torch.baddbmm(params[f"{prefix}.{i}.bias"].unsqueeze(1), h, params[f"{prefix}.{i}.weight"])
        if i < layers - 1:
            h = F.silu(h)
    return h


def init_ppo_params(obs_size: int, action_size: int, s: PPOSettings, generator: torch.Generator) -> Params:
    """One Params dict: the policy (outputs loc and pre-softplus scale) and the value network."""
    params = init_mlp("policy", (obs_size, *s.policy_hidden, 2 * action_size), generator)
    params.update(init_mlp("value", (obs_size, *s.value_hidden, 1), generator))
    return params


def policy_dist(params: Params, obs: Tensor) -> tuple[Tensor, Tensor]:
    """(loc, scale) of the pre-tanh Gaussian, A = 1 squeezed: scale = softplus(.) + 0.001."""
    loc, raw_scale = mlp(params, "policy", obs)[0].chunk(2, dim=-1)
    return loc, F.softplus(raw_scale) + MIN_STD


def value_fn(params: Params, obs: Tensor) -> Tensor:
    return mlp(params, "value", obs)[0, ..., 0]


def tanh_log_det_jacobian(x: Tensor) -> Tensor:
    """log |d tanh(x) / dx| = 2 (log 2 - x - softplus(-2x)), numerically stable."""
    return 2.0 * (math.log(2.0) - x - F.softplus(-2.0 * x))


def tanh_gaussian_log_prob(loc: Tensor, scale: Tensor, raw: Tensor) -> Tensor:
    """log pi(tanh(raw)) = sum over dims of log N(raw; loc, scale) - log|tanh'(raw)|."""
    normal = -0.5 * ((raw - loc) / scale) ** 2 - scale.log() - LOG_SQRT_2PI
    return (normal - tanh_log_det_jacobian(raw)).sum(-1)


def tanh_gaussian_entropy(loc: Tensor, scale: Tensor, generator: torch.Generator) -> Tensor:
    """brax NormalTanhDistribution.entropy: the Gaussian's entropy plus log|tanh'| at one
    reparameterised sample, summed over action dims."""
    sample = loc + scale * torch.randn(loc.shape, generator=generator)
    return (0.5 + LOG_SQRT_2PI + scale.log() + tanh_log_det_jacobian(sample)).sum(-1)


# ---------------------------------------------------------------------------------------------
# Observation normalisation (running statistics)
# ---------------------------------------------------------------------------------------------

class RunningNorm:
    """Running mean and std of observations over every batch seen (Chan et al.'s parallel
    update, as brax running_statistics); normalise(x) = (x - mean) / std, std clipped to
    [1e-6, 1e6]. Starts as the identity (mean 0, std 1); disabled when enabled=False."""

    def __init__(self, size: int, enabled: bool = True):
        self.enabled = enabled
        self.count = 0
        self.mean = torch.zeros(size, dtype=torch.float64)
        self.summed_var = torch.zeros(size, dtype=torch.float64)
        self.std = torch.ones(size, dtype=torch.float64)
        self._mean32, self._std32 = self.mean.float(), self.std.float()

    def update(self, x: Tensor) -> None:
        x = x.reshape(-1, self.mean.shape[0]).double()
        self.count += x.shape[0]
        diff_old = x - self.mean
        self.mean = self.mean + diff_old.sum(0) / self.count
        self.summed_var = (self.summed_var + (diff_old * (x - self.mean)).sum(0)).clamp(min=0.0)
        self.std = (self.summed_var / self.count).sqrt().clamp(1e-6, 1e6)
        self._mean32, self._std32 = self.mean.float(), self.std.float()

    def __call__(self, x: Tensor) -> Tensor:
        return (x - self._mean32) / self._std32 if self.enabled else x


# ---------------------------------------------------------------------------------------------
# Advantages and the PPO loss (Schulman et al. 2017, Eq. 7; reference components/losses.py)
# ---------------------------------------------------------------------------------------------

def compute_gae(rewards: Tensor, values: Tensor, next_values: Tensor, terminated: Tensor,
                truncated: Tensor, discount: float, gae_lambda: float) -> tuple[Tensor, Tensor]:
    """Brax's GAE over time-first [L, B] tensors. next_values[t] is V of the observation that
    followed step t (for a truncated step: its final observation; for the last step: the
    bootstrap). Termination stops bootstrapping; any episode end (terminated or truncated)
    cuts the lambda-chain.

        delta_t = r_t + gamma (1 - term_t) V(s'_t) - V(s_t)
        vs_t    = V(s_t) + delta_t + gamma lambda (1 - done_t) (vs_{t+1} - V(s_{t+1}))
        A_t     = r_t + gamma (1 - term_t) vs'_t - V(s_t),   vs'_t = vs_{t+1}, or V(s'_t) after an end

    Returns (vs, A): the value targets and the advantages, without gradient."""
    rewards, values, next_values = rewards.detach(), values.detach(), next_values.detach()
    not_term = 1.0 - terminated.float()
    not_done = not_term * (1.0 - truncated.float())
    deltas = rewards + discount * not_term * next_values - values
    acc = torch.zeros_like(values[0])
    vs_minus_v = torch.empty_like(values)
    for t in range(values.shape[0] - 1, -1, -1):
        acc = deltas[t] + discount * gae_lambda * not_done[t] * acc
        vs_minus_v[t] = acc
    vs = vs_minus_v + values
    next_vs = torch.cat([vs[1:], next_values[-1:]])
    next_vs = torch.where(not_done > 0, next_vs, next_values)     # no vs across an episode end
    advantages = rewards + discount * not_term * next_vs - values
    return vs, advantages


def clipped_surrogate_loss(ratio: Tensor, advantages: Tensor, clip_epsilon: float) -> Tensor:
    """-E[min(r A, clip(r, 1 - eps, 1 + eps) A)] (Schulman et al. 2017, Eq. 7)."""
    clipped = ratio.clamp(1.0 - clip_epsilon, 1.0 + clip_epsilon)
    return -torch.minimum(ratio * advantages, clipped * advantages).mean()


def successor_values(params: Params, values: Tensor, batch: Dict[str, Tensor], norm: RunningNorm) -> Tensor:
    """V of each step's successor [B, L], without gradient: V(s_{t+1}) from `values` inside a
    sequence, V(next_obs) at the last step (the bootstrap) and after a truncation (the final
    observation; after a termination the value is unused)."""
    with torch.no_grad():
        next_values = torch.cat([values[:, 1:], value_fn(params, norm(batch["next_obs"][:, -1]))[:, None]], 1)
        cut = batch["truncated"][:, :-1] & ~batch["terminated"][:, :-1]
        if cut.any():
            next_values[:, :-1][cut] = value_fn(params, norm(batch["next_obs"][:, :-1][cut]))
    return next_values


def ppo_loss(params: Params, batch: Dict[str, Tensor], norm: RunningNorm, s: PPOSettings,
             generator: torch.Generator) -> tuple[Tensor, dict]:
    """The reference's PPO loss on a minibatch of sequences [B, L, ...]: policy + value + entropy."""
    b, length, d = batch["obs"].shape
    obs = norm(batch["obs"]).reshape(b * length, d)
    loc, scale = policy_dist(params, obs)
    log_prob = tanh_gaussian_log_prob(loc, scale, batch["raw_action"].reshape(b * length, -1))
    values = value_fn(params, obs).reshape(b, length)
    next_values = successor_values(params, values, batch, norm)
    vs, adv = compute_gae((batch["reward"] * s.reward_scaling).t(), values.t(), next_values.t(),
                          batch["terminated"].t(), batch["truncated"].t(), s.discount, s.gae_lambda)
    adv = (adv - adv.mean()) / (adv.std(unbiased=False) + 1e-8)      # normalize_advantage=True
    ratio = torch.exp(log_prob.reshape(b, length).t() - batch["log_prob"].t())
    policy_loss = clipped_surrogate_loss(ratio, adv, s.clip_epsilon)
    value_loss = 0.5 * 0.5 * (vs - values.t()).square().mean()
    entropy = tanh_gaussian_entropy(loc, scale, generator).mean()
    loss = policy_loss + value_loss - s.entropy_weight * entropy
    return loss, {"policy_loss": policy_loss.item(), "value_loss": value_loss.item(), "entropy": entropy.item()}


# ---------------------------------------------------------------------------------------------
# Acting: rollouts and greedy evaluation
# ---------------------------------------------------------------------------------------------

def to_env_action(squashed: Tensor, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """tanh output in [-1, 1] -> the action space's box."""
    return low + (squashed.numpy().astype(np.float64) + 1.0) * 0.5 * (high - low)


def make_train_envs(s: PPOSettings, seed: int, counter: StepCounter) -> gym.vector.VectorEnv:
    """num_envs envs seeded seed + i, autoreset in the same step (the final observation of an
    ended episode comes in info['final_obs']); every env step is added to `counter`."""
    fns = [partial(make_env, s.env_id, seed + i, counter, max_episode_steps=s.episode_length)
           for i in range(s.num_envs)]
    return gym.vector.SyncVectorEnv(fns, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)


def collect_rollout(envs, obs: np.ndarray, params: Params, norm: RunningNorm, s: PPOSettings,
                    generator: torch.Generator) -> tuple[Dict[str, Tensor], np.ndarray]:
    """unrolls_per_env * rollout_steps steps of every env with the sampling policy; returns the
    data as batch_size * num_minibatches sequences [S, L, ...] and the observation to continue from."""
    steps, e = s.unrolls_per_env * s.rollout_steps, s.num_envs
    low, high = envs.single_action_space.low.astype(np.float64), envs.single_action_space.high.astype(np.float64)
    d, k = obs.shape[-1], low.shape[0]
    data = {"obs": np.empty((steps, e, d), np.float32), "next_obs": np.empty((steps, e, d), np.float32),
            "raw_action": np.empty((steps, e, k), np.float32), "log_prob": np.empty((steps, e), np.float32),
            "reward": np.empty((steps, e), np.float32), "terminated": np.empty((steps, e), bool),
            "truncated": np.empty((steps, e), bool)}
    for t in range(steps):
        with torch.no_grad():
            loc, scale = policy_dist(params, norm(torch.from_numpy(obs)))
            raw = loc + scale * torch.randn(loc.shape, generator=generator)
            log_prob = tanh_gaussian_log_prob(loc, scale, raw)
        next_obs, reward, terminated, truncated, info = envs.step(to_env_action(torch.tanh(raw), low, high))
        data["obs"][t], data["raw_action"][t], data["log_prob"][t] = obs, raw.numpy(), log_prob.numpy()
        data["reward"][t], data["terminated"][t], data["truncated"][t] = reward, terminated, truncated
        data["next_obs"][t] = next_obs
        for i in np.flatnonzero(info.get("_final_obs", ())):        # the true successor of an end
            data["next_obs"][t, i] = info["final_obs"][i]
        obs = next_obs
    # [U * L, E, ...] -> [U, L, E, ...] -> [U, E, L, ...] -> sequences [U * E, L, ...]
    def sequences(x):
        x = torch.from_numpy(x).reshape(s.unrolls_per_env, s.rollout_steps, e, *x.shape[2:])
        return x.transpose(1, 2).reshape(s.unrolls_per_env * e, s.rollout_steps, *x.shape[3:])
    return {key: sequences(x) for key, x in data.items()}, obs


def evaluate(env: gym.Env, params: Params, norm: RunningNorm, episodes: int, counter: StepCounter) -> float:
    """Mean undiscounted return of `episodes` greedy episodes (action tanh(loc))."""
    low, high = env.action_space.low.astype(np.float64), env.action_space.high.astype(np.float64)
    returns = []
    for _ in range(episodes):
        obs, _ = env.reset()
        total, done = 0.0, False
        while not done:
            with torch.no_grad():
                loc, _ = policy_dist(params, norm(torch.from_numpy(obs)[None]))
            obs, reward, terminated, truncated, _ = env.step(to_env_action(torch.tanh(loc[0]), low, high))
            counter.add(1)
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    return float(np.mean(returns))


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------

def sgd_epochs(params: Params, opt, opt_state, data: Dict[str, Tensor], norm: RunningNorm, s: PPOSettings,
               generator: torch.Generator) -> tuple[Params, object, dict]:
    """update_epochs passes; each shuffles the sequences into num_minibatches minibatches and
    takes one optimizer step per minibatch: theta <- theta + Opt(grad)."""
    info = {}
    for _ in range(s.update_epochs):
        order = torch.randperm(data["obs"].shape[0], generator=generator)
        for idx in order.reshape(s.num_minibatches, s.batch_size):
            batch = {k: v[idx] for k, v in data.items()}
            leaf = {k: v.requires_grad_(True) for k, v in params.items()}
            loss, info = ppo_loss(leaf, batch, norm, s, generator)
            require_finite("the PPO loss", loss.detach())
            grads = dict(zip(leaf, torch.autograd.grad(loss, list(leaf.values()))))
            with torch.no_grad():
                updates, opt_state = opt.update(grads, opt_state)
                params = {k: (v + updates[k]).detach() for k, v in params.items()}
    return params, opt_state, info


def run_ppo(cfg: dict, log_dir: Path, logger) -> list[dict]:
    """Train PPO with the config's optimizer; evaluate greedily at step 0 and every `eval_every`
    training env steps (default train_steps / num_evals, num_evals default 10) and at the end.

    Config keys (reference names): env.{name, train_steps, episode_length, action_repeat (1),
    reward_scaling, num_envs, num_evals, eval_every, eval_episodes, normalize_obs},
    agent.{gae_lambda, rollout_steps, num_minibatches, clipping_epsilon | clip_ratio,
    update_epochs, entropy_weight, policy_hidden_sizes, value_hidden_sizes}, batch_size, discount,
    seed, agent_optimizer.{name, kwargs}. Returns rows {Env, Agent, Step, Return}; Step counts
    every training env step (evaluation steps are logged as test_steps)."""
    torch.set_num_threads(1)
    s, seed = ppo_settings(cfg), int(cfg["seed"])
    log_dir = Path(log_dir)
    opt = ppo_optimizer(cfg, seed)
    generator = torch.Generator().manual_seed(seed)
    counter, test_counter = StepCounter(), StepCounter()
    envs = make_train_envs(s, seed, counter)
    eval_env = make_env(s.env_id, seed + 100, max_episode_steps=s.episode_length)
    obs_size, action_size = envs.single_observation_space.shape[0], envs.single_action_space.shape[0]
    params = init_ppo_params(obs_size, action_size, s, generator)
    opt_state = opt.init(params)
    norm = RunningNorm(obs_size, s.normalize_obs)
    iterations = max(1, s.train_steps // s.steps_per_iteration)
    logger.info(f"<{cfg.get('config_idx', 1)}> PPO on {s.env_id} with {opt.name} (lr {opt.learning_rate}): "
                f"{iterations} iterations x {s.steps_per_iteration} env steps")
    rows, start = [], time.time()
    result_path = logs.result_file(log_dir, s.env_id)

    def record(info: dict) -> None:
        ret = evaluate(eval_env, params, norm, s.eval_episodes, test_counter)
        rows.append({"Env": s.env_id, "Agent": "PPO", "Step": counter.count, "Return": ret,
                     "test_steps": test_counter.count})
        logs.write_results_csv(result_path, [{k: r[k] for k in logs.RESULT_COLUMNS} for r in rows])
        speed = counter.count / max(time.time() - start, 1e-9)
        extra = "".join(f" {k}={v:.4g}" for k, v in info.items())
        logger.info(f"<{cfg.get('config_idx', 1)}> Step {counter.count}/{iterations * s.steps_per_iteration}: "
                    f"Return={ret:.2f} test_steps={test_counter.count}{extra} Speed={speed:.0f} (steps/s)")

    obs, _ = envs.reset()
    record({})
    next_eval = s.eval_every
    for _ in range(iterations):
        data, obs = collect_rollout(envs, obs, params, norm, s, generator)
        norm.update(data["obs"])               # reference: statistics updated before the SGD steps
        params, opt_state, info = sgd_epochs(params, opt, opt_state, data, norm, s, generator)
        if counter.count >= next_eval:
            record(info)
            while next_eval <= counter.count:
                next_eval += s.eval_every
    if rows[-1]["Step"] != counter.count:
        record(info)
    envs.close()
    eval_env.close()
    return rows
