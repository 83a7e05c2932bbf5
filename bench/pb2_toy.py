"""PBT vs PB2 vs random search on the PBT toy problem (population 4, t_ready 4, 40 steps),
20 paired seeds: best final Q (mean ± standard error), a paired t-test, and PB2's selection
time per round. Random search is `train.py --search random` (each agent keeps its initial random
h). Run by hand:

    python bench/pb2_toy.py [--seeds 20] [--first-seed 1000] [--json FILE]   # 1000+: seeds no test uses

`--json` writes the per-seed best final Q and wall time of every run, and the machine; the README's
toy table is generated from those files (pb2_procgen/results/toy_seeds0-19.json, toy_seeds1000-1019.json,
by `python pb2_procgen/results.py`).
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from benchlib import machine, mean_se
from scipy import stats

from pb2_procgen.train import main as train_main


def population_run(search: str, seed: int, root: Path) -> tuple[float, float]:
    """(best final Q, wall seconds of train.py's main)."""
    out = root / f"{search}_{seed}"
    start = time.time()
    train_main(["--env", "toy", "--search", search, "--seed", str(seed), "--batchsize", "4",
                "--no-plots", "--out-dir", str(out)])
    wall = time.time() - start
    return json.loads((out / "summary.json").read_text())["best_return"], wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None, help="write the per-seed results here")
    args = parser.parse_args()
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    results, walls, seconds = {"PBT": [], "PB2": [], "random": []}, {"PBT": [], "PB2": [], "random": []}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for search, values in results.items():
            for seed in seeds:
                value, wall = population_run(search, seed, Path(tmp))
                values.append(value)
                walls[search].append(wall)
            seconds[search] = float(np.mean(walls[search]))
    print(f"| method | best final Q (mean ± s.e., seeds {seeds.start}-{seeds.stop - 1}) | wall per run |")
    print("|---|---|---|")
    for name, values in results.items():
        mean, se = mean_se(values)
        print(f"| {name if name != 'random' else 'random search'} | {mean:.3f} ± {se:.3f} | {seconds[name]:.2f} s |")
    t, p = stats.ttest_rel(results["PB2"], results["PBT"])
    wins = int(np.sum(np.array(results["PB2"]) > np.array(results["PBT"])))
    print(f"\nPB2 vs PBT, paired t-test: t = {t:.2f}, p = {p:.2g}; PB2 better on {wins}/{args.seeds} seeds")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "script": "bench/pb2_toy.py", "machine": machine(), "seeds": list(seeds),
            "toy": {"population": 4, "t_ready": 4, "steps": 40},
            "best_final_q": results, "wall_seconds": walls}, indent=1) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
