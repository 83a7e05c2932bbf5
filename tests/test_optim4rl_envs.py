"""Optim4RL environments (optim4rl/envs.py): Catch worked out by hand, the Oh et al. (2020)
gridworlds' walls, objects, respawn, termination and horizons, masked resets, seeding and exact
resume."""
import pytest
import torch

from common.cli import UsageError
from optim4rl.envs import (ALIASES, ENV_NAMES, GRIDWORLDS, MOVES, Catch, GridSpec, Gridworld,
                           make_env, walled_room)

LEFT, STAY, RIGHT = 0, 1, 2


def actions(*a):
    return torch.tensor(a, dtype=torch.long)


def random_actions(env, gen):
    return torch.randint(0, env.num_actions, (env.num_envs,), generator=gen)


def catch_board(ball_row, ball_col, paddle_col):
    board = torch.zeros(10, 5)
    board[ball_row, ball_col] = 1.0
    board[9, paddle_col] = 1.0
    return board


def cell_of(channel):
    """(row, col) of the single 1 in each env's H x W channel [E, H, W]."""
    flat = channel.flatten(1).argmax(1)
    return torch.stack((flat // channel.shape[2], flat % channel.shape[2]), 1)


# ------------------------------------------------------------------------------------------------
# Catch
# ------------------------------------------------------------------------------------------------
def test_catch_shapes_and_first_observation():
    env = make_env("catch", 64, seed=0)
    obs = env.reset()
    assert (env.obs_shape, env.num_actions, env.horizon) == ((1, 10, 5), 3, 9)
    assert obs.shape == (64, 1, 10, 5) and obs.dtype == torch.float32
    assert torch.equal(obs[:, 0, 0].sum(1), torch.ones(64))      # the ball is in the top row
    assert torch.equal(obs[:, 0, 9], catch_board(0, 0, 2)[9].expand(64, 5))  # paddle in column 2
    assert obs[:, 0, 1:9].sum() == 0


def test_catch_dynamics_by_hand():
    env = Catch(4, seed=0)
    env.ball_col = torch.tensor([0, 4, 4, 2])
    # env 0 goes left to column 0 and stays clipped there; env 1 goes left away from the ball;
    # env 2 goes right to column 4 and stays clipped there; env 3 stays under the ball.
    act = actions(LEFT, LEFT, RIGHT, STAY)
    for t in range(1, 9):
        obs, reward, done = env.step(act)
        paddles = [max(2 - t, 0), max(2 - t, 0), min(2 + t, 4), 2]
        for i, (ball, paddle) in enumerate(zip([0, 4, 4, 2], paddles)):
            assert torch.equal(obs[i, 0], catch_board(t, ball, paddle)), (t, i)
        assert torch.equal(reward, torch.zeros(4)) and torch.equal(done, torch.zeros(4))
    obs, reward, done = env.step(act)                     # the 9th step: the ball lands
    assert torch.equal(reward, torch.tensor([1.0, -1.0, 1.0, 1.0]))
    assert torch.equal(done, torch.ones(4))
    # auto-reset: the returned observation starts the next episode
    assert torch.equal(obs[:, 0, 9], catch_board(0, 0, 2)[9].expand(4, 5))
    assert torch.equal(obs[:, 0, 0].sum(1), torch.ones(4)) and obs[:, 0, 1:9].sum() == 0
    assert torch.equal(env.ball_row, torch.zeros(4, dtype=torch.long))


def test_catch_episodes_last_nine_steps_with_reward_only_at_the_end():
    env, gen = Catch(16, seed=1, reward_scaling=0.5), torch.Generator().manual_seed(0)
    for t in range(1, 46):
        _, reward, done = env.step(random_actions(env, gen))
        ends = t % 9 == 0
        assert torch.equal(done, torch.full((16,), float(ends)))
        assert torch.all(reward.abs() == (0.5 if ends else 0.0))  # scaled +-1, only at the end


def test_catch_random_policy_return_matches_the_analytic_value():
    # Under a uniform random policy the paddle does a clipped random walk from column 2 for 9
    # steps; P(catch | ball column b) = P(walk ends at b), computed here by the Markov chain.
    dist = torch.zeros(5, dtype=torch.float64)
    dist[2] = 1.0
    for _ in range(9):
        nxt = torch.zeros_like(dist)
        for c in range(5):
            for d in (-1, 0, 1):
                nxt[min(max(c + d, 0), 4)] += dist[c] / 3
        dist = nxt
    n = 5000
    env, gen = Catch(n, seed=3), torch.Generator().manual_seed(1)
    ball = env.ball_col.clone()
    for _ in range(9):
        _, reward, done = env.step(random_actions(env, gen))
    assert torch.all(done == 1)
    # The ball column is uniform, so E[return] = 0.2 * 1 + 0.8 * (-1) = -0.6 whatever the walk.
    assert abs(reward.mean().item() - (-0.6)) < 0.05
    for b in range(5):
        assert abs((ball == b).float().mean().item() - 0.2) < 0.03
        caught = (reward[ball == b] > 0).float().mean().item()
        assert abs(caught - dist[b].item()) < 0.05, (b, caught, dist[b].item())


# ------------------------------------------------------------------------------------------------
# Gridworlds
# ------------------------------------------------------------------------------------------------
EXPECTED_SHAPES = {  # the spec's interior sizes plus the wall border; one channel per object + agent
    "sss": (3, 5, 10), "ssl": (3, 10, 5), "sds": (3, 6, 8), "sdl": (3, 8, 6),
    "bss": (5, 12, 14), "bsl": (5, 14, 12), "bds": (5, 11, 15), "bdl": (5, 15, 11)}


def place(env, agent, objs):
    """Put every copy's agent at ``agent`` and its objects at ``objs`` ((-1, -1) = absent)."""
    env.agent_pos = torch.tensor(agent).expand(env.num_envs, 2).clone()
    env.obj_pos = torch.tensor(objs).expand(env.num_envs, len(objs), 2).clone()


def test_gridworld_names_shapes_objects_and_horizons():
    assert set(ALIASES.values()) == set(GRIDWORLDS) and set(ENV_NAMES) == {"catch", *GRIDWORLDS}
    for short, shape in EXPECTED_SHAPES.items():
        env = make_env(short, 2, seed=0)
        assert env.name == ALIASES[short] and env.obs_shape == shape and env.num_actions == 9
        assert env.horizon == (50 if short[2] == "s" else 500)
        respawn = 0.5 if short[1] == "d" else 0.05
        n = 1 if short[0] == "s" else 2
        assert env.spec.objects == ((1.0, 0.0, respawn),) * n + ((-1.0, 0.5, respawn),) * n


def test_gridworld_reset_puts_everything_on_distinct_free_cells():
    env = make_env("bds", 3000, seed=0)
    obs = env.reset()
    assert torch.equal(obs.sum((2, 3)), torch.ones(3000, 5))     # one of each, all present
    assert obs.sum(1).max() == 1                                    # never two on one cell
    walls = torch.tensor([[c == "#" for c in row] for row in env.spec.str_map])
    assert obs[:, :, walls].sum() == 0
    agent_counts = obs[:, -1].sum(0)[~walls]                        # 117 free cells, ~26 each
    assert agent_counts.min() > 0


def test_gridworld_moves_follow_the_nine_actions():
    env = make_env("sds", 9, seed=0)                               # interior rows 1-4, cols 1-6
    place(env, [2, 3], [[4, 6], [4, 5]])
    expected = [[2, 3], [1, 3], [2, 4], [3, 3], [2, 2], [3, 2], [3, 4], [1, 4], [1, 2]]
    obs, reward, _ = env.step(torch.arange(9))
    assert torch.equal(cell_of(obs[:, -1]), torch.tensor(expected))
    assert torch.equal(torch.tensor(MOVES) + torch.tensor([2, 3]), torch.tensor(expected))
    assert torch.equal(reward, torch.zeros(9))


def test_gridworld_walls_block_movement():
    spec = GridSpec(("#######",
                     "#  #  #",
                     "#     #",
                     "#######"), ((1.0, 0.0, 0.0),), 50)
    env = Gridworld(9, seed=0, name="walled", spec=spec)
    place(env, [1, 2], [[2, 5]])
    # right is the inner wall, up / up-left / up-right the border: all stay; the others move.
    expected = [[1, 2], [1, 2], [1, 2], [2, 2], [1, 1], [2, 1], [2, 3], [1, 2], [1, 2]]
    obs, _, _ = env.step(torch.arange(9))
    assert torch.equal(cell_of(obs[:, -1]), torch.tensor(expected))
    place(env, [1, 1], [[2, 5]])                                     # a corner of the border
    obs, _, _ = env.step(torch.arange(9))
    expected = [[1, 1], [1, 1], [1, 2], [2, 1], [1, 1], [1, 1], [2, 2], [1, 1], [1, 1]]
    assert torch.equal(cell_of(obs[:, -1]), torch.tensor(expected))


def test_collecting_pays_the_reward_and_removes_the_object():
    spec = GridSpec(walled_room(3, 3), ((1.0, 0.0, 0.0), (-1.0, 0.0, 0.0)), 50)
    env = Gridworld(1, seed=0, reward_scaling=0.5, name="room", spec=spec)
    place(env, [1, 1], [[1, 2], [3, 3]])
    obs, reward, done = env.step(actions(2))                         # right, onto the +1
    assert reward.item() == 0.5 and done.item() == 0
    assert obs[0, 0].sum() == 0 and obs[0, 1, 3, 3] == 1 and obs[0, 2, 1, 2] == 1
    assert env.obj_pos[0, 0].tolist() == [-1, -1]
    obs, reward, _ = env.step(actions(0))                            # stay: nothing is left there
    assert reward.item() == 0 and obs[0, 0].sum() == 0
    obs, reward, _ = env.step(actions(6))                            # down-right, (2, 3)
    assert reward.item() == 0
    obs, reward, done = env.step(actions(3))                         # down, onto the -1
    assert reward.item() == -0.5 and done.item() == 0 and obs[0, :2].sum() == 0


def test_respawn_with_probability_one_reappears_at_once_on_a_free_cell():
    spec = GridSpec(walled_room(2, 3), ((1.0, 0.0, 1.0),), 50)
    env = Gridworld(600, seed=0, name="respawn", spec=spec)
    place(env, [1, 1], [[1, 2]])
    obs, reward, done = env.step(torch.full((600,), 2))
    assert torch.all(reward == 1) and torch.all(done == 0)
    assert torch.equal(obs[:, 0].sum((1, 2)), torch.ones(600))       # back in the same step
    counts = obs[:, 0].sum(0)
    assert counts[0].sum() == 0 and counts[3].sum() == 0 and counts[:, [0, 4]].sum() == 0
    assert counts[1:3, 1:4].min() > 60                               # every free cell, ~100 each


@pytest.mark.parametrize("short, p", [("sds", 0.5), ("sss", 0.05)])
def test_respawn_probability_matches_dense_and_sparse(short, p):
    n = 6000
    env = make_env(short, n, seed=2)
    place(env, [1, 1], [[1, 2], [3, 6]])
    obs, reward, _ = env.step(torch.full((n,), 2))                   # collect the +1
    assert torch.all(reward == 1)
    present = obs[:, 0].sum((1, 2)).mean().item()
    assert abs(present - p) < 4 * (p * (1 - p) / n) ** 0.5 + 1e-3
    # A second step without collecting: those still absent respawn with probability p again.
    absent = env.obj_pos[:, 0, 0] < 0
    env.step(torch.zeros(n, dtype=torch.long))
    back = (env.obj_pos[absent, 0, 0] >= 0).float().mean().item()
    assert abs(back - p) < 4 * (p * (1 - p) / absent.sum().item()) ** 0.5 + 1e-3


def test_negative_objects_terminate_half_the_time_and_auto_reset():
    n = 4000
    env = make_env("sds", n, seed=5)
    env.time = torch.full((n,), 7)
    place(env, [1, 1], [[4, 6], [1, 2]])                             # the -1 object is to the right
    obs, reward, done = env.step(torch.full((n,), 2))
    assert torch.all(reward == -1)
    assert abs(done.mean().item() - 0.5) < 0.04                      # 4.5 standard errors
    ended = done.bool()
    # Ended copies restart (fresh time, everything present on distinct cells); the others go on
    # with the -1 object gone (respawned or not).
    assert torch.all(env.time[ended] == 0) and torch.all(env.time[~ended] == 8)
    assert torch.equal(obs[ended].sum((2, 3)), torch.ones(int(ended.sum()), 3))
    assert obs[ended].sum(1).max() == 1
    assert torch.all(cell_of(obs[~ended, -1]) == torch.tensor([1, 2]))
    # A +1 object never terminates.
    place(env, [1, 1], [[1, 2], [4, 6]])
    _, reward, done = env.step(torch.full((n,), 2))
    assert torch.all(reward == 1) and torch.all(done == 0)


@pytest.mark.parametrize("short", list(ALIASES))
def test_the_horizon_ends_episodes(short):
    # Staying never collects anything (reset uses distinct cells, nothing is ever absent), so
    # only the horizon can end an episode.
    env = make_env(short, 3, seed=0)
    stay = torch.zeros(3, dtype=torch.long)
    first = env.reset()
    for t in range(1, env.horizon + 1):
        obs, reward, done = env.step(stay)
        assert torch.all(reward == 0)
        assert torch.all(done == float(t == env.horizon)), t
        if t < env.horizon:
            assert torch.equal(obs, first)
    assert not torch.equal(obs, first) and torch.all(env.time == 0)   # re-drawn positions


# ------------------------------------------------------------------------------------------------
# Masked resets, seeding, resume, names
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["catch", "bds"])
def test_reset_envs_restarts_only_masked_envs(name):
    env = make_env(name, 8, seed=0)
    stay = STAY if name == "catch" else 0           # a gridworld agent that stays collects nothing
    for _ in range(4):
        env.step(torch.full((8,), stay))
    before = env.state_dict()
    mask = torch.tensor([1, 0, 1, 0, 0, 1, 0, 0], dtype=torch.bool)
    obs = env.reset_envs(mask)
    assert torch.equal(obs, env.observe())
    for key in env._STATE_KEYS:
        assert torch.equal(getattr(env, key)[~mask], before[key][~mask]), key
    if name == "catch":
        assert torch.all(before["ball_row"] == 4)
        assert torch.all(env.ball_row[mask] == 0) and torch.all(env.paddle_col[mask] == 2)
    else:
        assert torch.all(before["time"] == 4)
        assert torch.all(env.time[mask] == 0)
        assert torch.equal(obs[mask].sum((2, 3)), torch.ones(3, 5))


def rollout(env, steps, action_seed=0):
    gen = torch.Generator().manual_seed(action_seed)
    out = [env.reset()]
    for _ in range(steps):
        out.extend(env.step(random_actions(env, gen)))
    return out


@pytest.mark.parametrize("name", ["catch", "bds"])
def test_same_seed_same_trajectory_different_seed_differs(name):
    a, b, c = (rollout(make_env(name, 16, seed=s), 40) for s in (7, 7, 8))
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not all(torch.equal(x, y) for x, y in zip(a, c))


@pytest.mark.parametrize("name", ["catch", "sds"])
def test_state_dict_round_trip_continues_identically(name):
    env, gen = make_env(name, 16, seed=3), torch.Generator().manual_seed(0)
    for _ in range(13):
        env.step(random_actions(env, gen))
    saved = env.state_dict()
    acts = [random_actions(env, gen) for _ in range(30)]
    original = [env.step(a) for a in acts]
    other = make_env(name, 16, seed=99)
    other.load_state_dict(saved)
    resumed = [other.step(a) for a in acts]
    for x, y in zip(original, resumed):
        assert all(torch.equal(u, v) for u, v in zip(x, y))
    # the saved state is a copy: stepping afterwards did not change it
    other.load_state_dict(saved)
    assert torch.equal(other.step(acts[0])[0], original[0][0])
    with pytest.raises(ValueError):
        make_env("catch" if name != "catch" else "sds", 16, seed=0).load_state_dict(saved)


def test_aliases_and_unknown_names():
    a, b = make_env("sdl", 4, seed=1), make_env("small_dense_long", 4, seed=1)
    assert a.name == b.name == "small_dense_long" and torch.equal(a.reset(), b.reset())
    with pytest.raises(UsageError) as err:
        make_env("pong", 4, seed=0)
    message = str(err.value)
    assert "pong" in message and "\n" not in message
    assert all(n in message for n in ENV_NAMES) and all(s in message for s in ALIASES)
    with pytest.raises(UsageError):
        make_env("catch", 0, seed=0)
