"""A2C for a population of agents whose parameters are stacked tensors (Lan et al. 2023, Sec. 6;
reference agents/A2C.py, components/network.py). Every parameter tensor has a leading agent axis
A, so one forward/backward pass over the whole population gives every agent's own gradient, which
is what MetaA2C needs (A agents, one env each) and what plain A2C uses with A = 1 (one agent,
many envs, gradients averaged over them).

Shapes: observations [A, E, C, H, W] (A agents, E envs each), logits [A, E, n_actions],
values [A, E]; a rollout stacks T steps in front.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F

from common.runs import require_finite

Params = dict[str, torch.Tensor]


# -- the actor-critic network, functional over stacked parameters -----------------------------
def feature_net_kind(env_name: str) -> str:
    """The reference's torso per env: catch D256, small gridworlds D32, big gridworlds C16-D32."""
    if env_name == "catch":
        return "d256"
    if env_name.startswith("small"):
        return "d32"
    if env_name.startswith("big"):
        return "c16_d32"
    raise ValueError(f"no actor-critic torso for env {env_name!r}")


# How the big maps' 2x2 convolution reads a (K+1, H, W) board:
#   reference  as the reference's flax Conv (channels last) does: the board is an image of
#              (K+1) x H positions with W input channels, so the kernel slides over object
#              channel and row; flattened to (K+1)*H*16 features
#   spatial    over the H x W grid with K+1 input channels; flattened to 16*H*W features
BIG_MAP_TORSOS = ("reference", "spatial")


def _lecun_normal(generator, agents: int, fan_in: int, *shape: int) -> torch.Tensor:
    """flax's default kernel init (variance 1/fan_in, truncated normal at 2 sd)."""
    std = 1.0 / math.sqrt(fan_in) / 0.87962566103423978  # flax's truncation correction
    weight = torch.empty(agents, *shape)
    torch.nn.init.trunc_normal_(weight, 0.0, 1.0, -2.0, 2.0, generator=generator)
    return weight * std


def init_actor_critic(env_name: str, obs_shape: tuple[int, int, int], num_actions: int,
                      agents: int, generator: torch.Generator, big_map_torso: str = "reference",
                      device: torch.device | str = "cpu") -> Params:
    """Fresh parameters for `agents` independent actor-critics (flax init: lecun-normal kernels,
    zero biases), drawn on the CPU from `generator` (so every device starts from the same θ) and
    moved to `device`. `big_map_torso` (BIG_MAP_TORSOS) chooses the big maps' convolution."""
    channels, height, width = obs_shape
    kind = feature_net_kind(env_name)
    params: Params = {}
    if kind == "c16_d32":
        if big_map_torso not in BIG_MAP_TORSOS:
            raise ValueError(f"big_map_torso must be one of {BIG_MAP_TORSOS}, got {big_map_torso!r}")
        prefix, in_channels = ("conv", width) if big_map_torso == "reference" else ("conv_hw", channels)
        params[f"{prefix}.weight"] = _lecun_normal(generator, agents, in_channels * 4, 16, in_channels, 2, 2)
        params[f"{prefix}.bias"] = torch.zeros(agents, 16)
        flat = 16 * channels * height if big_map_torso == "reference" else 16 * height * width  # 'SAME' padding
    else:
        flat = channels * height * width
    hidden = 256 if kind == "d256" else 32
    params["dense.weight"] = _lecun_normal(generator, agents, flat, flat, hidden)
    params["dense.bias"] = torch.zeros(agents, 1, hidden)
    params["actor.weight"] = _lecun_normal(generator, agents, hidden, hidden, num_actions)
    params["actor.bias"] = torch.zeros(agents, 1, num_actions)
    params["critic.weight"] = _lecun_normal(generator, agents, hidden, hidden, 1)
    params["critic.bias"] = torch.zeros(agents, 1, 1)
    return {name: tensor.to(device) for name, tensor in params.items()}


def _conv_same_2x2(weight: torch.Tensor, bias: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Each agent's 2x2 convolution with 'SAME' padding (flax pads one row/column at the end),
    all agents at once as a grouped convolution: [A, E, Cin, P, Q] -> [A, E, 16, P, Q]."""
    agents, envs, channels, rows, cols = x.shape
    x = x.permute(1, 0, 2, 3, 4).reshape(envs, agents * channels, rows, cols)
    x = F.pad(x, (0, 1, 0, 1))
    y = F.conv2d(x, weight.reshape(agents * 16, channels, 2, 2), bias.reshape(-1), groups=agents)
    return y.reshape(envs, agents, 16, rows, cols).permute(1, 0, 2, 3, 4)


def actor_critic(params: Params, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """obs [A, E, C, H, W] -> action logits [A, E, n_actions], state values [A, E]."""
    if "conv.weight" in params:         # the reference's layout: positions (C, H), channels W
        h = _conv_same_2x2(params["conv.weight"], params["conv.bias"], obs.permute(0, 1, 4, 2, 3))
        obs = F.relu(h).permute(0, 1, 3, 4, 2)                             # [A, E, C, H, 16]
    elif "conv_hw.weight" in params:    # positions (H, W), channels C
        obs = F.relu(_conv_same_2x2(params["conv_hw.weight"], params["conv_hw.bias"], obs))
    x = obs.flatten(2)                                                     # [A, E, features]
    phi = F.relu(torch.baddbmm(params["dense.bias"], x, params["dense.weight"]))
    logits = torch.baddbmm(params["actor.bias"], phi, params["actor.weight"])
    value = torch.baddbmm(params["critic.bias"], phi, params["critic.weight"]).squeeze(-1)
    return logits, value


# -- rollouts and the A2C loss ----------------------------------------------------------------
class Rollout(NamedTuple):
    obs: torch.Tensor        # [T+1, A, E, C, H, W]: the T observations acted on, then the last one
    actions: torch.Tensor    # [T, A, E]
    rewards: torch.Tensor    # [T, A, E]
    dones: torch.Tensor      # [T, A, E] 1.0 where the episode ended at that step


@torch.no_grad()
def collect_rollout(params: Params, env, obs: torch.Tensor, steps: int,
                    generator: torch.Generator) -> tuple[Rollout, torch.Tensor]:
    """Act for `steps` steps with each agent's own policy on its own envs (actions sampled from
    the softmax; env.step works on the flat A*E batch). Returns the rollout and the next obs."""
    agents, envs = obs.shape[:2]
    observations, actions, rewards, dones = [obs], [], [], []
    for _ in range(steps):
        logits, _ = actor_critic(params, obs)
        probs = torch.softmax(logits, -1).reshape(agents * envs, -1)
        try:
            action = torch.multinomial(probs, 1, generator=generator).squeeze(-1)
        except RuntimeError:   # weights blown up by an optimizer step: NaN / inf probabilities
            require_finite("an action probability of the policy", probs)   # -> Diverged
            raise
        flat_obs, reward, done = env.step(action)
        obs = flat_obs.reshape(agents, envs, *flat_obs.shape[1:])
        observations.append(obs)
        actions.append(action.reshape(agents, envs))
        rewards.append(reward.reshape(agents, envs))
        dones.append(done.reshape(agents, envs).float())
    return Rollout(torch.stack(observations), torch.stack(actions), torch.stack(rewards),
                   torch.stack(dones)), obs


def td_lambda_errors(values: torch.Tensor, rewards: torch.Tensor, discounts: torch.Tensor,
                     lam: float) -> torch.Tensor:
    """λ-return minus V (rlax.td_lambda): G_t = r_t + γ_t((1−λ)V(s_{t+1}) + λG_{t+1}), G_T's tail
    bootstraps on V(s_T). `values` [T+1, ...] (targets detached), returns [T, ...]."""
    next_values = values[1:].detach()
    returns = torch.empty_like(rewards)
    carry = next_values[-1]
    for t in reversed(range(rewards.shape[0])):
        carry = rewards[t] + discounts[t] * ((1.0 - lam) * next_values[t] + lam * carry)
        returns[t] = carry
    return returns - values[:-1]


def a2c_loss(params: Params, rollout: Rollout, discount: float, gae_lambda: float,
             critic_weight: float, entropy_weight: float) -> torch.Tensor:
    """Each agent's A2C loss, averaged over its envs and steps (reference compute_agent_loss):
    −log π(a)·stop(δ^λ) + critic_weight·(δ^λ)² − entropy_weight·H(π). Returns [A]."""
    steps, agents, envs = rollout.actions.shape
    obs = rollout.obs.permute(1, 0, 2, 3, 4, 5).reshape(agents, (steps + 1) * envs, *rollout.obs.shape[3:])
    logits, values = actor_critic(params, obs)
    logits = logits.reshape(agents, steps + 1, envs, -1).transpose(0, 1)    # [T+1, A, E, n]
    values = values.reshape(agents, steps + 1, envs).transpose(0, 1)        # [T+1, A, E]
    td = td_lambda_errors(values, rollout.rewards, discount * (1.0 - rollout.dones), gae_lambda)
    log_probs = torch.log_softmax(logits[:-1], -1)
    chosen = log_probs.gather(-1, rollout.actions.unsqueeze(-1)).squeeze(-1)
    actor = -(chosen * td.detach()).mean((0, 2))
    critic = critic_weight * (td ** 2).mean((0, 2))
    entropy = -(log_probs.exp() * log_probs).sum(-1).mean((0, 2))
    return actor + critic - entropy_weight * entropy


def episode_returns(rollout: Rollout, running: torch.Tensor) -> tuple[list[float], torch.Tensor]:
    """Returns of the episodes that ended in this rollout, and the running (unfinished) returns
    to carry into the next one (`running` [A, E])."""
    finished = []
    for reward, done in zip(rollout.rewards, rollout.dones):
        running = running + reward
        ended = done.bool()
        if ended.any():
            finished.extend(running[ended].tolist())
        running = torch.where(ended, torch.zeros_like(running), running)
    return finished, running
