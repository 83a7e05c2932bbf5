"""steve/plots.py and steve/visualizer.py --video: model use drawn only for STEVE runs, corrupted-model
runs labelled and grouped apart, one-line errors (exit 2), and a video that is either written or
refused in one line before any rollout (whichever this machine's OpenGL / pygame allows)."""
import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from helpers import ROOT

from common.cli import UsageError, run_main
from steve import plots, visualizer
from steve.config import load_config
from steve.models import Policy

PENDULUM = "experiments/goodruns/pendulum/ddpg0.json"


def script(name, *args, timeout=60):
    return subprocess.run([sys.executable, str(ROOT / "steve" / name), *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})


def one_line_exit_2(returncode, stderr, prog, *words):
    assert returncode == 2, stderr
    assert stderr.count("\n") == 1 and "Traceback" not in stderr, stderr
    assert stderr.startswith(f"{prog}: error: "), stderr
    for word in words:
        assert word in stderr, (word, stderr)


@pytest.fixture(scope="module")
def ddpg_run(tmp_path_factory):
    """A real (tiny) DDPG run folder: 3 greedy evaluations, a valuerl.pt."""
    out = tmp_path_factory.mktemp("runs") / "ddpg"
    result = subprocess.run([sys.executable, str(ROOT / "steve" / "train.py"), PENDULUM, "--smoke",
                             "--frames", "600", "--eval-every", "200", "--no-plots", "--out-dir", str(out)],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    return out


def fake_run(folder, algo, scores, model_use, seed=0, corrupt=0.0, routing="random"):
    """A run folder as train.py writes it (config.json as train.py resolves it, plus `_run`) with
    the given algo, seed, --corrupt-model, Q routing and metrics (one row per 500 frames)."""
    config = load_config(PENDULUM)
    config["policy_config"]["algo"] = algo
    config["policy_config"]["q_routing"] = routing
    config["_run"] = {"seed": seed, "frames": 500 * len(scores), "eval_every": 500, "corrupt_model": corrupt}
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(config))
    with open(folder / "metrics.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["env_steps", "test_steps", "score", "model_use", "updates", "hours", "wall_seconds"])
        for i, (score, use) in enumerate(zip(scores, model_use)):
            writer.writerow([500 * (i + 1), 200 * (i + 1), score, use, 250 * i, 0.001 * i, i])
    return folder


def legend(ax):
    return sorted(ax.get_legend_handles_labels()[1])


# -- plots.py -------------------------------------------------------------------------------------
def test_a_ddpg_run_gets_no_model_use_panel_and_a_steve_run_does(ddpg_run, tmp_path):
    fig = plots.figure_run(ddpg_run)
    assert len(fig.axes) == 1   # DDPG logs model_use 0: nothing to show
    ax = fig.axes[0]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("env frames", "greedy episode return")
    assert ax.get_title() == "ddpg on Pendulum-v1"
    scores = [float(r["score"]) for r in csv.DictReader(open(ddpg_run / "metrics.csv"))]
    assert list(ax.lines[0].get_ydata()) == scores and list(ax.lines[0].get_xdata()) == [200, 400, 600]
    plots.plt.close(fig)

    steve = fake_run(tmp_path / "steve", "steve", [-1500, -900, -400], [0.0, 0.6, 0.3])
    fig = plots.figure_run(steve)
    assert len(fig.axes) == 2
    assert fig.axes[1].get_ylabel().startswith("model use") and fig.axes[1].get_xlabel() == "env frames"
    assert list(fig.axes[1].lines[0].get_ydata()) == [0.0, 0.6, 0.3]
    plots.plt.close(fig)

    mve = fake_run(tmp_path / "mve", "mve_tdk", [-1500, -900, -400], [0.0, 0.0, 0.0])
    fig = plots.figure_run(mve)
    assert len(fig.axes) == 1
    plots.plt.close(fig)
    for run in (ddpg_run, steve):   # the PNG train.py writes at the end
        png = plots.plot_run(run)
        assert png == run / "returns.png" and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_compare_draws_model_use_only_for_steve_groups_and_keeps_corrupted_runs_apart(tmp_path):
    runs = [
        fake_run(tmp_path / "s0", "steve", [-1500, -900], [0.2, 0.6], seed=0),
        fake_run(tmp_path / "s1", "steve", [-1300, -700], [0.4, 0.8], seed=1),
        fake_run(tmp_path / "sc", "steve", [-1600, -1400], [0.0, 0.01], corrupt=1.0),
        fake_run(tmp_path / "m0", "mve_tdk", [-1500, -1000], [0.0, 0.0]),
        fake_run(tmp_path / "mc", "mve_tdk", [-1500, -1490], [0.0, 0.0], corrupt=0.5),
        fake_run(tmp_path / "d0", "ddpg", [-1500, -1200], [0.0, 0.0]),
        fake_run(tmp_path / "d1", "ddpg", [-1400, -1300, -1100], [0.0, 0.0, 0.0], seed=1),
    ]
    fig = plots.figure_compare(runs)
    returns, use = fig.axes
    assert legend(returns) == ["ddpg (2 seeds)", "mve_tdk (1 seed)", "mve_tdk, corrupted model (std 0.5) (1 seed)",
                               "steve (2 seeds)", "steve, corrupted model (std 1.0) (1 seed)"]
    assert legend(use) == ["steve (2 seeds)", "steve, corrupted model (std 1.0) (1 seed)"]
    lines = {line.get_label(): line for line in use.lines}
    assert np.allclose(lines["steve (2 seeds)"].get_ydata(), [0.3, 0.7])   # mean over the two seeds
    assert np.allclose(lines["steve, corrupted model (std 1.0) (1 seed)"].get_ydata(), [0.0, 0.01])
    assert "Pendulum-v1" in returns.get_title() and use.get_ylabel().startswith("model use")
    plots.plt.close(fig)

    full = fake_run(tmp_path / "f0", "steve", [-1200, -600], [0.3, 0.5], routing="full")
    fig = plots.figure_compare([*runs[:2], full])   # full routing is a group of its own
    assert legend(fig.axes[0]) == ["steve (2 seeds)", "steve, full routing (1 seed)"]
    plots.plt.close(fig)

    fig = plots.figure_compare(runs[3:])   # no STEVE run: no model-use panel at all
    assert len(fig.axes) == 1
    plots.plt.close(fig)
    fig = plots.figure_run(runs[2])
    assert fig.axes[0].get_title() == "steve, corrupted model (std 1.0) on Pendulum-v1"
    plots.plt.close(fig)


def test_plots_script_writes_the_comparison(tmp_path):
    steve = fake_run(tmp_path / "steve", "steve", [-1500, -900], [0.1, 0.5])
    ddpg = fake_run(tmp_path / "ddpg", "ddpg", [-1500, -1200], [0.0, 0.0])
    out = tmp_path / "compare.png"
    result = script("plots.py", "--compare", ddpg, steve, "--out", out)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(out) and out.read_bytes()[:4] == b"\x89PNG"


def test_plots_bad_input_is_one_line_with_exit_2(tmp_path, capfd):
    good = fake_run(tmp_path / "good", "steve", [-1500, -900], [0.1, 0.5])
    empty = tmp_path / "empty"
    empty.mkdir()
    no_metrics = tmp_path / "no_metrics"
    no_metrics.mkdir()
    (no_metrics / "config.json").write_text((good / "config.json").read_text())
    header_only = fake_run(tmp_path / "header_only", "steve", [], [])
    damaged = fake_run(tmp_path / "damaged", "steve", [-1500, "abc"], [0.1, 0.2])
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"seed": 1}))
    (other / "metrics.csv").write_text("env_steps,score\n1,2\n")
    cases = [
        ([], "give a run folder"),
        ([str(tmp_path / "missing")], "no run folder at"),
        ([str(empty)], "no config.json"),
        ([str(no_metrics)], "no metrics.csv"),
        ([str(header_only)], "no rows"),
        ([str(damaged)], "not numbers"),
        ([str(other)], "not a steve/train.py run folder"),
        ([str(good / "config.json")], "is not a folder"),
        (["--compare", str(good), str(tmp_path / "missing")], "no run folder at"),
        (["--compare", str(good), str(empty)], "no config.json"),
        ([str(good), "--compare", str(good)], "not both"),
        (["--compare", str(good), "--out", str(tmp_path / "nowhere" / "c.png")], "no folder"),
        (["--compare", str(good), "--out", str(tmp_path)], "is a folder"),
        (["--compare"], "--compare"),
    ]
    for argv, words in cases:
        capfd.readouterr()
        with pytest.raises(SystemExit) as stopped:
            run_main(plots.main, argv, prog="steve/plots.py")
        one_line_exit_2(stopped.value.code, capfd.readouterr().err, "steve/plots.py", words)
    assert not list(tmp_path.rglob("*.png"))
    result = script("plots.py", tmp_path / "missing")   # the script path: same line
    one_line_exit_2(result.returncode, result.stderr, "steve/plots.py", "no run folder at")


# -- visualizer.py --video ------------------------------------------------------------------------
def test_pendulum_video_is_written_or_refused_in_one_line(ddpg_run, tmp_path):
    video = tmp_path / "pendulum.mp4"
    result = script("visualizer.py", PENDULUM, ddpg_run / "checkpoints" / "valuerl.pt", "--episodes", "1",
                    "--video", video, timeout=90)
    if result.returncode == 0:
        assert video.stat().st_size > 0 and "wrote" in result.stdout
    else:   # no pygame here: said before any rollout
        one_line_exit_2(result.returncode, result.stderr, "steve/visualizer.py", "pygame")
        assert "episode" not in result.stdout and not video.exists()
    assert not list(tmp_path.glob(".*partial*"))


@pytest.mark.slow
def test_mujoco_video_is_written_or_refused_in_one_line(tmp_path):
    config = tmp_path / "cheetah.json"   # 20-frame episodes: a short video
    config.write_text(json.dumps({"inherits": ["experiments/goodruns/halfcheetah/ddpg0.json"],
                                  "updates": {"env": {"max_frames": 20}}}))
    cfg = load_config(config)
    torch.manual_seed(0)
    policy = Policy(int(np.prod(cfg["env"]["obs_dims"])), cfg["env"]["action_dim"],
                    cfg["policy_config"]["hidden_dim"], cfg["policy_config"]["hidden_layers"])
    torch.save({"policy": policy.state_dict()}, tmp_path / "valuerl.pt")
    video = tmp_path / "cheetah.mp4"
    result = script("visualizer.py", config, tmp_path / "valuerl.pt", "--episodes", "1", "--video", video,
                    timeout=120)
    if result.returncode == 0:
        assert "rendering with MUJOCO_GL=" in result.stdout and "wrote" in result.stdout
        assert video.stat().st_size > 0
        cv2 = pytest.importorskip("cv2")
        capture = cv2.VideoCapture(str(video))
        assert capture.get(cv2.CAP_PROP_FRAME_COUNT) == 21   # the reset frame and 20 steps
        ok, frame = capture.read()
        assert ok and frame.shape[2] == 3 and frame.std() > 0   # a picture, not a blank frame
    else:   # no offscreen OpenGL here: said before any rollout
        one_line_exit_2(result.returncode, result.stderr, "steve/visualizer.py", "MUJOCO_GL")
        assert "episode" not in result.stdout and not video.exists()


def test_a_hanging_renderer_is_cut_off_and_named(monkeypatch):
    monkeypatch.setattr(visualizer, "_PROBE", "import time; time.sleep(30)")
    monkeypatch.setattr(visualizer, "PROBE_TIMEOUT", 1)
    monkeypatch.delenv("MUJOCO_GL", raising=False)
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    with pytest.raises(UsageError) as refused:
        visualizer.choose_renderer("HalfCheetah-v5")
    message = str(refused.value)
    assert "\n" not in message and "no frame within 1 s" in message
    assert "MUJOCO_GL=egl" in message and "MUJOCO_GL=osmesa" in message and "libegl1" in message
    monkeypatch.setenv("MUJOCO_GL", "bogus")
    with pytest.raises(UsageError, match="MUJOCO_GL=bogus"):
        visualizer.choose_renderer("HalfCheetah-v5")


def test_video_writer_and_path_are_checked_before_any_rollout(monkeypatch, tmp_path, capfd):
    monkeypatch.setattr(visualizer, "VIDEO_WRITERS", (("cv2", "no_such_cv2"), ("imageio", "no_such_ffmpeg")))
    with pytest.raises(UsageError, match="pip install opencv-python-headless"):
        visualizer.choose_video_writer()
    monkeypatch.undo()
    cfg, model = load_config(PENDULUM), tmp_path / "valuerl.pt"
    torch.save({"policy": Policy(3, 1, cfg["policy_config"]["hidden_dim"],
                                 cfg["policy_config"]["hidden_layers"]).state_dict()}, model)
    for video, words in ((tmp_path / "v.avi", ".mp4"), (tmp_path / "nowhere" / "v.mp4", "no folder"),
                         (tmp_path, "is a folder")):
        capfd.readouterr()
        with pytest.raises(SystemExit) as stopped:
            run_main(visualizer.main, [PENDULUM, str(model), "--video", str(video)], prog="steve/visualizer.py")
        out, err = capfd.readouterr()
        one_line_exit_2(stopped.value.code, err, "steve/visualizer.py", words)
        assert "episode" not in out
