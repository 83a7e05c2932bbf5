import numpy as np
import pytest
import torch

from common.buffers import ReplayBuffer


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
