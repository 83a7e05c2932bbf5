"""Copy the small files of finished SEARL / baseline runs into searl/results/small_runs/<name>/,
the data that `python searl/results.py` rebuilds the README's tables and figures from.

    python searl/collect_results.py RUN_DIR [RUN_DIR ...]     # each run folder's name is kept

Copied: config.json, summary.json, metrics.csv and population.csv (a few KB each). Never the
checkpoints, the replay memory or the exported policy.
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


def collect(run_dir: Path, dest_root: Path = RUNS) -> Path:
    if not (run_dir / "summary.json").is_file():
        raise SystemExit(f"collect_results.py: {run_dir} has no summary.json (unfinished run?)")
    return copy_run_files(run_dir, dest_root / run_dir.name, FILES)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dirs", nargs="+", type=Path)
    for run_dir in parser.parse_args(argv).run_dirs:
        print(collect(run_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
