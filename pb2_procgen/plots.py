"""Plots of PBT/PB2 runs: best and mean return against env steps, each hyperparameter's schedule
per agent (the paper's schedule plots) and the categorical choice per agent over time.

    python pb2_procgen/plots.py RUN_DIR                       # the run's own PNGs
    python pb2_procgen/plots.py --compare RUN_DIR... --out F  # several runs on one figure
    python pb2_procgen/plots.py --methods RUN_DIR... --out F  # runs grouped by method: mean ± s.e.
                                                              # over seeds, and a markdown table
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

NOT_HYPERPARAMETERS = {"round", "agent", "env_steps", "agent_steps", "train_return", "test_return",
                       "test_steps", "wall_seconds"}


def read_rows(run_dir: Path) -> list[dict]:
    with open(run_dir / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def per_round(rows: list[dict], column: str):
    """(env_steps, best, mean) of `column` over agents, one point per round."""
    rounds = defaultdict(list)
    steps = {}
    for row in rows:
        rounds[int(row["round"])].append(float(row[column] or "nan"))   # empty: no episode ended
        steps[int(row["round"])] = float(row["env_steps"])
    order = sorted(rounds)
    return ([steps[r] for r in order], [np.nanmax(rounds[r]) for r in order],
            [np.nanmean(rounds[r]) for r in order])


def method_of(run_dir: Path) -> str:
    """PBT, random search, PB2-Rand, PB2-Mult or PB2-Mix, from the run's config."""
    config = json.loads((run_dir / "config.json").read_text())
    return {"PBT": "PBT", "random": "random search"}.get(config["search"]) or {
        "random": "PB2-Rand", "exp3_dep": "PB2-Mult", "cocabo": "PB2-Mix"}[config["cat_exp"]]


def label_of(run_dir: Path) -> str:
    try:
        seed = json.loads((run_dir / "config.json").read_text())["seed"]
        return f"{method_of(run_dir)} seed {seed}"
    except (OSError, KeyError, ValueError):
        return run_dir.name


def plot_returns(run_dir: Path, out: Path | None = None) -> Path:
    rows = read_rows(run_dir)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for column, style in (("test_return", "-"), ("train_return", ":")):
        steps, best, mean = per_round(rows, column)
        kind = "test" if column == "test_return" else "train"
        ax.plot(steps, best, style, marker="o", ms=3, label=f"best agent ({kind})")
        ax.plot(steps, mean, style, alpha=0.6, label=f"population mean ({kind})")
    ax.set_xlabel("environment steps (whole population)")
    ax.set_ylabel("return (toy: Q)")
    ax.set_title(label_of(run_dir))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    out = out or run_dir / "returns.png"
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def plot_schedules(run_dir: Path, out: Path | None = None) -> Path:
    """One panel per hyperparameter: its value for every agent against the agent's steps."""
    rows = read_rows(run_dir)
    names = [key for key in rows[0] if key not in NOT_HYPERPARAMETERS]
    cols = min(3, len(names))
    n_rows = (len(names) + cols - 1) // cols
    fig, axes = plt.subplots(n_rows, cols, figsize=(4.5 * cols, 3.3 * n_rows), squeeze=False)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    agents = sorted({int(r["agent"]) for r in rows})
    for ax, name in zip(axes.flat, names):
        values = [r[name] for r in rows]
        categorical = not all(_is_number(v) for v in values)
        categories = sorted(set(values)) if categorical else None
        for agent in agents:
            mine = [r for r in rows if int(r["agent"]) == agent]
            x = [float(r["agent_steps"]) for r in mine]
            y = [categories.index(r[name]) if categorical else float(r[name]) for r in mine]
            if categorical:  # small vertical offsets keep agents on the same value apart
                ax.scatter(x, np.array(y) + 0.08 * (agent - (len(agents) - 1) / 2), s=14,
                           label=f"agent {agent}")
            else:
                ax.step(x, y, where="pre", label=f"agent {agent}")
        if categorical:
            ax.set_yticks(range(len(categories)), categories, fontsize=7)
        ax.set_title(name)
        ax.set_xlabel("agent steps")
        ax.grid(alpha=0.3)
    axes.flat[0].legend(fontsize=7)
    fig.suptitle(f"hyperparameter schedules: {label_of(run_dir)}")
    fig.tight_layout()
    out = out or run_dir / "schedules.png"
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def plot_compare(run_dirs, out: Path, column: str = "test_return") -> Path:
    """Best agent's return against env steps for several runs (e.g. PBT vs PB2 variants)."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for run_dir in map(Path, run_dirs):
        steps, best, _ = per_round(read_rows(run_dir), column)
        ax.plot(steps, best, marker="o", ms=3, label=label_of(run_dir))
    ax.set_xlabel("environment steps (whole population)")
    ax.set_ylabel(f"best agent's {column.replace('_', ' ')}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def method_curves(run_dirs, column: str = "test_return") -> dict:
    """Per method: env steps, and per seed the best agent's and the population mean's `column`
    per round (runs of one method must have the same rounds)."""
    methods = defaultdict(lambda: {"best": [], "mean": [], "wall": []})
    for run_dir in map(Path, run_dirs):
        steps, best, mean = per_round(read_rows(run_dir), column)
        entry = methods[method_of(run_dir)]
        if "steps" in entry and entry["steps"] != steps:
            raise ValueError(f"{run_dir}: other rounds than the other {method_of(run_dir)} runs")
        entry["steps"] = steps
        entry["best"].append(best)
        entry["mean"].append(mean)
        summary = json.loads((run_dir / "summary.json").read_text())
        entry["wall"].append(summary["wall_seconds"])
    return dict(methods)


def mean_se(values, axis=0):
    values = np.asarray(values, float)
    n = values.shape[axis]
    return values.mean(axis), (values.std(axis, ddof=1) / np.sqrt(n) if n > 1 else 0 * values.mean(axis))


def plot_methods(run_dirs, out: Path, column: str = "test_return") -> tuple[Path, str]:
    """Best agent's and population mean's return against env steps, mean ± s.e. over each
    method's seeds; returns the figure and a markdown table (final and mean-over-rounds values)."""
    methods = method_curves(run_dirs, column)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    lines = ["| method | seeds | best agent, final (mean ± s.e.) | best agent, mean over rounds | "
             "population mean, final | population mean, mean over rounds | wall per run |",
             "|---|---|---|---|---|---|---|"]
    for name, entry in methods.items():
        cells = []
        for ax, key, title in ((axes[0], "best", "best agent"), (axes[1], "mean", "population mean")):
            mean, se = mean_se(entry[key])
            line, = ax.plot(entry["steps"], mean, marker="o", ms=3, label=f"{name} ({len(entry[key])} seeds)")
            ax.fill_between(entry["steps"], mean - se, mean + se, color=line.get_color(), alpha=0.2)
            ax.set_title(f"{title}'s {column.replace('_', ' ')}, mean ± s.e. over seeds")
            final, final_se = mean_se([run[-1] for run in entry[key]])
            area, area_se = mean_se([np.mean(run) for run in entry[key]])
            cells += [f"{final:.1f} ± {final_se:.1f}", f"{area:.1f} ± {area_se:.1f}"]
        lines.append(f"| {name} | {len(entry['best'])} | " + " | ".join(cells) +
                     f" | {np.mean(entry['wall']):.0f} s |")
    for ax in axes:
        ax.set_xlabel("environment steps (whole population)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out, "\n".join(lines)


def _is_number(value: str) -> bool:
    try:
        float(value)
        return True
    except ValueError:
        return False


def plot_run(run_dir) -> list[Path]:
    run_dir = Path(run_dir)
    return [plot_returns(run_dir), plot_schedules(run_dir)]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="run folders")
    parser.add_argument("--compare", action="store_true", help="overlay the runs on one figure")
    parser.add_argument("--methods", action="store_true",
                        help="group the runs by method: mean ± s.e. over seeds, and a markdown table")
    parser.add_argument("--out", default="compare.png", help="file for --compare / --methods")
    args = parser.parse_args(argv)
    missing = [r for r in args.runs if not (Path(r) / "metrics.csv").exists()]
    if missing:
        parser.exit(2, f"plots.py: error: no metrics.csv in {', '.join(missing)}\n")
    if args.methods:
        out, table = plot_methods(args.runs, Path(args.out))
        print(table)
        print(out)
    elif args.compare:
        print(plot_compare(args.runs, Path(args.out)))
    else:
        for run in args.runs:
            for path in plot_run(run):
                print(path)


if __name__ == "__main__":
    main()
