"""Greedy rollouts of a trained STEVE / MVE / DDPG policy (the seed's visualizer.py).

    python steve/visualizer.py CONFIG output/Pendulum-v1/steve0/checkpoints/valuerl.pt --episodes 5
    python steve/visualizer.py CONFIG MODEL_FILE --video cheetah.mp4

Prints each episode's return. --video renders the first episode offscreen and writes an mp4
(OpenCV, or imageio with imageio-ffmpeg). Before any rollout it checks that it can: MuJoCo envs
need an offscreen OpenGL; with MUJOCO_GL unset it tries egl, then osmesa (then glfw where a
display exists), each in a short-lived subprocess (a backend that hangs without a GPU is cut off
after 20 s), and renders with the first that gives a frame. Classic-control envs (Pendulum)
render with pygame. What is missing is said in one line (exit 2).
"""
from __future__ import annotations

import argparse
import ctypes.util
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
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


PROBE_TIMEOUT = 20   # seconds one renderer probe may take (EGL without a GPU can hang)
GL_BACKENDS = ("egl", "osmesa", "glfw")   # the MUJOCO_GL values MuJoCo knows on Linux
GL_NEEDS = {"egl": "libegl1 (apt install libegl1)", "osmesa": "libosmesa6 (apt install libosmesa6)",
            "glfw": "a display (DISPLAY set)"}
GL_LIBRARY = {"egl": "EGL", "osmesa": "OSMesa"}   # lib<name>.so each backend loads (pip glfw bundles its own)
VIDEO_WRITERS = (("cv2", "cv2"), ("imageio", "imageio_ffmpeg"))   # (writer, the module it needs)
WRITER_HINT = "pip install opencv-python-headless (or imageio imageio-ffmpeg)"

# Run in a fresh interpreter with MUJOCO_GL set: make the env as main() does, render one frame,
# print {"shape": [...]} or {"error": "..."} as the last line of stdout.
_PROBE = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
try:
    from common.envs import make_env
    env = make_env(sys.argv[2], render_mode="rgb_array")
    env.reset(seed=0)
    frame = env.render()
    env.close()
    shape = list(getattr(frame, "shape", ()))
    print(json.dumps({"shape": shape} if len(shape) == 3 and min(shape) > 0 else
                     {"error": f"render() gave {type(frame).__name__} {shape}, not an RGB image"}))
except BaseException as error:
    try:
        text = str(error).strip().splitlines()[0]
    except Exception:
        text = ""
    print(json.dumps({"error": f"{type(error).__name__}: {text}" if text else type(error).__name__}))
"""


def probe_render(env_id: str, backend: str | None) -> tuple[bool, str]:
    """Can `env_id` render one rgb_array frame with MUJOCO_GL=backend? (ok, shape or reason),
    decided in a subprocess that is killed after PROBE_TIMEOUT seconds."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("MUJOCO_GL", None)
    env.pop("PYOPENGL_PLATFORM", None)   # MuJoCo sets it to match MUJOCO_GL
    if backend:
        env["MUJOCO_GL"] = backend
    try:
        result = subprocess.run([sys.executable, "-c", _PROBE, str(Path(__file__).resolve().parents[1]), env_id],
                                env=env, capture_output=True, text=True, timeout=PROBE_TIMEOUT)
    except subprocess.TimeoutExpired:
        return False, f"no frame within {PROBE_TIMEOUT} s (hangs, e.g. EGL without a GPU driver)"
    lines = result.stdout.strip().splitlines()
    try:
        answer = json.loads(lines[-1])
    except (IndexError, ValueError):
        return False, (f"the renderer crashed (exit status {result.returncode})" if result.returncode
                       else "the renderer gave no answer")
    if "shape" in answer:
        return True, "x".join(map(str, answer["shape"]))
    if backend in GL_LIBRARY and ctypes.util.find_library(GL_LIBRARY[backend]) is None:
        return False, f"no lib{GL_LIBRARY[backend]} on this machine"
    return False, answer["error"][:120]


def _entry_point(env_id: str) -> str:
    import gymnasium as gym

    try:
        entry = gym.spec(env_id).entry_point
    except Exception:   # an unknown id: make_env says so later, in its own words
        return ""
    return entry if isinstance(entry, str) else f"{entry.__module__}:{getattr(entry, '__qualname__', '')}"


def choose_renderer(env_id: str) -> str | None:
    """Check, before any rollout, that `env_id` can render offscreen on this machine. For a MuJoCo
    env return the MUJOCO_GL to use: MUJOCO_GL if set, else the first of egl, osmesa (and glfw
    where there is a display) that renders a frame; None for other envs. UsageError otherwise."""
    entry = _entry_point(env_id)
    if "mujoco" not in entry:
        if any(kind in entry for kind in ("classic_control", "box2d")) and \
                importlib.util.find_spec("pygame") is None:
            raise UsageError(f"--video: {env_id} renders with pygame, which is not installed: "
                             'pip install pygame (or "gymnasium[classic-control]")')
        ok, detail = probe_render(env_id, None)
        if not ok:
            raise UsageError(f"--video: {env_id} cannot render an rgb_array frame here ({detail})")
        return None
    chosen = os.environ.get("MUJOCO_GL", "").strip().lower()
    if chosen:
        if chosen not in GL_BACKENDS:
            raise UsageError(f"--video: MUJOCO_GL={chosen} is not an offscreen renderer MuJoCo knows; "
                             f"set it to one of {', '.join(GL_BACKENDS)}, or unset it to let the visualizer choose")
        ok, detail = probe_render(env_id, chosen)
        if not ok:
            raise UsageError(f"--video: MUJOCO_GL={chosen} cannot render {env_id} ({detail}); it needs "
                             f"{GL_NEEDS[chosen]}, or unset MUJOCO_GL to let the visualizer try egl and osmesa")
        return chosen
    has_display = bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    tried = []
    for backend in GL_BACKENDS if has_display else GL_BACKENDS[:2]:
        ok, detail = probe_render(env_id, backend)
        if ok:
            return backend
        tried.append(f"MUJOCO_GL={backend}: {detail}")
    raise UsageError(f"--video: no offscreen OpenGL to render {env_id} ({'; '.join(tried)}); install "
                     "libegl1 (MUJOCO_GL=egl) or libosmesa6 (MUJOCO_GL=osmesa)")


class VideoWriter:
    """Streams RGB frames into an mp4 (frames are not kept in memory: 1000 MuJoCo frames are
    ~700 MB). Writes to a hidden file next to `path` and renames it on close, so a failed run
    leaves no half-written video."""

    def __init__(self, path: Path, kind: str, fps: int):
        self.path, self.kind, self.fps, self.frames = Path(path), kind, fps, 0
        self.tmp = self.path.with_name(f".{self.path.stem}.partial{self.path.suffix}")
        self._writer = None

    def add(self, frame) -> None:
        frame = np.ascontiguousarray(frame, dtype=np.uint8)
        if self._writer is None:
            self._writer = _open_writer(self.kind, self.tmp, self.fps, frame.shape[1], frame.shape[0])
        if self.kind == "cv2":
            import cv2

            self._writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        else:
            self._writer.append_data(frame)
        self.frames += 1

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release() if self.kind == "cv2" else self._writer.close()
            self._writer = None
            os.replace(self.tmp, self.path)

    def abort(self) -> None:
        if self._writer is not None:
            try:
                self._writer.release() if self.kind == "cv2" else self._writer.close()
            finally:
                self._writer = None
                self.tmp.unlink(missing_ok=True)


def _open_writer(kind: str, path: Path, fps: int, width: int, height: int):
    if kind == "cv2":
        import cv2

        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
        if not writer.isOpened():
            raise UsageError(f"--video: OpenCV cannot write an mp4 (codec mp4v) at {path}; {WRITER_HINT}")
        return writer
    import imageio.v2 as imageio

    return imageio.get_writer(str(path), format="FFMPEG", fps=fps, macro_block_size=1)


def choose_video_writer() -> str:
    """'cv2' or 'imageio': the first that writes a tiny mp4 in a temporary folder."""
    reasons = []
    for kind, module in VIDEO_WRITERS:
        if importlib.util.find_spec(module) is None:
            reasons.append(f"{module} is not installed")
            continue
        try:
            with tempfile.TemporaryDirectory() as folder:
                writer = VideoWriter(Path(folder) / "probe.mp4", kind, fps=10)
                for shade in (0, 255):
                    writer.add(np.full((16, 16, 3), shade, np.uint8))
                writer.close()
                if (Path(folder) / "probe.mp4").stat().st_size > 0:
                    return kind
                reasons.append(f"{kind} wrote an empty mp4")
        except Exception as error:   # noqa: BLE001 (a broken install: try the next writer)
            text = (str(error).strip().splitlines() or [type(error).__name__])[0]
            reasons.append(f"{kind}: {text[:80]}")
    raise UsageError(f"--video needs an mp4 writer ({'; '.join(reasons)}): {WRITER_HINT}")


def check_video_path(path: Path) -> None:
    if path.is_dir():
        raise UsageError(f"--video {path} is a folder; give a file name such as {path / 'episode.mp4'}")
    if path.suffix.lower() != ".mp4":
        raise UsageError(f"--video {path}: give a file name ending in .mp4")
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise UsageError(f"--video {path}: no folder {folder}")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UsageError(f"--video {path}: cannot write in {folder}")


def rollout(policy: Policy, env, video: VideoWriter | None = None) -> float:
    obs, _ = env.reset()
    if video is not None:
        video.add(env.render())
    total, done = 0.0, False
    while not done:
        with torch.no_grad():
            action = policy(torch.as_tensor(obs)).numpy()
        obs, reward, terminated, truncated, _ = env.step(to_env(action, env.action_space))
        total, done = total + reward, terminated or truncated
        if video is not None:
            video.add(env.render())
    return total


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.episodes <= 0:
        raise UsageError(f"--episodes must be positive, got {args.episodes}")
    if args.seed < 0:   # gymnasium takes no negative seed
        raise UsageError(f"--seed must be non-negative, got {args.seed}")
    cfg = load_config(args.config)
    policy = load_policy(cfg, Path(args.model_file))
    env_id, kwargs, video = cfg["env"]["name"], {}, None
    if args.video:   # everything a video needs is checked here, before any rollout
        check_video_path(Path(args.video))
        writer_kind = choose_video_writer()
        backend = choose_renderer(env_id)
        if backend:
            os.environ["MUJOCO_GL"] = backend   # read by gymnasium when it makes the renderer
            print(f"rendering with MUJOCO_GL={backend}")
        kwargs = {"render_mode": "rgb_array"}
    env = make_env(env_id, seed=args.seed, max_episode_steps=cfg["env"]["max_frames"], **kwargs)
    if args.video:
        video = VideoWriter(Path(args.video), writer_kind, int(env.metadata.get("render_fps") or 30))
    returns = []
    try:
        for episode in range(args.episodes):
            recording = video if episode == 0 else None
            try:
                returns.append(rollout(policy, env, recording))
            except UsageError:
                raise
            except Exception as error:  # rendering failed although the probe rendered: one line
                if recording is None:
                    raise
                reason = (str(error).strip().splitlines() or [type(error).__name__])[0][:120]
                raise UsageError(f"--video: rendering {env_id} failed ({type(error).__name__}: {reason})") from None
            print(f"episode {episode}: return {returns[-1]:.2f}")
            if recording is not None:
                recording.close()
                print(f"wrote {args.video} ({recording.frames} frames)")
    except BaseException:
        if video is not None:
            video.abort()
        raise
    finally:
        env.close()   # frees the GL context now, not in a noisy interpreter-exit __del__
    print(f"mean return over {len(returns)} episodes: {np.mean(returns):.2f}")


if __name__ == "__main__":
    run_main(main, prog="steve/visualizer.py")
