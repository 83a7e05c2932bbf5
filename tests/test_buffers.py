import errno
import gc
import os
import pickle
import types

import numpy as np
import pytest
import torch

from common import buffers
from common.buffers import SHM_DIR, ReplayBuffer
from common.cli import UsageError
from searl.atari import FrameReplayBuffer


def fill(buffer, start, n):
    """Transitions whose values encode their index i: obs = [i, i], reward = i."""
    for i in range(start, start + n):
        buffer.add(obs=[i, i], action=[-i], reward=i, next_obs=[i + 1, i + 1],
                   terminated=(i % 3 == 0), truncated=(i % 5 == 0))


def test_wraps_around_and_keeps_the_newest():
    buffer = ReplayBuffer(capacity=5, obs_shape=(2,), action_shape=(1,))
    fill(buffer, 0, 7)
    assert len(buffer) == 5 and buffer.total_added == 7
    # slots 0 and 1 were overwritten by transitions 5 and 6; 2..4 still hold 2..4
    assert buffer.rewards.tolist() == [5, 6, 2, 3, 4]
    assert buffer.pos == 2
    assert sorted(buffer.rewards.tolist()) == [2, 3, 4, 5, 6]


def test_add_batch_larger_than_capacity_keeps_last_transitions():
    buffer = ReplayBuffer(capacity=4, obs_shape=(1,), action_shape=())
    n = 10
    buffer.add_batch(np.arange(n)[:, None], np.arange(n), np.arange(n), np.arange(n)[:, None] + 1,
                     np.zeros(n, bool), np.zeros(n, bool))
    assert sorted(buffer.rewards.tolist()) == [6, 7, 8, 9]
    assert len(buffer) == 4 and buffer.total_added == 10


def test_sampling_returns_consistent_stored_transitions_as_tensors():
    buffer = ReplayBuffer(capacity=100, obs_shape=(2,), action_shape=(1,), seed=1)
    fill(buffer, 0, 30)
    batch = buffer.sample(256)
    assert batch.obs.shape == (256, 2) and batch.obs.dtype == torch.float32
    assert batch.rewards.shape == (256,) and batch.terminated.dtype == torch.float32
    i = batch.rewards
    assert torch.all((i >= 0) & (i < 30))
    assert torch.equal(batch.obs[:, 0], i) and torch.equal(batch.next_obs[:, 0], i + 1)
    assert torch.equal(batch.actions[:, 0], -i)
    # every stored transition is reachable
    assert len(set(i.tolist())) == 30


def test_terminated_and_truncated_are_kept_apart():
    buffer = ReplayBuffer(capacity=50, obs_shape=(2,), action_shape=(1,), seed=0)
    fill(buffer, 0, 30)
    batch = buffer.batch_at(np.arange(30))
    index = batch.rewards.long()
    assert torch.equal(batch.terminated.bool(), index % 3 == 0)
    assert torch.equal(batch.truncated.bool(), index % 5 == 0)
    # index 5 is truncated only, index 3 terminated only: the two flags are independent
    assert batch.truncated[5] == 1 and batch.terminated[5] == 0
    assert batch.terminated[3] == 1 and batch.truncated[3] == 0


def test_discrete_actions_and_uint8_observations_keep_their_dtypes():
    buffer = ReplayBuffer(capacity=8, obs_shape=(4, 84, 84), action_shape=(),
                          obs_dtype=np.uint8, action_dtype=np.int64)
    buffer.add(np.full((4, 84, 84), 255, np.uint8), 3, 1.0, np.zeros((4, 84, 84), np.uint8),
               False, False)
    batch = buffer.sample(2)
    assert batch.obs.dtype == torch.uint8 and batch.actions.dtype == torch.int64
    assert batch.actions.tolist() == [3, 3] and int(batch.obs.max()) == 255


def test_state_dict_round_trip_continues_sampling_exactly():
    buffer = ReplayBuffer(capacity=16, obs_shape=(2,), action_shape=(1,), seed=7)
    fill(buffer, 0, 20)
    buffer.sample(5)
    restored = ReplayBuffer(capacity=16, obs_shape=(2,), action_shape=(1,), seed=999)
    restored.load_state_dict(buffer.state_dict())
    assert (restored.pos, restored.size, restored.total_added) == (buffer.pos, buffer.size, 20)
    for _ in range(3):
        a, b = buffer.sample(8), restored.sample(8)
        assert all(torch.equal(x, y) for x, y in zip(a, b))
    fill(buffer, 20, 3)
    fill(restored, 20, 3)
    assert np.array_equal(buffer.rewards, restored.rewards)


def test_load_refuses_a_buffer_of_another_shape():
    buffer = ReplayBuffer(capacity=4, obs_shape=(2,), action_shape=(1,))
    fill(buffer, 0, 2)
    other = ReplayBuffer(capacity=4, obs_shape=(3,), action_shape=(1,))
    with pytest.raises(ValueError, match="shape"):
        other.load_state_dict(buffer.state_dict())


def test_empty_buffer_cannot_be_sampled():
    with pytest.raises(ValueError, match="empty"):
        ReplayBuffer(capacity=4, obs_shape=(2,)).sample(1)


# -- shared memory (what common.parallel.WorkerPool.map(..., shared=buffer) relies on) -----------
def segment_paths(buffer):
    """The /dev/shm files of the segments the buffer owns."""
    return {os.path.join(SHM_DIR, segment.name) for segment, _ in buffer._shared.values()}


def assert_same_batch(a, b):
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def add_random(buffer, n, seed=0):
    """n random transitions of the buffer's shapes."""
    rng = np.random.default_rng(seed)
    obs_shape, action_shape = buffer.obs.shape[1:], buffer.actions.shape[1:]
    buffer.add_batch(rng.normal(size=(n, *obs_shape)), rng.normal(size=(n, *action_shape)),
                     rng.normal(size=n), rng.normal(size=(n, *obs_shape)),
                     rng.random(n) < 0.1, rng.random(n) < 0.1)


def frame_stream(episodes, seed=0):
    """Transitions of short episodes of 2-frame stacks of 2x3 frames (pixel = frame number)."""
    rng = np.random.default_rng(seed)
    stream, value = [], 0
    for _ in range(episodes):
        length = int(rng.integers(1, 5))
        frames = [np.full((2, 3), value + i, np.uint8) for i in range(length + 1)]
        stacks = [np.stack([frames[max(0, j - 1)], frames[j]]) for j in range(length + 1)]
        stream += [(stacks[j], j % 3, float(value + j), stacks[j + 1], j == length - 1, False)
                   for j in range(length)]
        value += length + 1
    return stream


def test_shared_halfcheetah_buffer_pickles_to_a_few_kb_and_maps_the_same_memory():
    buffer = ReplayBuffer(1_000_000, (17,), (6,), seed=3)  # 166 MB of arrays
    add_random(buffer, 1000)
    idx = np.random.default_rng(1).integers(0, 1000, size=64)
    before = buffer.batch_at(idx)
    assert buffer.share_memory_() is buffer and buffer.is_shared()
    assert_same_batch(buffer.batch_at(idx), before)  # contents kept
    paths = segment_paths(buffer)
    assert len(paths) == 6 and all(os.path.exists(path) for path in paths)

    payload = pickle.dumps(buffer)
    assert len(payload) < 10_000  # the arrays are 166 MB
    worker = pickle.loads(payload)
    assert (worker.pos, worker.size, worker.total_added) == (1000, 1000, 1000)
    assert_same_batch(worker.batch_at(idx), before)
    assert not worker.is_shared() and not worker.obs.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        worker.rewards[0] = 1.0
    buffer.rewards[5] = 123.0  # the owner keeps writing into the same memory
    assert worker.rewards[5] == 123.0

    buffer.release_shared_memory()
    assert not any(os.path.exists(path) for path in paths)
    assert not buffer.is_shared()
    buffer.add(np.ones(17), np.ones(6), 7.0, np.ones(17), False, False)  # still usable
    assert buffer.batch_at(np.array([1000])).rewards.item() == 7.0


def test_unshared_buffer_pickles_its_full_arrays_as_before():
    buffer = ReplayBuffer(8, (2,), (1,))
    fill(buffer, 0, 5)
    copy = pickle.loads(pickle.dumps(buffer))
    assert copy.obs.flags.writeable and not np.shares_memory(copy.obs, buffer.obs)
    assert np.array_equal(copy.obs, buffer.obs) and copy.pos == buffer.pos


def test_segments_are_unlinked_when_the_owner_is_garbage_collected():
    buffer = ReplayBuffer(100, (2,), (1,)).share_memory_()
    paths = segment_paths(buffer)
    assert all(os.path.exists(path) for path in paths)
    del buffer
    gc.collect()
    assert not any(os.path.exists(path) for path in paths)


def test_state_dict_of_a_shared_buffer_is_a_copy_and_loading_keeps_it_shared():
    buffer = ReplayBuffer(16, (2,), (1,), seed=7)
    fill(buffer, 0, 20)
    buffer.share_memory_()
    state = buffer.state_dict()
    assert not np.shares_memory(state["obs"], buffer.obs)
    plain = ReplayBuffer(16, (2,), (1,), seed=1)
    plain.load_state_dict(state)
    shared = ReplayBuffer(16, (2,), (1,), seed=2).share_memory_()
    paths = segment_paths(shared)
    shared.load_state_dict(state)
    assert shared.is_shared() and segment_paths(shared) == paths  # loaded in place
    for _ in range(3):
        expected = buffer.sample(8)
        assert_same_batch(plain.sample(8), expected)
        assert_same_batch(shared.sample(8), expected)
        assert_same_batch(pickle.loads(pickle.dumps(shared)).batch_at(np.arange(16)),
                          buffer.batch_at(np.arange(16)))


def test_too_little_room_in_dev_shm_is_one_clear_usage_error(monkeypatch):
    buffer = ReplayBuffer(100_000, (17,), (6,))
    monkeypatch.setattr(buffers.shutil, "disk_usage", lambda path: types.SimpleNamespace(free=2**20))
    with pytest.raises(UsageError, match=r"needs 16 MiB of shared memory in /dev/shm, 1 MiB is free"):
        buffer.share_memory_()
    assert not buffer.is_shared() and not buffer._shared


def test_dev_shm_filling_up_meanwhile_is_a_usage_error_and_leaks_nothing(monkeypatch):
    def full(fd, offset, length):
        raise OSError(errno.ENOSPC, "No space left on device")

    before = set(os.listdir(SHM_DIR))
    monkeypatch.setattr(buffers.os, "posix_fallocate", full)
    with pytest.raises(UsageError, match="/dev/shm"):
        ReplayBuffer(100, (2,), (1,)).share_memory_()
    assert set(os.listdir(SHM_DIR)) <= before


def test_frame_replay_buffer_shares_its_frames_and_its_grown_start_ring():
    stream = frame_stream(40)
    buffer = FrameReplayBuffer(50, (2, 2, 3), seed=0)
    for transition in stream[:20]:
        buffer.add(*transition)
    buffer.share_memory_()
    paths = segment_paths(buffer)
    assert len(paths) == 8
    idx = np.arange(len(buffer))
    assert_same_batch(pickle.loads(pickle.dumps(buffer)).batch_at(idx), buffer.batch_at(idx))

    for transition in stream[20:]:  # wraps around; more live episodes than the 16 start slots
        buffer.add(*transition)
    assert len(buffer.start_stacks) > 16 and not buffer.is_shared()  # the ring is a new array
    idx = np.arange(50)
    worker = pickle.loads(pickle.dumps(buffer))  # the grown ring travels in full meanwhile
    assert_same_batch(worker.batch_at(idx), buffer.batch_at(idx))
    assert worker.rewards.tolist() == buffer.rewards.tolist()

    buffer.share_memory_()  # moves only the grown ring; its old segment is unlinked
    new_paths = segment_paths(buffer)
    assert buffer.is_shared() and len(new_paths - paths) == 1 and len(paths - new_paths) == 1
    assert not os.path.exists((paths - new_paths).pop())
    assert_same_batch(pickle.loads(pickle.dumps(buffer)).batch_at(idx), buffer.batch_at(idx))
    restored = FrameReplayBuffer(50, (2, 2, 3))
    restored.load_state_dict(buffer.state_dict())
    assert_same_batch(restored.batch_at(idx), buffer.batch_at(idx))
    buffer.release_shared_memory()
    assert not any(os.path.exists(path) for path in new_paths)


def test_require_shared_memory_is_one_clear_line_when_dev_shm_is_too_small():
    """train.py asks this before it creates a run folder for --backend process."""
    from common.buffers import require_shared_memory
    from common.cli import UsageError

    require_shared_memory(1)
    with pytest.raises(UsageError, match="shared memory in /dev/shm.*--backend serial") as error:
        require_shared_memory(1 << 60)
    assert "\n" not in str(error.value)
    buffer = ReplayBuffer(100, (17,), (6,))
    assert buffer.shared_bytes() == 100 * (17 * 4 * 2 + 6 * 4 + 4 + 2)
