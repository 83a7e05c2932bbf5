import os
import time

import numpy as np
import pytest
import torch

from common.cli import UsageError
from common.parallel import WorkerPool, parallel_map


def seeded_work(seed):
    """Seeded torch and numpy work; returns its result and the worker's torch thread count."""
    generator = torch.Generator().manual_seed(seed)
    weights = torch.randn(32, 32, generator=generator)
    x = torch.randn(16, 32, generator=generator)
    for _ in range(5):
        x = torch.tanh(x @ weights)
    time.sleep(0.05 * (seed % 3))  # unequal durations: results must still come back in order
    return seed, x.sum().item(), float(np.random.default_rng(seed).random()), torch.get_num_threads()


def results_and_threads(backend):
    out = parallel_map(seeded_work, range(6), workers=2, backend=backend)
    return [row[:3] for row in out], {row[3] for row in out}


def test_process_backend_matches_serial_with_one_thread_per_worker():
    serial, _ = results_and_threads("serial")
    assert [row[0] for row in serial] == list(range(6))
    process, threads = results_and_threads("process")
    assert process == serial
    assert threads == {1}


def test_ray_backend_matches_serial():
    if not os.environ.get("CI"):
        pytest.importorskip("ray")  # CI installs requirements-ray.txt and must run this test
    serial, _ = results_and_threads("serial")
    ray_results, threads = results_and_threads("ray")
    assert ray_results == serial
    assert threads == {1}


def test_pool_is_reusable_across_maps():
    with WorkerPool(workers=2, backend="process") as pool:
        first = pool.map(seeded_work, [1, 2])
        second = pool.map(seeded_work, [2, 1])
    assert first[0] == second[1] and first[1] == second[0]


@pytest.mark.parametrize("workers, backend, message", [(0, "serial", "at least 1"),
                                                       (2, "threads", "allowed: serial, process, ray")])
def test_bad_settings_are_usage_errors(workers, backend, message):
    with pytest.raises(UsageError, match=message):
        parallel_map(seeded_work, [1], workers=workers, backend=backend)
