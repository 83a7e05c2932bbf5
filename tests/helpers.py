"""What the end-to-end tests of every paper's train.py share."""
import csv
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_train(paper: str, *args, timeout=600, env=None) -> subprocess.CompletedProcess:
    """`python <paper>/train.py ARGS` in a subprocess, from the repository root (`env`: its
    environment variables, default this process's)."""
    return subprocess.run([sys.executable, str(ROOT / paper / "train.py"), *args],
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=env)


def rows(path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def without_wall_time(table: list[dict]) -> list[dict]:
    """Rows to compare across runs: everything but the wall clock."""
    return [{k: v for k, v in row.items() if k != "wall_seconds"} for row in table]
