"""MetaA2C: meta-training a learned optimizer on A2C agents (Lan et al. 2023, Sec. 5 and
Algorithm 1; reference agents/MetaA2C.py), in the paper's order:

1. One population per task: A agents, each with its own parameters θ, optimizer hidden state h
   and env (pipeline training, Sec. 5.2, keeps agents at every stage of learning).
2. Each meta-iteration t, agent i is re-initialised when (t − 1) mod reset_interval equals its
   reset index (indices spread evenly over [0, reset_interval)).
3. K inner updates per agent: a rollout, the A2C gradient g (detached: no second-order terms),
   θ ← θ + Opt_φ(g, h).
4. The meta-loss: the A2C loss of θ_K on one more rollout, averaged over the population.
5. Backpropagate through the K updates and the hidden-state chain to φ; per task, optionally
   rescale the meta-gradient to a fixed norm (`max_norm`); average over tasks; one step of the
   meta-optimizer (Adam with clipping).
6. Detach θ and h and carry them on (truncated backpropagation through time).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from optim4rl.agents import Params, a2c_loss, collect_rollout, episode_returns, init_actor_critic
from optim4rl.optimizers import detach_state


@dataclass
class A2CHyper:
    discount: float = 0.995
    gae_lambda: float = 0.95
    rollout_steps: int = 20
    critic_loss_weight: float = 0.5
    entropy_weight: float = 0.01


def select_agents(mask: torch.Tensor, new, old):
    """Per agent, take `new` where mask[i] else `old`; every leaf has the agent axis first."""
    if isinstance(new, torch.Tensor):
        shape = (-1,) + (1,) * (new.dim() - 1)
        return torch.where(mask.reshape(shape), new, old)
    if isinstance(new, dict):
        return {k: select_agents(mask, new[k], old[k]) for k in new}
    if isinstance(new, (list, tuple)):
        return type(new)(select_agents(mask, n, o) for n, o in zip(new, old))
    return new


def reset_indexes(reset_interval: int, agents: int) -> torch.Tensor:
    """The reference's int(linspace(0, reset_interval − 1, A)): agents spread over the cycle."""
    return torch.linspace(0, reset_interval - 1, agents, dtype=torch.float64).long()


def agents_to_reset(iteration: int, reset_interval: int, indexes: torch.Tensor, pipeline: bool) -> torch.Tensor:
    """Step 2: agent i restarts at meta-iteration t when (t − 1) mod reset_interval == index_i.
    Without pipeline training (the ablation) nobody restarts after t = 1."""
    if not pipeline:
        return torch.full_like(indexes, iteration == 1, dtype=torch.bool)
    return (iteration - 1) % reset_interval == indexes


class Task:
    """One task's population: A agents, one env each, their θ, optimizer state and env state, all
    on the env's device (`generator`, which draws actions, must live there too). Fresh θ come
    from `generator` on the CPU, and on another device from a CPU generator with its seed, so
    every device starts from the same θ."""

    def __init__(self, env, env_name: str, agents: int, optimizer, learning_rate: float,
                 reset_interval: int, generator: torch.Generator, big_map_torso: str = "reference"):
        self.env, self.env_name, self.agents = env, env_name, agents
        self.big_map_torso = big_map_torso
        self.optimizer, self.learning_rate = optimizer, learning_rate
        self.reset_interval = reset_interval
        self.indexes = reset_indexes(reset_interval, agents)
        self.generator = generator
        self.init_generator = (generator if generator.device.type == "cpu"
                               else torch.Generator().manual_seed(generator.initial_seed()))
        self.params = self.fresh_params()
        self.state = optimizer.init(self.params)
        self.obs = env.reset().unsqueeze(1)                              # [A, 1, C, H, W]
        self.running = torch.zeros(agents, 1, device=env.device)
        self.returns: list[float] = []

    def fresh_params(self) -> Params:
        return init_actor_critic(self.env_name, self.env.obs_shape, self.env.num_actions, self.agents,
                                 self.init_generator, self.big_map_torso, self.env.device)

    def pipeline_reset(self, mask: torch.Tensor) -> None:
        """Step 2: restart the masked agents: new θ, zero hidden state, a new episode."""
        if not mask.any():
            return
        mask = mask.to(self.env.device)
        new_params = self.fresh_params()
        self.params = select_agents(mask, new_params, self.params)
        self.state = self.optimizer.reset_agents(self.state, mask)
        self.obs = self.env.reset_envs(mask).unsqueeze(1)
        self.running = torch.where(mask[:, None], torch.zeros_like(self.running), self.running)


def inner_update(task: Task, params: Params, state, hyper: A2CHyper):
    """Step 3: one rollout, the A2C gradient g at θ_k (detached), θ_{k+1} = θ_k + Opt_φ(g, h)."""
    rollout, task.obs = collect_rollout(params, task.env, task.obs, hyper.rollout_steps, task.generator)
    finished, task.running = episode_returns(rollout, task.running)
    task.returns.extend(finished)
    leaf = {k: v.detach().requires_grad_(True) for k, v in params.items()}
    loss = a2c_loss(leaf, rollout, hyper.discount, hyper.gae_lambda, hyper.critic_loss_weight,
                    hyper.entropy_weight)
    grads = dict(zip(leaf, torch.autograd.grad(loss.sum(), list(leaf.values()))))
    updates, state = task.optimizer.update(grads, state)
    return {k: params[k] + task.learning_rate * updates[k] for k in params}, state


def meta_loss(task: Task, inner_updates: int, hyper: A2CHyper) -> torch.Tensor:
    """Steps 3-4 for one task: K differentiable inner updates, then the A2C loss of θ_K on a
    fresh rollout, averaged over the population. Leaves θ_K and h_K (detached) in the task."""
    params, state = task.params, task.state
    for _ in range(inner_updates):
        params, state = inner_update(task, params, state, hyper)
    rollout, task.obs = collect_rollout(params, task.env, task.obs, hyper.rollout_steps, task.generator)
    finished, task.running = episode_returns(rollout, task.running)
    task.returns.extend(finished)
    loss = a2c_loss(params, rollout, hyper.discount, hyper.gae_lambda, hyper.critic_loss_weight,
                    hyper.entropy_weight).mean()
    task.params, task.state = detach_state(params), detach_state(state)   # step 6: truncation
    return loss


def scale_to_norm(grads: list[torch.Tensor], max_norm: float) -> list[torch.Tensor]:
    """Step 5 (multi-task): rescale one task's meta-gradient to norm `max_norm` (off if ≤ 0)."""
    if max_norm <= 0:
        return grads
    norm = torch.sqrt(sum((g ** 2).sum() for g in grads))
    return [g / norm * max_norm for g in grads]


def to_device(tree, device):
    """A nested dict of tensors, moved to `device`."""
    if isinstance(tree, dict):
        return {k: to_device(v, device) for k, v in tree.items()}
    return tree.to(device)


class MetaA2C:
    """Meta-trains the learned optimizer `lopt` (an nn.Module: φ) on one or more tasks."""

    def __init__(self, lopt, tasks: list[Task], hyper: A2CHyper, inner_updates: int = 4,
                 meta_lr: float = 1e-3, meta_grad_clip: float = -1.0, meta_grad_norm: float = -1.0,
                 max_norm: float = -1.0, pipeline: bool = True):
        self.lopt, self.tasks, self.hyper = lopt, tasks, hyper
        self.inner_updates, self.max_norm, self.pipeline = inner_updates, max_norm, pipeline
        self.meta_grad_clip, self.meta_grad_norm = meta_grad_clip, meta_grad_norm
        self.phi = [p for p in lopt.parameters()]
        self.meta_optimizer = torch.optim.Adam(self.phi, lr=meta_lr)
        self.iteration = 0

    def step(self) -> dict:
        """One meta-iteration over every task (steps 2-6)."""
        self.iteration += 1
        task_grads, losses = [], []
        for task in self.tasks:
            task.pipeline_reset(agents_to_reset(self.iteration, task.reset_interval, task.indexes,
                                                self.pipeline))
            loss = meta_loss(task, self.inner_updates, self.hyper)
            grads = torch.autograd.grad(loss, self.phi, allow_unused=True)
            grads = [torch.zeros_like(p) if g is None else g for g, p in zip(grads, self.phi)]
            task_grads.append(scale_to_norm(grads, self.max_norm))
            losses.append(loss.item())
        for p, *per_task in zip(self.phi, *task_grads):
            p.grad = torch.stack(per_task).mean(0)
        self.clip_meta_gradient()
        self.meta_optimizer.step()
        return {"iteration": self.iteration, "meta_loss": sum(losses) / len(losses)}

    def clip_meta_gradient(self) -> None:
        """The reference's optax chain in front of Adam: element-wise clip or global-norm clip."""
        if self.meta_grad_clip > 0:
            for p in self.phi:
                p.grad.clamp_(-self.meta_grad_clip, self.meta_grad_clip)
        elif self.meta_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(self.phi, self.meta_grad_norm)

    def state_dict(self) -> dict:
        """Everything a resumed meta-training needs to continue exactly: φ, the meta-optimizer,
        and per task the agents' θ, optimizer states, envs, episode returns and random streams."""
        return {"lopt": self.lopt.state_dict(), "meta_optimizer": self.meta_optimizer.state_dict(),
                "iteration": self.iteration,
                "tasks": [{"params": t.params, "state": t.state, "obs": t.obs, "running": t.running,
                           "returns": list(t.returns), "env": t.env.state_dict(),
                           "generator": t.generator.get_state(), "init_generator": t.init_generator.get_state()}
                          for t in self.tasks]}

    def load_state_dict(self, state: dict) -> None:
        self.lopt.load_state_dict(state["lopt"])
        self.meta_optimizer.load_state_dict(state["meta_optimizer"])
        self.iteration = state["iteration"]
        for task, saved in zip(self.tasks, state["tasks"], strict=True):
            device = task.env.device                     # a checkpoint is loaded onto the CPU
            task.params, task.state = to_device(saved["params"], device), to_device(saved["state"], device)
            task.obs, task.running = saved["obs"].to(device), saved["running"].to(device)
            task.returns = list(saved["returns"])
            task.env.load_state_dict(saved["env"])
            task.generator.set_state(saved["generator"])
            task.init_generator.set_state(saved["init_generator"])
