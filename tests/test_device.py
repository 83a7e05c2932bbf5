import random

import numpy as np
import pytest
import torch

from common.cli import UsageError
from common.device import flush_denormals, resolve_device, seed_everything


def test_auto_and_cpu():
    assert resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on machines without CUDA")
@pytest.mark.parametrize("spec", ["cuda", "cuda:0", "CUDA:1"])
def test_cuda_without_cuda_is_a_clear_usage_error(spec):
    with pytest.raises(UsageError, match="no CUDA device"):
        resolve_device(spec)


@pytest.mark.parametrize("spec", ["gpu", "cuda:x", "tpu"])
def test_invalid_device_names_the_allowed_values(spec):
    with pytest.raises(UsageError, match="allowed: auto, cpu, cuda, cuda:N"):
        resolve_device(spec)


def draws(seed):
    rng = seed_everything(seed)
    return (random.random(), float(np.random.rand()), float(torch.rand(1)), float(rng.random()))


def test_seed_everything_makes_every_generator_repeat():
    first = draws(3)
    assert draws(3) == first
    assert draws(4) != first


def test_flush_denormals_makes_subnormal_products_zero():
    tiny = torch.tensor([1e-40, 1e-30])    # float32: the first is subnormal, the second is not
    assert (tiny * 1.0)[0] > 0
    if not flush_denormals():
        pytest.skip("this CPU cannot flush subnormals")
    flushed = tiny * 1.0
    assert flushed[0] == 0 and flushed[1] == pytest.approx(1e-30)


def test_steve_train_flushes_subnormals(tmp_path):
    """A STEVE run's weights decay into subnormals (48 ms instead of 1.2 ms per done-net forward
    after 20k HalfCheetah frames): steve/train.py flushes them."""
    from steve.train import main

    if not torch.set_flush_denormal(False):
        pytest.skip("this CPU cannot flush subnormals")
    main(["experiments/goodruns/pendulum/ddpg0.json", "--smoke", "--frames", "200", "--no-plots",
          "--out-dir", str(tmp_path / "run")])
    assert (torch.tensor([1e-40]) * 1.0)[0] == 0
