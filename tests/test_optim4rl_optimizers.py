"""Unit tests of optim4rl/optimizers.py: the classical optimizers against hand-computed optax
formulas, the learned optimizers' update formulas, flax-compatible GRU and initialisers,
differentiability w.r.t. phi, population stacking, saving / loading and user errors."""
from __future__ import annotations

import math
import os

import pytest
import torch

from common.cli import UsageError
from optim4rl.optimizers import (OPTIMIZERS, GRUCell, L2LGD2, LinearOptim, Optim4RL, Dense,
                                 clip_by_global_norm_per_agent, detach_state, l2l_preprocess,
                                 load_meta_params, make_optimizer, save_meta_params)

G1 = [0.5, -1.0, 2.0]
G2 = [0.1, 0.3, -0.2]


def run_two_steps(opt, g1=G1, g2=G2, dtype=torch.float64):
    params = {"w": torch.zeros(1, 3, dtype=dtype)}
    state = opt.init(params)
    u1, state = opt.update({"w": torch.tensor([g1], dtype=dtype)}, state)
    u2, state = opt.update({"w": torch.tensor([g2], dtype=dtype)}, state)
    return u1["w"][0].tolist(), u2["w"][0].tolist()


# ------------------------------------------------------------------ classical optimizers

def test_adam_two_steps_match_hand_computation():
    lr, b1, b2, eps = 0.1, 0.9, 0.999, 1e-8
    u1, u2 = run_two_steps(make_optimizer("Adam", lr))
    for i in range(3):
        m1, v1 = (1 - b1) * G1[i], (1 - b2) * G1[i] ** 2
        m2, v2 = b1 * m1 + (1 - b1) * G2[i], b2 * v1 + (1 - b2) * G2[i] ** 2
        exp1 = -lr * (m1 / (1 - b1)) / (math.sqrt(v1 / (1 - b2)) + eps)
        exp2 = -lr * (m2 / (1 - b1 ** 2)) / (math.sqrt(v2 / (1 - b2 ** 2)) + eps)
        assert u1[i] == pytest.approx(exp1, rel=1e-10)
        assert u2[i] == pytest.approx(exp2, rel=1e-10)
    # the first bias-corrected Adam step is -lr * sign(g), whatever |g|
    assert u1 == pytest.approx([-0.1, 0.1, -0.1], rel=1e-6)


def test_rmsprop_two_steps_match_optax_formula_eps_inside_sqrt():
    lr, d, eps = 0.1, 0.9, 1e-8
    u1, u2 = run_two_steps(make_optimizer("RMSProp", lr))
    for i in range(3):
        nu1 = (1 - d) * G1[i] ** 2                      # optax initial_scale = 0
        nu2 = d * nu1 + (1 - d) * G2[i] ** 2
        assert u1[i] == pytest.approx(-lr * G1[i] / math.sqrt(nu1 + eps), rel=1e-10)
        assert u2[i] == pytest.approx(-lr * G2[i] / math.sqrt(nu2 + eps), rel=1e-10)
    assert u1[0] == pytest.approx(-0.1 * math.sqrt(10), rel=1e-6)
    # a tiny gradient shows where eps sits: inside the root the step stays small
    tiny = run_two_steps(make_optimizer("RMSProp", lr), g1=[1e-5, 1, 1])[0][0]
    assert tiny == pytest.approx(-lr * 1e-5 / math.sqrt(0.1 * 1e-10 + 1e-8), rel=1e-9)
    assert abs(tiny) < 0.01


def test_sgd_plain_momentum_and_nesterov():
    u1, u2 = run_two_steps(make_optimizer("SGD", 0.5))
    assert u1 == pytest.approx([-0.5 * g for g in G1])
    assert u2 == pytest.approx([-0.5 * g for g in G2])
    _, u2 = run_two_steps(make_optimizer("SGD", 0.5, momentum=0.9))
    assert u2 == pytest.approx([-0.5 * (b + 0.9 * a) for a, b in zip(G1, G2)])
    _, u2 = run_two_steps(make_optimizer("SGD", 0.5, momentum=0.9, nesterov=True))
    assert u2 == pytest.approx([-0.5 * (b + 0.9 * (b + 0.9 * a)) for a, b in zip(G1, G2)])


def test_sign_sgd_moves_every_coordinate_by_lr_and_zero_gradients_not_at_all():
    u1, u2 = run_two_steps(make_optimizer("SignSGD", 0.5))
    assert u1 == pytest.approx([-0.5 * math.copysign(1, g) for g in G1])
    assert u2 == pytest.approx([-0.5 * math.copysign(1, g) for g in G2])
    updates, state = make_optimizer("SignSGD", 0.5).update({"w": torch.tensor([[0.0, -1e-9, 7.0]])}, {})
    assert updates["w"].tolist() == [[0.0, 0.5, -0.5]] and state == {}


def test_elementwise_clip_before_the_optimizer():
    u1, _ = run_two_steps(make_optimizer("SGD", 1.0, grad_clip=0.8))
    assert u1 == pytest.approx([-0.5, 0.8, -0.8])
    # grad_clip takes precedence over grad_norm, as in the reference
    u1, _ = run_two_steps(make_optimizer("SGD", 1.0, grad_clip=0.8, grad_norm=0.01))
    assert u1 == pytest.approx([-0.5, 0.8, -0.8])


def test_global_norm_clip_is_per_agent():
    grads = {"a": torch.tensor([[0.3, 0.0], [3.0, 0.0], [0.0, 0.6]]),
             "b": torch.tensor([[0.4], [4.0], [0.8]])}          # agent norms 0.5, 5, 1
    updates, _ = make_optimizer("SGD", 1.0, grad_norm=1.0).update(grads, {})
    assert torch.allclose(updates["a"][0], -grads["a"][0]) and torch.allclose(updates["b"][0], -grads["b"][0])
    assert torch.allclose(updates["a"][1], -grads["a"][1] / 5) and torch.allclose(updates["b"][1], -grads["b"][1] / 5)
    assert torch.allclose(updates["a"][2], -grads["a"][2]) and torch.allclose(updates["b"][2], -grads["b"][2])
    # the helper alone, and its backward pass stays finite at a zero gradient
    zero = {"a": torch.zeros(2, 3, requires_grad=True)}
    clip_by_global_norm_per_agent(zero, 1.0)["a"].sum().backward()
    assert torch.isfinite(zero["a"].grad).all()


def test_classical_optimizers_are_differentiable():
    torch.manual_seed(0)
    g1 = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    g2 = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    for name, kw in (("Adam", {"grad_norm": 1.0}), ("RMSProp", {"centered": True}), ("SGD", {"momentum": 0.9})):
        opt = make_optimizer(name, 0.1, **kw)

        def two_steps(a, b):
            state = opt.init({"w": torch.zeros(2, 3, dtype=torch.float64)})
            u, state = opt.update({"w": a}, state)
            v, _ = opt.update({"w": b}, state)
            return u["w"] + v["w"]
        assert torch.autograd.gradcheck(two_steps, (g1, g2)), name


def test_adam_counts_steps_per_agent_and_resets_one_agent():
    opt = make_optimizer("Adam", 0.1)
    params = {"w": torch.zeros(3, 2, dtype=torch.float64)}
    g = {"w": torch.tensor([[1.0, -2.0], [0.5, 0.1], [3.0, 3.0]], dtype=torch.float64)}
    state = opt.init(params)
    for _ in range(2):
        _, state = opt.update(g, state)
    state = opt.reset_agents(state, torch.tensor([False, True, False]))
    assert state["count"].tolist() == [2, 0, 2]
    assert torch.all(state["mu"]["w"][1] == 0) and torch.all(state["nu"]["w"][2] != 0)
    u, state = opt.update(g, state)
    assert u["w"][1].tolist() == pytest.approx([-0.1, -0.1], rel=1e-6)   # a fresh first Adam step
    assert state["count"].tolist() == [3, 1, 3]


# ------------------------------------------------------------------ flax building blocks

def test_gru_cell_matches_flax_equations_via_torch_grucell():
    """flax's GRUCell equals torch.nn.GRUCell with b_hr = b_hz = 0 (b_hn inside r * (...))."""
    gen = torch.Generator().manual_seed(3)
    cell = GRUCell(2, 4, gen).double()
    with torch.no_grad():
        cell.b_i.copy_(torch.randn(12, generator=gen, dtype=torch.float64))
        cell.b_hn.copy_(torch.randn(4, generator=gen, dtype=torch.float64))
    ref = torch.nn.GRUCell(2, 4).double()
    with torch.no_grad():
        ref.weight_ih.copy_(cell.w_i.t())
        ref.weight_hh.copy_(cell.w_h.t())
        ref.bias_ih.copy_(cell.b_i)
        ref.bias_hh.copy_(torch.cat([torch.zeros(8, dtype=torch.float64), cell.b_hn]))
    x = torch.randn(3, 2, 5, dtype=torch.float64)          # [A, in, M]
    h = torch.randn(3, 4, 5, dtype=torch.float64)          # [A, H, M]
    ours = cell(x, h)
    theirs = ref(x.transpose(1, 2).reshape(-1, 2), h.transpose(1, 2).reshape(-1, 4))
    assert torch.allclose(ours.transpose(1, 2).reshape(-1, 4), theirs, atol=1e-12)
    # the candidate's recurrent bias sits inside r * (...): moving it outside changes the output
    ref.bias_hh.data.zero_()
    ref.bias_ih.data[8:] += cell.b_hn.data
    moved = ref(x.transpose(1, 2).reshape(-1, 2), h.transpose(1, 2).reshape(-1, 4))
    assert not torch.allclose(moved, theirs, atol=1e-6)


def test_flax_default_initialisers():
    gen = torch.Generator().manual_seed(0)
    cell = GRUCell(1, 8, gen)
    assert torch.all(cell.b_i == 0) and torch.all(cell.b_hn == 0)
    for gate in range(3):                       # each recurrent block is orthogonal
        block = cell.w_h[:, gate * 8:(gate + 1) * 8].detach()
        assert torch.allclose(block.t() @ block, torch.eye(8), atol=1e-5)
    # lecun normal: a normal truncated at 2 "raw" std, rescaled to variance exactly 1 / fan_in
    assert cell.w_i.abs().max() <= 2 / 0.87962566103423978 + 1e-6
    dense = Dense(100, 2000, torch.Generator().manual_seed(1))
    assert torch.all(dense.bias == 0)
    assert dense.kernel.std().item() == pytest.approx(0.1, rel=0.02)
    assert dense.kernel.abs().max().item() <= 0.2 / 0.87962566103423978 + 1e-6
    assert dense.kernel.abs().max().item() > 0.2                # not a plain N(0, 0.1^2) clipped at 0.2


def test_phi_is_seeded():
    a, b, c = (make_optimizer("Optim4RL", 1e-3, seed=s) for s in (1, 1, 2))
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not all(torch.equal(p, q) for p, q in zip(a.parameters(), c.parameters()))
    gen = torch.Generator().manual_seed(1)
    d = make_optimizer("Optim4RL", 1e-3, generator=gen)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), d.parameters()))


# ------------------------------------------------------------------ learned optimizers' formulas

def set_head_constant(head, biases):
    """Zero the last Dense kernel so the head outputs exactly `biases`."""
    last = head.layers[-1]
    with torch.no_grad():
        last.kernel.zero_()
        last.bias.copy_(torch.tensor(biases, dtype=last.bias.dtype))


def random_grads(a=2, seed=0, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    scale = 10.0 ** torch.randint(-8, 2, (a, 3, 4), generator=gen).to(dtype)   # |g| over 10 decades
    g = {"w": torch.randn(a, 3, 4, generator=gen, dtype=dtype) * scale,
         "b": torch.randn(a, 5, generator=gen, dtype=dtype)}
    g["b"][:, 0] = 0.0
    return g


@pytest.mark.parametrize("mlp_dims", [(), (16, 16)])
def test_optim4rl_update_formula(mlp_dims):
    opt = make_optimizer("Optim4RL", 0.01, mlp_dims=mlp_dims).double()
    set_head_constant(opt.head1, [0.3])
    set_head_constant(opt.head2, [-1.2])
    grads = random_grads(dtype=torch.float64)
    state = opt.init(grads)
    for _ in range(2):
        updates, state = opt.update(grads, state)
        for k, g in grads.items():
            expected = -0.01 * torch.sign(g) * math.exp(0.3) / math.sqrt(math.exp(-1.2) + 1e-8)
            assert torch.allclose(updates[k], expected, rtol=1e-12, atol=0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_optim4rl_at_init_moves_against_the_gradient(seed):
    opt = make_optimizer("Optim4RL", 1e-3, seed=seed)
    grads = random_grads(a=3, seed=seed + 10)
    updates, _ = opt.update(grads, opt.init(grads))
    for k, g in grads.items():
        assert torch.equal(torch.sign(updates[k]), -torch.sign(g))


def test_linear_optim_update_formula():
    opt = make_optimizer("LinearOptim", 0.01).double()
    set_head_constant(opt.head, [0.2, -0.5, 0.7])
    grads = random_grads(dtype=torch.float64)
    updates, _ = opt.update(grads, opt.init(grads))
    for k, g in grads.items():
        assert torch.allclose(updates[k], -0.01 * (math.exp(0.2) * g + math.exp(-0.5) * 0.7), rtol=1e-12)


def test_l2lgd2_update_formula_and_clipping():
    opt = make_optimizer("L2LGD2", 0.01, grad_clip=1.0).double()
    set_head_constant(opt.head, [0.4])
    grads = {"w": torch.tensor([[3.0, -0.5, 1e-7, -20.0]], dtype=torch.float64)}
    updates, _ = opt.update(grads, opt.init(grads))
    clipped = torch.tensor([[1.0, -0.5, 1e-7, -1.0]], dtype=torch.float64)
    assert torch.allclose(updates["w"], -0.01 * math.exp(0.4) * clipped, rtol=1e-12)


def test_l2l_preprocessing_both_branches():
    g = torch.tensor([0.5, -1e-3, 1e-5, -1e-6, 0.0], dtype=torch.float64)
    out = l2l_preprocess(g, p=10)
    e10 = math.exp(10)
    expected = [[math.log(0.5 + 1e-8) / 10, 1.0],            # log|g| / p >= -1: (log|g| / p, sign g)
                [math.log(1e-3 + 1e-8) / 10, -1.0],
                [-1.0, e10 * 1e-5],                          # log|g| / p < -1: (-1, e^p g)
                [-1.0, -e10 * 1e-6],
                [-1.0, 0.0]]
    assert torch.allclose(out, torch.tensor(expected, dtype=torch.float64), rtol=1e-12)
    assert out[2, 1].item() == pytest.approx(0.22026465794806716)
    assert l2l_preprocess(g.reshape(1, 5), dim=1).shape == (1, 2, 5)


def test_each_gru_reads_its_input():
    """Optim4RL: GRU1 reads g, GRU2 reads g^2; LinearOptim: g; L2LGD2: the preprocessed g. The
    coordinates are the params' tensors flattened and concatenated in key order."""
    grads = random_grads(a=2, dtype=torch.float64)
    flat = torch.cat([grads["w"].reshape(2, -1), grads["b"].reshape(2, -1)], 1).unsqueeze(1)
    h0 = torch.randn(2, 8, 17, dtype=torch.float64)
    opt = make_optimizer("Optim4RL", 0.01).double()
    _, new = opt.update(grads, {"h1": h0, "h2": h0})
    assert torch.allclose(new["h1"], opt.rnn1(flat, h0)) and torch.allclose(new["h2"], opt.rnn2(flat ** 2, h0))
    opt = make_optimizer("LinearOptim", 0.01).double()
    _, new = opt.update(grads, {"h": h0})
    assert torch.allclose(new["h"], opt.rnn(flat, h0))
    opt = make_optimizer("L2LGD2", 0.01).double()
    _, new = opt.update(grads, {"h": h0})
    assert torch.allclose(new["h"], opt.rnn(l2l_preprocess(flat[:, 0], 10.0, 1e-8, dim=1), h0))


# ------------------------------------------------------------------ state, differentiability

def test_hidden_state_changes_across_steps():
    opt = make_optimizer("Optim4RL", 1e-3)
    grads = random_grads()
    s0 = opt.init(grads)
    assert set(s0) == {"h1", "h2"} and s0["h1"].shape == (2, 8, 17) and torch.all(s0["h1"] == 0)
    _, s1 = opt.update(grads, s0)
    _, s2 = opt.update(grads, s1)
    for name in ("h1", "h2"):
        assert s1[name].abs().sum() > 0
        assert not torch.allclose(s1[name], s2[name])


@pytest.mark.parametrize("name,entry", [("Optim4RL", ("rnn1", "w_h", (0, 3))),
                                        ("Optim4RL", ("rnn2", "w_i", (0, 1))),
                                        ("LinearOptim", ("rnn", "w_h", (2, 20))),
                                        ("L2LGD2", ("rnn", "w_i", (1, 5)))])
def test_update_is_differentiable_wrt_phi_through_the_hidden_chain(name, entry):
    """d(sum of the updates of two steps)/d(one phi entry), autograd vs central differences. A
    recurrent weight matters only through h1 -> step 2 (h0 = 0), so this also checks the chain."""
    opt = make_optimizer(name, 0.1, seed=5).double()
    module, param_name, index = entry
    phi = getattr(getattr(opt, module), param_name)
    g1 = random_grads(seed=1, dtype=torch.float64)
    g2 = random_grads(seed=2, dtype=torch.float64)
    leaves = {k: v.clone().requires_grad_(True) for k, v in g1.items()}

    def total(grads1):
        state = opt.init(g1)
        u1, state = opt.update(grads1, state)
        u2, _ = opt.update(g2, state)
        return sum(u.sum() for u in u1.values()) + sum(u.sum() for u in u2.values())

    loss = total(leaves)
    analytic = torch.autograd.grad(loss, phi, retain_graph=True)[0][index].item()
    # the gradient input is detached: nothing flows into g
    assert torch.autograd.grad(loss, list(leaves.values()), allow_unused=True) == (None, None)
    h = 1e-6
    with torch.no_grad():
        phi[index] += h
        plus = total(g1).item()
        phi[index] -= 2 * h
        minus = total(g1).item()
        phi[index] += h
    assert abs(analytic) > 1e-6
    assert analytic == pytest.approx((plus - minus) / (2 * h), rel=1e-6)


def test_functional_call_swaps_phi():
    opt = make_optimizer("Optim4RL", 1e-3)
    grads = random_grads()
    state = opt.init(grads)
    phi = {k: v * 1.5 for k, v in opt.named_parameters()}
    u_func, _ = torch.func.functional_call(opt, phi, (grads, state))
    twin = make_optimizer("Optim4RL", 1e-3)
    twin.load_state_dict(phi)
    u_twin, _ = twin.update(grads, state)
    u_orig, _ = opt.update(grads, state)
    assert torch.allclose(u_func["w"], u_twin["w"]) and not torch.allclose(u_func["w"], u_orig["w"])


@pytest.mark.parametrize("name,kwargs", [("Optim4RL", {}), ("Optim4RL", {"grad_clip": 1.0}),
                                         ("LinearOptim", {}), ("L2LGD2", {}),
                                         ("Adam", {"grad_norm": 1.0}), ("RMSProp", {"grad_clip": 0.5}),
                                         ("SGD", {"grad_norm": 0.3, "momentum": 0.9})])
def test_population_equals_separate_single_agent_runs(name, kwargs):
    opt = make_optimizer(name, 0.1, seed=0, **kwargs).double() if name in ("Optim4RL", "LinearOptim", "L2LGD2") \
        else make_optimizer(name, 0.1, **kwargs)
    steps = [random_grads(a=3, seed=s, dtype=torch.float64) for s in range(3)]
    state = opt.init(steps[0])
    together = []
    for g in steps:
        u, state = opt.update(g, state)
        together.append(u)
    for i in range(3):
        single = {k: v[i:i + 1] for k, v in steps[0].items()}
        s = opt.init(single)
        for t, g in enumerate(steps):
            u, s = opt.update({k: v[i:i + 1] for k, v in g.items()}, s)
            for k in u:
                assert torch.allclose(u[k][0], together[t][k][i], rtol=1e-10, atol=1e-15)


def test_reset_agents_and_detach_for_learned_state():
    opt = make_optimizer("Optim4RL", 1e-3)
    grads = random_grads(a=3)
    state = opt.init(grads)
    for _ in range(2):
        _, state = opt.update(grads, state)
    assert state["h1"].requires_grad
    state = detach_state(state)
    assert not state["h1"].requires_grad
    reset = opt.reset_agents(state, torch.tensor([False, True, False]))
    assert torch.all(reset["h1"][1] == 0) and torch.all(reset["h2"][1] == 0)
    assert torch.equal(reset["h1"][0], state["h1"][0]) and torch.equal(reset["h2"][2], state["h2"][2])


def test_updates_keep_the_gradients_dtype_and_shape():
    opt = make_optimizer("LinearOptim", 1e-3).double()
    grads = random_grads(dtype=torch.float32)
    updates, state = opt.update(grads, opt.init(grads))
    assert all(updates[k].dtype == torch.float32 and updates[k].shape == g.shape for k, g in grads.items())
    assert state["h"].dtype == torch.float64
    with pytest.raises(ValueError, match="initialised with other params"):
        opt.update({"w": grads["w"]}, state)


# ------------------------------------------------------------------ saving, loading, errors

def test_save_load_round_trip(tmp_path):
    path = tmp_path / "sub" / "phi.pt"
    trained = make_optimizer("Optim4RL", 1e-3, seed=1)
    save_meta_params(trained, path)
    assert os.listdir(path.parent) == ["phi.pt"]                 # no temp file left behind
    other = make_optimizer("Optim4RL", 1e-3, seed=2)
    assert not all(torch.equal(p, q) for p, q in zip(trained.parameters(), other.parameters()))
    load_meta_params(other, path)
    assert all(torch.equal(p, q) for p, q in zip(trained.parameters(), other.parameters()))
    loaded = make_optimizer("Optim4RL", 1e-3, seed=3, param_load_path=str(path))
    grads = random_grads()
    assert torch.equal(loaded.update(grads, loaded.init(grads))[0]["w"],
                       trained.update(grads, trained.init(grads))[0]["w"])
    save_meta_params(other, path)                                # overwriting works too
    with pytest.raises(UsageError, match="cannot load meta-parameters"):
        make_optimizer("L2LGD2", 1e-3, param_load_path=str(path))


def test_a_phi_with_a_flipped_byte_is_refused_by_both_loaders(tmp_path):
    """A flipped byte inside φ's tensors would load as another optimizer: both readers (the
    sweep's load_meta_params and the torch.optim wrapper) check the file's CRCs first."""
    import zipfile

    from optim4rl.torch_optim import Optim4RLOptimizer
    path = tmp_path / "phi.pt"
    save_meta_params(make_optimizer("Optim4RL", 1e-3, seed=1), path)
    with zipfile.ZipFile(path) as archive:
        info = max((i for i in archive.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    data = bytearray(path.read_bytes())
    header = info.header_offset
    start = header + 30 + int.from_bytes(data[header + 26:header + 28], "little") + \
        int.from_bytes(data[header + 28:header + 30], "little")
    data[start + info.file_size // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(UsageError, match="is damaged"):
        make_optimizer("Optim4RL", 1e-3, param_load_path=str(path))
    with pytest.raises(ValueError, match=r"phi=.*is damaged"):
        Optim4RLOptimizer([torch.zeros(3, requires_grad=True)], phi=str(path), lr=1e-3)


def test_user_errors_are_usage_errors(tmp_path):
    with pytest.raises(UsageError, match="unknown optimizer 'Adagrad'.*" + ", ".join(OPTIMIZERS)):
        make_optimizer("Adagrad", 1e-3)
    with pytest.raises(UsageError, match="unknown option.*momentum.*Optim4RL"):
        make_optimizer("Optim4RL", 1e-3, momentum=0.9)
    with pytest.raises(UsageError, match="unknown option.*b3"):
        make_optimizer("Adam", 1e-3, b3=0.9)
    missing = tmp_path / "nope.pt"
    with pytest.raises(UsageError, match="param_load_path .*nope.pt.* does not exist"):
        make_optimizer("Optim4RL", 1e-3, param_load_path=str(missing))
    with pytest.raises(UsageError, match="rnn_hidden_act"):
        make_optimizer("Optim4RL", 1e-3, rnn_hidden_act="Swish")
    assert isinstance(make_optimizer("rmsprop", 1e-3), type(make_optimizer("RMSProp", 1e-3)))


def test_classes_exported():
    assert isinstance(make_optimizer("Optim4RL", 1.0), Optim4RL)
    assert isinstance(make_optimizer("LinearOptim", 1.0), LinearOptim)
    assert isinstance(make_optimizer("L2LGD2", 1.0), L2LGD2)
