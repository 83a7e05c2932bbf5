"""STEVE's networks: batched ensembles equal separate MLPs, routing picks one member per
example, the world-model loss is the reference's formula, shapes fit the value expansion."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from steve.models import EnsembleMLP, Policy, QEnsemble, WorldModel
from steve.value_expansion import candidate_targets, imagine, steve_combine


def reference_member(net: EnsembleMLP, e: int, x: torch.Tensor) -> torch.Tensor:
    """Member e as a plain MLP on x [B, in]."""
    h = x
    for i, layer in enumerate(net.layers):
        h = h @ layer.weight[e] + layer.bias[e, 0]
        if i + 1 < len(net.layers):
            h = F.relu(h)
    return h


def test_ensemble_members_are_independent_mlps_and_routing_picks_one_per_example():
    torch.manual_seed(0)
    net = EnsembleMLP(4, 5, 3, hidden_dim=16, hidden_layers=3)
    x = torch.randn(7, 5)
    out = net(x)
    assert out.shape == (4, 7, 3)
    for e in range(4):
        torch.testing.assert_close(out[e], reference_member(net, e, x))
    assert not torch.allclose(out[0], out[1])  # members start different
    member = torch.tensor([3, 0, 1, 1, 2, 0, 3])
    routed = net.routed(x, member)
    for b in range(7):
        torch.testing.assert_close(routed[b], reference_member(net, int(member[b]), x[b:b + 1])[0])
    per_slice = torch.randn(4, 2, 5)                                  # member e on slice e
    torch.testing.assert_close(net(per_slice)[2], reference_member(net, 2, per_slice[2]))


def test_l2_is_half_the_squared_norm_of_every_parameter():
    net = EnsembleMLP(2, 3, 1, hidden_dim=4, hidden_layers=1)
    with torch.no_grad():
        for p in net.parameters():
            p.fill_(2.0)
    n_params = sum(p.numel() for p in net.parameters())
    assert net.l2().item() == pytest.approx(0.5 * 4.0 * n_params)


def test_world_model_loss_is_the_reference_formula_in_full_batch_mode():
    torch.manual_seed(1)
    wm = WorldModel(3, 2, transition_members=2, reward_members=2, transition_hidden=8,
                    transition_layers=2, aux_hidden=8, aux_layers=1)
    obs, act, nxt = torch.randn(5, 3), torch.randn(5, 2), torch.randn(5, 3)
    rew, done = torch.randn(5), torch.tensor([0.0, 1.0, 0.0, 0.0, 1.0])
    total, parts = wm.loss(obs, act, rew, nxt, done, full_batch=True, l2_weight=1e-4)
    pred = obs + wm.transition_net(torch.cat([obs, act], -1))            # [2, 5, 3]
    aux = torch.cat([nxt, obs, act], -1)
    obs_loss = (0.5 * ((nxt - pred) ** 2).sum(-1)).mean()
    r_loss = (0.5 * (rew - wm.reward_net(aux).squeeze(-1)) ** 2).mean()
    logits = wm.done_net(aux).squeeze(-1)
    d_loss = -(done * F.logsigmoid(logits) + (1 - done) * F.logsigmoid(-logits)).mean()
    reg = 1e-4 * 0.5 * sum((p ** 2).sum() for p in wm.parameters())
    assert total.item() == pytest.approx((obs_loss + r_loss + d_loss + reg).item(), rel=1e-5)
    assert parts["next_obs_loss"] == pytest.approx(obs_loss.item(), rel=1e-5)


def test_routed_loss_trains_one_member_per_example():
    torch.manual_seed(2)
    wm = WorldModel(3, 1, 4, 4, transition_hidden=8, transition_layers=1, aux_hidden=8, aux_layers=1)
    obs, act = torch.randn(1, 3), torch.randn(1, 1)
    total, _ = wm.loss(obs, act, torch.zeros(1), obs, torch.zeros(1), l2_weight=0.0,
                       generator=torch.Generator().manual_seed(0))
    total.backward()
    first = wm.transition_net.layers[0].weight.grad
    touched = [bool(first[e].abs().sum() > 0) for e in range(4)]
    assert sum(touched) == 1  # the one example went through exactly one transition member


def test_networks_plug_into_the_steve_target():
    torch.manual_seed(3)
    S, A, B, M, N, L, H = 3, 2, 6, 4, 4, 4, 3
    policy, q = Policy(S, A, hidden_dim=16), QEnsemble(S, A, L, hidden_dim=16)
    wm = WorldModel(S, A, M, N, transition_hidden=16, transition_layers=2, aux_hidden=16, aux_layers=1)
    rollout = imagine(torch.randn(B, S), torch.zeros(B), H, M, policy, wm.transition, wm.done_prob,
                      wm.reward, q)
    assert rollout.q_values.shape == (L, M, H + 1, B) and rollout.rewards.shape == (N, M, H, B)
    # s_0 is the real next state for every transition member: its Q values agree across m
    torch.testing.assert_close(rollout.q_values[:, 0, 0], rollout.q_values[:, 3, 0])
    result = steve_combine(candidate_targets(torch.randn(B), rollout, 0.99))
    assert result.target.shape == (B,) and torch.isfinite(result.target).all()
    np.testing.assert_allclose(result.weights.sum(0).numpy(), 1.0, rtol=1e-5)
    assert policy(torch.randn(B, S)).abs().max() <= 1.0


def test_subsets_no_grad_and_frozen_paths_are_the_same_members():
    torch.manual_seed(4)
    net = EnsembleMLP(4, 5, 3, hidden_dim=16, hidden_layers=2)
    x = torch.randn(9, 5, requires_grad=True)
    subset = torch.tensor([2, 0])
    with torch.no_grad():                                # the target's member-by-member path
        no_grad = net(x, subset)
    assert no_grad.shape == (2, 9, 3)
    for i, e in enumerate(subset.tolist()):
        torch.testing.assert_close(no_grad[i], reference_member(net, e, x))
        torch.testing.assert_close(net(x.expand(2, 9, 5), subset)[i], reference_member(net, e, x))
    pick = torch.tensor([1, 0, 1, 1, 0, 0, 1, 1, 1])    # positions in the subset
    routed = net.routed(x, pick, subset)
    for b in range(9):
        torch.testing.assert_close(routed[b], reference_member(net, int(subset[pick[b]]), x[b:b + 1])[0])
    net(x, frozen=True).sum().backward()                 # frozen: the gradient reaches x only
    assert x.grad is not None and all(p.grad is None for p in net.parameters())


def test_l2_through_adam_weight_decay_equals_the_l2_loss_gradient():
    """The learner adds l2_weight·θ to the gradient (Adam's weight_decay) instead of
    differentiating ½‖θ‖²: the same step."""
    from steve.valuerl import WorldModelLearner

    kw = dict(seed=0, l2_weight=0.05, transition_hidden=8, transition_layers=1, aux_hidden=8, aux_layers=1)
    learner, plain = WorldModelLearner(3, 2, 2, 2, **kw), WorldModelLearner(3, 2, 2, 2, **kw)
    opt = torch.optim.Adam(plain.model.parameters(), lr=3e-4)
    g = torch.Generator().manual_seed(0)
    for _ in range(3):
        batch = (torch.randn(8, 3, generator=g), torch.randn(8, 2, generator=g), torch.randn(8, generator=g),
                 torch.randn(8, 3, generator=g), torch.zeros(8))
        info = learner.update(batch)
        total, _ = plain.model.loss(*batch, plain.generator, l2_weight=0.05)   # L2 in the graph
        opt.zero_grad()
        total.backward()
        opt.step()
        assert info["worldmodel_loss"] == pytest.approx(total.item(), rel=1e-5)
    for a, b in zip(learner.model.parameters(), plain.model.parameters()):
        torch.testing.assert_close(a, b)
