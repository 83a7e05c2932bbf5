"""Analysis of a sweep's log folders (the reference's analysis_*.py).

    python optim4rl/analysis.py sds_a2c [more configs] [--logs-root logs] [--runs 10]

For each config (a name in optim4rl/configs/ or a path to its JSON file), over the indexes
1 .. runs * N of its N combinations:

1. prints the unfinished indexes: a run is finished when its folder has a result_<env>.csv and
   its log.txt ends with the `Time elapsed` line;
2. prints max / mean / min of the runs' peak memory and wall time (the last two lines of
   log.txt) and draws their histograms: logs/<config>/memory.png, logs/<config>/time.png;
3. writes logs/<config>/results.csv: one row per combination (and env) with its swept
   hyperparameters, the mean over finished runs of the final return (the mean of the last tenth
   of a curve's logged points) with its standard error, and of the mean return over the whole
   curve; sorted by final return, best first;
4. draws the merged return curves, logs/<config>/returns_<env>.png: for each combination the
   mean over its runs, with a band of +- one standard error (x = Step, y = Return).

`--runs` defaults to what the log folders hold (the largest index found, rounded up to whole
runs of the grid). Indexes are decoded with the Sweeper: index i is combination
(i - 1) mod N + 1, run (i - 1) // N.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from pathlib import Path
from typing import Any, Sequence, TextIO

if __package__ in (None, ""):  # run as a script: make this paper's package and common/ importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from common.cli import ArgumentParser, UsageError, run_main  # noqa: E402
from common.runs import replace_atomically  # noqa: E402
from optim4rl.logs import (LOG_FILE, final_return, is_finished_log, read_finish_info,  # noqa: E402
                           read_results_csv)
from optim4rl.sweeper import CONFIGS_DIR, Sweeper, find_config  # noqa: E402

NOT_SWEPT = ("config_idx", "num_combinations")
_MISSING = "\0missing"


# -- run folders --------------------------------------------------------------------------------
def result_files(run_dir: str | Path) -> list[Path]:
    """The result_<env>.csv files of a run folder, sorted by name."""
    return sorted(Path(run_dir).glob("result_*.csv"))


def is_finished(run_dir: str | Path) -> bool:
    """A run is finished when it wrote a result CSV and its log.txt ends with the Time line."""
    return bool(result_files(run_dir)) and is_finished_log(Path(run_dir) / LOG_FILE)


def detect_runs(sweeper: Sweeper, config_logs: str | Path) -> int:
    """How many runs of the grid the log folder holds: ceil(largest index / N), at least 1."""
    indexes = [int(p.name) for p in Path(config_logs).glob("*")
               if p.is_dir() and p.name.isdigit() and int(p.name) > 0]
    return max(1, math.ceil(max(indexes, default=1) / sweeper.total_combinations))


def unfinished_indexes(sweeper: Sweeper, config_logs: str | Path, runs: int) -> list[int]:
    return [i for i in range(1, runs * sweeper.total_combinations + 1)
            if not is_finished(Path(config_logs) / str(i))]


def finish_infos(sweeper: Sweeper, config_logs: str | Path, runs: int
                 ) -> tuple[list[float], list[float]]:
    """Peak memory (MB) and wall time (minutes) of every run whose log.txt reports them."""
    memory, minutes = [], []
    for i in range(1, runs * sweeper.total_combinations + 1):
        mem, mins = read_finish_info(Path(config_logs) / str(i) / LOG_FILE)
        if mem is not None:
            memory.append(mem)
        if mins is not None:
            minutes.append(mins)
    return memory, minutes


def histogram(values: Sequence[float], xlabel: str, path: str | Path, bins: int = 10) -> Path:
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.hist(values, bins=bins)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("Counts in the bin")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


# -- hyperparameters ----------------------------------------------------------------------------
def flatten(config: dict, prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a/b": 1} (the reference's sweep-key spelling)."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}/"))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def swept_values(sweeper: Sweeper) -> tuple[list[str], dict[int, dict[str, Any]]]:
    """The flattened keys whose value differs between combinations, and each combination's
    values of them (a key absent from a combination's config is left out of its dict)."""
    flats = {c: flatten(sweeper.generate_config_for_idx(c))
             for c in range(1, sweeper.total_combinations + 1)}
    keys: list[str] = []
    for flat in flats.values():
        keys += [key for key in flat if key not in keys and key not in NOT_SWEPT]
    swept = [key for key in keys
             if len({json.dumps(flat.get(key, _MISSING), sort_keys=True)
                     for flat in flats.values()}) > 1]
    return swept, {c: {key: flat[key] for key in swept if key in flat}
                   for c, flat in flats.items()}


def _cell(value: Any) -> Any:
    return json.dumps(value) if isinstance(value, (list, dict)) else value


# -- results ------------------------------------------------------------------------------------
def load_curves(sweeper: Sweeper, config_logs: str | Path, runs: int, out: TextIO | None = None
                ) -> dict[tuple[int, str], list[dict]]:
    """{(combination, env): [{"agent", "step", "return"} per finished run]}."""
    out = out or sys.stdout
    curves: dict[tuple[int, str], list[dict]] = {}
    for i in range(1, runs * sweeper.total_combinations + 1):
        run_dir = Path(config_logs) / str(i)
        if not is_finished(run_dir):
            continue
        combination = sweeper.combination_of(i)
        for path in result_files(run_dir):
            try:
                table = read_results_csv(path)
            except (OSError, ValueError) as error:
                print(f"[{sweeper.config_name}] skipping {path}: {error}", file=out)
                continue
            if not table["Return"]:
                continue
            env = table["Env"][0] or path.stem[len("result_"):]
            curves.setdefault((combination, env), []).append(
                {"agent": table["Agent"][0], "step": np.asarray(table["Step"]),
                 "return": np.asarray(table["Return"])})
    return curves


def _standard_error(values: Sequence[float]) -> float:
    values = np.asarray(values, dtype=float)
    return float(values.std(ddof=1) / math.sqrt(len(values))) if len(values) > 1 else 0.0


def results_rows(sweeper: Sweeper, curves: dict[tuple[int, str], list[dict]]) -> list[dict]:
    """One row per (combination, env), sorted by final return (best first, NaN last)."""
    swept, values = swept_values(sweeper)
    rows = []
    for (combination, env), runs in curves.items():
        finals = [final_return(run["return"]) for run in runs]
        means = [float(np.mean(run["return"])) for run in runs]
        row = {"Config Index": combination, "Env": env, "Agent": runs[0]["agent"],
               "Runs": len(runs), "Return (final)": float(np.mean(finals)),
               "Return (final se)": _standard_error(finals),
               "Return (mean)": float(np.mean(means))}
        row.update({key: _cell(values[combination].get(key, "")) for key in swept})
        rows.append(row)
    rows.sort(key=lambda r: (math.isnan(r["Return (final)"]), -_nan_to_zero(r["Return (final)"]),
                             r["Config Index"], r["Env"]))
    return rows


def _nan_to_zero(x: float) -> float:
    return 0.0 if math.isnan(x) else x


def write_results(path: str | Path, rows: list[dict]) -> Path:
    path = Path(path)
    header: list[str] = []
    for row in rows:
        header += [key for key in row if key not in header]
    def write(f):
        writer = csv.DictWriter(f, fieldnames=header, restval="")
        writer.writeheader()
        writer.writerows(rows)
    replace_atomically(path, write, newline="")
    return path


def merged_curve(runs: list[dict]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(steps, mean, standard error) over runs, cut to the shortest run."""
    n = min(len(run["return"]) for run in runs)
    ys = np.stack([run["return"][:n] for run in runs])
    steps = runs[0]["step"][:n]
    se = ys.std(axis=0, ddof=1) / math.sqrt(len(ys)) if len(ys) > 1 else np.zeros(n)
    return steps, ys.mean(axis=0), se


def plot_curves(sweeper: Sweeper, curves: dict[tuple[int, str], list[dict]],
                out_dir: str | Path) -> list[Path]:
    """One PNG per env: each combination's mean return curve with a +- standard error band."""
    swept, values = swept_values(sweeper)
    paths = []
    for env in sorted({env for _, env in curves}):
        fig, ax = plt.subplots(figsize=(7, 4.5))
        combos = sorted(c for c, e in curves if e == env)
        for combination in combos:
            steps, mean, se = merged_curve(curves[(combination, env)])
            settings = ", ".join(f"{key.split('/')[-1]}={_cell(values[combination][key])}"
                                 for key in swept if key in values[combination])
            label = f"{combination}: {settings}" if settings else f"{combination}"
            (line,) = ax.plot(steps, mean, linewidth=1.0, label=label)
            ax.fill_between(steps, mean - se, mean + se, alpha=0.25, color=line.get_color())
        ax.set_xlabel("Step")
        ax.set_ylabel("Return")
        ax.set_title(f"{sweeper.config_name}: {env} (mean ± s.e. over runs)")
        if len(combos) <= 12:
            ax.legend(fontsize="small", loc="best")
        else:
            ax.legend(fontsize="xx-small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
        fig.tight_layout()
        path = Path(out_dir) / f"returns_{env}.png"
        fig.savefig(path, bbox_inches="tight")
        plt.close(fig)
        paths.append(path)
    return paths


# -- one config ---------------------------------------------------------------------------------
def analyze(config: str | Path, logs_root: str | Path = "logs", runs: int | None = None,
            configs_dir: str | Path = CONFIGS_DIR, out: TextIO | None = None) -> dict:
    """Everything the module docstring lists, for one config; returns what it found and wrote."""
    out = out or sys.stdout
    sweeper = Sweeper(find_config(config, configs_dir))
    name = sweeper.config_name
    config_logs = Path(logs_root) / name
    if runs is not None and runs < 1:
        raise UsageError(f"--runs must be >= 1, got {runs}")
    if not config_logs.is_dir():
        print(f"[{name}] no log folder {config_logs}", file=out)
    runs = runs or detect_runs(sweeper, config_logs)
    total = runs * sweeper.total_combinations
    report: dict[str, Any] = {"config": name, "runs": runs}

    unfinished = unfinished_indexes(sweeper, config_logs, runs)
    report["unfinished"] = unfinished
    listed = ", ".join(map(str, unfinished)) if unfinished else "none"
    print(f"[{name}] unfinished indexes (of 1..{total}): {listed}", file=out)

    memory, minutes = finish_infos(sweeper, config_logs, runs)
    for label, unit, data, file in (("memory", "MB", memory, "memory.png"),
                                    ("time", "minutes", minutes, "time.png")):
        if data:
            arr = np.asarray(data)
            print(f"[{name}] {label}: max {arr.max():.2f} {unit}, mean {arr.mean():.2f} {unit}, "
                  f"min {arr.min():.2f} {unit} over {len(arr)} runs", file=out)
            report[file] = histogram(arr, f"{label.capitalize()} ({unit})", config_logs / file)
        else:
            print(f"[{name}] no {label} info", file=out)

    curves = load_curves(sweeper, config_logs, runs, out)
    if not curves:
        print(f"[{name}] no finished results", file=out)
        return report
    rows = results_rows(sweeper, curves)
    report["results.csv"] = write_results(config_logs / "results.csv", rows)
    best = rows[0]
    print(f"[{name}] results: {report['results.csv']} ({len(rows)} rows); best: index "
          f"{best['Config Index']} ({best['Env']}) final return {best['Return (final)']:.4g}",
          file=out)
    report["curves"] = plot_curves(sweeper, curves, config_logs)
    print(f"[{name}] curves: {', '.join(map(str, report['curves']))}", file=out)
    report["rows"] = rows
    return report


def main(argv: Sequence[str] | None = None) -> None:
    parser = ArgumentParser(prog="analysis.py", description=__doc__.split("\n\n")[0],
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("configs", nargs="+", metavar="CONFIG_NAME",
                        help="config names in optim4rl/configs/ (or paths to their JSON files)")
    parser.add_argument("--logs-root", default="logs",
                        help="folder holding <config>/<index>/ run folders (default: logs)")
    parser.add_argument("--runs", type=int, default=None,
                        help="runs per combination to look for (default: what the logs hold)")
    parser.add_argument("--configs-dir", default=str(CONFIGS_DIR),
                        help="where config names are looked up (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.runs is not None and args.runs < 1:
        raise UsageError(f"--runs must be >= 1, got {args.runs}")
    for config in args.configs:
        analyze(config, args.logs_root, args.runs, args.configs_dir)


if __name__ == "__main__":
    run_main(main, prog="analysis.py")
