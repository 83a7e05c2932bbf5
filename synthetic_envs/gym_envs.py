"""The learned proxies and the Cliff walk as `gymnasium.Env`s, for use outside this package.

    from synthetic_envs.gym_envs import load_env
    env = load_env("cartpole_se_s0")      # a committed SE: steps with the learned model, 0 real steps
    env = load_env("cliff_rn_mode2_s0")   # a committed RN: the real Cliff with the learned reward
    env = load_env("path/to/run_dir")     # or a run folder / proxy.pt written by train.py

- `SyntheticGymEnv`: a synthetic environment (SE). Its spaces are the real env's; it resets from
  the real env's initial-state distribution (drawn with `self.np_random`, so `reset(seed=...)`
  seeds it) and steps with the learned model through `proxies.SyntheticEnv` (the same code
  NES and the evaluation train on); episodes end when the done head fires (terminated) or at
  the real env's cap (truncated: 200 CartPole, 500 Acrobot, 50 Cliff).
- `RewardNetWrapper`: a reward network (RN), a `gymnasium.Wrapper` around the real env whose
  reward is replaced by `proxies.RewardEnv`'s for the RN's mode; the real reward is in
  `info["real_reward"]`.
- `CliffWalkEnv`: the paper's 4x12 Cliff walk (`envs.CliffWalk`) as a gymnasium.Env,
  registered as "synthetic_envs/CliffWalk-v0".

Errors in what is asked (an unknown proxy name, a missing or foreign file) are `ValueError`s
(a path_or_name that is neither a str nor a Path: `TypeError`).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar

import gymnasium as gym
from gymnasium.utils import RecordConstructorArgs, seeding

from common.cli import UsageError
from common.runs import load_checkpoint
from synthetic_envs.envs import ENV_SPECS, CliffWalk, env_spec, make_real_env
from synthetic_envs.proxies import (
    RewardEnv,
    RewardNet,
    SyntheticEnv,
    SyntheticEnvModel,
    build_proxy,
)

PROXIES_DIR = Path(__file__).resolve().parent / "results" / "proxies"
CLIFF_ID = "synthetic_envs/CliffWalk-v0"
_KEYS = ("kind", "env", "mode", "proxy_config", "state_dict")


class CliffWalkEnv(gym.Env):
    """The paper's Cliff walk (envs.CliffWalk: -1 a step, 0 into the goal, -100 into the cliff,
    which ends the episode; truncated after `max_steps` moves) as a gymnasium.Env.
    Observations Discrete(48) (row * 12 + col), actions Discrete(4): 0 right, 1 left, 2 down,
    3 up. `info["vector"]` after a step is the one-hot (step, cliff, goal). Deterministic."""

    metadata: ClassVar[dict] = {"render_modes": []}

    def __init__(self, max_steps: int = 50, render_mode=None):
        self.walk = CliffWalk(max_steps)
        self.max_steps = max_steps
        self.observation_space = gym.spaces.Discrete(self.walk.n_states)
        self.action_space = gym.spaces.Discrete(4)
        self.render_mode = render_mode

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        state, info = self.walk.reset()
        return int(state), info

    def step(self, action):
        return self.walk.step(action)


gym.register(id=CLIFF_ID, entry_point="synthetic_envs.gym_envs:CliffWalkEnv")


def _real_env(env: str, seed=None):
    """The real env as a gymnasium.Env (the Cliff as CliffWalkEnv, the rest as envs.make_real_env)."""
    if env == "cliff":
        real = CliffWalkEnv(env_spec("cliff").max_steps)
        real.reset(seed=seed)
        real.action_space.seed(seed)
        return real
    return make_real_env(env, seed)


class SyntheticGymEnv(gym.Env):
    """A learned synthetic environment as a gymnasium.Env (see the module docstring).
    `model` is a proxies.SyntheticEnvModel for the real env named `env` (envs.ENV_SPECS)."""

    metadata: ClassVar[dict] = {"render_modes": []}

    def __init__(self, model: SyntheticEnvModel, env: str, max_steps: int | None = None,
                 seed: int | None = None, render_mode=None):
        spec = env_spec(env)
        self.env_name = env
        self.max_steps = int(max_steps or spec.max_steps)
        # the real env only supplies the spaces and the initial-state distribution: never stepped
        self.se = SyntheticEnv(model.eval(), make_real_env(env, seed), self.max_steps)
        self.observation_space, self.action_space = self.se.observation_space, self.se.action_space
        self.render_mode = render_mode
        if seed is not None:   # a first reset() without a seed then uses this one
            self._np_random, self._np_random_seed = seeding.np_random(seed)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        real = self.se.real_env
        if isinstance(real, gym.Env):   # draw the initial state with self.np_random
            real.unwrapped.np_random = self.np_random
        state, info = self.se.reset(seed=None)
        return state, info

    def step(self, action):
        return self.se.step(action)


class RewardNetWrapper(gym.Wrapper, RecordConstructorArgs):
    """A learned reward network around a real env (a gymnasium.Env that puts the info vector in
    `info["vector"]`, as envs.make_real_env's and CliffWalkEnv do): every step is a real step, the
    reward is proxies.RewardEnv's for `net.mode` with discount `gamma`; the real reward goes to
    `info["real_reward"]`."""

    def __init__(self, env: gym.Env, net: RewardNet, gamma: float, zero_terminal_potential: bool = False):
        RecordConstructorArgs.__init__(self, net=net, gamma=gamma,
                                       zero_terminal_potential=zero_terminal_potential)
        gym.Wrapper.__init__(self, env)
        self.rn = RewardEnv(net.eval(), env, gamma, zero_terminal_potential)

    def reset(self, *, seed=None, options=None):
        obs, info = self.env.reset(seed=seed, options=options)
        self.rn.state = obs
        return obs, info

    def step(self, action):
        return self.rn.step(action)


def list_proxies() -> list[str]:
    """The names of the committed proxies (folders of synthetic_envs/results/proxies/)."""
    if not PROXIES_DIR.is_dir():
        return []
    return sorted(p.name for p in PROXIES_DIR.iterdir() if (p / "proxy.pt").is_file())


def _proxy_file(path_or_name) -> Path:
    if isinstance(path_or_name, str) and path_or_name in list_proxies():
        return PROXIES_DIR / path_or_name / "proxy.pt"
    if not isinstance(path_or_name, (str, Path)):
        raise TypeError(f"load_env: path_or_name must be a proxy name or a path, got {type(path_or_name).__name__}")
    path = Path(path_or_name)
    if path.is_dir():
        path = path / "proxy.pt"
    if not path.is_file():
        raise ValueError(f"load_env: path_or_name {str(path_or_name)!r} is neither a committed proxy "
                         f"({', '.join(list_proxies())}) nor a run folder or proxy.pt file")
    return path


def load_proxy_file(path_or_name) -> tuple[dict, Path]:
    """The saved proxy (train.py's proxy.pt: kind, env, mode, proxy_config, state_dict, ...) and
    its file. Read with torch.load(weights_only=True): no code in the file is run."""
    path = _proxy_file(path_or_name)
    try:
        saved = load_checkpoint(path, weights_only=True)
    except UsageError as error:   # truncated, corrupt or holding pickled objects
        raise ValueError(f"load_env: path_or_name {str(path_or_name)!r}: {path} is not a readable "
                         f"proxy file ({error})") from None
    if not isinstance(saved, dict) or any(key not in saved for key in _KEYS) \
            or saved["kind"] not in ("se", "rn") or saved["env"] not in ENV_SPECS:
        raise ValueError(f"load_env: path_or_name {str(path_or_name)!r}: {path} is not a synthetic_envs "
                         f"proxy file (train.py's proxy.pt holds {', '.join(_KEYS)})")
    return saved, path


def load_env(path_or_name, seed: int | None = None, *, gamma: float | None = None,
             max_steps: int | None = None) -> gym.Env:
    """A learned proxy as a gymnasium.Env.

    path_or_name: a committed proxy's name (`list_proxies()`, e.g. "cartpole_se_s0") or a run
        folder / proxy.pt written by synthetic_envs/train.py.
    seed: seeds the first reset() called without a seed, and the action space.
    gamma: the RN's discount for its potential shaping (default: the run's agent gamma, read
        from config.json beside proxy.pt); unused for an SE.
    max_steps: the SE's episode cap (default: the real env's); unused for an RN.

    Returns a SyntheticGymEnv (kind "se") or a RewardNetWrapper around the real env (kind "rn").
    """
    saved, path = load_proxy_file(path_or_name)
    env = saved["env"]
    real = _real_env(env, seed)
    try:
        proxy = build_proxy(saved["kind"], real, saved["proxy_config"], saved["mode"], env_spec(env).info_dim)
        proxy.load_state_dict(saved["state_dict"])
    except Exception as error:  # noqa: BLE001 - any mismatch means the file is not a usable proxy
        raise ValueError(f"load_env: path_or_name {str(path_or_name)!r}: {path} does not hold a usable "
                         f"proxy ({str(error).splitlines()[0][:160]})") from None
    if saved["kind"] == "se":
        out = SyntheticGymEnv(proxy, env, max_steps, seed)
    else:
        if gamma is None:
            try:
                gamma = float(json.loads((path.parent / "config.json").read_text())["agent_hp"]["gamma"])
            except (OSError, ValueError, KeyError, TypeError):
                raise ValueError(f"load_env: gamma is needed for the reward network in {path} (no "
                                 f"config.json with agent_hp.gamma beside it); pass gamma=") from None
        out = RewardNetWrapper(real, proxy, float(gamma), bool(saved.get("zero_terminal_potential", False)))
    out.action_space.seed(seed)
    return out
