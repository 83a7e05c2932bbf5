"""steve/train.py: kill -9 then --resume continues exactly; the resume refuses another seed or
config; every accepted config key acts (the world model's own batch, rate, warm-up and replay,
the agents' and evaluators' counts, the interactors' reload interval, the ensembles' sample
counts); --config / --env / --set; and a few hundred frames on CUDA where torch sees one."""
import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from helpers import ROOT, run_in_process
from common.cli import UsageError
from common.runs import CONFIG_HASH_KEY, unlock_run_dir
from steve.config import load_config
from steve.train import Run, allowed, choose_actions, main, value_config, world_batch

PENDULUM = "experiments/goodruns/pendulum/{}0.json"
SCRIPT = str(ROOT / "steve" / "train.py")


def train(*args, timeout=600):
    return subprocess.run([sys.executable, SCRIPT, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def rows(path, drop=("hours", "wall_seconds")):
    with open(path, newline="") as f:
        table = list(csv.reader(f))
    keep = [i for i, name in enumerate(table[0]) if name not in drop]
    return [[row[i] for i in keep] for row in table]


def files(folder):
    return {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.mark.slow
def test_kill_9_then_resume_gives_the_uninterrupted_rows(tmp_path):
    args = [PENDULUM.format("steve"), "--smoke", "--frames", "900", "--eval-every", "300", "--backup-every", "100",
            "--no-plots", "--seed", "3"]
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    assert train(*args, "--out-dir", str(whole)).returncode == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, SCRIPT, *args, "--out-dir", str(cut)], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    metrics = cut / "metrics.csv"
    deadline = time.time() + 300
    while time.time() < deadline and not (metrics.exists() and len(metrics.read_text().splitlines()) >= 3):
        time.sleep(0.05)   # the second evaluation (frame 600): learning began at frame 501
    time.sleep(0.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (cut / "summary.json").exists(), "the run ended before the kill: nothing was tested"
    resumed = train(*args, "--resume", "--out-dir", str(cut))
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert rows(cut / "metrics.csv") == rows(whole / "metrics.csv")
    assert rows(cut / "log" / "steve0.greedy.csv", drop=("hours",)) == rows(whole / "log" / "steve0.greedy.csv",
                                                                             drop=("hours",))
    for log in ("valuerl.log", "worldmodel.log"):
        assert (cut / "log" / log).read_text() == (whole / "log" / log).read_text()
    a, b = (json.loads((d / "summary.json").read_text()) for d in (whole, cut))
    assert a["env_steps"] == b["env_steps"] == 900 and a["updates"] == b["updates"] == 400
    assert a["final_return"] == b["final_return"] and a["model_use"] == b["model_use"]


def test_resume_refuses_another_seed_config_or_setting(tmp_path):
    out = tmp_path / "run"
    assert train(PENDULUM.format("ddpg"), "--smoke", "--frames", "300", "--no-plots", "--seed", "6",
                 "--out-dir", str(out)).returncode == 0
    before = files(out)
    base = [PENDULUM.format("ddpg"), "--smoke", "--resume", "--out-dir", str(out)]
    for extra, words in ((["--seed", "99"], "--seed 99"),
                         (["--set", "policy_config.batch_size=64"], "policy_config.batch_size"),
                         (["--eval-every", "100"], "--eval-every"),
                         (["--corrupt-model", "1.0"], "--corrupt-model"),
                         (["--compile"], "--compile was not used"),
                         (["--backup-every", "7"], "--backup-every")):
        with pytest.raises(UsageError, match=words):
            main([*base, *extra])
    with pytest.raises(UsageError, match="differs"):   # another experiment's config
        main([PENDULUM.format("steve"), "--smoke", "--resume", "--out-dir", str(out)])
    one_line = run_in_process("steve.train", *base, "--seed", "99")   # and through run_main: one line, exit 2
    assert one_line.returncode == 2 and one_line.stderr.count("\n") == 1, one_line.stderr
    assert files(out) == before
    old = tmp_path / "old"   # a backup from before the env and log positions (and the config seal) were saved
    shutil.copytree(out, old)
    state = torch.load(old / "checkpoints" / "backup.pt", weights_only=False)
    torch.save({k: v for k, v in state.items() if k not in ("envs", "logs", "actor", CONFIG_HASH_KEY)},
               old / "checkpoints" / "backup.pt")
    kept = files(old)
    with pytest.raises(UsageError, match="written before checkpoints recorded it"):
        main([PENDULUM.format("ddpg"), "--smoke", "--resume", "--out-dir", str(old)])
    assert files(old) == kept
    unlock_run_dir(out)   # main() above took the folder's lock, as a process holds it for its life
    longer = train(*base, "--frames", "600", "--no-plots")   # the budget may grow
    assert longer.returncode == 0, longer.stderr[-2000:]
    assert json.loads((out / "summary.json").read_text())["seed"] == 6


# -- every accepted key acts ------------------------------------------------------------------------
def laptop_steve(**sections):
    cfg = load_config(PENDULUM.format("steve"))
    for section, values in sections.items():
        cfg[section].update(values)
    return cfg


def filled(run, frames=300):
    rng = np.random.default_rng(0)
    for _ in range(frames):
        transition = (rng.normal(size=3), rng.uniform(-1, 1, 1), rng.normal(), rng.normal(size=3), False, False)
        run.replay.add(*transition)
        if run.model_replay is not run.replay:
            run.model_replay.add(*transition)
    return run


def test_the_world_model_samples_its_own_batch_and_replay():
    run = filled(Run(laptop_steve(model_config={"batch_size": 32, "replay_size": 100}), seed=0))
    assert world_batch(run)[0].shape[0] == 32
    assert run.model_replay is not run.replay and run.model_replay.capacity == 100
    assert len(run.model_replay) == 100 and len(run.replay) == 300
    shared = Run(laptop_steve(), seed=0)
    assert shared.model_replay is shared.replay   # equal sizes: one buffer serves both learners


def test_each_learner_keeps_its_own_data_ratio_and_warm_up():
    fast = {"frames_before_learning": 100, "frames_per_update": 0.5}
    assert [allowed(f, fast, u) for f, u in ((100, 0), (101, 0), (101, 1), (101, 2), (102, 3))] == \
        [False, True, True, False, True]
    slow = {"frames_before_learning": 0, "frames_per_update": 4}
    assert [allowed(f, slow, u) for f, u in ((1, 0), (4, 1), (5, 1), (8, 2), (9, 2))] == \
        [True, False, True, False, True]


@pytest.mark.slow
def test_world_model_rate_and_warm_up_reach_the_run(tmp_path):
    out = tmp_path / "run"
    result = train(PENDULUM.format("steve"), "--smoke", "--frames", "900", "--no-plots", "--out-dir", str(out),
                   "--set", "model_config.frames_per_update=0.5", "--set", "model_config.frames_before_learning=700",
                   "--set", "model_config.pretrain_n=20")
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["updates"] == 400                 # value: frames 501..900, one per frame
    assert summary["world_model_updates"] == 400     # world: frames 701..900, two per frame (pretraining not counted)
    pretrain = json.loads((out / "log" / "worldmodel.log").read_text().splitlines()[0])
    assert pretrain["pretrain_updates"] == 20


def test_agents_and_evaluators_counts_set_the_envs(tmp_path):
    out = tmp_path / "run"
    result = train(PENDULUM.format("ddpg"), "--smoke", "--frames", "600", "--eval-every", "300", "--no-plots",
                   "--out-dir", str(out), "--set", "agent_config.count=2", "--set", "agent_config.batch_size=3",
                   "--set", "evaluator_config.count=2")
    assert result.returncode == 0, result.stderr[-2000:]
    greedy = rows(out / "log" / "ddpg0.greedy.csv", drop=("hours",))
    assert [int(r[1]) for r in greedy[1:]] == [300, 300, 600, 600]   # two evaluator episodes each time
    metrics = rows(out / "metrics.csv")
    assert int(metrics[1][1]) == 2 * 200   # test_steps: two 200-step Pendulum episodes
    backup = torch.load(out / "checkpoints" / "backup.pt", weights_only=False)
    assert len(backup["envs"]) == 6 and len(backup["eval_envs"]) == 2 and backup["frames"] == 600


def test_the_interactors_reload_the_policy_every_reload_every_n_frames():
    cfg = laptop_steve(agent_config={"reload_every_n": 100, "full_random_n": 0},
                       policy_config={"frames_before_learning": 0})
    run = filled(Run(cfg, seed=0))
    budget = {"random_frames": 0}
    obs = np.zeros((1, 3), dtype=np.float32)
    choose_actions(run, obs, budget)                  # frame 0: loads the learner's weights
    for _ in range(3):
        run.value.update(tuple(run.replay.sample(16)[:5]))
    run.frames = 99
    choose_actions(run, obs, budget)
    stale = [torch.equal(a, b) for a, b in zip(run.actor.parameters(), run.value.policy.parameters())]
    assert not all(stale)                             # 99 frames on: still the frame-0 copy
    run.frames = 100
    choose_actions(run, obs, budget)
    assert all(torch.equal(a, b) for a, b in zip(run.actor.parameters(), run.value.policy.parameters()))


def test_the_ensembles_sample_counts_reach_the_learners():
    bayes = {"ensemble_size": 4, "train_sample_count": 2, "eval_sample_count": 3}
    cfg = laptop_steve(policy_config={"bayesian": bayes})
    cfg["model_config"]["bayesian"] = {"transition": dict(bayes, train_sample_count=1),
                                       "reward": dict(bayes, eval_sample_count=2)}
    config = value_config(cfg)
    assert (config.q_train_samples, config.q_eval_samples) == (2, 3)
    model = Run(cfg, seed=0).world.model
    assert (model.transition_samples, model.reward_samples) == ((1, 3), (2, 2))


# -- the common flags -----------------------------------------------------------------------------
def test_config_env_and_set_flags(tmp_path):
    out = tmp_path / "run"
    result = train("--config", PENDULUM.format("ddpg"), "--env", "InvertedPendulum-v5", "--smoke",
                   "--frames", "300", "--no-plots", "--out-dir", str(out),
                   "--set", "policy_config.replay_size=1e5", "--set", "policy_config.learning_rate=1e-3")
    assert result.returncode == 0, result.stderr[-2000:]
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["env"]["name"] == "InvertedPendulum-v5" and cfg["env"]["obs_dims"] == [4]
    assert cfg["env"]["action_dim"] == 1 and cfg["env"]["max_frames"] == 1000
    assert cfg["policy_config"]["replay_size"] == 100000 and cfg["policy_config"]["learning_rate"] == 1e-3
    for extra, words in ((["--set", "policy_config.learning_rate=-1"], "learning_rate"),
                         (["--set", "env.max_frames=1.5"], "whole number")):
        with pytest.raises(UsageError, match=words):   # the other bad --set / --env: test_bad_inputs.py
            main([PENDULUM.format("ddpg"), "--out-dir", str(tmp_path / "new"), *extra])
    assert not (tmp_path / "new").exists()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_few_hundred_frames_on_cuda(tmp_path):
    out = tmp_path / "cuda"
    result = train(PENDULUM.format("steve"), "--smoke", "--frames", "700", "--device", "cuda", "--no-plots",
                   "--out-dir", str(out))
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["device"].startswith("cuda") and summary["env_steps"] == 700 and summary["updates"] == 200
    gpu = train(PENDULUM.format("steve"), "0", "--smoke", "--frames", "600", "--no-plots",
                "--out-dir", str(tmp_path / "gpu_id"))
    assert gpu.returncode == 0 and json.loads((tmp_path / "gpu_id" / "summary.json").read_text())["device"] == "cuda:0"


def test_a_start_killed_before_its_first_backup_is_started_afresh_by_the_same_command(tmp_path):
    """Issue 34 item 2: config.json, logs, metrics rows and policy checkpoints but no backup.pt
    (a kill before the first backup) -> the same command starts afresh; another seed or config,
    or any other file there, is still refused with the folder untouched."""
    common = [PENDULUM.format("ddpg"), "--smoke", "--frames", "300", "--eval-every", "100", "--no-plots"]
    base = [*common, "--seed", "4"]
    whole, stuck = tmp_path / "whole", tmp_path / "stuck"
    main([*base, "--out-dir", str(whole)])
    shutil.copytree(whole, stuck)
    (stuck / "checkpoints" / "backup.pt").unlink()   # as if killed before its first backup
    (stuck / "summary.json").unlink()
    (stuck / "checkpoints" / ".backup.pt.tmp-123").write_bytes(b"half")
    kept = files(stuck)
    for other in ([*common, "--seed", "5"], [*base, "--set", "policy_config.batch_size=64"]):
        with pytest.raises(UsageError, match="already exists"):
            main([*other, "--out-dir", str(stuck)])
    (stuck / "notes.txt").write_text("mine")
    with pytest.raises(UsageError, match="already exists"):
        main([*base, "--out-dir", str(stuck)])
    (stuck / "notes.txt").unlink()
    assert files(stuck) == kept
    unlock_run_dir(whole)
    main([*base, "--out-dir", str(stuck)])   # the same command: a fresh start, the same run
    assert rows(stuck / "metrics.csv") == rows(whole / "metrics.csv")
    assert not (stuck / "checkpoints" / ".backup.pt.tmp-123").exists()
    assert json.loads((stuck / "summary.json").read_text())["status"] == "finished"


@pytest.mark.parametrize("damage", ["deleted", "emptied", "cut"])
def test_resume_refuses_a_metrics_file_or_log_shorter_than_the_backup_expects(tmp_path, damage):
    """Issue 34 item 4: a deleted, emptied or cut metrics.csv (or log) was padded with NUL bytes
    and the run went on; now one line, exit 2, nothing written."""
    out = tmp_path / "run"
    base = [PENDULUM.format("ddpg"), "--smoke", "--frames", "300", "--eval-every", "100", "--no-plots"]
    main([*base, "--out-dir", str(out)])
    unlock_run_dir(out)
    metrics = out / "metrics.csv"
    if damage == "deleted":
        metrics.unlink()
    else:
        metrics.write_bytes(b"" if damage == "emptied" else metrics.read_bytes()[:40])
    kept = files(out)
    result = run_in_process("steve.train", *base, "--frames", "600", "--resume", "--out-dir", str(out))
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert "metrics.csv" in result.stderr and "the backup expects" in result.stderr
    assert files(out) == kept
