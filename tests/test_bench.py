"""The side-by-side bench scripts. Their `--quick` runs need the peers of requirements-bench.txt
(Stable-Baselines3, AgileRL, Ray Tune), which CI does not install: those tests run only where the
peers are installed (`pytest -m "" tests/test_bench.py` in the bench virtualenv, ~8 min on 2 cores)
and are skipped otherwise. Without the peers, each script must say so in one line (exit 2)."""
import importlib.util
import json
import subprocess
import sys

import pytest
from helpers import ROOT, run_script_in_process

# script -> (the peers it imports, what its JSON must hold)
SCRIPTS = {
    "td3_throughput": (("stable_baselines3",), ("ratio", "ratio_cpu", "target_met", "results")),
    "searl_vs_agilerl": (("agilerl", "peft", "transformers"), ("target_met",)),
    "pb2_vs_ray": (("ray", "sklearn", "pandas"), ("target_met",)),
    "steve_vs_sb3": (("stable_baselines3",), ("target_met",)),
}


def installed(modules) -> bool:
    return all(importlib.util.find_spec(name) is not None for name in modules)


def run_script(name, *args, timeout=900):
    return subprocess.run([sys.executable, str(ROOT / "bench" / f"{name}.py"), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def run_in_process(name, *args):
    """`python bench/<name>.py ARGS` in this process, for --help and inputs refused before any
    work; the missing-peer test runs the real scripts."""
    return run_script_in_process(ROOT / "bench" / f"{name}.py", *args)


@pytest.mark.parametrize("name", SCRIPTS)
def test_missing_peer_is_one_line_and_exit_2(name):
    peers, _ = SCRIPTS[name]
    if installed(peers):
        pytest.skip("the peers are installed here")
    proc = run_script(name, "--quick", timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "requirements-bench.txt" in lines[0], proc.stderr


@pytest.mark.parametrize("name, bad", [("td3_throughput", "--pairs=0"),
                                       ("searl_vs_agilerl", "--seeds=0"),
                                       ("pb2_vs_ray", "--seeds=0"), ("steve_vs_sb3", "--seeds=0")])
def test_bad_input_is_one_line_and_exit_2_before_any_run(name, bad):
    """With the peers installed this is the script's own check; without, the missing peer."""
    proc = run_in_process(name, "--quick", bad)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


@pytest.mark.parametrize("name", SCRIPTS)
def test_a_results_dir_that_cannot_be_made_is_refused_before_any_run(name, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    proc = run_in_process(name, "--quick", "--results-dir", str(blocker / "results"))
    assert proc.returncode == 2 and "is not a folder" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


@pytest.mark.parametrize("name", SCRIPTS)
def test_help_describes_the_comparison(name):
    proc = run_in_process(name, "--help")
    assert proc.returncode == 0 and "--quick" in proc.stdout


@pytest.mark.slow
@pytest.mark.parametrize("name", SCRIPTS)
def test_quick_comparison_runs_and_writes_its_results(name, tmp_path):
    peers, keys = SCRIPTS[name]
    if not installed(peers):
        pytest.skip(f"{', '.join(peers)} not installed (pip install -r requirements-bench.txt)")
    proc = run_script(name, "--quick", "--results-dir", str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / f"{name}.json").read_text())
    assert result["name"] == name and result["machine"]["cores"] >= 1
    for key in keys:
        assert key in result, f"{name}.json lacks {key!r}"
    assert "|---|" in proc.stdout  # the printed table


@pytest.mark.slow
def test_searl_population_speed_runs_both_sides_and_writes_its_results(tmp_path):
    """Needs no peer: SEARL's batched vs one-by-one population training, tiny budget."""
    proc = run_script("searl_population_speed", "--quick", "--pairs", "1", "--updates", "20",
                      "--results-dir", str(tmp_path), timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / "searl_population_speed.json").read_text())
    for key in ("batched_updates_per_s", "serial_updates_per_s", "speedup",
                "serial_peak_rss_mb", "batched_peak_rss_mb"):
        assert result[key] > 0
    assert result["speedup"] == result["batched_updates_per_s"] / result["serial_updates_per_s"]
    fit = result["scaling"]
    assert fit["sizes"] == [2, 5, 10] and len(fit["cpu_ms_per_group_step"]) == 3
    assert fit["speedup_limit"] == fit["serial_cpu_ms_per_update"] / fit["per_individual_ms"]
    assert "|---|" in proc.stdout and "no group size can be more than" in proc.stdout


@pytest.mark.slow
def test_searl_generation_timing_and_profile_children(tmp_path):
    """One generation child (the README's 2-worker path) and the grown-population profile, tiny budgets."""
    proc = run_script("searl_generation_speed", "--child", "generation", "--path", "default",
                      "--gen-updates", "60", timeout=600)   # enough updates to stand above timing noise
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["workers"] == 2 and result["eval_frames"] >= 10 * 1000   # whole 1000-step episodes
    assert result["generation_s"] == result["train_s"] + result["eval_s"] + result["test_s"]
    assert result["train_s"] > result["long_call_s"] > 0
    proc = run_script("searl_generation_speed", "--child", "profile", "--profile-updates", "2", timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    profile = json.loads(proc.stdout.strip().splitlines()[-1])
    assert sum(profile["groups"]) == 10 and all(2 <= len(h) <= 3 for h in profile["hidden"])
    assert all(256 <= w <= 400 for h in profile["hidden"] for w in h)
    assert 0.5 < sum(op["share"] for op in profile["top_ops"]) <= 1.0 + 1e-9


def test_searl_generation_speed_refuses_bad_input_in_one_line():
    proc = run_in_process("searl_generation_speed", "--gen-updates", "0")
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_searl_population_speed_refuses_bad_input_in_one_line():
    proc = run_in_process("searl_population_speed", "--pairs", "0")
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_gpu_check_without_cuda_is_one_line_exit_2_and_writes_nothing(tmp_path):
    """`bash bench/gpu_check.sh` on a machine without CUDA: one line on stderr naming CUDA, exit
    2, nothing on stdout, and nothing written (no temp folder, no new file in the repo). Where
    torch sees a GPU the script would run the whole check (minutes), so the test is skipped."""
    import os

    import torch

    if torch.cuda.is_available():
        pytest.skip("torch sees a CUDA device: run `bash bench/gpu_check.sh` itself")

    def repo_files():  # new untracked or ignored paths would show up here
        return set(subprocess.run(["git", "status", "--porcelain", "--ignored",
                                   "--untracked-files=all"], cwd=ROOT, capture_output=True,
                                  text=True, check=True).stdout.splitlines())

    temp = tmp_path / "tmp"
    temp.mkdir()
    before = repo_files()
    proc = subprocess.run(["bash", "bench/gpu_check.sh"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120,
                          env={**os.environ, "PYTHON": sys.executable, "TMPDIR": str(temp)})
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "CUDA" in lines[0], proc.stderr
    assert lines[0].startswith("bench/gpu_check.sh: error:")
    assert list(temp.iterdir()) == []
    assert not repo_files() - before
