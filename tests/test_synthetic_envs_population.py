"""The batched population of DDQN agents on SEs (synthetic_envs/population.py) against the
one-agent-at-a-time path it replaces."""
import pytest
import torch

from common.nets import mlp
from synthetic_envs import inner, nes, population
from synthetic_envs.envs import env_spec, make_real_env
from synthetic_envs.proxies import SyntheticEnv, build_proxy, set_flat
from synthetic_envs.train import DEFAULTS

PROXY = {"hidden_size": 83, "hidden_layer": 1, "activation": "leaky_relu"}


def cartpole_setup(max_episodes=4, **changes):
    hp = dict(inner.agent_hp("ddqn", "cartpole"), max_episodes=max_episodes)
    setup = dict(DEFAULTS, kind="se", env="cartpole", agent="ddqn", proxy=PROXY, agent_hp=hp, sigma=0.0124,
                 inner=dict(DEFAULTS["inner"], test_episodes=3))
    return dict(setup, **changes)


def jobs_of(setup, n):
    psi = nes.initial_psi(setup, 0)
    return [(psi + nes.noise(10 + i, len(psi), 0.05), 100 + i) for i in range(n)]


def one_at_a_time(setup, psi, seed):
    """nes.score_proxy's agent, kept so its weights can be compared."""
    torch.manual_seed(seed)
    spec = env_spec("cartpole")
    real_env, test_env = make_real_env("cartpole", seed), make_real_env("cartpole", seed + 100)
    agent = inner.make_agent("ddqn", real_env, setup["agent_hp"], seed)
    se = SyntheticEnv(set_flat(build_proxy("se", real_env, PROXY, 0, spec.info_dim), psi), real_env, spec.max_steps)
    result = inner.train_agent(agent, se, test_env, setup["agent_hp"], dict(setup["inner"], threshold=spec.threshold),
                               on_se=True)
    return result, agent


def test_stacked_networks_compute_what_each_network_computes():
    torch.manual_seed(0)
    nets = [mlp(4, 2, (57,), act) for act in ("tanh",) * 3]
    stacked = population.StackedMLP(nets)
    x = torch.randn(3, 7, 4)
    expected = torch.stack([net(x[i]) for i, net in enumerate(nets)])
    assert torch.allclose(stacked.forward(x), expected, atol=1e-6)
    with pytest.raises(ValueError, match="activation parameters"):   # PReLU slopes must agree
        prelus = [mlp(4, 2, (8,), "prelu") for _ in range(2)]
        with torch.no_grad():
            prelus[1][1].weight.fill_(0.5)
        population.StackedMLP(prelus)


def test_each_agent_trains_as_it_does_alone():
    setup = cartpole_setup(max_episodes=3)
    jobs = jobs_of(setup, 3)
    together = population.train_on_ses(setup, jobs)
    for (psi, seed), batched in zip(jobs, together):
        alone, agent = one_at_a_time(setup, psi, seed)
        assert (batched.episodes, batched.train_steps, batched.real_test_steps) == \
            (alone.episodes, alone.train_steps, alone.real_test_steps)
        assert batched.final_return == pytest.approx(alone.final_return)
        assert batched.real_train_steps == 0 and batched.curve[-1] == (batched.train_steps, 0, batched.final_return)


def test_learned_weights_match_the_one_at_a_time_agent():
    setup = cartpole_setup(max_episodes=3)
    (psi, seed), = jobs_of(setup, 1)
    alone, agent = one_at_a_time(setup, psi, seed)
    spec = env_spec("cartpole")
    torch.manual_seed(seed)
    real_env = make_real_env("cartpole", seed)
    twin = inner.make_agent("ddqn", real_env, setup["agent_hp"], seed)
    se = SyntheticEnv(set_flat(build_proxy("se", real_env, PROXY, 0, spec.info_dim), psi), real_env, spec.max_steps)
    pop = population.DDQNPopulation([twin], 4)
    population._train(pop, population.StackedSE([se.model]), [se], setup["agent_hp"], setup["inner"])
    pop.write_back(0)
    assert pop.adam_steps[0] > 300   # two learning episodes of updates
    for mine, theirs in zip(list(twin.q.parameters()) + list(twin.q_target.parameters()),
                            list(agent.q.parameters()) + list(agent.q_target.parameters())):
        assert torch.allclose(mine, theirs, atol=1e-5), (mine - theirs).abs().max()
    assert twin.eps == agent.eps and pop.results[0].train_steps == alone.train_steps


def test_an_agents_result_does_not_depend_on_its_population():
    setup = cartpole_setup(max_episodes=3)
    jobs = jobs_of(setup, 3)
    together = population.train_on_ses(setup, jobs)
    alone = population.train_on_ses(setup, jobs[1:2])[0]
    assert (alone.train_steps, alone.final_return) == (together[1].train_steps, together[1].final_return)


def test_nes_scores_the_workers_as_the_one_task_path_does():
    setup = cartpole_setup(max_episodes=2, num_workers=3)
    state = nes.NESState(psi=nes.initial_psi(setup, 0))
    tasks = nes.worker_tasks(state, setup, seed=0)
    batched = nes.evaluate_workers(tasks)
    assert batched == [nes.evaluate_worker(task) for task in tasks]

    class TwoWorkers:   # two groups, as --workers 2 makes them
        workers = 2

        def map(self, fn, items):
            return [fn(item) for item in items]
    assert nes.score_workers(tasks, setup, TwoWorkers()) == batched


@pytest.mark.parametrize("changes, expected", [
    ({}, True),
    ({"population": False}, False),
    ({"vary_hp": True}, False),
    ({"kind": "rn"}, False),
    ({"agent": "dueling_ddqn"}, False),
])
def test_the_population_path_is_taken_only_where_it_applies(changes, expected):
    assert population.supports(cartpole_setup(**changes)) is expected


def test_a_tabular_se_run_keeps_the_one_task_path():
    setup = dict(DEFAULTS, kind="se", env="cliff", agent="ql", agent_hp=inner.agent_hp("ql", "cliff"))
    assert not population.supports(setup)
    assert not population.supports(dict(cartpole_setup(), agent_hp=dict(cartpole_setup()["agent_hp"],
                                                                        same_action_num=2)))


def test_evaluate_trains_se_agents_as_a_population_with_the_same_records(tmp_path):
    """evaluate.py's SE group: the batched path and the one-job-at-a-time path agree."""
    import json
    import subprocess
    import sys

    from synthetic_envs import evaluate
    run = tmp_path / "se"
    subprocess.run([sys.executable, "synthetic_envs/train.py", "--kind", "se", "--env", "cartpole", "--smoke",
                    "--iterations", "1", "--no-plots", "--out-dir", str(run)], check=True, capture_output=True)
    args = evaluate.parse_args([str(run), "--n-agents", "3", "--max-episodes", "3", "--no-plots"])
    jobs_batched = evaluate.evaluate(run, args)
    config = json.loads((run / "config.json").read_text())
    assert config["population"] is True
    (run / "config.json").write_text(json.dumps(dict(config, population=False)))
    one_by_one = evaluate.evaluate(run, args)
    proxy_a, proxy_b = (r["groups"]["ddqn"]["proxy"]["agents"] for r in (jobs_batched, one_by_one))
    assert [(a["seed"], a["train_steps"], a["episodes"], a["real_train_steps"]) for a in proxy_a] == \
        [(b["seed"], b["train_steps"], b["episodes"], b["real_train_steps"]) for b in proxy_b]
    assert [a["final_return"] for a in proxy_a] == pytest.approx([b["final_return"] for b in proxy_b])
    assert jobs_batched["groups"]["ddqn"]["baseline"] == one_by_one["groups"]["ddqn"]["baseline"]
