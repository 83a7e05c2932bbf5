"""synthetic_envs.gym_envs: the committed proxies and the Cliff walk as gymnasium.Envs (check_env,
the real env's spaces, the same transitions and rewards as proxies.SyntheticEnv / RewardEnv),
bad arguments, and the README's "Use it in your code" example run from a copy."""
import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env
from helpers import run_readme_example

from common.runs import load_checkpoint
from synthetic_envs.envs import CliffWalk, env_spec, make_real_env
from synthetic_envs.figures import load_cliff_rn
from synthetic_envs.gym_envs import (
    PROXIES_DIR,
    CliffWalkEnv,
    RewardNetWrapper,
    SyntheticGymEnv,
    list_proxies,
    load_env,
)
from synthetic_envs.proxies import SyntheticEnv, build_proxy

SES = {"cartpole_se_s0": "CartPole-v0", "acrobot_se_s0": "Acrobot-v1"}


def _check(env):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # CartPole's infinite Box bounds; "differs from unwrapped"
        check_env(env, skip_render_check=True)


def _old_se(name, seed=0):
    """The existing SyntheticEnv for a committed SE, built as evaluate.py builds it."""
    saved = load_checkpoint(PROXIES_DIR / name / "proxy.pt")
    real = make_real_env(saved["env"], seed)
    model = build_proxy("se", real, saved["proxy_config"], saved["mode"], env_spec(saved["env"]).info_dim)
    model.load_state_dict(saved["state_dict"])
    return SyntheticEnv(model, real, env_spec(saved["env"]).max_steps)


@pytest.mark.parametrize("name", sorted(SES))
def test_se_is_a_checked_env_with_the_real_spaces(name):
    env = load_env(name, seed=0)
    assert isinstance(env, SyntheticGymEnv) and isinstance(env, gym.Env)
    _check(env)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        real = gym.make(SES[name])
    assert env.observation_space == real.observation_space
    assert env.action_space == real.action_space


@pytest.mark.parametrize("name", ["cartpole_se_s0", "acrobot_se_s0", "cliff_se_s1"])
def test_se_steps_as_synthetic_env(name):
    """Same seed and actions: the same observations, rewards, terminations and truncations as the
    existing SyntheticEnv, over several episodes (unseeded resets continue the same RNG)."""
    new, old = load_env(name), _old_se(name)
    rng = np.random.default_rng(1)
    n_actions = int(new.action_space.n)
    for episode in range(3):
        seed = 7 if episode == 0 else None
        obs_new, _ = new.reset(seed=seed)
        obs_old, _ = old.reset(seed=seed)
        np.testing.assert_array_equal(obs_new, obs_old)
        steps = 0
        while True:
            action = int(rng.integers(n_actions))
            a, b = new.step(action), old.step(action)
            np.testing.assert_array_equal(a[0], b[0])
            assert a[1:4] == b[1:4]
            steps += 1
            if a[2] or a[3]:
                break
        assert steps <= env_spec(name.split("_")[0]).max_steps
        assert a[3] == (steps == env_spec(name.split("_")[0]).max_steps and not a[2])


def test_se_reset_seed_is_deterministic_and_load_seed_seeds_first_reset():
    env = load_env("cartpole_se_s0")
    first, _ = env.reset(seed=3)
    again, _ = env.reset(seed=3)
    other, _ = env.reset(seed=4)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    a, _ = load_env("cartpole_se_s0", seed=5).reset()
    b, _ = load_env("cartpole_se_s0").reset(seed=5)
    np.testing.assert_array_equal(a, b)
    # the initial states are drawn with env.np_random (CartPole: U(-0.05, 0.05)^4 per reset)
    env.reset(seed=3)
    gen = np.random.default_rng(123)
    env.np_random = np.random.default_rng(123)
    np.testing.assert_array_equal(env.reset()[0], gen.uniform(-0.05, 0.05, 4).astype(np.float32))


def test_se_truncates_at_max_steps():
    env = load_env("cartpole_se_s0", max_steps=5)
    env.reset(seed=0)
    out = [env.step(0) for _ in range(5)]
    assert [o[2:4] for o in out] == [(False, False)] * 4 + [(False, True)]


def test_rn_wraps_the_real_env_with_reward_env_rewards():
    env = load_env("cliff_rn_mode2_s0")
    assert isinstance(env, RewardNetWrapper) and isinstance(env, gym.Wrapper)
    assert isinstance(env.unwrapped, CliffWalkEnv)
    _check(env)
    _, old = load_cliff_rn(PROXIES_DIR / "cliff_rn_mode2_s0")   # the existing RewardEnv
    assert env.rn.gamma == old.gamma == 0.8 and env.rn.mode == old.mode == 2
    rng = np.random.default_rng(0)
    for seed in (0, None):
        obs_new, _ = env.reset(seed=seed)
        obs_old, _ = old.reset(seed=seed)
        assert obs_new == obs_old == CliffWalk().start
        shaped_differs = False
        while True:
            action = int(rng.integers(4))
            a, b = env.step(action), old.step(action)
            assert a[:4] == b[:4]
            assert a[4]["real_reward"] == b[4]["real_reward"]
            shaped_differs |= a[1] != a[4]["real_reward"]
            if a[2] or a[3]:
                break
        assert shaped_differs   # the learned reward is not the real one


def test_rn_gamma_override_and_required_without_config(tmp_path):
    assert load_env("cliff_rn_mode2_s0", gamma=0.5).rn.gamma == 0.5
    saved = torch.load(PROXIES_DIR / "cliff_rn_mode2_s0" / "proxy.pt", weights_only=True)
    torch.save(saved, tmp_path / "proxy.pt")   # no config.json beside it
    with pytest.raises(ValueError, match="gamma"):
        load_env(tmp_path / "proxy.pt")
    assert load_env(tmp_path / "proxy.pt", gamma=0.9).rn.gamma == 0.9


def test_load_env_from_run_folder_and_file():
    folder = PROXIES_DIR / "cartpole_se_s2"
    for arg in (folder, str(folder), folder / "proxy.pt"):
        env = load_env(arg)
        assert isinstance(env, SyntheticGymEnv) and env.env_name == "cartpole"
    assert {"cartpole_se_s0", "acrobot_se_s0", "cliff_rn_mode2_s0", "cliff_se_s1"} <= set(list_proxies())


def test_cliff_env_is_cliff_walk():
    env = CliffWalkEnv()
    _check(env)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        made = gym.make("synthetic_envs/CliffWalk-v0")
        _check(made)
    assert env.observation_space == gym.spaces.Discrete(48) and env.action_space == gym.spaces.Discrete(4)
    old = CliffWalk()
    # the optimal path: up, 11 x right, down -> return -12, terminated into the goal
    for walker in (env, made):
        assert walker.reset(seed=0)[0] == old.reset()[0] == 36
        total = 0.0
        for action in [3] + [0] * 11 + [2]:
            obs, reward, terminated, truncated, _ = walker.step(action)
            assert (obs, reward, terminated, truncated) == old.step(action)[:4]
            total += reward
        assert (total, terminated, truncated, obs) == (-12.0, True, False, 47)
    # into the cliff: -100, terminated; walking into a wall 50 times: truncated at 50
    env.reset()
    assert env.step(0)[1:4] == (-100.0, True, False)
    env.reset()
    out = [env.step(1) for _ in range(50)]
    assert all(o[1:4] == (-1.0, False, False) for o in out[:-1]) and out[-1][1:4] == (-1.0, False, True)


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="path_or_name.*cartpole_se_s9"):
        load_env("cartpole_se_s9")
    with pytest.raises(ValueError, match="path_or_name"):
        load_env(tmp_path / "missing")
    with pytest.raises(ValueError, match="path_or_name"):
        load_env(tmp_path)                      # a folder without proxy.pt
    with pytest.raises(TypeError, match="path_or_name"):
        load_env(3)
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="path_or_name.*not a readable proxy"):
        load_env(tmp_path / "junk.pt")
    torch.save({"weight": torch.zeros(3)}, tmp_path / "foreign.pt")   # a torch file, not a proxy
    with pytest.raises(ValueError, match="path_or_name.*not a synthetic_envs proxy"):
        load_env(tmp_path / "foreign.pt")
    saved = torch.load(PROXIES_DIR / "cartpole_se_s0" / "proxy.pt", weights_only=True)
    torch.save(dict(saved, env="acrobot"), tmp_path / "mismatch.pt")   # weights of another shape
    with pytest.raises(ValueError, match="path_or_name.*usable"):
        load_env(tmp_path / "mismatch.pt")


@pytest.mark.slow
def test_readme_example_runs_from_a_copy(tmp_path):
    result = run_readme_example("synthetic_envs", tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "mean real return of the SE-trained agent" in result.stdout
