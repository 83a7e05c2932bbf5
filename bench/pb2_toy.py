"""PBT vs PB2 vs random search on the PBT toy problem (population 4, t_ready 4, 40 steps),
20 paired seeds: best final Q (mean ± standard error), a paired t-test, and PB2's selection
time per round. Random search is `train.py --search random` (each agent keeps its initial random
h). Run by hand:

    python bench/pb2_toy.py [--seeds 20] [--first-seed 1000]   # 1000+: seeds no test uses
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy import stats

from benchlib import mean_se
from pb2_procgen.train import main as train_main


def population_run(search: str, seed: int, root: Path) -> float:
    out = root / f"{search}_{seed}"
    train_main(["--env", "toy", "--search", search, "--seed", str(seed), "--batchsize", "4",
                "--no-plots", "--out-dir", str(out)])
    return json.loads((out / "summary.json").read_text())["best_return"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--first-seed", type=int, default=0)
    args = parser.parse_args()
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    results, seconds = {"PBT": [], "PB2": [], "random": []}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for search in results:
            start = time.time()
            for seed in seeds:
                results[search].append(population_run(search, seed, Path(tmp)))
            seconds[search] = (time.time() - start) / args.seeds
    print(f"| method | best final Q (mean ± s.e., seeds {seeds.start}-{seeds.stop - 1}) | wall per run |")
    print("|---|---|---|")
    for name, values in results.items():
        mean, se = mean_se(values)
        print(f"| {name if name != 'random' else 'random search'} | {mean:.3f} ± {se:.3f} | {seconds[name]:.2f} s |")
    t, p = stats.ttest_rel(results["PB2"], results["PBT"])
    wins = int(np.sum(np.array(results["PB2"]) > np.array(results["PBT"])))
    print(f"\nPB2 vs PBT, paired t-test: t = {t:.2f}, p = {p:.2g}; PB2 better on {wins}/{args.seeds} seeds")


if __name__ == "__main__":
    main()
