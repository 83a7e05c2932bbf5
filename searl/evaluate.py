"""Play a trained SEARL (or baseline) policy: the elite a run exported as `elite_policy.pt`.

    python searl/evaluate.py RUN_DIR --episodes 10            # noise-free episodes, mean return
    python searl/evaluate.py RUN_DIR/elite_policy.pt --episodes 20 --seed 3

`searl/train.py` writes `elite_policy.pt` into the run folder (SEARL: the elite just selected,
after every generation; the single-agent baselines: the agent, at the end). The file stands alone: the
weights, the architecture (hidden widths, skips, activation, LayerNorm eps), and how actions map
to the env (policy output in [-1, 1] scaled to the action bounds; observations are used raw, as in
training: SEARL does not normalise them). TD3 actors are rebuilt from that description; DQN
networks are stored as the module itself (their conv layers carry per-layer padding state).
"""
from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import numpy as np
import torch

if __package__ in (None, ""):  # run as a script: make this paper's package and common/ importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.cli import ArgumentParser, UsageError, run_main  # noqa: E402
from common.envs import check_env_id, make_env  # noqa: E402
from common.runs import load_checkpoint, save_checkpoint  # noqa: E402
from searl.algorithm import to_env_action  # noqa: E402
from searl.evolvable import EvolvableMLP  # noqa: E402

ELITE_FILE = "elite_policy.pt"
FORMAT = "searl-policy/1"


def export_policy(path, individual, config: dict, env) -> None:
    """Write `individual`'s acting network and what is needed to act with it (atomically)."""
    payload = {"format": FORMAT, "env": config["env"], "algorithm": config["algorithm"],
               "seed": config["seed"], "individual": individual.index,
               "description": individual.describe()}
    if hasattr(individual, "actor"):  # TD3: a continuous policy in [-1, 1]
        actor = individual.actor
        payload.update(kind="td3", architecture=actor.architecture(),
                       state_dict={k: v.detach().cpu() for k, v in actor.state_dict().items()},
                       action_low=np.asarray(env.action_space.low, dtype=np.float64),
                       action_high=np.asarray(env.action_space.high, dtype=np.float64))
    else:  # DQN: greedy on the expected Q of the distributional network (mean weights)
        payload.update(kind="dqn", network=copy.deepcopy(individual.net).to("cpu").eval())
    save_checkpoint(payload, path)


class LoadedPolicy:
    """A policy read from an exported file: `act(obs)` returns the env's action."""

    def __init__(self, payload: dict):
        self.payload = payload
        self.kind, self.env_id = payload["kind"], payload["env"]
        if self.kind == "td3":
            self.net = EvolvableMLP.from_architecture(payload["architecture"], payload["state_dict"])
        else:
            self.net = payload["network"]
        self.net.eval()
        self.dtype = next(self.net.parameters()).dtype

    @torch.no_grad()
    def act(self, obs: np.ndarray):
        """The policy's action: in [-1, 1] (TD3; `action_low` / `action_high` in the file map
        it to the env's bounds, as `searl.algorithm.to_env_action` does) or an action index."""
        x = torch.as_tensor(np.asarray(obs)).unsqueeze(0)
        x = x if x.dtype == torch.uint8 else x.to(self.dtype)   # Atari frames stay uint8
        if self.kind == "td3":
            return self.net(x)[0].numpy()
        return int(self.net.q_values(x).argmax(1).item())


def load_policy(path) -> LoadedPolicy:
    """The policy in `path` (a run folder or the file itself); one clear UsageError if not."""
    path = Path(path)
    if path.is_dir():
        path = path / ELITE_FILE
    if not path.is_file():
        raise UsageError(f"no exported policy at {path}: pass a SEARL run folder (holding "
                         f"{ELITE_FILE}) or the file itself")
    try:
        payload = load_checkpoint(path)
    except Exception as error:  # a truncated or foreign file: one line, not a traceback
        raise UsageError(f"cannot read {path}: {type(error).__name__}: {error}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise UsageError(f"{path} is not a SEARL policy file (expected format {FORMAT})")
    return LoadedPolicy(payload)


def play(policy: LoadedPolicy, env_id: str, episodes: int, seed: int) -> list[float]:
    """Noise-free episodes; returns each episode's undiscounted return."""
    env = _make_env(env_id, seed)
    if policy.kind == "td3" and env.observation_space.shape != (policy.payload["architecture"]["in_dim"],):
        raise UsageError(f"the policy takes {policy.payload['architecture']['in_dim']} observations; "
                         f"{env_id} gives {env.observation_space.shape}: pass the env it was trained on "
                         f"({policy.env_id})")
    returns = []
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed + episode)
        done, total = False, 0.0
        while not done:
            obs, reward, terminated, truncated, _ = env.step(
                to_env_action(policy.act(obs), env.action_space))
            total, done = total + float(reward), terminated or truncated
        returns.append(total)
    env.close()
    return returns


def _make_env(env_id: str, seed: int):
    from searl.atari import is_atari, make_atari_env

    return make_atari_env(env_id, seed) if is_atari(env_id) else make_env(env_id, seed)


def parse_args(argv):
    parser = ArgumentParser(prog="searl/evaluate.py", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("policy", help=f"a SEARL run folder (with {ELITE_FILE}) or the file")
    parser.add_argument("--episodes", type=int, default=10, help="episodes to play (default: 10)")
    parser.add_argument("--env", default=None,
                        help="env id (default: the one the policy was trained on)")
    parser.add_argument("--seed", type=int, default=1000,
                        help="episode i resets with seed + i (default: 1000)")
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.episodes < 1:
        raise UsageError(f"--episodes must be at least 1, got {args.episodes}")
    if args.seed < 0:   # gymnasium takes no negative seed
        raise UsageError(f"--seed must be non-negative, got {args.seed}")
    policy = load_policy(args.policy)
    env_id = args.env or policy.env_id
    check_env_id(env_id)
    torch.set_num_threads(1)
    returns = play(policy, env_id, args.episodes, args.seed)
    described = policy.payload["description"]
    print(f"{policy.payload['algorithm']} individual {policy.payload['individual']} "
          f"({described.get('hidden', '')}, {described.get('actor_activation', described.get('activation', ''))}) "
          f"on {env_id}: mean return {np.mean(returns):.1f} +- {np.std(returns):.1f} over "
          f"{len(returns)} episodes (min {min(returns):.1f}, max {max(returns):.1f})")


if __name__ == "__main__":
    run_main(main, prog="searl/evaluate.py")
