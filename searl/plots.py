"""Plots of SEARL runs: the elite's test return against env steps (optionally next to
single-agent baseline runs), and the population's hyperparameter and architecture trajectories.

    python searl/plots.py RUN_DIR [--baseline BASELINE_RUN_DIR ...] [--out FILE]
"""
from __future__ import annotations

import argparse
import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def curve(run_dir: Path) -> tuple[list[float], list[float], str]:
    """(env_steps, test return, label) of a SEARL run (elite) or a baseline run."""
    rows = read_csv(run_dir / "metrics.csv")
    column = "elite_test_return" if "elite_test_return" in rows[0] else "test_return"
    label = "SEARL elite" if column == "elite_test_return" else "single agent"
    return ([float(r["env_steps"]) for r in rows], [float(r[column]) for r in rows], label)


def plot_learning_curve(run_dir: Path, baselines=(), out: Path | None = None) -> Path:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    steps, returns, label = curve(run_dir)
    ax.plot(steps, returns, marker="o", ms=3, label=f"{label} ({run_dir.name})")
    rows = read_csv(run_dir / "metrics.csv")
    if "best_fitness" in rows[0]:
        ax.plot(steps, [float(r["best_fitness"]) for r in rows], lw=1, alpha=0.6,
                label="best fitness (noisy eval)")
        ax.plot(steps, [float(r["mean_fitness"]) for r in rows], lw=1, alpha=0.6, ls="--",
                label="mean fitness")
    for baseline in baselines:
        b_steps, b_returns, b_label = curve(Path(baseline))
        ax.plot(b_steps, b_returns, marker="s", ms=3, label=f"{b_label} ({Path(baseline).name})")
    ax.set_xlabel("environment steps (all interactions counted)")
    ax.set_ylabel("test return (noise-free, mean of episodes)")
    ax.set_title(f"SEARL: {run_dir.name}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    out = out or run_dir / "learning_curve.png"
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def plot_population(run_dir: Path, out: Path | None = None) -> Path | None:
    """One panel per hyperparameter / architecture feature: every individual of every
    generation as a dot, the elite's lineage highlighted by the line of best fitness."""
    path = run_dir / "population.csv"
    if not path.exists():
        return None
    rows = read_csv(path)
    numeric = [key for key in ("lr_actor", "lr_critic", "lr", "batch_size", "policy_noise",
                               "policy_delay") if key in rows[0]
               and (key.startswith("lr") or len({r[key] for r in rows}) > 1)]  # hide constants
    panels = numeric + ["hidden units", "hidden layers"] + \
        [key for key in ("actor_activation", "activation", "channels")
         if key in rows[0] and any(r[key] for r in rows)] + ["fitness"]
    cols = 3
    fig, axes = plt.subplots((len(panels) + cols - 1) // cols, cols,
                             figsize=(4.2 * cols, 3.0 * ((len(panels) + cols - 1) // cols)),
                             squeeze=False)
    generation = [int(r["generation"]) for r in rows]
    fitness = [float(r["fitness"]) for r in rows]
    best = {}
    for g, f, r in zip(generation, fitness, rows):
        if g not in best or f > best[g][0]:
            best[g] = (f, r)
    for ax, panel in zip(axes.flat, panels):
        values = [panel_value(r, panel) for r in rows]
        categorical = isinstance(values[0], str)
        if categorical:
            categories = sorted(set(values))
            values = [categories.index(v) for v in values]
            ax.set_yticks(range(len(categories)), categories)
        ax.scatter(generation, values, s=10, alpha=0.5, c=fitness, cmap="viridis")
        gens = sorted(best)
        best_values = [panel_value(best[g][1], panel) for g in gens]
        if categorical:
            best_values = [categories.index(v) for v in best_values]
        ax.plot(gens, best_values, color="crimson", lw=1, label="fittest")
        if panel.startswith("lr"):
            ax.set_yscale("log")
        ax.set_title(panel)
        ax.set_xlabel("generation")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.suptitle("population over generations (colour: fitness; red: fittest individual)")
    fig.tight_layout()
    out = out or run_dir / "population.png"
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def panel_value(row: dict, panel: str):
    if panel == "hidden units":
        return sum(int(h) for h in row["hidden"].split("-"))
    if panel == "hidden layers":
        return len(row["hidden"].split("-"))
    if panel in ("fitness", "lr_actor", "lr_critic", "lr", "batch_size", "policy_noise",
                 "policy_delay"):
        return float(row[panel])
    return row[panel]


def plot_run(run_dir, baselines=()) -> list[Path]:
    run_dir = Path(run_dir)
    outputs = [plot_learning_curve(run_dir, baselines)]
    population = plot_population(run_dir)
    return outputs + ([population] if population else [])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", help="a SEARL (or baseline) run folder")
    parser.add_argument("--baseline", action="append", default=[],
                        help="a single-agent baseline run folder to draw on the same axes")
    parser.add_argument("--out", default=None, help="file for the learning curve")
    args = parser.parse_args(argv)
    run_dir = Path(args.run_dir)
    if not (run_dir / "metrics.csv").exists():
        parser.exit(2, f"plots.py: error: no metrics.csv in {run_dir}\n")
    print(plot_learning_curve(run_dir, args.baseline, Path(args.out) if args.out else None))
    population = plot_population(run_dir)
    if population:
        print(population)


if __name__ == "__main__":
    main()
