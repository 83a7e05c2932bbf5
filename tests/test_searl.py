"""SEARL-TD3: the generation loop's accounting, selection, mutations and growth."""
import copy

import numpy as np
import pytest
import torch

from common.buffers import ReplayBuffer
from common.envs import StepCounter, make_env
from common.parallel import WorkerPool
from searl import algorithm as searl
from searl.evolvable import EvolvableMLP
from searl.mutations import mutate_scalar, parameter_noise
from searl.td3 import ACTIVATIONS, HYPERPARAMETER_BOUNDS, TD3_DEFAULTS, TD3Individual


def td3_individual(index=0, seed=0, **overrides):
    return TD3Individual(index, 3, 1, {**TD3_DEFAULTS, **overrides}, seed)


def pendulum_buffer(n=600, seed=0):
    env = make_env("Pendulum-v1", seed)
    buffer = ReplayBuffer(10_000, (3,), (1,), seed=seed)
    rng = np.random.default_rng(seed)
    searl.evaluate_individual(None, env, buffer, rng, random_actions=True, min_steps=n)
    return buffer


# -- Sec. 3.1: evaluation and the step accounting ---------------------------------------------------
def test_every_evaluation_step_is_counted_and_stored():
    counter = StepCounter()
    env = make_env("Pendulum-v1", 0, counter=counter)
    buffer = ReplayBuffer(10_000, (3,), (1,))
    population = [td3_individual(i, seed=i) for i in range(3)]
    evaluations = searl.evaluate_population(population, env, buffer, np.random.default_rng(0),
                                            random_actions=False, min_steps=250)
    # Pendulum episodes are 200 steps: >= 1 episode and >= 250 steps means 2 whole episodes
    assert [e.steps for e in evaluations] == [400, 400, 400]
    assert [e.episodes for e in evaluations] == [2, 2, 2]
    assert counter.count == sum(e.steps for e in evaluations) == buffer.total_added == 1200
    assert [ind.fitness for ind in population] == [[e.fitness] for e in evaluations]
    # time-limit ends are stored as truncated, never as terminated
    assert buffer.truncated[:1200].sum() == 6 and buffer.terminated[:1200].sum() == 0


def test_first_generation_acts_uniformly_at_random_in_the_policy_range():
    env = make_env("Pendulum-v1", 0)
    buffer = ReplayBuffer(1000, (3,), (1,))
    searl.evaluate_individual(None, env, buffer, np.random.default_rng(0), True, min_steps=200)
    actions = buffer.actions[:200, 0]
    assert actions.min() >= -1 and actions.max() <= 1 and actions.std() > 0.5  # U(-1,1): 0.577


def test_policy_actions_are_scaled_to_the_env_bounds():
    env = make_env("Pendulum-v1", 0)  # torque in [-2, 2]
    assert np.allclose(searl.to_env_action(np.array([-1.0]), env.action_space), [-2.0])
    assert np.allclose(searl.to_env_action(np.array([0.5]), env.action_space), [1.0])


# -- Sec. 3.2: selection ----------------------------------------------------------------------------
def test_elite_survives_selection_unchanged_and_tournaments_follow_the_rule():
    population = [td3_individual(i, seed=i) for i in range(6)]
    fitness = [3.0, 9.0, 1.0, 7.0, 5.0, 2.0]
    for ind, f in zip(population, fitness):
        ind.fitness.append(f)
    elite, selected, next_index = searl.tournament_selection(population, 3, np.random.default_rng(4), 6)
    assert elite is population[1]
    assert selected[0].parent == 1 and selected[0].index == 6
    for a, b in zip(selected[0].actor.parameters(), population[1].actor.parameters()):
        assert torch.equal(a, b)
    # replay the tournaments with the same draws
    rng = np.random.default_rng(4)
    expected = []
    for _ in range(5):
        entrants = rng.integers(0, 6, size=3)
        expected.append(int(entrants[np.argmax(np.array(fitness)[entrants])]))
    assert [ind.parent for ind in selected[1:]] == expected
    assert [ind.index for ind in selected] == list(range(6, 12)) and next_index == 12
    # clones are independent of their parents
    with torch.no_grad():
        next(selected[0].actor.parameters()).add_(1.0)
    assert not torch.equal(next(selected[0].actor.parameters()), next(population[1].actor.parameters()))


# -- Sec. 3.3: mutation ------------------------------------------------------------------------------
def test_each_member_gets_exactly_one_mutation_with_the_given_probabilities():
    rng = np.random.default_rng(0)
    counts = dict.fromkeys(searl.MUTATIONS, 0)
    individual = td3_individual()
    for _ in range(400):
        description = searl.mutate(copy.deepcopy(individual), rng, [0.2] * 5)
        kind = "none" if description == "none" else description.split("(")[0]
        counts[kind] += 1
    assert all(50 <= count <= 110 for count in counts.values()), counts
    only_architecture = searl.mutate(individual, rng, [0, 0, 1, 0, 0])
    assert only_architecture.startswith("architecture")


def test_rl_hyperparameter_mutations_stay_in_bounds_and_always_move():
    individual = td3_individual(mutate_hyperparameters=list(HYPERPARAMETER_BOUNDS) + ["optimizer"])
    rng = np.random.default_rng(1)
    for _ in range(300):
        before = dict(individual.hp)
        individual.mutate_rl_hyperparameter(rng)
        for name, (low, high) in HYPERPARAMETER_BOUNDS.items():
            assert low <= individual.hp[name] <= high
        changed = [k for k in before if before[k] != individual.hp[k]]
        assert len(changed) <= 1
    assert isinstance(individual.hp["batch_size"], int)
    # an integer can always move: int(1 * 1.2) == 1 would be a mutation that does nothing
    assert {mutate_scalar(1, 1, 10, np.random.default_rng(s), integer=True) for s in range(20)} == {1, 2}


def test_activation_mutation_switches_to_another_allowed_activation():
    individual = td3_individual()
    rng = np.random.default_rng(0)
    for _ in range(20):
        before = individual.actor.activation
        individual.mutate_activation(rng)
        assert individual.actor.activation in ACTIVATIONS and individual.actor.activation != before
        assert individual.critics[0].activation == individual.critics[1].activation


def test_parameter_noise_changes_about_ten_percent_of_chosen_matrices():
    torch.manual_seed(0)
    net = EvolvableMLP(20, 20, hidden=[100], layer_norm=False)
    before = [p.detach().clone() for p in net.parameters()]
    changed = parameter_noise(net.parameters(), np.random.default_rng(3))
    diffs = [(p != b).sum().item() for p, b in zip(net.parameters(), before)]
    assert 0 < sum(diffs) <= changed < 400  # below 10% of one or both 2000-entry matrices
    assert diffs[1] == 0 and diffs[3] == 0  # biases are never touched
    assert max(p.abs().max().item() for p in net.parameters()) <= 1e6


def test_parameter_noise_count_is_uniform_below_a_tenth_as_the_reference():
    """The reference draws np.random.randint(ceil(0.1 n)) entries: uniform on 0..ceil(0.1 n)-1."""
    counts = [parameter_noise([torch.ones(40, 50)], np.random.default_rng(seed))
              for seed in range(400)]
    assert min(counts) >= 0 and max(counts) <= 199
    assert abs(np.mean(counts) - 99.5) < 10   # standard error ~2.9
    assert max(counts) > 180 and min(counts) < 20


def test_architecture_mutation_respects_limits_and_applies_to_all_three_networks():
    individual = td3_individual(max_nodes=200)
    rng = np.random.default_rng(0)
    for _ in range(40):
        individual.mutate_architecture(rng)
        hidden = individual.actor.hidden
        assert len(hidden) <= 3 and max(hidden) <= 200
        assert individual.critics[0].hidden == individual.critics[1].hidden == hidden
    assert individual.mutate_architecture(rng) == "architecture(at size limits: unchanged)"


# -- growth keeps the function -----------------------------------------------------------------
@pytest.mark.parametrize("layer_norm", [True, False])
@pytest.mark.parametrize("act", ["relu", "tanh", "elu"])
def test_growth_preserves_the_output_exactly(layer_norm, act):
    torch.manual_seed(0)
    net = EvolvableMLP(5, 2, [16, 8], act, "tanh", layer_norm=layer_norm)
    with torch.no_grad():  # move away from the initialisation
        for p in net.parameters():
            p.add_(0.3 * torch.randn_like(p))
    x = torch.randn(256, 5)
    y = net(x)
    rng = np.random.default_rng(0)
    for grow in (lambda: net.add_nodes(0, 32, rng), lambda: net.add_layer(rng),
                 lambda: net.add_nodes(2, 16, rng), lambda: net.add_nodes(1, 64, rng)):
        grow()
        assert (net(x) - y).abs().max().item() < 1e-5
    assert net.hidden == [48, 72, 24]  # every layer's width is its own
    # and the new units learn: gradients reach their incoming weights (via LayerNorm) or,
    # without LayerNorm, their outgoing weights
    net(x).pow(2).mean().backward()
    new_in = net.layers[0].linear.weight.grad[16:].abs().sum()
    new_out = net.layers[1].linear.weight.grad[:, 16:].abs().sum()
    assert new_in > 0 if layer_norm else new_out > 0


@pytest.mark.parametrize("grow", ["nodes", "layer"])
def test_reference_slice_copy_changes_the_output_far_more(grow):
    torch.manual_seed(0)
    net = EvolvableMLP(5, 2, [64], "relu", "tanh")
    x = torch.randn(256, 5)
    y = net(x)
    preserved, sliced = copy.deepcopy(net), copy.deepcopy(net)
    for candidate, preserve in ((preserved, True), (sliced, False)):
        if grow == "nodes":
            candidate.add_nodes(0, 32, np.random.default_rng(0), preserve=preserve)
        else:
            candidate.add_layer(np.random.default_rng(0), preserve=preserve)
    assert (preserved(x) - y).abs().mean() < 1e-6
    assert (sliced(x) - y).abs().mean() > 1e-3
    old_state = net.state_dict()
    for name, param in sliced.state_dict().items():  # the old weights are in the new slices
        if name in old_state:
            old = old_state[name]
            assert torch.equal(param[tuple(slice(0, n) for n in old.shape)], old)


def test_td3_individual_growth_keeps_actions_and_q_values():
    individual = td3_individual()
    buffer = pendulum_buffer()
    individual.learn(buffer, 50, np.random.default_rng(0))
    batch = buffer.sample(256)
    q_in = torch.cat([batch.obs, batch.actions], 1)
    before = individual.actor(batch.obs), individual.critics[0](q_in)
    rng = np.random.default_rng(0)
    for _ in range(6):
        individual.mutate_architecture(rng)
        assert (individual.actor(batch.obs) - before[0]).abs().max() < 1e-5
        assert (individual.critics[0](q_in) - before[1]).abs().max() < 1e-5


# -- Sec. 3.4: training ------------------------------------------------------------------------------
@pytest.mark.parametrize("steps, fraction, low, high, expected", [
    (2000, 0.5, 250, None, 1000), (300, 0.5, 250, None, 250),
    (10**6, 0.5, 1000, 50_000, 50_000), (100, 0.5, 1000, 50_000, 1000)])
def test_updates_per_individual(steps, fraction, low, high, expected):
    assert searl.updates_per_individual(steps, fraction, low, high) == expected


@pytest.mark.parametrize("terminated, truncated", [(False, True), (True, False)])
def test_td3_target_is_min_of_twin_target_critics_and_ignores_truncation(terminated, truncated):
    individual = td3_individual(policy_noise=0.0)
    buffer = ReplayBuffer(4, (3,), (1,))
    buffer.add(np.ones(3, np.float32), [0.5], 1.0, np.zeros(3, np.float32), terminated, truncated)
    with torch.no_grad():
        s_a = torch.tensor([[1.0, 1.0, 1.0, 0.5]])
        next_s = torch.zeros(1, 3)
        next_s_a = torch.cat([next_s, individual.actor(next_s)], 1)
        next_q = torch.min(individual.critics[0](next_s_a), individual.critics[1](next_s_a))
        y = 1.0 + 0.99 * (0.0 if terminated else next_q)
        expected = sum((critic(s_a) - y).pow(2).item() for critic in individual.critics) / 2
    loss = individual.learn(buffer, 1, np.random.default_rng(0))["critic_loss"]
    assert loss == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("reset_each_learn", [True, False])
def test_td3_actor_moves_every_policy_delay_critic_updates(reset_each_learn):
    """The delay counts updates since the targets were made, also across one-update calls (the
    single-agent baseline learns one step per env step)."""
    individual = td3_individual(reset_each_learn=reset_each_learn)
    buffer = pendulum_buffer()
    rng = np.random.default_rng(0)
    moved = []
    for _ in range(6):
        before = [p.clone() for p in individual.actor.parameters()]
        individual.learn(buffer, 1, rng)
        moved.append(any(not torch.equal(a, b) for a, b in zip(before, individual.actor.parameters())))
    # a fresh start per call (SEARL's population) makes every call's only update an actor update
    assert moved == ([True] * 6 if reset_each_learn else [True, False] * 3)


def test_training_in_worker_processes_matches_serial():
    buffer = pendulum_buffer()
    population = [td3_individual(i, seed=i) for i in range(2)]
    results = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as train.py does (torch_threads: 1); workers run one thread each
    try:
        for backend in ("serial", "process"):
            with WorkerPool(2, backend) as pool:
                trained = searl.train_population(copy.deepcopy(population), buffer, 30,
                                                 np.random.default_rng(5), pool)
            results.append([torch.cat([p.flatten() for p in ind.actor.parameters()])
                            for ind in trained])
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(a, b) for a, b in zip(*results))
    assert trained[0].train_steps == 30
