"""steve/api.py: STEVE's and MVE's targets as functions over tensors and callables, and the
README's "Use it in your code" example."""
import numpy as np
import pytest
import torch

from steve.api import mve_target, steve_target
from steve.models import WorldModel
from steve.valuerl import ValueConfig, ValueLearner
from helpers import run_readme_example

GAMMA = 0.9
S, A = 3, 2


def toy_models(M=3, N=2, L=2, seed=0):
    """Small deterministic nonlinear callables in float64: M transitions, N rewards, L Qs, a done
    model per transition member, a tanh policy."""
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(M, S + A, S, generator=g, dtype=torch.float64) * 0.5
    R = torch.randn(N, 2 * S + A, generator=g, dtype=torch.float64)
    Q = torch.randn(L, S + A, generator=g, dtype=torch.float64)
    P = torch.randn(S, A, generator=g, dtype=torch.float64)
    D = torch.randn(M, S, generator=g, dtype=torch.float64)
    return dict(
        policy=lambda s: torch.tanh(s @ P),
        transition=[lambda s, a, m=m: s + torch.sin(torch.cat([s, a], -1) @ W[m]) for m in range(M)],
        reward_fn=lambda s, a, s1: torch.tanh(torch.cat([s, a, s1], -1) @ R.T).T,
        done_fn=[lambda s1, s, a, m=m: 0.3 * torch.sigmoid(s1 @ D[m]) for m in range(M)],
        q_target=lambda s, a: torch.cos(torch.cat([s, a], -1) @ Q.T).T * 10)


def batch(B=4, seed=1):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(B, generator=g, dtype=torch.float64),
            torch.randn(B, S, generator=g, dtype=torch.float64),
            (torch.rand(B, generator=g) < 0.3).double())


def brute_force(reward, next_obs, done, H, models):
    """T_j for every (j, m, n, l, b), one number at a time from the callables, then STEVE's
    inverse-variance mix and MVE's T_H mean."""
    pol, trans, rew, dones, q = (models[k] for k in ("policy", "transition", "reward_fn", "done_fn",
                                                     "q_target"))
    M, B = len(trans), reward.shape[0]
    N = rew(next_obs[:1], pol(next_obs[:1]), next_obs[:1]).shape[0]
    L = q(next_obs[:1], pol(next_obs[:1])).shape[0]
    T = np.zeros((H + 1, M, N, L, B))
    for b in range(B):
        for m in range(M):
            s = next_obs[b:b + 1]
            states, rewards, cont = [s], [], [1.0 - done[b].item()]
            for _ in range(H):
                a = pol(s)
                s1 = trans[m](s, a)
                rewards.append(rew(s, a, s1)[:, 0])
                cont.append(cont[-1] * (1.0 - dones[m](s1, s, a)[0].item()))
                states.append(s1)
                s = s1
            for j in range(H + 1):
                qs = q(states[j], pol(states[j]))[:, 0]
                for n in range(N):
                    for l in range(L):
                        total = reward[b].item()
                        for k in range(1, j + 1):
                            total += GAMMA ** k * cont[k - 1] * rewards[k - 1][n].item()
                        T[j, m, n, l, b] = total + GAMMA ** (j + 1) * cont[j] * qs[l].item()
    samples = T.reshape(H + 1, -1, B)
    w = 1.0 / (samples.var(1) + 1e-8)
    w /= w.sum(0)
    return T, (w * samples.mean(1)).sum(0), samples[-1].mean(0)


# -- (b) fast tests -------------------------------------------------------------------------------
@pytest.mark.parametrize("H", [1, 3])
def test_equal_to_a_brute_force_loop_over_the_callables(H):
    models, (r, s1, d) = toy_models(), batch()
    expected_T, expected_steve, expected_mve = brute_force(r, s1, d, H, models)
    target, info = steve_target(r, s1, d, gamma=GAMMA, horizon=H, **models)
    assert info["candidates"].shape == (H + 1, 3, 2, 2, 4) and target.shape == (4,)
    np.testing.assert_allclose(info["candidates"].numpy(), expected_T, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(target.numpy(), expected_steve, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(info["weights"].sum(0).numpy(), 1.0, rtol=1e-12)
    mve, _ = mve_target(r, s1, d, gamma=GAMMA, horizon=H, **models)
    np.testing.assert_allclose(mve.numpy(), expected_mve, rtol=1e-12, atol=1e-12)
    assert (target - mve).abs().max() > 1e-3            # the two reductions differ


@pytest.mark.parametrize("algo", ["steve", "mve", "ddpg"])
def test_equal_to_the_training_scripts_target(algo):
    """ValueLearner.targets (valuerl.py, with its batched WorldModel) and the API given the same
    networks as plain callables (one per transition member), in float64: the same target."""
    torch.manual_seed(0)
    M, N, L, H, B = 3, 2, 2, 3, 6
    cfg = ValueConfig(algo=algo, rollout_len=H, q_members=L, hidden_dim=16, hidden_layers=2,
                      discount=GAMMA)
    learner = ValueLearner(S, A, cfg, seed=0)
    world = WorldModel(S, A, M, N, transition_hidden=16, transition_layers=2, aux_hidden=16,
                       aux_layers=2).double()
    learner.policy.double(), learner.q_target.double()
    r, s1, d = batch(B, seed=2)
    internal, _, _ = learner.targets(r, s1, d, world)
    members = [torch.tensor([m]) for m in range(M)]
    models = dict(
        policy=learner.policy, q_target=learner.q_target,
        transition=[lambda s, a, m=m: world.transition(s[None], a[None], members=members[m])[0]
                    for m in range(M)],
        reward_fn=lambda s, a, s_next: world.reward(s, a, s_next),
        done_fn=[lambda s_next, s, a, m=m: world.done_prob(s_next[None], s[None], a[None],
                                                           members=members[m])[0] for m in range(M)])
    api = steve_target if algo == "steve" else mve_target
    target, _ = api(r, s1, d, gamma=GAMMA, horizon=0 if algo == "ddpg" else H, **models)
    assert target.dtype == torch.float64
    assert (target - internal[0]).abs().max().item() <= 1e-12


def test_horizon_zero_is_the_ddpg_target():
    models, (r, s1, d) = toy_models(), batch()
    q = models["q_target"](s1, models["policy"](s1)).mean(0)
    expected = r + GAMMA * (1 - d) * q
    # rtol 1e-7: with H = 0, value_expansion's γ^j come in float32 (it casts the real done with
    # .float()), whatever the inputs' dtype
    for api in (steve_target, mve_target):
        target, info = api(r, s1, d, gamma=GAMMA, horizon=0, policy=models["policy"], transition=None,
                           reward_fn=None, done_fn=None, q_target=models["q_target"])
        np.testing.assert_allclose(target.numpy(), expected.numpy(), rtol=1e-7)
        target, _ = api(r, s1, d, gamma=GAMMA, horizon=0, **models)   # models given: unused
        np.testing.assert_allclose(target.numpy(), expected.numpy(), rtol=1e-7)
    assert info["candidates"].shape == (1, 1, 1, 2, 4)


def test_single_q_single_reward_and_no_done_model():
    """q_target and reward_fn may return [B'] (L = N = 1); done_fn None never terminates."""
    models, (r, s1, d) = toy_models(M=2, N=1, L=1), batch()
    flat = dict(models, q_target=lambda s, a: models["q_target"](s, a)[0],
                reward_fn=lambda s, a, s_next: models["reward_fn"](s, a, s_next)[0])
    never = dict(models, done_fn=lambda s_next, s, a: torch.zeros(s.shape[0], dtype=s.dtype))
    for a, b in ((models, flat), (dict(models, done_fn=None), never)):
        ta, ia = steve_target(r, s1, d, gamma=GAMMA, horizon=2, **a)
        tb, ib = steve_target(r, s1, d, gamma=GAMMA, horizon=2, **b)
        assert torch.equal(ta, tb) and torch.equal(ia["candidates"], ib["candidates"])
    assert (ia["rollout"].dones[:, 1:] == 0).all()


def bad(**change):
    models, (r, s1, d) = toy_models(), batch()
    kwargs = dict(reward=r, next_obs=s1, done=d, gamma=GAMMA, horizon=2, **models)
    kwargs.update(change)
    return kwargs


@pytest.mark.parametrize("change,name", [
    (dict(horizon=-1), "horizon"), (dict(horizon=1.5), "horizon"),
    (dict(gamma=1.5), "gamma"), (dict(gamma=-0.1), "gamma"), (dict(gamma=float("nan")), "gamma"),
    (dict(reward=torch.zeros(5, dtype=torch.float64)), "reward"),
    (dict(done=torch.zeros(4, 1)), "done"),
    (dict(next_obs=torch.zeros(4, 2, 3)), "next_obs"),
    (dict(reward=[0.0] * 4), "reward"),
    (dict(policy=lambda s: torch.zeros(1, A, dtype=s.dtype)), "policy"),
    (dict(transition=[lambda s, a: s[:, :2]] * 3), "transition[0]"),
    (dict(transition=lambda s, a: s), "transition"),
    (dict(transition=[]), "transition"),
    (dict(reward_fn=lambda s, a, s1: torch.zeros(2, 3, dtype=s.dtype)), "reward_fn"),
    (dict(reward_fn=None), "reward_fn"),
    (dict(done_fn=lambda s1, s, a: torch.zeros(s.shape[0], 1)), "done_fn"),
    (dict(done_fn=[lambda s1, s, a: torch.zeros(s.shape[0])] * 2), "done_fn"),
    (dict(q_target=lambda s, a: torch.zeros(2, s.shape[0] + 1, dtype=s.dtype)), "q_target"),
    (dict(q_target=lambda s, a: torch.zeros(s.shape[0], 2, dtype=s.dtype)), "q_target"),
])
@pytest.mark.parametrize("api", [steve_target, mve_target])
def test_bad_arguments_raise_one_value_error_naming_the_argument(api, change, name):
    with pytest.raises(ValueError) as error:
        api(**bad(**change))
    assert str(error.value).startswith(name), str(error.value)


# -- (a) the README example -------------------------------------------------------------------------
@pytest.mark.slow
def test_readme_example_runs_from_a_copy_of_the_folder(tmp_path):
    done = run_readme_example("steve", tmp_path, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    assert "greedy return" in done.stdout
