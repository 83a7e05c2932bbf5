"""Return curves of optim4rl runs.

    python optim4rl/plots.py logs/catch_lopt/1                   # one run: returns.png in it
    python optim4rl/plots.py logs/catch_lopt/{1,2,3} --out cmp.png --labels learned Adam RMSProp
    python optim4rl/plots.py --phi logs/catch_collect_phi/{1,2,3} --labels learned untrained Adam --out phi.png

--phi reads the data.npz of CollectA2C runs (gradients g and updates / lr of every 100th
coordinate at every update) and draws |update / lr| against |g|: slope 0 on log axes is
sign-SGD (a step that ignores the gradient's size), slope 1 is SGD.
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

if __package__ in (None, ""):  # run as a script: make this paper's package and common/ importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from optim4rl.logs import read_results_csv  # noqa: E402


def smooth(values: list[float], window: int) -> list[float]:
    """Trailing moving average over `window` logged points (1: unchanged)."""
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v - (values[i - window] if i >= window else 0.0)
        out.append(total / min(i + 1, window))
    return out


def read_curves(run_dir: Path) -> dict[str, tuple[list, list]]:
    """env -> (steps, returns) from every result_<env>.csv of a run folder."""
    curves = {}
    for path in sorted(Path(run_dir).glob("result_*.csv")):
        table = read_results_csv(path)
        if table["Step"]:
            curves[table["Env"][0]] = ([float(s) for s in table["Step"]], [float(r) for r in table["Return"]])
    return curves


def plot_returns(run_dir: Path, out: Path | None = None) -> Path:
    """Return vs env steps, one line per env of the run."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for env, (steps, returns) in read_curves(run_dir).items():
        ax.plot(steps, returns, label=env)
    ax.set_xlabel("env steps")
    ax.set_ylabel("episode return")
    ax.set_title(f"{Path(run_dir).parent.name}/{Path(run_dir).name}")
    ax.grid(alpha=0.3)
    ax.legend()
    out = Path(out or Path(run_dir) / "returns.png")
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def compare(run_dirs: list[Path], labels: list[str], out: Path, title: str = "", window: int = 1) -> Path:
    """Several runs on one axis (e.g. a learned optimizer against Adam and RMSProp)."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for run_dir, label in zip(run_dirs, labels):
        for env, (steps, returns) in read_curves(run_dir).items():
            ax.plot(steps, smooth(returns, window), label=label if len(labels) > 1 else f"{label} {env}")
    ax.set_xlabel("env steps")
    ax.set_ylabel("episode return")
    ax.set_title(title + (f" (moving average of {window} points)" if window > 1 else ""), fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def update_vs_gradient(run_dir: Path) -> dict:
    """|g| and |update / lr| of a CollectA2C run's data.npz (non-zero gradients only), with the
    least-squares slope of log|update| on log|g| and the median |update| / |g|."""
    path = Path(run_dir) / "data.npz"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found (run a *_collect config first)")
    data = np.load(path)
    grad, update = np.abs(data["grad"]).ravel(), np.abs(data["update"]).ravel()
    keep = (grad > 0) & (update > 0) & np.isfinite(grad) & np.isfinite(update)
    grad, update = grad[keep], update[keep]
    log_g, log_u = np.log10(grad), np.log10(update)
    slope = float(np.polyfit(log_g, log_u, 1)[0]) if len(grad) > 1 else math.nan
    return {"grad": grad, "update": update, "slope": slope, "median_ratio": float(np.median(update / grad)),
            "median_update": float(np.median(update)), "points": int(len(grad))}


def plot_update_vs_gradient(run_dirs: list[Path], labels: list[str], out: Path) -> Path:
    """One panel per run: a 2-D histogram of log10 |g| against log10 |update / lr|, with the
    fitted slope (0: sign-SGD, 1: SGD) and the line update = g (SGD at this lr)."""
    stats = [update_vs_gradient(r) for r in run_dirs]
    fig, axes = plt.subplots(1, len(stats), figsize=(4 * len(stats), 3.8), squeeze=False)
    for ax, st, label in zip(axes[0], stats, labels):
        log_g, log_u = np.log10(st["grad"]), np.log10(st["update"])
        ax.hexbin(log_g, log_u, gridsize=50, bins="log", cmap="viridis", mincnt=1)
        lo, hi = np.percentile(log_g, [0.5, 99.5])
        ax.plot([lo, hi], [lo, hi], "r--", lw=1, label="update = g (SGD at this lr)")
        ax.set_title(f"{label}\nslope {st['slope']:.2f}, median |update| {st['median_update']:.3g}", fontsize=9)
        ax.set_xlabel("log10 |gradient|")
        ax.set_ylabel("log10 |update / lr|")
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    for st, label in zip(stats, labels):
        print(f"{label}: slope {st['slope']:.3f}, median |update/lr| {st['median_update']:.4g}, "
              f"median |update/lr| / |g| {st['median_ratio']:.4g}, {st['points']} points")
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="run folders logs/<config>/<idx>")
    parser.add_argument("--out", type=Path, help="PNG path (default: returns.png in the run folder)")
    parser.add_argument("--labels", nargs="*", help="one label per run (default: the folder)")
    parser.add_argument("--title", default="")
    parser.add_argument("--smooth", type=int, default=1, help="moving average over N logged points")
    parser.add_argument("--phi", action="store_true",
                        help="|update / lr| against |gradient| of CollectA2C runs (their data.npz)")
    args = parser.parse_args(argv)
    if args.labels and len(args.labels) != len(args.runs):
        parser.error(f"--labels gives {len(args.labels)} labels for {len(args.runs)} runs")
    if args.phi:
        missing = [str(r / "data.npz") for r in args.runs if not (r / "data.npz").is_file()]
        if missing:
            parser.error(f"no gradient data: {', '.join(missing)} (run a *_collect config first)")
        labels = args.labels or [f"{r.parent.name}/{r.name}" for r in args.runs]
        print(plot_update_vs_gradient(args.runs, labels, args.out or Path("update_vs_gradient.png")))
        return
    if len(args.runs) == 1 and not args.labels:
        print(plot_returns(args.runs[0], args.out))
        return
    labels = args.labels or [f"{r.parent.name}/{r.name}" for r in args.runs]
    print(compare(args.runs, labels, args.out or Path("compare.png"), args.title, max(1, args.smooth)))


if __name__ == "__main__":
    main()
