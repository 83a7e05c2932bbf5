"""Greedy rollouts of a trained STEVE / MVE / DDPG policy (the seed's visualizer.py).

    python steve/visualizer.py CONFIG output/Pendulum-v1/steve0/checkpoints/valuerl.pt --episodes 5
    MUJOCO_GL=egl python steve/visualizer.py CONFIG MODEL_FILE --video cheetah.mp4

Prints each episode's return. --video renders the first episode offscreen (MuJoCo envs need
MUJOCO_GL=egl or osmesa and that library installed) and writes an mp4 with OpenCV.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

if __package__ in (None, ""):  # run as a script: make this paper's package and common/ importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.cli import ArgumentParser, UsageError, run_main  # noqa: E402
from common.envs import make_env  # noqa: E402
from common.runs import load_checkpoint  # noqa: E402
from steve.config import load_config  # noqa: E402
from steve.models import Policy  # noqa: E402
from steve.train import to_env  # noqa: E402


def parse_args(argv):
    parser = ArgumentParser(prog="steve/visualizer.py", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", help="the experiment JSON the policy was trained with")
    parser.add_argument("model_file", help="checkpoints/valuerl.pt (or backup.pt) of that run")
    parser.add_argument("gpu_id", nargs="?", default=None, help="accepted for the seed's interface; unused")
    parser.add_argument("--episodes", type=int, default=5, help="greedy episodes (default: 5)")
    parser.add_argument("--video", default=None, help="write the first episode to this mp4")
    parser.add_argument("--seed", type=int, default=200)
    return parser.parse_args(argv)


def load_policy(cfg: dict, model_file: Path) -> Policy:
    if not model_file.is_file():
        raise UsageError(f"no model file at {model_file}")
    state = load_checkpoint(model_file)
    state = state.get("value", state) if isinstance(state, dict) else state  # backup.pt: under "value"
    if not isinstance(state, dict):
        raise UsageError(f"{model_file} is not a STEVE checkpoint (valuerl.pt or backup.pt); "
                         f"it holds a {type(state).__name__}")
    policy = Policy(int(np.prod(cfg["env"]["obs_dims"])), cfg["env"]["action_dim"],
                    cfg["policy_config"]["hidden_dim"], cfg["policy_config"]["hidden_layers"])
    try:
        policy.load_state_dict(state["policy"])
    except (KeyError, RuntimeError) as error:
        raise UsageError(f"{model_file} does not hold a policy for this config ({str(error).splitlines()[0]})")
    return policy


def rollout(policy: Policy, env, frames: list | None) -> float:
    obs, _ = env.reset()
    total, done = 0.0, False
    while not done:
        with torch.no_grad():
            action = policy(torch.as_tensor(obs)).numpy()
        obs, reward, terminated, truncated, _ = env.step(to_env(action, env.action_space))
        total, done = total + reward, terminated or truncated
        if frames is not None:
            frames.append(env.render())
    return total


def write_video(frames: list, path: str, fps: int = 30) -> None:
    import cv2

    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.episodes <= 0:
        raise UsageError(f"--episodes must be positive, got {args.episodes}")
    if args.seed < 0:   # gymnasium takes no negative seed
        raise UsageError(f"--seed must be non-negative, got {args.seed}")
    cfg = load_config(args.config)
    policy = load_policy(cfg, Path(args.model_file))
    kwargs = {"render_mode": "rgb_array"} if args.video else {}
    env = make_env(cfg["env"]["name"], seed=args.seed, max_episode_steps=cfg["env"]["max_frames"], **kwargs)
    returns = []
    for episode in range(args.episodes):
        frames = [] if args.video and episode == 0 else None
        try:
            returns.append(rollout(policy, env, frames))
        except Exception as error:  # offscreen GL missing: say so in one line
            if frames is None:
                raise
            reason = (str(error).splitlines() or [type(error).__name__])[0]
            raise UsageError(f"rendering failed ({reason}); MuJoCo envs need MUJOCO_GL=egl or osmesa "
                             f"with that library installed, classic-control envs need pygame") from None
        print(f"episode {episode}: return {returns[-1]:.2f}")
        if frames:
            write_video(frames, args.video)
            print(f"wrote {args.video} ({len(frames)} frames)")
    print(f"mean return over {len(returns)} episodes: {np.mean(returns):.2f}")


if __name__ == "__main__":
    run_main(main, prog="steve/visualizer.py")
