"""Environment helpers: seeded gymnasium envs with float32 observations, a shared counter of
real environment steps, and a vector env that marks the fake transition after an autoreset.

The step counter is the collection's evaluation protocol (SEARL's): every real interaction a
method consumes counts, so methods can be compared on sample cost.
"""
from __future__ import annotations

import difflib
import pickle
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Callable

import gymnasium as gym
import numpy as np

from common.cli import UsageError


class StepCounter:
    """A counter of real environment steps, shared by every env that is given it."""

    def __init__(self, count: int = 0):
        self.count = int(count)

    def add(self, n: int = 1) -> None:
        self.count += int(n)

    def __int__(self) -> int:
        return self.count

    def __repr__(self) -> str:
        return f"StepCounter({self.count})"


class CountSteps(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Adds one to `counter` for every `step` of the wrapped (real) environment. (Constructor
    arguments recorded, as gymnasium's wrappers do, so `gymnasium.make(env.spec)` can remake the
    env; gymnasium copies them, so a remade env counts into a copy of the counter.)"""

    def __init__(self, env: gym.Env, counter: StepCounter):
        gym.utils.RecordConstructorArgs.__init__(self, counter=counter)
        super().__init__(env)
        self.counter = counter

    def step(self, action):
        self.counter.add(1)
        return self.env.step(action)


class Float32Observation(gym.ObservationWrapper, gym.utils.RecordConstructorArgs):
    """Casts float64 Box observations (MuJoCo's) to float32, bounds included."""

    def __init__(self, env: gym.Env):
        gym.utils.RecordConstructorArgs.__init__(self)
        super().__init__(env)
        space = env.observation_space
        with np.errstate(over="ignore"):  # bounds beyond float32's range become +-inf
            low, high = space.low.astype(np.float32), space.high.astype(np.float32)
        self.observation_space = gym.spaces.Box(low, high, space.shape, np.float32)

    def observation(self, observation):
        return observation.astype(np.float32)


class SeedFirstReset(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Passes `seed` to the first `reset()` that is not given one, so `make_env(id, seed)` alone
    makes the whole trajectory reproducible; later resets continue the env's own RNG."""

    def __init__(self, env: gym.Env, seed: int | None):
        gym.utils.RecordConstructorArgs.__init__(self, seed=seed)
        super().__init__(env)
        self._pending_seed = seed

    def reset(self, *, seed=None, options=None):
        if seed is None:
            seed = self._pending_seed
        self._pending_seed = None
        return self.env.reset(seed=seed, options=options)


def _register_ale() -> None:
    import ale_py  # imported only when an Atari id is asked for

    gym.register_envs(ale_py)


def check_env_id(env_id: str) -> None:
    """Raise a UsageError naming close matches when `env_id` is not a registered gymnasium id."""
    if ":" in env_id:  # "module:EnvId": gym.make imports the module that registers it
        return
    if env_id.startswith("ALE/") or env_id not in gym.registry:
        _register_ale()
    if env_id in gym.registry:
        return
    close = difflib.get_close_matches(env_id, list(gym.registry), n=4, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else \
        "; see gymnasium.registry for the available ids"
    raise UsageError(f"unknown environment id {env_id!r}{hint}")


def make_env(env_id: str, seed: int | None = None, counter: StepCounter | None = None,
             wrappers: tuple[Callable[[gym.Env], gym.Env], ...] = (), **make_kwargs) -> gym.Env:
    """A gymnasium env with float32 observations (float64 Box observations are cast), episode
    statistics in `info["episode"]`, steps added to `counter`, and seeding done: the first
    reset uses `seed`, and the action and observation spaces are seeded with it.

    `wrappers` are applied (in order) right after `gym.make`, before the counting wrapper.
    """
    check_env_id(env_id)
    env = gym.make(env_id, **make_kwargs)
    for wrapper in wrappers:
        env = wrapper(env)
    space = env.observation_space
    if isinstance(space, gym.spaces.Box) and space.dtype == np.float64:
        env = Float32Observation(env)
    env = gym.wrappers.RecordEpisodeStatistics(env)
    if counter is not None:
        env = CountSteps(env, counter)
    env = SeedFirstReset(env, seed)
    if seed is not None:
        env.action_space.seed(seed)
        env.observation_space.seed(seed)
    return env


@dataclass
class VectorStep:
    obs: np.ndarray          # observations to act on next (reset observations after an end)
    rewards: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    real: np.ndarray         # False where this step was the autoreset step: a fake transition
    infos: dict[str, Any] = field(default_factory=dict)


class VectorEnv:
    """`num_envs` copies of an env (sub-env i seeded `seed + i`) behind gymnasium's vector env in
    NEXT_STEP autoreset mode, where the step after an episode end only resets that sub-env.
    `step` returns `real`, the mask of transitions that really happened; store and count only
    those. Finished episodes' (return, length) pairs collect in `completed_episodes`.
    """

    def __init__(self, env_id: str, num_envs: int, seed: int, counter: StepCounter | None = None,
                 asynchronous: bool = False, **make_kwargs):
        check_env_id(env_id)
        fns = [partial(make_env, env_id, seed + i, **make_kwargs) for i in range(num_envs)]
        mode = gym.vector.AutoresetMode.NEXT_STEP
        self.envs = (gym.vector.AsyncVectorEnv(fns, autoreset_mode=mode) if asynchronous
                     else gym.vector.SyncVectorEnv(fns, autoreset_mode=mode))
        self.envs.action_space.seed(seed)
        self.num_envs = num_envs
        self.counter = counter if counter is not None else StepCounter()
        self.single_observation_space = self.envs.single_observation_space
        self.single_action_space = self.envs.single_action_space
        self.action_space = self.envs.action_space
        self.completed_episodes: list[tuple[float, int]] = []
        self._ended = np.zeros(num_envs, dtype=bool)
        self._returns = np.zeros(num_envs)
        self._lengths = np.zeros(num_envs, dtype=np.int64)

    def reset(self) -> np.ndarray:
        obs, _ = self.envs.reset()
        self._ended[:] = False
        self._returns[:] = 0.0
        self._lengths[:] = 0
        return obs

    def step(self, actions) -> VectorStep:
        obs, rewards, terminated, truncated, infos = self.envs.step(actions)
        real = ~self._ended
        self.counter.add(int(real.sum()))
        self._returns += np.where(real, rewards, 0.0)
        self._lengths += real
        self._ended = (terminated | truncated) & real
        for i in np.flatnonzero(self._ended):
            self.completed_episodes.append((float(self._returns[i]), int(self._lengths[i])))
            self._returns[i], self._lengths[i] = 0.0, 0
        return VectorStep(obs, rewards, terminated, truncated, real, infos)

    def close(self) -> None:
        self.envs.close()


# -- an episode in progress, saved and restored (exact resume after a kill) ---------------------
_SIMPLE = (bool, int, float, str, type(None))


def env_state(env: gym.Env) -> dict:
    """Everything `restore_env_state` needs to continue the current episode exactly: each
    wrapper's plain counters (TimeLimit's elapsed steps, the pending first-reset seed), the
    env's RNG and its simulator state (MuJoCo's full integration state; other envs are pickled)."""
    wrappers, layer = [], env
    while isinstance(layer, gym.Wrapper):
        wrappers.append({k: v for k, v in vars(layer).items() if isinstance(v, _SIMPLE)})
        layer = layer.env
    base = env.unwrapped
    state = {"wrappers": wrappers, "np_random": base.np_random.bit_generator.state}
    if _is_mujoco(base):
        import mujoco

        spec = mujoco.mjtState.mjSTATE_INTEGRATION
        physics = np.empty(mujoco.mj_stateSize(base.model, spec))
        mujoco.mj_getState(base.model, base.data, physics, spec)
        state["mujoco"] = physics
    else:
        state["pickle"] = pickle.dumps(base)
    return state


def restore_env_state(env: gym.Env, state: dict) -> None:
    """Put `env` (made by `make_env` with the same arguments) where `env_state` saw it."""
    layer = env
    for saved in state["wrappers"]:
        if not isinstance(layer, gym.Wrapper):
            raise ValueError("the saved env state has more wrappers than this env")
        vars(layer).update(saved)
        layer = layer.env
    base = env.unwrapped
    if "mujoco" in state:
        import mujoco

        mujoco.mj_setState(base.model, base.data, np.asarray(state["mujoco"], dtype=np.float64),
                           mujoco.mjtState.mjSTATE_INTEGRATION)
    else:
        vars(base).update(vars(pickle.loads(state["pickle"])))
    base.np_random.bit_generator.state = state["np_random"]


def _is_mujoco(base) -> bool:
    return type(getattr(base, "data", None)).__name__ == "MjData" and hasattr(base, "model")
