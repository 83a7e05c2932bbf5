"""PB2 on the PBT toy with the reference's own explore step (procgen_autorl's pbt.py + pb2_utils.py,
GPy) against ours, paired by seed. Run by hand; GPy 1.15 needs numpy >= 2 while the collection pins
numpy 1.26, so install it (with pandas < 3 and scikit-learn) into a folder of its own and put that
folder on PYTHONPATH for this script only:

    pip install --target /tmp/pb2_refpkgs GPy==1.15.0 "pandas<3" scikit-learn "numpy>=2"
    PYTHONPATH=/tmp/pb2_refpkgs python bench/pb2_toy_reference.py --reference PATH/TO/procgen_autorl \
        [--seeds 40] [--first-seed 1000] [--json pb2_procgen/results/toy_reference.json]
    python bench/pb2_toy_reference.py --ablations [--json pb2_procgen/results/toy_ablations.json]   # ours only

The reference's side runs in this process; ours runs in one child process with PYTHONPATH dropped
(the collection's own environment and numpy), so GPy's numpy never touches our runs.

The toy loop is ours (pb2_procgen/toy.py: population 4, t_ready 4, 40 steps, quantile 0.25, the same
initial h per seed as train.py); each round the worst agent copies the best one's θ and gets its new
h from the reference's `PBT.format_df` (its data: per (agent, config) differences of R, the first
interval after a change dropped; the pending configs of the non-top agents) and `PBT.select_config`
(its TV-SE kernel with its own gradients, GPy's fit, the refit pending GP, 10 random L-BFGS-B starts).
After each exploit, as the reference's train.py does, a copy of the parent's last data row is added
with the explorer's new config (agent = the explorer): the explorer's next row differs from it, so
its first interval after the change becomes a GP data point (ours does the same). Its first round,
with no data for the parent, draws h uniformly, as the reference. Only `pbt.py` and `pb2_utils.py`
are loaded from the checkout; the modules pbt.py imports for other paths (utils, search_space,
exp3) are stubbed.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

import numpy as np
from scipy import stats

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from pb2_procgen.search_space import toy_space  # noqa: E402
from pb2_procgen.toy import ToyAgent  # noqa: E402
from pb2_procgen.train import main as train_main  # noqa: E402
from pb2_procgen.train import seed_streams  # noqa: E402

POPULATION, T_READY, ROUNDS = 4, 4, 10
REFERENCE_COMMIT = "ec35f046c41262d8a4dfc75458c49414b73fa58e"  # the files this bench was run with


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
        # the reference's train.py: the parent's last row, copied to the explorer with its new config
        parent_row = next(r for r in rows if r["Agent"] == best and r["t"] == t)
        rows.append({**parent_row, "Agent": worst, "conf": new})
    return max(agent.test_return() for agent in agents)


def our_runs(seeds: range) -> list[float]:
    """Our PB2 (train.py --env toy --search PB2) on each seed, in this process."""
    values = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in seeds:
            out = Path(tmp) / str(seed)
            train_main(["--env", "toy", "--search", "PB2", "--seed", str(seed), "--batchsize", str(POPULATION),
                        "--no-plots", "--out-dir", str(out)])
            values.append(json.loads((out / "summary.json").read_text())["best_return"])
    return values


# Our PB2 with one of its departures from the reference undone (pb2_procgen/pb2.py's switches)
ABLATIONS = {
    "default": {},
    "refit_pending_gp": {"REFIT_PENDING_GP": True},           # the reference refits the pending GP
    "no_gp_restart": {"GP_RESTARTS": 0},                      # the reference fits once
    "plain_random_starts": {"ACQ_CANDIDATES": 10},            # the reference: 10 random L-BFGS-B starts
}


def our_ablations(seeds: range) -> dict[str, list[float]]:
    """our_runs once per ABLATIONS entry, the pb2.py switches set for it and then restored."""
    from pb2_procgen import pb2

    results = {}
    for name, switches in ABLATIONS.items():
        saved = {key: getattr(pb2, key) for key in switches}
        for key, value in switches.items():
            setattr(pb2, key, value)
        try:
            results[name] = our_runs(seeds)
        finally:
            for key, value in saved.items():
                setattr(pb2, key, value)
    return results


def our_runs_in_child(seeds: range) -> list[float]:
    """our_runs in a child process with the collection's environment: PYTHONPATH (GPy's numpy 2)
    dropped, one thread."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, __file__, "--ours-only", "--seeds", str(len(seeds)),
                           "--first-seed", str(seeds.start)], cwd=ROOT, env=env, capture_output=True, text=True,
                          check=False)
    if proc.returncode != 0:
        fail(f"our side failed:\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    return result["ours"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reference", type=Path, help="a checkout of procgen_autorl (pbt.py, pb2_utils.py)")
    parser.add_argument("--seeds", type=int, default=40)
    parser.add_argument("--first-seed", type=int, default=1000)
    parser.add_argument("--json", type=Path, default=None,
                        help="write the per-seed results here (e.g. pb2_procgen/results/toy_reference.json)")
    parser.add_argument("--ablations", action="store_true",
                        help="only ours, once per switch of ABLATIONS (no GPy needed); --json writes them")
    parser.add_argument("--ours-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.seeds < 2:
        parser.error("--seeds must be at least 2")
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    if args.ours_only:
        print(json.dumps({"ours": our_runs(seeds)}))
        return
    if args.ablations:
        from benchlib import machine

        start = time.time()
        results = our_ablations(seeds)
        for name, values in results.items():
            v = np.array(values)
            print(f"{name:22s} {v.mean():.4f} ± {v.std(ddof=1) / np.sqrt(len(v)):.4f}")
        if args.json is not None:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps({
                "script": "bench/pb2_toy_reference.py --ablations", "machine": machine(),
                "switches": ABLATIONS, "seeds": list(seeds), "best_final_q": results,
                "wall_seconds": time.time() - start}, indent=1) + "\n")
        return
    if args.reference is None:
        parser.error("--reference PATH is required")
    PBT = load_reference(args.reference)
    import GPy
    import pandas
    import sklearn

    start = time.time()
    reference = np.array([reference_run(PBT, seed) for seed in seeds])
    reference_seconds = time.time() - start
    start = time.time()
    ours = np.array(our_runs_in_child(seeds))
    ours_seconds = time.time() - start
    se = lambda v: v.std(ddof=1) / np.sqrt(len(v))
    print(f"| PB2 explore step | best final Q, seeds {seeds.start}-{seeds.stop - 1} (mean ± s.e.) | runs >= 0.845 |")
    print("|---|---|---|")
    for name, values in (("the reference's (GPy)", reference), ("ours", ours)):
        print(f"| {name} | {values.mean():.4f} ± {se(values):.4f} | {int((values >= 0.845).sum())} / {len(values)} |")
    diff = ours - reference
    print(f"\nours - reference, paired: {diff.mean():+.4f} ± {se(diff):.4f}, ours better on "
          f"{int((diff > 0).sum())}/{len(diff)} seeds, t-test p = {stats.ttest_rel(ours, reference).pvalue:.2g}")
    if args.json is not None:
        from benchlib import machine

        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "script": "bench/pb2_toy_reference.py",
            "machine": machine(),
            "reference": {"repo": "jparkerholder/procgen_autorl", "commit": REFERENCE_COMMIT,
                          "files": ["pbt.py", "pb2_utils.py"], "train_py_row_copy": True,
                          "GPy": GPy.__version__, "pandas": pandas.__version__,
                          "scikit-learn": sklearn.__version__, "numpy": np.__version__},
            "toy": {"population": POPULATION, "t_ready": T_READY, "rounds": ROUNDS},
            "seeds": list(seeds),
            "best_final_q": {"reference": [float(v) for v in reference], "ours": [float(v) for v in ours]},
            "wall_seconds": {"reference": reference_seconds, "ours": ours_seconds},
        }, indent=1) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
