"""The value learner (Buckman et al. 2018, Sec. 3-4; reference valuerl.py): DDPG, MVE (with the
TD-k trick) and STEVE from one update, differing only in how the candidate targets of
`value_expansion` are reduced. Also the world-model learner step."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from steve.models import Policy, QEnsemble, WorldModel
from steve.value_expansion import candidate_targets, imagine, rooted_candidates, steve_combine

ALGOS = ("ddpg", "mve", "steve")


@dataclass
class ValueConfig:
    algo: str = "steve"           # ddpg | mve | steve
    rollout_len: int = 3          # H
    tdk_trick: bool = False       # MVE's TD-k: also train Q on the imagined states
    q_members: int = 4            # L (1 without the Bayesian ensemble)
    hidden_dim: int = 128
    hidden_layers: int = 3
    discount: float = 0.99
    reward_scale: float = 1.0
    lr: float = 3e-4
    policy_reg: float = 1e-3      # weight of mean(pre-tanh²), keeps tanh from saturating
    target_copy_every: int = 500  # hard copy of Q into the target Q, in updates
    q_routing: str = "random"     # random: one random Q member per example (reference) | full
    corrupt_std: float = 0.0      # robustness test: N(0, std) noise on every imagined next state


class ValueLearner:
    """Policy π, Q ensemble, target Q ensemble (hard copies, no target policy), Adam on each."""

    def __init__(self, obs_dim: int, action_dim: int, cfg: ValueConfig, seed: int):
        self.cfg = cfg
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.policy = Policy(obs_dim, action_dim, cfg.hidden_dim, cfg.hidden_layers)
            self.q = QEnsemble(obs_dim, action_dim, cfg.q_members, cfg.hidden_dim, cfg.hidden_layers)
        self.q_target = QEnsemble(obs_dim, action_dim, cfg.q_members, cfg.hidden_dim, cfg.hidden_layers)
        self.q_target.load_state_dict(self.q.state_dict())
        self.q_target.requires_grad_(False)
        self.policy_opt = torch.optim.Adam(self.policy.parameters(), lr=cfg.lr, fused=True)
        self.q_opt = torch.optim.Adam(self.q.parameters(), lr=cfg.lr, fused=True)
        self.generator = torch.Generator().manual_seed(seed + 1)
        self.updates = 0

    # -- the target --------------------------------------------------------------------------
    @torch.no_grad()
    def targets(self, reward, next_obs, done, world_model: WorldModel | None):
        """The Q target of each example (and, with the TD-k trick, of each imagined state):
        returns (targets [K, B], reach weights [K, B], model use). K = 1 except with TD-k."""
        reward = reward * self.cfg.reward_scale
        horizon = 0 if world_model is None or self.cfg.algo == "ddpg" else self.cfg.rollout_len
        members = world_model.members if horizon else 1
        rollout = imagine(next_obs, done, horizon, members, self.policy,
                          self._transition(world_model) if horizon else None,
                          world_model.done_prob if horizon else None,
                          self._scaled_reward(world_model) if horizon else None, self.q_target)
        if self.cfg.algo == "steve":
            combined = steve_combine(candidate_targets(reward, rollout, self.cfg.discount))
            return combined.target[None], torch.ones_like(combined.target)[None], combined.model_use
        if self.cfg.algo == "ddpg" or not self.cfg.tdk_trick:
            candidates = candidate_targets(reward, rollout, self.cfg.discount)
            return candidates[-1].flatten(0, 2).mean(0)[None], torch.ones_like(reward)[None], reward.new_zeros(())
        # TD-k: the H-step-to-the-end target rooted at every frame, weighted by the chance of
        # reaching the imagined state it trains (the reference's reach probabilities)
        rooted = rooted_candidates(reward, rollout, self.cfg.discount)
        targets = torch.stack([r[-1].flatten(0, 2).mean(0) for r in rooted])          # [H+1, B]
        reach = torch.cumprod(1.0 - rollout.dones, dim=1).mean(0)                     # [H+1, B]
        reach = torch.cat([torch.ones_like(reach[:1]), reach[:-1]], 0)
        self._imagined = (rollout.states[:, :-1], rollout.actions[:, :-1])
        return targets, reach, reward.new_zeros(())

    def _transition(self, world_model: WorldModel):
        if not self.cfg.corrupt_std:
            return world_model.transition
        std = self.cfg.corrupt_std
        return lambda s, a: world_model.transition(s, a) + std * torch.randn(
            s.shape, generator=self.generator, dtype=s.dtype)

    def _scaled_reward(self, world_model: WorldModel):
        scale = self.cfg.reward_scale
        return lambda s, a, s1: world_model.reward(s, a, s1) * scale

    # -- one update ----------------------------------------------------------------------------
    def update(self, batch, world_model: WorldModel | None = None) -> dict:
        """One gradient step on Q (½(Q(s,a) − y)²) and on π (−mean_l Q_l(s, π(s)) + 1e-3·pre²)."""
        obs, action, reward, next_obs, done = batch
        targets, reach, model_use = self.targets(reward, next_obs, done, world_model)
        q_guess = self._q_guess(obs, action)
        if targets.shape[0] > 1:  # TD-k: Q at the imagined states too (mean over model rollouts)
            states, actions = self._imagined
            imagined_q = self.q(states, actions).mean(0).mean(0)         # [H, B]
            q_guess = torch.cat([q_guess[None] if q_guess.dim() == 1 else q_guess.mean(0, keepdim=True), imagined_q], 0)
        q_loss = (0.5 * reach * (q_guess - targets) ** 2).mean()
        self.q_opt.zero_grad(set_to_none=True)
        q_loss.backward()
        self.q_opt.step()

        pre = self.policy.pre_tanh(obs)
        self.q.requires_grad_(False)  # the policy's gradient goes through Q, not into it
        value = self.q(obs, torch.tanh(pre)).mean(0)
        self.q.requires_grad_(True)
        reg = self.cfg.policy_reg * (pre ** 2).mean()
        policy_loss = -value.mean()
        self.policy_opt.zero_grad(set_to_none=True)
        (policy_loss + reg).backward()
        self.policy_opt.step()

        self.updates += 1
        if self.updates % self.cfg.target_copy_every == 0:
            self.q_target.load_state_dict(self.q.state_dict())
        return {"q_loss": q_loss.item(), "policy_loss": policy_loss.item(), "policy_reg_loss": reg.item(),
                "model_use": float(model_use)}

    def _q_guess(self, obs, action) -> torch.Tensor:
        if self.cfg.q_routing == "full" or self.cfg.q_members == 1:
            return self.q(obs, action)  # [L, B]: every member trains on every example
        member = torch.randint(self.cfg.q_members, (obs.shape[0],), generator=self.generator)
        return self.q.routed(obs, action, member)

    @torch.no_grad()
    def act(self, obs: torch.Tensor) -> torch.Tensor:
        return self.policy(obs)

    def state_dict(self) -> dict:
        return {"policy": self.policy.state_dict(), "q": self.q.state_dict(),
                "q_target": self.q_target.state_dict(), "policy_opt": self.policy_opt.state_dict(),
                "q_opt": self.q_opt.state_dict(), "generator": self.generator.get_state(),
                "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        for name in ("policy", "q", "q_target", "policy_opt", "q_opt"):
            getattr(self, name).load_state_dict(state[name])
        self.generator.set_state(state["generator"])
        self.updates = state["updates"]


class WorldModelLearner:
    """Adam on the world model's loss (reference worldmodel_learner.py)."""

    def __init__(self, obs_dim: int, action_dim: int, transition_members: int, reward_members: int,
                 seed: int, lr: float = 3e-4, l2_weight: float = 1e-4, full_batch: bool = False, **sizes):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.model = WorldModel(obs_dim, action_dim, transition_members, reward_members, **sizes)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=lr, fused=True)
        self.generator = torch.Generator().manual_seed(seed + 2)
        self.full_batch, self.l2_weight = full_batch, l2_weight
        self.updates = 0

    def update(self, batch) -> dict:
        obs, action, reward, next_obs, done = batch
        loss, parts = self.model.loss(obs, action, reward, next_obs, done, self.generator,
                                      l2_weight=self.l2_weight, full_batch=self.full_batch)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.updates += 1
        return {"worldmodel_loss": loss.item(), **parts}

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "opt": self.opt.state_dict(),
                "generator": self.generator.get_state(), "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["opt"])
        self.generator.set_state(state["generator"])
        self.updates = state["updates"]
