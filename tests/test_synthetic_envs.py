"""Learning synthetic environments and reward networks (Ferreira et al., ICLR 2022): the Cliff
walk, potential-based shaping, the SE and RN proxies, NES (score transforms and the update),
the Cliff RN learning result, and train.py / evaluate.py end to end."""
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from helpers import ROOT, rows, run_train, without_wall_time

from common.cli import Diverged, UsageError, run_main
from synthetic_envs import evaluate as se_evaluate
from synthetic_envs import inner, nes
from synthetic_envs import train as se_train
from synthetic_envs.envs import CliffWalk, make_real_env
from synthetic_envs.proxies import (RewardEnv, RewardNet, SyntheticEnv, SyntheticEnvModel, get_flat,
                                    perturbed_parameters, set_flat, shaped_reward)
from synthetic_envs.tabular import EVAL_OVERRIDES, TABULAR_HP

pytestmark = pytest.mark.filterwarnings("ignore:.*CartPole-v0 is out of date")  # the paper's CartPole

RIGHT, LEFT, DOWN, UP = 0, 1, 2, 3
START, GOAL = 36, 47


def train(*args, timeout=600):
    return run_train("synthetic_envs", *args, timeout=timeout)


def run_evaluate(*args, timeout=600):
    return subprocess.run([sys.executable, str(ROOT / "synthetic_envs" / "evaluate.py"), *args],
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT)


# -- 1. the Cliff walk -----------------------------------------------------------------------------
def test_cliff_optimal_path_returns_minus_12_and_ends_at_the_goal():
    env = CliffWalk()
    state, _ = env.reset()
    assert state == START
    path = [UP] + [RIGHT] * 11 + [DOWN]
    total, states = 0.0, []
    for i, action in enumerate(path):
        state, reward, terminated, truncated, info = env.step(action)
        states.append(state)
        total += reward
        assert terminated == (i == len(path) - 1) and not truncated
        expected_vector = [0, 0, 1] if i == len(path) - 1 else [1, 0, 0]  # (step, cliff, goal)
        assert info["vector"].tolist() == expected_vector
    assert total == -12.0 and state == GOAL
    assert states[:3] == [24, 25, 26] and states[-2] == 35  # along row 2, then down into the goal


def test_cliff_step_right_from_the_start_falls_into_the_cliff():
    env = CliffWalk()
    env.reset()
    state, reward, terminated, truncated, info = env.step(RIGHT)
    assert (state, reward, terminated, truncated) == (37, -100.0, True, False)
    assert info["vector"].tolist() == [0, 1, 0]


@pytest.mark.parametrize("state, action", [(START, LEFT), (START, DOWN), (0, UP), (0, LEFT),
                                           (11, UP), (11, RIGHT), (23, RIGHT)])
def test_cliff_walls_keep_the_state(state, action):
    env = CliffWalk()
    env.reset()
    env.state = state
    nxt, reward, terminated, truncated, info = env.step(action)
    assert (nxt, reward, terminated, truncated) == (state, -1.0, False, False)
    assert info["vector"].tolist() == [1, 0, 0]


def test_cliff_truncates_after_50_non_terminal_steps_and_reset_restarts():
    env = CliffWalk()
    env.reset()
    for t in range(1, 51):
        state, reward, terminated, truncated, _ = env.step(LEFT)  # into the wall at the start
        assert state == START and reward == -1.0 and not terminated
        assert truncated == (t == 50)
    assert env.reset()[0] == START and env.t == 0
    assert not env.step(UP)[3]


# -- 2. potential-based shaping keeps the optimal policy --------------------------------------------
def cliff_tables():
    env = CliffWalk()
    nxt = np.array([[move[0] for move in row] for row in env.transitions])
    reward = np.array([[move[1] for move in row] for row in env.transitions])
    terminal = np.array([[move[2] for move in row] for row in env.transitions])
    non_terminal = [s for s in range(env.n_states) if s not in env.cliff and s != env.goal]
    return nxt, reward, terminal, non_terminal


def optimal_action_sets(reward, nxt, terminal, gamma=0.8, sweeps=300):
    """Value iteration on the deterministic MDP; per state the set of greedy actions."""
    values = np.zeros(reward.shape[0])
    for _ in range(sweeps):  # 0.8^300: converged far below the tolerance
        q = reward + np.where(terminal, 0.0, gamma * values[nxt])
        values = q.max(axis=1)
    return [frozenset(np.flatnonzero(row >= row.max() - 1e-6).tolist()) for row in q]


def shaped_table(mode, phi, nxt, reward, terminal, zero_terminal=True, gamma=0.8):
    table = np.zeros(reward.shape)
    for s in range(reward.shape[0]):
        for a in range(reward.shape[1]):
            phi_next = 0.0 if (terminal[s, a] and zero_terminal) else phi[nxt[s, a]]
            table[s, a] = shaped_reward(mode, reward[s, a], gamma, phi[s], phi_next)
    return table


def test_value_iteration_finds_the_known_cliff_policy():
    nxt, reward, terminal, non_terminal = cliff_tables()
    policy = optimal_action_sets(reward, nxt, terminal)
    assert policy[START] == {UP} and policy[35] == {DOWN}  # the safe row is row 2
    assert all(policy[s] == {RIGHT} for s in range(24, 35))
    assert policy[0] == {RIGHT, DOWN} and policy[11] == {DOWN}  # equally short from the top row


@pytest.mark.parametrize("seed", range(5))
def test_potential_shaping_mode_2_keeps_the_optimal_policy(seed):
    nxt, reward, terminal, non_terminal = cliff_tables()
    phi = np.random.default_rng(seed).normal(0.0, 5.0, len(reward))
    real = optimal_action_sets(reward, nxt, terminal)
    shaped = optimal_action_sets(shaped_table(2, phi, nxt, reward, terminal), nxt, terminal)
    assert [shaped[s] for s in non_terminal] == [real[s] for s in non_terminal]


def test_non_potential_mode_6_and_unzeroed_terminal_potential_change_the_optimal_policy():
    nxt, reward, terminal, non_terminal = cliff_tables()
    real = optimal_action_sets(reward, nxt, terminal)

    def changed(mode, seed, zero_terminal=True):
        phi = np.random.default_rng(seed).normal(0.0, 5.0, len(reward))
        shaped = optimal_action_sets(shaped_table(mode, phi, nxt, reward, terminal, zero_terminal),
                                     nxt, terminal)
        return sum(shaped[s] != real[s] for s in non_terminal)

    assert all(changed(6, seed) > 0 for seed in range(5))  # r + Φ(s'): not policy invariant
    # Φ(terminal s') ≠ 0 breaks the invariance in an episodic task (why RewardEnv zeroes it)
    assert any(changed(2, seed, zero_terminal=False) > 0 for seed in range(10))


def random_net_potential(mode, seed):
    """Φ over the 48 Cliff states of a freshly initialised reward network."""
    torch.manual_seed(seed)
    net = RewardNet(mode, 48, 3, 32, 1, "prelu")
    with torch.no_grad():
        return net(torch.eye(48)).double().numpy()


def greedy_return(policy_sets, max_steps=50):
    """Real return of the greedy policy of value iteration (first optimal action) from the start."""
    env, total = CliffWalk(), 0.0
    state = env.reset()[0]
    for _ in range(max_steps):
        state, reward, terminated, truncated, _ = env.step(min(policy_sets[state]))
        total += reward
        if terminated or truncated:
            break
    return total


@pytest.mark.parametrize("seed", range(20))
def test_mode_1_with_zero_terminal_potential_makes_every_policy_optimal(seed):
    # Q'*(s, a) = −Φ(s) for every action: the shaped return of any episode is −Φ(s0), so no RN
    # can encode the task (the reason the original's terminal handling is the default)
    nxt, reward, terminal, non_terminal = cliff_tables()
    phi = random_net_potential(1, seed)
    shaped = optimal_action_sets(shaped_table(1, phi, nxt, reward, terminal, zero_terminal=True), nxt, terminal)
    assert all(shaped[s] == {0, 1, 2, 3} for s in non_terminal)


def test_mode_1_with_the_originals_terminal_handling_can_encode_the_cliff():
    # a real mode-1 reward network, set by hand: Φ = +100 on the goal, −100 on the cliff, 0 elsewhere
    nxt, reward, terminal, non_terminal = cliff_tables()
    net = RewardNet(1, 48, 3, 32, 1, "prelu")
    first, last = [m for m in net.modules() if isinstance(m, torch.nn.Linear)]
    cliff = CliffWalk().cliff
    with torch.no_grad():
        for p in net.parameters():
            p.zero_()
        first.weight[0, sorted(cliff)] = 1.0   # hidden unit 0: "in the cliff"
        first.weight[1, GOAL] = 1.0            # hidden unit 1: "at the goal"
        last.weight[0, :2] = torch.tensor([-100.0, 100.0])
        phi = net(torch.eye(48)).double().numpy()
    assert phi[GOAL] == 100.0 and all(phi[c] == -100.0 for c in cliff) and phi[START] == 0.0
    original = optimal_action_sets(shaped_table(1, phi, nxt, reward, terminal, zero_terminal=False), nxt, terminal)
    assert greedy_return(original) == -12.0   # the optimum: 13 moves along the cliff
    zeroed = optimal_action_sets(shaped_table(1, phi, nxt, reward, terminal, zero_terminal=True), nxt, terminal)
    assert all(zeroed[s] == {0, 1, 2, 3} for s in non_terminal)  # zero reward everywhere
    # the env the agent trains on gives the same shaped reward on the step into the goal
    env = RewardEnv(net, CliffWalk(), gamma=0.8)
    env.reset()
    env.real_env.state = env.state = 35
    assert env.step(DOWN)[1] == pytest.approx(0.8 * 100.0 - phi[35])


def steps_to_goal():
    """Shortest number of moves from each Cliff cell outside the cliff to the goal (BFS)."""
    cliff, dist, frontier = CliffWalk().cliff, {GOAL: 0}, [GOAL]
    while frontier:
        s = frontier.pop(0)
        r, c = divmod(s, 12)
        for n in [r * 12 + c + dc for dc in (-1, 1) if 0 <= c + dc < 12] + [s + dr for dr in (-12, 12) if 0 <= s + dr < 48]:
            if n not in dist and n not in cliff:
                dist[n] = dist[s] + 1
                frontier.append(n)
    return dist


def q_learning_on_a_mode_1_potential(phi, agents=10):
    """Q-learning agents with the NES settings (ε 0.01, 100 episodes) on a mode-1 RN whose Φ(s) is
    phi[s]: each agent's (steps to solve or None, final test return)."""
    net = RewardNet(1, 48, 3, 48, 1, "prelu")
    first, last = [m for m in net.modules() if isinstance(m, torch.nn.Linear)]
    with torch.no_grad():
        for p in net.parameters():
            p.zero_()
        first.weight.copy_(torch.eye(48))      # hidden unit s: "in cell s" (PReLU keeps 1 as 1)
        last.weight[0] = torch.tensor(phi)
    hp = dict(TABULAR_HP["ql"], max_episodes=100)
    settings = {"test_episodes": 1, "check_every": 1, "early_out_num": 10, "se_plateau": 0.01, "threshold": -20.0}
    results = []
    for seed in range(agents):
        real, test = make_real_env("cliff", seed), make_real_env("cliff", seed + 100)
        result = inner.train_agent(inner.make_agent("ql", real, hp, seed), RewardEnv(net, real, gamma=0.8),
                                   test, hp, settings, on_se=False)
        results.append((result.solved_at, result.final_return))
    return results


def test_a_mode_1_potential_rising_towards_the_goal_makes_q_learning_solve_fast():
    """Mode 1 is learnable by the inner agent, not only representable: Φ growing by 1.3 per move
    towards the goal (faster than 1/γ = 1.25) makes every step closer pay, and Q-learning solves
    in far fewer steps than plain Q-learning (≈ 1500). Φ only on the goal and the cliff encodes
    the task too (value iteration above), but gives an ε 0.01 agent nothing to follow."""
    dist, cliff = steps_to_goal(), CliffWalk().cliff
    rising = q_learning_on_a_mode_1_potential(
        [-100.0 if s in cliff else 10.0 * 1.3 ** (13 - dist[s]) for s in range(48)])
    assert all(final == -12.0 for _, final in rising)
    solved_at = [at for at, _ in rising]
    assert None not in solved_at and np.mean(solved_at) < 200, solved_at
    goal_only = q_learning_on_a_mode_1_potential(
        [100.0 if s == GOAL else -100.0 if s in cliff else 0.0 for s in range(48)])
    assert all(at is None and final == -50.0 for at, final in goal_only)   # they wander


@pytest.mark.parametrize("seed", range(5))
def test_random_potential_networks_keep_the_optimal_policy_with_zero_terminal_potential(seed):
    # Ng et al. (1999): with Φ(terminal) = 0, mode 2 keeps the real optimal actions exactly, and
    # mode 1 (whose optimal set is every action) keeps them among its optimal ones
    nxt, reward, terminal, non_terminal = cliff_tables()
    real = optimal_action_sets(reward, nxt, terminal)
    for mode in (1, 2):
        phi = random_net_potential(mode, seed)
        shaped = optimal_action_sets(shaped_table(mode, phi, nxt, reward, terminal), nxt, terminal)
        if mode == 2:
            assert [shaped[s] for s in non_terminal] == [real[s] for s in non_terminal]
        assert all(real[s] <= shaped[s] for s in non_terminal)


def test_reward_env_gives_r_plus_gamma_phi_next_minus_phi_with_zero_terminal_potential():
    torch.manual_seed(0)
    net = RewardNet(2, 48, 3, 32, 1, "prelu")
    with torch.no_grad():
        phi = net(torch.eye(48)).double().numpy()
    assert np.ptp(phi) > 0.1  # a non-trivial potential
    for zero_terminal in (True, False):
        env = RewardEnv(net, CliffWalk(), gamma=0.8, zero_terminal_potential=zero_terminal)
        assert env.reset()[0] == START
        expected = [(UP, 24, -1.0 + 0.8 * phi[24] - phi[36]),
                    (RIGHT, 25, -1.0 + 0.8 * phi[25] - phi[24]),
                    (RIGHT, 26, -1.0 + 0.8 * phi[26] - phi[25]),
                    (DOWN, 38, -100.0 + 0.8 * (0.0 if zero_terminal else phi[38]) - phi[26])]
        for action, state, shaped in expected:
            nxt, reward, terminated, truncated, info = env.step(action)
            assert nxt == state
            assert reward == pytest.approx(shaped, abs=1e-5)
            assert info["real_reward"] == (-100.0 if state == 38 else -1.0)
        assert terminated


# -- 3. score transforms ---------------------------------------------------------------------------
SCORES, ORIG = [3, -1, 7, 0], [1, 1, 1, 1]
# Kinds 2 and 3: ranks by descending score 7 -> 1, 3 -> 2, 0 -> 3, -1 -> 4; u_k = max(0, ln 3 - ln k)
# = (ln 3, ln 1.5, 0, 0) for ranks 1-4, sum ln 4.5. Kind 3: u / max = (1, ln 1.5 / ln 3, 0, 0).
# Kind 2: u / Σu - 1/4 = (0.480430, 0.019570, -0.25, -0.25), over its max 0.480430.
EXPECTED_TRANSFORMS = {
    0: [0.5, 0.0, 1.0, 0.125],                     # (s + 1) / 8
    1: [2 / 3, 0.0, 1.0, 1 / 3],                   # ascending rank / 3
    2: [0.0407501337, -0.5203750669, 1.0, -0.5203750669],  # (u/Σu - 1/4) / max
    3: [0.3690702464, 0.0, 1.0, 0.0],              # ln 1.5 / ln 3
    4: [0.0, 0.0, 1.0, 0.0],
    5: [0.0, 0.0, 1.0, 0.0],                       # 7 beats the baseline mean 1
    6: [1 / 3, 0.0, 1.0, 0.0],                     # excess (2, 6) / 6
    7: [0.25, 0.0, 0.75, 0.0],                     # excess (2, 6) / 8
}


@pytest.mark.parametrize("kind", sorted(EXPECTED_TRANSFORMS))
def test_score_transform_matches_hand_computed_weights(kind):
    weights = nes.score_transform(SCORES, ORIG, kind)
    np.testing.assert_allclose(weights, EXPECTED_TRANSFORMS[kind], atol=1e-8)


@pytest.mark.parametrize("kind", [5, 6, 7])
def test_score_transforms_5_to_7_are_zero_when_nothing_beats_the_current_proxy(kind):
    assert nes.score_transform(SCORES, [8, 8, 6, 6], kind).tolist() == [0, 0, 0, 0]  # baseline 7
    # kind 4 keeps the single best whatever the baseline
    assert nes.score_transform(SCORES, [8, 8, 6, 6], 4).tolist() == [0, 0, 1, 0]


def test_score_transforms_6_and_7_use_the_mean_of_scores_orig_as_baseline():
    # baseline mean(0, 4) = 2: only 3 and 7 beat it, by 1 and 5
    np.testing.assert_allclose(nes.score_transform(SCORES, [0, 4, 0, 4], 6), [0.2, 0, 1, 0])
    np.testing.assert_allclose(nes.score_transform(SCORES, [0, 4, 0, 4], 7), [1 / 6, 0, 5 / 6, 0])


def test_unknown_score_transform_raises():
    with pytest.raises(ValueError, match="unknown score transform 8"):
        nes.score_transform(SCORES, ORIG, 8)


def test_unknown_score_transform_raises_even_when_nothing_beats_the_baseline():
    with pytest.raises(ValueError, match="unknown score transform 8"):
        nes.score_transform(SCORES, [100, 100, 100, 100], 8)


@pytest.mark.parametrize("kind", [1, 2])
def test_score_transform_of_a_single_worker_is_finite(kind):
    assert np.isfinite(nes.score_transform([3.0], [1.0], kind)).all()


# -- 4. the NES step ---------------------------------------------------------------------------------
class FakePool:
    """Returns fixed worker results instead of training agents."""

    def __init__(self, results):
        self.results, self.calls = results, []

    def map(self, fn, tasks):
        assert fn is nes.evaluate_worker
        self.calls.append(list(tasks))
        return list(self.results)


def nes_setup(**changes):
    setup = {"kind": "rn", "env": "cliff", "num_workers": 4, "num_grad_evals": 1, "sigma": 0.1,
             "step_size": 0.5, "weight_decay": 0.0, "score_transform": 0, "estimator": "mirrored",
             "quit_when_solved": True}
    return dict(setup, **changes)


PSI0 = np.array([0.3, -1.2, 0.7, 2.0, -0.4])


def test_noise_is_reproducible_has_std_sigma_and_differs_between_seeds():
    a, b = nes.noise(123, 100_000, 0.1), nes.noise(123, 100_000, 0.1)
    assert np.array_equal(a, b)
    assert a.std() == pytest.approx(0.1, rel=0.02) and abs(a.mean()) < 0.002
    assert abs(np.corrcoef(a, nes.noise(124, 100_000, 0.1))[0, 1]) < 0.02


def test_worker_tasks_give_every_worker_its_own_noise_and_agents():
    setup = nes_setup(num_workers=6, num_grad_evals=2)
    tasks = nes.worker_tasks(nes.NESState(psi=PSI0.copy()), setup, seed=7)
    assert len(tasks) == 6 and all(np.array_equal(t.psi, PSI0) for t in tasks)
    assert len({t.noise_seed for t in tasks}) == 6
    noises = [nes.noise(t.noise_seed, 5000, 0.1) for t in tasks]
    assert max(abs(np.corrcoef(noises[i], noises[j])[0, 1]) for i in range(6) for j in range(i)) < 0.1
    agent_seeds = [s for t in tasks for group in t.agent_seeds for s in group]
    # the current proxy is scored by one agent, each of ψ ± ε by num_grad_evals (the original)
    assert all([len(group) for group in t.agent_seeds] == [1, 2, 2] for t in tasks)
    assert len(agent_seeds) == 6 * 5 and len(set(agent_seeds)) == len(agent_seeds)
    # the next iteration draws new noise; the same iteration and seed the same noise
    later = nes.worker_tasks(nes.NESState(psi=PSI0.copy(), iteration=1), setup, seed=7)
    assert not {t.noise_seed for t in later} & {t.noise_seed for t in tasks}
    assert [t.noise_seed for t in nes.worker_tasks(nes.NESState(psi=PSI0), setup, 7)] == \
        [t.noise_seed for t in tasks]


def test_mirrored_nes_step_matches_the_hand_computed_update():
    setup = nes_setup(weight_decay=0.1)
    # (orig, +eps, -eps): worker 0 ties (keeps +eps), 1 keeps +eps, 2 and 3 keep -eps
    results = [nes.WorkerResult(-10.0, 0.0, 0.0, 100, 10), nes.WorkerResult(-12.0, 3.0, 1.0, 200, 20),
               nes.WorkerResult(-8.0, -5.0, -1.0, 300, 30), nes.WorkerResult(-10.0, 2.0, 7.0, 400, 40)]
    state = nes.NESState(psi=PSI0.copy())
    eps = [nes.noise(t.noise_seed, len(PSI0), 0.1)
           for t in nes.worker_tasks(nes.NESState(psi=PSI0.copy()), setup, seed=3)]
    pool = FakePool(results)
    stats = nes.nes_step(state, setup, seed=3, pool=pool)
    # chosen scores (0, 3, -1, 7) -> min-max weights (1/8, 4/8, 0, 1)
    expected = 0.9 * PSI0 + 0.5 * (0.125 * eps[0] + 0.5 * eps[1] + 0.0 * -eps[2] + 1.0 * -eps[3])
    # (tolerance: the min-max denominator has a +1e-9)
    np.testing.assert_allclose(state.psi, expected, rtol=1e-8, atol=1e-9)
    np.testing.assert_allclose(stats.weights, [0.125, 0.5, 0.0, 1.0], atol=1e-8)
    assert stats.proxy_score == -10.0 and stats.best_worker_score == 7.0
    assert stats.mean_worker_score == pytest.approx(9 / 4)
    assert state.env_steps == 1000 and state.test_steps == 100 and state.iteration == 1
    assert [t.noise_seed for t in pool.calls[0]] == \
        [t.noise_seed for t in nes.worker_tasks(nes.NESState(psi=PSI0), setup, seed=3)]


def test_antithetic_nes_step_matches_the_hand_computed_update():
    setup = nes_setup(num_workers=2, estimator="antithetic")
    results = [nes.WorkerResult(-5.0, 3.0, 7.0, 10, 1), nes.WorkerResult(-5.0, -1.0, 0.0, 20, 2)]
    state = nes.NESState(psi=PSI0.copy())
    eps = [nes.noise(t.noise_seed, len(PSI0), 0.1)
           for t in nes.worker_tasks(nes.NESState(psi=PSI0.copy()), setup, seed=11)]
    stats = nes.nes_step(state, setup, seed=11, pool=FakePool(results))
    # all four scores (3, -1 | 7, 0) -> min-max (0.5, 0 | 1, 0.125); eps_i gets w(+) - w(-)
    np.testing.assert_allclose(stats.weights, [-0.5, -0.125], atol=1e-8)
    expected = PSI0 + 0.5 * (-0.5 * eps[0] - 0.125 * eps[1])
    np.testing.assert_allclose(state.psi, expected, rtol=1e-8, atol=1e-9)
    assert stats.best_worker_score == 7.0 and stats.mean_worker_score == pytest.approx(9 / 4)


def test_nes_state_tracks_the_best_proxy_and_sums_real_steps():
    setup = nes_setup(num_workers=2)
    state = nes.NESState(psi=PSI0.copy())
    history = []
    for orig, steps in [(-10.0, 5), (-20.0, 7), (-4.0, 11), (-6.0, 13)]:
        psi_before = state.psi.copy()
        results = [nes.WorkerResult(orig + 1, 1.0, 2.0, steps, 1),
                   nes.WorkerResult(orig - 1, 3.0, 0.0, steps, 2)]
        nes.nes_step(state, setup, seed=0, pool=FakePool(results))
        history.append(psi_before)
        assert not np.array_equal(state.psi, psi_before)  # every step moves psi
    assert state.best_score == -4.0 and np.array_equal(state.best_psi, history[2])
    assert state.last_score == -6.0
    assert state.env_steps == 2 * (5 + 7 + 11 + 13) and state.test_steps == 4 * 3
    assert state.iteration == 4


def test_se_stops_updating_once_the_current_proxy_solves_the_env():
    setup = nes_setup(kind="se", num_workers=2)
    # -12 >= the Cliff threshold -20
    results = [nes.WorkerResult(-12.0, 1.0, 2.0, 0, 5), nes.WorkerResult(-12.0, 4.0, 3.0, 0, 5)]
    state = nes.NESState(psi=PSI0.copy())
    nes.nes_step(state, setup, seed=0, pool=FakePool(results))
    assert state.solved and np.array_equal(state.psi, PSI0)
    state = nes.NESState(psi=PSI0.copy())
    results = [nes.WorkerResult(-30.0, 1.0, 2.0, 0, 5), nes.WorkerResult(-30.0, 4.0, 3.0, 0, 5)]
    nes.nes_step(state, setup, seed=0, pool=FakePool(results))
    assert not state.solved and not np.array_equal(state.psi, PSI0)


# -- 5. the synthetic environment --------------------------------------------------------------------
@torch.no_grad()
def set_linear(linear, weight, bias):
    linear.weight.copy_(torch.tensor(weight, dtype=torch.float32))
    linear.bias.copy_(torch.tensor(bias, dtype=torch.float32))


def test_se_model_input_is_one_hot_action_then_state():
    model = SyntheticEnvModel(3, 2, hidden_size=8, hidden_layer=0, activation="relu")
    assert model.state_net[0].in_features == 2 + 3
    set_linear(model.state_net[0], [[1, 0, 0, 0, 0], [0, 1, 0, 0, 0], [0, 0, 1, 2, 4]], [0, 0, 0.5])
    set_linear(model.reward_net[0], [[10, 20, 1, 1, 1]], [0])
    set_linear(model.done_net[0], [[0, 0, 1, 0, 0]], [0])
    states = torch.tensor([[1.0, -1.0, 0.25], [0.5, 2.0, 0.0], [0.6, 0.0, 0.0]])
    with torch.no_grad():
        nxt, reward, done = model(states, torch.tensor([1, 0, 1]))
    np.testing.assert_allclose(nxt.numpy(), [[0, 1, 1 - 2 + 1 + 0.5], [1, 0, 0.5 + 4 + 0.5],
                                             [0, 1, 0.6 + 0.5]])
    np.testing.assert_allclose(reward.numpy(), [20.25, 12.5, 20.6])
    assert done.tolist() == [True, False, True]  # done when the output exceeds 0.5
    hidden = SyntheticEnvModel(3, 2, hidden_size=8, hidden_layer=1, activation="relu")
    heads = (hidden.state_net, hidden.reward_net, hidden.done_net)
    assert [net[0].in_features for net in heads] == [5] * 3


def hand_cliff_se(max_steps=50):
    """A linear SE on the Cliff: actions 0-2 move s -> s + 1, action 3 to state 0; reward a + s/100;
    done from states 40 (output 1.0) and 42 (0.51), not from 41 (exactly 0.5)."""
    model = SyntheticEnvModel(48, 4, hidden_size=8, hidden_layer=0, activation="relu")
    weight = np.zeros((48, 52))
    for s in range(48):
        weight[(s + 1) % 48, 4 + s] = 10.0
    weight[0, UP] = 100.0
    set_linear(model.state_net[0], weight, np.zeros(48))
    set_linear(model.reward_net[0], [[0, 1, 2, 3] + [s / 100 for s in range(48)]], [0])
    done = np.zeros((1, 52))
    done[0, 4 + 40], done[0, 4 + 41], done[0, 4 + 42] = 1.0, 0.5, 0.51
    set_linear(model.done_net[0], done, [0])
    return SyntheticEnv(model, CliffWalk(), max_steps)


def test_se_on_the_cliff_steps_by_the_argmax_of_the_state_head():
    env = hand_cliff_se()
    env.real_env.state = 5
    assert env.reset()[0] == START  # the real env's start state
    moves = [(RIGHT, 37, 0.36), (LEFT, 38, 1.37), (DOWN, 39, 2.38), (RIGHT, 40, 0.39)]
    for action, state, reward in moves:
        nxt, r, terminated, truncated, _ = env.step(action)
        assert (nxt, terminated, truncated) == (state, False, False) and r == pytest.approx(reward)
    assert env.step(RIGHT)[:3] == (41, pytest.approx(0.40), True)  # done from 40
    assert env.step(UP)[:3] == (0, pytest.approx(3.41), False)     # 41 (0.5) is not done
    env.state = 42
    assert env.step(LEFT)[:3] == (43, pytest.approx(1.42), True)
    assert env.real_env.t == 0  # no real step was taken


def test_se_truncates_at_max_steps():
    env = hand_cliff_se(max_steps=3)
    env.reset()
    flags = [env.step(UP)[2:4] for _ in range(3)]
    assert flags == [(False, False), (False, False), (False, True)]


def test_se_on_cartpole_steps_with_the_model():
    torch.manual_seed(0)
    model = SyntheticEnvModel(4, 2, hidden_size=16, hidden_layer=1, activation="leaky_relu")
    env = SyntheticEnv(model, make_real_env("cartpole", 0), max_steps=200)
    assert env.table is None
    obs, _ = env.reset(seed=3)
    real_obs, _ = make_real_env("cartpole", 0).reset(seed=3)
    np.testing.assert_array_equal(obs, real_obs)
    nxt, reward, terminated, truncated, _ = env.step(1)
    with torch.no_grad():
        want_next, want_reward, want_done = model(torch.as_tensor(obs)[None], torch.tensor([1]))
    assert isinstance(nxt, np.ndarray) and nxt.shape == (4,) and nxt.dtype == np.float32
    np.testing.assert_array_equal(nxt, want_next[0].numpy())
    assert reward == pytest.approx(float(want_reward[0])) and terminated == bool(want_done[0])
    nxt2 = env.step(0)[0]
    with torch.no_grad():
        want_next2 = model(torch.as_tensor(nxt)[None], torch.tensor([0]))[0][0]
    np.testing.assert_array_equal(nxt2, want_next2.numpy())


# -- 6. reward-network modes and the perturbed parameters ------------------------------------------
@pytest.mark.parametrize("mode, message", [(0, "no reward network to learn"), (-1, "no reward network"),
                                           (9, "unknown reward-network mode 9"),
                                           (103, "unknown reward-network mode")])
def test_reward_net_refuses_modes_without_a_network(mode, message):
    with pytest.raises(UsageError, match=message):
        RewardNet(mode, 48, 3, 32, 1, "prelu")


@pytest.mark.parametrize("mode", [3, 4, 7, 8, 101, 102])
def test_info_modes_need_an_info_vector(mode):
    with pytest.raises(UsageError, match="needs an info vector"):
        RewardNet(mode, 4, 0, 32, 1, "prelu")
    RewardNet(mode, 4, 2, 32, 1, "prelu")  # fine with one


@pytest.mark.parametrize("mode", [101, 102])
def test_weighted_info_modes_start_at_a_default_linear_init_and_use_w_dot_info(mode):
    torch.manual_seed(0)
    net = RewardNet(mode, 48, 3, 32, 1, "prelu")
    w = get_flat(net)   # nn.Linear's default init, U(-1/sqrt(3), 1/sqrt(3)), no bias; NES perturbs it
    assert len(w) == 3 and np.all(np.abs(w) <= 3 ** -0.5) and np.ptp(w) > 0
    path = [UP, RIGHT, DOWN]  # a step (-1), then into the cliff (-100)
    env = RewardEnv(net, CliffWalk(), gamma=0.8)
    env.reset()
    rewards = [env.step(a)[1] for a in path]
    expected = [w[0], w[0], w[1]] if mode == 101 else [-1.0 + w[0], -1.0 + w[0], -100.0 + w[1]]
    assert rewards == pytest.approx(expected, abs=1e-6)
    set_flat(net, np.array([1.0, 2.0, 3.0]))  # w = (step, cliff, goal)
    env = RewardEnv(net, CliffWalk(), gamma=0.8)
    env.reset()
    rewards = [env.step(a)[1] for a in path]
    assert rewards == ([1.0, 1.0, 2.0] if mode == 101 else [0.0, 0.0, -98.0])
    env.reset()
    env.real_env.state = env.state = 35
    assert env.step(DOWN)[1] == 3.0  # into the goal: r = 0 and w·info = 3, in both modes


def test_perturbed_parameters_are_the_linear_weights_and_biases_and_round_trip():
    torch.manual_seed(0)
    net = RewardNet(2, 48, 3, 32, 1, "prelu")
    first, prelu, last = net.net[0], net.net[1], net.net[2]
    params = perturbed_parameters(net)
    assert len(params) == 4
    assert all(p is q for p, q in zip(params, [first.weight, first.bias, last.weight, last.bias]))
    flat = get_flat(net)
    assert flat.dtype == np.float64 and flat.shape == (48 * 32 + 32 + 32 + 1,)
    new = np.arange(len(flat)) * 1e-3 - 0.5
    set_flat(net, new)
    np.testing.assert_allclose(first.weight.detach().numpy().ravel(), new[:1536], rtol=1e-6)
    np.testing.assert_allclose(first.bias.detach().numpy(), new[1536:1568], rtol=1e-6)
    np.testing.assert_allclose(last.weight.detach().numpy().ravel(), new[1568:1600], rtol=1e-6)
    assert last.bias.item() == pytest.approx(new[1600])
    np.testing.assert_allclose(get_flat(net), new, rtol=1e-6, atol=1e-7)
    assert prelu.weight.item() == pytest.approx(0.25)  # the PReLU slope is not perturbed
    with pytest.raises(ValueError, match="1602 entries"):
        set_flat(net, np.zeros(len(flat) + 1))
    se = SyntheticEnvModel(4, 2, hidden_size=8, hidden_layer=1, activation="prelu")
    # three MLPs on 6 inputs: (6*8+8) + (8*out+out) for out = 4, 1, 1
    assert len(get_flat(se)) == 3 * 56 + 36 + 9 + 9 == 222
    assert len(perturbed_parameters(se)) == 12


# -- 7. the Cliff RN learns to speed up Q-learning --------------------------------------------------
def eval_setup():
    """nes.score_proxy's setup with evaluate.py's settings for tabular agents (ε 0.1, 500 episodes,
    10 greedy test episodes after every training episode)."""
    return {"kind": "rn", "env": "cliff", "agent": "ql", "mode": 2, "vary_hp": False,
            "agent_hp": dict(TABULAR_HP["ql"], **EVAL_OVERRIDES),
            "proxy": {"hidden_size": 32, "hidden_layer": 1, "activation": "prelu"},
            "inner": {"test_episodes": 10, "check_every": 1, "early_out_num": 10, "se_plateau": 0.01},
            "unsolved_weight": 100.0, "zero_terminal_potential": False}


def steps_to_solve(result):
    """Real training steps until solved (all of them when never solved: a lower bound)."""
    return result.solved_at if result.solved_at is not None else result.real_train_steps


def test_a_random_reward_net_does_not_speed_up_q_learning():
    setup = eval_setup()
    hp = setup["agent_hp"]
    seeds = [nes.seed_for(1000, 0, i) % 2**31 for i in range(42)]
    plain = []
    for seed in seeds:
        real, test = make_real_env("cliff", seed), make_real_env("cliff", seed + 100)
        result = inner.train_agent(inner.make_agent("ql", real, hp, seed), real, test, hp,
                                   dict(setup["inner"], threshold=-20.0), on_se=False)
        plain.append(steps_to_solve(result))
    random_rn = []
    for psi_seed in range(3):
        psi = nes.initial_psi(setup, psi_seed)
        random_rn += [steps_to_solve(nes.score_proxy(setup, psi, seed)[1])
                      for seed in seeds[psi_seed::3]]
    assert len(random_rn) == 42 and 500 < np.mean(plain) < 2000
    assert np.mean(random_rn) >= 0.8 * np.mean(plain), (np.mean(random_rn), np.mean(plain))


@pytest.mark.slow
def test_nes_learns_a_cliff_reward_net_that_solves_faster_than_q_learning(tmp_path):
    out = tmp_path / "rn_cliff"
    result = train("--kind", "rn", "--env", "cliff", "--agent", "ql", "--mode", "2", "--seed", "5",
                   "--iterations", "40", "--workers", "2", "--backend", "process", "--no-plots",
                   "--out-dir", str(out))
    assert result.returncode == 0, result.stderr[-2000:]
    table = rows(out / "metrics.csv")
    assert len(table) == 40
    evaluation = run_evaluate(str(out), "--n-agents", "40", "--no-plots", "--workers", "2",
                              "--backend", "process")
    assert evaluation.returncode == 0, evaluation.stderr[-2000:]
    report = json.loads((out / "evaluation.json").read_text())
    assert report["baseline_solved_fraction"] >= 0.9
    assert report["proxy_solved_fraction"] >= 0.9, report["proxy_solved_fraction"]
    ratio = report["proxy_steps_to_solve"] / report["baseline_steps_to_solve"]
    assert ratio < 0.8, ratio
    assert report["steps_ratio"] == pytest.approx(ratio)
    # NES improved the proxy's score over the run
    assert float(table[-1]["best_proxy_score"]) > float(table[0]["proxy_score"]) + 100


# -- 8. command-line errors --------------------------------------------------------------------------
def one_line_usage_error(main, prog, argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_main(main, argv, prog=prog)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2, err
    assert err.count("\n") == 1 and err.startswith(f"{prog}: error: ") and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("args, message", [
    (["--mode", "9"], "unknown reward-network mode 9"),
    (["--mode", "0"], "has nothing to learn"),
    (["--mode", "-1"], "has nothing to learn"),
    (["--kind", "rn", "--env", "cartpole", "--agent", "td3"], "td3 is a continuous-action agent"),
    (["--kind", "se", "--env", "cmc"], "--kind se is not defined on cmc"),
    (["--env", "nowhere"], "unknown env 'nowhere'"),
    (["--env", "clif"], "did you mean cliff"),
    (["--agent", "dqn"], "invalid choice: 'dqn'"),
    (["--set", "num_workers=0"], "'num_workers' must be >= 1, got 0"),
    (["--set", "sigma=.nan"], "'sigma' must be a finite number"),
    (["--set", "agent_hp.gamma=2"], "'agent_hp.gamma' must be in [0, 1]"),
    (["--set", "nes_threshold=high"], "nes_threshold must be a number or null, got 'high'"),
    (["--kind", "se", "--set", "nes_threshold=0"], "nes_threshold applies to reward networks only"),
    (["--set", "rn_score=auc"], "rn_score must be one of steps, final_return, got 'auc'"),
    (["--set", "agent_hp.argmax_ties=middle"], "agent_hp.argmax_ties must be one of first, last, got 'middle'"),
])
def test_train_bad_input_is_one_line_and_leaves_no_run_folder(tmp_path, capsys, args, message):
    out = tmp_path / "run"
    err = one_line_usage_error(se_train.main, "synthetic_envs/train.py", [*args, "--out-dir", str(out)],
                               capsys)
    assert message in err
    assert not out.exists()


def test_the_scripts_exit_2_with_one_line_on_bad_input(tmp_path):
    """train.py and evaluate.py as scripts (the in-process tests above cover the messages)."""
    commands = {"train": [str(ROOT / "synthetic_envs" / "train.py"), "--mode", "9", "--out-dir",
                          str(tmp_path / "run")],
                "evaluate": [str(ROOT / "synthetic_envs" / "evaluate.py"), str(tmp_path / "missing")]}
    procs = {name: subprocess.Popen([sys.executable, *cmd], cwd=ROOT, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True) for name, cmd in commands.items()}
    results = {name: (proc.communicate(timeout=120)[1], proc.returncode) for name, proc in procs.items()}
    for (name, (stderr, code)), message in zip(results.items(), ["unknown reward-network mode 9",
                                                                  "no run folder"]):
        assert code == 2, (name, stderr)
        assert stderr.count("\n") == 1 and message in stderr and "Traceback" not in stderr, stderr
    assert not (tmp_path / "run").exists() and not (tmp_path / "missing").exists()


def test_evaluate_without_a_proxy_is_one_line(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text("{}")
    err = one_line_usage_error(se_evaluate.main, "synthetic_envs/evaluate.py", [str(run), "--no-plots"],
                               capsys)
    assert "no proxy file" in err
    assert sorted(p.name for p in run.iterdir()) == ["config.json"]
    err = one_line_usage_error(se_evaluate.main, "synthetic_envs/evaluate.py",
                               [str(tmp_path / "missing"), "--no-plots"], capsys)
    assert "no run folder" in err and not (tmp_path / "missing").exists()


# -- 9, 10. train.py smoke runs: outputs, determinism, resume ---------------------------------------
SMOKE = ("--smoke", "--iterations", "3")
METRIC_COLUMNS = {"iteration", "env_steps", "test_steps", "proxy_score", "best_worker_score",
                  "mean_worker_score", "wall_seconds"}


def start_train(*args):
    return subprocess.Popen([sys.executable, str(ROOT / "synthetic_envs" / "train.py"), *args], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(name, proc):
    _, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, f"{name}: {stderr[-2000:]}"


@pytest.fixture(scope="module")
def smoke_runs(tmp_path_factory):
    """A: --smoke for 3 iterations (with plots); B: the same run cut at 2, then resumed to 3;
    P: A with two worker processes. Two runs at a time (serial runs use one core each)."""
    root = tmp_path_factory.mktemp("synthetic_envs_smoke")
    runs = {name: root / name for name in ("A", "B", "P")}
    first = {"A": start_train(*SMOKE, "--out-dir", str(runs["A"])),
             "B cut at 2": start_train("--smoke", "--iterations", "2", "--no-plots",
                                       "--out-dir", str(runs["B"]))}
    for name, proc in first.items():
        finish(name, proc)
    cut_rows = rows(runs["B"] / "metrics.csv")
    second = {"B resumed": start_train("--resume", "--iterations", "3", "--no-plots",
                                       "--out-dir", str(runs["B"])),
              "P": start_train(*SMOKE, "--no-plots", "--workers", "2", "--backend", "process",
                               "--out-dir", str(runs["P"]))}
    for name, proc in second.items():
        finish(name, proc)
    return runs, cut_rows


def test_smoke_run_writes_every_output(smoke_runs):
    run = smoke_runs[0]["A"]
    config = json.loads((run / "config.json").read_text())
    assert (config["kind"], config["env"], config["agent"], config["mode"]) == ("rn", "cliff", "ql", 2)
    table = rows(run / "metrics.csv")
    assert METRIC_COLUMNS <= set(table[0])
    assert [int(r["iteration"]) for r in table] == [0, 1, 2]
    env_steps = [int(r["env_steps"]) for r in table]
    assert env_steps[0] > 0 and env_steps == sorted(env_steps) and len(set(env_steps)) == 3
    assert all(0 < int(r["test_steps"]) < int(r["env_steps"]) for r in table)
    assert all(float(r["best_worker_score"]) >= float(r["mean_worker_score"]) for r in table)
    summary = json.loads((run / "summary.json").read_text())
    assert {"env_steps", "test_steps", "final_return", "best_return", "wall_seconds"} <= set(summary)
    assert summary["env_steps"] == env_steps[-1]
    assert summary["test_steps"] == int(table[-1]["test_steps"])
    assert summary["final_return"] == pytest.approx(float(table[-1]["proxy_score"]), abs=1e-4)
    assert summary["best_return"] == pytest.approx(max(float(r["proxy_score"]) for r in table), abs=1e-4)
    proxy = torch.load(run / "proxy.pt", weights_only=False)
    assert proxy["kind"] == "rn" and proxy["score"] == pytest.approx(summary["best_return"])
    assert proxy["state_dict"]["net.0.weight"].shape == (32, 48)
    assert (run / "nes_progress.png").stat().st_size > 0
    check = subprocess.run([sys.executable, "-m", "common.runs", "check", str(run)], capture_output=True,
                           text=True, cwd=ROOT, timeout=120)
    assert check.returncode == 0, check.stderr
    assert check.stdout.startswith(f"cliff\t{summary['env_steps']}\t")


def test_same_seed_gives_the_same_metrics(smoke_runs):
    runs, cut_rows = smoke_runs
    full = without_wall_time(rows(runs["A"] / "metrics.csv"))
    assert without_wall_time(cut_rows) == full[:2]


def test_worker_processes_give_the_serial_metrics(smoke_runs):
    runs = smoke_runs[0]
    assert without_wall_time(rows(runs["P"] / "metrics.csv")) == \
        without_wall_time(rows(runs["A"] / "metrics.csv"))


def test_resume_continues_exactly(smoke_runs):
    runs = smoke_runs[0]
    assert without_wall_time(rows(runs["B"] / "metrics.csv")) == \
        without_wall_time(rows(runs["A"] / "metrics.csv"))
    resumed, straight = (json.loads((runs[k] / "summary.json").read_text()) for k in ("B", "A"))
    for key in ("env_steps", "test_steps", "final_return", "best_return", "iterations"):
        assert resumed[key] == straight[key], key
    a, b = (torch.load(runs[k] / "proxy.pt", weights_only=False)["state_dict"] for k in ("A", "B"))
    assert all(torch.equal(a[key], b[key]) for key in a)


def test_starting_on_an_existing_run_folder_refuses_and_keeps_it(smoke_runs, capsys):
    run = smoke_runs[0]["A"]
    before = {p.relative_to(run): p.read_bytes() for p in run.rglob("*") if p.is_file()}
    err = one_line_usage_error(se_train.main, "synthetic_envs/train.py", [*SMOKE, "--out-dir", str(run)],
                               capsys)
    assert "already holds a run" in err
    assert {p.relative_to(run): p.read_bytes() for p in run.rglob("*") if p.is_file()} == before


# -- 11. deep agents end to end: the SE CartPole and RN CMC smoke runs --------------------------------
@pytest.mark.slow
def test_se_cartpole_and_rn_cmc_smoke_runs_and_their_evaluation(tmp_path):
    """The two deep-agent smokes run side by side; then evaluate.py on the SE run with a transfer
    to Dueling DDQN (few agents, one training episode each: the outputs, not the learning)."""
    se, rn = tmp_path / "se_cartpole", tmp_path / "rn_cmc"
    procs = {"se": start_train("--smoke", "--kind", "se", "--env", "cartpole", "--out-dir", str(se)),
             "rn": start_train("--smoke", "--kind", "rn", "--env", "cmc", "--mode", "6",
                               "--no-plots", "--out-dir", str(rn))}
    for name, proc in procs.items():
        finish(name, proc)
    for run, agent in ((se, "ddqn"), (rn, "td3")):
        summary = json.loads((run / "summary.json").read_text())
        metrics = rows(run / "metrics.csv")
        assert summary["agent"] == agent and summary["iterations"] == len(metrics) == 2
        assert int(metrics[-1]["env_steps"]) == summary["env_steps"] > 0
        assert (run / "proxy.pt").is_file()
    config = json.loads((rn / "config.json").read_text())
    assert config["agent_hp"]["same_action_num"] == 5  # the reference's CMC action repeat
    # an SE costs no real training steps: every real step of the SE run is a test step
    se_rows = rows(se / "metrics.csv")
    assert se_rows[-1]["env_steps"] == se_rows[-1]["test_steps"]
    result = run_evaluate(str(se), "--agents", "ddqn,dueling_ddqn", "--n-agents", "2",
                          "--max-episodes", "1", "--test-episodes", "1", "--no-plots")
    assert result.returncode == 0, result.stderr
    report = json.loads((se / "evaluation.json").read_text())
    assert report["agents"] == ["ddqn", "dueling_ddqn"]
    for agent in report["agents"]:
        proxy = report["groups"][agent]["proxy"]
        assert proxy["n_agents"] == 2
        assert all(a["real_train_steps"] == 0 and a["train_steps"] > 0 for a in proxy["agents"])
        assert all(a["real_train_steps"] > 0 for a in report["groups"][agent]["baseline"]["agents"])
    for key in ("proxy_steps_to_solve", "baseline_steps_to_solve", "proxy_solved_fraction",
                "baseline_solved_fraction", "proxy_final_return", "baseline_final_return"):
        assert key in report


# -- non-finite training: diverged inner agents rank worst, a non-finite ψ stops the run ------------
def test_non_finite_worker_scores_rank_below_every_finite_score():
    scores, orig, replaced = nes.worst_for_non_finite([3.0, float("nan"), -2.0, float("inf")],
                                                      [1.0, float("-inf")])
    assert scores == [3.0, -3.0, -2.0, -3.0] and orig == [1.0, -3.0] and replaced == 3
    for kind in nes.SCORE_TRANSFORMS:   # no transform moves ψ towards a diverged agent more
        weights = nes.score_transform(scores, orig, kind)
        assert np.all(np.isfinite(weights)) and weights[1] <= weights[2] + 1e-12
    with pytest.raises(Diverged, match="every inner agent's score is non-finite"):
        nes.worst_for_non_finite([float("nan")], [float("nan")])


def test_a_run_whose_proxy_goes_non_finite_stops_with_one_line(tmp_path):
    result = train("--smoke", "--set", "step_size=1e308", "--set", "sigma=10", "--no-plots",
                   "--out-dir", str(tmp_path / "run"))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith(
        "synthetic_envs/train.py: error: training diverged at env step")
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "diverged" and "ψ" in summary["non_finite"]
    assert summary["best_return"] is None or np.isfinite(summary["best_return"])


# -- 12. the original's evaluation protocol and the paper's figures ---------------------------------
def test_windowed_solved_rule_takes_the_tests_there_are_then_the_last_ten():
    assert inner.windowed_mean_reached([-12.0], 10, -20.0)            # one test: its own mean
    assert not inner.windowed_mean_reached([-100.0] * 9 + [-12.0], 10, -20.0)
    assert inner.windowed_mean_reached([-100.0] * 5 + [-12.0] * 10, 10, -20.0)
    assert not inner.windowed_mean_reached([-12.0] * 9 + [-100.0], 10, -20.0)  # mean -20.8


def plain_cliff_agent(seed, early_stop, episodes=500):
    hp = dict(TABULAR_HP["ql"], **dict(EVAL_OVERRIDES, max_episodes=episodes))
    settings = {"test_episodes": 1, "check_every": 1, "early_out_num": 10, "se_plateau": 0.01,
                "threshold": -20.0}
    real, test = make_real_env("cliff", seed), make_real_env("cliff", seed + 100)
    return inner.train_agent(inner.make_agent("ql", real, hp, seed), real, test, hp, settings,
                             on_se=False, early_stop=early_stop)


@pytest.mark.parametrize("seed", [3, 4])
def test_whole_budget_training_records_when_the_rule_first_held(seed):
    whole, stopped = plain_cliff_agent(seed, early_stop=False), plain_cliff_agent(seed, early_stop=True)
    assert whole.episodes == 500 and len(whole.curve) == 500   # a test after every episode, the first too
    assert stopped.episodes < 500 and stopped.solved_at == whole.solved_at is not None
    scores = [c[2] for c in whole.curve]
    first = next(i for i in range(500) if np.mean(scores[max(0, i - 9):i + 1]) >= -20.0)
    assert whole.solved_at == whole.curve[first][1] and stopped.episodes == first + 1
    assert whole.last_tests_mean(10) == pytest.approx(np.mean(scores[-10:]))


def test_cliff_reward_table_is_the_shaped_reward_of_every_state_action(tmp_path):
    from synthetic_envs import figures
    torch.manual_seed(0)
    net = RewardNet(2, 48, 3, 32, 1, "prelu")
    with torch.no_grad():
        phi = net(torch.eye(48)).double().numpy()
    env = RewardEnv(net, CliffWalk(), gamma=0.8)
    table = figures.cliff_reward_table(env)
    nxt, reward, terminal, _ = cliff_tables()
    assert np.allclose(table, reward + 0.8 * phi[nxt] - phi[:, None], atol=1e-5)  # terminal s' keep Φ


@pytest.mark.slow
def test_paper_figures_from_a_smoke_run(smoke_runs, tmp_path):
    import shutil
    run = tmp_path / "A"
    shutil.copytree(smoke_runs[0]["A"], run)
    result = run_evaluate(str(run), "--n-agents", "3", "--max-episodes", "30", "--intrinsic", "--no-plots")
    assert result.returncode == 0, result.stderr
    report = json.loads((run / "evaluation.json").read_text())
    assert report["protocol"] == "whole budget (the original's)" and report["test_episodes"] == 1
    assert report["tabular_eps"] is None
    for member in report["groups"]["ql"]["baseline"]["agents"]:
        assert member["episodes"] == 30 and len(member["curve"]) == 30
        assert member["final_return"] == pytest.approx(np.mean([c[2] for c in member["curve"][-10:]]))
        assert member["solved"] == (member["final_return"] >= -20.0)
    early = run_evaluate(str(run), "--n-agents", "3", "--max-episodes", "30", "--early-stop", "--name", "es",
                         "--no-plots")
    assert early.returncode == 0, early.stderr
    report = json.loads((run / "es.json").read_text())
    assert report["protocol"] == "early stop"
    for member in report["groups"]["ql"]["baseline"]["agents"]:   # stopped where the rule first held
        assert member["solved"] == (member["first_reached"] is not None)
        assert member["solved"] or member["episodes"] == 30
    outputs = {"--modes": "modes.png", "--reward-grid": "reward_grid.png", "--visitation": "visitation.png",
               "--histograms": "histograms.png"}
    for flag, name in outputs.items():
        extra = ["--n-agents", "2", "--episodes", "5"] if flag == "--visitation" else []
        plot = subprocess.run([sys.executable, str(ROOT / "synthetic_envs" / "plots.py"), str(run), flag, *extra],
                              capture_output=True, text=True, timeout=300, cwd=ROOT)
        assert plot.returncode == 0, plot.stderr
        assert (run / name).stat().st_size > 10_000, flag
    bad = subprocess.run([sys.executable, str(ROOT / "synthetic_envs" / "plots.py"), str(tmp_path / "nowhere"),
                          "--modes"], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "no run folder" in bad.stderr


def test_nes_progress_of_several_seeds_on_one_plot(smoke_runs, tmp_path, capsys):
    import shutil

    from synthetic_envs import plots
    runs = smoke_runs[0]
    out = tmp_path / "seeds.png"
    plots.main([str(runs["A"]), str(runs["P"]), "--out", str(out)])
    assert out.stat().st_size > 10_000
    other = tmp_path / "other"   # a run of another kind cannot share the plot
    shutil.copytree(runs["A"], other)
    config = json.loads((other / "config.json").read_text())
    (other / "config.json").write_text(json.dumps(dict(config, kind="se")))
    err = one_line_usage_error(plots.main, "synthetic_envs/plots.py",
                               [str(runs["A"]), str(other), "--out", str(tmp_path / "bad.png")], capsys)
    assert "one kind, env and agent" in err
    assert not (tmp_path / "bad.png").exists()
    empty = tmp_path / "empty"   # a folder that holds no run
    empty.mkdir()
    err = one_line_usage_error(plots.main, "synthetic_envs/plots.py",
                               [str(runs["A"]), str(empty), "--out", str(tmp_path / "bad.png")], capsys)
    assert "has no metrics.csv and config.json" in err and not (tmp_path / "bad.png").exists()


def test_visitation_counts_every_state_the_training_agents_are_in(smoke_runs):
    from synthetic_envs import figures
    counts = figures.visitation(smoke_runs[0]["A"], n_agents=2, episodes=5, seed=0)
    for label, count in counts.items():
        assert count[START] >= 5   # every episode starts there
        assert 5 * 2 <= count.sum() <= 5 * 51   # 5 episodes of 1 to 50 steps, plus the start states


def test_sarsa_target_draws_its_own_next_action_as_the_original():
    import random
    from synthetic_envs.tabular import Sarsa
    from synthetic_envs.envs import CliffWalk as Cliff
    hp = dict(TABULAR_HP["sarsa"], eps_init=1.0, eps_min=1.0)
    agent = Sarsa(48, Cliff().action_space, hp, seed=3)
    values = np.random.default_rng(0).normal(size=(48, 4))
    agent.q = [row.tolist() for row in values]
    twin = random.Random()
    twin.setstate(agent.rng.getstate())
    twin.random()
    target_action = twin.randrange(4)          # the ε-greedy a' of the target (ε = 1: uniform)
    agent.observe(24, UP, -1.0, 12, False, False)
    assert agent.q[24][UP] == pytest.approx(-1.0 + 0.8 * values[12, target_action])   # α = 1
    twin.random()
    assert agent.act(12, explore=True) == twin.randrange(4)   # the next action is a fresh draw
    agent.observe(25, RIGHT, -100.0, 37, True, False)          # terminal: no bootstrap
    assert agent.q[25][RIGHT] == -100.0


def test_an_out_of_reach_nes_threshold_scores_the_whole_training_as_the_reference_auc_runs():
    """The reference's Cliff comparison runs set solved_reward 10000: no agent stops early, and
    the RN score is minus every training step plus unsolved_weight times the final test return."""
    base = dict(eval_setup(), mode=2, agent_hp=dict(TABULAR_HP["ql"], eps_init=0.1, eps_min=0.1, max_episodes=60),
                inner={"test_episodes": 1, "check_every": 1, "early_out_num": 10, "se_plateau": 0.01})
    psi = nes.initial_psi(base, 0)
    score, stopping = nes.score_proxy(dict(base, nes_threshold=None), psi, 5)
    auc_score, whole = nes.score_proxy(dict(base, nes_threshold=10000), psi, 5)
    assert stopping.solved_at is not None and stopping.episodes < 60 == whole.episodes
    assert whole.solved_at is None
    assert score == -stopping.solved_at
    assert auc_score == pytest.approx(-whole.real_train_steps - 100.0 * (10000 - whole.final_return))


def test_evaluate_eps_sets_the_tabular_agents_exploration_rate():
    config = {"agent": "ql", "env": "cliff", "agent_hp": dict(TABULAR_HP["ql"])}
    default = se_evaluate.eval_hp("ql", config, se_evaluate.parse_args(["run"]))
    assert default["eps_init"] == default["eps_min"] == 0.1 and default["max_episodes"] == 500
    as_in_nes = se_evaluate.eval_hp("sarsa", config, se_evaluate.parse_args(["run", "--eps", "0.01"]))
    assert as_in_nes["eps_init"] == as_in_nes["eps_min"] == 0.01 and as_in_nes["max_episodes"] == 500


@pytest.mark.parametrize("ties, expected", [("first", 0), ("last", 3)])
def test_argmax_ties_pick_the_first_or_the_last_action(ties, expected):
    """torch.argmax on the CPU returned the last of tied maxima up to torch 1.6 (the reference's),
    the first since 1.7 (and numpy); greedy Q-learning breaks ties as `argmax_ties` says."""
    from synthetic_envs.tabular import QLearning
    agent = QLearning(48, make_real_env("cliff", 0).action_space, dict(TABULAR_HP["ql"], argmax_ties=ties), 0)
    assert agent.greedy(START) == expected                      # all four Q-values tie at 0
    agent.q[START] = [-1.0, 0.5, 0.5, -2.0]
    assert agent.greedy(START) == (1 if ties == "first" else 2)
    agent.q[START] = [-1.0, 0.5, 0.0, -2.0]                     # no tie: the same action
    assert agent.greedy(START) == 1
    with pytest.raises(ValueError, match="argmax_ties"):
        QLearning(48, make_real_env("cliff", 0).action_space, dict(TABULAR_HP["ql"], argmax_ties="mid"), 0)


def test_tie_direction_changes_plain_q_learning_but_both_solve():
    """Plain Q-learning on the Cliff with either tie direction: both solve, by different paths."""
    results = {}
    for ties in ("first", "last"):
        setup = dict(eval_setup(), agent_hp=dict(TABULAR_HP["ql"], **dict(EVAL_OVERRIDES, max_episodes=300),
                                                 argmax_ties=ties),
                     inner={"test_episodes": 1, "check_every": 1, "early_out_num": 10, "se_plateau": 0.01})
        result, _ = inner.train_fresh_agent("cliff", "ql", setup["agent_hp"], 3, False, setup["inner"])
        results[ties] = result
    assert all(r.solved_at is not None for r in results.values())
    assert results["first"].solved_at != results["last"].solved_at


def test_final_return_rn_score_is_the_final_test_return_with_the_early_stop_kept():
    """rn_score final_return (the original's final code): an RN scores its agent's final real
    test return; the agent still stops once the mean of its last 10 tests reaches -20."""
    base = dict(eval_setup(), mode=2, agent_hp=dict(TABULAR_HP["ql"], eps_init=0.1, eps_min=0.1, max_episodes=60),
                inner={"test_episodes": 1, "check_every": 1, "early_out_num": 10, "se_plateau": 0.01})
    psi = nes.initial_psi(base, 0)
    steps_score, steps_run = nes.score_proxy(base, psi, 5)
    score, result = nes.score_proxy(dict(base, rn_score="final_return"), psi, 5)
    assert result.solved_at == steps_run.solved_at is not None and result.episodes < 60
    assert steps_score == -steps_run.solved_at
    assert score == result.final_return >= -20
    assert "final real test return" in nes.score_meaning(dict(base, rn_score="final_return"))


def test_evaluate_argmax_ties_overrides_the_runs_tie_direction():
    config = {"agent": "ql", "env": "cliff", "agent_hp": dict(TABULAR_HP["ql"], argmax_ties="last")}
    assert se_evaluate.eval_hp("ql", config, se_evaluate.parse_args(["run"]))["argmax_ties"] == "last"
    hp = se_evaluate.eval_hp("ql", config, se_evaluate.parse_args(["run", "--argmax-ties", "first"]))
    assert hp["argmax_ties"] == "first"


def test_the_feb_2021_fig5_config_sets_the_seed_readmes_setting():
    """configs/rn_cliff_fig5_feb2021.yaml: mirrored sampling, one agent per score, ε 0.01, PReLU
    1x32, the final-return score with the -20 threshold, 200 iterations, last-index ties."""
    args = se_train.parse_args(["--mode", "1", "--config",
                                str(ROOT / "synthetic_envs" / "configs" / "rn_cliff_fig5_feb2021.yaml")])
    config = se_train.build_config(args)
    assert config["iterations"] == 200 and config["estimator"] == "mirrored" and config["num_grad_evals"] == 1
    assert config["rn_score"] == "final_return" and config["nes_threshold"] is None
    assert config["proxy"] == {"hidden_size": 32, "hidden_layer": 1, "activation": "prelu"}
    assert config["agent_hp"]["eps_init"] == config["agent_hp"]["eps_min"] == 0.01
    assert config["agent_hp"]["argmax_ties"] == "last" and config["agent_hp"]["alpha"] == 1.0
    assert (config["sigma"], config["step_size"], config["score_transform"], config["num_workers"]) == (0.1, 0.5, 3, 16)
