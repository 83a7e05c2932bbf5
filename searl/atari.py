"""Atari for SEARL-DQN: the standard preprocessing and a replay memory that stores each frame once.

Preprocessing (Mnih et al. 2015, as in gymnasium): ALE env with frameskip 1 underneath,
`AtariPreprocessing` (up to 30 no-ops at reset, action repeat 4 with a max over the last two
frames, 84x84 grayscale, no terminal on life loss), then a stack of the last 4 frames; an
observation is uint8 of shape (4, 84, 84). One env step = one agent step = 4 emulator frames; the
step counter counts agent steps, as the reference's frame counter does (it counts `env.step`
calls of its wrapped env).

The paper's DQN memory holds 2M transitions. Storing both 4-frame stacks per transition would take
2M x 2 x 4 x 84 x 84 bytes = 113 GB; `FrameReplayBuffer` keeps each new frame once (14 GB for 2M)
plus the 4-frame stack that starts each episode, and rebuilds the stacks when sampling.
"""
from __future__ import annotations

from typing import Sequence

import gymnasium as gym
import numpy as np
import torch

from common.buffers import Batch, SharedMemoryMixin
from common.envs import StepCounter, make_env

FRAME_STACK = 4
SCREEN_SIZE = 84


def is_atari(env_id: str) -> bool:
    """True for ids that gymnasium builds from ale-py (`ALE/Pong-v5`, `PongNoFrameskip-v4`)."""
    if env_id.startswith("ALE/"):
        return True
    if ":" in env_id:
        return False
    spec = gym.registry.get(env_id)
    if spec is None:
        import ale_py  # registers the ALE ids

        gym.register_envs(ale_py)
        spec = gym.registry.get(env_id)
    return spec is not None and "ale_py" in str(spec.entry_point)


def make_atari_env(env_id: str, seed: int | None, counter: StepCounter | None = None,
                   **make_kwargs) -> gym.Env:
    """A seeded, counted ALE env with the DQN preprocessing; observations uint8 (4, 84, 84).

    `make_kwargs` go to `gym.make` (e.g. `repeat_action_probability=0.0` for the v4-style
    deterministic setting; the v5 ids default to sticky actions with probability 0.25).
    """
    def preprocess(env: gym.Env) -> gym.Env:
        return gym.wrappers.AtariPreprocessing(
            env, noop_max=30, frame_skip=4, screen_size=SCREEN_SIZE, terminal_on_life_loss=False,
            grayscale_obs=True, scale_obs=False)

    def stack(env: gym.Env) -> gym.Env:
        # padding "reset": the first observation of an episode is 4 copies of the reset frame
        return gym.wrappers.FrameStackObservation(env, FRAME_STACK)

    make_kwargs.setdefault("frameskip", 1)  # AtariPreprocessing does the frame skipping
    return make_env(env_id, seed, counter=counter, wrappers=(preprocess, stack), **make_kwargs)


class FrameReplayBuffer(SharedMemoryMixin):
    """FIFO replay memory of `capacity` frame-stacked transitions, storing every frame once.

    Same public API and slot layout as `common.buffers.ReplayBuffer` (transition number n lives in
    slot n % capacity), so `batch_at(idx)` returns exactly what a plain ReplayBuffer fed the same
    transitions returns. Observations are stacks of shape (K, *frame) whose newest frame is last;
    consecutive observations of an episode must overlap (`next_obs[:-1] == obs[1:]`).

    Storage: for transition n its newest frame `next_obs[-1]` goes into a frame ring of size
    capacity + K (the oldest live transition's observation needs the new frames of the K
    transitions before it, which are no longer live themselves), with
    the transition's episode id and its step t within the episode. The full K-frame stack of each
    episode's first observation goes into a small ring of episode starts (it grows by doubling
    when more episodes are live than it holds). The frame at episode time tau (the reset
    observation's newest frame is tau = 0) is then: tau >= 1: the new frame of the transition at
    episode step tau - 1; tau <= 0: frame K - 1 + tau of the episode's start stack. This is exact
    for any padding of the first stack (gymnasium repeats the reset frame by default).

    A new episode starts at the first `add`, after a transition that was terminated or truncated,
    and whenever `obs` is not the previous transition's `next_obs` (e.g. an interrupted episode).

    `share_memory_()` (common.buffers.SharedMemoryMixin) moves the arrays to /dev/shm, so worker
    processes sample from them without receiving a copy of up to 14 GB.
    """

    _SLOT_ARRAYS = ("actions", "rewards", "terminated", "truncated", "episode", "step")
    # shareable with worker processes (SharedMemoryMixin); a grown start ring is a new array
    # that pickles in full until the next share_memory_() moves it too
    _SHARED_ARRAYS = _SLOT_ARRAYS + ("frames", "start_stacks")

    def __init__(self, capacity: int, obs_shape: Sequence[int], action_shape: Sequence[int] = (),
                 obs_dtype=np.uint8, action_dtype=np.int64, seed: int = 0,
                 device: str | torch.device = "cpu"):
        if capacity <= 0:
            raise ValueError(f"replay capacity must be positive, got {capacity}")
        if len(obs_shape) < 2:
            raise ValueError(f"FrameReplayBuffer needs stacked observations (K, ...), "
                             f"got shape {tuple(obs_shape)}")
        self.capacity = int(capacity)
        self.device = torch.device(device)
        self.obs_shape = tuple(int(s) for s in obs_shape)
        self.stack = self.obs_shape[0]
        frame_shape = self.obs_shape[1:]
        self.frame_capacity = self.capacity + self.stack
        self.frames = np.zeros((self.frame_capacity, *frame_shape), dtype=obs_dtype)
        self.start_stacks = np.zeros((16, *self.obs_shape), dtype=obs_dtype)
        self.actions = np.zeros((self.capacity, *action_shape), dtype=action_dtype)
        self.rewards = np.zeros(self.capacity, dtype=np.float32)
        self.terminated = np.zeros(self.capacity, dtype=bool)
        self.truncated = np.zeros(self.capacity, dtype=bool)
        self.episode = np.zeros(self.capacity, dtype=np.int64)   # episode id of each transition
        self.step = np.zeros(self.capacity, dtype=np.int64)      # its step within the episode
        self.pos = 0
        self.size = 0
        self.total_added = 0
        self.episodes_started = 0          # the current episode's id is episodes_started - 1
        self._last_next_obs: np.ndarray | None = None
        self._last_ended = True
        self._last_step = -1
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return self.size

    # -- writing ---------------------------------------------------------------------------
    def _oldest_live_episode(self) -> int:
        """Episode id of the oldest transition still held (the current one if none is)."""
        if self.size == 0:
            return self.episodes_started - 1
        oldest_slot = (self.pos - self.size) % self.capacity
        return int(self.episode[oldest_slot])

    def _store_start(self, obs: np.ndarray) -> None:
        """Open a new episode whose first observation is `obs`."""
        episode = self.episodes_started
        ring = len(self.start_stacks)
        live_from = self._oldest_live_episode() if self.size else episode
        if episode - live_from + 1 > ring:  # more live episodes than the ring holds: grow it
            grown = np.zeros((2 * ring, *self.obs_shape), dtype=self.start_stacks.dtype)
            for e in range(live_from, episode):
                grown[e % (2 * ring)] = self.start_stacks[e % ring]
            self.start_stacks, ring = grown, 2 * ring
        self.start_stacks[episode % ring] = obs
        self.episodes_started += 1
        self._last_step = -1

    def add(self, obs, action, reward, next_obs, terminated, truncated) -> None:
        """Store one transition (obs and next_obs are consecutive K-frame stacks)."""
        obs, next_obs = np.asarray(obs), np.asarray(next_obs)
        if obs.shape != self.obs_shape or next_obs.shape != self.obs_shape:
            raise ValueError(f"observation shape {obs.shape} / {next_obs.shape}, "
                             f"expected {self.obs_shape}")
        if not np.array_equal(next_obs[:-1], obs[1:]):
            raise ValueError("FrameReplayBuffer needs frame stacks: next_obs[:-1] must equal "
                             "obs[1:] (use common.buffers.ReplayBuffer otherwise)")
        if self._last_ended or not np.array_equal(obs, self._last_next_obs):
            self._store_start(obs)
        n, slot = self.total_added, self.pos
        self.frames[n % self.frame_capacity] = next_obs[-1]
        self.actions[slot] = np.asarray(action).reshape(self.actions.shape[1:])
        self.rewards[slot] = reward
        self.terminated[slot] = bool(terminated)
        self.truncated[slot] = bool(truncated)
        self.episode[slot] = self.episodes_started - 1
        self._last_step += 1
        self.step[slot] = self._last_step
        self._last_next_obs = next_obs.copy()
        self._last_ended = bool(terminated) or bool(truncated)
        self.pos = (self.pos + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)
        self.total_added += 1

    def add_batch(self, obs, actions, rewards, next_obs, terminated, truncated) -> None:
        """Store n consecutive transitions of one stream of episodes, in order."""
        for i in range(len(rewards)):
            self.add(obs[i], actions[i], rewards[i], next_obs[i], terminated[i], truncated[i])

    # -- reading ---------------------------------------------------------------------------
    def _stacks(self, idx: np.ndarray) -> np.ndarray:
        """The K + 1 frames (obs frames then the new frame) of the transitions in slots idx."""
        idx = np.asarray(idx, dtype=np.int64)
        k = self.stack
        number = self.total_added - 1 - (self.pos - 1 - idx) % self.capacity  # transition n
        t = self.step[idx]
        tau = t[:, None] + np.arange(-(k - 1), 2)[None, :]             # episode times [B, K+1]
        from_frames = tau >= 1
        out = np.empty((len(idx), k + 1, *self.frames.shape[1:]), dtype=self.frames.dtype)
        frame_pos = (number[:, None] - t[:, None] + tau - 1) % self.frame_capacity
        out[from_frames] = self.frames[frame_pos[from_frames]]
        episode = np.broadcast_to(self.episode[idx][:, None], tau.shape)
        start_slot = episode % len(self.start_stacks)
        from_start = ~from_frames
        out[from_start] = self.start_stacks[start_slot[from_start], (k - 1 + tau)[from_start]]
        return out

    def batch_at(self, idx: np.ndarray) -> Batch:
        """The transitions at slot indices `idx`, as tensors on the buffer's device."""
        idx = np.asarray(idx)
        frames = self._stacks(idx)

        def to_tensor(array):
            return torch.from_numpy(np.ascontiguousarray(array)).to(self.device,
                                                                     non_blocking=True)

        return Batch(
            obs=to_tensor(frames[:, :-1]),
            actions=to_tensor(self.actions[idx]),
            rewards=to_tensor(self.rewards[idx]),
            next_obs=to_tensor(frames[:, 1:]),
            terminated=to_tensor(self.terminated[idx].astype(np.float32)),
            truncated=to_tensor(self.truncated[idx].astype(np.float32)),
        )

    def sample(self, batch_size: int) -> Batch:
        """Uniformly sample `batch_size` stored transitions (with replacement)."""
        if self.size == 0:
            raise ValueError("cannot sample from an empty replay buffer")
        return self.batch_at(self.rng.integers(0, self.size, size=batch_size))

    # -- checkpoints -----------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Everything needed to continue exactly (stored data, positions, sampler state)."""
        state = {name: getattr(self, name)[: self.size].copy() for name in self._SLOT_ARRAYS}
        state.update(
            frames=self.frames[: min(self.total_added, self.frame_capacity)].copy(),
            start_stacks=self.start_stacks.copy(),
            last_next_obs=None if self._last_next_obs is None else self._last_next_obs.copy(),
            capacity=self.capacity, obs_shape=self.obs_shape, pos=self.pos, size=self.size,
            total_added=self.total_added, episodes_started=self.episodes_started,
            last_ended=self._last_ended, last_step=self._last_step,
            rng=self.rng.bit_generator.state)
        return state

    def load_state_dict(self, state: dict) -> None:
        if state["capacity"] != self.capacity:
            raise ValueError(f"checkpoint buffer capacity {state['capacity']} != {self.capacity}")
        if tuple(state["obs_shape"]) != self.obs_shape:
            raise ValueError(f"checkpoint buffer observations {tuple(state['obs_shape'])}, "
                             f"expected {self.obs_shape}")
        for name in self._SLOT_ARRAYS:
            getattr(self, name)[: state["size"]] = state[name]
        self.frames[: len(state["frames"])] = state["frames"]
        self.start_stacks = state["start_stacks"].copy()
        self._last_next_obs = (None if state["last_next_obs"] is None
                               else state["last_next_obs"].copy())
        self.pos, self.size = int(state["pos"]), int(state["size"])
        self.total_added = int(state["total_added"])
        self.episodes_started = int(state["episodes_started"])
        self._last_ended, self._last_step = bool(state["last_ended"]), int(state["last_step"])
        self.rng.bit_generator.state = state["rng"]
