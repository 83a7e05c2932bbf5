"""A numpy ring replay buffer with uniform sampling straight to torch tensors.

`terminated` (a true end of the MDP: bootstrap with 1 - terminated) and `truncated` (a time
limit: keep bootstrapping) are stored apart, so a time-limit cut is never mistaken for a terminal.
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np
import torch


class Batch(NamedTuple):
    obs: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor      # float32, shape [B]
    next_obs: torch.Tensor
    terminated: torch.Tensor   # float32 0/1, shape [B]: multiply the bootstrap by (1 - terminated)
    truncated: torch.Tensor    # float32 0/1, shape [B]: informational, never used to cut bootstrap


class ReplayBuffer:
    """FIFO memory of `capacity` transitions; the oldest are overwritten first."""

    def __init__(self, capacity: int, obs_shape: Sequence[int], action_shape: Sequence[int] = (),
                 obs_dtype=np.float32, action_dtype=np.float32, seed: int = 0,
                 device: str | torch.device = "cpu"):
        if capacity <= 0:
            raise ValueError(f"replay capacity must be positive, got {capacity}")
        self.capacity = int(capacity)
        self.device = torch.device(device)
        self.obs = np.zeros((self.capacity, *obs_shape), dtype=obs_dtype)
        self.next_obs = np.zeros_like(self.obs)
        self.actions = np.zeros((self.capacity, *action_shape), dtype=action_dtype)
        self.rewards = np.zeros(self.capacity, dtype=np.float32)
        self.terminated = np.zeros(self.capacity, dtype=bool)
        self.truncated = np.zeros(self.capacity, dtype=bool)
        self.pos = 0            # next slot to write
        self.size = 0           # transitions currently held
        self.total_added = 0    # transitions ever added (for step accounting checks)
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return self.size

    def add(self, obs, action, reward, next_obs, terminated, truncated) -> None:
        """Store one transition (called every env step: a direct slot write)."""
        slot = self.pos
        self.obs[slot] = obs
        self.next_obs[slot] = next_obs
        self.actions[slot] = action
        self.rewards[slot] = reward
        self.terminated[slot] = terminated
        self.truncated[slot] = truncated
        self.pos = (slot + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)
        self.total_added += 1

    def add_batch(self, obs, actions, rewards, next_obs, terminated, truncated) -> None:
        """Store n transitions given as arrays with a leading dimension n (e.g. from a vector
        env, after dropping the fake autoreset transitions)."""
        n = len(rewards)
        if n == 0:
            return
        slots = (self.pos + np.arange(n)) % self.capacity
        if n > self.capacity:  # only the newest `capacity` transitions survive anyway
            slots, keep = slots[-self.capacity:], slice(n - self.capacity, n)
        else:
            keep = slice(0, n)
        self.obs[slots] = np.asarray(obs)[keep]
        self.next_obs[slots] = np.asarray(next_obs)[keep]
        self.actions[slots] = np.asarray(actions).reshape((n, *self.actions.shape[1:]))[keep]
        self.rewards[slots] = np.asarray(rewards)[keep]
        self.terminated[slots] = np.asarray(terminated)[keep]
        self.truncated[slots] = np.asarray(truncated)[keep]
        self.pos = int((self.pos + n) % self.capacity)
        self.size = min(self.size + n, self.capacity)
        self.total_added += n

    def sample(self, batch_size: int) -> Batch:
        """Uniformly sample `batch_size` stored transitions (with replacement)."""
        if self.size == 0:
            raise ValueError("cannot sample from an empty replay buffer")
        idx = self.rng.integers(0, self.size, size=batch_size)
        return self.batch_at(idx)

    def batch_at(self, idx: np.ndarray) -> Batch:
        """The transitions at slot indices `idx`, as tensors on the buffer's device."""
        def to_tensor(array):
            return torch.from_numpy(array).to(self.device, non_blocking=True)

        return Batch(
            obs=to_tensor(self.obs[idx]),
            actions=to_tensor(self.actions[idx]),
            rewards=to_tensor(self.rewards[idx]),
            next_obs=to_tensor(self.next_obs[idx]),
            terminated=to_tensor(self.terminated[idx].astype(np.float32)),
            truncated=to_tensor(self.truncated[idx].astype(np.float32)),
        )

    # -- checkpoints ------------------------------------------------------------------------
    _ARRAYS = ("obs", "next_obs", "actions", "rewards", "terminated", "truncated")

    def state_dict(self) -> dict:
        """Everything needed to continue exactly: the stored data, positions and sampler state."""
        state = {name: getattr(self, name)[: self.size].copy() for name in self._ARRAYS}
        state.update(capacity=self.capacity, pos=self.pos, size=self.size,
                     total_added=self.total_added, rng=self.rng.bit_generator.state)
        return state

    def load_state_dict(self, state: dict) -> None:
        if state["capacity"] != self.capacity:
            raise ValueError(f"checkpoint buffer capacity {state['capacity']} != {self.capacity}")
        for name in self._ARRAYS:
            target = getattr(self, name)
            if state[name].shape[1:] != target.shape[1:]:
                raise ValueError(f"checkpoint buffer '{name}' has shape {state[name].shape[1:]}, "
                                 f"expected {target.shape[1:]}")
            target[: state["size"]] = state[name]
        self.pos, self.size = int(state["pos"]), int(state["size"])
        self.total_added = int(state["total_added"])
        self.rng.bit_generator.state = state["rng"]
