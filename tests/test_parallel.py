import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from common.buffers import ReplayBuffer
from common.cli import UsageError
from common.parallel import WorkerPool, parallel_map
from searl.atari import FrameReplayBuffer
from test_buffers import add_random, frame_stream, segment_paths

ROOT = Path(__file__).resolve().parents[1]


def seeded_work(seed):
    """Seeded torch and numpy work; returns its result and the worker's torch thread count."""
    generator = torch.Generator().manual_seed(seed)
    weights = torch.randn(32, 32, generator=generator)
    x = torch.randn(16, 32, generator=generator)
    for _ in range(5):
        x = torch.tanh(x @ weights)
    time.sleep(0.05 * (seed % 3))  # unequal durations: results must still come back in order
    return seed, x.sum().item(), float(np.random.default_rng(seed).random()), torch.get_num_threads()


def results_and_threads(backend, pool=None):
    out = (pool.map(seeded_work, range(6)) if pool
           else parallel_map(seeded_work, range(6), workers=2, backend=backend))
    return [row[:3] for row in out], {row[3] for row in out}


@pytest.fixture(scope="module")
def ray_pool():
    """One local Ray for the Ray tests (starting it takes ~20 s on 2 cores)."""
    if not os.environ.get("CI"):
        pytest.importorskip("ray")  # CI installs requirements-ray.txt and must run these tests
    with WorkerPool(workers=2, backend="ray") as pool:
        yield pool


def test_process_backend_matches_serial_with_one_thread_per_worker():
    serial, _ = results_and_threads("serial")
    assert [row[0] for row in serial] == list(range(6))
    process, threads = results_and_threads("process")
    assert process == serial
    assert threads == {1}


@pytest.mark.slow
def test_ray_backend_matches_serial(ray_pool):
    serial, _ = results_and_threads("serial")
    ray_results, threads = results_and_threads("ray", ray_pool)
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


# -- shared=: the replay buffer reaches the workers once, not per job --------------------------
def batch_at_in_worker(idx, buffer):
    """What a SEARL worker does with the shared memory: sample the transitions at idx."""
    return [tensor.numpy() for tensor in buffer.batch_at(idx)], buffer.rewards.flags.writeable


def assert_workers_see(pool, buffer, index_sets):
    """A map with shared=buffer returns, for each idx, what the main process's batch_at gives."""
    results = pool.map(batch_at_in_worker, index_sets, shared=buffer)
    for (arrays, writeable), idx in zip(results, index_sets, strict=True):
        assert not writeable  # workers get a read-only view
        expected = buffer.batch_at(idx)
        assert all(np.array_equal(a, e.numpy()) for a, e in zip(arrays, expected, strict=True))


def test_process_workers_sample_shared_buffers_and_see_later_additions():
    replay = ReplayBuffer(20_000, (17,), (6,), seed=0)
    add_random(replay, 500, seed=1)
    stream = frame_stream(40)
    frames = FrameReplayBuffer(50, (2, 2, 3), seed=0)
    for transition in stream[:30]:
        frames.add(*transition)
    rng = np.random.default_rng(2)
    with WorkerPool(workers=2, backend="process") as pool:
        assert_workers_see(pool, replay, [rng.integers(0, 500, size=32) for _ in range(3)])
        assert_workers_see(pool, frames, [np.arange(30), np.arange(29, -1, -3)])
        assert replay.is_shared() and frames.is_shared()
        replay_paths, frame_paths = segment_paths(replay), segment_paths(frames)
        job = pickle.dumps((batch_at_in_worker, np.arange(32), replay))
        assert len(job) < 10_000 < replay.obs.nbytes

        # between generations the main process adds transitions into the same memory
        add_random(replay, 500, seed=3)
        for transition in stream[30:]:  # wraps around and grows the episode-start ring
            frames.add(*transition)
        assert_workers_see(pool, replay, [rng.integers(500, 1000, size=32) for _ in range(3)])
        assert_workers_see(pool, frames, [np.arange(50), np.arange(49, -1, -2)])
        assert segment_paths(replay) == replay_paths  # the same segments, no new copy
        frame_paths |= segment_paths(frames)           # + the grown ring's new segment
        assert pool.map(seeded_work, [4]) == [seeded_work(4)[:3] + (1,)]  # plain map unchanged
    assert not any(os.path.exists(path) for path in replay_paths | frame_paths)  # pool closed


def identity_of_shared(item, shared):
    return item, shared


def test_serial_backend_passes_the_object_itself():
    buffer = ReplayBuffer(10, (2,), (1,))
    with WorkerPool(backend="serial") as pool:
        results = pool.map(identity_of_shared, [1, 2], shared=buffer)
    assert [item for item, _ in results] == [1, 2]
    assert all(shared is buffer for _, shared in results) and not buffer.is_shared()


def test_process_backend_refuses_a_shared_object_it_cannot_share():
    with WorkerPool(workers=1, backend="process") as pool:
        with pytest.raises(TypeError, match="share_memory_"):
            pool.map(identity_of_shared, [1], shared={"a": np.zeros(3)})


@pytest.mark.slow
def test_ray_workers_sample_the_buffer_from_the_object_store(ray_pool):
    buffer = ReplayBuffer(1000, (17,), (6,), seed=0)
    add_random(buffer, 300)
    assert_workers_see(ray_pool, buffer, [np.arange(0, 300, 7), np.arange(299, 0, -5)])
    assert not buffer.is_shared()  # Ray's object store holds it, not /dev/shm segments


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's")
def test_process_workers_end_when_their_parent_is_killed():
    """A run killed with SIGKILL must not leave its pool processes training on."""
    script = ("import sys, time; sys.path.insert(0, %r)\n"
              "from common.parallel import WorkerPool\n"
              "pool = WorkerPool(2, 'process')\n"
              "jobs = [pool._executor.submit(time.sleep, 120) for _ in range(2)]\n"
              "time.sleep(3)\n"
              "print(' '.join(str(p) for p in pool._executor._processes), flush=True)\n"
              "time.sleep(120)\n") % str(ROOT)
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        workers = [int(pid) for pid in parent.stdout.readline().split()]
        assert len(workers) == 2
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=10)
        deadline = time.time() + 10
        while time.time() < deadline and any(_alive(pid) for pid in workers):
            time.sleep(0.1)
        assert not any(_alive(pid) for pid in workers)
    finally:
        parent.kill()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return not Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"
