"""Figures of STEVE runs: greedy return vs env frames (one run, or DDPG / MVE / STEVE over seeds
with mean and min-max spread) and STEVE's model use over time.

    python steve/plots.py RUN_DIR                       # writes RUN_DIR/returns.png
    python steve/plots.py --compare DIR [DIR ...] --out compare.png
"""
from __future__ import annotations

import argparse
import csv
import json
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def _metrics(run_dir: Path) -> dict[str, np.ndarray]:
    with open(run_dir / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return {key: np.array([float(r[key]) for r in rows]) for key in ("env_steps", "score", "model_use")}


def plot_run(run_dir) -> Path:
    run_dir = Path(run_dir)
    m = _metrics(run_dir)
    config = json.loads((run_dir / "config.json").read_text())
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    axes[0].plot(m["env_steps"], m["score"], marker=".")
    axes[0].set(xlabel="env frames", ylabel="greedy episode return",
                title=f"{config['policy_config']['algo']} on {config['env']['name']}")
    axes[1].plot(m["env_steps"], m["model_use"], color="tab:red")
    axes[1].set(xlabel="env frames", ylabel="model use = 1 − mean w₀", ylim=(-0.02, 1.02),
                title="how much of the target comes from the model")
    fig.tight_layout()
    path = run_dir / "returns.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_compare(run_dirs: list[Path], out: Path) -> Path:
    """Runs grouped by algorithm: mean return over seeds on a common frame grid, min-max band."""
    groups = defaultdict(list)
    for run_dir in run_dirs:
        config = json.loads((run_dir / "config.json").read_text())
        groups[config["policy_config"]["algo"]].append(_metrics(run_dir))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for algo, runs in sorted(groups.items()):
        grid = np.unique(np.concatenate([r["env_steps"] for r in runs]))
        scores = np.array([np.interp(grid, r["env_steps"], r["score"]) for r in runs])
        line, = axes[0].plot(grid, scores.mean(0), label=f"{algo} ({len(runs)} seeds)")
        axes[0].fill_between(grid, scores.min(0), scores.max(0), color=line.get_color(), alpha=0.2)
        uses = np.array([np.interp(grid, r["env_steps"], r["model_use"]) for r in runs])
        axes[1].plot(grid, uses.mean(0), color=line.get_color(), label=algo)
    axes[0].set(xlabel="env frames", ylabel="greedy episode return", title="return vs frames (mean, min-max)")
    axes[1].set(xlabel="env frames", ylabel="model use", ylim=(-0.02, 1.02), title="STEVE's model use")
    axes[0].legend(fontsize=8)
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="steve/plots.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", nargs="?")
    parser.add_argument("--compare", nargs="+", type=Path, help="run folders to compare")
    parser.add_argument("--out", type=Path, default=Path("steve_compare.png"))
    args = parser.parse_args(argv)
    print(plot_compare(args.compare, args.out) if args.compare else plot_run(args.run_dir))


if __name__ == "__main__":
    main()
