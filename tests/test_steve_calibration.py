"""steve.models.calibration: the ensembles' error over their spread, on real transitions."""
import math

import torch

from steve.models import WorldModel, calibration


class Offsets:
    """A fake world model: s' = s + a (the env's true dynamics, S = A) plus member m's constant
    offset c_m; reward members guess r + d_n."""

    def __init__(self, c, d):
        self.c, self.d, self.members, self.reward_members = torch.tensor(c), torch.tensor(d), len(c), len(d)

    def transition(self, obs, action):
        return obs + action + self.c.view(-1, 1, 1)

    def reward(self, obs, action, next_obs):
        return (next_obs - obs - action).sum(-1) + 1.0 + self.d.view(-1, 1)   # true r = 1


def real_episode(length=50, dim=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    obs = torch.randn(length + 1, dim, generator=g).cumsum(0)
    action = torch.randn(length, dim, generator=g)
    states = [obs[0]]
    for a in action:   # the true dynamics: s' = s + a
        states.append(states[-1] + a)
    states = torch.stack(states)
    return states[:-1], action, torch.ones(length), states[1:]


def test_rollouts_use_the_real_actions_in_order():
    """ŝ_{t+k} - s_{t+k} = k c_m exactly when the k actions are aligned, so every horizon gives
    mean(c)² S / (var(c) S) = mean(c)² / var(c); a misaligned action would add an error."""
    c, d = [0.1, 0.3, -0.2, 0.4], [0.5, -0.5, 1.0, 0.0]
    result = calibration(Offsets(c, d), *real_episode(), horizon=4)
    expected = torch.tensor(c).mean() ** 2 / torch.tensor(c).var()
    for k in range(1, 5):
        assert math.isclose(result[f"state_{k}"], expected.item(), rel_tol=1e-4), (k, result)
    assert math.isclose(result["reward_1"], (torch.tensor(d).mean() ** 2 / torch.tensor(d).var()).item(),
                        rel_tol=1e-4)


def test_a_calibrated_ensemble_scores_about_one_plus_one_over_m():
    """Members and truth drawn alike around one mean: E[error] / E[var] = 1 + 1/M (1.25 for 4)."""
    g = torch.Generator().manual_seed(1)
    length, dim, members = 20000, 4, 4

    class Noisy:
        def __init__(self):
            self.members = self.reward_members = members

        def transition(self, obs, action):
            return obs + action + torch.randn(members, *obs.shape[1:], generator=g)

        def reward(self, obs, action, next_obs):
            return torch.randn(members, obs.shape[0], generator=g)

    obs = torch.zeros(length, dim)
    action = torch.zeros(length, dim)
    next_obs = torch.randn(length, dim, generator=g)
    result = calibration(Noisy(), obs, action, torch.randn(length, generator=g), next_obs, horizon=1)
    assert abs(result["state_1"] - 1.25) < 0.05 and abs(result["reward_1"] - 1.25) < 0.05, result


def test_a_real_world_model_gives_finite_ratios_and_draws_no_random_numbers():
    torch.manual_seed(0)
    model = WorldModel(3, 3, 4, 4, transition_hidden=16, transition_layers=2, aux_hidden=8, aux_layers=1)
    before = torch.get_rng_state()
    result = calibration(model, *real_episode(length=10), horizon=3)
    assert torch.equal(before, torch.get_rng_state())
    assert sorted(result) == ["reward_1", "state_1", "state_2", "state_3"]
    assert all(math.isfinite(v) and v > 0 for v in result.values())
    short = calibration(model, *real_episode(length=2), horizon=3)   # an episode shorter than H
    assert sorted(short) == ["reward_1", "state_1", "state_2"]


def test_a_one_member_ensemble_has_no_ratio():
    """MVE's model has one member: no spread, so no ratio (never a NaN in the log)."""
    torch.manual_seed(0)
    model = WorldModel(3, 3, 1, 1, transition_hidden=16, transition_layers=2, aux_hidden=8, aux_layers=1)
    assert calibration(model, *real_episode(length=10), horizon=3) == {}
