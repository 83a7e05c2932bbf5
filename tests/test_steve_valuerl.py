"""STEVE's value learner: DDPG's target from the target Q, the hard target copy, the policy step
leaving Q untouched, MVE's TD-k reach weights, and STEVE's model use with a useless model."""
import torch

from steve.valuerl import ValueConfig, ValueLearner, WorldModelLearner

S, A, B = 3, 1, 16


def batch(seed=0, done=0.0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(B, S, generator=g), torch.rand(B, A, generator=g) * 2 - 1,
            torch.randn(B, generator=g), torch.randn(B, S, generator=g), torch.full((B,), done))


def small(**kw):
    return ValueConfig(hidden_dim=16, hidden_layers=2, **kw)


def model(members, seed=0):
    return WorldModelLearner(S, A, members, members, seed=seed, transition_hidden=16,
                             transition_layers=1, aux_hidden=16, aux_layers=1).model


def test_ddpg_target_uses_the_target_q_and_ignores_any_model():
    learner = ValueLearner(S, A, small(algo="ddpg", q_members=2, discount=0.9, reward_scale=2.0), seed=0)
    obs, act, rew, nxt, done = batch()
    with torch.no_grad():
        expected = 2.0 * rew + 0.9 * learner.q_target(nxt, learner.policy(nxt)).mean(0)
    targets, reach, use = learner.targets(rew, nxt, done, model(4))
    torch.testing.assert_close(targets[0], expected)
    assert targets.shape == (1, B) and use.item() == 0.0
    terminal, _, _ = learner.targets(rew, nxt, torch.ones(B), None)
    torch.testing.assert_close(terminal[0], 2.0 * rew)


def test_target_q_is_a_hard_copy_every_n_updates_and_frozen_between():
    learner = ValueLearner(S, A, small(algo="ddpg", q_members=1, target_copy_every=3), seed=0)
    frozen = [p.clone() for p in learner.q_target.parameters()]
    for i in range(3):
        learner.update(batch(i))
        same = all(torch.equal(a, b) for a, b in zip(frozen, learner.q_target.parameters()))
        assert same == (i < 2)
    assert all(torch.equal(a, b) for a, b in zip(learner.q.parameters(), learner.q_target.parameters()))


def test_the_policy_step_does_not_move_q():
    learner = ValueLearner(S, A, small(algo="ddpg", q_members=2), seed=0)
    learner.q_opt.step = lambda: None  # freeze the Q step: only the policy step may change things
    before = [p.clone() for p in learner.q.parameters()]
    policy_before = [p.clone() for p in learner.policy.parameters()]
    learner.update(batch())
    assert all(torch.equal(a, b) for a, b in zip(before, learner.q.parameters()))
    assert not all(torch.equal(a, b) for a, b in zip(policy_before, learner.policy.parameters()))


def test_mve_tdk_targets_every_frame_weighted_by_the_chance_of_reaching_it():
    learner = ValueLearner(S, A, small(algo="mve", tdk_trick=True, q_members=1, rollout_len=3), seed=0)
    obs, act, rew, nxt, done = batch()
    targets, reach, _ = learner.targets(rew, nxt, done, model(1))
    assert targets.shape == reach.shape == (4, B)
    assert torch.all(reach[0] == 1) and torch.all(reach[1:] <= 1) and torch.all(reach[1:] >= 0)
    assert torch.all(reach[1:].diff(dim=0) <= 1e-7)  # reaching later frames is never likelier
    _, reach_done, _ = learner.targets(rew, nxt, torch.ones(B), model(1))
    assert torch.all(reach_done[1:] == 0)           # after a real terminal nothing is imagined
    learner.update(batch(), model(1))


def test_steve_ignores_a_model_whose_members_disagree_wildly():
    learner = ValueLearner(S, A, small(algo="steve", q_members=4), seed=0)
    wild = model(4)
    with torch.no_grad():
        for layer in wild.reward_net.layers:
            layer.weight.mul_(300.0)
    _, _, use = learner.targets(*batch()[2:], wild)
    assert use.item() < 0.01
    _, _, sane_use = learner.targets(*batch()[2:], model(4))
    assert sane_use.item() > 0.05
