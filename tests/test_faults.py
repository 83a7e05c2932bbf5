"""A full disk under a run (issue 34, item 6): each paper's smoke run into a tiny tmpfs ends with
one line naming the file and exit status 1, no traceback, no temporary file left behind, no
"finished" summary, and a checkpoint that loads if one was written. A read-only --out-dir (an
existing, empty folder on a read-only mount, which root cannot write either) is refused before
anything is written: one line, exit 2. Mounting a tmpfs needs root (or CAP_SYS_ADMIN): skipped
where that is not allowed."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from common.runs import load_checkpoint

ROOT = Path(__file__).resolve().parents[1]

# (script and arguments, tmpfs size): each size fills up during the run
CASES = {
    "pb2_procgen": (["pb2_procgen/train.py", "--smoke", "--env", "toy"], "24k"),
    "searl": (["searl/train.py", "--smoke"], "300k"),
    "synthetic_envs": (["synthetic_envs/train.py", "--smoke", "--kind", "rn", "--env", "cliff", "--mode", "2",
                        "--iterations", "1"], "24k"),
    "steve": (["steve/train.py", "experiments/goodruns/pendulum/steve0.json", "--smoke", "--no-plots"], "300k"),
    "optim4rl": (["optim4rl/train.py", "--smoke", "--config_file", "catch_meta", "--config_idx", "1"], "300k"),
}


def mounted_tmpfs(mount_point: Path, options: str):
    """Mount a tmpfs at `mount_point` (skip the test where that is not allowed); unmount after."""
    mount_point.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mount_point)],
                             capture_output=True, text=True) if os.geteuid() == 0 else None
    if mounted is None or mounted.returncode != 0:
        pytest.skip("mounting a tmpfs is not allowed here")
    yield mount_point
    subprocess.run(["umount", str(mount_point)], check=False)


@pytest.fixture
def tiny_disk(tmp_path, request):
    yield from mounted_tmpfs(tmp_path / "disk", f"size={request.param}")


@pytest.fixture
def read_only_folder(tmp_path):
    yield from mounted_tmpfs(tmp_path / "read-only", "ro,size=64k")


@pytest.mark.parametrize("paper,command,tiny_disk",
                         [pytest.param(paper, command, size, id=paper,
                                       marks=[] if paper == "pb2_procgen" else [pytest.mark.slow])
                          for paper, (command, size) in CASES.items()], indirect=["tiny_disk"])
def test_a_full_disk_ends_the_run_in_one_line_with_exit_1(paper, command, tiny_disk):
    out = tiny_disk / "run"
    result = subprocess.run([sys.executable, *command, "--out-dir", str(out)], cwd=ROOT, capture_output=True,
                            text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 1, result.stderr[-2000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    last = result.stderr.replace("\r", "\n").strip().splitlines()[-1]
    assert last.startswith(f"{command[0]}: error: ") and "no space left on device" in last, last
    assert f"--out-dir {out}" in last or "start again" in last, last
    assert not [p.name for p in out.rglob(".*tmp*")], "a temporary file was left behind"
    summary = out / "summary.json"
    if summary.is_file():
        assert json.loads(summary.read_text()).get("status") != "finished"
    for checkpoint in out.rglob("*.pt"):
        load_checkpoint(checkpoint)   # whole: an atomic write never leaves half a file


@pytest.mark.parametrize("paper", list(CASES))
def test_an_empty_read_only_out_dir_is_refused_before_anything_is_written(paper, read_only_folder):
    """optim4rl and steve used to start and fail on their first write (exit 1, "make room")."""
    command, _ = CASES[paper]
    result = subprocess.run([sys.executable, *command, "--out-dir", str(read_only_folder)], cwd=ROOT,
                            capture_output=True, text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    lines = [line for line in result.stderr.splitlines() if line.strip() and "Powered by Stella" not in line]
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith(f"{command[0]}: error: cannot create run folder "), lines
