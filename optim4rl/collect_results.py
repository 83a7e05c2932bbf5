"""Copy the small files of finished runs into optim4rl/results/, the data behind the README.

    python optim4rl/collect_results.py LOGS_ROOT      # e.g. logs, or the --logs-root of the runs

For every run folder LOGS_ROOT/<config>/<idx>/ of the configs in RUN_CONFIGS that finished, copies
`config.json`, `summary.json` and `metrics.csv` (the logged return curve: env_steps, test_steps and
the return to 6 significant digits, see slim_metrics) into optim4rl/results/runs/<config>/<idx>/.
Never checkpoints, `param.pt` or `data.npz`. From the
CollectA2C runs it writes small derived files instead of their data.npz (every 100th coordinate at
every update, 0.3-0.7 MB each):

- results/runs/catch_collect_phi/<idx>/update_vs_gradient.json: the fitted slope of log|update/lr|
  on log|g|, the median |update/lr| and the number of (g, update) pairs, from all the pairs;
- results/catch_collect_phi_pairs.csv: every 10th of those pairs per run (for the figure);
- results/runs/catch_identity/1/identity_summary.json: the final Perf, Perf on the non-zero
  gradients and MSE of each model, from the run's log line (RNNIdentity writes no summary.json);
- results/runs/catch_collect/1/gradients.json: the share of exact zeros, percentiles of |g| and
  the histograms of g, |g| and log10(|g| + 1e-8) that grad_hist.png draws;
- results/runs/idp_xfer/<name>/value_loss.json: PPO's value loss at each logged evaluation, from
  log.txt;
- results/phi_grid_small_meta_<idx>.pt: the meta-trained φ of each grid_small_meta run (11 KB; the
  learned optimizer is the result, as results/phi_catch.pt).

`grid_xfer` and `idp_xfer` hold runs written with `--out-dir LOGS_ROOT/grid_xfer/NAME` (transfer of
a committed φ) and `--out-dir LOGS_ROOT/idp_xfer/NAME` (PPO on InvertedDoublePendulum-v5: NAME is
phi_small_0, phi_laptop_0, untrained_0 or <adam|rmsprop>_<lr>_<run>, see optim4rl/README.md).

`python optim4rl/results.py` then rebuilds the README's tables and figures from these files.
"""
from __future__ import annotations

import argparse
import csv
import json
import re
import shutil
import sys
from pathlib import Path

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.results import copy_run_files  # noqa: E402
from optim4rl.identity import HIST_EPS  # noqa: E402
from optim4rl.plots import update_vs_gradient  # noqa: E402

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
RUN_CONFIGS = ("catch_meta", "catch_lopt", "catch_signsgd", "catch_meta_l2o", "catch_lopt_l2o",
               "catch_a2c_sweep", "catch_collect", "catch_collect_phi", "catch_identity",
               "grid_xfer", "grid_small_meta", "grid_small_lopt", "grid_small_a2c_sweep", "idp_xfer")
RUN_FILES = ("config.json", "summary.json", "metrics.csv", "identity.csv")
PAIR_STRIDE = 10


def finished(run_dir: Path) -> bool:
    log = run_dir / "log.txt"
    return (run_dir / "summary.json").is_file() or (
        (run_dir / "identity.csv").is_file() and log.is_file() and "Time elapsed" in log.read_text())


IDENTITY_LINE = re.compile(r"(\w+): Perf ([\d.e+-]+) \(best ([\d.e+-]+), nonzero ([\d.e+-]+|nan)\), "
                           r"MSE ([\d.e+-]+) after (\d+) steps")


def identity_summary(run_dir: Path) -> dict:
    """RNNIdentity writes no summary.json; its log's `identity:` line holds the final Perf, the
    Perf on the non-zero gradients (not in identity.csv), the MSE and the steps of each model."""
    text = (run_dir / "log.txt").read_text()
    line = next(row for row in text.splitlines() if "identity: " in row and "Perf" in row)
    models = {m[0]: {"perf": float(m[1]), "best_perf": float(m[2]), "perf_nonzero": float(m[3]),
                     "mse": float(m[4]), "steps": int(m[5])} for m in IDENTITY_LINE.findall(line)}
    zeros = re.search(r"exact zeros in the data: ([\d.]+)%", line)
    minutes = re.findall(r"Time elapsed: ([\d.]+) minutes", text)
    return {"models": models, "zero_share": float(zeros.group(1)) / 100 if zeros else None,
            "wall_seconds": round(float(minutes[-1]) * 60, 1) if minutes else None}


METRICS_KEPT = ("env_steps", "test_steps", "return")


def slim_metrics(src: Path, dst: Path) -> None:
    """metrics.csv with the columns the results read (env and agent are the same on every row,
    and in config.json) and returns to 6 significant digits: a 2e6-step gridworld curve is
    1,562 rows, 82 KB as logged and about a third of that here."""
    with open(src, newline="") as f:
        rows = list(csv.DictReader(f))
    with open(dst, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(METRICS_KEPT)
        for row in rows:
            writer.writerow([row["env_steps"], row.get("test_steps", 0), f"{float(row['return']):.6g}"])


PPO_LINE = re.compile(r"Step (\d+)/\d+: .*value_loss=([\d.e+-]+|nan|inf)")


def ppo_value_losses(run_dir: Path) -> dict:
    """PPO's value loss at each logged evaluation (log.txt only; metrics.csv holds the returns):
    the sign a learned optimizer's steps blew the value network up."""
    found = PPO_LINE.findall((run_dir / "log.txt").read_text())
    return {"env_steps": [int(step) for step, _ in found], "value_loss": [float(v) for _, v in found]}


def gradient_summary(grad: np.ndarray) -> dict:
    """What catch_grad_hist.png and the README's gradient sentence need, from all collected g."""
    g = np.asarray(grad, dtype=np.float64).ravel()
    a = np.abs(g)
    nonzero = a[a > 0]
    out = {"values": int(g.size), "updates": int(grad.shape[0]), "coordinates": int(grad.shape[1]),
           "zero_share": float(np.mean(g == 0)),
           "abs_percentiles_nonzero": {str(q): float(np.percentile(nonzero, q)) for q in (1, 50, 99)},
           "abs_percentiles": {str(q): float(np.percentile(a, q)) for q in (1, 50, 99)}}
    for key, x in (("g", g), ("abs_g", a)):
        counts, edges = np.histogram(x, bins=40)
        out[f"hist_{key}"] = {"counts": counts.tolist(), "edges": edges.tolist()}
    log_x = np.log10(a + HIST_EPS)
    edges = np.arange(np.floor(log_x.min()), np.ceil(log_x.max()) + 0.5, 0.5)
    density, edges = np.histogram(log_x, bins=edges, density=True)
    out["hist_log10_abs_g"] = {"density": density.tolist(), "edges": edges.tolist()}
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("logs_root", type=Path, help="the --logs-root of the runs (LOGS_ROOT/<config>/<idx>/)")
    root = parser.parse_args(argv).logs_root
    if not root.is_dir():
        parser.error(f"{root} is not a folder")
    copied = 0
    pairs = []
    for config in RUN_CONFIGS:
        for run_dir in sorted((root / config).glob("*"), key=lambda p: (len(p.name), p.name)):
            if not run_dir.is_dir() or not finished(run_dir):
                continue
            dest = RESULTS / "runs" / config / run_dir.name
            copy_run_files(run_dir, dest, [name for name in RUN_FILES if name != "metrics.csv"])
            if (run_dir / "metrics.csv").is_file():
                slim_metrics(run_dir / "metrics.csv", dest / "metrics.csv")
            copied += 1
            data = run_dir / "data.npz"
            if config == "catch_collect_phi" and data.is_file():
                st = update_vs_gradient(run_dir)
                (dest / "update_vs_gradient.json").write_text(json.dumps(
                    {"slope": st["slope"], "median_update": st["median_update"],
                     "median_ratio": st["median_ratio"], "points": st["points"]}, indent=1) + "\n")
                for g, u in zip(st["grad"][::PAIR_STRIDE], st["update"][::PAIR_STRIDE]):
                    pairs.append((int(run_dir.name), f"{g:.4g}", f"{u:.4g}"))
            if config == "grid_small_meta" and (run_dir / "param.pt").is_file():
                shutil.copyfile(run_dir / "param.pt", RESULTS / f"phi_grid_small_meta_{run_dir.name}.pt")
            if config == "idp_xfer":
                (dest / "value_loss.json").write_text(json.dumps(ppo_value_losses(run_dir)) + "\n")
            if config == "catch_identity":
                (dest / "identity_summary.json").write_text(json.dumps(identity_summary(run_dir), indent=1) + "\n")
            if config == "catch_collect" and data.is_file():
                grad = np.load(data)["grad"]
                (dest / "gradients.json").write_text(json.dumps(gradient_summary(grad), indent=1) + "\n")
    if pairs:
        with open(RESULTS / "catch_collect_phi_pairs.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["config_idx", "abs_grad", "abs_update_over_lr"])
            writer.writerows(pairs)
    print(f"{copied} runs copied into {RESULTS / 'runs'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
