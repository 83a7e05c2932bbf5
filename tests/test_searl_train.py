"""searl/train.py end to end: smoke runs, resume, bad input, and a seeded learning test."""
import json
import math
import subprocess
import sys

import pytest
from helpers import ROOT, rows, run_in_process, run_train, without_wall_time

from common.runs import check_run_dir


def train(*args, timeout=600):
    return run_train("searl", *args, timeout=timeout)


def refused(*args):
    """searl/train.py ARGS for an input it refuses before any work (in this process)."""
    return run_in_process("searl.train", *args)


def test_smoke_preset_writes_every_output(tmp_path):
    result = train("--smoke", "--out-dir", str(tmp_path / "run"))
    assert result.returncode == 0, result.stderr[-2000:]
    run = tmp_path / "run"
    assert check_run_dir(run) == []
    summary = json.loads((run / "summary.json").read_text())
    metrics = rows(run / "metrics.csv")
    assert summary["env"] == "Pendulum-v1" and summary["algorithm"] == "searl_td3"
    # the budget counts every evaluation step: 3 individuals x 2 Pendulum episodes per generation
    assert [int(r["env_steps"]) for r in metrics] == [1200, 2400, 3600]
    assert summary["env_steps"] == 3600 and summary["test_steps"] == 3 * 2 * 200
    assert [int(r["updates_per_individual"]) for r in metrics] == [0, 600, 600]
    population = rows(run / "population.csv")
    assert len(population) == 9 and population[3]["parent"] != ""
    assert (run / "population.png").exists() and (run / "learning_curve.png").exists()
    # the final elite stands alone: searl/evaluate.py plays it
    played = subprocess.run([sys.executable, str(ROOT / "searl" / "evaluate.py"), str(run),
                             "--episodes", "2"], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert played.returncode == 0, played.stderr[-2000:]
    assert f"individual {metrics[-1]['elite_id']} " in played.stdout and "over 2 episodes" in played.stdout
    wrong = subprocess.run([sys.executable, str(ROOT / "searl" / "evaluate.py"), str(run), "--env",
                            "HalfCheetah-v5"], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert wrong.returncode == 2 and wrong.stderr.count("\n") == 1 and "takes 3 observations" in wrong.stderr


@pytest.mark.parametrize("env, expected", [("CartPole-v1", (0.0, 100.0)),
                                           ("ALE/Pong-v5", (-10.0, 10.0)),
                                           ("Acrobot-v1", (-100.0, 0.0))])
def test_dqn_value_support_follows_the_env(env, expected):
    """C51's support is the env's (the smoke preset once kept CartPole's for every env)."""
    from searl.train import build_config, parse_args

    config = build_config(parse_args(["--config_file", str(ROOT / "searl" / "configs" / "searl_dqn.yaml"),
                                      "--smoke", "--env", env]))
    assert (config["dqn"]["v_min"], config["dqn"]["v_max"]) == expected
    config = build_config(parse_args(["--config_file", str(ROOT / "searl" / "configs" / "searl_dqn.yaml"),
                                      "--smoke", "--env", env, "--set", "dqn.v_max=50"]))
    assert config["dqn"]["v_max"] == 50   # unless the user sets it


@pytest.mark.slow
def test_resume_continues_exactly(tmp_path):
    full, cut = tmp_path / "full", tmp_path / "cut"
    common = ["--smoke", "--no-plots", "--set", "population=2"]
    assert train(*common, "--out-dir", str(full)).returncode == 0
    # stop after two generations, then continue the same run to the full budget
    assert train(*common, "--total-steps", "1600", "--out-dir", str(cut)).returncode == 0
    assert len(rows(cut / "metrics.csv")) == 2
    resumed = train("--resume", "--no-plots", "--total-steps", "3000", "--out-dir", str(cut))
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    for name in ("metrics.csv", "population.csv"):
        assert without_wall_time(rows(cut / name)) == without_wall_time(rows(full / name))


@pytest.mark.parametrize("args, message", [
    (["--env", "HalfCheeta-v5"], "did you mean HalfCheetah-v5"),
    (["--env", "ALE/Pong-v5"], "searl_td3 needs a continuous (Box) action space"),
    (["--total-steps", "-5"], "'total_steps' must be >= 1, got -5"),
    (["--set", "td3.lr_actor=-0.001"], "'td3.lr_actor' must be > 0"),
    (["--set", "td3.gamma=.nan"], "'td3.gamma' must be a finite number"),
    (["--workers", "0"], "--workers: must be at least 1"),
    (["--config_file", "nope.yaml"], "config file not found"),
    (["--set", "td3.lr_actr=0.1"], "unknown config key 'td3.lr_actr'"),
    (["--device", "cuda:7"], "--device"),
    (["--resume"], "--resume needs --out-dir"),
    (["--set", "td3.reset_each_learn=false"], "use --one-by-one"),
    (["--compile", "--one-by-one"], "compile applies to the batched SEARL-TD3 population"),
    (["--set", "compile=1"], "config key 'compile' expects bool, got 1"),
    (["--resume", "--compile", "--out-dir", "x"], "pass --compile / --one-by-one at the run's first start"),
])
def test_bad_input_is_one_line_and_exit_status_2(tmp_path, args, message):
    result = refused(*args, "--expt_dir", str(tmp_path))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and message in result.stderr, result.stderr
    assert not any(tmp_path.iterdir())  # nothing written


def test_bad_start_never_touches_an_existing_run(tmp_path):
    run = tmp_path / "run"
    assert train("--smoke", "--no-plots", "--set", "population=2", "--total-steps", "800",
                 "--out-dir", str(run)).returncode == 0
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    result = refused("--smoke", "--out-dir", str(run))
    assert result.returncode == 2 and "already holds a run" in result.stderr
    result = refused("--resume", "--env", "CartPole-v1", "--out-dir", str(run))
    assert result.returncode == 2 and "only the budget may change (got --env)" in result.stderr
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before


def test_td3_baseline_smoke(tmp_path):
    result = train("--config_file", str(ROOT / "searl" / "configs" / "td3.yaml"), "--smoke",
                   "--out-dir", str(tmp_path / "td3"))
    assert result.returncode == 0, result.stderr[-2000:]
    metrics = rows(tmp_path / "td3" / "metrics.csv")
    assert [int(r["env_steps"]) for r in metrics] == [1000, 2000]
    assert int(metrics[-1]["train_updates"]) == 2000 - 500  # one update per step after 500 random
    assert check_run_dir(tmp_path / "td3") == []


@pytest.mark.slow
def test_searl_td3_learns_pendulum(tmp_path):
    """Seeded: within 14k env steps the elite's noise-free return rises far above random
    (about -1250 on Pendulum-v1)."""
    result = train("--env", "Pendulum-v1", "--population", "4", "--total-steps", "14000",
                   "--seed", "3", "--set", "test_episodes=5", "--no-plots",
                   "--out-dir", str(tmp_path / "run"))
    assert result.returncode == 0, result.stderr[-2000:]
    elite = [float(r["elite_test_return"]) for r in rows(tmp_path / "run" / "metrics.csv")]
    assert elite[0] < -900  # the first generation acts at random
    assert sorted(elite[-3:])[1] > -600, elite  # median of the last three generations


@pytest.mark.slow
def test_searl_dqn_smoke_on_cartpole(tmp_path):
    result = train("--config_file", str(ROOT / "searl" / "configs" / "searl_dqn.yaml"), "--smoke",
                   "--out-dir", str(tmp_path / "dqn"))
    assert result.returncode == 0, result.stderr[-2000:]
    assert check_run_dir(tmp_path / "dqn") == []
    played = subprocess.run([sys.executable, str(ROOT / "searl" / "evaluate.py"), str(tmp_path / "dqn"),
                             "--episodes", "1"], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert played.returncode == 0 and "CartPole-v1: mean return" in played.stdout, played.stderr
    metrics = rows(tmp_path / "dqn" / "metrics.csv")
    assert len(metrics) >= 2 and int(metrics[1]["updates_per_individual"]) >= 100
    population = rows(tmp_path / "dqn" / "population.csv")
    assert {"hidden", "lr", "activation"} <= set(population[0])


@pytest.mark.slow
def test_searl_dqn_runs_on_atari_pong(tmp_path):
    """The real Atari pipeline (preprocessing, frame replay, CNN, mutations, training) for two
    generations of two individuals, with a tiny number of updates."""
    result = train("--config_file", str(ROOT / "searl" / "configs" / "searl_dqn.yaml"),
                   "--set", "population=2", "--set", "min_train_steps=4", "--set",
                   "max_train_steps=4", "--set", "test_episodes=1", "--set", "replay_size=5000",
                   "--set", "dqn.batch_size=8", "--total-steps", "1600", "--no-plots",
                   "--out-dir", str(tmp_path / "pong"))
    assert result.returncode == 0, result.stderr[-2000:]
    metrics = rows(tmp_path / "pong" / "metrics.csv")
    assert len(metrics) >= 2 and metrics[1]["updates_per_individual"] == "4"
    assert -21 <= float(metrics[-1]["elite_test_return"]) <= 21


@pytest.mark.slow
def test_baseline_resume_continues_exactly(tmp_path):
    config = ["--config_file", str(ROOT / "searl" / "configs" / "td3.yaml"), "--smoke", "--no-plots"]
    assert train(*config, "--out-dir", str(tmp_path / "full")).returncode == 0
    assert train(*config, "--total-steps", "1000", "--out-dir", str(tmp_path / "cut")).returncode == 0
    resumed = train("--resume", "--no-plots", "--total-steps", "2000", "--out-dir", str(tmp_path / "cut"))
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert without_wall_time(rows(tmp_path / "cut" / "metrics.csv")) == \
        without_wall_time(rows(tmp_path / "full" / "metrics.csv"))


# -- non-finite training: a diverged individual is dropped, a diverged run stops and says so -------
@pytest.mark.parametrize("config", ["searl/configs/searl_td3.yaml", "searl/configs/td3.yaml"])
def test_a_diverging_run_stops_with_one_line_and_its_summary_says_so(tmp_path, config):
    run = tmp_path / "run"
    result = train("--config_file", config, "--smoke", "--set", "td3.lr_actor=1e38",
                   "--set", "td3.lr_critic=1e38", "--out-dir", str(run), "--no-plots")
    assert result.returncode == 1, result.stderr[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("searl/train.py: error: training diverged at env step") and "Traceback" not in result.stderr
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "diverged" and summary["diverged_at_step"] > 0
    assert summary["best_return"] is None or math.isfinite(summary["best_return"])  # never NaN
    assert (run / "checkpoints" / "latest.pt").exists() or "searl_td3" not in config
    assert any("diverged" in problem for problem in check_run_dir(run))


def test_a_diverged_individual_is_not_played_and_has_the_worst_fitness():
    import numpy as np
    import torch

    from common.buffers import ReplayBuffer
    from common.envs import make_env
    from searl import algorithm
    from searl.td3 import TD3_DEFAULTS, TD3Individual

    population = [TD3Individual(i, 3, 1, dict(TD3_DEFAULTS), seed=i) for i in range(3)]
    with torch.no_grad():
        population[1].critics[0].output.weight.fill_(float("nan"))
    for policy in (None, TD3Individual.population_policy(population)):
        envs = [make_env("Pendulum-v1", 0) for _ in population]
        buffer = ReplayBuffer(5000, (3,), (1,), seed=0)
        evaluations = algorithm.evaluate_population(population, envs, buffer, np.random.default_rng(0),
                                                    random_actions=False, min_steps=250, policy=policy)
        assert evaluations[1] is algorithm.DIVERGED and evaluations[1].fitness == -np.inf
        assert [e.steps for e in evaluations] == [200 * 2, 0, 200 * 2] and len(buffer) == 800
    elite, _, _ = algorithm.tournament_selection(population, 3, np.random.default_rng(0), 3)
    assert elite is not population[1]


def test_a_start_killed_before_its_first_checkpoint_restarts_with_the_same_command(tmp_path):
    """A folder holding only the config.json and metrics rows of an earlier start of the same
    command (killed before its first checkpoint): the command starts afresh there; --resume says
    why it cannot, and another config is refused."""
    import shutil
    done, stuck = tmp_path / "done", tmp_path / "stuck"
    args = ["--smoke", "--no-plots", "--set", "population=2", "--total-steps", "800"]
    assert train(*args, "--out-dir", str(done)).returncode == 0
    (stuck / "checkpoints").mkdir(parents=True)
    for name in ("config.json", "metrics.csv"):
        shutil.copy(done / name, stuck / name)
    resumed = refused("--resume", "--out-dir", str(stuck))
    assert resumed.returncode == 2 and "the same command starts it afresh" in resumed.stderr
    other = refused(*args, "--seed", "5", "--out-dir", str(stuck))
    assert other.returncode == 2 and "already holds a run" in other.stderr
    again = train(*args, "--out-dir", str(stuck))
    assert again.returncode == 0, again.stderr[-2000:]
    assert without_wall_time(rows(stuck / "metrics.csv")) == without_wall_time(rows(done / "metrics.csv"))
