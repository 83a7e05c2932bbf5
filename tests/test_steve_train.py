"""steve/train.py end to end on Pendulum-v1: the seed's outputs, refusing to overwrite, resuming
with the counters intact, and one-line errors."""
import csv
import json
import subprocess
import sys

import pytest
from helpers import ROOT, run_in_process

PENDULUM = "experiments/goodruns/pendulum/{}0.json"


def train(*args, timeout=600):
    return subprocess.run([sys.executable, str(ROOT / "steve" / "train.py"), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def refused(*args):
    """steve/train.py ARGS for an input it refuses before any work (in this process)."""
    return run_in_process("steve.train", *args)


def greedy_rows(run_dir, name):
    with open(run_dir / "log" / f"{name}.greedy.csv", newline="") as f:
        return list(csv.reader(f))


def test_steve_smoke_writes_the_seed_outputs_and_the_collection_outputs(tmp_path):
    out = tmp_path / "steve"
    # the smoke preset (500 random frames, then learning) cut to 1000 frames: 500 updates
    result = train(PENDULUM.format("steve"), "--smoke", "--frames", "1000", "--out-dir", str(out))
    assert result.returncode == 0, result.stderr[-2000:]
    hps = json.loads((out / "log" / "hps.json").read_text())
    assert hps["policy_config"]["algo"] == "steve" and hps["env"]["name"] == "Pendulum-v1"
    rows = greedy_rows(out, "steve0")
    assert rows[0] == ["hours", "epochs", "frames", "score"]
    assert [int(r[2]) for r in rows[1:]] == [500, 1000]
    for name in ("valuerl.pt", "worldmodel.pt", "backup.pt"):
        assert (out / "checkpoints" / name).is_file()
    assert (out / "log" / "valuerl.log").read_text() and (out / "log" / "worldmodel.log").read_text()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["env_steps"] == 1000 and summary["updates"] == 500 and 0 <= summary["model_use"] <= 1
    with open(out / "metrics.csv", newline="") as f:   # the world model's calibration at every evaluation
        metrics = list(csv.DictReader(f))
    assert all(float(r[key]) > 0 for r in metrics for key in ("calib_state_1", "calib_state_H", "calib_reward_1"))
    config_run = json.loads((out / "config.json").read_text())["_run"]   # versions, command and id, as every paper's
    assert summary["status"] == "finished" and summary["run_id"] == config_run["id"]
    assert config_run["versions"]["torch"] and "steve" in config_run["command"]
    check = subprocess.run([sys.executable, "-m", "common.runs", "check", str(out)], cwd=ROOT,
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    shown = subprocess.run([sys.executable, str(ROOT / "steve" / "visualizer.py"), PENDULUM.format("steve"),
                            str(out / "checkpoints" / "valuerl.pt"), "--episodes", "2"], cwd=ROOT,
                           capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr
    returns = [float(line.split()[-1]) for line in shown.stdout.splitlines() if line.startswith("episode")]
    assert len(returns) == 2 and all(-2000 < r <= 0 for r in returns)  # Pendulum's return range


@pytest.mark.slow
def test_refuses_an_existing_experiment_and_resume_continues_the_frames(tmp_path):
    out = tmp_path / "ddpg"
    first = train(PENDULUM.format("ddpg"), "--smoke", "--frames", "1000", "--no-plots", "--out-dir", str(out))
    assert first.returncode == 0, first.stderr[-2000:]
    before = {p.name: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    again = refused(PENDULUM.format("ddpg"), "--smoke", "--no-plots", "--out-dir", str(out))
    assert again.returncode == 2 and again.stderr.count("\n") == 1 and "--resume" in again.stderr
    assert {p.name: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    resumed = train(PENDULUM.format("ddpg"), "--smoke", "--frames", "2000", "--resume", "--no-plots",
                    "--out-dir", str(out))
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    frames = [int(r[2]) for r in greedy_rows(out, "ddpg0")[1:]]
    assert frames == [500, 1000, 1500, 2000]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["env_steps"] == 2000 and summary["updates"] == 1500  # counters kept across the resume
    with open(out / "metrics.csv", newline="") as f:   # DDPG has no model: calibration columns empty
        assert all(r["calib_state_1"] == "" for r in csv.DictReader(f))


def test_bad_input_is_one_line_with_exit_2(tmp_path):
    cycle_a, cycle_b = tmp_path / "a.json", tmp_path / "b.json"
    cycle_a.write_text(json.dumps({"inherits": [str(cycle_b)]}))
    cycle_b.write_text(json.dumps({"inherits": [str(cycle_a)]}))
    bad_algo = tmp_path / "bad.json"
    bad_algo.write_text(json.dumps({"inherits": ["algos/ddpg.json", "envs/pendulum.json"],
                                    "updates": {"policy_config": {"algo": "stevee"}}}))
    for args, words in (([str(tmp_path / "missing.json")], "not found"), ([str(cycle_a)], "cycle"),
                        ([str(bad_algo)], "algorithm"),
                        ([PENDULUM.format("ddpg"), "--resume", "--out-dir", str(tmp_path / "none")], "no backup")):
        result = refused(*args)
        assert result.returncode == 2 and result.stderr.count("\n") == 1, (args, result.stderr)
        assert words in result.stderr, (args, result.stderr)


@pytest.mark.slow
def test_speedrun_trains_both_learners_freely_in_their_own_processes(tmp_path):
    out = tmp_path / "speedy"
    # Log every 5 updates: on a loaded CI machine a free-running learner may not reach the config's 200
    often = ("--set", "policy_config.log_every_n=5", "--set", "model_config.log_every_n=5")
    result = train(PENDULUM.format("steve"), "--smoke", "--speedrun", "--frames", "8000", "--eval-every", "4000",
                   "--no-plots", "--out-dir", str(out), *often)
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["layout"] == "speedrun" and summary["env_steps"] == 8000
    assert summary["updates"] > 0 and summary["world_model_updates"] > 0   # no data ratio holds them
    assert summary["world_model_loads"] >= 1  # weights trained in one process reached the other
    assert summary["learners_ready_s"] > 0 and summary["first_world_weights_s"] is not None
    for name in ("worldmodel.log", "valuerl.log"):   # each written by its learner's process
        logged = [json.loads(line) for line in (out / "log" / name).read_text().splitlines()]
        assert logged and all(entry.get("updates", 1) > 0 for entry in logged)
    resumed = train(PENDULUM.format("steve"), "--smoke", "--speedrun", "--frames", "8300", "--eval-every", "4000",
                    "--no-plots", "--out-dir", str(out), "--resume", *often)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    again = json.loads((out / "summary.json").read_text())
    assert again["env_steps"] == 8300 and again["updates"] >= summary["updates"]  # from the saved learners


def test_a_diverging_run_stops_with_one_line_and_its_summary_says_so(tmp_path):
    config = tmp_path / "blowup.json"
    config.write_text(json.dumps({"inherits": ["algos/steve.json", "envs/pendulum.json",
                                               "experimental_setups/laptop.json"],
                                  "updates": {"policy_config": {"learning_rate": 1e30}}}))
    out = tmp_path / "run"
    result = train(str(config), "--smoke", "--no-plots", "--out-dir", str(out))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith(
        "steve/train.py: error: training diverged at env step 501: the value learner's loss is not finite")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "diverged" and summary["diverged_at_step"] == 501


def test_a_budget_below_one_test_interval_still_ends_with_a_score(tmp_path):
    out = tmp_path / "ddpg"
    result = train(PENDULUM.format("ddpg"), "--smoke", "--frames", "400", "--no-plots", "--out-dir", str(out))
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["env_steps"] == 400 and summary["final_return"] is not None


def test_a_damaged_backup_and_an_unwritable_place_are_one_line(tmp_path):
    out = tmp_path / "ddpg"
    assert train(PENDULUM.format("ddpg"), "--smoke", "--frames", "500", "--no-plots",
                 "--out-dir", str(out)).returncode == 0
    backup = out / "checkpoints" / "backup.pt"
    backup.write_bytes(backup.read_bytes()[:1000])
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    for args, words in (([PENDULUM.format("ddpg"), "--resume", "--out-dir", str(out)],
                         f"cannot read checkpoint {backup}"),
                        ([PENDULUM.format("ddpg"), "--out-dir", "/proc/x"], "/proc is not a writable folder")):
        result = refused(*args)
        assert result.returncode == 2 and result.stderr.count("\n") == 1, (args, result.stderr)
        assert words in result.stderr, (args, result.stderr)
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_the_gpu_id_is_read_after_flags_too():
    from steve.train import parse_args
    for argv in (["cfg.json", "1", "--no-plots"], ["cfg.json", "--no-plots", "1"], ["--no-plots", "cfg.json", "1"]):
        args = parse_args(argv)
        assert (args.config_file, args.gpu_id, args.no_plots) == ("cfg.json", "1", True), argv
