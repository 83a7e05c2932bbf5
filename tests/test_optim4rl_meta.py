"""MetaA2C (optim4rl/meta.py) and the stacked A2C (optim4rl/agents.py): the meta-gradient reaches
φ and equals a finite-difference estimate, pipeline reset indices, truncation, and the A2C pieces
against hand-worked numbers."""
import copy

import pytest
import torch

from optim4rl.agents import (Rollout, a2c_loss, actor_critic, episode_returns, init_actor_critic,
                             td_lambda_errors)
from optim4rl.envs import make_env
from optim4rl.meta import A2CHyper, MetaA2C, Task, agents_to_reset, meta_loss, reset_indexes
from optim4rl.optimizers import make_optimizer

torch.set_num_threads(1)


class ChainEnv:
    """A deterministic toy env in float64: 4 states shown one-hot on a 2x2 board, action a moves
    s -> (s + a) mod 4, reward 1 when a == s mod 3, episodes of 5 steps. Deterministic given the
    actions, so the meta-loss is a smooth function of φ for a finite-difference check."""

    obs_shape, num_actions, name, device = (1, 2, 2), 3, "catch", torch.device("cpu")

    def __init__(self, num_envs):
        self.num_envs = num_envs
        self.s = torch.arange(num_envs) % 4
        self.t = torch.zeros(num_envs, dtype=torch.long)

    def _obs(self):
        return torch.nn.functional.one_hot(self.s, 4).double().reshape(-1, 1, 2, 2)

    def reset(self):
        return self._obs()

    def reset_envs(self, mask):
        self.s = torch.where(mask, torch.arange(self.num_envs) % 4, self.s)
        self.t = torch.where(mask, torch.zeros_like(self.t), self.t)
        return self._obs()

    def step(self, action):
        reward = (action == self.s % 3).double()
        self.s, self.t = (self.s + action) % 4, self.t + 1
        done = self.t >= 5
        self.s = torch.where(done, torch.arange(self.num_envs) % 4, self.s)
        self.t = torch.where(done, torch.zeros_like(self.t), self.t)
        return self._obs(), reward, done.double()


def double_task(agents=2, seed=0, lr=0.1):
    lopt = make_optimizer("Optim4RL", 1.0, seed=seed).double()
    task = Task(ChainEnv(agents), "catch", agents, lopt, lr, reset_interval=4,
                generator=torch.Generator().manual_seed(seed))
    task.params = {k: v.double() for k, v in init_actor_critic("catch", (1, 2, 2), 3, agents,
                                                                torch.Generator().manual_seed(seed)).items()}
    task.state = lopt.init(task.params)
    task.obs = task.env.reset().unsqueeze(1)
    task.running = torch.zeros(agents, 1, dtype=torch.float64)
    return lopt, task


HYPER = A2CHyper(rollout_steps=3)


class ReplayGradients:
    """Wraps the learned optimizer: records the inner gradients g_k of the base run and feeds the
    same g_k to the perturbed runs, so the finite difference sees what the meta-gradient sees
    (θ_K through the updates and the hidden-state chain, with g detached)."""

    def __init__(self, lopt):
        self.lopt, self.recorded, self.replay, self.calls = lopt, [], False, 0

    def init(self, params):
        return self.lopt.init(params)

    def update(self, grads, state):
        if self.replay:
            grads = self.recorded[self.calls]
        else:
            self.recorded.append({k: v.detach().clone() for k, v in grads.items()})
        self.calls += 1
        return self.lopt.update(grads, state)


def smooth_meta_objective(a2c_loss_fn):
    """The A2C loss stops gradients through its targets and advantages (rlax's stop_gradient), so
    its value's finite difference is not its semi-gradient. The inner updates keep the real A2C
    gradient; the final objective becomes a smooth function of θ_K, whose finite difference must
    equal the meta-gradient through the K updates and the hidden-state chain."""
    def patched(params, rollout, *args):
        if not any(v.grad_fn is not None for v in params.values()):
            return a2c_loss_fn(params, rollout, *args)            # an inner update at a detached θ_k
        weights = torch.Generator().manual_seed(7)
        return sum((v * torch.randn(v.shape, generator=weights, dtype=v.dtype)).flatten(1).sum(1)
                   + (v ** 2).flatten(1).sum(1) for v in params.values())
    return patched


@pytest.mark.parametrize("inner_updates", [1, 3])
def test_meta_gradient_matches_finite_differences(inner_updates, monkeypatch):
    import optim4rl.meta
    monkeypatch.setattr(optim4rl.meta, "a2c_loss", smooth_meta_objective(optim4rl.meta.a2c_loss))
    lopt, task = double_task()
    with torch.no_grad():  # move φ off its init so every part of it matters
        for p in lopt.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=torch.Generator().manual_seed(3), dtype=p.dtype))
    wrapper = ReplayGradients(lopt)
    params = dict(lopt.named_parameters())

    def loss_of(name=None, index=0, eps=0.0):
        t = copy.deepcopy(task)
        t.optimizer, wrapper.calls = wrapper, 0
        with torch.no_grad():
            if name:
                params[name].view(-1)[index] += eps
        out = meta_loss(t, inner_updates=inner_updates, hyper=HYPER)
        with torch.no_grad():
            if name:
                params[name].view(-1)[index] -= eps
        return out

    loss = loss_of()
    wrapper.replay = True
    grads = dict(zip(params, torch.autograd.grad(loss, list(params.values()), allow_unused=True)))
    checked = 0
    for name, grad in grads.items():
        if grad is None or grad.abs().max() < 1e-9:
            continue
        index, eps = int(grad.abs().view(-1).argmax()), 1e-6
        numeric = (loss_of(name, index, eps) - loss_of(name, index, -eps)) / (2 * eps)
        assert float(grad.view(-1)[index].detach()) == pytest.approx(float(numeric.detach()), rel=1e-4, abs=1e-9), name
        checked += 1
    # both GRUs and both heads carry a meta-gradient; with one update the recurrent kernels act on
    # h_0 = 0, so only the hidden-state chain of K > 1 updates reaches them
    assert checked == len(params) - (2 if inner_updates == 1 else 0)


def test_meta_gradient_reaches_every_part_of_phi():
    lopt = make_optimizer("Optim4RL", 1.0, seed=0)
    env = make_env("catch", 4, seed=0)
    task = Task(env, "catch", 4, lopt, 1e-3, reset_interval=4, generator=torch.Generator().manual_seed(0))
    meta = MetaA2C(lopt, [task], HYPER, inner_updates=2, meta_lr=1e-3)
    before = {n: p.detach().clone() for n, p in lopt.named_parameters()}
    meta.step()
    moved = [n for n, p in lopt.named_parameters() if not torch.equal(p.detach(), before[n])]
    assert len(moved) == len(before), set(before) - set(moved)
    # truncation: the carried θ and h hold no graph back to φ
    assert all(not v.requires_grad for v in task.params.values())
    assert all(not v.requires_grad for v in task.state.values())


def test_no_inner_update_means_no_meta_gradient_through_phi():
    lopt, task = double_task()
    loss = meta_loss(task, inner_updates=0, hyper=HYPER)
    assert not loss.requires_grad or all(
        g is None for g in torch.autograd.grad(loss, list(lopt.parameters()), allow_unused=True))


def test_reset_indexes_spread_over_the_interval():
    assert reset_indexes(4, 8).tolist() == [0, 0, 0, 1, 1, 2, 2, 3]  # int(linspace(0, 3, 8))
    indexes = reset_indexes(32, 64)
    counts = torch.zeros(64, dtype=torch.long)
    for t in range(1, 33):  # one full cycle: every agent restarts exactly once
        mask = agents_to_reset(t, 32, indexes, pipeline=True)
        assert torch.equal(mask, (t - 1) % 32 == indexes)
        counts += mask.long()
    assert counts.tolist() == [1] * 64
    assert agents_to_reset(1, 32, indexes, pipeline=False).all()
    assert not agents_to_reset(33, 32, indexes, pipeline=False).any()   # the ablation never resets


def test_pipeline_reset_touches_only_masked_agents():
    lopt = make_optimizer("Optim4RL", 1.0, seed=0)
    env = make_env("catch", 4, seed=0)
    task = Task(env, "catch", 4, lopt, 1e-3, reset_interval=4, generator=torch.Generator().manual_seed(0))
    meta = MetaA2C(lopt, [task], HYPER, inner_updates=1)
    meta.step()
    meta.step()
    params, state = copy.deepcopy(task.params), copy.deepcopy(task.state)
    mask = torch.tensor([False, True, False, False])
    task.pipeline_reset(mask)
    for k in params:
        assert torch.equal(task.params[k][0], params[k][0]) and torch.equal(task.params[k][2], params[k][2])
        assert not torch.equal(task.params[k][1], params[k][1]) or k.endswith("bias")
    for k in state:
        assert torch.equal(task.state[k][0], state[k][0])
        assert task.state[k][1].abs().sum() == 0 and state[k][1].abs().sum() > 0


def test_td_lambda_errors_by_hand():
    values = torch.tensor([1.0, 2.0, 3.0])           # V(s0), V(s1), V(s2)
    rewards = torch.tensor([1.0, 0.5])
    discounts = torch.tensor([0.9, 0.0])             # the second step ends the episode
    lam = 0.5
    g1 = 0.5 + 0.0
    g0 = 1.0 + 0.9 * ((1 - lam) * 2.0 + lam * g1)
    errors = td_lambda_errors(values, rewards, discounts, lam)
    assert errors.tolist() == pytest.approx([g0 - 1.0, g1 - 2.0])


def test_population_gradients_are_per_agent():
    """Agent i's gradient from the stacked loss equals the gradient of agent i alone."""
    gen = torch.Generator().manual_seed(0)
    params = init_actor_critic("small_dense_short", (3, 6, 8), 9, 3, gen)
    obs = torch.rand(4, 3, 2, 3, 6, 8, generator=gen).round()      # [T+1, A, E, C, H, W]
    rollout = Rollout(obs, torch.randint(9, (3, 3, 2), generator=gen), torch.randn(3, 3, 2, generator=gen),
                      torch.zeros(3, 3, 2))
    leaf = {k: v.clone().requires_grad_(True) for k, v in params.items()}
    loss = a2c_loss(leaf, rollout, 0.99, 0.95, 0.5, 0.01)
    grads = torch.autograd.grad(loss.sum(), list(leaf.values()))
    one = {k: v[1:2].clone().requires_grad_(True) for k, v in params.items()}
    single = Rollout(obs[:, 1:2], rollout.actions[:, 1:2], rollout.rewards[:, 1:2], rollout.dones[:, 1:2])
    alone = torch.autograd.grad(a2c_loss(one, single, 0.99, 0.95, 0.5, 0.01).sum(), list(one.values()))
    for g, a in zip(grads, alone):
        assert torch.allclose(g[1:2], a, atol=1e-6)


def test_big_map_torso_is_the_references_channels_last_conv():
    """The reference's flax Conv reads a (K+1, H, W) board channels-last: positions (K+1, H), W
    input channels, 'SAME' padding at the end; features flattened as (K+1, H, 16)."""
    gen = torch.Generator().manual_seed(1)
    params = init_actor_critic("big_dense_long", (5, 15, 11), 9, 2, gen)
    assert params["conv.weight"].shape == (2, 16, 11, 2, 2) and params["dense.weight"].shape[1] == 5 * 15 * 16
    obs = torch.rand(2, 3, 5, 15, 11, generator=gen)
    logits, values = actor_critic(params, obs)
    for a in range(2):
        x = torch.nn.functional.pad(obs[a], (0, 0, 0, 1, 0, 1))            # [E, P+1, Q+1, W]
        kernel = params["conv.weight"][a]                                   # [16, W, 2, 2]
        h = sum(torch.einsum("epqc,fc->epqf", x[:, di:di + 5, dj:dj + 15], kernel[:, :, di, dj])
                for di in (0, 1) for dj in (0, 1)) + params["conv.bias"][a]
        phi = torch.relu(torch.relu(h).flatten(1) @ params["dense.weight"][a] + params["dense.bias"][a])
        assert torch.allclose(logits[a], phi @ params["actor.weight"][a] + params["actor.bias"][a], atol=1e-5)
        assert torch.allclose(values[a], (phi @ params["critic.weight"][a] + params["critic.bias"][a]).squeeze(-1),
                              atol=1e-5)


def test_spatial_big_map_torso_convolves_over_the_grid():
    gen = torch.Generator().manual_seed(1)
    params = init_actor_critic("big_dense_long", (5, 15, 11), 9, 2, gen, big_map_torso="spatial")
    assert params["conv_hw.weight"].shape == (2, 16, 5, 2, 2) and params["dense.weight"].shape[1] == 16 * 15 * 11
    obs = torch.rand(2, 3, 5, 15, 11, generator=gen)
    logits, values = actor_critic(params, obs)
    for a in range(2):
        x = torch.nn.functional.pad(obs[a], (0, 1, 0, 1))
        h = torch.relu(torch.nn.functional.conv2d(x, params["conv_hw.weight"][a], params["conv_hw.bias"][a]))
        phi = torch.relu(h.flatten(1) @ params["dense.weight"][a] + params["dense.bias"][a])
        assert torch.allclose(logits[a], phi @ params["actor.weight"][a] + params["actor.bias"][a], atol=1e-5)
    with pytest.raises(ValueError, match="big_map_torso"):
        init_actor_critic("big_dense_long", (5, 15, 11), 9, 2, gen, big_map_torso="nope")


def test_episode_returns_carry_across_rollouts():
    rewards = torch.tensor([[[1.0]], [[0.0]], [[2.0]]])
    dones = torch.tensor([[[0.0]], [[1.0]], [[0.0]]])
    rollout = Rollout(torch.zeros(4, 1, 1, 1, 1, 1), torch.zeros(3, 1, 1, dtype=torch.long), rewards, dones)
    finished, running = episode_returns(rollout, torch.tensor([[0.5]]))
    assert finished == [1.5] and running.tolist() == [[2.0]]
