"""The inner loop of the bi-level optimisation: train one fresh agent on an env (an SE, the
real env behind an RN, or the plain real env), test it on the real env, and count every real
step. Also the agent registry and the per-(agent, env) hyperparameters."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from common.cli import UsageError
from synthetic_envs.envs import (env_spec, is_discrete_action, is_discrete_state, make_real_env, one_hot,
                                 state_dim)
from synthetic_envs.proxies import as_env
from synthetic_envs.tabular import TABULAR_AGENTS, TABULAR_HP, vary_tabular_hp

AGENT_NAMES = ("ql", "sarsa", "ddqn", "dueling_ddqn", "td3_discrete", "td3", "ppo")


def _deep():
    from synthetic_envs import deep_agents  # torch agents: imported only when used
    return deep_agents


def agent_hp(agent: str, env: str) -> dict:
    """The reference's tuned hyperparameters of `agent` on `env` (a fresh copy)."""
    if agent in TABULAR_AGENTS:
        return dict(TABULAR_HP[agent])
    table = _deep().DEFAULT_HP[agent]
    return dict(table.get(env) or next(iter(table.values())))


def check_agent(agent: str, real_env) -> None:
    """Refuse agent/env pairs that cannot work, with the reason."""
    if agent not in AGENT_NAMES:
        raise UsageError(f"unknown agent {agent!r}; allowed: {', '.join(AGENT_NAMES)}")
    discrete_actions = is_discrete_action(real_env)
    if agent in TABULAR_AGENTS and not is_discrete_state(real_env):
        raise UsageError(f"{agent} is tabular and needs a discrete-state env (cliff)")
    if agent == "td3" and discrete_actions:
        raise UsageError("td3 is a continuous-action agent and this env has discrete actions; "
                         "use td3_discrete, ddqn or dueling_ddqn")
    if agent in ("ql", "sarsa", "ddqn", "dueling_ddqn", "td3_discrete") and not discrete_actions:
        raise UsageError(f"{agent} needs discrete actions and this env's are continuous; use td3 or ppo")


def make_agent(agent: str, real_env, hp: dict, seed: int):
    if agent in TABULAR_AGENTS:
        return TABULAR_AGENTS[agent](state_dim(real_env), real_env.action_space, hp, seed)
    return _deep().AGENTS[agent](state_dim(real_env), real_env.action_space, hp, seed)


def vary_hp(agent: str, hp: dict, rng: np.random.Generator) -> dict:
    """--vary-hp: sample this agent's hyperparameters around the tuned ones (Sec. 4)."""
    return vary_tabular_hp(hp, rng) if agent in TABULAR_AGENTS else _deep().vary_hp(hp, rng)


@dataclass
class InnerResult:
    """What one inner training run cost and achieved."""
    train_steps: int = 0          # steps on the env trained on (SE steps on an SE)
    real_train_steps: int = 0     # real env steps of training (0 on an SE)
    real_test_steps: int = 0      # real env steps of greedy test episodes
    episodes: int = 0
    solved_at: int | None = None  # real_train_steps when the solved rule first held
    final_return: float = float("nan")  # mean real return of the final test
    curve: list = field(default_factory=list)  # (train_steps, real_train_steps, test return)

    def last_tests_mean(self, window: int) -> float:
        """Mean of the last `window` test returns of the curve (the original's solved quantity)."""
        return float(np.mean([score for _, _, score in self.curve[-window:]])) if self.curve else float("nan")

    @property
    def real_steps(self) -> int:
        return self.real_train_steps + self.real_test_steps


def _encoder(agent, env):
    """Deep agents see a discrete state one-hot; tabular agents see the int."""
    if is_discrete_state(env) and not getattr(agent, "tabular", False):
        n = state_dim(env)
        return lambda s: one_hot(s, n)
    return lambda s: s


def run_episode(agent, env, encode, explore: bool, repeat: int = 1) -> tuple[float, int]:
    """One episode; trains the agent when `explore`. Each action is repeated `repeat` times
    (the reference's same_action_num), the agent seeing one transition with the summed reward.
    Returns (return of the env's rewards, env steps)."""
    obs, _ = env.reset()
    obs = encode(obs)
    total, steps, done = 0.0, 0, False
    while not done:
        action = agent.act(obs, explore)
        reward = 0.0
        for _ in range(repeat):
            nxt, r, terminated, truncated, _ = env.step(action)
            reward += r
            steps += 1
            done = terminated or truncated
            if done:
                break
        nxt = encode(nxt)
        if explore:
            agent.observe(obs, action, reward, nxt, terminated, truncated)
        total += reward
        obs = nxt
    return total, steps


def test_agent(agent, real_env, episodes: int, repeat: int = 1) -> tuple[float, int]:
    """Mean greedy return over `episodes` real episodes, and the real steps they took."""
    encode = _encoder(agent, real_env)
    returns, steps = [], 0
    for _ in range(episodes):
        ret, n = run_episode(agent, real_env, encode, explore=False, repeat=repeat)
        returns.append(ret)
        steps += n
    return float(np.mean(returns)), steps


def plateaued(returns: list[float], window: int, rel_diff: float) -> bool:
    """SE early out (the original's `env_solved` on a virtual env): the mean of the last `window`
    episode returns differs by less than `rel_diff` (relative) from the mean of the `window` before
    (fewer at the start, as the original's AverageMeter takes what there is)."""
    last = float(np.mean(returns[-window:]))
    before = returns[-2 * window:-window]
    before = float(np.mean(before)) if before else 0.0
    return abs(last - before) / (abs(before) + 1e-9) < rel_diff


def windowed_mean_reached(scores: list[float], window: int, threshold: float) -> bool:
    """The original's solved rule on the real env: the mean of the last `window` test returns
    (all of them while there are fewer) is at or above the threshold."""
    return float(np.mean(scores[-window:])) >= threshold


def train_agent(agent, train_env, real_env, hp: dict, settings: dict, on_se: bool,
                early_stop: bool = True) -> InnerResult:
    """Train `agent` on `train_env` for up to hp["max_episodes"] episodes, as the original's
    BaseAgent.train: on an SE it stops when its training return plateaus; otherwise (real env or
    RN) it tests on `real_env` after every `check_every`-th episode and, with `early_stop`, stops
    once the mean of the last `early_out_num` tests reaches the threshold (checked from episode
    `init_episodes` on). Without `early_stop` it trains the whole budget (the original's
    comparison scripts) and `solved_at` still records when the rule first held. Then a final
    test on the real env."""
    result = InnerResult()
    encode = _encoder(agent, train_env)
    returns, scores = [], []
    window, check_every = settings["early_out_num"], settings["check_every"]
    solved_window = settings.get("solved_window", window)  # evaluate.py may set its own
    repeat = hp.get("same_action_num", 1)
    for episode in range(hp["max_episodes"]):
        ret, steps = run_episode(agent, train_env, encode, explore=True, repeat=repeat)
        agent.end_episode()
        returns.append(ret)
        result.train_steps += steps
        result.real_train_steps += 0 if on_se else steps
        result.episodes += 1
        if on_se:
            if episode >= hp["init_episodes"] + window and plateaued(returns, window, settings["se_plateau"]):
                break
            continue
        if episode % check_every:
            continue
        score, test_steps = test_agent(agent, real_env, settings["test_episodes"], repeat)
        result.real_test_steps += test_steps
        result.curve.append((result.train_steps, result.real_train_steps, score))
        scores.append(score)
        if result.solved_at is None and episode >= hp["init_episodes"] \
                and windowed_mean_reached(scores, solved_window, settings["threshold"]):
            result.solved_at = result.real_train_steps
            if early_stop:
                break
    result.final_return, test_steps = test_agent(agent, real_env, settings["test_episodes"], repeat)
    result.real_test_steps += test_steps
    if on_se:
        result.curve.append((result.train_steps, 0, result.final_return))
        if result.final_return >= settings["threshold"]:
            result.solved_at = 0
    return result


RN_SCORES = ("steps", "final_return")


def fitness(kind: str, result: InnerResult, threshold: float, unsolved_weight: float,
            rn_score: str = "steps") -> float:
    """SE: the mean real test return. RN, the "reward threshold objective" (`rn_score` "steps"):
    minus the real training steps until solved (all of them if never solved) minus a penalty for
    the final test return's distance to the threshold; `rn_score` "final_return": the final real
    test return alone (the original's final code; its agents still stop once solved)."""
    if kind == "se" or rn_score == "final_return":
        return result.final_return
    steps = result.solved_at if result.solved_at is not None else result.real_train_steps
    return -steps - unsolved_weight * max(0.0, threshold - result.final_return)


def train_fresh_agent(env: str, agent_name: str, hp: dict, seed: int, vary: bool, settings: dict,
                      hp_overrides: dict | None = None, make_proxy=None, kind: str = "rn",
                      zero_terminal_potential: bool = False,
                      early_stop: bool = True, threshold: float | None = None) -> tuple[InnerResult, dict]:
    """One fresh agent (hyperparameters varied when `vary`, then `hp_overrides` applied) trained on
    the real env, or on the proxy `make_proxy(real_env)` returns, and tested on a second real env
    seeded seed + 100. Used by NES (every score) and by evaluate.py (every agent). `threshold`
    replaces the env's solved return (None: the env's)."""
    spec = env_spec(env)
    real_env, test_env = make_real_env(env, seed), make_real_env(env, seed + 100)
    if vary:
        hp = vary_hp(agent_name, hp, np.random.default_rng(seed))
    hp = dict(hp, **(hp_overrides or {}))
    agent = make_agent(agent_name, real_env, hp, seed)
    train_env = real_env
    if make_proxy is not None:
        train_env = as_env(kind, make_proxy(real_env), real_env, spec.max_steps, hp["gamma"],
                           zero_terminal_potential)
    threshold = spec.threshold if threshold is None else threshold
    result = train_agent(agent, train_env, test_env, hp, dict(settings, threshold=threshold),
                         on_se=make_proxy is not None and kind == "se", early_stop=early_stop)
    real_env.close()
    test_env.close()
    return result, hp
