"""Return curves of optim4rl runs.

    python optim4rl/plots.py logs/catch_lopt/1                   # one run: returns.png in it
    python optim4rl/plots.py logs/catch_lopt/{1,2,3} --out cmp.png --labels learned Adam RMSProp
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

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
    ax.set_title(title + (f" (moving average of {window} points)" if window > 1 else ""))
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="run folders logs/<config>/<idx>")
    parser.add_argument("--out", type=Path, help="PNG path (default: returns.png in the run folder)")
    parser.add_argument("--labels", nargs="*", help="one label per run (default: the folder)")
    parser.add_argument("--title", default="")
    parser.add_argument("--smooth", type=int, default=1, help="moving average over N logged points")
    args = parser.parse_args(argv)
    if len(args.runs) == 1 and not args.labels:
        print(plot_returns(args.runs[0], args.out))
        return
    labels = args.labels or [f"{r.parent.name}/{r.name}" for r in args.runs]
    print(compare(args.runs, labels, args.out or Path("compare.png"), args.title, max(1, args.smooth)))


if __name__ == "__main__":
    main()
