"""A small vector-env adapter over OpenAI Procgen's gym3 interface (`ProcgenGym3Env`).

gym3 resets a finished sub-env inside the same step: after `act`, `observe` returns the reward
of the action, the next observation, and `first`, which is True where that observation starts a
new episode (so the action ended the previous one). There is no fake transition, and Procgen's
time limits are reported as plain episode ends (the DrAC reference treats every end as terminal).

Procgen is imported lazily, only when an env is created. It imports the old `gym` package, which
prints a deprecation notice on import; that notice is swallowed here.
"""
from __future__ import annotations

import contextlib
import io
import warnings

import numpy as np

from common.cli import UsageError

PROCGEN_GAMES = ["bigfish", "bossfight", "caveflyer", "chaser", "climber", "coinrun",
                 "dodgeball", "fruitbot", "heist", "jumper", "leaper", "maze", "miner", "ninja",
                 "plunder", "starpilot"]
DISTRIBUTION_MODES = ["easy", "hard", "extreme", "memory", "exploration"]
NUM_ACTIONS = 15
OBS_SHAPE = (3, 64, 64)


def is_procgen(env_id: str) -> bool:
    return env_id in PROCGEN_GAMES


def _import_procgen_env():
    """`procgen.ProcgenGym3Env`, imported without old gym's banner or warnings in the terminal."""
    with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()), \
            warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            from procgen import ProcgenGym3Env
        except ImportError as error:  # pragma: no cover - depends on the installation
            raise UsageError("Procgen games need the package procgen-mirror (pip install "
                             f"procgen-mirror, with numpy < 2): {error}") from None
    return ProcgenGym3Env


class ProcgenVecEnv:
    """`num_envs` Procgen games of `env_name` stepping together.

    `reset()` -> obs [N, 3, 64, 64] uint8 (channels first).
    `step(actions)` -> (obs, rewards [N] float32, dones [N] bool, finished), where `finished` is
    the list of returns of the episodes that ended in this step; `completed_episodes` collects
    every (return, length) pair. `num_levels=0` means the full level distribution.
    The level sequence and the game's randomness are fixed by `seed` (Procgen's `rand_seed`).
    """

    num_actions = NUM_ACTIONS
    obs_shape = OBS_SHAPE

    def __init__(self, env_name: str, num_envs: int, seed: int, num_levels: int = 200,
                 start_level: int = 0, distribution_mode: str = "easy", num_threads: int = 4):
        if not is_procgen(env_name):
            raise UsageError(f"unknown Procgen game {env_name!r}; allowed: "
                             f"{', '.join(PROCGEN_GAMES)}")
        if distribution_mode not in DISTRIBUTION_MODES:
            raise UsageError(f"unknown Procgen distribution_mode {distribution_mode!r}; "
                             f"allowed: {', '.join(DISTRIBUTION_MODES)}")
        if num_envs < 1 or num_levels < 0 or start_level < 0:
            raise UsageError(f"Procgen needs num_envs >= 1, num_levels >= 0, start_level >= 0 "
                             f"(got {num_envs}, {num_levels}, {start_level})")
        self.env_name, self.num_envs, self.seed = env_name, int(num_envs), int(seed)
        self.kwargs = dict(num_levels=int(num_levels), start_level=int(start_level),
                           distribution_mode=distribution_mode, num_threads=int(num_threads))
        self.completed_episodes: list[tuple[float, int]] = []
        self._env = None
        self._resets = 0
        self._returns = np.zeros(self.num_envs)
        self._lengths = np.zeros(self.num_envs, dtype=np.int64)

    def _observe(self):
        reward, obs, first = self._env.observe()
        return np.ascontiguousarray(obs["rgb"].transpose(0, 3, 1, 2)), reward, first

    def reset(self) -> np.ndarray:
        """(Re)create the games; the k-th reset of one adapter uses rand_seed derived from
        (seed, k), so the first one is exactly `seed`."""
        self.close()
        rand_seed = self.seed if self._resets == 0 else \
            int(np.random.SeedSequence([self.seed, self._resets]).generate_state(1)[0])
        self._resets += 1
        self._env = _import_procgen_env()(num=self.num_envs, env_name=self.env_name,
                                          rand_seed=rand_seed % 2**31, **self.kwargs)
        self._returns[:] = 0.0
        self._lengths[:] = 0
        return self._observe()[0]

    def step(self, actions):
        if self._env is None:
            raise RuntimeError("call reset() before step()")
        actions = np.asarray(actions, dtype=np.int32).reshape(self.num_envs)
        self._env.act(actions)
        obs, reward, first = self._observe()
        reward = np.asarray(reward, dtype=np.float32)
        dones = np.asarray(first, dtype=bool)
        self._returns += reward
        self._lengths += 1
        finished = []
        for i in np.flatnonzero(dones):
            finished.append(float(self._returns[i]))
            self.completed_episodes.append((float(self._returns[i]), int(self._lengths[i])))
            self._returns[i], self._lengths[i] = 0.0, 0
        return obs, reward, dones, finished

    def close(self) -> None:
        if self._env is not None:
            close = getattr(self._env, "close", None)
            if close is not None:
                close()
            self._env = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
