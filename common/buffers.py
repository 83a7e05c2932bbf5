"""A numpy ring replay buffer with uniform sampling straight to torch tensors.

`terminated` (a true end of the MDP: bootstrap with 1 - terminated) and `truncated` (a time
limit: keep bootstrapping) are stored apart, so a time-limit cut is never mistaken for a terminal.

`SharedMemoryMixin` lets a buffer's arrays live in shared memory (/dev/shm), so that worker
processes (`common.parallel.WorkerPool.map(..., shared=buffer)`) sample from the main process's
memory instead of receiving a pickled copy of a buffer of hundreds of MB with every job.
"""
from __future__ import annotations

import math
import mmap
import os
import shutil
import weakref
from multiprocessing.shared_memory import SharedMemory
from typing import NamedTuple, Sequence

import numpy as np
import torch

from common.cli import UsageError

SHM_DIR = "/dev/shm"


class Batch(NamedTuple):
    obs: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor      # float32, shape [B]
    next_obs: torch.Tensor
    terminated: torch.Tensor   # float32 0/1, shape [B]: multiply the bootstrap by (1 - terminated)
    truncated: torch.Tensor    # float32 0/1, shape [B]: informational, never used to cut bootstrap


class _Segment(NamedTuple):
    """What a pickled shared buffer carries instead of an array: where to find it."""
    name: str
    shape: tuple
    dtype: str


def _no_room_message(need: int) -> str:
    free = shutil.disk_usage(SHM_DIR).free if os.path.isdir(SHM_DIR) else 0
    return (f"the replay buffer needs {need / 2**20:,.0f} MiB of shared memory in {SHM_DIR}, "
            f"{free / 2**20:,.0f} MiB is free: enlarge {SHM_DIR} (docker run --shm-size) or use "
            f"--backend serial")


def require_shared_memory(need: int) -> None:
    """One UsageError line when /dev/shm cannot hold `need` more bytes (a train.py calls this
    before it creates a run folder; `share_memory_` again when it moves the arrays)."""
    free = shutil.disk_usage(SHM_DIR).free if os.path.isdir(SHM_DIR) else 0
    if need > free:
        raise UsageError(_no_room_message(need))


def _map_segment(name: str, shape: tuple, dtype, writable: bool) -> np.ndarray:
    """An array over the shared memory segment `name`.

    Mapped straight from /dev/shm instead of through a `SharedMemory` object: a worker then never
    registers the segment with its resource tracker (which would unlink it when the worker
    exits), and the mapping lives exactly as long as the array (`SharedMemory.close()` fails
    while an array still points into it). Read-only mappings give read-only arrays.
    """
    with open(os.path.join(SHM_DIR, name), "r+b" if writable else "rb") as file:
        mapping = mmap.mmap(file.fileno(), 0,
                            access=mmap.ACCESS_WRITE if writable else mmap.ACCESS_READ)
    return np.frombuffer(mapping, dtype, count=math.prod(shape)).reshape(shape)


def _new_segment(array: np.ndarray) -> tuple[SharedMemory, np.ndarray]:
    """A new segment holding a copy of `array`, and the writable array over it."""
    segment = SharedMemory(create=True, size=max(array.nbytes, 1))  # also registers it for
    segment.close()  # cleanup if this process dies; _map_segment maps it again, see there why
    try:
        with open(os.path.join(SHM_DIR, segment.name), "r+b") as file:
            # reserve the pages now: a full /dev/shm fails here (ENOSPC), not with a SIGBUS
            # (bus error) at some later write into the buffer
            os.posix_fallocate(file.fileno(), 0, segment.size)
    except OSError:
        segment.unlink()
        raise
    view = _map_segment(segment.name, array.shape, array.dtype, writable=True)
    view[...] = array
    return segment, view


def _unlink_all(shared: dict) -> None:
    for segment, _ in shared.values():
        segment.unlink()
    shared.clear()


class SharedMemoryMixin:
    """Moves a buffer's large arrays (named in `_SHARED_ARRAYS`) into shared memory on request.

    After `share_memory_()` the owner (the main process) keeps reading and writing the same
    arrays, now backed by /dev/shm segments. Pickling a shared buffer sends only the segments'
    names, shapes and dtypes plus the small state (positions, sampler state): a few kB whatever
    the capacity. Unpickling maps the same memory read-only, so a worker sees every transition
    the owner added before the job was pickled and can sample but not write. An unshared buffer
    pickles its full arrays, as any object does; `state_dict()` copies the data either way.

    The owner unlinks the segments in `release_shared_memory()` (a `WorkerPool` calls it when it
    closes), or when the buffer is garbage-collected or the interpreter exits.
    """
    _SHARED_ARRAYS: tuple[str, ...] = ()

    def share_memory_(self):
        """Move every array not yet in shared memory into a new segment, keeping its contents:
        all of them the first time; later only ones the buffer has replaced since (e.g. a grown
        ring). Segments already in use are kept, so workers keep seeing the owner's writes."""
        if "_shared" not in self.__dict__:
            self._shared = {}  # array name -> (segment, the array over it); owner only
            weakref.finalize(self, _unlink_all, self._shared)
        moving = [name for name in self._SHARED_ARRAYS if not self._in_segment(name)]
        need = sum(getattr(self, name).nbytes for name in moving)
        require_shared_memory(need)
        for name in moving:
            try:
                segment, view = _new_segment(getattr(self, name))
            except OSError as error:
                raise UsageError(_no_room_message(need)) from error
            replaced = self._shared.get(name)
            self._shared[name] = segment, view
            setattr(self, name, view)
            if replaced is not None:
                replaced[0].unlink()
        return self

    def shared_bytes(self) -> int:
        """Bytes of shared memory the whole buffer takes once shared (its full capacity)."""
        return sum(getattr(self, name).nbytes for name in self._SHARED_ARRAYS)

    def _in_segment(self, name: str) -> bool:
        entry = self.__dict__.get("_shared", {}).get(name)
        return entry is not None and entry[1] is getattr(self, name)

    def is_shared(self) -> bool:
        """True when every large array lives in a segment this buffer owns."""
        return all(self._in_segment(name) for name in self._SHARED_ARRAYS)

    def release_shared_memory(self) -> None:
        """Unlink this buffer's segments. The arrays stay valid here (this process keeps its
        mapping); later pickles carry the full arrays again."""
        _unlink_all(self.__dict__.get("_shared", {}))

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state.pop("_shared", None)
        for name in self._SHARED_ARRAYS:
            if self._in_segment(name):
                array = state[name]
                state[name] = _Segment(self._shared[name][0].name, array.shape, array.dtype.str)
        return state

    def __setstate__(self, state: dict) -> None:
        for name, value in state.items():
            if isinstance(value, _Segment):
                state[name] = _map_segment(*value, writable=False)
        self.__dict__.update(state)


class ReplayBuffer(SharedMemoryMixin):
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
    _SHARED_ARRAYS = _ARRAYS

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
