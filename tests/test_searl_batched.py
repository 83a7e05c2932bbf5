"""SEARL-TD3's batched population (searl/batched_td3.py): the same numbers as one by one."""
import copy

import numpy as np
import pytest
import torch
from helpers import run_in_process

from common.buffers import ReplayBuffer
from common.envs import make_env
from common.parallel import WorkerPool
from searl import algorithm as searl
from searl.batched_td3 import PopulationPolicy, StackedMLP, batching_groups, learn_together
from searl.evolvable import EvolvableMLP
from searl.td3 import TD3_DEFAULTS, TD3Individual

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="torch sees no CUDA device")


@pytest.fixture
def float64():
    """Float64 makes the comparison about the maths, not the order of float32 roundings."""
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(before)


def random_buffer(n=3000, obs_dim=3, action_dim=1, seed=0):
    rng = np.random.default_rng(seed)
    buffer = ReplayBuffer(10_000, (obs_dim,), (action_dim,), seed=seed)
    buffer.add_batch(rng.normal(size=(n, obs_dim)), rng.uniform(-1, 1, (n, action_dim)),
                     rng.normal(size=n), rng.normal(size=(n, obs_dim)), rng.random(n) < 0.05,
                     np.zeros(n, bool))
    return buffer


def grown_population(config=None, seed=0, size=5):
    """Individuals of different widths, depths (residual layers) and activations."""
    torch.manual_seed(seed)
    config = {**TD3_DEFAULTS, "hidden": [16], "max_nodes": 120, **(config or {})}
    population = [TD3Individual(i, 3, 1, dict(config, lr_actor=1e-3 * (1 + i)), seed=i)
                  for i in range(size)]
    rng = np.random.default_rng(seed)
    for i, individual in enumerate(population[1:], start=1):
        for _ in range(i):
            individual.mutate_architecture(rng)
        if i % 2:
            individual.mutate_activation(rng)
    return population


def outputs(individual, x):
    with torch.no_grad():
        action = individual.actor(x)
        q_in = torch.cat([x, action], 1)
        return torch.cat([action, individual.critics[0](q_in), individual.critics[1](q_in)], 1)


def assert_close(a, b, tol=1e-5):
    scale = max(a.abs().max().item(), 1e-8)
    assert (a - b).abs().max().item() <= tol * scale


def test_growth_gives_per_layer_widths_and_residual_layers(float64):
    population = grown_population()
    shapes = [(ind.actor.hidden, ind.actor.skips) for ind in population]
    assert len({tuple(h) for h, _ in shapes}) >= 4           # widths differ between individuals
    assert any(len(set(h)) > 1 for h, _ in shapes)           # and between layers of one network
    assert any(any(s) for _, s in shapes)                     # some have residual layers
    assert len({ind.actor.activation for ind in population}) > 1


def test_stacked_forward_equals_each_network(float64):
    nets = [ind.actor for ind in grown_population()]
    stack = StackedMLP(nets)
    x = torch.randn(len(nets), 7, 3)
    y = stack.forward(stack.params, x)
    for i, net in enumerate(nets):
        assert_close(net(x[i]), y[i], 1e-12)


@pytest.mark.parametrize("optimizer", ["adam", "adamax", "rmsprop", "sgd"])
def test_learn_together_equals_learn_one_by_one(float64, optimizer):
    population = grown_population({"optimizer": optimizer})
    buffer = random_buffer()
    serial, batched = copy.deepcopy(population), copy.deepcopy(population)
    for i, individual in enumerate(serial):
        individual.learn(buffer, 25, np.random.default_rng(100 + i))
    learn_together(batched, buffer, 25, [np.random.default_rng(100 + i) for i in range(len(batched))])
    x = torch.randn(64, 3)
    for a, b, before in zip(serial, batched, population):
        assert_close(outputs(a, x), outputs(b, x), 1e-9)
        assert (outputs(a, x) - outputs(before, x)).abs().max() > 1e-4   # and training moved them


def test_networks_that_start_with_several_plain_layers_train_batched(float64):
    population = [TD3Individual(i, 3, 1, {**TD3_DEFAULTS, "hidden": [16, 12]}, seed=i) for i in range(3)]
    buffer = random_buffer()
    serial, batched = copy.deepcopy(population), copy.deepcopy(population)
    for i, individual in enumerate(serial):
        individual.learn(buffer, 10, np.random.default_rng(i))
    learn_together(batched, buffer, 10, [np.random.default_rng(i) for i in range(3)])
    x = torch.randn(16, 3)
    for a, b in zip(serial, batched):
        assert_close(outputs(a, x), outputs(b, x), 1e-9)


def test_hyperparameters_that_change_the_computation_split_the_population():
    population = grown_population()
    population[1].hp["batch_size"] = 64
    population[2].hp["policy_delay"] = 3
    population[4].hp["policy_delay"] = 3
    population[3].hp["lr_critic"] = 5e-4   # learning rates never split
    depth = [len(ind.actor.layers) for ind in population]
    expected = [[0, 3], [1], [2, 4]] if depth[0] == depth[3] and depth[2] == depth[4] else None
    groups = sorted(map(sorted, batching_groups(population)))
    assert all(len({depth[i] for i in group}) == 1 for group in groups)
    assert expected is None or groups == expected


def run_generations(batched: bool, generations=3, seed=0):
    """The generation loop of searl/train.py (mutate -> train -> evaluate -> select) on
    Pendulum-v1, with architecture and activation mutations likely every generation."""
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)  # the networks' initial weights
    config = {**TD3_DEFAULTS, "hidden": [16], "max_nodes": 200}
    population = [TD3Individual(i, 3, 1, dict(config), seed=i) for i in range(4)]
    envs = [make_env("Pendulum-v1", seed) for _ in population]
    buffer = ReplayBuffer(10_000, (3,), (1,), seed=seed)
    probabilities = [0.1, 0.2, 0.3, 0.3, 0.1]
    history, next_index = [], len(population)
    with WorkerPool(1, "serial") as pool:
        for generation in range(generations):
            if generation:
                history.append(searl.mutate_population(population, rng, probabilities))
                population = searl.train_population(population, buffer, 40, rng, pool,
                                                    batched=batched)
            policy = PopulationPolicy(population) if batched else None
            searl.evaluate_population(population, envs if batched else envs[:1], buffer, rng,
                                      random_actions=generation == 0, min_steps=100,
                                      policy=policy)
            _, population, next_index = searl.tournament_selection(population, 3, rng, next_index)
    return population, buffer, history


def test_generations_with_growth_give_each_individual_the_same_outputs(float64):
    """The issue's exactness check: several generations with growth and activation mutations,
    batched (training and side-by-side evaluation) vs one by one, from the same seed."""
    batched, batched_buffer, history = run_generations(batched=True)
    serial, serial_buffer, serial_history = run_generations(batched=False)
    assert history == serial_history
    mutations = " ".join(m for generation in history for m in generation)
    assert "architecture(" in mutations and "activation(" in mutations
    assert len({tuple(ind.actor.hidden) for ind in batched}) > 1 or "add layer" in mutations
    assert np.allclose(batched_buffer.obs[:len(batched_buffer)], serial_buffer.obs[:len(serial_buffer)],
                       rtol=1e-5, atol=1e-6)
    x = torch.randn(128, 3)
    for a, b in zip(batched, serial):
        assert a.fitness == pytest.approx(b.fitness, rel=1e-5)
        assert_close(outputs(a, x), outputs(b, x))


def test_side_by_side_evaluation_counts_every_step_and_plays_whole_episodes():
    population = grown_population(size=3)
    envs = [make_env("Pendulum-v1", 0) for _ in population]
    buffer = ReplayBuffer(10_000, (3,), (1,))
    evaluations = searl.evaluate_population(population, envs, buffer, np.random.default_rng(0),
                                            random_actions=False, min_steps=250,
                                            policy=PopulationPolicy(population))
    assert [e.steps for e in evaluations] == [400, 400, 400]     # two whole 200-step episodes
    assert len(buffer) == 1200 and buffer.truncated[:len(buffer)].sum() == 6


def test_train_population_batched_in_worker_processes_matches_serial_backend(float64):
    """Workers get other chunks of the population (so other paddings): equal up to rounding."""
    buffer = random_buffer()
    population = grown_population()
    results = []
    for backend in ("serial", "process"):
        with WorkerPool(2, backend) as pool:
            trained = searl.train_population(copy.deepcopy(population), buffer, 20,
                                             np.random.default_rng(5), pool, batched=True)
        results.append([torch.cat([p.flatten() for p in ind.actor.parameters()]) for ind in trained])
    for a, b in zip(*results):
        assert_close(a, b, 1e-9)


@CUDA
def test_growth_and_batched_training_on_cuda():
    config = {**TD3_DEFAULTS, "hidden": [16]}
    population = [TD3Individual(i, 3, 1, dict(config), seed=i, device="cuda") for i in range(3)]
    rng = np.random.default_rng(0)
    for individual in population:
        individual.mutate_architecture(rng)
        individual.mutate_architecture(rng)
        assert all(p.is_cuda for p in individual.actor.parameters())
    buffer = random_buffer()
    cpu = copy.deepcopy(population)
    for individual in cpu:
        individual.device = torch.device("cpu")
        for net in (individual.actor, *individual.critics):
            net.to("cpu")
    learn_together(population, buffer, 10, [np.random.default_rng(i) for i in range(3)])
    for i, individual in enumerate(cpu):
        individual.learn(buffer, 10, np.random.default_rng(i))
    x = torch.randn(32, 3)
    for gpu, host in zip(population, cpu):
        assert_close(outputs(gpu, x.cuda()).cpu(), outputs(host, x), 1e-3)
    actions = PopulationPolicy(population).act(np.zeros((3, 3), np.float32), explore=True)
    assert actions.shape == (3, 1)


def test_exported_network_rebuilds_exactly(float64):
    for individual in grown_population():
        arch = individual.actor.architecture()
        rebuilt = EvolvableMLP.from_architecture(arch, individual.actor.state_dict())
        x = torch.randn(16, 3)
        assert torch.equal(rebuilt(x), individual.actor(x))


def test_evaluate_refuses_a_bad_path_with_one_line(tmp_path):
    result = run_in_process("searl.evaluate", str(tmp_path))
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "no exported policy" in result.stderr
    (tmp_path / "elite_policy.pt").write_bytes(b"not a checkpoint")
    result = run_in_process("searl.evaluate", str(tmp_path))
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "cannot read" in result.stderr


def test_split_evenly_finds_the_cheapest_cut_of_the_sorted_sizes():
    """Brute force over every cut of the sorted sizes into k runs: the largest padded cost
    (members x largest member) of the chosen split is the smallest there is."""
    import itertools

    from searl.algorithm import split_evenly
    rng = np.random.default_rng(0)
    for _ in range(40):
        n = int(rng.integers(1, 9))
        costs = [int(c) for c in rng.integers(1, 50, size=n)]
        k = int(rng.integers(1, n + 1))
        chunks = split_evenly(costs, k)
        assert len(chunks) == k and sorted(i for c in chunks for i in c) == list(range(n))
        padded = max(len(c) * max(costs[i] for i in c) for c in chunks)
        ordered = sorted(costs)
        best = min(max((b - a) * ordered[b - 1] for a, b in zip((0,) + cut, cut + (n,)))
                   for cut in itertools.combinations(range(1, n), k - 1))
        assert padded == best


def test_worker_chunks_group_similar_networks_and_cover_each_group_once():
    from searl.algorithm import network_size, worker_chunks
    population = grown_population()
    groups = TD3Individual.batching_groups(population)
    chunks = worker_chunks(population, groups, 2)
    assert sorted(i for c in chunks for i in c) == sorted(i for g in groups for i in g)
    assert all(any(set(c) <= set(g) for g in groups) for c in chunks)
    cost = [len(c) * max(network_size(population[i]) for i in c) for c in chunks]
    assert cost == sorted(cost, reverse=True)     # the costliest job first
    assert worker_chunks(population, groups, 1) == sorted(groups, key=lambda g: -len(g) * max(
        network_size(population[i]) for i in g))


def _trained_parameters(population, compile, updates=12):
    population = copy.deepcopy(population)
    buffer = random_buffer()
    for group in batching_groups(population):
        if len(group) > 1:
            learn_together([population[i] for i in group], buffer, updates,
                           [np.random.default_rng(10 + i) for i in group], compile=compile)
    return [torch.cat([p.detach().flatten() for net in (ind.actor, *ind.critics)
                       for p in net.parameters()]) for ind in population]


def test_compile_falls_back_to_eager_in_one_line_where_compiling_fails(broken_compiler, capsys):
    """No C++ compiler (or any other failure inside torch.compile): the same numbers as eager."""
    population = grown_population()
    eager = _trained_parameters(population, compile=False)
    fallen_back = _trained_parameters(population, compile=True)
    for a, b in zip(eager, fallen_back):
        assert torch.equal(a, b)
    err = capsys.readouterr().err
    assert err.count("torch.compile failed") == 1 and err.count("\n") == 1, err
    assert "No working C++ compiler found" in err and "training eagerly" in err


@pytest.mark.slow
def test_compiled_update_equals_eager_to_float_rounding(float64):
    """torch.compile of the batched losses and gradients (searl --compile): the same training,
    up to the order of float roundings, on a grown population (widths, depths, activations)."""
    population = grown_population(size=3)
    assert len(batching_groups(population)) < 3     # some individuals share a group
    eager = _trained_parameters(population, compile=False)
    compiled = _trained_parameters(population, compile=True)
    for a, b in zip(eager, compiled):
        assert_close(a, b, 1e-9)
