"""Value-expansion targets (Buckman et al., NeurIPS 2018, Sec. 3-4): DDPG's one-step target, MVE's
H-step model-based target and STEVE's inverse-variance weighted mix of all horizons, from one
batched computation over (transition member m, reward member n, Q member l, horizon j).

Shapes, with B examples, M transition (and done) models, N reward models, L target Q members:
    states   [M, H+1, B, S]   s_0 = s' (the real next state), s_{k+1} = s_k + Δ_m(s_k, a_k)
    actions  [M, H+1, B, A]   a_k = tanh(π(s_k)), the online policy without noise
    dones    [M, H+1, B]      d_0 = the real done, d_k = sigmoid(done_m(s_k, s_{k-1}, a_{k-1}))
    rewards  [N, M, H, B]     r̂_k = R_n(s_{k-1}, a_{k-1}, s_k), k = 1..H
    q_values [L, M, H+1, B]   Q_target,l(s_j, a_j)
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import torch

VARIANCE_EPS = 1e-8  # the reference's floor under σ²_j


class Rollout(NamedTuple):
    states: torch.Tensor
    actions: torch.Tensor
    dones: torch.Tensor
    rewards: torch.Tensor
    q_values: torch.Tensor


@torch.no_grad()
def imagine(next_obs: torch.Tensor, real_done: torch.Tensor, horizon: int, members: int,
            policy: Callable, transition: Callable, done_prob: Callable, reward: Callable,
            q_target: Callable) -> Rollout:
    """Roll the models H steps from the real next state, each transition member m keeping its own
    imagined trajectory (the batch is tiled once per member, which stays fixed along the rollout).

    policy(s [.., S]) -> a; transition(s [M, B, S], a) -> s_next [M, B, S] (member m on slice m);
    done_prob(s_next, s, a) -> [M, B]; reward(s, a, s_next) -> [N, M, B] (every reward member
    scores every imagined transition); q_target(s, a) -> [L, M, B]."""
    state = next_obs.unsqueeze(0).expand(members, *next_obs.shape)
    states, actions = [state], [policy(state)]
    dones = [real_done.unsqueeze(0).expand(members, *real_done.shape).float()]
    rewards = []
    for _ in range(horizon):
        nxt = transition(state, actions[-1])
        dones.append(done_prob(nxt, state, actions[-1]))
        rewards.append(reward(state, actions[-1], nxt))
        state = nxt
        states.append(state)
        actions.append(policy(state))
    q_values = torch.stack([q_target(s, a) for s, a in zip(states, actions)], dim=2)
    empty = next_obs.new_zeros(0)
    return Rollout(torch.stack(states, 1), torch.stack(actions, 1), torch.stack(dones, 1),
                   torch.stack(rewards, 2) if rewards else empty, q_values)


def continuation(dones: torch.Tensor) -> torch.Tensor:
    """c_j = Π_{k≤j} (1 − d_k): the probability the imagined episode is still running after step j."""
    return torch.cumprod(1.0 - dones, dim=1)


def candidate_targets(reward: torch.Tensor, rollout: Rollout, gamma: float) -> torch.Tensor:
    """T_j = r + Σ_{k=1..j} γ^k c_{k−1} r̂_k + γ^{j+1} c_j Q_l(s_j, a_j) for j = 0..H, for every
    (m, n, l): shape [H+1, M, N, L, B]. T_0 is the DDPG target. `reward` is the real reward [B],
    or [N, M, B] when the root is an imagined transition (the TD-k trick)."""
    cont = continuation(rollout.dones)                                  # [M, H+1, B]
    n_frames = cont.shape[1]
    powers = gamma ** torch.arange(n_frames + 1, dtype=cont.dtype, device=cont.device)
    partial = cont.new_zeros(1, cont.shape[0], 1, cont.shape[2])        # no imagined reward yet
    if n_frames > 1:
        imagined = powers[1:n_frames, None] * cont[:, :-1] * rollout.rewards  # [N, M, H, B]
        partial = torch.cat([partial.expand(imagined.shape[0], -1, -1, -1),
                             torch.cumsum(imagined, dim=2)], dim=2)    # [N, M, H+1, B]
    bootstrap = powers[1:, None] * cont * rollout.q_values               # [L, M, H+1, B]
    first = reward if reward.dim() == 1 else reward.permute(1, 0, 2)[None, :, :, None]
    return (first + partial.permute(2, 1, 0, 3)[:, :, :, None]        # [H+1, M, N, L, B]
            + bootstrap.permute(2, 1, 0, 3)[:, :, None])


def rooted_candidates(reward: torch.Tensor, rollout: Rollout, gamma: float) -> list[torch.Tensor]:
    """Candidate targets rooted at every frame (MVE's TD-k trick): element i holds the targets
    of the transition into frame i (i = 0: the real (s, a, r); i ≥ 1: the imagined s_{i−1} → s_i
    with reward r̂_i), over horizons j = i..H. Element 0 is `candidate_targets`."""
    out = [candidate_targets(reward, rollout, gamma)]
    n_frames = rollout.dones.shape[1]
    for i in range(1, n_frames):
        sliced = Rollout(rollout.states[:, i:], rollout.actions[:, i:], rollout.dones[:, i:],
                         rollout.rewards[:, :, i:], rollout.q_values[:, :, i:])
        out.append(candidate_targets(rollout.rewards[:, :, i - 1], sliced, gamma))
    return out


class SteveTarget(NamedTuple):
    target: torch.Tensor      # [B]
    weights: torch.Tensor     # [H+1, B], each column sums to 1
    means: torch.Tensor       # [H+1, B] μ_j
    variances: torch.Tensor   # [H+1, B] σ²_j
    model_use: torch.Tensor   # scalar: 1 − mean_b w_0


def steve_combine(candidates: torch.Tensor) -> SteveTarget:
    """STEVE (Eq. 5-6): μ_j and population variance σ²_j over the M·N·L samples of each horizon,
    w_j ∝ 1/(σ²_j + 1e-8), target Σ_j w_j μ_j. "Model use" = 1 − mean(w_0)."""
    samples = candidates.flatten(1, 3)                                   # [H+1, M·N·L, B]
    means = samples.mean(1)
    variances = samples.var(1, unbiased=False)
    inverse = 1.0 / (variances + VARIANCE_EPS)
    weights = inverse / inverse.sum(0, keepdim=True)
    return SteveTarget((weights * means).sum(0), weights, means, variances, 1.0 - weights[0].mean())


def mve_target(candidates: torch.Tensor) -> torch.Tensor:
    """MVE (Feinberg et al. 2018): the longest horizon's target T_H (one model, one Q: the mean
    over members is that single sample)."""
    return candidates[-1].flatten(0, 2).mean(0)


def ddpg_target(candidates: torch.Tensor) -> torch.Tensor:
    """DDPG: T_0 = r + γ (1 − d) Q_target(s', π(s')), averaged over Q members."""
    return candidates[0].flatten(0, 2).mean(0)
