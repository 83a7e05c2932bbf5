"""Figures of STEVE runs: greedy return vs env frames (one run, or DDPG / MVE / STEVE over seeds
with mean and min-max spread) and, for STEVE runs only, the model use over time.

    python steve/plots.py RUN_DIR                       # writes RUN_DIR/returns.png
    python steve/plots.py --compare DIR [DIR ...] --out compare.png

Model use (1 - mean weight STEVE gives the model-free target T_0) is a STEVE quantity: DDPG and
MVE have no such weight (their metrics.csv column is empty, or 0 in older runs), so their runs
get no model-use line.
Runs trained with --corrupt-model STD are labelled "corrupted model (std STD)" and grouped apart
from the uncorrupted runs of the same algorithm.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402

if __package__ in (None, ""):  # run as a script: make this paper's package and common/ importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.cli import ArgumentParser, UsageError, run_main  # noqa: E402

MODEL_USE_ALGOS = ("steve",)   # algorithms whose metrics.csv model_use column means something
# metrics.csv's calibration columns (train.py model_calibration) and how the panel names them
CALIBRATION = {"calib_state_1": "state, 1 step", "calib_state_H": "state, H steps",
               "calib_reward_1": "reward, 1 step"}
CALIBRATED = 1.25   # 1 + 1/M for the 4-member ensembles: error / variance of a calibrated ensemble
MODEL_USE_LABEL = "model use = 1 − mean w₀"


# -- reading a run folder ------------------------------------------------------------------------------
def _config(run_dir: Path) -> dict:
    path = run_dir / "config.json"
    if not path.is_file():
        raise UsageError(f"{run_dir} has no config.json: not a steve/train.py run folder")
    try:
        config = json.loads(path.read_text())
        if not isinstance(config["policy_config"]["algo"], str) or not isinstance(config["env"]["name"], str):
            raise TypeError
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise UsageError(f"cannot read {path} ({str(error).splitlines()[0][:100]})") from None
    except (KeyError, TypeError):
        raise UsageError(f"{path} has no policy_config.algo / env.name: not a steve/train.py "
                         "run folder") from None
    return config


def _metrics(run_dir: Path) -> dict[str, np.ndarray]:
    path = run_dir / "metrics.csv"
    if not path.is_file():
        raise UsageError(f"{run_dir} has no metrics.csv: not a steve/train.py run folder, "
                         "or the run has not logged a greedy episode yet")
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
        if not rows:
            raise UsageError(f"{path} has no rows yet: the run has not logged a greedy episode")
        metrics = {key: np.array([float(r[key]) for r in rows]) for key in ("env_steps", "score")}
        if "model_use" in rows[0]:   # empty for DDPG / MVE (older runs logged 0)
            metrics["model_use"] = np.array([float(r["model_use"] or "nan") for r in rows])
        for key in CALIBRATION:      # model-based runs since issue 33; empty for DDPG
            metrics[key] = np.array([float(r.get(key) or "nan") for r in rows])
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise UsageError(f"cannot read {path} ({str(error).splitlines()[0][:100]})") from None
    except KeyError as error:
        raise UsageError(f"{path} has no column {error}: not a steve/train.py metrics file") from None
    except (TypeError, ValueError):
        raise UsageError(f"{path} has a row that is not numbers (damaged file?)") from None
    metrics.setdefault("model_use", np.full_like(metrics["score"], np.nan))
    return metrics


def _run_meta(config: dict) -> dict:
    """What train.py adds under `_run`: seed, frames, eval_every, corrupt_model."""
    return config["_run"] if isinstance(config.get("_run"), dict) else {}


def corrupt_std(config: dict) -> float:
    """The N(0, std) noise added to imagined states (train.py --corrupt-model); 0 for none."""
    run = _run_meta(config)
    try:
        return float(run.get("corrupt_model") or 0.0)
    except (TypeError, ValueError):
        return 0.0


def shows_model_use(config: dict) -> bool:
    return config["policy_config"]["algo"] in MODEL_USE_ALGOS


def run_label(config: dict, with_env: bool = False) -> str:
    """'steve', 'steve, full routing', 'steve, corrupted model (std 1.0)', optionally
    ' on Pendulum-v1'. Full routing: every Q member (policy_config.q_routing) or every world-model
    member (model_config.full_batch) trains on every example."""
    label = config["policy_config"]["algo"]
    if config["policy_config"].get("q_routing") == "full" or (config.get("model_config") or {}).get("full_batch"):
        label += ", full routing"
    std = corrupt_std(config)
    if std > 0:
        label += f", corrupted model (std {std})"
    if (config.get("_run") or {}).get("layout") == "speedrun":
        label += ", speedrun"
    return label + (f" on {config['env']['name']}" if with_env else "")


def _seeds(n: int) -> str:
    return f"({n} seed{'' if n == 1 else 's'})"


# -- figures ---------------------------------------------------------------------------------------
def has_calibration(metrics: dict) -> bool:
    return any(np.isfinite(metrics[key]).any() for key in CALIBRATION)


def _calibration_panel(ax, curves) -> None:
    """curves: (frames, {column: values}, label prefix, colour or None) per run or group."""
    styles = dict(zip(CALIBRATION, ("-", "--", ":")))
    for frames, values, prefix, color in curves:
        for key, name in CALIBRATION.items():
            ax.plot(frames, values[key], ls=styles[key], color=color, label=f"{prefix}{name}")
    ax.axhline(CALIBRATED, color="grey", lw=0.8,
               label=f"calibrated 4-member ensemble ({CALIBRATED}); above: over-confident")
    ax.set_yscale("log")
    ax.set(xlabel="env frames", ylabel="model error² / ensemble variance",
           title="world-model calibration (evaluation episode)")
    ax.legend(fontsize=7)


def figure_run(run_dir) -> plt.Figure:
    """Return vs frames; next to it STEVE's model use (only for a STEVE run) and the world
    model's calibration (runs with a model that logged it)."""
    run_dir = Path(run_dir)
    config, m = _config(run_dir), _metrics(run_dir)
    steve, calibrated = shows_model_use(config), has_calibration(m)
    panels = 1 + steve + calibrated
    fig, axes = plt.subplots(1, panels, figsize=(5.5 * panels if panels > 1 else 6, 4), squeeze=False)
    axes = axes[0]
    seed = _run_meta(config).get("seed")
    label = run_label(config) + (f", seed {seed}" if seed is not None else "")
    axes[0].plot(m["env_steps"], m["score"], marker=".", label=label)
    axes[0].set(xlabel="env frames", ylabel="greedy episode return",
                title=f"{run_label(config)} on {config['env']['name']}")
    axes[0].legend(fontsize=8)
    if steve:
        axes[1].plot(m["env_steps"], m["model_use"], color="tab:red", label=label)
        axes[1].set(xlabel="env frames", ylabel=MODEL_USE_LABEL, ylim=(-0.02, 1.02),
                    title="how much of the target comes from the model")
    if calibrated:
        _calibration_panel(axes[-1], [(m["env_steps"], m, "", "tab:purple")])
    fig.tight_layout()
    return fig


def figure_compare(run_dirs) -> plt.Figure:
    """Runs grouped by algorithm and model corruption: mean return over seeds on a common frame
    grid with a min-max band; STEVE groups' mean model use in a second panel."""
    loaded = [(_config(Path(d)), _metrics(Path(d))) for d in run_dirs]
    envs = sorted({config["env"]["name"] for config, _ in loaded})
    groups, model_use = defaultdict(list), {}
    for config, metrics in loaded:
        key = run_label(config, with_env=len(envs) > 1)
        groups[key].append(metrics)
        model_use[key] = shows_model_use(config)
    steve = any(model_use.values())
    calibrated = any(has_calibration(m) for runs in groups.values() for m in runs)
    panels = 1 + steve + calibrated
    fig, axes = plt.subplots(1, panels, figsize=(5.5 * panels if panels > 1 else 6, 4), squeeze=False)
    axes = axes[0]
    calibration_curves = []
    for key, runs in sorted(groups.items()):
        # the frames every run of the group reached: no run is extended past its last evaluation
        last = min(r["env_steps"].max() for r in runs)
        grid = np.unique(np.concatenate([r["env_steps"][r["env_steps"] <= last] for r in runs]))
        scores = np.array([np.interp(grid, r["env_steps"], r["score"]) for r in runs])
        line, = axes[0].plot(grid, scores.mean(0), label=f"{key} {_seeds(len(runs))}")
        axes[0].fill_between(grid, scores.min(0), scores.max(0), color=line.get_color(), alpha=0.2)
        if model_use[key]:
            uses = np.array([np.interp(grid, r["env_steps"], r["model_use"]) for r in runs])
            axes[1].plot(grid, uses.mean(0), color=line.get_color(), label=f"{key} {_seeds(len(runs))}")
        if calibrated and any(has_calibration(r) for r in runs):   # mean over seeds, NaN-free rows
            means = {c: np.nanmean([np.interp(grid, r["env_steps"], r[c]) for r in runs], 0) for c in CALIBRATION}
            calibration_curves.append((grid, means, f"{key}: ", line.get_color()))
    where = f" on {envs[0]}" if len(envs) == 1 else ""
    axes[0].set(xlabel="env frames", ylabel="greedy episode return",
                title=f"return vs frames{where} (mean, min-max over seeds)")
    axes[0].legend(fontsize=8)
    if steve:
        axes[1].set(xlabel="env frames", ylabel=MODEL_USE_LABEL, ylim=(-0.02, 1.02),
                    title="STEVE's model use (mean over seeds)")
        axes[1].legend(fontsize=8)
    if calibrated:
        _calibration_panel(axes[-1], calibration_curves)
    fig.tight_layout()
    return fig


def _frames_in_thousands(fig: plt.Figure) -> None:
    """'50k' instead of '50000' on every frames axis: long runs' tick labels otherwise collide."""
    for ax in fig.axes:
        if ax.get_xlabel() == "env frames" and ax.get_xlim()[1] >= 10_000:
            ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda x, _: f"{x / 1000:g}k"))


def _save(fig: plt.Figure, path: Path) -> Path:
    _frames_in_thousands(fig)
    try:
        fig.savefig(path, dpi=110)
    except OSError as error:
        raise UsageError(f"cannot write {path} ({error.strerror or error})") from None
    finally:
        plt.close(fig)
    return path


def plot_run(run_dir) -> Path:
    """RUN_DIR/returns.png: return vs frames, and model use for a STEVE run."""
    return _save(figure_run(run_dir), Path(run_dir) / "returns.png")


def plot_compare(run_dirs: list[Path], out: Path) -> Path:
    return _save(figure_compare(run_dirs), Path(out))


# -- command line ----------------------------------------------------------------------------------
def _check_run_dir(path: Path) -> Path:
    if not path.exists():
        raise UsageError(f"no run folder at {path}")
    if not path.is_dir():
        raise UsageError(f"{path} is not a folder; give a steve/train.py run folder")
    return path


def main(argv=None) -> None:
    parser = ArgumentParser(prog="steve/plots.py", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", nargs="?", type=Path, help="one run folder: writes RUN_DIR/returns.png")
    parser.add_argument("--compare", nargs="+", type=Path, metavar="DIR",
                        help="run folders to compare (seeds of one algorithm are averaged)")
    parser.add_argument("--out", type=Path, default=Path("steve_compare.png"),
                        help="where --compare writes its PNG (default: steve_compare.png)")
    args = parser.parse_args(argv)
    if args.run_dir is None and not args.compare:
        parser.error("give a run folder, or --compare DIR [DIR ...]")
    if args.run_dir is not None and args.compare:
        parser.error("give either a run folder or --compare DIR [DIR ...], not both")
    if args.compare:
        dirs = [_check_run_dir(d) for d in args.compare]
        if args.out.is_dir():
            raise UsageError(f"--out {args.out} is a folder; give a file name such as {args.out / 'compare.png'}")
        if not args.out.parent.is_dir():
            raise UsageError(f"--out {args.out}: no folder {args.out.parent}")
        print(plot_compare(dirs, args.out))
    else:
        print(plot_run(_check_run_dir(args.run_dir)))


if __name__ == "__main__":
    run_main(main, prog="steve/plots.py")
