"""PB2 on the PBT toy with the reference's own explore step (procgen_autorl's pbt.py + pb2_utils.py,
GPy) against ours, paired by seed. Run by hand, in the bench virtualenv plus GPy:

    pip install GPy==1.15.0
    python bench/pb2_toy_reference.py --reference PATH/TO/procgen_autorl [--seeds 40] [--first-seed 1000]

The toy loop is ours (pb2_procgen/toy.py: population 4, t_ready 4, 40 steps, quantile 0.25, the same
initial h per seed as train.py); each round the worst agent copies the best one's θ and gets its new
h from the reference's `PBT.format_df` (its data: per (agent, config) differences of R, the first
interval after a change dropped; the pending configs of the non-top agents) and `PBT.select_config`
(its TV-SE kernel with its own gradients, GPy's fit, the refit pending GP, 10 random L-BFGS-B starts).
Its first round, with no data for the parent, draws h uniformly, as the reference. Only `pbt.py` and
`pb2_utils.py` are loaded from the checkout; the modules pbt.py imports for other paths (utils,
search_space, exp3) are stubbed.
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import types
from pathlib import Path

import numpy as np
from scipy import stats

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pb2_procgen.search_space import toy_space  # noqa: E402
from pb2_procgen.toy import ToyAgent  # noqa: E402
from pb2_procgen.train import main as train_main  # noqa: E402
from pb2_procgen.train import seed_streams  # noqa: E402

POPULATION, T_READY, ROUNDS = 4, 4, 10


def fail(message: str) -> None:
    sys.stderr.write(f"pb2_toy_reference.py: error: {message}\n")
    sys.exit(2)


def load_reference(path: Path):
    """The reference's PBT class, its other imports stubbed."""
    if not (path / "pbt.py").is_file() or not (path / "pb2_utils.py").is_file():
        fail(f"no pbt.py and pb2_utils.py in {path} (a checkout of github.com/jparkerholder/procgen_autorl)")
    for name in ("utils", "search_space", "exp3"):
        stub = types.ModuleType(name)
        stub.__getattr__ = lambda attr: None
        sys.modules[name] = stub
    sys.path.insert(0, str(path))
    try:
        import pbt
    except ImportError as error:
        fail(f"{error} (pip install GPy==1.15.0 scikit-learn pandas)")
    return pbt.PBT


def reference_run(PBT, seed: int) -> float:
    import pandas as pd

    mutations = pd.DataFrame({"Name": ["h0", "h1"], "Type": ["continuous", "continuous"],
                              "Range": [[0.0, 1.0], [0.0, 1.0]]})
    args = types.SimpleNamespace(batchsize=POPULATION, pbt_thresh=0.25)
    explorer = PBT.__new__(PBT)            # its __init__ wants the whole Procgen argument set
    explorer.cat_exp, explorer.budget_type, explorer.running = "random", "timesteps", {}
    explorer.mutations, explorer.cat_vars = mutations, []
    np.random.seed(seed)
    random.seed(seed)
    sampler = np.random.default_rng(seed_streams(seed)[0])
    configs = [toy_space().sample(sampler) for _ in range(POPULATION)]
    agents, rows = [ToyAgent(c) for c in configs], []
    for t in range(ROUNDS):
        for i, agent in enumerate(agents):
            R = agent.train_segment(T_READY)["train_return"]
            rows.append({"Agent": i, "t": t, "timesteps": agent.agent_steps, "R": R,
                         "conf": [configs[i]["h0"], configs[i]["h1"]]})
        if t == ROUNDS - 1:
            break
        df = pd.DataFrame(rows)
        ranked = df[df.t == t].sort_values(by=["R"], ignore_index=True)
        worst, best = int(ranked.Agent.values[0]), int(ranked.Agent.values[-1])
        agents[worst].load_state_dict(agents[best].state_dict())
        newpoint_rows, data, agent_t = explorer.format_df(args, worst, best, df)
        if newpoint_rows.empty:
            new = list(np.random.uniform(0, 1, 2))
        else:
            pending = list(explorer.running[str(agent_t)].values())
            newpoint = newpoint_rows.iloc[-1, :][["timesteps", "R_before"]].values.astype(float)
            X = data[["timesteps", "R_before", "x0", "x1"]].values.astype(float)
            new, _ = explorer.select_config(X, data.y.values.astype(float), pending, newpoint, mutations, num_f=2)
        new = [float(v) for v in new]
        explorer.running.setdefault(str(agent_t), {})[str(worst)] = new
        configs[worst] = {"h0": new[0], "h1": new[1]}
        agents[worst].set_hyperparameters(configs[worst])
    return max(agent.test_return() for agent in agents)


def our_run(seed: int, root: Path) -> float:
    out = root / str(seed)
    train_main(["--env", "toy", "--search", "PB2", "--seed", str(seed), "--batchsize", str(POPULATION),
                "--no-plots", "--out-dir", str(out)])
    return json.loads((out / "summary.json").read_text())["best_return"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reference", type=Path, required=True, help="a checkout of procgen_autorl")
    parser.add_argument("--seeds", type=int, default=40)
    parser.add_argument("--first-seed", type=int, default=1000)
    args = parser.parse_args()
    if args.seeds < 2:
        parser.error("--seeds must be at least 2")
    PBT = load_reference(args.reference)
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    reference = np.array([reference_run(PBT, seed) for seed in seeds])
    with tempfile.TemporaryDirectory() as tmp:
        ours = np.array([our_run(seed, Path(tmp)) for seed in seeds])
    se = lambda v: v.std(ddof=1) / np.sqrt(len(v))
    print(f"| PB2 explore step | best final Q, seeds {seeds.start}-{seeds.stop - 1} (mean ± s.e.) | runs >= 0.845 |")
    print("|---|---|---|")
    for name, values in (("the reference's (GPy)", reference), ("ours", ours)):
        print(f"| {name} | {values.mean():.4f} ± {se(values):.4f} | {int((values >= 0.845).sum())} / {len(values)} |")
    diff = ours - reference
    print(f"\nours - reference, paired: {diff.mean():+.4f} ± {se(diff):.4f}, ours better on "
          f"{int((diff > 0).sum())}/{len(diff)} seeds, t-test p = {stats.ttest_rel(ours, reference).pvalue:.2g}")


if __name__ == "__main__":
    main()
