"""STEVE's learners on a chosen device: networks, optimizers, generator and every tensor made
inside an update live there; batches arrive on the CPU; act answers on the CPU; state_dicts
load across devices. The CUDA tests run where torch sees a GPU; the CPU tests catch a tensor
created without a device (it would land on the CPU next to CUDA inputs) on any machine."""
import inspect
from pathlib import Path

import pytest
import torch
from torch.overrides import TorchFunctionMode

from steve.valuerl import ValueConfig, ValueLearner, WorldModelLearner

S, A, B = 5, 2, 32
STEVE_DIR = Path(__file__).resolve().parents[1] / "steve"
CONFIGS = {"ddpg": dict(algo="ddpg"), "mve_tdk": dict(algo="mve", tdk_trick=True),
           "steve": dict(algo="steve")}
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def cpu_batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(B, S, generator=g), torch.rand(B, A, generator=g) * 2 - 1,
            torch.randn(B, generator=g), torch.randn(B, S, generator=g),
            (torch.rand(B, generator=g) < 0.2).float())


def learners(algo, device, members=4, **extra):
    cfg = ValueConfig(hidden_dim=16, hidden_layers=2, q_members=members, rollout_len=2,
                      target_copy_every=2, **CONFIGS[algo], **extra)
    value = ValueLearner(S, A, cfg, seed=0, device=device)
    world = WorldModelLearner(S, A, members, members, seed=0, transition_hidden=16, transition_layers=2,
                              aux_hidden=16, aux_layers=1, device=device)
    return value, world


def train(value, world, updates=3):
    infos = []
    for i in range(updates):
        infos.append(world.update(cpu_batch(100 + i)))
        infos.append(value.update(cpu_batch(i), world.model if value.cfg.algo != "ddpg" else None))
    return infos


def tensors(state, path=""):
    """(path, tensor) of every tensor in a nested state_dict."""
    if isinstance(state, torch.Tensor):
        yield path, state
    elif isinstance(state, dict):
        for key, item in state.items():
            yield from tensors(item, f"{path}.{key}")
    elif isinstance(state, (list, tuple)):
        for i, item in enumerate(state):
            yield from tensors(item, f"{path}[{i}]")


def assert_state_on(learner, device):
    for path, tensor in tensors(learner.state_dict()):
        if path == ".generator":  # get_state(): CPU bytes on every device, by torch's design
            assert tensor.device.type == "cpu" and tensor.dtype == torch.uint8
        else:
            assert tensor.device.type == torch.device(device).type, path


# -- the CPU: any machine -----------------------------------------------------------------------
@pytest.mark.parametrize("algo", CONFIGS)
def test_every_state_tensor_is_on_the_chosen_device_and_act_answers_on_the_cpu(algo):
    value, world = learners(algo, "cpu")
    train(value, world, updates=2)
    assert_state_on(value, "cpu")
    assert_state_on(world, "cpu")
    assert value.act(torch.zeros(S)).device.type == "cpu"


FACTORIES = {torch.zeros, torch.ones, torch.empty, torch.full, torch.arange, torch.rand, torch.randn,
             torch.randint, torch.randperm, torch.tensor, torch.as_tensor, torch.linspace, torch.eye,
             torch.normal}


class NoImplicitDevice(TorchFunctionMode):
    """Records every call of a tensor factory without `device=` made from the code in `scopes`:
    on a CUDA learner such a tensor would be created on the CPU."""

    def __init__(self, *scopes):
        super().__init__()
        self.scopes, self.offenders = [str(s) for s in scopes], []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in FACTORIES and kwargs.get("device") is None:
            caller = inspect.currentframe().f_back
            if any(caller.f_code.co_filename.startswith(scope) for scope in self.scopes):
                self.offenders.append(f"{func.__name__} at {caller.f_code.co_filename}:{caller.f_lineno}")
        return func(*args, **kwargs)


def test_the_device_check_catches_a_tensor_made_without_a_device():
    with NoImplicitDevice(__file__) as check:
        torch.arange(3)
        torch.zeros(2, device="cpu")
    assert len(check.offenders) == 1 and check.offenders[0].startswith("arange")


@pytest.mark.parametrize("algo", CONFIGS)
@pytest.mark.parametrize("extra", [{}, dict(corrupt_std=0.1, q_train_samples=2, q_eval_samples=3)])
def test_no_tensor_inside_the_learners_is_made_without_a_device(algo, extra):
    value, world = learners(algo, "cpu", **extra)
    world.model.transition_samples, world.model.reward_samples = (2, 3), (1, 2)
    with NoImplicitDevice(STEVE_DIR) as check:
        train(value, world, updates=2)
        value.targets(*cpu_batch()[2:], world.model)
        value.act(torch.zeros(S))
    assert check.offenders == []


def test_a_state_from_another_device_type_reseeds_the_generator_reproducibly():
    value, _ = learners("steve", "cpu")
    state = value.state_dict()
    foreign = {**state, "generator_device": "cuda", "generator": torch.arange(16, dtype=torch.uint8)}
    draws = []
    for _ in range(2):
        value.load_state_dict(foreign)
        draws.append(torch.randint(100, (5,), generator=value.generator))
    assert torch.equal(*draws)
    value.load_state_dict(state)  # same device type: the exact stream back
    assert torch.equal(value.generator.get_state(), state["generator"])


# -- CUDA ------------------------------------------------------------------------------------
@needs_cuda
@pytest.mark.parametrize("algo", CONFIGS)
def test_cuda_learners_train_from_cpu_batches(algo):
    value, world = learners(algo, "cuda")
    infos = train(value, world)
    for module in (value.policy, value.q, value.q_target, world.model):
        assert all(p.device.type == "cuda" for p in module.parameters())
    assert value.generator.device.type == world.generator.device.type == "cuda"
    assert all(torch.isfinite(torch.tensor(list(info.values()))).all() for info in infos)
    assert value.act(torch.zeros(S)).device.type == "cpu"
    assert_state_on(value, "cuda")
    assert_state_on(world, "cuda")


@needs_cuda
def test_cuda_steve_target_equals_the_cpu_target_of_the_same_weights():
    """A tensor made on the CPU inside the target would fail here (device mismatch) or, if
    broadcast silently, change the numbers."""
    value, world = learners("steve", "cuda")
    train(value, world)
    cpu_value, cpu_world = learners("steve", "cpu")
    cpu_value.load_state_dict(value.state_dict())
    cpu_world.load_state_dict(world.state_dict())
    _, _, rew, nxt, done = cpu_batch(7)
    on_gpu = value.targets(rew.cuda(), nxt.cuda(), done.cuda(), world.model)
    on_cpu = cpu_value.targets(rew, nxt, done, cpu_world.model)
    for gpu, cpu in zip(on_gpu, on_cpu):
        torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-4, atol=1e-5)


@needs_cuda
def test_state_dicts_round_trip_between_cuda_and_cpu(tmp_path):
    value, world = learners("steve", "cuda")
    train(value, world)
    torch.save({"value": value.state_dict(), "world": world.state_dict()}, tmp_path / "ckpt.pt")
    saved = torch.load(tmp_path / "ckpt.pt", map_location="cpu")
    cpu_value, cpu_world = learners("steve", "cpu")
    cpu_value.load_state_dict(saved["value"])
    cpu_world.load_state_dict(saved["world"])
    for a, b in zip(value.q.parameters(), cpu_value.q.parameters()):
        torch.testing.assert_close(a.cpu(), b)
    train(cpu_value, cpu_world, updates=1)  # the optimizers' state works on the CPU
    back_value, back_world = learners("steve", "cuda")
    back_value.load_state_dict(cpu_value.state_dict())
    back_world.load_state_dict(cpu_world.state_dict())
    train(back_value, back_world, updates=1)
    assert_state_on(back_value, "cuda")
    assert_state_on(back_world, "cuda")
