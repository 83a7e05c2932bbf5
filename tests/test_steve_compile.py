"""steve --compile: the learners' target, Q, policy and world-model losses through torch.compile,
with their random draws kept eager: the same training as eager up to float rounding, and eager
(bit for bit, one line on stderr) where compiling fails."""
import pytest
import torch

from common import compiling
from steve.valuerl import ValueConfig, ValueLearner, WorldModelLearner

S, A, B = 5, 2, 24


def batches(count, dtype=torch.float32):
    g = torch.Generator().manual_seed(7)
    return [(torch.randn(B, S, generator=g, dtype=dtype), torch.rand(B, A, generator=g, dtype=dtype) * 2 - 1,
             torch.randn(B, generator=g, dtype=dtype), torch.randn(B, S, generator=g, dtype=dtype),
             (torch.rand(B, generator=g) < 0.2).to(dtype)) for _ in range(count)]


def trained(compile, algo="steve", routing="random", full_batch=False, updates=6, dtype=torch.float32):
    """Every parameter after `updates` frames of both learners (the value learner on the world
    model's imagination), with samples drawn from subsets so every random draw is exercised."""
    cfg = ValueConfig(algo=algo, rollout_len=2, tdk_trick=algo == "mve", q_members=3, hidden_dim=16,
                      hidden_layers=2, q_routing=routing, q_eval_samples=2, target_copy_every=4)
    value = ValueLearner(S, A, cfg, seed=1, compile=compile)
    world = WorldModelLearner(S, A, 3, 3, seed=1, transition_hidden=16, transition_layers=2, aux_hidden=16,
                              aux_layers=1, full_batch=full_batch, transition_samples=(2, 2),
                              reward_samples=(3, 2), compile=compile)
    for net in (value.policy, value.q, value.q_target, world.model):
        net.to(dtype)
    logs = []
    for frame in batches(updates, dtype):
        logs.append(value.update(frame, world.model))
        logs.append(world.update(frame))
    params = [p.detach().clone() for net in (value.policy, value.q, value.q_target, world.model)
              for p in net.parameters()]
    return params, logs


def test_compile_falls_back_to_eager_in_one_line_where_compiling_fails(broken_compiler, capsys):
    eager, eager_logs = trained(compile=False)
    fallen_back, logs = trained(compile=True)
    assert all(torch.equal(a, b) for a, b in zip(eager, fallen_back)) and logs == eager_logs
    err = capsys.readouterr().err
    assert err.count("torch.compile failed") == 1 and err.count("\n") == 1, err
    assert err.startswith("steve: ") and "No working C++ compiler found" in err and "training eagerly" in err


def test_compile_refuses_a_corrupted_model():
    with pytest.raises(ValueError, match="corrupt"):
        ValueLearner(S, A, ValueConfig(corrupt_std=1.0, hidden_dim=8, hidden_layers=1), seed=0, compile=True)


@pytest.mark.slow
@pytest.mark.parametrize("algo,routing,full_batch", [("steve", "random", False), ("steve", "full", True),
                                                     ("mve", "random", False)])
def test_compiled_updates_equal_eager_to_float_rounding(algo, routing, full_batch):
    """In float64 the compiled learners follow the eager ones to ~1e-9 over several updates: the
    same draws (kept eager), the same maths (one graph per function, no breaks)."""
    torch._dynamo.reset()
    eager, eager_logs = trained(False, algo, routing, full_batch, dtype=torch.float64)
    compiled_params, logs = trained(True, algo, routing, full_batch, dtype=torch.float64)
    assert not compiling._EAGER_ONLY, "torch.compile failed: this compared eager with eager"
    for a, b in zip(eager, compiled_params):
        torch.testing.assert_close(b, a, rtol=1e-9, atol=1e-9)
    assert [sorted(log) for log in logs] == [sorted(log) for log in eager_logs]
    for log, eager_log in zip(logs, eager_logs):
        for key, value in eager_log.items():
            assert log[key] == pytest.approx(value, rel=1e-7, abs=1e-9), key
