"""The value learner (Buckman et al. 2018, Sec. 3-4; reference valuerl.py): DDPG, MVE (with the
TD-k trick) and STEVE from one update, differing only in how the candidate targets of
`value_expansion` are reduced. Also the world-model learner step.

Both learners live on one device (`device`, e.g. "cuda:0"): networks, optimizers and the
torch.Generator of their random draws. `update` takes CPU batches and moves them there; `act`
answers on the CPU. Their state_dicts load on any device (see `load_generator_state`)."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import partial

import torch

from common.compiling import compiled
from common.device import keep_freed_memory  # page faults were ~15-40% of a STEVE target on a 2-core EPYC
from steve.models import (Policy, QEnsemble, WorldModel, group_by_member, random_members,
                          sample_members, subset_size)
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
    q_train_samples: int | None = None  # Q members drawn per training call (None: all L)
    q_eval_samples: int | None = None   # Q members drawn per evaluation call: target, policy loss

    def __post_init__(self):
        for name in ("q_train_samples", "q_eval_samples"):
            count = getattr(self, name)
            if count is not None and not (isinstance(count, int) and 1 <= count <= self.q_members):
                raise ValueError(f"ValueConfig.{name} must be 1..q_members ({self.q_members}): got {count}")


def load_generator_state(generator: torch.Generator, state: torch.Tensor, device_type: str = "cpu") -> None:
    """Restore a generator from `state` (CPU bytes, as get_state gives) made on `device_type`.
    CPU (Mersenne twister) and CUDA (Philox) states are different objects, so a state from the
    other device type reseeds the generator from a hash of it instead: a given checkpoint then
    continues the same way on a given device (the two streams differ anyway)."""
    state = state.cpu()
    if device_type == generator.device.type:
        generator.set_state(state)
    else:
        digest = hashlib.sha256(state.numpy().tobytes()).digest()
        generator.manual_seed(int.from_bytes(digest[:8], "little") >> 1)



def to_device(batch, device: torch.device) -> tuple:
    return tuple(t.to(device, non_blocking=True) for t in batch)


class ValueLearner:
    """Policy π, Q ensemble, target Q ensemble (hard copies, no target policy), Adam on each."""

    def __init__(self, obs_dim: int, action_dim: int, cfg: ValueConfig, seed: int,
                 device: str | torch.device = "cpu", compile: bool = False):
        """`compile`: the target, the Q loss and the policy loss through torch.compile (their
        random draws stay eager, so a run draws the same numbers; equal to eager up to float
        rounding). Not with corrupt_std, whose noise is drawn inside the rollout."""
        if compile and cfg.corrupt_std:
            raise ValueError("compile does not apply to a corrupted model (corrupt_std > 0)")
        self.cfg, self.device = cfg, torch.device(device)
        if self.device.type == "cpu":
            keep_freed_memory()
        maybe = (lambda fn: compiled(fn, "steve")) if compile else (lambda fn: fn)
        self._target_maths = maybe(self._target_maths_eager)
        self._q_loss, self._policy_loss = maybe(self._q_loss_eager), maybe(self._policy_loss_eager)
        with torch.random.fork_rng(devices=[]):  # the same initial weights on every device
            torch.manual_seed(seed)
            self.policy = Policy(obs_dim, action_dim, cfg.hidden_dim, cfg.hidden_layers).to(self.device)
            self.q = QEnsemble(obs_dim, action_dim, cfg.q_members, cfg.hidden_dim,
                               cfg.hidden_layers).to(self.device)
        self.q_target = QEnsemble(obs_dim, action_dim, cfg.q_members, cfg.hidden_dim,
                                  cfg.hidden_layers).to(self.device)
        self.q_target.load_state_dict(self.q.state_dict())
        self.q_target.requires_grad_(False)
        self.policy_opt = torch.optim.Adam(self.policy.parameters(), lr=cfg.lr, fused=True)
        self.q_opt = torch.optim.Adam(self.q.parameters(), lr=cfg.lr, fused=True)
        self.generator = torch.Generator(self.device).manual_seed(seed + 1)
        self.updates = 0

    def _eval_members(self) -> torch.Tensor | None:
        """The Q members of one evaluation call (policy bayesian eval_sample_count)."""
        return sample_members(self.cfg.q_members, self.cfg.q_eval_samples, self.generator, self.device)

    # -- the target --------------------------------------------------------------------------
    @torch.no_grad()
    def targets(self, reward, next_obs, done, world_model: WorldModel | None):
        """The Q target of each example (and, with the TD-k trick, of each imagined state):
        returns (targets [K, B], reach weights [K, B], model use). K = 1 except with TD-k.
        Each call draws the ensembles' eval subsets (transition and done, reward, target Q), so a
        horizon has M_eval·N_eval·L_eval candidate samples."""
        horizon = 0 if world_model is None or self.cfg.algo == "ddpg" else self.cfg.rollout_len
        # the random draws stay outside the (compilable) maths, in the reference's order:
        # transition members (the done net shares them), reward members, then target-Q members
        t_members = r_members = None
        if horizon:
            t_members = sample_members(world_model.members, world_model.transition_samples[1],
                                       self.generator, self.device)
            r_members = sample_members(world_model.reward_members, world_model.reward_samples[1],
                                       self.generator, self.device)
        q_members = self._eval_members()
        targets, reach, model_use, imagined = self._target_maths(reward, next_obs, done, world_model, horizon,
                                                                 t_members, r_members, q_members)
        if imagined is not None:
            self._imagined = imagined
        return targets, reach, model_use

    def _target_maths_eager(self, reward, next_obs, done, world_model, horizon, t_members, r_members, q_members):
        """`targets` given its random draws: (targets, reach, model use, TD-k's imagined (s, a) or None)."""
        reward = reward * self.cfg.reward_scale
        models = self._imagination(world_model, t_members, r_members) if horizon else dict(
            members=1, transition=None, done_prob=None, reward=None)
        q_target = partial(self.q_target, members=q_members)
        rollout = imagine(next_obs, done, horizon, policy=self.policy, q_target=q_target, **models)
        if self.cfg.algo == "steve":
            combined = steve_combine(candidate_targets(reward, rollout, self.cfg.discount))
            return combined.target[None], torch.ones_like(combined.target)[None], combined.model_use, None
        if self.cfg.algo == "ddpg" or not self.cfg.tdk_trick:
            candidates = candidate_targets(reward, rollout, self.cfg.discount)
            return (candidates[-1].flatten(0, 2).mean(0)[None], torch.ones_like(reward)[None],
                    reward.new_zeros(()), None)
        # TD-k: the H-step-to-the-end target rooted at every frame, weighted by the chance of
        # reaching the imagined state it trains (the reference's reach probabilities)
        rooted = rooted_candidates(reward, rollout, self.cfg.discount)
        targets = torch.stack([r[-1].flatten(0, 2).mean(0) for r in rooted])          # [H+1, B]
        reach = torch.cumprod(1.0 - rollout.dones, dim=1).mean(0)                     # [H+1, B]
        reach = torch.cat([torch.ones_like(reach[:1]), reach[:-1]], 0)
        return targets, reach, reward.new_zeros(()), (rollout.states[:, :-1], rollout.actions[:, :-1])

    def _imagination(self, world_model: WorldModel, t_members, r_members) -> dict:
        """The world model's callables for `imagine`, on this call's eval subsets."""
        scale = self.cfg.reward_scale
        return dict(members=subset_size(world_model.members, t_members),
                    transition=self._transition(partial(world_model.transition, members=t_members)),
                    done_prob=partial(world_model.done_prob, members=t_members),
                    reward=lambda s, a, s1: world_model.reward(s, a, s1, members=r_members) * scale)

    def _transition(self, transition):
        if not self.cfg.corrupt_std:
            return transition
        std = self.cfg.corrupt_std

        def corrupted(s, a):
            nxt = transition(s, a)
            return nxt + std * torch.randn(nxt.shape, generator=self.generator, dtype=nxt.dtype,
                                           device=nxt.device)
        return corrupted

    # -- one update ----------------------------------------------------------------------------
    def update(self, batch, world_model: WorldModel | None = None) -> dict:
        """One gradient step on Q (½(Q(s,a) − y)²) and on π (−mean_l Q_l(s, π(s)) + 1e-3·pre²).
        `batch` = (obs, action, reward, next_obs, done), on any device."""
        obs, action, reward, next_obs, done = to_device(batch, self.device)
        targets, reach, model_use = self.targets(reward, next_obs, done, world_model)
        routes = self._q_routes(obs.shape[0], tdk=targets.shape[0] > 1)
        q_loss = self._q_loss(obs, action, targets, reach, *routes)
        self.q_opt.zero_grad(set_to_none=True)
        q_loss.backward()
        self.q_opt.step()

        # the policy's gradient goes through Q (frozen: not into it), mean over an eval subset
        policy_loss, reg = self._policy_loss(obs, self._eval_members())
        self.policy_opt.zero_grad(set_to_none=True)
        (policy_loss + reg).backward()
        self.policy_opt.step()

        self.updates += 1
        if self.updates % self.cfg.target_copy_every == 0:
            self.q_target.load_state_dict(self.q.state_dict())
        return {"q_loss": q_loss.item(), "policy_loss": policy_loss.item(), "policy_reg_loss": reg.item(),
                "model_use": float(model_use)}

    def _q_routes(self, batch: int, tdk: bool) -> tuple:
        """The Q step's random draws: (train members, train routing or None, TD-k's eval members,
        TD-k's routing or None). Training Q(s, a): one random member of a train subset per example
        (the reference's reduce_mode "random", is_eval False); `full` routing: every member of the
        subset on every example (no routing). TD-k, Q at the imagined (s_k, a_k): one random member
        of an eval subset per example, the same along its rollouts."""
        cfg = self.cfg
        if cfg.q_routing == "full" or cfg.q_members == 1:
            members = sample_members(cfg.q_members, cfg.q_train_samples, self.generator, self.device)
            route = None
        else:
            members, pick = random_members(cfg.q_members, cfg.q_train_samples, batch, self.generator, self.device)
            route = group_by_member(pick, subset_size(cfg.q_members, members))
        imagined_members = imagined_route = None
        if tdk:
            imagined_members = self._eval_members()
            count = subset_size(cfg.q_members, imagined_members)
            if count > 1:   # one member: nothing to choose (and no draw)
                transition_members, frames = self._imagined[0].shape[:2]
                pick = torch.randint(count, (batch,), generator=self.generator, device=self.device)
                imagined_route = group_by_member(pick.repeat(transition_members * frames), count)  # rows (m, k, b)
        return members, route, imagined_members, imagined_route

    def _q_loss_eager(self, obs, action, targets, reach, members, route, imagined_members, imagined_route):
        """½ reach (Q(s, a) − y)², mean; Q(s, a) [B] (routed) or [L', B] (full routing); with TD-k
        also Q at the imagined states, mean over the model's rollouts."""
        q_guess = (self.q(obs, action, members=members) if route is None
                   else self.q.routed(obs, action, route, members))
        if targets.shape[0] > 1:
            q_guess = torch.cat([q_guess[None] if q_guess.dim() == 1 else q_guess.mean(0, keepdim=True),
                                 self._imagined_guesses(imagined_members, imagined_route)], 0)
        return (0.5 * reach * (q_guess - targets) ** 2).mean()

    def _imagined_guesses(self, subset, route) -> torch.Tensor:
        """TD-k: Q at the imagined (s_k, a_k), k = 0..H−1, then the mean over transition members -> [H, B]."""
        states, actions = self._imagined                                # [M, H, B, .]
        members, frames, batch = states.shape[:3]
        if route is None:   # a single member
            return self.q(states, actions, members=subset)[0].mean(0)
        guesses = self.q.routed(states.flatten(0, 2), actions.flatten(0, 2), route, subset)
        return guesses.view(members, frames, batch).mean(0)

    def _policy_loss_eager(self, obs, members):
        """(−mean_l Q_l(s, π(s)) over the eval subset `members`, with Q frozen; 1e-3·mean(pre²))."""
        pre = self.policy.pre_tanh(obs)
        value = self.q(obs, torch.tanh(pre), members=members, frozen=True).mean(0)
        return -value.mean(), self.cfg.policy_reg * (pre ** 2).mean()

    @torch.no_grad()
    def act(self, obs: torch.Tensor) -> torch.Tensor:
        """tanh(π(obs)) on the CPU, whatever the learner's device."""
        return self.policy(obs.to(self.device)).cpu()

    def state_dict(self) -> dict:
        return {"policy": self.policy.state_dict(), "q": self.q.state_dict(),
                "q_target": self.q_target.state_dict(), "policy_opt": self.policy_opt.state_dict(),
                "q_opt": self.q_opt.state_dict(), "generator": self.generator.get_state(),
                "generator_device": self.generator.device.type, "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        for name in ("policy", "q", "q_target", "policy_opt", "q_opt"):
            getattr(self, name).load_state_dict(state[name])
        load_generator_state(self.generator, state["generator"], state.get("generator_device", "cpu"))
        self.updates = state["updates"]


class WorldModelLearner:
    """Adam on the world model's loss (reference worldmodel_learner.py). `transition_samples` /
    `reward_samples` = (train_sample_count, eval_sample_count) of each ensemble (None: every
    member), kept on the WorldModel."""

    def __init__(self, obs_dim: int, action_dim: int, transition_members: int, reward_members: int,
                 seed: int, lr: float = 3e-4, l2_weight: float = 1e-4, full_batch: bool = False,
                 device: str | torch.device = "cpu", transition_samples: tuple[int, int] | None = None,
                 reward_samples: tuple[int, int] | None = None, compile: bool = False, **sizes):
        """`compile`: the loss and its gradient through torch.compile (the draws stay eager)."""
        self.device = torch.device(device)
        if self.device.type == "cpu":
            keep_freed_memory()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.model = WorldModel(obs_dim, action_dim, transition_members, reward_members,
                                    transition_samples=transition_samples,
                                    reward_samples=reward_samples, **sizes).to(self.device)
        # the L2 term's gradient l2_weight·θ is Adam's weight_decay (added to the gradient before
        # the moments: the reference's L2 loss, not AdamW's decoupled decay)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=lr, weight_decay=l2_weight, fused=True)
        self.generator = torch.Generator(self.device).manual_seed(seed + 2)
        self.full_batch, self.l2_weight = full_batch, l2_weight
        self._loss = compiled(self.model.loss_given_draws, "steve") if compile else self.model.loss_given_draws
        self.updates = 0

    def update(self, batch) -> dict:
        obs, action, reward, next_obs, done = to_device(batch, self.device)
        draws = self.model.training_draws(obs.shape[0], self.generator, self.device, self.full_batch)
        loss, parts = self._loss(obs, action, reward, next_obs, done, draws, self.l2_weight, False)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.updates += 1
        return {"worldmodel_loss": loss.item(), **{name: value.item() for name, value in parts.items()}}

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "opt": self.opt.state_dict(),
                "generator": self.generator.get_state(), "generator_device": self.generator.device.type,
                "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["opt"])
        for group in self.opt.param_groups:  # older checkpoints kept the L2 term in the loss
            group["weight_decay"] = self.l2_weight
        load_generator_state(self.generator, state["generator"], state.get("generator_device", "cpu"))
        self.updates = state["updates"]
