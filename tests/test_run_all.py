"""run_all.sh and the common kit end to end, with a tiny fixture train.py (tests/fixtures)."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from helpers import run_script_in_process

ROOT = Path(__file__).resolve().parents[1]
TINY = Path(__file__).with_name("fixtures") / "tiny_train.py"


def run_tiny(*args):
    return subprocess.run([sys.executable, str(TINY), *args], capture_output=True, text=True,
                          timeout=120)


def test_run_all_runs_built_papers_reports_failures_and_exits_nonzero(tmp_path):
    shutil.copy(ROOT / "run_all.sh", tmp_path)
    for paper, extra in (("searl", ""), ("steve", "import sys; sys.exit(3)\n")):
        (tmp_path / paper).mkdir()
        (tmp_path / paper / "train.py").write_text(extra + TINY.read_text())
    result = subprocess.run(["bash", "run_all.sh"], cwd=tmp_path, capture_output=True,
                            text=True, timeout=300, env={**os.environ, "PYTHON": sys.executable})
    assert result.returncode == 1, result.stdout + result.stderr
    rows = {line.split()[0]: line for line in result.stdout.splitlines() if line.strip()}
    assert rows["searl"].split()[1] == "CartPole-v1" and int(rows["searl"].split()[2]) > 0
    assert rows["searl"].endswith("ok")
    assert "FAILED (exit 3" in rows["steve-pendulum"]
    assert rows["optim4rl-catch"].endswith("not built yet")
    assert "2 smoke runs of 6 ran, 1 failed" in result.stdout
    assert rows["pb2_procgen-toy"].endswith("not built yet")
    smoke_runs = list((tmp_path / "runs" / "smoke").iterdir())
    assert (smoke_runs[0] / "searl" / "returns.png").exists()


def test_resume_after_a_crash_gives_the_uninterrupted_run(tmp_path):
    assert run_tiny("--out-dir", str(tmp_path / "full")).returncode == 0
    crashed = run_tiny("--out-dir", str(tmp_path / "cut"), "--set", "crash_at=2")
    assert crashed.returncode != 0 and "crash requested" in crashed.stderr
    resumed = run_tiny("--out-dir", str(tmp_path / "cut"), "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert (tmp_path / "cut" / "metrics.csv").read_text() == (tmp_path / "full" / "metrics.csv").read_text()
    cut, full = (json.loads((tmp_path / run / "summary.json").read_text()) for run in ("cut", "full"))
    assert cut.pop("run_id") != full.pop("run_id")   # two runs, each with its own id
    assert cut == full


def test_failed_starts_exit_2_with_one_line_and_keep_earlier_files(tmp_path):
    out = tmp_path / "run"
    assert run_tiny("--out-dir", str(out)).returncode == 0
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    for args in (["--env", "HalfCheeta-v5"], ["--episodes", "-1"], ["--set", "lrr=1"],
                 ["--config", str(tmp_path / "missing.yaml")], []):
        result = run_script_in_process(TINY, "--out-dir", str(out), *args)   # refused: no run, in this process
        assert result.returncode == 2 and result.stderr.count("\n") == 1, (args, result.stderr)
    assert "did you mean HalfCheetah-v5" not in result.stderr  # the last one: folder in use
    assert "already holds a run" in result.stderr
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    fresh = run_script_in_process(TINY, "--out-dir", str(tmp_path / "new"), "--resume")
    assert fresh.returncode == 2 and "no checkpoint" in fresh.stderr
