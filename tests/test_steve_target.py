"""STEVE's target (Buckman et al. 2018): the batched computation against a brute-force loop over
(m, n, l, j), and the properties the paper states (H = 0 is DDPG, terminal gives r, weights)."""
import numpy as np
import pytest
import torch

from steve.value_expansion import (Rollout, candidate_targets, ddpg_target, imagine, mve_target,
                                   rooted_candidates, steve_combine)

GAMMA = 0.9


def random_rollout(M=4, N=3, L=2, H=3, B=5, seed=0, done_scale=0.3):
    g = torch.Generator().manual_seed(seed)
    dones = torch.rand(M, H + 1, B, generator=g, dtype=torch.float64) * done_scale
    dones[:, 0] = (torch.rand(B, generator=g) < 0.3).double()  # real done, the same for every m
    rollout = Rollout(states=torch.zeros(M, H + 1, B, 1, dtype=torch.float64),
                      actions=torch.zeros(M, H + 1, B, 1, dtype=torch.float64), dones=dones,
                      rewards=torch.randn(N, M, H, B, generator=g, dtype=torch.float64),
                      q_values=torch.randn(L, M, H + 1, B, generator=g, dtype=torch.float64) * 10)
    reward = torch.randn(B, generator=g, dtype=torch.float64)
    return reward, rollout


def brute_force(reward, rollout, gamma):
    """T_j[m, n, l, b] by the paper's formula, one number at a time."""
    N, M, H, B = rollout.rewards.shape
    L = rollout.q_values.shape[0]
    out = np.zeros((H + 1, M, N, L, B))
    d = rollout.dones.numpy()
    for j in range(H + 1):
        for m in range(M):
            for n in range(N):
                for l in range(L):
                    for b in range(B):
                        cont = lambda k: np.prod([1 - d[m, i, b] for i in range(k + 1)])  # noqa: E731
                        total = reward[b].item()
                        for k in range(1, j + 1):
                            total += gamma ** k * cont(k - 1) * rollout.rewards[n, m, k - 1, b].item()
                        total += gamma ** (j + 1) * cont(j) * rollout.q_values[l, m, j, b].item()
                        out[j, m, n, l, b] = total
    return out


def test_candidate_targets_equal_the_brute_force_loop():
    reward, rollout = random_rollout()
    np.testing.assert_allclose(candidate_targets(reward, rollout, GAMMA).numpy(),
                               brute_force(reward, rollout, GAMMA), rtol=1e-10, atol=1e-10)


def test_steve_target_equals_inverse_variance_weighting_computed_by_hand():
    reward, rollout = random_rollout(seed=1)
    samples = brute_force(reward, rollout, GAMMA).reshape(4, -1, 5)      # [H+1, M·N·L, B]
    mu, var = samples.mean(1), samples.var(1)                           # population variance
    w = 1 / (var + 1e-8)
    w /= w.sum(0)
    result = steve_combine(candidate_targets(reward, rollout, GAMMA))
    np.testing.assert_allclose(result.target.numpy(), (w * mu).sum(0), rtol=1e-9)
    np.testing.assert_allclose(result.weights.sum(0).numpy(), 1.0, rtol=1e-12)
    assert result.model_use.item() == pytest.approx(1 - w[0].mean())


def test_horizon_zero_is_the_ddpg_target():
    reward, rollout = random_rollout(H=0, seed=2)
    # (random data: Q differs per transition member m; a real rollout has one s_0 for every m)
    expected = reward + GAMMA * (1 - rollout.dones[0, 0]) * rollout.q_values[:, :, 0].mean((0, 1))
    candidates = candidate_targets(reward, rollout, GAMMA)
    assert candidates.shape[0] == 1
    np.testing.assert_allclose(ddpg_target(candidates).numpy(), expected.numpy(), rtol=1e-12)
    result = steve_combine(candidates)
    np.testing.assert_allclose(result.target.numpy(), expected.numpy(), rtol=1e-9)
    assert result.model_use.item() == pytest.approx(0.0, abs=1e-12)


def test_a_real_terminal_transition_gives_target_r_for_every_horizon():
    reward, rollout = random_rollout(seed=3)
    rollout.dones[:, 0] = 1.0
    candidates = candidate_targets(reward, rollout, GAMMA)
    np.testing.assert_allclose(candidates.numpy(), np.broadcast_to(reward.numpy(), candidates.shape),
                               rtol=1e-12)
    np.testing.assert_allclose(steve_combine(candidates).target.numpy(), reward.numpy(), rtol=1e-6)


def test_equal_variances_give_equal_weights():
    # every horizon's samples are a shifted copy of the same spread: σ²_j equal for all j
    spread = torch.tensor([-1.0, 0.0, 2.0, 3.0], dtype=torch.float64)
    candidates = (spread.view(1, 4, 1, 1, 1) + torch.arange(4.0, dtype=torch.float64).view(4, 1, 1, 1, 1))
    result = steve_combine(candidates.expand(4, 4, 1, 1, 2))
    np.testing.assert_allclose(result.weights.numpy(), 0.25, rtol=1e-12)
    np.testing.assert_allclose(result.target.numpy(), (spread.mean() + 1.5).item(), rtol=1e-12)


def test_disagreeing_models_drive_model_use_to_zero_and_mve_follows_them():
    reward, rollout = random_rollout(seed=4, done_scale=0.0)
    rollout.dones[:, 0] = 0.0
    rollout.q_values[:] = 5.0                                # the Q ensemble agrees
    wild = Rollout(*rollout[:3], rollout.rewards * 1e4, rollout.q_values)  # the models do not
    candidates = candidate_targets(reward, wild, GAMMA)
    result = steve_combine(candidates)
    assert result.model_use.item() < 1e-6
    np.testing.assert_allclose(result.target.numpy(), (reward + GAMMA * 5.0).numpy(), rtol=1e-6)
    assert (mve_target(candidates) - result.target).abs().max() > 100  # MVE trusts the bad model


def test_imagine_tiles_per_member_and_scores_every_reward_member():
    M, N, L, H, B, S = 3, 2, 2, 2, 4, 1
    step = torch.arange(1.0, M + 1).view(M, 1, 1)            # member m moves by m + 1 per step
    rollout = imagine(torch.zeros(B, S), torch.zeros(B), H, M,
                      policy=lambda s: torch.tanh(s),
                      transition=lambda s, a: s + step,
                      done_prob=lambda s1, s, a: torch.zeros(s.shape[:2]),
                      reward=lambda s, a, s1: torch.stack([s1[..., 0] * (n + 1) for n in range(N)]),
                      q_target=lambda s, a: torch.stack([s[..., 0] + l for l in range(L)]))
    assert rollout.states.shape == (M, H + 1, B, S) and rollout.rewards.shape == (N, M, H, B)
    assert rollout.q_values.shape == (L, M, H + 1, B) and rollout.dones.shape == (M, H + 1, B)
    np.testing.assert_allclose(rollout.states[:, 2, 0, 0].numpy(), [2.0, 4.0, 6.0])
    np.testing.assert_allclose(rollout.rewards[1, 2, 0].numpy(), 2 * 3.0)  # n = 1, m = 2, k = 1
    np.testing.assert_allclose(rollout.actions[1, 1, 0, 0].item(), np.tanh(2.0), rtol=1e-6)


def test_rooted_candidates_match_the_reference_start_end_matrix():
    """The reference builds targets[start i, end j] with reward coefficients c_{k−1}/c_{i−1} and
    value coefficients c_j/c_{i−1}; frame 0's reward is the real r, frame k's is r̂_k."""
    reward, rollout = random_rollout(M=2, N=2, L=2, H=3, B=3, seed=5)
    N, M, H, B = rollout.rewards.shape
    d = rollout.dones.numpy()
    cont = np.cumprod(1 - d, axis=1)                                   # [M, H+1, B]
    shifted = np.concatenate([np.ones_like(cont[:, :1]), cont[:, :-1]], axis=1)
    rooted = rooted_candidates(reward, rollout, GAMMA)
    assert [t.shape[0] for t in rooted] == [4, 3, 2, 1]
    for i in range(H + 1):
        for j in range(i, H + 1):
            for m, n, l, b in np.ndindex(M, N, 2, B):
                total = 0.0
                for k in range(i, j + 1):
                    r_k = reward[b].item() if k == 0 else rollout.rewards[n, m, k - 1, b].item()
                    total += GAMMA ** (k - i) * shifted[m, k, b] / shifted[m, i, b] * r_k
                total += (GAMMA ** (j - i + 1) * cont[m, j, b] / shifted[m, i, b]
                          * rollout.q_values[l, m, j, b].item())
                assert rooted[i][j - i, m, n, l, b].item() == pytest.approx(total, rel=1e-9, abs=1e-9)
