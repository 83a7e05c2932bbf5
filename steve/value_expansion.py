"""Value-expansion targets (Buckman et al., NeurIPS 2018, Sec. 3-4): DDPG's one-step target, MVE's
H-step model-based target and STEVE's inverse-variance weighted mix of all horizons, from one
batched computation over (transition member m, reward member n, Q member l, horizon j).

Shapes, with B examples, M transition (and done) models, N reward models, L target Q members:
    states   [M, H+1, B, S]   s_0 = s' (the real next state), s_{k+1} = s_k + Δ_m(s_k, a_k)
    actions  [M, H+1, B, A]   a_k = tanh(π(s_k)), the online policy without noise
    dones    [M, H+1, B]      d_0 = the real done, d_k = sigmoid(done_m(s_k, s_{k-1}, a_{k-1}))
    rewards  [N, M, H, B]     r̂_k = R_n(s_{k-1}, a_{k-1}, s_k), k = 1..H
    q_values [L, M, H+1, B]   Q_target,l(s_j, a_j)
With sampled ensembles (the reference's eval_sample_count), M, N and L are the sizes of the
subsets drawn for one target: M_eval·N_eval·L_eval candidate samples per horizon.
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
    imagined trajectory (one per member, fixed along the rollout).

    Only the policy and the transition feed the next step, so the loop runs just those; the done,
    reward and target-Q models then score every frame in one call each (fewer, larger matmuls).
    s_0 = s' is the same for every member, so π(s_0) and Q(s_0, π(s_0)) are computed once and
    broadcast over m, and the first transition gets the shared [B, S] batch.

    The callables take any number of rows B' (the frames are stacked along the batch axis):
    policy(s [.., S]) -> a; transition(s, a) -> s_next [M, B, S], with s, a either [M, B, .]
    (member m on slice m) or [B, .] (one batch for every member); done_prob(s_next, s, a)
    [M, B', .] -> [M, B']; reward(s, a, s_next) [M, B', .] -> [N, M, B'] (every reward member
    scores every imagined transition); q_target(s [B', S], a) -> [L, B']."""
    batch = next_obs.shape[0]
    first_action = policy(next_obs)                                      # π(s_0), once
    state, action = next_obs, first_action
    steps, step_actions = [], []
    for _ in range(horizon):
        state = transition(state, action)                                # [M, B, S]
        action = policy(state)
        steps.append(state)
        step_actions.append(action)
    states = torch.stack([next_obs.expand(members, *next_obs.shape), *steps], 1)      # [M, H+1, B, S]
    actions = torch.stack([first_action.expand(members, *first_action.shape), *step_actions], 1)
    dones = real_done.float().expand(members, 1, batch)
    if not horizon:
        q_first = q_target(next_obs, first_action)[:, None, None].expand(-1, members, 1, batch)
        return Rollout(states, actions, dones, next_obs.new_zeros(0), q_first)

    def frames(x):  # [M, H, B, .] -> [M, H·B, .]
        return x.flatten(1, 2)

    before, after, taken = frames(states[:, :-1]), frames(states[:, 1:]), frames(actions[:, :-1])
    imagined_dones = done_prob(after, before, taken).view(members, horizon, batch)
    rewards = reward(before, taken, after)
    rewards = rewards.view(rewards.shape[0], members, horizon, batch)              # [N, M, H, B]
    # Q at s_0 once, then at every imagined frame, in one call: [L, B + M·H·B]
    q = q_target(torch.cat([next_obs, after.flatten(0, 1)]),
                 torch.cat([first_action, frames(actions[:, 1:]).flatten(0, 1)]))
    q_values = torch.cat([q[:, None, None, :batch].expand(-1, members, 1, batch),
                          q[:, batch:].view(-1, members, horizon, batch)], 2)     # [L, M, H+1, B]
    return Rollout(states, actions, torch.cat([dones, imagined_dones], 1), rewards, q_values)


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
    deviations = samples - means[:, None]
    variances = (deviations * deviations).mean(1)  # two passes: ~8x faster than torch.var here
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
