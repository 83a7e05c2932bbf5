import numpy as np
import pytest

from common.cli import UsageError
from common.envs import StepCounter, VectorEnv, check_env_id, make_env


def rollout(env, actions):
    obs, _ = env.reset()
    trace = [obs]
    for action in actions:
        obs, reward, terminated, truncated, _ = env.step(action)
        trace.append(np.append(obs, reward))
        if terminated or truncated:
            trace.append(env.reset()[0])
    return np.concatenate(trace)


def test_observations_are_float32_and_seeding_repeats_trajectories():
    env = make_env("Pendulum-v1", seed=3)
    assert env.observation_space.dtype == np.float32
    assert env.reset()[0].dtype == np.float32
    actions = [env.action_space.sample() for _ in range(50)]
    again = make_env("Pendulum-v1", seed=3)
    assert np.array_equal(rollout(make_env("Pendulum-v1", seed=3), actions),
                          rollout(again, actions))
    assert again.action_space.sample() == pytest.approx(make_env("Pendulum-v1", 3).action_space.sample())
    assert not np.array_equal(rollout(make_env("Pendulum-v1", seed=4), actions),
                              rollout(make_env("Pendulum-v1", seed=3), actions))


def test_counter_is_shared_by_envs_and_counts_every_step():
    counter = StepCounter()
    envs = [make_env("CartPole-v1", seed, counter=counter) for seed in (0, 1)]
    for env in envs:
        env.reset()
        for _ in range(7):
            _, _, terminated, truncated, _ = env.step(env.action_space.sample())
            if terminated or truncated:
                env.reset()
    assert counter.count == 14


def test_episode_statistics_are_recorded():
    env = make_env("CartPole-v1", seed=0)
    env.reset()
    total, length = 0.0, 0
    while True:
        _, reward, terminated, truncated, info = env.step(0)
        total, length = total + reward, length + 1
        if terminated or truncated:
            break
    assert info["episode"]["r"] == total and info["episode"]["l"] == length


@pytest.mark.parametrize("bad, suggestion", [("HalfCheeta-v5", "HalfCheetah-v5"),
                                             ("ALE/Pongg-v5", "ALE/Pong-v5"),
                                             ("cartpole-v1", "CartPole-v1")])
def test_unknown_env_id_suggests_close_matches(bad, suggestion):
    with pytest.raises(UsageError, match=f"unknown environment id '{bad}'; did you mean .*{suggestion}"):
        make_env(bad, 0)


def test_mujoco_atari_and_procgen_are_installed():
    obs, _ = make_env("HalfCheetah-v5", 0).reset()
    assert obs.shape == (17,) and obs.dtype == np.float32
    pong = make_env("ALE/Pong-v5", 0)
    obs, _ = pong.reset()
    assert obs.shape == (210, 160, 3) and pong.action_space.n == 6
    import procgen
    venv = procgen.ProcgenGym3Env(num=1, env_name="coinrun", distribution_mode="easy")
    assert venv.ob_space["rgb"].shape == (64, 64, 3)


def record_vector_run(vec, steps, rng):
    obs = vec.reset()
    log = []
    for _ in range(steps):
        actions = rng.integers(0, 2, size=vec.num_envs)
        step = vec.step(actions)
        log.append((obs, actions, step))
        obs = step.obs
    return log


def test_vector_env_masks_the_fake_autoreset_transition():
    vec = VectorEnv("CartPole-v1", num_envs=3, seed=10)
    log = record_vector_run(vec, 120, np.random.default_rng(0))
    real = np.array([step.real for _, _, step in log])
    assert not real.all(), "no episode ended; the test needs at least one autoreset"
    assert vec.counter.count == real.sum()
    # replay every sub-env's real transitions on its own single env (seeded like sub-env i)
    for i in range(3):
        env = make_env("CartPole-v1", seed=10 + i)
        expected_obs, _ = env.reset()
        returns, episode_return = [], 0.0
        for obs, actions, step in log:
            assert np.array_equal(obs[i], expected_obs)
            if not step.real[i]:  # the autoreset step: no reward, no end, action ignored
                assert step.rewards[i] == 0 and not step.terminated[i]
                expected_obs, _ = env.reset()
                assert np.array_equal(step.obs[i], expected_obs)
                continue
            expected_obs, reward, terminated, truncated, _ = env.step(actions[i])
            assert step.rewards[i] == reward and step.terminated[i] == terminated
            assert np.array_equal(step.obs[i], expected_obs)  # the true final obs at an end
            episode_return += reward
            if terminated or truncated:
                returns.append(episode_return)
                episode_return = 0.0
        recorded = [r for r, _ in vec.completed_episodes]
        assert all(r in recorded for r in returns)
    assert len(vec.completed_episodes) == sum(
        ((step.terminated | step.truncated) & step.real).sum() for _, _, step in log)


def test_async_vector_env_matches_sync():
    logs = []
    for asynchronous in (False, True):
        vec = VectorEnv("CartPole-v1", num_envs=2, seed=1, asynchronous=asynchronous)
        logs.append(record_vector_run(vec, 40, np.random.default_rng(1)))
        vec.close()
    for (obs_a, _, step_a), (obs_b, _, step_b) in zip(*logs):
        assert np.array_equal(obs_a, obs_b) and np.array_equal(step_a.real, step_b.real)
        assert np.array_equal(step_a.rewards, step_b.rewards)


def test_check_env_id_accepts_registered_ids():
    check_env_id("Pendulum-v1")
    check_env_id("ALE/Breakout-v5")


@pytest.mark.parametrize("env_id", ["HalfCheetah-v5", "Hopper-v5", "Pendulum-v1"])
def test_an_episode_in_progress_continues_exactly_after_restore(env_id):
    """env_state / restore_env_state: steve's backups continue mid-episode, across resets."""
    from common.envs import env_state, restore_env_state

    env = make_env(env_id, seed=3, max_episode_steps=400)
    env.reset()
    for _ in range(57):
        env.step(env.action_space.sample())
    copy = make_env(env_id, seed=3, max_episode_steps=400)
    restore_env_state(copy, env_state(env))
    actions = np.random.default_rng(0).uniform(-1, 1, (900, *env.action_space.shape)).astype(np.float32)
    traces = []
    for e in (env, copy):
        trace = []
        for action in actions:
            obs, reward, terminated, truncated, _ = e.step(action)
            trace.append(np.append(obs, [reward, terminated, truncated]))
            if terminated or truncated:
                trace.append(e.reset()[0])
        traces.append(trace)
    assert len(traces[0]) == len(traces[1]) > 900   # at least one reset on the way
    assert all(np.array_equal(a, b) for a, b in zip(*traces))


@pytest.mark.parametrize("env_id", ["HalfCheetah-v5", "Pendulum-v1", "CartPole-v1", "Acrobot-v1"])
def test_made_envs_pass_gymnasiums_checker_and_remake_from_their_spec(env_id):
    """Every wrapper records its constructor arguments (gymnasium's convention), so check_env
    passes and gymnasium.make(env.spec) rebuilds the same stack (with a copy of the counter)."""
    import warnings

    import gymnasium as gym
    from gymnasium.utils.env_checker import check_env

    counter = StepCounter()
    env = make_env(env_id, seed=0, counter=counter)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # its advice (infinite Box bounds, check the unwrapped env)
        check_env(env, skip_render_check=True)
    remade = gym.make(env.spec)
    assert str(remade) == str(env)
    remade.reset(seed=1)
    copied, steps = remade.get_wrapper_attr("counter"), counter.count
    before = copied.count
    remade.step(remade.action_space.sample())
    assert copied is not counter and copied.count == before + 1 and counter.count == steps
    assert remade.observation_space == env.observation_space


def test_searls_atari_env_passes_gymnasiums_checker():
    """The Atari stack SEARL-DQN trains on (ale-py + AtariPreprocessing + frame stack)."""
    import warnings

    from gymnasium.utils.env_checker import check_env

    from searl.atari import make_atari_env

    env = make_atari_env("ALE/Pong-v5", 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check_env(env, skip_render_check=True)
    assert env.observation_space.shape[0] == 4   # four stacked frames
