"""PBT/PB2 population loop: selection, exploit/explore, the toy, train.py end to end."""
import json

import numpy as np
import pytest
import torch
from helpers import rows, run_in_process, run_train, without_wall_time
from scipy import stats

from pb2_procgen import pbt
from pb2_procgen.search_space import procgen_space, toy_space, vector_space
from pb2_procgen.toy import ToyAgent, true_objective
from pb2_procgen.train import main as train_main



def train(*args, timeout=600):
    return run_train("pb2_procgen", *args, timeout=timeout)


# -- the toy -------------------------------------------------------------------------------------
def test_toy_best_schedule_reaches_the_known_optimum():
    agent = ToyAgent({"h0": 1.0, "h1": 1.0})
    result = agent.train_segment(40)
    assert result["steps"] == 40 and agent.agent_steps == 40
    assert result["train_return"] == pytest.approx(1.2 - 2 * (0.9 * 0.98 ** 40) ** 2)
    assert result["train_return"] == pytest.approx(0.878, abs=1e-3)
    assert true_objective(np.zeros(2)) == 1.2


# -- exploit -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("size, n", [(4, 1), (8, 2), (2, 1), (10, 2)])
def test_truncation_selection_replaces_the_bottom_quarter_by_the_top(size, n):
    rewards = np.random.default_rng(size).permutation(size).astype(float)
    bottom, parents = pbt.truncation_selection(rewards, np.random.default_rng(0))
    order = np.argsort(rewards)
    assert sorted(bottom) == sorted(order[:n].tolist())
    assert set(parents) <= set(order[-n:].tolist()) and len(parents) == n


def test_exploit_copies_the_parents_state():
    agents = [ToyAgent({"h0": 1.0, "h1": 0.0}), ToyAgent({"h0": 0.0, "h1": 1.0})]
    agents[0].train_segment(8)
    pbt.exploit(agents[1], agents[0])
    assert np.array_equal(agents[1].theta, agents[0].theta)
    agents[1].theta[0] = 5.0
    assert agents[0].theta[0] != 5.0  # a copy, not a shared array


# -- explore: PBT ----------------------------------------------------------------------------------
@pytest.mark.parametrize("space", [toy_space(), procgen_space(), vector_space()])
def test_pbt_explore_stays_in_bounds_and_perturbs_by_the_factors(space):
    rng = np.random.default_rng(0)
    config = space.sample(rng)
    categories_seen = set()
    for _ in range(200):
        new = pbt.pbt_explore(config, space, rng)
        for name, (low, high) in space.continuous.items():
            assert low <= new[name] <= high
            ratio = new[name] / config[name] if config[name] else 1.0
            assert new[name] in (low, high) or ratio == pytest.approx(0.8) or ratio == pytest.approx(1.2)
        if space.categorical:
            assert new[space.categorical[0]] in space.categorical[1]
            categories_seen.add(new[space.categorical[0]])
        config = new
    if space.categorical:
        assert len(categories_seen) > 2


# -- the toy through train.py: PB2 beats PBT -------------------------------------------------------
def best_final_q(search, seed, root):
    out = root / f"{search}_{seed}"
    train_main(["--env", "toy", "--search", search, "--seed", str(seed), "--batchsize", "4",
                "--no-plots", "--out-dir", str(out)])
    return json.loads((out / "summary.json").read_text())["best_return"]


@pytest.mark.slow
def test_pb2_beats_pbt_on_the_toy_over_paired_seeds(tmp_path):
    pbt_q = [best_final_q("PBT", seed, tmp_path) for seed in range(20)]
    pb2_q = [best_final_q("PB2", seed, tmp_path) for seed in range(20)]
    assert np.mean(pb2_q) > np.mean(pbt_q) + 0.03
    assert stats.ttest_rel(pb2_q, pbt_q).pvalue < 0.05
    assert np.mean(pb2_q) > 0.8 and max(pb2_q) < 0.8785  # 0.878 is the best achievable


def test_toy_resume_continues_exactly(tmp_path):
    common = ["--env", "toy", "--search", "PB2", "--seed", "3", "--no-plots"]
    train_main([*common, "--out-dir", str(tmp_path / "full")])
    train_main([*common, "--max_budget", "20", "--out-dir", str(tmp_path / "cut")])
    train_main(["--resume", "--no-plots", "--max_budget", "40", "--out-dir", str(tmp_path / "cut")])
    assert without_wall_time(rows(tmp_path / "cut" / "metrics.csv")) == \
        without_wall_time(rows(tmp_path / "full" / "metrics.csv"))


def test_toy_run_writes_metrics_and_plots(tmp_path):
    result = train("--env", "toy", "--search", "PB2", "--out-dir", str(tmp_path / "run"))
    assert result.returncode == 0, result.stderr[-2000:]
    table = rows(tmp_path / "run" / "metrics.csv")
    assert len(table) == 4 * 10  # 4 agents x 10 rounds of 4 steps
    assert {"round", "agent", "env_steps", "agent_steps", "train_return", "test_return",
            "h0", "h1"} <= set(table[0])
    assert int(table[-1]["env_steps"]) == 160 and int(table[-1]["agent_steps"]) == 40
    for png in ("returns.png", "schedules.png"):
        assert (tmp_path / "run" / png).exists()


@pytest.mark.parametrize("args, message", [
    (["--env", "bigfsh"], "did you mean bigfish"),
    (["--env", "toy", "--set", "bounds={h0: [1.0, 0.0]}"], "low 1.0 > high 0.0"),
    (["--env", "toy", "--t_ready", "50", "--max_budget", "40"], "--t_ready (50) is larger"),
    (["--env", "toy", "--max_budget", "-1"], "'max_budget' must be >= 0, got -1"),
    (["--search", "PB3"], "invalid choice: 'PB3'"),
])
def test_bad_input_is_one_line_and_exit_status_2(tmp_path, args, message):
    result = run_in_process("pb2_procgen.train", *args, "--out-dir", str(tmp_path / "run"))
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and message in result.stderr, result.stderr
    assert not (tmp_path / "run").exists()


def test_seed_command_line_is_accepted(tmp_path):
    """The seed's flags verbatim (on the toy, so that it runs in a second)."""
    result = train("--env", "toy", "--search", "PB2", "--cat_exp", "exp3_dep", "--seed", "100",
                   "--gpu_per_trial", "1", "--max_budget", "40", "--t_ready", "4",
                   "--batchsize", "4", "--no-plots", "--out-dir", str(tmp_path / "run"))
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["seed"] == 100


def test_exploit_then_explore_applies_the_new_lr_to_the_optimizer():
    from pb2_procgen.ppo import PPOAgent

    space = vector_space()
    tiny = {"num_envs": 2, "num_steps": 16, "minibatches": 1, "epochs": 1, "gamma": 0.99}
    configs = [space.sample(np.random.default_rng(i)) for i in range(2)]
    agents = [PPOAgent("CartPole-v1", hp, tiny, seed=i) for i, hp in enumerate(configs)]
    for agent in agents:
        agent.train_segment(32, seed=0)
    new_configs = pbt.explore_round(agents, configs, [1.0, 0.0], bottom=[1], parents=[0],
                                    space=space, search="PBT", explorer=None,
                                    rng=np.random.default_rng(0))
    for a, b in zip(agents[0].state_dict()["net"].values(), agents[1].state_dict()["net"].values()):
        assert torch.equal(a, b)  # weights copied from the parent
    lrs = {group["lr"] for group in agents[1].optimizer.param_groups}
    assert lrs == {new_configs[1]["lr"]} and new_configs[1]["lr"] != configs[0]["lr"]


# every search on CartPole; on Procgen (its own augmentation set, ~14 s a run: slow tier) the mixed-input one
@pytest.mark.parametrize("env, search, cat_exp", [
    ("CartPole-v1", "PBT", "random"), ("CartPole-v1", "PB2", "random"), ("CartPole-v1", "PB2", "exp3_dep"),
    ("CartPole-v1", "PB2", "cocabo"), pytest.param("bigfish", "PB2", "cocabo", marks=pytest.mark.slow)])
def test_every_search_and_cat_exp_runs_on_procgen_and_cartpole(tmp_path, env, search, cat_exp):
    from common.runs import check_run_dir

    out = tmp_path / "run"
    train_main(["--smoke", "--env", env, "--search", search, "--cat_exp", cat_exp,
                "--out-dir", str(out)])
    assert check_run_dir(out) == []
    table = rows(out / "metrics.csv")
    summary = json.loads((out / "summary.json").read_text())
    assert len({r["round"] for r in table}) >= 2 and summary["rounds"] >= 2
    assert summary["env_steps"] == int(table[-1]["env_steps"]) >= 2 * int(table[-1]["agent_steps"])
    assert all(r["aug_type"] in (procgen_space() if env == "bigfish" else vector_space()).categorical[1]
               for r in table)


@pytest.mark.slow
def test_agents_in_worker_processes_give_the_serial_results(tmp_path):
    common = ["--smoke", "--env", "CartPole-v1", "--search", "PB2", "--cat_exp", "cocabo",
              "--no-plots", "--set", "torch_threads=1"]
    serial = train(*common, "--out-dir", str(tmp_path / "serial"))
    parallel = train(*common, "--workers", "2", "--backend", "process",
                     "--out-dir", str(tmp_path / "process"))
    assert serial.returncode == 0 and parallel.returncode == 0, parallel.stderr[-2000:]
    assert without_wall_time(rows(tmp_path / "serial" / "metrics.csv")) == \
        without_wall_time(rows(tmp_path / "process" / "metrics.csv"))


# -- non-finite training: diverged agents rank last, a run where every agent diverges stops -------
def test_a_diverged_agent_ranks_last_and_the_run_carries_on(tmp_path, monkeypatch, capsys):
    original = ToyAgent.train_segment

    def blow_up_one(self, min_steps, seed=0):  # the agent started with seed 0 diverges once
        result = original(self, min_steps, seed)
        if self.agent_steps == min_steps and self.hyperparameters is self._first_hp:
            self.theta = np.array([np.nan, np.nan])
            result["diverged"] = True
        return result

    first_init = ToyAgent.__init__

    def remember(self, hyperparameters, seed=0):
        first_init(self, hyperparameters, seed)
        self._first_hp = self.hyperparameters if seed == 0 else None

    monkeypatch.setattr(ToyAgent, "__init__", remember)
    monkeypatch.setattr(ToyAgent, "train_segment", blow_up_one)
    train_main(["--env", "toy", "--seed", "0", "--batchsize", "4", "--no-plots",
                "--out-dir", str(tmp_path / "run")])
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["diverged_agents"] == 1
    assert np.isfinite(summary["best_return"]) and np.isfinite(summary["mean_final_return"])
    first_round = [r for r in rows(tmp_path / "run" / "metrics.csv") if r["round"] == "0"]
    assert first_round[0]["train_return"] == "-inf" and first_round[0]["test_return"] == "nan"
    assert "round 0: agents [0] diverged" in capsys.readouterr().err


def test_a_run_where_every_agent_diverges_stops_with_one_line(tmp_path):
    result = run_train("pb2_procgen", "--env", "toy", "--set", "bounds={h0: [1e300, 1e301]}",
                       "--no-plots", "--out-dir", str(tmp_path / "run"), timeout=120)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith(
        "pb2_procgen/train.py: error: training diverged at env step")
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "diverged" and summary["best_return"] is None


def test_bounds_written_as_in_the_readme_are_numbers():
    from pb2_procgen.train import search_space

    config = {"env": "CartPole-v1", "bounds": {"lr": ["1e-4", "1e-3"]}}   # what PyYAML gives
    assert search_space(config).continuous["lr"] == (1e-4, 1e-3)


@pytest.mark.slow
def test_same_seed_gives_the_same_run_at_one_and_two_threads(tmp_path):
    # PPO's float sums depend on torch's thread count: the run takes its own (torch_threads,
    # default 1), so OMP_NUM_THREADS does not change it (with torch_threads=0 this run's test
    # returns part at round 6); the GP runs on one BLAS thread
    import os
    tables = []
    for threads in ("1", "2"):
        out = tmp_path / threads
        result = run_train("pb2_procgen", "--env", "CartPole-v1", "--search", "PB2", "--cat_exp", "exp3_dep",
                           "--max_budget", "16000", "--t_ready", "2000", "--no-plots", "--out-dir", str(out),
                           env={**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads,
                                "OPENBLAS_NUM_THREADS": threads})
        assert result.returncode == 0, result.stderr[-2000:]
        tables.append(without_wall_time(rows(out / "metrics.csv")))
    assert len(tables[0]) == 32 and tables[0] == tables[1]
    assert len({r["aug_type"] for r in tables[0]}) > 1             # PB2-Mult's bandit took part


def test_random_search_keeps_every_initial_config(tmp_path):
    train_main(["--env", "toy", "--search", "random", "--no-plots", "--out-dir", str(tmp_path / "run")])
    table = rows(tmp_path / "run" / "metrics.csv")
    assert len({r["round"] for r in table}) == 10
    for agent in "0123":
        assert len({(r["h0"], r["h1"]) for r in table if r["agent"] == agent}) == 1


def test_methods_plot_groups_runs_by_method_with_mean_and_spread(tmp_path):
    from pb2_procgen.plots import plot_methods

    runs = []
    for search in ("PB2", "random"):
        for seed in (0, 1):
            runs.append(tmp_path / f"{search}{seed}")
            train_main(["--env", "toy", "--search", search, "--seed", str(seed), "--no-plots",
                        "--out-dir", str(runs[-1])])
    out, table = plot_methods(runs, tmp_path / "methods.png")
    assert out.stat().st_size > 10_000
    lines = table.splitlines()
    assert len(lines) == 4 and lines[2].startswith("| PB2-Rand | 2 |") and lines[3].startswith("| random search | 2 |")
    finals = [json.loads((run / "summary.json").read_text())["final_return"] for run in runs[2:]]
    assert lines[3].split(" | ")[2].startswith(f"{np.mean(finals):.1f} ± ")   # the final test Q, mean over seeds


def test_an_agent_without_a_return_is_never_ranked():
    """None (no episode ended in the segment) is neither replaced nor copied; -inf ranks last;
    with every agent ranked the selection is truncation_selection's, draw for draw."""
    from pb2_procgen.train import select_round
    rewards = [0.5, None, -np.inf, 2.0, 1.0, None, 3.0, 0.1]
    for seed in range(20):
        bottom, parents = select_round(rewards, np.random.default_rng(seed), 0.25)
        assert 1 not in bottom + parents and 5 not in bottom + parents
        assert bottom[0] == 2 and len(bottom) == 1 and parents[0] == 6   # 6 agents ranked: one each
    numbers = [0.5, 1.5, -np.inf, 2.0, 1.0, 0.2, 3.0, 0.1]
    assert select_round(numbers, np.random.default_rng(3), 0.25) == \
        pbt.truncation_selection(numbers, np.random.default_rng(3), 0.25)


def test_a_segment_without_an_ended_episode_logs_no_return(tmp_path, monkeypatch):
    """A whole run where one agent's first segment ends no episode: its train_return is empty in
    metrics.csv, the run finishes, and the agent is not replaced in the next round."""
    original = ToyAgent.train_segment

    def no_episode_for_agent_0(self, min_steps, seed=0):
        result = original(self, min_steps, seed)
        if self.agent_steps == min_steps and getattr(self, "_first", False):
            result["train_return"], result["episodes"] = None, 0
        return result

    first_init = ToyAgent.__init__

    def remember(self, hyperparameters, seed=0):
        first_init(self, hyperparameters, seed)
        self._first = seed == 0

    monkeypatch.setattr(ToyAgent, "__init__", remember)
    monkeypatch.setattr(ToyAgent, "train_segment", no_episode_for_agent_0)
    train_main(["--env", "toy", "--seed", "0", "--batchsize", "4", "--no-plots",
                "--out-dir", str(tmp_path / "run")])
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "finished" and np.isfinite(summary["best_return"])
    logged = rows(tmp_path / "run" / "metrics.csv")
    assert [r["train_return"] for r in logged if r["round"] == "0"][0] == ""
    assert all(r["train_return"] not in ("", "nan") for r in logged if r["round"] != "0")
