"""Figures of a synthetic_envs run: NES progress, and after evaluate.py the learning curves,
success percentage and return histograms of agents trained on the proxy vs the real env, and
the Cliff reward network's Φ over the grid (the paper's Figs. 2-5 and 10).

    python synthetic_envs/plots.py RUN_DIR                          # the run's own figures
    python synthetic_envs/plots.py RUN_S0 RUN_S1 RUN_S2             # NES progress of several seeds
    python synthetic_envs/plots.py RUN_M1 RUN_M2 RUN_M5 RUN_M6 --modes  # Fig. 5, one plot
    python synthetic_envs/plots.py RUN_DIR --reward-grid            # Fig. 10 (Cliff RN)
    python synthetic_envs/plots.py RUN_DIR --visitation             # Fig. 17 (Cliff RN)
    python synthetic_envs/plots.py RUN_DIR --histograms --name evaluation,transfer   # Figs. 3-4
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

if __package__ in (None, ""):  # run as a script: make this paper's package and common/ importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.cli import UsageError  # noqa: E402
from common.config import load_config_file  # noqa: E402
from common.runs import load_checkpoint  # noqa: E402
from synthetic_envs import nes  # noqa: E402
from synthetic_envs.envs import env_spec  # noqa: E402
from synthetic_envs.figures import curves_on_steps  # noqa: E402

COLORS = {"proxy": "tab:blue", "baseline": "tab:gray", "intrinsic": "tab:orange"}


def _rows(path: Path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


def plot_nes_progress(run_dir: Path) -> Path:
    rows = _rows(run_dir / "metrics.csv")
    config = load_config_file(run_dir / "config.json")   # missing or damaged: one line
    it = [int(r["iteration"]) for r in rows]
    steps = [int(r["env_steps"]) for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for key, label, style in (("proxy_score", "current proxy ψ (mean over workers)", "-"),
                              ("best_worker_score", "best perturbation", ":"),
                              ("mean_worker_score", "mean perturbation", "--")):
        axes[0].plot(it, [float(r[key]) for r in rows], style, label=label)
    axes[1].plot(steps, [float(r["proxy_score"]) for r in rows], "-")
    axes[0].set_xlabel("NES iteration")
    axes[0].set_ylabel(nes.score_meaning(config), fontsize=8)
    axes[1].set(xlabel="real env steps (all inner agents, tests included)", ylabel="current proxy score")
    axes[0].legend(fontsize=8)
    mode = f", mode {config['mode']}" if config["kind"] == "rn" else ""
    fig.suptitle(f"NES {config['kind'].upper()} on {config['env']} ({config['agent']}{mode}, seed {config['seed']})")
    fig.tight_layout()
    path = run_dir / "nes_progress.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_nes_seeds(run_dirs: list[Path], out: Path) -> Path:
    """The current proxy's score per NES iteration and per real step, one line per run (seed)."""
    configs = [load_config_file(d / "config.json") for d in run_dirs]
    kinds = {(c["kind"], c["env"], c["agent"], c["mode"] if c["kind"] == "rn" else None) for c in configs}
    if len(kinds) != 1:
        raise UsageError(f"NES progress of several runs needs runs of one kind, env and agent, got {sorted(kinds)}")
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for run_dir, config in zip(run_dirs, configs):
        rows = _rows(run_dir / "metrics.csv")
        score = [float(r["proxy_score"]) for r in rows]
        line, = axes[0].plot([int(r["iteration"]) for r in rows], score, label=f"seed {config['seed']}")
        axes[1].plot([int(r["env_steps"]) for r in rows], score, color=line.get_color())
    config = configs[0]
    if config["kind"] == "se":   # an SE's score is a real return: draw the env's solved threshold
        for ax in axes:
            ax.axhline(env_spec(config["env"]).threshold, color="k", ls=":", lw=1, label="solved threshold")
    ylabel = "current proxy's agents: mean real test return" if config["kind"] == "se" else "current proxy score"
    axes[0].set(xlabel="NES iteration", ylabel=ylabel)
    axes[1].set(xlabel="real env steps (all inner agents, tests included)", ylabel=ylabel)
    axes[0].legend(fontsize=8)
    mode = f", mode {config['mode']}" if config["kind"] == "rn" else ""
    fig.suptitle(f"NES {config['kind'].upper()} on {config['env']} ({config['agent']}{mode}), {len(run_dirs)} runs")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def cliff_potential(run_dir: Path) -> np.ndarray | None:
    """Φ(s) of a Cliff RN over the 4x12 grid (None for other proxies or info-vector modes)."""
    from synthetic_envs.envs import CliffWalk
    from synthetic_envs.proxies import INFO_MODES, RewardNet

    saved = load_checkpoint(run_dir / "proxy.pt")   # a damaged file: one line, exit 2
    if saved["kind"] != "rn" or saved["env"] != "cliff" or saved["mode"] in INFO_MODES:
        return None
    cfg = saved["proxy_config"]
    net = RewardNet(saved["mode"], CliffWalk.ROWS * CliffWalk.COLS, 3, cfg["hidden_size"],
                    cfg["hidden_layer"], cfg["activation"])
    net.load_state_dict(saved["state_dict"])
    with torch.no_grad():
        phi = net(torch.eye(CliffWalk.ROWS * CliffWalk.COLS)).numpy()
    return phi.reshape(CliffWalk.ROWS, CliffWalk.COLS)


def plot_cliff_heatmap(run_dir: Path) -> Path | None:
    phi = cliff_potential(run_dir)
    if phi is None:
        return None
    saved_mode = load_config_file(run_dir / "config.json")["mode"]
    fig, ax = plt.subplots(figsize=(9, 3.4))
    image = ax.imshow(phi, cmap="viridis")
    for (row, col), value in np.ndenumerate(phi):
        ax.text(col, row, f"{value:.2f}", ha="center", va="center", fontsize=7, color="w")
    for col, label in ((0, "S"), (11, "G")):
        ax.text(col, 3.35, label, ha="center", va="top", fontsize=9, weight="bold")
    ax.add_patch(plt.Rectangle((0.5, 2.5), 10, 1, fill=False, hatch="//", edgecolor="red", lw=1.2))
    ax.set(xticks=[], yticks=[], title=f"Cliff reward network Φ(s), mode {saved_mode} (hatched: cliff; "
           "the cliff and goal cells are terminal)")
    fig.colorbar(image, ax=ax, fraction=0.025)
    fig.tight_layout()
    path = run_dir / "phi_heatmap.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_evaluation(run_dir: Path, report: dict, name: str = "evaluation") -> list[Path]:
    """Learning curves, success percentage and final-return histograms, one row per agent type."""
    agents = report["agents"]
    fig, axes = plt.subplots(len(agents), 3, figsize=(15, 3.8 * len(agents)), squeeze=False)
    proxy_label = "trained on SE" if report["kind"] == "se" else f"trained with RN (mode {report['mode']})"
    labels = {"proxy": proxy_label, "baseline": "trained on real env", "intrinsic": "count-based / ICM (mode −1)"}
    for row, agent in zip(axes, agents):
        groups = report["groups"][agent]
        x_max = max(max((c[0] for m in g["agents"] for c in m["curve"]), default=1) for g in groups.values())
        grid = np.linspace(0, x_max, 200)
        # one set of bins for every group of the row: per-group bins over far-apart ranges
        # (9.5 vs 200) would be too thin to see
        finals = [m["final_return"] for g in groups.values() for m in g["agents"]]
        low_edge, high_edge = min(finals), max(finals)
        bins = np.linspace(low_edge - 0.5, high_edge + 0.5, 21) if high_edge - low_edge < 1 else \
            np.linspace(low_edge, high_edge, 21)
        for group, summary in groups.items():
            members, color = summary["agents"], COLORS[group]
            curves = curves_on_steps(members, grid, x_column=0)
            with warnings.catch_warnings():  # grid points before any agent's first test are NaN
                warnings.simplefilter("ignore", RuntimeWarning)
                mean = np.nanmean(curves, axis=0)
                low, high = np.nanpercentile(curves, 25, axis=0), np.nanpercentile(curves, 75, axis=0)
            row[0].plot(grid, mean, color=color, label=labels[group])
            row[0].fill_between(grid, low, high, color=color, alpha=0.2)
            solved_at = np.array([m["steps_to_solve"] for m in members if m["solved"]], float)
            success = [(solved_at <= x).sum() / len(members) * 100 for x in grid]
            row[1].plot(grid, success, color=color, label=labels[group])
            row[2].hist([m["final_return"] for m in members], bins=bins, alpha=0.55, color=color,
                        label=f"{labels[group]} (mean {summary['final_return']:.1f})")
        row[0].axhline(report["threshold"], color="k", ls=":", lw=1, label="solved threshold")
        x_label = ("training steps (SE agents: SE steps, others: real steps)" if report["kind"] == "se"
                   else "real env training steps")
        row[0].set(xlabel=x_label, ylabel=f"greedy test return ({report['test_episodes']} ep.)",
                   title=f"{agent}: learning curves (mean, 25-75%)")
        row[1].set(xlabel="real env training steps", ylabel="agents solved (%)", ylim=(-2, 102),
                   title=f"{agent}: success percentage")
        se_note = "; SE agents: their final test" if report["kind"] == "se" else ""
        row[2].set(xlabel=f"real return (mean of the last {report.get('solved_window', 1)} tests{se_note})", ylabel="agents",
                   title=f"{agent}: final returns")
        for ax in row:
            ax.legend(fontsize=7)
    hp = ", varied hyperparameters" if report["vary_hp"] else ""
    protocol = report.get("protocol", "early stop")
    fig.suptitle(f"{report['kind'].upper()} on {report['env']}: {len(groups['proxy']['agents'])} fresh agents per group"
                 f"{hp}; {protocol}, solved = mean of the last {report.get('solved_window', 1)} tests ≥ threshold")
    fig.tight_layout()
    path = run_dir / f"{name}.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    heatmap = plot_cliff_heatmap(run_dir)
    return [path] + ([heatmap] if heatmap else [])


def plot_run(run_dir) -> list[Path]:
    run_dir = Path(run_dir)
    paths = [plot_nes_progress(run_dir)]
    if (run_dir / "proxy.pt").is_file():
        heatmap = plot_cliff_heatmap(run_dir)
        paths += [heatmap] if heatmap else []
    if (run_dir / "evaluation.json").is_file():
        report = json.loads((run_dir / "evaluation.json").read_text())
        paths += plot_evaluation(run_dir, report)
    return paths


def main(argv=None) -> None:
    from common.cli import ArgumentParser
    from synthetic_envs import figures

    parser = ArgumentParser(prog="synthetic_envs/plots.py", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run folder(s) of synthetic_envs/train.py")
    figure = parser.add_mutually_exclusive_group()
    figure.add_argument("--modes", action="store_true",
                        help="Fig. 5: the RN modes of the given runs against the baselines, one plot")
    figure.add_argument("--reward-grid", action="store_true", help="Fig. 10: a Cliff RN's reward per (state, action)")
    figure.add_argument("--visitation", action="store_true",
                        help="Fig. 17: Cliff state visitation of agents trained with and without the RN")
    figure.add_argument("--histograms", action="store_true",
                        help="Figs. 3-4: real-return histograms, proxy vs real env, per agent type")
    parser.add_argument("--out", default="", help="output PNG (default: in the (first) run folder)")
    parser.add_argument("--name", default="evaluation",
                        help="evaluation name(s), comma-separated for --histograms (default: evaluation)")
    parser.add_argument("--max-steps", type=int, default=3000, help="--modes: x-axis end in real steps (default: 3000)")
    parser.add_argument("--n-agents", type=int, default=10, help="--visitation: agents per group (default: 10)")
    parser.add_argument("--episodes", type=int, default=100, help="--visitation: training episodes (default: 100)")
    args = parser.parse_args(argv)
    dirs = [Path(d) for d in args.run_dirs]
    for d in dirs:
        if not d.is_dir():
            raise UsageError(f"no run folder at {d}")
    for key in ("max_steps", "n_agents", "episodes"):
        if getattr(args, key) <= 0:
            raise UsageError(f"--{key.replace('_', '-')} must be positive, got {getattr(args, key)}")
    single = args.reward_grid or args.visitation
    if single and len(dirs) != 1:
        raise UsageError("--reward-grid and --visitation take one run folder")
    out = Path(args.out) if args.out else None
    if args.modes:
        paths = [figures.plot_mode_comparison(dirs, out or dirs[0] / "modes.png", args.max_steps, args.name)]
    elif args.reward_grid:
        paths = [figures.plot_reward_grid(dirs[0], out or dirs[0] / "reward_grid.png")]
    elif args.visitation:
        paths = [figures.plot_visitation(dirs[0], out or dirs[0] / "visitation.png", args.n_agents, args.episodes)]
    elif args.histograms:
        names = [n for n in args.name.split(",") if n]
        paths = [figures.plot_histograms(dirs, out or dirs[0] / "histograms.png", names)]
    elif len(dirs) > 1:
        for d in dirs:
            if not (d / "metrics.csv").is_file() or not (d / "config.json").is_file():
                raise UsageError(f"{d} has no metrics.csv and config.json of synthetic_envs/train.py")
        paths = [plot_nes_seeds(dirs, out or dirs[0] / "nes_progress_seeds.png")]
    else:
        paths = plot_run(dirs[0])
    for path in paths:
        print(path)


if __name__ == "__main__":
    from common.cli import run_main

    run_main(main, prog="synthetic_envs/plots.py")
