"""PBT vs PB2 vs random search on the PBT toy problem (population 4, t_ready 4, 40 steps),
20 paired seeds: best final Q (mean ± standard error), a paired t-test, and PB2's selection
time per round. Run by hand:

    python bench/pb2_toy.py [--seeds 20]
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
from pb2_procgen.search_space import toy_space
from pb2_procgen.toy import ToyAgent
from pb2_procgen.train import main as train_main


def population_run(search: str, seed: int, root: Path) -> float:
    out = root / f"{search}_{seed}"
    train_main(["--env", "toy", "--search", search, "--seed", str(seed), "--batchsize", "4",
                "--no-plots", "--out-dir", str(out)])
    return json.loads((out / "summary.json").read_text())["best_return"]


def random_search(seed: int) -> float:
    """Four agents with fixed random h (no exploit, no explore)."""
    rng = np.random.default_rng(seed)
    space = toy_space()
    finals = []
    for _ in range(4):
        agent = ToyAgent(space.sample(rng))
        finals.append(agent.train_segment(40)["train_return"])
    return max(finals)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, default=20)
    args = parser.parse_args()
    results = {"PBT": [], "PB2": [], "random search": []}
    seconds = {}
    with tempfile.TemporaryDirectory() as tmp:
        for search in ("PBT", "PB2"):
            start = time.time()
            for seed in range(args.seeds):
                results[search].append(population_run(search, seed, Path(tmp)))
            seconds[search] = (time.time() - start) / args.seeds
    results["random search"] = [random_search(seed) for seed in range(args.seeds)]
    print("| method | best final Q (mean ± s.e., %d seeds) | wall per run |" % args.seeds)
    print("|---|---|---|")
    for name, values in results.items():
        mean, se = mean_se(values)
        wall = f"{seconds[name]:.2f} s" if name in seconds else "-"
        print(f"| {name} | {mean:.3f} ± {se:.3f} | {wall} |")
    t, p = stats.ttest_rel(results["PB2"], results["PBT"])
    wins = int(np.sum(np.array(results["PB2"]) > np.array(results["PBT"])))
    print(f"\nPB2 vs PBT, paired t-test: t = {t:.2f}, p = {p:.2g}; PB2 better on {wins}/{args.seeds} seeds")


if __name__ == "__main__":
    main()
