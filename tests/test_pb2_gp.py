"""PB2's GP (time-varying and CoCaBO kernels), TV.EXP3.M + DepRound, and the explore step."""
import copy
import pickle

import numpy as np
import pytest
from scipy.stats import multivariate_normal

from common.cli import UsageError
from pb2_procgen import gp as gpm
from pb2_procgen.exp3 import TVExp3M, dep_round, exp3m_probabilities
from pb2_procgen.pb2 import PB2Explorer, fit_batch_gps, standardise, ucb_beta
from pb2_procgen.search_space import SearchSpace, toy_space

MIX_SPACE = SearchSpace({"lr": (1e-5, 1e-3), "entropy_coef": (0.0, 0.2)},
                        ("aug", ["a", "b", "c", "d"]))


def random_rows(n, n_cont, n_cat=0, seed=0, n_levels=4):
    """Rows [t, x..., c...] with integer times, like PB2's normalised data."""
    rng = np.random.default_rng(seed)
    t = rng.integers(0, 10, n) / 9.0
    cols = [t[:, None], rng.uniform(size=(n, n_cont))]
    if n_cat:
        cols.append(rng.integers(0, n_levels, (n, n_cat)).astype(float))
    return np.hstack(cols)


SE_PARAMS = np.array([np.log(1.3), np.log(0.3), 0.2, np.log(0.05)])
MIX_PARAMS = np.array([np.log(1.3), np.log(0.3), 0.2, np.log(0.7), 0.1, 0.35, np.log(0.05)])


# -- kernels --------------------------------------------------------------------------------------
def test_kernel_values_by_hand():
    a = np.array([[0.0, 0.1, 0.2, 1.0]])          # t, x0, x1, category
    b = np.array([[2.0, 0.4, 0.6, 1.0]])
    c = np.array([[2.0, 0.4, 0.6, 3.0]])
    var, ls, eps = 1.3, 0.3, 0.2
    k_se = var * np.exp(-(0.3 ** 2 + 0.4 ** 2) / ls) * (1 - eps) ** (2.0 / 2)
    assert gpm.kernel_matrix("tv_se", SE_PARAMS, a[:, :3], b[:, :3])[0, 0] == pytest.approx(k_se)
    k_h_same, k_h_diff = 0.7 * 1.0 * (1 - 0.1) ** 1.0, 0.0
    lam = 0.35
    for other, k_h in ((b, k_h_same), (c, k_h_diff)):
        expected = (1 - lam) * 0.5 * (k_se + k_h) + lam * k_se * k_h
        got = gpm.kernel_matrix("tv_mix", MIX_PARAMS, a, other, n_cat=1)[0, 0]
        assert got == pytest.approx(expected)
    assert gpm.prior_variance("tv_mix", MIX_PARAMS) == pytest.approx(
        gpm.kernel_matrix("tv_mix", MIX_PARAMS, a, a, n_cat=1)[0, 0])


@pytest.mark.parametrize("kind,params,n_cat", [("tv_se", SE_PARAMS, 0), ("tv_mix", MIX_PARAMS, 1)])
def test_kernel_matrix_is_psd(kind, params, n_cat):
    rng = np.random.default_rng(3)
    for seed in range(5):
        X = random_rows(60, 3, n_cat, seed)
        p = params.copy()
        p[2] = rng.uniform(1e-3, 0.5)
        if kind == "tv_mix":
            p[5] = rng.uniform()
        K = gpm.kernel_matrix(kind, p, X, X, n_cat)
        assert np.allclose(K, K.T)
        assert np.linalg.eigvalsh(K).min() >= -1e-8


@pytest.mark.parametrize("kind,params,n_cat", [("tv_se", SE_PARAMS, 0), ("tv_mix", MIX_PARAMS, 1)])
def test_log_likelihood_gradient_matches_finite_differences(kind, params, n_cat):
    X = random_rows(30, 3, n_cat, seed=1)
    y = np.random.default_rng(2).normal(size=30)
    nll, grad = gpm.neg_log_marginal_likelihood(params, X, y, kind, n_cat)
    # the value is the Gaussian log density of y under N(0, K + σ_n² I)
    K = gpm.kernel_matrix(kind, params, X, X, n_cat) + np.exp(params[-1]) * np.eye(30)
    assert nll == pytest.approx(-multivariate_normal(np.zeros(30), K).logpdf(y), rel=1e-10)
    h = 1e-6
    for j in range(len(params)):
        up, down = params.copy(), params.copy()
        up[j] += h
        down[j] -= h
        fd = (gpm.neg_log_marginal_likelihood(up, X, y, kind, n_cat)[0]
              - gpm.neg_log_marginal_likelihood(down, X, y, kind, n_cat)[0]) / (2 * h)
        assert abs(grad[j] - fd) <= 1e-4 * max(abs(fd), 1e-2), (j, grad[j], fd)


def test_ml_fit_recovers_known_lengthscale():
    rng = np.random.default_rng(0)
    X = random_rows(200, 2, seed=4)
    true = np.array([0.0, np.log(0.1), 0.05, np.log(0.01)])
    K = gpm.kernel_matrix("tv_se", true, X, X) + 0.01 * np.eye(len(X))
    y = np.linalg.cholesky(K) @ rng.normal(size=len(X))
    gp = gpm.fit_gp(X, y, "tv_se", rng=np.random.default_rng(1), n_restarts=2)
    fitted = gp.named_params()
    assert 0.05 <= fitted["lengthscale"] <= 0.2, fitted
    assert gp.nll <= gpm.neg_log_marginal_likelihood(true, X, y)[0] + 1e-6


def test_prediction_gradients_match_finite_differences():
    X = random_rows(25, 3, 1, seed=5)
    y = np.random.default_rng(6).normal(size=25)
    gp = gpm.gp_from_params("tv_mix", MIX_PARAMS, X, y, n_cat=1)
    x, dims = np.array([0.7, 0.2, 0.3, 0.8, 2.0]), np.array([2, 3])
    mean, var, dmean, dvar = gp.predict_with_grad(x, dims)
    m_batch, v_batch = gp.predict(x[None, :])
    assert (mean, var) == pytest.approx((m_batch[0], v_batch[0]))
    for j, d in enumerate(dims):
        up, down = x.copy(), x.copy()
        up[d] += 1e-6
        down[d] -= 1e-6
        (mu, vu), (md, vd) = gp.predict(up[None, :]), gp.predict(down[None, :])
        assert dmean[j] == pytest.approx((mu[0] - md[0]) / 2e-6, rel=1e-4, abs=1e-6)
        assert dvar[j] == pytest.approx((vu[0] - vd[0]) / 2e-6, rel=1e-4, abs=1e-6)


def test_pending_points_shrink_the_variance_there():
    rng = np.random.default_rng(7)
    X = random_rows(30, 3, seed=7)
    ys = standardise(np.sin(6 * X[:, 2]) + 0.1 * rng.normal(size=30))
    pending = np.array([[1.0, 0.5, 0.9, 0.1], [1.0, 0.5, 0.1, 0.9]])
    gp1, gp2 = fit_batch_gps(X, ys, pending, 0, rng)
    var1, var2 = gp1.predict(pending)[1], gp2.predict(pending)[1]
    assert np.all(var2 < 0.5 * var1), (var1, var2)
    elsewhere = random_rows(50, 3, seed=8)
    assert np.all(gp2.predict(elsewhere)[1] <= gp1.predict(elsewhere)[1] + 1e-12)
    same1, same2 = fit_batch_gps(X, ys, np.zeros((0, 4)), 0, rng)
    assert same1 is same2


def test_ucb_beta():
    assert ucb_beta(0) == ucb_beta(1) == ucb_beta(2) == 0.0
    assert ucb_beta(100) == pytest.approx(0.2 * np.log(40.0))


# -- TV.EXP3.M and DepRound -------------------------------------------------------------------
def test_dep_round_marginals_and_exactly_k_distinct_arms():
    p = np.array([0.9, 0.5, 0.3, 0.2, 0.1])          # sums to k = 2
    rng = np.random.default_rng(0)
    counts = np.zeros(5)
    for _ in range(20000):
        arms = dep_round(p, 2, rng)
        assert len(arms) == 2 and len(set(arms.tolist())) == 2
        counts[arms] += 1
    assert np.abs(counts / 20000 - p).max() < 0.02
    assert dep_round([1.0, 0.0, 1.0, 0.0], 2, rng).tolist() == [0, 2]
    with pytest.raises(ValueError):
        dep_round([0.5, 0.5, 0.5], 2, rng)


def test_exp3m_probabilities_cap_the_largest_weight():
    p, capped = exp3m_probabilities(np.array([10.0, 1.0, 1.0, 1.0]), 2, 0.1)
    assert p.sum() == pytest.approx(2.0)
    assert p[0] == pytest.approx(1.0) and capped.tolist() == [True, False, False, False]
    assert np.allclose(p[1:], p[1])
    p, capped = exp3m_probabilities(np.ones(4), 2, 0.1)
    assert np.allclose(p, 0.5) and not capped.any()


@pytest.mark.parametrize("plays", [1, 2])
def test_tv_exp3m_concentrates_on_the_best_arm(plays):
    means = np.array([0.2, 0.3, 0.9, 0.4, 0.25])                 # Bernoulli arms, best = 2
    bandit, rng, late = TVExp3M(5, plays, horizon=300), np.random.default_rng(1), np.zeros(5)
    for round_ in range(300):
        arms = bandit.draw(rng)
        assert len(arms) == plays == len(set(arms.tolist()))
        late[arms] += round_ >= 200
        bandit.update(arms, (rng.uniform(size=plays) < means[arms]).astype(float))
    p = bandit.probabilities()
    assert np.argmax(p) == 2 and np.argmax(late) == 2, (p, late)
    if plays == 1:
        assert p[2] > 0.6 and late[2] > 60, (p, late)
    else:                                   # the best arm's marginal is capped at 1 (set S0)
        assert bandit.marginals()[0][2] == pytest.approx(1.0) and late[2] >= 95, late
        assert p[2] == pytest.approx(0.5)   # one explorer draws from the marginals / k


# -- the explore step ---------------------------------------------------------------------------
def fill(explorer, space, n, seed=0):
    rng = np.random.default_rng(seed)
    for i in range(n):
        explorer.observe(float(i // 4), rng.normal(), rng.normal(), 1.0, space.sample(rng))


@pytest.mark.parametrize("cat_exp", ["random", "exp3_dep", "cocabo"])
def test_select_stays_in_bounds_with_a_valid_category(cat_exp):
    for space in (MIX_SPACE, toy_space()):
        explorer = PB2Explorer(space, cat_exp, seed=0)
        parent = space.sample(np.random.default_rng(1))
        first = explorer.select(0.0, 0.0, parent, [])            # no data: uniform sample
        fill(explorer, space, 24)
        second = explorer.select(6.0, 0.2, parent, [first])
        third = explorer.select(6.0, 0.2, parent, [first, second])
        for config in (first, second, third):
            assert set(config) == set(space.names)
            for name, (low, high) in space.continuous.items():
                assert low <= config[name] <= high
            if space.categorical:
                assert config["aug"] in space.categorical[1]


@pytest.mark.parametrize("seed", [0, 2])
def test_batch_selection_avoids_the_pending_point(seed):
    # two equal peaks at (0.25, 0.5) and (0.75, 0.5) on a grid symmetric in h0: the UCB ties
    # between a point and its mirror image, and only the pending point can break the tie
    explorer = PB2Explorer(toy_space(), "random", seed=seed)
    for h0 in np.linspace(0, 1, 9):
        for h1 in np.linspace(0, 1, 5):
            gain = sum(np.exp(-((h0 - c) ** 2 + (h1 - 0.5) ** 2) / 0.05) for c in (0.25, 0.75))
            explorer.observe(1.0, 1.0, 1.0 + gain, 1.0, {"h0": h0, "h1": h1})
    parent = {"h0": 0.5, "h1": 0.5}
    first = explorer.select(1.0, 1.0, parent, [])
    twin = copy.deepcopy(explorer)
    second = explorer.select(1.0, 1.0, parent, [first])
    without_pending = twin.select(1.0, 1.0, parent, [])
    mirror = {"h0": 1.0 - first["h0"], "h1": first["h1"]}
    distance = lambda a, b: np.hypot(a["h0"] - b["h0"], a["h1"] - b["h1"])
    peak = {"h0": 0.25, "h1": 0.5}
    assert min(distance(first, peak), distance(mirror, peak)) < 0.05
    assert distance(second, mirror) < 0.05 and distance(second, first) > 0.4
    assert min(distance(without_pending, first), distance(without_pending, mirror)) < 0.05


def run_debug_task(cat_exp, seed=0, rounds=12, population=8):
    """Reward per step grows faster with low lr and with aug == 'c'; PBT-style truncation."""
    rate = lambda c: 1.0 * (c["aug"] == "c") + (1e-3 - c["lr"]) / 1e-3
    explorer = PB2Explorer(MIX_SPACE, cat_exp, seed, n_rounds=rounds, population=population)
    rng = np.random.default_rng(seed + 1)
    configs = [MIX_SPACE.sample(rng) for _ in range(population)]
    R, n, chosen = np.zeros(population), max(int(0.25 * population), 1), []
    for round_ in range(rounds):
        after = R + np.array([rate(c) for c in configs]) + 0.05 * rng.normal(size=population)
        for config, before, new in zip(configs, R, after):
            explorer.observe(float(round_), before, new, 1.0, config)
        R = after
        order = np.argsort(R)
        pending = []
        for agent in order[:n]:
            parent = int(rng.choice(order[-n:]))
            config = explorer.select(float(round_ + 1), R[parent], configs[parent], pending)
            pending.append(config)
            chosen.append(config)
            configs[agent], R[agent] = config, R[parent]
    return explorer, chosen


def test_debug_task_exp3_concentrates_and_gp_lowers_lr():
    late_c, late_draws = 0, 0
    for seed in (0, 1, 2):
        explorer, chosen = run_debug_task("exp3_dep", seed=seed)
        probs = explorer.category_probabilities()
        assert max(probs, key=probs.get) == "c" and probs["c"] > 0.4, probs
        late = chosen[len(chosen) // 2:]
        late_c, late_draws = late_c + sum(c["aug"] == "c" for c in late), late_draws + len(late)
        assert np.mean([c["lr"] for c in late]) < 2e-4
        assert np.mean([c["lr"] for c in late]) < np.mean([c["lr"] for c in chosen[:4]])
    assert late_c >= 0.4 * late_draws, (late_c, late_draws)     # chance: 1 in 4


def test_state_dict_round_trip_gives_identical_selections():
    space = MIX_SPACE

    def continue_run(explorer):
        out = []
        for round_ in range(3):
            fill(explorer, space, 8, seed=100 + round_)
            first = explorer.select(5.0 + round_, 0.1, space.sample(np.random.default_rng(9)), [])
            out += [first, explorer.select(5.0 + round_, 0.1, first, [first])]
        return out

    explorer = PB2Explorer(space, "cocabo", seed=5)
    fill(explorer, space, 16)
    explorer.category_probabilities()                            # the bandit has seen the rows
    state = pickle.loads(pickle.dumps(explorer.state_dict()))
    expected = continue_run(explorer)
    restored = PB2Explorer(space, "cocabo", seed=123)
    restored.load_state_dict(state)
    assert continue_run(restored) == expected
    again = PB2Explorer(space, "cocabo", seed=5)                 # same seed, same calls
    fill(again, space, 16)
    assert continue_run(again) == expected


def test_observe_drops_empty_intervals_and_keeps_recent_rows():
    explorer = PB2Explorer(toy_space(), "random", seed=0, max_rows=5)
    explorer.observe(0.0, 0.0, 1.0, 0.0, {"h0": 0.5, "h1": 0.5})
    assert len(explorer.rows["y"]) == 0
    for i in range(8):
        explorer.observe(float(i), 0.0, 2.0 * i, 4.0, {"h0": 0.5, "h1": 0.5})
    assert explorer.rows["t"].tolist() == [3.0, 4.0, 5.0, 6.0, 7.0]
    assert explorer.rows["y"].tolist() == [1.5, 2.0, 2.5, 3.0, 3.5]


def test_exp3_dep_copies_parent_when_the_category_has_no_rows():
    explorer = PB2Explorer(MIX_SPACE, "exp3_dep", seed=0)
    parent = {"lr": 3e-4, "entropy_coef": 0.05, "aug": "a"}
    for i in range(6):
        explorer.observe(float(i), 0.0, 1.0, 1.0, parent)
    explorer.bandit.choose = lambda rng: 2                       # the bandit chose "c"
    assert explorer.select(6.0, 1.0, parent, []) == {**parent, "aug": "c"}


def test_unknown_cat_exp_is_a_usage_error():
    with pytest.raises(UsageError, match="cat_exp"):
        PB2Explorer(toy_space(), "thompson", seed=0)


# -- the batch as the reference: pending rows and the bandit's plays ------------------------------
def test_at_population_4_the_second_gp_sees_the_three_running_configs_and_picks_by_gp_bucb(monkeypatch):
    from pb2_procgen import pb2, pbt
    from pb2_procgen.toy import ToyAgent

    space, seen = toy_space(), []
    explorer = PB2Explorer(space, "random", seed=3)
    rng = np.random.default_rng(0)
    for t in range(3):                                            # three rounds of four rows
        for _ in range(4):
            h = space.sample(rng)
            explorer.observe(10.0 * t, 0.1 * t, 0.1 * t + h["h0"] - (h["h1"] - 0.3) ** 2, 10.0, h)

    def recording_fit(X, ys, pending, n_cat, rng_):
        gp1, gp2 = fit_batch_gps(X, ys, pending, n_cat, rng_)
        seen.append({"pending": pending.copy(), "gp1": gp1, "gp2": gp2, "n": len(ys)})
        return gp1, gp2

    monkeypatch.setattr(pb2, "fit_batch_gps", recording_fit)
    configs = [{"h0": 0.1, "h1": 0.2}, {"h0": 0.4, "h1": 0.5}, {"h0": 0.9, "h1": 0.3}, {"h0": 0.6, "h1": 0.8}]
    agents = [ToyAgent(c) for c in configs]
    for agent in agents:
        agent.agent_steps = 30
    rewards = [0.2, 0.5, 0.9, 0.4]                                # agent 0 worst, agent 2 best
    new = pbt.explore_round(agents, configs, rewards, bottom=[0], parents=[2], space=space,
                            search="PB2", explorer=explorer, rng=rng)
    (call,) = seen
    pending = call["pending"]
    assert pending.shape == (3, 4)                                # agents 0, 1 and 3: all but the top
    assert np.allclose(pending[:, 2:], [[c["h0"], c["h1"]] for c in (configs[0], configs[1], configs[3])])
    assert np.allclose(pending[:, :2], pending[0, :2])            # at the parent's context
    grid = np.stack(np.meshgrid(np.linspace(0, 1, 101), np.linspace(0, 1, 101)), -1).reshape(-1, 2)
    ucb = lambda z: pb2.ucb_batch(z, call["gp1"], call["gp2"], pending[0, :2], np.zeros(0),
                                  np.sqrt(ucb_beta(call["n"])))
    chosen = np.array([[new[0]["h0"], new[0]["h1"]]])
    best_on_grid = ucb(grid).max()
    assert ucb(chosen)[0] >= best_on_grid - 1e-3                  # the GP-BUCB maximiser
    assert new[1:] == configs[1:]


def test_the_bandit_plays_the_population_k_equals_b():
    # one arm holds most weight: with k = 4 plays its marginal is capped at 1, so one explorer
    # draws it with probability 1/4 (the single-play bandit would give it most of the mass)
    explorer = PB2Explorer(MIX_SPACE, "exp3_dep", seed=0, population=2)   # 4 arms: k = 2 < K
    explorer.bandit.weights = np.array([0.85, 0.05, 0.05, 0.05])
    explorer.bandit.gamma = 0.1
    m, capped = explorer.bandit.marginals()
    assert m.sum() == pytest.approx(2) and m[0] == pytest.approx(1)
    assert capped.tolist() == [True, False, False, False]
    assert explorer.category_probabilities()["a"] == pytest.approx(0.5)
    before = explorer.bandit.weights.copy()
    explorer.bandit.update([0, 1, 1, 2], [1.0, 0.5, 0.5, 0.0])   # a round's rows, one per agent
    # arm 0 is capped (no change but the share); arm 1's x̂ = (0.5 + 0.5) / m_1; arm 2's 0
    eta = 2 * 0.1 / 4
    raw = before * np.exp(np.array([0.0, eta * 1.0 / m[1], 0.0, 0.0]))
    expected = raw / raw.sum() + np.e * explorer.bandit.omega / 4
    assert np.allclose(explorer.bandit.weights, expected / expected.sum())
    assert PB2Explorer(MIX_SPACE, "cocabo", seed=0, population=8).bandit.plays == 8


def test_a_bandit_from_before_the_batch_of_plays_is_refused():
    explorer = PB2Explorer(MIX_SPACE, "exp3_dep", seed=0)
    state = explorer.state_dict()
    del state["bandit"]["plays"]
    with pytest.raises(UsageError, match="predates"):
        PB2Explorer(MIX_SPACE, "exp3_dep", seed=0).load_state_dict(state)
