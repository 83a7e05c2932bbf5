"""STEVE's and MVE's critic targets as functions for your own DDPG / TD3 update (Buckman et al.,
NeurIPS 2018, Sec. 3-4), over plain tensors and your own callables: an ensemble of dynamics
models, a reward model (or ensemble), a done model and a target Q (or Q ensemble).

    from steve.api import steve_target
    y, info = steve_target(r, s1, d, gamma=0.99, horizon=3, policy=actor, transition=[f1, f2, f3],
                           reward_fn=reward_model, done_fn=None, q_target=critic_target)
    critic_loss = ((critic(s, a).squeeze(-1) - y) ** 2).mean()

These wrap the code the training script uses (`steve.value_expansion`: `imagine` rolls the
models, `candidate_targets` builds T_j for every (m, n, l, j), `steve_combine` / the MVE mean
reduce them), so they give the same numbers. No global state; the rollout runs under
torch.no_grad(), so the target carries no gradient. Sizes: B examples, S state and A action
dimensions, M transition models, N reward models, L target Q functions, H = horizon.

The callables (B' is any number of rows: the frames of the rollout are stacked along it):
    policy(s [B', S]) -> a [B', A]                  the deterministic actor (DDPG's tanh output)
    transition: a sequence of M callables f_m(s [B, S], a [B, A]) -> s_next [B, S]; member m keeps
        its own imagined trajectory s_{k+1} = f_m(s_k, π(s_k)) from s_0 = s' (the real next state)
    reward_fn(s [B', S], a [B', A], s_next [B', S]) -> [N, B'] (every reward model scores every
        imagined transition) or [B'] (N = 1)
    done_fn(s_next [B', S], s [B', S], a [B', A]) -> [B'], the probability that s_next ends the
        episode; or a sequence of M such callables (done model m follows transition m); or None
        (the task never terminates: every imagined done is 0)
    q_target(s [B', S], a [B', A]) -> [L, B'] or [B'] (L = 1)
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from steve.value_expansion import Rollout, candidate_targets, imagine, steve_combine
from steve.value_expansion import mve_target as _mve_reduce

__all__ = ["mve_target", "steve_target"]


def steve_target(reward: torch.Tensor, next_obs: torch.Tensor, done: torch.Tensor, *, gamma: float,
                 horizon: int, policy: Callable, transition: Sequence[Callable] | None,
                 reward_fn: Callable | None, done_fn: Callable | Sequence[Callable] | None,
                 q_target: Callable) -> tuple[torch.Tensor, dict]:
    """STEVE's target for a batch of real transitions (s, a, r, s', d): returns (target [B], info).

    reward [B], next_obs [B, S], done [B] (1 where s' is terminal; bool or float). From s' each
    transition model m rolls the policy H = `horizon` steps; with c_j = Π_{k≤j}(1 − d_k) (d_0 = done,
    d_k = done_fn of imagined step k) the candidate targets are
        T_j = r + Σ_{k=1..j} γ^k c_{k−1} r̂_k + γ^{j+1} c_j Q_l(s_j, π(s_j)),   j = 0..H,
    one per (m, n, l). For each j, μ_j and σ²_j are the mean and population variance of its
    M·N·L samples; the target is Σ_j w_j μ_j with w_j ∝ 1/(σ²_j + 1e-8) (Eq. 5-6).
    horizon = 0 gives DDPG's r + γ(1 − d) Q(s', π(s')) (averaged over the L target Qs);
    `transition` and `reward_fn` may then be None.

    info: "weights" [H+1, B] (each column sums to 1), "means" and "variances" [H+1, B],
    "model_use" (scalar: 1 − mean_b w_0), "candidates" [H+1, M, N, L, B] and "rollout"
    (`steve.value_expansion.Rollout`: states [M, H+1, B, S], actions [M, H+1, B, A], dones
    [M, H+1, B], rewards [N, M, H, B], q_values [L, M, H+1, B]).
    Raises ValueError, naming the argument, for a negative horizon, gamma outside [0, 1],
    mismatched batch sizes or a callable that returns the wrong shape."""
    candidates, rollout = _candidates(reward, next_obs, done, gamma, horizon, policy, transition,
                                      reward_fn, done_fn, q_target)
    combined = steve_combine(candidates)
    return combined.target, {"weights": combined.weights, "means": combined.means,
                             "variances": combined.variances, "model_use": combined.model_use,
                             "candidates": candidates, "rollout": rollout}


def mve_target(reward: torch.Tensor, next_obs: torch.Tensor, done: torch.Tensor, *, gamma: float,
               horizon: int, policy: Callable, transition: Sequence[Callable] | None,
               reward_fn: Callable | None, done_fn: Callable | Sequence[Callable] | None,
               q_target: Callable) -> tuple[torch.Tensor, dict]:
    """MVE's target (Feinberg et al. 2018): T_H, the H-step model-based expansion (formula in
    `steve_target`), averaged over the M·N·L (transition, reward, Q) samples; with one model of
    each that is MVE's single rollout. Same arguments and shapes as `steve_target`; returns
    (target [B], info) with info "candidates" [H+1, M, N, L, B] and "rollout". horizon = 0 gives
    DDPG's target. (Without MVE's TD-k trick: the critic is trained on the real s only.)"""
    candidates, rollout = _candidates(reward, next_obs, done, gamma, horizon, policy, transition,
                                      reward_fn, done_fn, q_target)
    return _mve_reduce(candidates), {"candidates": candidates, "rollout": rollout}


# -- checks and adapters to `imagine`'s batched conventions ------------------------------------------
def _candidates(reward, next_obs, done, gamma, horizon, policy, transition, reward_fn, done_fn,
                q_target) -> tuple[torch.Tensor, Rollout]:
    if isinstance(horizon, bool) or not isinstance(horizon, int) or horizon < 0:
        raise ValueError(f"horizon must be an integer >= 0: got {horizon!r}")
    if isinstance(gamma, bool) or not isinstance(gamma, (int, float)) or not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma must be a number in [0, 1]: got {gamma!r}")
    for name, value in (("reward", reward), ("next_obs", next_obs), ("done", done)):
        if not isinstance(value, torch.Tensor):
            raise ValueError(f"{name} must be a torch.Tensor: got {type(value).__name__}")
    if next_obs.dim() != 2:
        raise ValueError(f"next_obs must be [B, S]: got shape {tuple(next_obs.shape)}")
    batch, state_dim = next_obs.shape
    for name, value in (("reward", reward), ("done", done)):
        if value.shape != (batch,):
            raise ValueError(f"{name} must be [B] with B = {batch} (next_obs's batch): "
                             f"got shape {tuple(value.shape)}")
    if not callable(policy):
        raise ValueError("policy must be a callable s [B', S] -> a [B', A]")
    if not callable(q_target):
        raise ValueError("q_target must be a callable (s [B', S], a [B', A]) -> [L, B'] or [B']")
    pi = _policy(policy, state_dim)
    q = _q_target(q_target)
    if not horizon:
        rollout = imagine(next_obs, done, 0, 1, policy=pi, transition=None, done_prob=None,
                          reward=None, q_target=q)
        return candidate_targets(reward, rollout, float(gamma)), rollout
    if (transition is None or callable(transition) or not isinstance(transition, Sequence)
            or not transition or not all(callable(f) for f in transition)):
        raise ValueError("transition must be a non-empty sequence of M callables "
                         "f_m(s [B, S], a [B, A]) -> s_next [B, S] (horizon > 0)")
    if not callable(reward_fn):
        raise ValueError("reward_fn must be a callable (s, a, s_next) [B', .] -> [N, B'] or [B'] "
                         "(horizon > 0)")
    members = len(transition)
    rollout = imagine(next_obs, done, horizon, members, policy=pi,
                      transition=_transition(transition, batch, state_dim),
                      done_prob=_done(done_fn, members), reward=_reward(reward_fn), q_target=q)
    return candidate_targets(reward, rollout, float(gamma)), rollout


def _shape_error(name: str, got, expected: str) -> ValueError:
    shape = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
    return ValueError(f"{name} returned {shape}, expected {expected}")


def _policy(policy, state_dim):
    def run(s):                                          # [.., S] -> [.., A]
        flat = s.reshape(-1, state_dim)
        a = policy(flat)
        if not isinstance(a, torch.Tensor) or a.dim() != 2 or a.shape[0] != flat.shape[0]:
            raise _shape_error("policy", a, f"[B', A] with B' = {flat.shape[0]}")
        return a.reshape(*s.shape[:-1], a.shape[-1])
    return run


def _q_target(q_target):
    def run(s, a):                                       # [B', .] -> [L, B']
        q = q_target(s, a)
        if isinstance(q, torch.Tensor) and q.shape == (s.shape[0],):
            return q[None]
        if not isinstance(q, torch.Tensor) or q.dim() != 2 or q.shape[1] != s.shape[0]:
            raise _shape_error("q_target", q, f"[L, B'] or [B'] with B' = {s.shape[0]}")
        return q
    return run


def _transition(models, batch, state_dim):
    def run(s, a):                                       # [B, .] or [M, B, .] -> [M, B, S]
        out = []
        for m, f in enumerate(models):
            nxt = f(s, a) if s.dim() == 2 else f(s[m], a[m])
            if not isinstance(nxt, torch.Tensor) or nxt.shape != (batch, state_dim):
                raise _shape_error(f"transition[{m}]", nxt, f"[B, S] = {(batch, state_dim)}")
            out.append(nxt)
        return torch.stack(out)
    return run


def _reward(reward_fn):
    def run(s, a, s1):                                   # [M, B', .] -> [N, M, B']
        rows = s.shape[0] * s.shape[1]
        r = reward_fn(s.flatten(0, 1), a.flatten(0, 1), s1.flatten(0, 1))
        if isinstance(r, torch.Tensor) and r.shape == (rows,):
            r = r[None]
        if not isinstance(r, torch.Tensor) or r.dim() != 2 or r.shape[1] != rows:
            raise _shape_error("reward_fn", r, f"[N, B'] or [B'] with B' = {rows}")
        return r.view(r.shape[0], *s.shape[:2])
    return run


def _done(done_fn, members):
    if done_fn is None:
        return lambda s1, s, a: s.new_zeros(s.shape[:2])
    if callable(done_fn):
        def shared(s1, s, a):                            # [M, B', .] -> [M, B']
            rows = s.shape[0] * s.shape[1]
            d = done_fn(s1.flatten(0, 1), s.flatten(0, 1), a.flatten(0, 1))
            if not isinstance(d, torch.Tensor) or d.shape != (rows,):
                raise _shape_error("done_fn", d, f"[B'] with B' = {rows}")
            return d.reshape(s.shape[:2])
        return shared
    if (not isinstance(done_fn, Sequence) or len(done_fn) != members
            or not all(callable(f) for f in done_fn)):
        raise ValueError(f"done_fn must be None, a callable, or a sequence of M = {members} callables "
                         "(one per transition model)")

    def per_member(s1, s, a):
        out = []
        for m, f in enumerate(done_fn):
            d = f(s1[m], s[m], a[m])
            if not isinstance(d, torch.Tensor) or d.shape != (s.shape[1],):
                raise _shape_error(f"done_fn[{m}]", d, f"[B'] with B' = {s.shape[1]}")
            out.append(d)
        return torch.stack(out)
    return per_member

