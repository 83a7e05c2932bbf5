"""Plain A2C training with any optimizer of `optimizers.py` (reference agents/A2C.py and
agents/CollectA2C.py): one agent, `num_envs` envs, the gradient averaged over them. Used for the
classical-optimizer benchmark (`*_a2c.json`), for testing a meta-learned optimizer (`*_lopt.json`)
and, with `collect_every`, for recording gradients and updates (`*_collect.json`)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from common.runs import require_finite
from optim4rl.agents import a2c_loss, collect_rollout, episode_returns, init_actor_critic
from optim4rl.meta import A2CHyper


@dataclass
class A2CResult:
    steps: list[int] = field(default_factory=list)      # env steps at the end of each logged iteration
    returns: list[float] = field(default_factory=list)  # mean return of the episodes that ended in it
    grads: list[np.ndarray] = field(default_factory=list)    # collect mode: tracked gradient coordinates
    updates: list[np.ndarray] = field(default_factory=list)  # collect mode: their update / lr


def flat(tree: dict) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in tree.values()])


def train_a2c(env, env_name: str, optimizer, hyper: A2CHyper, train_steps: int, seed: int,
              learning_rate: float = 1.0, collect_every: int = 0, progress=None,
              big_map_torso: str = "reference") -> A2CResult:
    """A2C for train_steps // (num_envs · rollout_steps) iterations. `learning_rate` multiplies
    the optimizer's update (1 when the optimizer holds its own lr). With `collect_every` = k > 0,
    every k-th parameter coordinate's gradient and update / lr are recorded each iteration."""
    generator = torch.Generator(device=env.device).manual_seed(seed)      # actions, on the env's device
    init_generator = generator if env.device.type == "cpu" else torch.Generator().manual_seed(seed)
    params = init_actor_critic(env_name, env.obs_shape, env.num_actions, 1, init_generator, big_map_torso,
                               env.device)
    state = optimizer.init(params)
    obs = env.reset().unsqueeze(0)                                        # [1, E, C, H, W]
    running = torch.zeros(1, env.num_envs, device=env.device)
    macro_step = env.num_envs * hyper.rollout_steps
    result = A2CResult()
    lr = getattr(optimizer, "learning_rate", learning_rate)
    for iteration in range(1, train_steps // macro_step + 1):
        rollout, obs = collect_rollout(params, env, obs, hyper.rollout_steps, generator)
        finished, running = episode_returns(rollout, running)
        leaf = {k: v.requires_grad_(True) for k, v in params.items()}
        loss = a2c_loss(leaf, rollout, hyper.discount, hyper.gae_lambda, hyper.critic_loss_weight,
                        hyper.entropy_weight)
        require_finite("the A2C loss", loss.detach(), iteration * macro_step)
        grads = dict(zip(leaf, torch.autograd.grad(loss.sum(), list(leaf.values()))))
        with torch.no_grad():
            updates, state = optimizer.update(grads, state)
            params = {k: (v + learning_rate * updates[k]).detach() for k, v in params.items()}
        if collect_every:
            result.grads.append(flat(grads)[::collect_every].cpu().numpy().copy())
            result.updates.append((learning_rate * flat(updates)[::collect_every] / lr).cpu().numpy().copy())
        if finished:
            result.steps.append(iteration * macro_step)
            result.returns.append(float(np.mean(finished)))
        if progress is not None:
            progress(iteration, result)
    return result
