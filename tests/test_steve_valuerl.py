"""STEVE's value learner: DDPG's target from the target Q, the hard target copy, the policy step
leaving Q untouched, MVE's TD-k reach weights, STEVE's model use with a useless model, and the
ensembles' train / eval sample counts."""
import torch

from steve.models import EnsembleMLP
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


# -- the ensembles' sample counts (reference nn.py EnsembleFeedForwardNet) -------------------------
def seeded_run(q_counts, model_counts, algo="steve", tdk=False, updates=4):
    cfg = small(algo=algo, tdk_trick=tdk, q_members=4, q_train_samples=q_counts[0],
                q_eval_samples=q_counts[1])
    value = ValueLearner(S, A, cfg, seed=3)
    world = WorldModelLearner(S, A, 4, 4, seed=3, transition_hidden=16, transition_layers=1,
                              aux_hidden=16, aux_layers=1, transition_samples=model_counts,
                              reward_samples=model_counts)
    for i in range(updates):
        world.update(batch(50 + i, done=float(i == 2)))
        value.update(batch(i), world.model)
    return [p.detach().clone() for m in (value.policy, value.q, world.model) for p in m.parameters()]


def test_counts_equal_to_the_ensemble_sizes_change_nothing():
    """Every shipped config samples 4 of 4: no subset is drawn, the random streams and so every
    weight stay bit for bit those of a run without counts."""
    for algo, tdk in (("steve", False), ("mve", True)):
        full = seeded_run((4, 4), (4, 4), algo, tdk)
        none = seeded_run((None, None), None, algo, tdk)
        assert all(torch.equal(a, b) for a, b in zip(full, none))
        assert not all(torch.equal(a, b) for a, b in zip(full, seeded_run((2, 3), (1, 2), algo, tdk)))


def sub_ensemble(net, members):
    """A copy of an EnsembleMLP holding only `members`, in that order."""
    copy = EnsembleMLP(len(members), net.layers[0].weight.shape[1], net.layers[-1].weight.shape[2],
                       net.layers[0].weight.shape[2], len(net.layers) - 1)
    with torch.no_grad():
        for mine, theirs in zip(copy.layers, net.layers):
            mine.weight.copy_(theirs.weight[members])
            mine.bias.copy_(theirs.bias[members])
    return copy


def test_the_target_uses_fresh_eval_subsets_of_exactly_the_eval_counts(monkeypatch):
    import steve.valuerl as valuerl

    learner = ValueLearner(S, A, small(algo="steve", q_members=4, q_eval_samples=3), seed=0)
    world = model(4)
    world.transition_samples, world.reward_samples = (4, 2), (4, 3)
    drawn, shapes = [], []
    draw, combine = valuerl.sample_members, valuerl.steve_combine
    monkeypatch.setattr(valuerl, "sample_members", lambda *a: drawn.append(draw(*a)) or drawn[-1])
    monkeypatch.setattr(valuerl, "steve_combine", lambda c: shapes.append(c.shape) or combine(c))
    _, _, rew, nxt, done = batch()
    targets = [learner.targets(rew, nxt, done, world)[0] for _ in range(8)]
    # M_eval · N_eval · L_eval = 2 · 3 · 3 samples per horizon, H + 1 = 4 horizons
    assert set(shapes) == {torch.Size([4, 2, 3, 3, B])}
    transition, reward, q = (drawn[i::3] for i in range(3))
    for subsets, count in ((transition, 2), (reward, 3), (q, 3)):
        assert all(len(s) == count == len(set(s.tolist())) for s in subsets)
        assert len({tuple(s.tolist()) for s in subsets}) > 1          # a fresh subset per call
    assert not all(torch.equal(targets[0], t) for t in targets[1:])
    # the last target is the full-count target of the sub-ensembles that were drawn
    t_idx, r_idx, q_idx = transition[-1], reward[-1], q[-1]
    sub = model(2)
    sub.transition_net, sub.done_net = sub_ensemble(world.transition_net, t_idx), sub_ensemble(world.done_net, t_idx)
    sub.reward_net = sub_ensemble(world.reward_net, r_idx)
    sub.members, sub.reward_members = 2, 3
    sub.transition_samples, sub.reward_samples = (2, 2), (3, 3)
    reference = ValueLearner(S, A, small(algo="steve", q_members=3), seed=0)
    reference.policy.load_state_dict(learner.policy.state_dict())
    reference.q_target.net = sub_ensemble(learner.q_target.net, q_idx)
    torch.testing.assert_close(targets[-1], reference.targets(rew, nxt, done, sub)[0])


def test_full_counts_make_the_steve_target_deterministic():
    learner = ValueLearner(S, A, small(algo="steve", q_members=4), seed=0)
    world = model(4)
    _, _, rew, nxt, done = batch()
    torch.testing.assert_close(learner.targets(rew, nxt, done, world)[0],
                               learner.targets(rew, nxt, done, world)[0], rtol=0, atol=0)


def members_with_gradient(net) -> set:
    return {e for e in range(net.members)
            if any(layer.weight.grad[e].abs().sum() > 0 for layer in net.layers)}


def test_a_train_count_of_one_trains_one_q_member_per_update():
    learner = ValueLearner(S, A, small(algo="ddpg", q_members=4, q_train_samples=1), seed=0)
    touched, step = [], learner.q_opt.step
    learner.q_opt.step = lambda: touched.append(members_with_gradient(learner.q.net)) or step()
    before = [p.clone() for p in learner.q.parameters()]
    learner.update(batch(0))
    changed = {e for e in range(4) if any(not torch.equal(a[e], b[e]) for a, b in zip(before, learner.q.parameters()))}
    assert len(changed) == 1 and touched == [changed]       # the first step: only its weights move
    for i in range(1, 8):
        learner.update(batch(i))
    assert all(len(t) == 1 for t in touched) and len(set().union(*touched)) > 1


def test_a_train_count_of_one_trains_one_world_model_member_per_update():
    world = WorldModelLearner(S, A, 4, 4, seed=0, l2_weight=0.0, transition_hidden=16, transition_layers=1,
                              aux_hidden=16, aux_layers=1, transition_samples=(1, 4), reward_samples=(1, 4))
    nets = (world.model.transition_net, world.model.done_net, world.model.reward_net)
    touched, step = [], world.opt.step
    world.opt.step = lambda: touched.append([members_with_gradient(net) for net in nets]) or step()
    before = [layer.weight.clone() for layer in nets[0].layers]
    world.update(batch(0))
    changed = {e for e in range(4) if any(not torch.equal(a[e], layer.weight[e])
                                          for a, layer in zip(before, nets[0].layers))}
    assert len(changed) == 1 and touched[0][0] == changed
    for i in range(1, 8):
        world.update(batch(i))
    for transition, done, reward in touched:
        assert len(transition) == len(reward) == 1 and done == transition  # done shares the member
    assert len(set().union(*(t[0] for t in touched))) > 1


def test_counts_outside_the_ensemble_are_refused():
    import pytest

    with pytest.raises(ValueError, match="q_eval_samples"):
        small(q_members=4, q_eval_samples=5)
    with pytest.raises(ValueError, match="transition"):
        WorldModelLearner(S, A, 4, 4, seed=0, transition_samples=(0, 4))
