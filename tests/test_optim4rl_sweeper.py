"""optim4rl sweeper (grid counting and index decoding), log folders and sweep analysis."""
import csv
import itertools
import json
import math
import subprocess
import sys
import time
from pathlib import Path

import pytest

from common.cli import UsageError
from optim4rl import analysis, logs
from optim4rl.sweeper import Sweeper, derive_seed

ROOT = Path(__file__).resolve().parents[1]

# Shaped like the reference's configs/meta_rl_catch.json: 2 reset intervals x (5 + 5) meta
# optimizer settings (a kwargs list of two dicts) = 20 combinations.
META_RL_CATCH = {
    "env": [{"name": [["catch"]], "num_envs": [64], "train_steps": [5e5]}],
    "agent": [{"name": ["MetaA2C"], "inner_updates": [4], "gae_lambda": [0.95],
               "rollout_steps": [20], "critic_loss_weight": [0.5], "entropy_weight": [0.01],
               "reset_interval": [32, 64]}],
    "agent_optim": [{"name": ["Optim4RL"], "kwargs": [{"param_load_path": [""],
                                                       "learning_rate": [1e-3],
                                                       "grad_clip": [-1]}]}],
    "meta_optim": [{"name": ["Adam"], "kwargs": [
        {"learning_rate": [1e-4, 3e-4, 1e-3, 3e-3, 1e-2], "grad_norm": [0.5]},
        {"learning_rate": [1e-4, 3e-4, 1e-3, 3e-3, 1e-2], "grad_clip": [1.0]}]}],
    "discount": [0.995],
    "seed": [42],
    "display_interval": [5],
    "generate_random_seed": [True],
}


def write(tmp_path, name, data):
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def expand(node):
    """Independent brute-force expansion, in the sweeper's order: a list is the concatenation
    of its choices' expansions; a dict is the product of its keys' expansions, FIRST key
    fastest (itertools.product varies its LAST argument fastest, so keys go in reversed)."""
    if isinstance(node, list):
        out = []
        for item in node:
            out += expand(item) if isinstance(item, dict) else [item]
        return out
    keys = list(node)[::-1]
    return [dict(reversed(list(zip(keys, combo))))
            for combo in itertools.product(*(expand(node[key]) for key in keys))]


def strip(config):
    return {k: v for k, v in config.items() if k not in ("config_idx", "num_combinations")}


# -- counting -----------------------------------------------------------------------------------
@pytest.mark.parametrize("data, count", [
    ({"a": [1, 2], "b": ["x", "y", "z"], "c": [True]}, 6),
    ({"a": [[1, 2]], "b": [[3], [4]]}, 2),                              # lists as choices
    ({"x": [1, {"y": [1, 2], "z": [{"w": [1, 2, 3]}, 5]}], "v": [0, 1]}, (1 + 2 * 4) * 2),
    ({"k": [{"a": [1, 2]}, {"b": [1, 2, 3]}], "m": [{}]}, 5),          # sum of dicts; {} is 1
    (META_RL_CATCH, 20),
])
def test_total_combinations(tmp_path, data, count):
    sweeper = Sweeper(write(tmp_path, "grid.json", data))
    assert sweeper.total_combinations == count
    assert sweeper.config_name == "grid"


def test_decoding_first_key_fastest(tmp_path):
    sweeper = Sweeper(write(tmp_path, "g.json", {"a": [1, 2], "b": ["x", "y", "z"], "c": [True]}))
    got = [(c["a"], c["b"]) for c in map(sweeper.generate_config_for_idx, range(1, 7))]
    assert got == [(1, "x"), (2, "x"), (1, "y"), (2, "y"), (1, "z"), (2, "z")]
    config = sweeper.generate_config_for_idx(4)
    assert config == {"a": 2, "b": "y", "c": True, "config_idx": 4, "num_combinations": 6}


def test_decoding_meta_rl_catch(tmp_path):
    sweeper = Sweeper(write(tmp_path, "meta_rl_catch.json", META_RL_CATCH))
    c1 = sweeper.generate_config_for_idx(1)
    assert c1["agent"]["reset_interval"] == 32
    assert c1["meta_optim"] == {"name": "Adam",
                                "kwargs": {"learning_rate": 1e-4, "grad_norm": 0.5}}
    assert c1["env"] == {"name": ["catch"], "num_envs": 64, "train_steps": 5e5}
    assert c1["agent_optim"]["kwargs"] == {"param_load_path": "", "learning_rate": 1e-3,
                                           "grad_clip": -1}
    c2 = sweeper.generate_config_for_idx(2)
    assert (c2["agent"]["reset_interval"], c2["meta_optim"]["kwargs"]["learning_rate"]) == (64, 1e-4)
    c3 = sweeper.generate_config_for_idx(3)
    assert (c3["agent"]["reset_interval"], c3["meta_optim"]["kwargs"]["learning_rate"]) == (32, 3e-4)
    c11 = sweeper.generate_config_for_idx(11)  # 6th meta choice: the second kwargs dict
    assert c11["agent"]["reset_interval"] == 32
    assert c11["meta_optim"]["kwargs"] == {"learning_rate": 1e-4, "grad_clip": 1.0}
    c20 = sweeper.generate_config_for_idx(20)
    assert c20["agent"]["reset_interval"] == 64
    assert c20["meta_optim"]["kwargs"] == {"learning_rate": 1e-2, "grad_clip": 1.0}


@pytest.mark.parametrize("data", [
    META_RL_CATCH,
    {"x": [1, {"y": [1, 2], "z": [{"w": [1, 2, 3]}, 5]}], "v": [0, 1], "s": [[7, 8]]},
])
def test_every_index_matches_brute_force(tmp_path, data):
    data = {k: v for k, v in data.items() if k != "generate_random_seed"}
    sweeper = Sweeper(write(tmp_path, "g.json", data))
    expected = expand(data)
    assert len(expected) == sweeper.total_combinations
    for i, config in enumerate(expected, start=1):
        assert strip(sweeper.generate_config_for_idx(i)) == config


def test_repeats_and_seeds(tmp_path):
    data = {"lr": [1e-3, 3e-3, 1e-2], "seed": [42], "generate_random_seed": [True]}
    sweeper = Sweeper(write(tmp_path, "g.json", data))
    n = sweeper.total_combinations
    first, again, second = (sweeper.generate_config_for_idx(i) for i in (2, 2, 2 + n))
    assert first == again                                    # reproducible
    assert first["seed"] != second["seed"]                   # another run, another seed
    assert {**first, "seed": 0, "config_idx": 0} == {**second, "seed": 0, "config_idx": 0}
    assert first["seed"] == derive_seed(42, 0) and second["seed"] == derive_seed(42, 1)
    assert first["seed"] != 42 and 0 <= second["seed"] < 1_000_000
    assert sweeper.generate_config_for_idx(1)["seed"] == first["seed"]  # run 0 shares a seed
    assert len({sweeper.generate_config_for_idx(2 + k * n)["seed"] for k in range(10)}) == 10
    assert (sweeper.combination_of(2 + 3 * n), sweeper.run_of(2 + 3 * n)) == (2, 3)
    assert sweeper.indexes_of(2, 3) == [2, 2 + n, 2 + 2 * n]

    plain = Sweeper(write(tmp_path, "p.json", {**data, "generate_random_seed": [False]}))
    assert plain.generate_config_for_idx(2)["seed"] == plain.generate_config_for_idx(2 + n)["seed"] == 42


def test_bad_indexes(tmp_path):
    sweeper = Sweeper(write(tmp_path, "g.json", {"a": [1, 2]}))
    for bad in (0, -1):
        with pytest.raises(UsageError, match=">= 1"):
            sweeper.generate_config_for_idx(bad)
    assert sweeper.generate_config_for_idx(7)["a"] == 1      # no upper bound: run 3 of combo 1
    assert sweeper.check_index(4, max_runs=2) == 4
    with pytest.raises(UsageError, match="1..4"):
        sweeper.check_index(5, max_runs=2)


@pytest.mark.parametrize("text, message", [
    ('{"a": 1}', "'a' must be a list"),
    ('{"env": [{"name": "catch"}]}', r"'env\[0\]/name' must be a list"),
    ('{"a": []}', "empty list"),
    ('{"a": [1,', "cannot parse"),
    ('[1, 2]', "JSON object"),
    ('{"a": [1], "config_idx": [3]}', "set by the sweeper"),
])
def test_malformed_configs(tmp_path, text, message):
    with pytest.raises(UsageError, match=message) as info:
        Sweeper(write(tmp_path, "bad.json", text))
    assert "\n" not in str(info.value)
    with pytest.raises(UsageError, match="not found"):
        Sweeper(tmp_path / "missing.json")


def test_sweeper_cli(tmp_path):
    good = write(tmp_path, "sds_a2c.json", {"a": [1, 2], "b": [{"c": [1, 2, 3]}, {"d": [0]}]})
    run = subprocess.run([sys.executable, str(ROOT / "optim4rl" / "sweeper.py"), str(good)],
                         capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout == "The number of total combinations in sds_a2c.json: 8\n"

    write(tmp_path, "aaa.json", {"x": [1]})
    run = subprocess.run([sys.executable, str(ROOT / "optim4rl" / "sweeper.py"),
                          "--configs-dir", str(tmp_path)],
                         capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert run.stdout.splitlines() == ["The number of total combinations in aaa.json: 1",
                                       "The number of total combinations in sds_a2c.json: 8"]

    bad = write(tmp_path, "bad.json", {"a": 3})
    run = subprocess.run([sys.executable, str(ROOT / "optim4rl" / "sweeper.py"), str(bad)],
                         capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert run.returncode == 2
    assert len(run.stderr.strip().splitlines()) == 1 and "must be a list" in run.stderr


# -- logs ---------------------------------------------------------------------------------------
def finished_run(path: Path, returns, memory=100.0, minutes=1.5, result=True, time_line=True,
                 env="catch", agent="A2C"):
    path.mkdir(parents=True, exist_ok=True)
    lines = ["2024-01-01 00:00:00 - INFO: start",
             f"2024-01-01 00:00:00 - INFO: Memory usage: {memory:.2f} MB"]
    if time_line:
        lines.append(f"2024-01-01 00:00:00 - INFO: Time elapsed: {minutes:.2f} minutes")
    (path / "log.txt").write_text("\n".join(lines) + "\n")
    if result:
        logs.write_results_csv(path / f"result_{env}.csv",
                               [(env, agent, 10 * (i + 1), r) for i, r in enumerate(returns)])


def test_log_lines_and_finish(tmp_path, capsys):
    run_dir = logs.make_log_dir(tmp_path / "logs", "sds_a2c", 3)
    assert run_dir == tmp_path / "logs" / "sds_a2c" / "3" and run_dir.is_dir()
    start = time.time() - 90
    with logs.Logger(run_dir) as logger:
        logger.info("Step 10, Return 0.5")
        memory, minutes = logs.finish(logger, start)
    lines = (run_dir / "log.txt").read_text().splitlines()
    assert len(lines) == 3 and "Step 10, Return 0.5" in capsys.readouterr().out
    assert lines[-2].endswith(f"Memory usage: {memory:.2f} MB")
    assert lines[-1].endswith(f"Time elapsed: {minutes:.2f} minutes")
    assert float(lines[-2].split()[-2]) > 0
    assert 1.49 <= float(lines[-1].split()[-2]) <= 1.6
    assert logs.read_finish_info(run_dir / "log.txt") == (float(f"{memory:.2f}"),
                                                          float(f"{minutes:.2f}"))


def test_make_log_dir_refuses_finished_run(tmp_path):
    root = tmp_path / "logs"
    finished_run(root / "cfg" / "1", [1.0], time_line=False)
    assert logs.make_log_dir(root, "cfg", 1) == root / "cfg" / "1"   # unfinished: reusable
    finished_run(root / "cfg" / "2", [1.0])
    with pytest.raises(UsageError, match="finished run"):
        logs.make_log_dir(root, "cfg", 2)
    assert (root / "cfg" / "2" / "result_catch.csv").exists()          # nothing lost
    assert logs.make_log_dir(root, "cfg", 2, overwrite=True) == root / "cfg" / "2"
    with pytest.raises(UsageError):
        logs.make_log_dir(root, "cfg", 0)


def test_results_csv_and_collection_outputs(tmp_path):
    path = logs.write_results_csv(tmp_path / "result_catch.csv",
                                  [{"Env": "catch", "Agent": "A2C", "Step": 100, "Return": 0.5},
                                   ("catch", "A2C", 200, 0.75)])
    with open(path, newline="") as f:
        table = list(csv.reader(f))
    assert table[0] == ["Env", "Agent", "Step", "Return"]
    assert table[2] == ["catch", "A2C", "200", "0.75"]
    with pytest.raises(ValueError):
        logs.write_results_csv(tmp_path / "r.csv", [{"Env": "catch", "Step": 1, "Return": 0}])

    rows = [{"env_steps": 100 * (i + 1), "return": r, "loss": 0.1}
            for i, r in enumerate([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 5])]
    metrics, summary = logs.write_collection_outputs(tmp_path, rows,
                                                     {"wall_seconds": 3.0, "env": "catch"})
    with open(metrics, newline="") as f:
        table = list(csv.DictReader(f))
    assert list(table[0]) == ["env_steps", "test_steps", "return", "loss"] and len(table) == 12
    data = json.loads(summary.read_text())
    assert list(data)[:5] == ["env_steps", "test_steps", "final_return", "best_return",
                              "wall_seconds"]
    # 12 points: the last tenth is the last ceil(1.2) = 2 points, (10 + 5) / 2
    assert (data["env_steps"], data["test_steps"], data["final_return"], data["best_return"],
            data["env"]) == (1200, 0, 7.5, 10, "catch")
    with pytest.raises(ValueError, match="wall_seconds"):
        logs.write_collection_outputs(tmp_path, rows, {})


def test_write_config(tmp_path):
    path = logs.write_config(tmp_path, {"lr": 0.1, "config_idx": 2})
    data = json.loads(path.read_text())
    assert data["lr"] == 0.1 and data["config_idx"] == 2 and "torch" in data["_run"]["versions"]


# -- analysis -----------------------------------------------------------------------------------
def test_analysis_on_fake_logs(tmp_path, capsys):
    config = write(tmp_path, "toy_a2c.json",
                   {"lr": [0.1, 0.2], "env": [{"name": ["catch"]}], "seed": [1],
                    "generate_random_seed": [True]})                    # N = 2
    root = tmp_path / "logs"
    cfg = root / "toy_a2c"
    finished_run(cfg / "1", [0.1] * 10, memory=100, minutes=1.0)          # combination 1
    finished_run(cfg / "2", [i / 10 for i in range(10)], memory=300, minutes=3.0)  # combo 2
    finished_run(cfg / "3", [0.3] * 10, memory=200, minutes=2.0)          # combination 1
    finished_run(cfg / "4", [100.0] * 10, time_line=False)                # unfinished: no time
    finished_run(cfg / "5", [], result=False)                             # unfinished: no CSV
    # index 6 has no folder; runs = ceil(5 / 2) = 3 -> indexes 1..6

    analysis.main([str(config), "--logs-root", str(root)])
    out = capsys.readouterr().out
    assert "unfinished indexes (of 1..6): 4, 5, 6" in out
    assert "memory: max 300.00 MB, mean 175.00 MB, min 100.00 MB over 4 runs" in out

    with open(cfg / "results.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert [row["Config Index"] for row in table] == ["2", "1"]           # best final first
    best, other = table
    assert (best["lr"], best["Runs"]) == ("0.2", "1")
    assert math.isclose(float(best["Return (final)"]), 0.9)               # last tenth: 1 point
    assert math.isclose(float(best["Return (mean)"]), 0.45)
    assert (other["lr"], other["Runs"]) == ("0.1", "2")
    assert math.isclose(float(other["Return (final)"]), 0.2)              # mean of 0.1 and 0.3
    assert math.isclose(float(other["Return (final se)"]), 0.1)
    assert "seed" not in best and "env/name" not in best                  # not swept
    for png in ("memory.png", "time.png", "returns_catch.png"):
        assert (cfg / png).stat().st_size > 1000

    report = analysis.analyze(config, root, runs=1, out=open(tmp_path / "out.txt", "w"))
    assert report["unfinished"] == []
    assert [row["Runs"] for row in report["rows"]] == [1, 1]


def test_analysis_unknown_config(tmp_path):
    with pytest.raises(UsageError, match="not found"):
        analysis.main(["no_such_config", "--logs-root", str(tmp_path),
                       "--configs-dir", str(tmp_path)])
