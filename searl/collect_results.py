"""Copy the small files of finished SEARL / baseline runs into searl/results/small_runs/<name>/,
the data that `python searl/results.py` rebuilds the README's tables and figures from.

    python searl/collect_results.py RUN_DIR [RUN_DIR ...]     # each run folder's name is kept
    python searl/collect_results.py --partial RUN_DIR          # a run stopped before its budget

Copied: config.json, summary.json, metrics.csv and population.csv (a few KB each). Never the
checkpoints, the replay memory or the exported policy. `--partial` takes a run that has no
summary.json yet (stopped before its budget: its metrics.csv says how far it got) and copies
the other three files; the README must then say where the run stopped.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.results import copy_run_files  # noqa: E402

RUNS = Path(__file__).resolve().parent / "results" / "small_runs"
FILES = ("config.json", "summary.json", "metrics.csv", "population.csv")


def collect(run_dir: Path, dest_root: Path = RUNS, partial: bool = False) -> Path:
    if not (run_dir / "summary.json").is_file():
        if not partial:
            raise SystemExit(f"collect_results.py: {run_dir} has no summary.json (unfinished run? "
                             f"--partial copies it as one)")
        return copy_run_files(run_dir, dest_root / run_dir.name,
                              tuple(name for name in FILES if name != "summary.json"))
    return copy_run_files(run_dir, dest_root / run_dir.name, FILES)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dirs", nargs="+", type=Path)
    parser.add_argument("--partial", action="store_true",
                        help="also take runs without summary.json (stopped before their budget)")
    args = parser.parse_args(argv)
    for run_dir in args.run_dirs:
        print(collect(run_dir, partial=args.partial))
    return 0


if __name__ == "__main__":
    sys.exit(main())
