"""Tests of optim4rl/ppo.py: Brax's GAE with a termination and a truncation, the clipped
surrogate, the tanh-Gaussian log-probability, the running observation statistics, smoke runs of
run_ppo with Adam and with an untrained Optim4RL, a learning check on InvertedPendulum-v5 and the
user errors."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from common.cli import UsageError
from common.envs import StepCounter, make_env
from optim4rl import logs
from optim4rl.ppo import (RunningNorm, clipped_surrogate_loss, collect_rollout, compute_gae, init_ppo_params,
                          make_train_envs, ppo_settings, resolve_env_id, run_ppo, successor_values,
                          tanh_gaussian_log_prob, to_env_action, value_fn)
from optim4rl.sweeper import Sweeper

CONFIGS = Path(__file__).resolve().parents[1] / "optim4rl" / "configs"


class QuietLogger:
    def __init__(self):
        self.lines = []

    def info(self, message):
        self.lines.append(message)


def tiny_config(env="InvertedDoublePendulum-v5", optimizer="Adam", train_steps=120, **optim_kwargs):
    """2 envs x 4 unrolls x 5 steps = 40 env steps per iteration; an evaluation every 40."""
    return {"env": {"name": env, "train_steps": train_steps, "num_envs": 2, "eval_every": 40,
                    "eval_episodes": 2, "reward_scaling": 10},
            "agent": {"name": "PPO", "rollout_steps": 5, "num_minibatches": 2, "update_epochs": 2,
                      "entropy_weight": 1e-2, "clipping_epsilon": 0.3, "value_hidden_sizes": [64, 64]},
            "agent_optimizer": {"name": optimizer, "kwargs": {"learning_rate": 3e-4, "gradient_clip": 1,
                                                              **optim_kwargs}},
            "batch_size": 4, "discount": 0.97, "seed": 3}


# ------------------------------------------------------------------ advantages and losses

def test_gae_hand_worked_with_termination_and_truncation():
    # one sequence of 4 steps: step 1 terminates, step 2 is truncated (time limit), step 3 starts
    # a new episode and is the last step of the sequence.
    gamma, lam = 0.9, 0.5
    rewards = torch.tensor([[1.0], [2.0], [3.0], [4.0]])
    values = torch.tensor([[0.5], [1.0], [1.5], [2.0]])
    # V of each step's successor: V(s1) = 1.0, (masked: terminal), V(final obs of step 2) = 3.0,
    # the bootstrap V(s4) = 2.5
    next_values = torch.tensor([[1.0], [7.0], [3.0], [2.5]])
    terminated = torch.tensor([[False], [True], [False], [False]])
    truncated = torch.tensor([[False], [False], [True], [False]])
    vs, adv = compute_gae(rewards, values, next_values, terminated, truncated, gamma, lam)
    # deltas: d3 = 4 + .9*2.5 - 2 = 4.25; d2 = 3 + .9*3 - 1.5 = 4.2 (bootstrapped on truncation);
    # d1 = 2 - 1 = 1 (no bootstrap on termination); d0 = 1 + .9*1 - .5 = 1.4
    # vs - V: 4.25; 4.2 (chain cut); 1.0 (chain cut); 1.4 + .9*.5*1.0 = 1.85
    assert vs[:, 0].tolist() == pytest.approx([2.35, 2.0, 5.7, 6.25])
    # A_t = r_t + gamma (1 - term_t) vs'_t - V_t: A0 = 1 + .9 * vs1 - .5 = 2.3 (Brax's form);
    # A1 = 1.0; A2 = 3 + .9*3 - 1.5 = 4.2; A3 = 4.25
    assert adv[:, 0].tolist() == pytest.approx([2.3, 1.0, 4.2, 4.25])


def test_gae_batch_columns_are_independent():
    torch.manual_seed(0)
    r, v, nv = torch.randn(6, 3), torch.randn(6, 3), torch.randn(6, 3)
    term, trunc = torch.rand(6, 3) < 0.2, torch.rand(6, 3) < 0.2
    vs, adv = compute_gae(r, v, nv, term, trunc, 0.99, 0.95)
    for b in range(3):
        vs_b, adv_b = compute_gae(r[:, b:b + 1], v[:, b:b + 1], nv[:, b:b + 1], term[:, b:b + 1],
                                  trunc[:, b:b + 1], 0.99, 0.95)
        assert torch.allclose(vs[:, b], vs_b[:, 0]) and torch.allclose(adv[:, b], adv_b[:, 0])


def test_clipped_surrogate_hand_made():
    ratio = torch.tensor([0.5, 1.0, 1.5, 1.5])
    adv = torch.tensor([1.0, -1.0, 1.0, -1.0])
    # min(rA, clip(r, .8, 1.2) A): 0.5, -1.0, 1.2 (clipped), -1.5 (unclipped) -> mean -0.2
    assert clipped_surrogate_loss(ratio, adv, 0.2).item() == pytest.approx(0.2)
    # no clipping at all with a huge epsilon: mean(rA) = (0.5 - 1 + 1.5 - 1.5) / 4
    assert clipped_surrogate_loss(ratio, adv, 10.0).item() == pytest.approx(0.125)


def test_tanh_gaussian_log_prob_matches_change_of_variables():
    loc, scale, raw = torch.tensor([[0.3, -0.2]]), torch.tensor([[0.5, 1.5]]), torch.tensor([[0.7, 0.1]])
    expected = 0.0
    for m, s, x in zip(loc[0].tolist(), scale[0].tolist(), raw[0].tolist()):
        normal = -0.5 * ((x - m) / s) ** 2 - math.log(s) - 0.5 * math.log(2 * math.pi)
        expected += normal - math.log(1 - math.tanh(x) ** 2)
    assert tanh_gaussian_log_prob(loc, scale, raw).item() == pytest.approx(expected, rel=1e-5)


def test_running_norm_matches_numpy_statistics():
    rng = np.random.default_rng(0)
    batches = [rng.normal(3.0, 2.0, size=(n, 4)).astype(np.float32) for n in (7, 1, 30)]
    norm = RunningNorm(4)
    x0 = torch.ones(2, 4)
    assert torch.equal(norm(x0), x0)                  # identity before any data
    for b in batches:
        norm.update(torch.from_numpy(b))
    data = np.concatenate(batches)
    assert norm.count == 38
    assert norm.mean.numpy() == pytest.approx(data.mean(0), rel=1e-6)
    assert norm.std.numpy() == pytest.approx(data.std(0), rel=1e-5)
    out = norm(torch.from_numpy(data)).numpy()
    assert out.mean(0) == pytest.approx(np.zeros(4), abs=1e-5)
    assert out.std(0) == pytest.approx(np.ones(4), rel=1e-4)
    assert torch.equal(RunningNorm(4, enabled=False)(x0 * 5), x0 * 5)


# ------------------------------------------------------------------ rollouts

def test_rollout_keeps_final_observation_of_truncated_episodes():
    # episodes cut at 3 steps: the successor of a truncated step is its final observation, not
    # the reset observation the vector env continues from; replaying env 0 alone must agree.
    cfg = tiny_config("InvertedPendulum-v5")
    cfg["env"]["episode_length"] = 3
    s = ppo_settings(cfg)
    counter, generator = StepCounter(), torch.Generator().manual_seed(0)
    envs = make_train_envs(s, 5, counter)
    obs, _ = envs.reset()
    params = init_ppo_params(4, 1, s, generator)
    data, _ = collect_rollout(envs, obs, params, RunningNorm(4), s, generator)
    envs.close()
    assert counter.count == s.steps_per_iteration == 40
    # sequences of env 0 are rows 0, 2, 4, 6 (unroll-major, then env); stitch its 20 steps back
    rows = [data[k][0::2].reshape(20, *data[k].shape[2:]) for k in ("obs", "next_obs", "raw_action", "truncated")]
    obs0, next0, raw0, trunc0 = rows
    assert trunc0.tolist() == [t % 3 == 2 for t in range(20)]
    replay = make_env("InvertedPendulum-v5", 5, max_episode_steps=3)
    o, _ = replay.reset()
    space = replay.action_space
    for t in range(20):
        assert np.allclose(obs0[t].numpy(), o)
        action = to_env_action(torch.tanh(raw0[t]), space.low.astype(np.float64), space.high.astype(np.float64))
        o, _, terminated, truncated, _ = replay.step(action)
        assert np.allclose(next0[t].numpy(), o)           # the true successor, final obs included
        if terminated or truncated:
            o, _ = replay.reset()
            assert not np.allclose(next0[t].numpy(), o)


def test_successor_values_use_final_observation_after_truncation():
    s = ppo_settings(tiny_config())
    params = init_ppo_params(3, 1, s, torch.Generator().manual_seed(1))
    torch.manual_seed(0)
    obs, next_obs = torch.randn(2, 4, 3), torch.randn(2, 4, 3)
    terminated = torch.zeros(2, 4, dtype=torch.bool)
    truncated = torch.zeros(2, 4, dtype=torch.bool)
    truncated[0, 1] = True                 # sequence 0 truncated at step 1, sequence 1 at its last step
    truncated[1, 3] = True
    terminated[1, 0] = True
    norm = RunningNorm(3)
    batch = {"obs": obs, "next_obs": next_obs, "terminated": terminated, "truncated": truncated}
    values = value_fn(params, obs.reshape(8, 3)).reshape(2, 4)
    got = successor_values(params, values, batch, norm)

    def v(x):
        return value_fn(params, x[None])[0].item()
    expected = [[v(obs[0, 1]), v(next_obs[0, 1]), v(obs[0, 3]), v(next_obs[0, 3])],
                [v(obs[1, 1]), v(obs[1, 2]), v(obs[1, 3]), v(next_obs[1, 3])]]
    assert torch.allclose(got, torch.tensor(expected), rtol=1e-5, atol=1e-6)
    assert not got.requires_grad


# ------------------------------------------------------------------ runs

def check_rows(rows, env_id, steps_per_iteration=40, train_steps=120):
    assert [r["Step"] for r in rows] == list(range(0, train_steps + 1, steps_per_iteration))
    assert all(set(r) == {"Env", "Agent", "Step", "Return", "test_steps"} for r in rows)
    assert [r["test_steps"] for r in rows] == sorted(r["test_steps"] for r in rows) and rows[-1]["test_steps"] > 0
    assert all(r["Env"] == env_id and r["Agent"] == "PPO" and np.isfinite(r["Return"]) for r in rows)


def test_smoke_run_adam(tmp_path):
    logger = QuietLogger()
    rows = run_ppo(tiny_config(), tmp_path, logger)
    check_rows(rows, "InvertedDoublePendulum-v5")
    table = logs.read_results_csv(logs.result_file(tmp_path, "InvertedDoublePendulum-v5"))
    assert table["Step"] == [float(r["Step"]) for r in rows]
    assert any("Return=" in line for line in logger.lines)
    # the same seed gives the same curve
    assert run_ppo(tiny_config(), tmp_path, QuietLogger()) == rows


def test_smoke_run_untrained_optim4rl_with_reference_name(tmp_path):
    rows = run_ppo(tiny_config("inverted_double_pendulum", "Optim4RL", param_load_path=""), tmp_path,
                   QuietLogger())
    check_rows(rows, "InvertedDoublePendulum-v5")


def test_optim4rl_loads_meta_parameters(tmp_path):
    from optim4rl.optimizers import make_optimizer, save_meta_params
    save_meta_params(make_optimizer("Optim4RL", 1.0, seed=11), str(tmp_path / "phi.pt"))
    log_dir = tmp_path / "ppo" / "1"
    log_dir.mkdir(parents=True)
    rows = run_ppo(tiny_config("InvertedPendulum-v5", "Optim4RL", train_steps=40,
                               param_load_path=str(tmp_path / "phi.pt")), log_dir, QuietLogger())
    assert [r["Step"] for r in rows] == [0, 40]
    with pytest.raises(UsageError, match="param_load_path"):
        run_ppo(tiny_config("InvertedPendulum-v5", "Optim4RL", param_load_path=str(tmp_path / "none.pt")),
                log_dir, QuietLogger())


@pytest.mark.slow
def test_ppo_adam_learns_inverted_pendulum(tmp_path):
    # 4 envs, 32 sequences of 16 steps per iteration (512 env steps), 16 iterations
    cfg = {"env": {"name": "InvertedPendulum-v5", "train_steps": 8192, "num_envs": 4, "eval_every": 8192,
                   "eval_episodes": 3},
           "agent": {"name": "PPO", "rollout_steps": 16, "num_minibatches": 4, "update_epochs": 4,
                     "entropy_weight": 1e-3},
           "agent_optimizer": {"name": "Adam", "kwargs": {"learning_rate": 1e-3, "gradient_clip": 1}},
           "batch_size": 8, "discount": 0.97, "seed": 0}
    rows = run_ppo(cfg, tmp_path, QuietLogger())
    assert [r["Step"] for r in rows] == [0, 8192]
    first, last = rows[0]["Return"], rows[-1]["Return"]
    assert first < 50                       # a fresh policy drops the pole within a few dozen steps
    assert last > 300 and last > 5 * first, rows


# ------------------------------------------------------------------ errors and configs

def test_env_names():
    assert resolve_env_id("walker2d") == "Walker2d-v5"
    assert resolve_env_id(["Humanoid-v5"]) == "Humanoid-v5"
    assert resolve_env_id("inverted_double_pendulum") == "InvertedDoublePendulum-v5"
    for bad in ("fetch", "Walker2d-v4", "CartPole-v1"):
        with pytest.raises(UsageError, match="unknown PPO env"):
            resolve_env_id(bad)


def test_unknown_env_and_bad_keys_raise_usage_error(tmp_path):
    with pytest.raises(UsageError, match="unknown PPO env"):
        run_ppo(tiny_config("NoSuchEnv-v5"), tmp_path, QuietLogger())
    cfg = tiny_config()
    cfg["agent"]["clip_eps"] = 0.2
    with pytest.raises(UsageError, match="clip_eps"):
        run_ppo(cfg, tmp_path, QuietLogger())
    cfg = tiny_config()
    cfg["batch_size"], cfg["env"]["num_envs"] = 3, 4      # 3 * 2 sequences over 4 envs
    with pytest.raises(UsageError, match="multiple of num_envs"):
        run_ppo(cfg, tmp_path, QuietLogger())


@pytest.mark.parametrize("name,count,first", [("ppo_walker2d", 2, "Adam"), ("walker2d_lopt", 3, "Optim4RL"),
                                              ("inverted_double_pendulum_lopt", 3, "Optim4RL"),
                                              ("ant_lopt", 3, "Optim4RL"), ("humanoid_lopt", 3, "Optim4RL")])
def test_configs_decode(name, count, first):
    sweeper = Sweeper(CONFIGS / f"{name}.json")
    assert sweeper.total_combinations == count
    names = [sweeper.generate_config_for_idx(i)["agent_optimizer"]["name"] for i in range(1, count + 1)]
    assert names[0] == first and names[-2:] == ["Adam", "RMSProp"]
    cfg = sweeper.generate_config_for_idx(1)
    assert cfg["agent"]["name"] == "PPO" and resolve_env_id(cfg["env"]["name"]).endswith("-v5")
    assert all(sweeper.generate_config_for_idx(i)["agent_optimizer"]["kwargs"]["learning_rate"] == 3e-4
               for i in range(1, count + 1))
    if first == "Optim4RL":
        assert cfg["agent_optimizer"]["kwargs"]["param_load_path"] == "logs/grid_small_meta/1/param.pt"
    raw = json.loads((CONFIGS / f"{name}.json").read_text())
    assert all(isinstance(v, list) for v in raw.values())         # seed format: every value a list
