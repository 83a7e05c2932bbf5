"""optim4rl/torch_optim.py: the learned optimizers as torch.optim.Optimizers, and the README's
"Use it in your code" example."""
import copy

import pytest
import torch
from torch import nn

from optim4rl.optimizers import make_optimizer, save_meta_params
from optim4rl.torch_optim import (PHI_FILES, RESULTS, L2LGD2Optimizer, LinearOptimOptimizer,
                                  Optim4RLOptimizer)
from helpers import run_readme_example


def small_mlp(seed=0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 1))


def batches(steps, seed=1):
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x = torch.randn(32, 4, generator=gen)
        yield x, torch.sin(x.sum(1, keepdim=True))


def mse(model, x, y):
    return (model(x) - y).square().mean()


def train(model, opt, steps=100, seed=1):
    """Parameters after each of `steps` updates of torch optimizer `opt` on random regression."""
    trace = []
    for x, y in batches(steps, seed):
        opt.zero_grad()
        mse(model, x, y).backward()
        opt.step()
        trace.append([p.detach().clone() for p in model.parameters()])
    return trace


def train_functional(model, opt, steps=100, seed=1):
    """The same with optimizers.py's functional path: one agent, A = 1, params stacked [1, ...]."""
    names = [n for n, _ in model.named_parameters()]
    state = opt.init({n: p.detach().unsqueeze(0) for n, p in model.named_parameters()})
    trace = []
    for x, y in batches(steps, seed):
        model.zero_grad()
        mse(model, x, y).backward()
        grads = {n: p.grad.unsqueeze(0) for n, p in model.named_parameters()}
        with torch.no_grad():
            updates, state = opt.update(grads, state)
            for n, p in zip(names, model.parameters()):
                p.add_(updates[n][0])
        trace.append([p.detach().clone() for p in model.parameters()])
    return trace


def max_diff(a, b):
    return max((p - q).abs().max().item() for ps, qs in zip(a, b) for p, q in zip(ps, qs))


# -- (b) fast unit tests -------------------------------------------------------------------------
@pytest.mark.parametrize("phi", ["catch", None])
def test_equal_to_functional_path_over_100_steps(phi):
    lr = 1e-3
    model, twin = small_mlp(), small_mlp()
    ours = train(model, Optim4RLOptimizer(model.parameters(), phi=phi, lr=lr))
    path = str(RESULTS / PHI_FILES["catch"][0]) if phi else ""
    functional = make_optimizer("Optim4RL", lr, seed=0, grad_clip=-1, param_load_path=path)
    reference = train_functional(twin, functional)
    assert max_diff(ours, reference) <= 1e-6
    assert max_diff(ours[:1], [[p.detach() for p in small_mlp().parameters()]]) > 1e-4   # it moved


def test_first_step_moves_against_the_gradient():
    """One step by hand through the functional update: the same numbers bit for bit, every
    coordinate moves against its gradient's sign (m = sign(g) exp(o1)), a zero gradient not at all."""
    w = nn.Parameter(torch.tensor([0.5, -2.0, 3e-7]))
    g = torch.tensor([1e-5, -4.0, 0.0])
    opt = Optim4RLOptimizer([w], lr=0.1)
    w.grad = g.clone()
    opt.step()
    functional = make_optimizer("Optim4RL", 0.1, seed=0)
    u, _ = functional.update({"w": g[None]}, functional.init({"w": torch.zeros(1, 3)}))
    assert torch.equal(w.detach(), torch.tensor([0.5, -2.0, 3e-7]) + u["w"][0])
    assert w[0].item() < 0.5 and w[1].item() > -2.0 and w[2].item() == torch.tensor(3e-7).item()


@pytest.mark.parametrize("cls,kind", [(LinearOptimOptimizer, "LinearOptim"), (L2LGD2Optimizer, "L2LGD2")])
def test_baselines_equal_to_functional_path(cls, kind):
    model, twin = small_mlp(), small_mlp()
    ours = train(model, cls(model.parameters(), lr=1e-2), steps=20)
    reference = train_functional(twin, make_optimizer(kind, 1e-2, seed=0), steps=20)
    assert max_diff(ours, reference) <= 1e-6


def test_param_groups_with_two_learning_rates():
    """Each group steps as an optimizer of its own lr alone would (the state is per parameter)."""
    model = small_mlp()
    first, second = model[0], model[2]
    opt = Optim4RLOptimizer([{"params": first.parameters()}, {"params": second.parameters(), "lr": 1e-2}],
                            phi="catch", lr=1e-4)
    assert [g["lr"] for g in opt.param_groups] == [1e-4, 1e-2]
    alone = copy.deepcopy(model)
    opt_a = Optim4RLOptimizer(alone[0].parameters(), phi="catch", lr=1e-4)
    opt_b = Optim4RLOptimizer(alone[2].parameters(), phi="catch", lr=1e-2)
    for x, y in batches(5):
        for o in (opt, opt_a, opt_b):
            o.zero_grad()
        mse(model, x, y).backward()
        mse(alone, x, y).backward()
        opt.step(), opt_a.step(), opt_b.step()
    for p, q in zip(model.parameters(), alone.parameters()):
        assert torch.allclose(p, q, atol=1e-6, rtol=0)
    moved = [(p - q).abs().max().item() for p, q in zip(model.parameters(), small_mlp().parameters())]
    assert moved[2] > 10 * moved[0]        # the lr 1e-2 layer moved much further than the 1e-4 one


def test_state_dict_round_trip_continues_identically():
    model = small_mlp()
    opt = Optim4RLOptimizer(model.parameters(), phi="catch", lr=1e-3)
    train(model, opt, steps=10)
    saved_model, saved_opt = copy.deepcopy(model.state_dict()), copy.deepcopy(opt.state_dict())
    assert set(saved_opt["state"][0]) == {"h1", "h2"}
    assert saved_opt["state"][0]["h1"].shape == (1, 8, 64)       # [1, H, numel] of the 16x4 weight
    straight = train(model, opt, steps=10, seed=7)
    resumed_model = small_mlp(seed=3)
    resumed_model.load_state_dict(saved_model)
    resumed = Optim4RLOptimizer(resumed_model.parameters(), phi="catch", lr=1e-3)
    resumed.load_state_dict(saved_opt)
    assert max_diff(train(resumed_model, resumed, steps=10, seed=7), straight) == 0
    fresh_model = small_mlp(seed=3)
    fresh_model.load_state_dict(saved_model)          # same params, zero hidden state: differs
    fresh = train(fresh_model, Optim4RLOptimizer(fresh_model.parameters(), phi="catch", lr=1e-3), 10, 7)
    assert max_diff(fresh, straight) > 1e-6


def test_zero_grad_and_step_with_closure():
    model = small_mlp()
    opt = Optim4RLOptimizer(model.parameters(), phi="catch", lr=1e-3)
    x, y = next(batches(1))
    calls = []

    def closure():
        opt.zero_grad()
        loss = mse(model, x, y)
        loss.backward()
        calls.append(loss.item())
        return loss

    losses = [opt.step(closure).item() for _ in range(50)]
    assert len(calls) == 50 and losses[-1] < 0.5 * losses[0]
    opt.zero_grad()
    assert all(p.grad is None for p in model.parameters())
    before = [p.clone() for p in model.parameters()]
    opt.step()                                     # no gradients: nothing moves
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), before))


def test_phi_weights_are_frozen():
    opt = Optim4RLOptimizer(small_mlp().parameters(), phi="grid_laptop")
    assert not any(p.requires_grad for p in opt.phi.parameters())
    assert opt.phi.mlp_dims == (16, 16) and opt.phi.grad_clip == 1.0   # read from the file / name


def test_bad_arguments(tmp_path):
    params = list(small_mlp().parameters())
    with pytest.raises(ValueError, match=r"phi='nope'.*catch"):
        Optim4RLOptimizer(params, phi="nope")
    with pytest.raises(ValueError, match=r"phi=.*missing\.pt.*no such file"):
        Optim4RLOptimizer(params, phi=str(tmp_path / "missing.pt"))
    with pytest.raises(ValueError, match=r"lr=-0\.1"):
        Optim4RLOptimizer(params, lr=-0.1)
    linear = tmp_path / "linear.pt"
    save_meta_params(make_optimizer("LinearOptim", 1e-3), str(linear))
    with pytest.raises(ValueError, match=r"phi=.*linear\.pt.*LinearOptim phi, not Optim4RL"):
        Optim4RLOptimizer(params, phi=str(linear))
    with pytest.raises(ValueError, match=r"phi='catch'.*Optim4RL phi, not L2LGD2"):
        L2LGD2Optimizer(params, phi="catch")
    junk = tmp_path / "junk.pt"
    junk.write_text("not a tensor file")
    with pytest.raises(ValueError, match=r"phi=.*junk\.pt.*cannot read"):
        Optim4RLOptimizer(params, phi=str(junk))
    opt = Optim4RLOptimizer(params)
    opt.param_groups[0]["lr"] = -1.0
    params[0].grad = torch.ones_like(params[0])
    with pytest.raises(ValueError, match=r"lr=-1\.0"):
        opt.step()


def test_committed_catch_phi_is_small_and_meta_trained():
    path = RESULTS / "phi_catch.pt"
    assert path.stat().st_size < 20_000
    untrained = make_optimizer("Optim4RL", 1e-3, seed=0).state_dict()
    trained = torch.load(path, weights_only=True)
    assert max((trained[k] - untrained[k]).abs().max().item() for k in trained) > 1e-3


# -- (c) CUDA ------------------------------------------------------------------------------------
@pytest.mark.skipif(not torch.cuda.is_available(), reason="torch sees no CUDA device")
def test_cuda_matches_cpu():
    cpu_model = small_mlp()
    gpu_model = copy.deepcopy(cpu_model).cuda()
    cpu = train(cpu_model, Optim4RLOptimizer(cpu_model.parameters(), phi="catch", lr=1e-3), steps=20)
    opt = Optim4RLOptimizer(gpu_model.parameters(), phi="catch", lr=1e-3)
    gpu = []
    for x, y in batches(20):
        opt.zero_grad()
        mse(gpu_model, x.cuda(), y.cuda()).backward()
        opt.step()
        gpu.append([p.detach().cpu() for p in gpu_model.parameters()])
    assert opt.state[next(gpu_model.parameters())]["h1"].is_cuda
    assert max_diff(cpu, gpu) <= 1e-4


# -- (a) the README example ----------------------------------------------------------------------
@pytest.mark.slow
def test_readme_example_runs_from_a_copy(tmp_path):
    done = run_readme_example("optim4rl", tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
