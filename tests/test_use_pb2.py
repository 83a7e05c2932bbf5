"""pb2_procgen.scheduler, the ask/tell PB2/PBT: equal to train.py's loop on the PBT toy, exact
resume, bad arguments, and the README's "Use it in your code" example run from a copy."""
import copy
import pickle

import pytest
from helpers import rows, run_readme_example

from pb2_procgen.scheduler import PB2, PBT, Decision
from pb2_procgen.toy import ToyAgent
from pb2_procgen.train import main as train_main

TOY_BOUNDS = {"h0": [0.0, 1.0], "h1": [0.0, 1.0]}
T_READY, ROUNDS, POPULATION = 4, 10, 4   # train.py's toy defaults: 40 steps, t_ready 4, B = 4


def drive_toy(scheduler, rounds=ROUNDS, start=None):
    """The toy loop of train.py written against the scheduler: train a segment, report, apply
    the decisions. Returns the table [(round, agent, train_return, h0, h1)] and the loop state."""
    if start is None:
        configs = scheduler.initial_configs()
        start = {"round": 0, "configs": configs, "agents": [ToyAgent(c) for c in configs]}
    state = copy.deepcopy(start)
    agents, configs, table = state["agents"], state["configs"], []
    for round_index in range(state["round"], state["round"] + rounds):
        scores = [agent.train_segment(T_READY)["train_return"] for agent in agents]
        table += [(round_index, i, scores[i], configs[i]["h0"], configs[i]["h1"])
                  for i in range(len(agents))]
        decisions = scheduler.report([a.agent_steps for a in agents], scores, configs)
        for i, decision in enumerate(decisions):
            if decision.copy_from is not None:
                agents[i].load_state_dict(agents[decision.copy_from].state_dict())
            agents[i].set_hyperparameters(decision.config)
            configs[i] = decision.config
    state["round"] += rounds
    return table, state


def train_py_table(search, seed, tmp_path):
    out = tmp_path / f"{search}_{seed}"
    train_main(["--env", "toy", "--search", search, "--seed", str(seed), "--batchsize",
                str(POPULATION), "--max_budget", str(T_READY * ROUNDS), "--t_ready", str(T_READY),
                "--no-plots", "--out-dir", str(out)])
    return [(int(r["round"]), int(r["agent"]), float(r["train_return"]), float(r["h0"]),
             float(r["h1"])) for r in rows(out / "metrics.csv")]


# -- the same numbers as train.py ------------------------------------------------------------------
@pytest.mark.parametrize("search, seed", [("PB2", 0), ("PB2", 3), ("PBT", 0), ("PBT", 3)])
def test_scheduler_gives_train_pys_configs_and_scores_on_the_toy(search, seed, tmp_path):
    expected = train_py_table(search, seed, tmp_path)
    scheduler = {"PB2": PB2, "PBT": PBT}[search](TOY_BOUNDS, POPULATION,
                                                 perturbation_interval=T_READY, seed=seed)
    table, _ = drive_toy(scheduler)
    assert len(expected) == ROUNDS * POPULATION
    assert table == expected   # exact: every config and score of every round
    # the run explored: configs changed after round 0
    assert {row[3:] for row in table[-POPULATION:]} != {row[3:] for row in table[:POPULATION]}


def test_decisions_copy_the_top_into_the_bottom_quarter():
    scheduler = PBT(TOY_BOUNDS, 8, perturbation_interval=1, seed=0)
    configs = scheduler.initial_configs()
    scores = [5.0, 1.0, 7.0, 0.0, 3.0, 6.0, 2.0, 4.0]   # bottom two: 3, 1; top two: 2, 5
    decisions = scheduler.report([1.0] * 8, scores, configs)
    assert all(isinstance(d, Decision) for d in decisions)
    copied = {i: d.copy_from for i, d in enumerate(decisions) if d.copy_from is not None}
    assert set(copied) == {1, 3} and set(copied.values()) <= {2, 5}
    for i, d in enumerate(decisions):
        if d.copy_from is None:
            assert d.config == configs[i]
        else:                         # PBT: the parent's values x0.8 or x1.2, clipped to [0, 1]
            for name in TOY_BOUNDS:
                parent = configs[d.copy_from][name]
                assert any(d.config[name] == pytest.approx(min(f * parent, 1.0)) for f in (0.8, 1.2))


def test_nothing_happens_before_the_perturbation_interval():
    scheduler = PB2(TOY_BOUNDS, 4, perturbation_interval=10, seed=0)
    configs = scheduler.initial_configs()
    before = scheduler.state_dict()
    decisions = scheduler.report([9.0] * 4, [0.0, 1.0, 2.0, 3.0], configs)
    assert [d.copy_from for d in decisions] == [None] * 4
    assert [d.config for d in decisions] == configs
    assert pickle.dumps(scheduler.state_dict()) == pickle.dumps(before)
    decisions = scheduler.report([10.0] * 4, [0.0, 1.0, 2.0, 3.0], configs)
    assert decisions[0].copy_from == 3 and scheduler.round == 1


def test_minimising_ranks_the_lowest_score_best():
    scheduler = PBT(TOY_BOUNDS, 4, seed=0, mode="min")
    decisions = scheduler.report([1.0] * 4, [0.0, 1.0, 2.0, 3.0], scheduler.initial_configs())
    assert decisions[3].copy_from == 0


# -- resume ------------------------------------------------------------------------------------------
CATEGORICAL = {"aug": ["a", "b", "c"]}


@pytest.mark.parametrize("make", [
    lambda: PB2(TOY_BOUNDS, 4, perturbation_interval=T_READY, seed=1),
    lambda: PB2(TOY_BOUNDS, 4, categorical=CATEGORICAL, perturbation_interval=T_READY, seed=1,
                cat_exp="exp3_dep", n_rounds=ROUNDS),
    lambda: PB2(TOY_BOUNDS, 4, categorical=CATEGORICAL, perturbation_interval=T_READY, seed=1,
                cat_exp="cocabo", n_rounds=ROUNDS),
    lambda: PBT(TOY_BOUNDS, 4, categorical=CATEGORICAL, perturbation_interval=T_READY, seed=1),
], ids=["PB2", "PB2-Mult", "PB2-Mix", "PBT"])
def test_a_resumed_scheduler_continues_exactly(make):
    whole, _ = drive_toy(make(), rounds=8)
    first = make()
    head, loop_state = drive_toy(first, rounds=4)
    saved = pickle.loads(pickle.dumps(first.state_dict()))   # plain values survive a file
    first.report([1e9] * 4, [0.0] * 4, loop_state["configs"])  # the original moves on: no effect
    resumed = make()
    resumed.load_state_dict(saved)
    tail, _ = drive_toy(resumed, rounds=4, start=loop_state)
    assert head + tail == whole


def test_a_state_of_another_scheduler_is_refused():
    with pytest.raises(ValueError, match="PBT"):
        PB2(TOY_BOUNDS, 4).load_state_dict(PBT(TOY_BOUNDS, 4).state_dict())
    with pytest.raises(ValueError, match="cat_exp"):
        PB2(TOY_BOUNDS, 4, categorical=CATEGORICAL, cat_exp="cocabo").load_state_dict(
            PB2(TOY_BOUNDS, 4, categorical=CATEGORICAL).state_dict())


# -- bad arguments: one ValueError naming the argument -------------------------------------------
@pytest.mark.parametrize("kwargs, name", [
    ({"cat_exp": "thompson"}, "cat_exp"),
    ({"hyperparam_bounds": {"lr": [0.1, 1e-4]}}, "hyperparam_bounds"),
    ({"hyperparam_bounds": {"lr": [0.0, float("inf")]}}, "hyperparam_bounds"),
    ({"hyperparam_bounds": {"lr": [float("nan"), 1.0]}}, "hyperparam_bounds"),
    ({"hyperparam_bounds": {"lr": [1.0]}}, "hyperparam_bounds"),
    ({"hyperparam_bounds": {}}, "hyperparam_bounds"),
    ({"quantile_fraction": 0.0}, "quantile_fraction"),
    ({"quantile_fraction": 0.6}, "quantile_fraction"),
    ({"population_size": 0}, "population_size"),
    ({"perturbation_interval": -1}, "perturbation_interval"),
    ({"seed": -1}, "seed"),
    ({"mode": "maximise"}, "mode"),
    ({"categorical": {"aug": []}}, "categorical"),
    ({"categorical": {"a": [1], "b": [2]}}, "categorical"),
])
def test_bad_constructor_arguments_raise_one_value_error_naming_them(kwargs, name):
    arguments = {"hyperparam_bounds": TOY_BOUNDS, "population_size": 4, **kwargs}
    with pytest.raises(ValueError, match=name):
        PB2(**arguments)


@pytest.mark.parametrize("field", ["times", "scores", "configs"])
def test_a_report_of_the_wrong_length_raises_naming_the_argument(field):
    scheduler = PBT(TOY_BOUNDS, 4)
    report = {"times": [1.0] * 4, "scores": [0.0] * 4, "configs": scheduler.initial_configs()}
    report[field] = report[field][:3]
    with pytest.raises(ValueError, match=rf"{field}: expected one per member \(4\), got 3"):
        scheduler.report(**report)


def test_a_config_without_a_hyperparameter_raises():
    scheduler = PB2(TOY_BOUNDS, 2)
    with pytest.raises(ValueError, match="configs.*'h1'"):
        scheduler.report([1.0, 1.0], [0.0, 1.0], [{"h0": 0.5}, {"h0": 0.5, "h1": 0.5}])


# -- the README's example, from a copy of the folder ------------------------------------------------
@pytest.mark.slow
def test_readme_example_runs_from_a_copy_and_pb2_beats_random_configs(tmp_path):
    result = run_readme_example("pb2_procgen", tmp_path)
    assert result.returncode == 0, result.stderr
    assert "PB2 best -log10(MSE)" in result.stdout and "random fixed configs' median" in result.stdout
