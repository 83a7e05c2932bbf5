"""The real environments of the paper: the 4x12 Cliff walk (implemented here: the paper's
variant differs from gymnasium's), CartPole-v0, Acrobot-v1, MountainCarContinuous-v0 and
HalfCheetah-v5, with their episode caps, solved thresholds and info vectors.

Every env speaks the gymnasium API: `reset(seed=None) -> (obs, info)` and
`step(a) -> (obs, reward, terminated, truncated, info)`. `info["vector"]` is the env's info
vector (the reward's components), which the info-vector reward-network modes read.
"""
from __future__ import annotations

import difflib
import warnings
from dataclasses import dataclass

import gymnasium as gym
import numpy as np

from common.cli import UsageError


class CliffWalk:
    """Cliff walking on a 4x12 grid (Sutton & Barto, Ex. 6.6) as in the paper's appendix:
    -1 per step, 0 for the step into the goal, -100 for stepping into the cliff, which *ends the
    episode* (gymnasium's CliffWalking teleports back instead); 50 steps at most. The shortest
    path is 13 moves, so the optimal return is -12.

    States are ints row * 12 + col; the start is the bottom-left cell, the goal bottom-right,
    the cliff the cells between them. Actions: 0 right, 1 left, 2 down, 3 up (the reference's order).
    """

    ROWS, COLS = 4, 12
    MOVES = ((0, 1), (0, -1), (1, 0), (-1, 0))
    STEP_REWARD, GOAL_REWARD, CLIFF_REWARD = -1.0, 0.0, -100.0

    def __init__(self, max_steps: int = 50):
        self.max_steps = max_steps
        self.n_states = self.ROWS * self.COLS
        self.start = (self.ROWS - 1) * self.COLS
        self.goal = self.n_states - 1
        self.cliff = frozenset(range(self.start + 1, self.goal))
        self.observation_space = gym.spaces.Discrete(self.n_states)
        self.action_space = gym.spaces.Discrete(4)
        self.transitions = [[self._move(s, a) for a in range(4)] for s in range(self.n_states)]
        self.state = self.start
        self.t = 0

    def _move(self, state: int, action: int) -> tuple[int, float, bool, np.ndarray]:
        """(next state, reward, terminated, info vector) of one move; walls clip the move."""
        row, col = divmod(state, self.COLS)
        d_row, d_col = self.MOVES[action]
        row = min(max(row + d_row, 0), self.ROWS - 1)
        col = min(max(col + d_col, 0), self.COLS - 1)
        nxt = row * self.COLS + col
        if nxt in self.cliff:
            return nxt, self.CLIFF_REWARD, True, np.array([0.0, 1.0, 0.0], np.float32)
        if nxt == self.goal:
            return nxt, self.GOAL_REWARD, True, np.array([0.0, 0.0, 1.0], np.float32)
        return nxt, self.STEP_REWARD, False, np.array([1.0, 0.0, 0.0], np.float32)

    def reset(self, seed: int | None = None, options=None):
        self.state, self.t = self.start, 0
        return self.state, {}

    def step(self, action):
        nxt, reward, terminated, vector = self.transitions[self.state][int(action)]
        self.state = nxt
        self.t += 1
        truncated = not terminated and self.t >= self.max_steps
        return nxt, reward, terminated, truncated, {"vector": vector}

    def close(self) -> None:
        pass


class InfoVector(gym.Wrapper):
    """Puts the env's info vector into `info["vector"]` (see ENV_SPECS for what it holds)."""

    def __init__(self, env: gym.Env, vector_fn):
        super().__init__(env)
        self.vector_fn = vector_fn

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        info["vector"] = self.vector_fn(obs, reward, terminated, info)
        return obs, reward, terminated, truncated, info


def _cartpole_vector(obs, reward, terminated, info):
    # how close the pole is to the two failure limits (|x| <= 2.4, |theta| <= 12 degrees)
    return np.array([abs(obs[0]) / 2.4, abs(obs[2]) / 0.2095], np.float32)


def _acrobot_vector(obs, reward, terminated, info):
    # height of the tip, -cos(t1) - cos(t1 + t2), which the goal condition thresholds at 1
    cos1, sin1, cos2, sin2 = obs[:4]
    return np.array([-cos1 - (cos1 * cos2 - sin1 * sin2)], np.float32)


def _cmc_vector(obs, reward, terminated, info):
    # MountainCarContinuous' reward components: the +100 goal bonus and the -0.1 a^2 action cost
    goal = 100.0 if terminated else 0.0
    return np.array([goal / 100.0, reward - goal], np.float32)


def _halfcheetah_vector(obs, reward, terminated, info):
    # HalfCheetah-v5's info: position, velocity and the two reward components (4, as the reference)
    return np.array([info["x_position"], info["x_velocity"], info["reward_forward"], info["reward_ctrl"]],
                    np.float32)


@dataclass(frozen=True)
class EnvSpec:
    name: str               # our short name (the --env value)
    gym_id: str             # gymnasium id ("" for the Cliff walk implemented here)
    max_steps: int          # episode cap
    threshold: float        # "solved" when the mean test return reaches it
    info_dim: int           # length of info["vector"]
    vector_fn: object = None


ENV_SPECS = {
    "cliff": EnvSpec("cliff", "", 50, -20.0, 3),
    "cartpole": EnvSpec("cartpole", "CartPole-v0", 200, 195.0, 2, _cartpole_vector),
    "acrobot": EnvSpec("acrobot", "Acrobot-v1", 500, -100.0, 1, _acrobot_vector),
    "cmc": EnvSpec("cmc", "MountainCarContinuous-v0", 999, 90.0, 2, _cmc_vector),
    "halfcheetah": EnvSpec("halfcheetah", "HalfCheetah-v5", 1000, 3000.0, 4, _halfcheetah_vector),
}


def env_spec(name: str) -> EnvSpec:
    if name not in ENV_SPECS:
        close = difflib.get_close_matches(name, ENV_SPECS, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise UsageError(f"unknown env {name!r}{hint}; allowed: {', '.join(ENV_SPECS)}")
    return ENV_SPECS[name]


def make_real_env(name: str, seed: int | None = None):
    """A fresh real env; the first reset uses `seed` and the action space is seeded with it."""
    spec = env_spec(name)
    if name == "cliff":
        env = CliffWalk(spec.max_steps)
    else:
        with warnings.catch_warnings():  # CartPole-v0 is "out of date", but it is the paper's
            warnings.filterwarnings("ignore", message=".*out of date")
            env = InfoVector(gym.make(spec.gym_id, max_episode_steps=spec.max_steps), spec.vector_fn)
        env.reset(seed=seed)
    env.action_space.seed(seed)
    return env


def is_discrete_state(env) -> bool:
    return isinstance(env.observation_space, gym.spaces.Discrete)


def is_discrete_action(env) -> bool:
    return isinstance(env.action_space, gym.spaces.Discrete)


def state_dim(env) -> int:
    """Input width of a network on this env's states (one-hot width for a discrete state)."""
    space = env.observation_space
    return int(space.n) if isinstance(space, gym.spaces.Discrete) else int(np.prod(space.shape))


def one_hot(index: int, size: int) -> np.ndarray:
    vec = np.zeros(size, np.float32)
    vec[index] = 1.0
    return vec
