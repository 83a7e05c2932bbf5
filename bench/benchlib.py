"""What the side-by-side bench scripts share: the machine they ran on, child processes that run
one side of a comparison, the results file, tables and the check that the peers are installed.

The peers (Stable-Baselines3, AgileRL, Ray Tune) live in their own virtualenv:
    python3.11 -m venv .venv-bench && .venv-bench/bin/pip install -r requirements-bench.txt
"""
from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Sequence


from common.cli import UsageError
from common.results import markdown_table, mean_se  # noqa: F401  (the bench scripts' tables)
from common.runs import write_json_atomic

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
INSTALL_HINT = "pip install -r requirements-bench.txt (in its own virtualenv, see bench/README.md)"
# One torch / BLAS thread in every child, whichever side it runs: the collection's CPU rule.
ONE_THREAD_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


def require(*modules: str) -> None:
    """Exit 2 with one line when a peer library is missing, before any work starts."""
    missing = [name for name in modules if importlib.util.find_spec(name) is None]
    if missing:
        raise UsageError(f"{', '.join(missing)} not installed: {INSTALL_HINT}")


def machine() -> dict:
    """The hardware and software a result was measured on."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"date": dt.date.today().isoformat(), "cpu": cpu, "cores": os.cpu_count(),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "python": platform.python_version(), "torch": torch.__version__,
            "torch_threads": 1}


def package_versions(*names: str) -> dict:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in names:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    return found


def run_child(script: str | Path, args: Sequence[str], timeout: float | None = None) -> dict:
    """Run `python script args` in a fresh process with one thread; its last stdout line is a
    JSON object, which is returned. A failure raises with the child's stderr tail."""
    env = {**os.environ, **ONE_THREAD_ENV, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run([sys.executable, str(script), *map(str, args)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{Path(script).name} {' '.join(map(str, args))} failed "
                           f"(exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"{Path(script).name} printed no JSON result:\n{proc.stdout[-2000:]}")
    return json.loads(lines[-1])


def emit(result: dict) -> None:
    """A child's answer to `run_child`: one JSON line on stdout."""
    print(json.dumps(result), flush=True)


def add_output_args(parser) -> None:
    """The flags every bench script has."""
    parser.add_argument("--quick", action="store_true",
                        help="a few minutes on 2 cores: checks the comparison runs end to end")
    parser.add_argument("--results-dir", default=str(RESULTS_DIR), type=_results_dir,
                        help="where <name>.json goes (default: bench/results)")


def _results_dir(value: str) -> str:
    """Refuse a path that cannot become the results folder now, not after an hour of runs."""
    path = Path(value)
    blocked = next((p for p in (path, *path.parents) if p.exists() and not p.is_dir()), None)
    if blocked is not None:
        raise argparse.ArgumentTypeError(f"{blocked} exists and is not a folder")
    return value


def write_result(name: str, payload: dict, results_dir: str | Path = RESULTS_DIR,
                 command: Sequence[str] | None = None) -> Path:
    """<results_dir>/<name>.json, written atomically, with the machine and the command."""
    path = Path(results_dir) / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    argv = list(command if command is not None else sys.argv)
    record = {"name": name, "command": " ".join(["python", *argv]), "machine": machine(), **payload}
    write_json_atomic(path, record)
    return path
