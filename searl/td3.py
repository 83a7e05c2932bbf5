"""A SEARL-TD3 individual: actor, twin critics, RL hyperparameters and its mutations.

TD3 (Fujimoto et al., 2018) as the SEARL reference trains it: target networks and optimizers
are created afresh at the start of each generation's training, twin critics with the min
target, target-policy smoothing noise, delayed actor and soft target updates.
"""
from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn.functional as F

from common.nets import LeanAdam
from searl import batched_td3
from searl.evolvable import EvolvableMLP
from searl.mutations import mutate_scalar, mutate_step, parameter_noise

TD3_DEFAULTS = {
    "hidden": [128], "activation": "relu", "layer_norm": True,
    "lr_actor": 1e-3, "lr_critic": 1e-3, "batch_size": 100, "gamma": 0.99, "tau": 0.005,
    "policy_noise": 0.2, "noise_clip": 0.5, "policy_delay": 2, "optimizer": "adam",
    "clip_grad": 100.0, "exploration_noise": 0.1,
    # The reference re-creates target networks and optimizers at the start of every
    # generation's training; False keeps both across calls (the single-agent baseline).
    "reset_each_learn": True,
    "mutate_hyperparameters": ["lr_actor", "lr_critic"], "preserve_growth": True,
    "max_layers": 3, "max_nodes": 500,
}
ACTIVATIONS = ("relu", "elu", "tanh")
# torch's fused Adam kernel without torch.optim's per-step bookkeeping: ~1.2x faster per TD3
# update on CPU than torch.optim.Adam(fused=True), same numbers (bench/td3_throughput.py)
OPTIMIZERS = {"adam": LeanAdam,
              "adamax": lambda params, lr: torch.optim.Adamax(params, lr=lr, foreach=True),
              "rmsprop": lambda params, lr: torch.optim.RMSprop(params, lr=lr, foreach=True),
              "sgd": lambda params, lr: torch.optim.SGD(params, lr=lr, foreach=True)}
# What an RL-hyperparameter mutation may touch, and the bounds it keeps them in.
HYPERPARAMETER_BOUNDS = {"lr_actor": (1e-5, 5e-3), "lr_critic": (1e-5, 5e-3),
                         "batch_size": (8, 128), "policy_noise": (0.0, 1.0),
                         "policy_delay": (1, 10)}


class TD3Individual:
    def __init__(self, index: int, obs_dim: int, action_dim: int, config: dict, seed: int,
                 device: str | torch.device = "cpu"):
        self.index, self.parent, self.mutation = index, None, "init"
        self.fitness: list[float] = []
        self.train_steps = 0
        self.hp = {key: config[key] for key in ("lr_actor", "lr_critic", "batch_size",
                                                "policy_noise", "policy_delay", "optimizer")}
        self.config = {key: config[key] for key in ("gamma", "tau", "noise_clip", "clip_grad",
                                                    "exploration_noise", "reset_each_learn")}
        self.mutable = list(config["mutate_hyperparameters"])
        self.preserve = config["preserve_growth"]
        self.limits = {"max_layers": config["max_layers"], "max_nodes": config["max_nodes"]}
        self.device = torch.device(device)
        self.rng = np.random.default_rng(seed)
        shape = dict(hidden=config["hidden"], layer_norm=config["layer_norm"])
        actor_act = config.get("actor_activation", config["activation"])
        critic_act = config.get("critic_activation", config["activation"])
        self.actor = EvolvableMLP(obs_dim, action_dim, activation=actor_act,
                                  output_activation="tanh", **shape).to(self.device)
        self.critics = [EvolvableMLP(obs_dim + action_dim, 1, activation=critic_act,
                                     output_scale=0.1, **shape).to(self.device)
                        for _ in range(2)]
        self._forget_training()

    def networks(self) -> list[torch.nn.Module]:
        return [self.actor, *self.critics]

    # -- acting ---------------------------------------------------------------------------------
    @torch.no_grad()
    def act(self, obs: np.ndarray, explore: bool) -> np.ndarray:
        """The policy's action in [-1, 1]; exploring adds N(0, 0.1) noise (Sec. 3.1)."""
        dtype = self.actor.output.weight.dtype
        action = self.actor(torch.as_tensor(obs, device=self.device, dtype=dtype).unsqueeze(0))
        action = action[0].cpu().numpy()
        if explore:
            noise = self.rng.normal(0.0, self.config["exploration_noise"], size=action.shape)
            action = np.clip(action + noise, -1.0, 1.0)
        return action.astype(np.float32)

    # -- training (Sec. 3.4) --------------------------------------------------------------------
    def learn(self, buffer, n_updates: int, rng: np.random.Generator) -> dict:
        """`n_updates` TD3 updates on batches drawn uniformly from the shared replay memory."""
        gamma, tau, clip = self.config["gamma"], self.config["tau"], self.config["clip_grad"]
        noise_std, noise_clip = self.hp["policy_noise"], self.config["noise_clip"]
        if self.config["reset_each_learn"] or self.targets is None:
            self._start_training()
        actor_t, critic1_t, critic2_t = self.targets
        actor_opt, critic_opt = self.optimizers
        online, target = self._soft_update_pairs
        noise_gen = torch.Generator(device=self.device).manual_seed(int(rng.integers(2**62)))
        dtype = self.actor.output.weight.dtype
        critic_losses = []
        for step in range(n_updates):
            batch = buffer.batch_at(rng.integers(0, len(buffer), size=self.hp["batch_size"]))
            obs, action, next_obs, reward, terminated = (
                t.to(self.device, dtype) for t in (batch.obs, batch.actions, batch.next_obs,
                                                   batch.rewards, batch.terminated))
            with torch.no_grad():
                noise = torch.randn(action.shape, generator=noise_gen, device=self.device,
                                    dtype=dtype)
                noise = (noise * noise_std).clamp(-noise_clip, noise_clip)
                next_action = (actor_t(next_obs) + noise).clamp(-1.0, 1.0)
                next_in = torch.cat([next_obs, next_action], 1)
                next_q = torch.min(critic1_t(next_in), critic2_t(next_in)).squeeze(1)
                y = reward + gamma * (1 - terminated) * next_q
            current = torch.cat([obs, action], 1)
            critic_loss = sum(F.mse_loss(critic(current).squeeze(1), y) for critic in self.critics)
            _step(critic_opt, critic_loss, clip)
            critic_losses.append(critic_loss.item() / 2)
            # the actor and targets move every policy_delay-th critic update since targets were
            # made (counted across calls: the single-agent baseline learns one step per call)
            if (self.updates_since_targets + step) % self.hp["policy_delay"] == 0:
                actor_loss = -self.critics[0](torch.cat([obs, self.actor(obs)], 1)).mean()
                _step(actor_opt, actor_loss, clip)
                with torch.no_grad():
                    torch._foreach_lerp_(target, online, tau)
        self.train_steps += n_updates
        self.updates_since_targets += n_updates
        if self.config["reset_each_learn"]:  # nothing to carry (or to pickle) to the next call
            self._forget_training()
        return {"critic_loss": float(np.mean(critic_losses)) if critic_losses else float("nan")}

    def _start_training(self) -> None:
        """Fresh target networks and optimizers (the reference: at each generation's start)."""
        self.targets = [copy.deepcopy(net) for net in (self.actor, *self.critics)]
        self.optimizers = self._new_optimizers()
        self._soft_update_pairs = ([p for net in (self.actor, *self.critics) for p in net.parameters()],
                                   [p for net in self.targets for p in net.parameters()])
        self.updates_since_targets = 0

    def _forget_training(self) -> None:
        """Drop targets and optimizers (after a generation, or when shapes or lrs change)."""
        self.targets = self.optimizers = self._soft_update_pairs = None

    def _new_optimizers(self):
        make = OPTIMIZERS[self.hp["optimizer"]]
        critic_params = [p for critic in self.critics for p in critic.parameters()]
        return (make(self.actor.parameters(), lr=self.hp["lr_actor"]),
                make(critic_params, lr=self.hp["lr_critic"]))

    # -- the whole population at once (searl/batched_td3.py) ------------------------------------
    @staticmethod
    def batching_groups(individuals) -> list[list[int]]:
        return batched_td3.batching_groups(individuals)

    @staticmethod
    def learn_together(individuals, buffer, n_updates: int, rngs, compile: bool = False) -> list[dict]:
        """`learn` for every individual as one batched computation, with the same numbers
        (a group of one learns on its own: nothing to batch, no padding to pay for).
        `compile`: through torch.compile (common.compiling.compiled)."""
        if len(individuals) == 1:
            return [individuals[0].learn(buffer, n_updates, rngs[0])]
        results = batched_td3.learn_together(individuals, buffer, n_updates, rngs, compile)
        for individual in individuals:
            individual.train_steps += n_updates
        return results

    @staticmethod
    def population_policy(individuals) -> "batched_td3.PopulationPolicy":
        return batched_td3.PopulationPolicy(individuals)

    # -- evolution ------------------------------------------------------------------------------
    def clone(self, index: int) -> "TD3Individual":
        child = copy.deepcopy(self)
        child.index, child.parent = index, self.index
        child.rng = np.random.default_rng(self.rng.integers(2**62))
        return child

    def mutate_parameters(self, rng: np.random.Generator) -> str:
        changed = parameter_noise(self.actor.parameters(), rng)
        return f"parameters({changed} actor weights)"

    def mutate_architecture(self, rng: np.random.Generator) -> str:
        """Add a layer (p = 0.2, while fewer than max_layers) or 16/32/64 nodes to a random
        hidden layer (at most max_nodes); the same change to the actor and both critics."""
        hidden = self.actor.hidden
        can_grow = [i for i, width in enumerate(hidden) if width < self.limits["max_nodes"]]
        add_layer = len(hidden) < self.limits["max_layers"] and (rng.random() < 0.2 or not can_grow)
        if add_layer:
            for net in (self.actor, *self.critics):
                net.add_layer(rng, preserve=self.preserve)
            change = f"architecture(add layer -> {self.actor.hidden})"
        elif can_grow:
            layer = int(rng.choice(can_grow))
            k = min(int(rng.choice([16, 32, 64])), self.limits["max_nodes"] - hidden[layer])
            for net in (self.actor, *self.critics):
                net.add_nodes(layer, k, rng, preserve=self.preserve)
            change = f"architecture(+{k} nodes in layer {layer} -> {self.actor.hidden})"
        else:
            return "architecture(at size limits: unchanged)"
        self._forget_training()  # parameter shapes changed
        for net in (self.actor, *self.critics):
            net.to(self.device)
        return change

    def mutate_activation(self, rng: np.random.Generator) -> str:
        """Switch to another of relu/elu/tanh, actor and critics drawn independently."""
        names = []
        for net in (self.actor, *self.critics[:1]):
            name = str(rng.choice([a for a in ACTIVATIONS if a != net.activation]))
            names.append(name)
            if net is self.actor:
                net.set_activation(name)
            else:
                for critic in self.critics:
                    critic.set_activation(name)
        return f"activation(actor {names[0]}, critic {names[1]})"

    def mutate_rl_hyperparameter(self, rng: np.random.Generator) -> str:
        name = str(rng.choice(self.mutable))
        old = self.hp[name]
        if name == "optimizer":
            self.hp[name] = str(rng.choice([o for o in OPTIMIZERS if o != old]))
        elif name == "policy_delay":
            self.hp[name] = mutate_step(old, *HYPERPARAMETER_BOUNDS[name], rng)
        else:
            self.hp[name] = mutate_scalar(old, *HYPERPARAMETER_BOUNDS[name], rng,
                                          integer=name == "batch_size")
        self._forget_training()
        return f"rl_hyperparameter({name} {old:.4g} -> {self.hp[name]:.4g})" \
            if name != "optimizer" else f"rl_hyperparameter(optimizer {old} -> {self.hp[name]})"

    def describe(self) -> dict:
        return {"hidden": "-".join(map(str, self.actor.hidden)),
                "actor_activation": self.actor.activation,
                "critic_activation": self.critics[0].activation, **self.hp}


def _step(optimizer: torch.optim.Optimizer, loss: torch.Tensor, clip: float) -> None:
    """One optimizer step with element-wise gradient clipping to [-clip, clip] (reference)."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    grads = [p.grad for group in optimizer.param_groups for p in group["params"]
             if p.grad is not None]
    torch._foreach_clamp_max_(grads, clip)
    torch._foreach_clamp_min_(grads, -clip)
    optimizer.step()
