"""The single-agent baselines the SEARL seed ships (`run_td3`, `run_dqn`): one TD3 or DQN agent
with the same networks, `random_steps` uniform random steps first, then one update per env
step, tested every `eval_every` env steps on `test_episodes` noise-free episodes. They give
the curve SEARL's elite is compared with on the same env-step axis.
"""
from __future__ import annotations

import time

import numpy as np
from tqdm import tqdm

from common.runs import require_finite
from searl.algorithm import random_action, test_individual, to_env_action


def run_baseline(config, run, state, buffer, env, test_env, checkpoint_of) -> dict:
    """Train one agent until `total_steps`. Tests (and checkpoints) happen at the first episode
    end at or after each multiple of `eval_every`, so a checkpoint never splits an episode and
    --resume continues exactly."""
    agent, rng = state["agent"], state["rng"]
    state.setdefault("env_steps", 0)
    state.setdefault("test_steps", 0)
    state.setdefault("test_returns", [])
    state.setdefault("metric_rows", 0)
    state.setdefault("wall_seconds", 0.0)
    metrics = run.metrics(keep_rows=state["metric_rows"] if run.resume else None)
    start, wall_before = time.time(), state["wall_seconds"]
    bar = tqdm(total=config["total_steps"], initial=state["env_steps"], unit="step",
               desc=config["algorithm"], dynamic_ncols=True)
    next_test = (state["env_steps"] // config["eval_every"] + 1) * config["eval_every"]
    try:
        while state["env_steps"] < config["total_steps"]:
            obs, _ = env.reset(seed=int(rng.integers(2**31)))
            done = False
            while not done:
                learning = state["env_steps"] >= config["random_steps"]
                action = agent.act(obs, explore=True) if learning else random_action(env.action_space, rng)
                next_obs, reward, terminated, truncated, _ = env.step(to_env_action(action, env.action_space))
                buffer.add(obs, action, reward, next_obs, terminated, truncated)
                obs, done = next_obs, terminated or truncated
                state["env_steps"] += 1
                if learning:
                    losses = agent.learn(buffer, 1, rng)
                    require_finite("the training loss", next(iter(losses.values())), state["env_steps"])
            bar.update(state["env_steps"] - bar.n)
            if state["env_steps"] >= next_test or state["env_steps"] >= config["total_steps"]:
                next_test = (state["env_steps"] // config["eval_every"] + 1) * config["eval_every"]
                seeds = [int(s) for s in np.random.SeedSequence([config["seed"] + 100, state["env_steps"]])
                         .generate_state(config["test_episodes"])]
                test_return, test_steps = test_individual(agent, test_env, config["test_episodes"], seeds)
                require_finite("the test return", test_return, state["env_steps"])
                state["test_steps"] += test_steps
                state["test_returns"].append(test_return)
                state["wall_seconds"] = wall_before + time.time() - start
                metrics.write({"env_steps": state["env_steps"], "test_steps": state["test_steps"],
                               "test_return": test_return, "train_updates": agent.train_steps,
                               "wall_seconds": round(state["wall_seconds"], 2)})
                state["metric_rows"] = metrics.rows_written
                run.save_checkpoint(checkpoint_of(state, buffer))
                bar.set_postfix(test=f"{test_return:.1f}")
    finally:
        bar.close()
    returns = state["test_returns"]
    return {"env_steps": state["env_steps"], "test_steps": state["test_steps"],
            "final_return": returns[-1], "best_return": max(returns),
            "wall_seconds": round(state["wall_seconds"], 2), "updates": agent.train_steps}
