"""steve/README.md's results, rebuilt from the data committed under steve/results/ only.

    python steve/results.py            # rewrite the README's generated blocks and the figures
    python steve/results.py --check    # exit 1 naming each block that differs from the data

From which files:

- results/toy/: `python steve/toy_demo.py --trials 10 --seed 0` (toy_results.csv: mean MSE
  curve; toy_trials.csv: every trial every 100 steps; summary.json: final MSE, wall) -> the toy
  table and sentence, toy_results.png.
- results/runs/pendulum_<algo>[_corrupt]_s<seed>/: one steve/train.py run each (config.json,
  metrics.csv, summary.json) -> the Pendulum table and sentences, pendulum_3seeds.png,
  pendulum_corrupted_model.png.
- ../bench/results/steve_vs_sb3.json, ../bench/results/steve_update.json: what
  `python bench/steve_vs_sb3.py` and `python bench/steve_update.py` write
  -> the Against-SB3 and Speed tables and sentences.

The HalfCheetah tables have no committed data (their runs were lost with their machine); they
stand in the README as unbacked blocks, and their figures are listed in UNBACKED_FIGURES.
"""
from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE.parent) not in sys.path:   # run as a script: make common/ and steve/ importable
    sys.path.insert(0, str(HERE.parent))

from common.results import main, markdown_table, mean_se, read_csv, read_json  # noqa: E402

RESULTS = HERE / "results"
RUNS = RESULTS / "runs"
TOY = RESULTS / "toy"
BENCH = HERE.parent / "bench" / "results"

PENDULUM_ALGOS = (("ddpg", "DDPG"), ("mve_tdk", "MVE (TD-k)"), ("steve", "STEVE"))
SEEDS = (0, 1, 2)
SOLVED = -300.0          # "first evaluation at or above -300"
LAST = 3                 # evaluations averaged at the end of a run

UNBACKED_FIGURES = {
    "halfcheetah_ddpg_steve.png": "HalfCheetah-v5 30k frames, DDPG vs STEVE, seeds 0-1: the runs' "
                                  "data were lost with their machine (issue 33 re-runs them)",
    "halfcheetah_200k.png": "HalfCheetah-v5 200k frames, DDPG / MVE / STEVE, seeds 0-2: the runs' "
                            "data were lost with their machine (issue 33 re-runs them)",
}


# --- reading ------------------------------------------------------------------------------------
def _run_dir(algo: str, seed: int, corrupt: bool = False) -> Path:
    return RUNS / f"pendulum_{algo}{'_corrupt' if corrupt else ''}_s{seed}"


def _load(run: Path) -> dict | None:
    if not (run / "summary.json").is_file():
        return None
    rows = read_csv(run / "metrics.csv")
    return {"frames": [int(r["env_steps"]) for r in rows], "score": [float(r["score"]) for r in rows],
            "model_use": [float(r["model_use"]) if r["model_use"] not in ("", None) else None for r in rows],
            "summary": read_json(run / "summary.json"), "config": read_json(run / "config.json")}


def _runs(algo: str, corrupt: bool = False) -> dict[int, dict]:
    return {seed: run for seed in SEEDS if (run := _load(_run_dir(algo, seed, corrupt))) is not None}


def _last_mean(run: dict) -> float:
    return sum(run["score"][-LAST:]) / len(run["score"][-LAST:])


def _first_solved(run: dict) -> int | None:
    return next((f for f, s in zip(run["frames"], run["score"]) if s >= SOLVED), None)


def _k(frames: int | None) -> str:
    return "never" if frames is None else f"{frames / 1000:g}k"


def _num(x: float) -> str:
    return f"{x:.0f}".replace("-", "−")


def _model_use_range(runs: dict[int, dict]) -> tuple[float, float] | None:
    """min and max of the logged model use over every evaluation after the first (the first comes
    before any value update) of the given runs; None for DDPG / MVE."""
    uses = [u for run in runs.values() for u in run["model_use"][1:] if u is not None]
    return (min(uses), max(uses)) if uses else None


def _fmt_range(lo: float, hi: float, digits: int) -> str:
    return f"{lo:.{digits}f}-{hi:.{digits}f}"


# --- tables -------------------------------------------------------------------------------------
def toy_tables() -> dict[str, str]:
    summary = read_json(TOY / "summary.json")
    final = summary["final_mse"]

    def cell(stats):
        mean, std = stats["mean"], stats["std"]
        if mean == 0 and std == 0:
            return "0"
        if mean >= 1000:
            return f"{mean:.0f} ± {std:.0f}"
        return f"{mean:.3g} ± {std:.3g}" if mean >= 1e-3 else f"{mean:.2g} ± {std:.2g}"

    table = markdown_table(["method", *final], [["final MSE", *(cell(s) for s in final.values())]])
    curve = read_csv(TOY / "toy_results.csv")
    exact = {}
    for method in ("mve_true", "steve_true"):
        rows = [r for r in curve if r["method"] == method]
        exact[method] = next((int(r["step"]) for r in rows
                              if all(float(q["mse"]) < 1e-6 for q in rows if int(q["step"]) >= int(r["step"]))), None)
    zero = (" (exactly 0 at the end)" if final["mve_true"]["mean"] == 0 == final["steve_true"]["mean"]
            else "")
    text = (f"`python steve/toy_demo.py --trials {summary['trials']} --seed {summary['seed']}` "
            f"({summary['wall_seconds']:.0f} s, sharing the 2 cores with other runs): the error of the "
            f"ensemble-mean values against V(s) = s after {summary['train_steps']:,} steps, mean ± "
            f"std (population) over {summary['trials']} trials. With the true model the mean error stays "
            f"below 1e-6 from step {exact['mve_true']:,} on for MVE and from step "
            f"{exact['steve_true']:,} on for STEVE{zero}; with the noisy model (10 % of model steps jump to "
            f"a random state) MVE settles at an error of {final['mve_noisy']['mean']:.0f} while STEVE "
            f"ends at {final['steve_noisy']['mean']:.2g}, below Q-learning's "
            f"{final['q_learning']['mean']:.0f}: the ordering the paper shows.")
    return {"toy": table, "toy-text": text}


def pendulum_tables() -> dict[str, str]:
    rows = []
    for algo, label in PENDULUM_ALGOS:
        runs = _runs(algo)
        if not runs:
            rows.append([label, "not run", "not run", "not run", "–", "–", "–", "–"])
            continue
        per_seed = [_num(_last_mean(runs[s])) if s in runs else "not run" for s in SEEDS]
        mean, _ = mean_se([_last_mean(r) for r in runs.values()])
        n = len(runs)
        walls = [r["summary"]["wall_seconds"] for r in runs.values()]
        use = _model_use_range(runs)
        rows.append([label, *per_seed, f"**{_num(mean)}**" + ("" if n == 3 else f" ({n} seed{'s' * (n > 1)})"),
                     ", ".join(_k(_first_solved(runs[s])) for s in SEEDS if s in runs),
                     _fmt_range(*use, 2) if use else "–",
                     f"{min(walls):.0f}-{max(walls):.0f}" if n > 1 else f"{walls[0]:.0f}"])
    for algo, label in PENDULUM_ALGOS[1:]:
        runs = _runs(algo, corrupt=True)
        if not runs:
            continue
        run = runs[min(runs)]
        std = run["config"]["_run"]["corrupt_model"]
        use = _model_use_range({0: run})
        rows.append([f"{label}, corrupted model (std {std:g}; seed {min(runs)}, {run['frames'][-1] // 1000}k frames)",
                     _num(_last_mean(run)), "–", "–", "–", _k(_first_solved(run)),
                     _fmt_range(*use, 3) if use else "–", f"{run['summary']['wall_seconds']:.0f}"])
    table = markdown_table(["run", "seed 0", "seed 1", "seed 2", "mean over seeds",
                            "first eval ≥ −300 (frames)", "model use", "wall (s)"], rows)
    return {"pendulum": table, "pendulum-text": pendulum_text()}


def pendulum_text() -> str:
    plain = {algo: _runs(algo) for algo, _ in PENDULUM_ALGOS}
    labels = dict(PENDULUM_ALGOS)
    done = [a for a in plain if plain[a]]
    if not done:
        return "No Pendulum run is committed yet."

    def seeds(runs):
        return f"{len(runs)} seed{'s' * (len(runs) > 1)}"

    ends = ", ".join(f"{labels[a]} {_num(mean_se([_last_mean(r) for r in plain[a].values()])[0])} "
                     f"({seeds(plain[a])})" for a in done)
    solved = "; ".join(f"{labels[a]} " + ", ".join(_k(_first_solved(r)) for r in plain[a].values())
                       for a in done)
    text = (f"Mean over seeds of the last {LAST} evaluations: {ends}. First evaluation at or above "
            f"−300: {solved} frames.")
    if plain["steve"]:
        lo, hi = _model_use_range(plain["steve"])
        text += f" STEVE's model use stayed between {lo:.2f} and {hi:.2f}."
    corrupted = []
    for algo in ("mve_tdk", "steve"):
        runs = _runs(algo, corrupt=True)
        if not runs:
            continue
        seed, run = min(runs), runs[min(runs)]
        use = _model_use_range(runs)
        corrupted.append(
            f"{labels[algo]} (seed {seed}) ends at {_num(_last_mean(run))} (best evaluation "
            f"{_num(max(run['score']))}; first at or above −300: {_k(_first_solved(run))}"
            + (f"; model use {use[0]:.3f}-{use[1]:.3f})" if use else ")"))
        std = run["config"]["_run"]["corrupt_model"]
    if corrupted:
        text += (f" With a corrupted model (N(0, {std:g}) added to every imagined state): "
                 + "; ".join(corrupted) + ".")
    return text


def sb3_tables() -> dict[str, str]:
    bench = read_json(BENCH / "steve_vs_sb3.json")
    s, agg = bench["settings"], bench["aggregates"]
    rows = []
    for name, a in agg.items():
        reached = ", ".join(f"{f / 1000:g}k" if f is not None else "never" for f in a["frames_to_threshold_per_seed"])
        rows.append([name, reached, f"{a['frames_to_threshold_median'] / 1000:g}k",
                     " / ".join(f"{x:.0f}" for x in a["final_return_per_seed"]),
                     f"{a['final_return_mean']:.0f} ± {a['final_return_se']:.0f}",
                     f"{a['frames_per_second']:.0f}"])
    m = bench["machine"]
    table = markdown_table(["algorithm", f"first greedy return ≥ {s['threshold']:.0f}, seeds "
                            + ", ".join(map(str, s["seeds"])), "median",
                            f"mean of the last {s['last_evals_averaged']} evals, per seed",
                            "mean ± s.e.", "frames/s"], rows)
    text = (f"{len(s['seeds'])} seeds × {s['frames']:,} frames on {s['env']}, one greedy episode every "
            f"{s['eval_every']:,} frames, run {m['date']} on a {m['cores']}-core {m['cpu']}, torch "
            f"{m['torch']}, {m['torch_threads']} thread, with the code before the speed work below "
            f"(commit 955085d).")
    return {"sb3": table, "sb3-settings": text}


def speed_tables() -> dict[str, str]:
    bench = read_json(BENCH / "steve_update.json")
    parts = bench["parts_ms"]
    names = {"baseline": bench["baseline_commit"],
             "baseline + malloc": f"{bench['baseline_commit']} with today's allocator settings",
             "current": "today"}
    rows = [[names[k], f"{p['frame_ms']:.1f}", f"{p['value update']:.1f}", f"{p['target']:.1f}",
             f"{p['world update']:.1f}", f"{1000 / p['frame_ms']:.0f}"] for k, p in parts.items()]
    table = markdown_table(["code", "ms per frame", "value update", "of which the target",
                            "world-model update", "frames/s"], rows)
    m, f, cur = bench["machine"], bench["floor"], parts["current"]
    target_ms = bench["baseline_frame_ms"] / 3
    summary = (f"**{bench['speedup']:.2f}× faster** ({bench['speedup_code_only']:.2f}× from the code, the "
               f"rest from the allocator; medians of {bench['rounds']} rounds of {bench['frames_per_round']} "
               f"frames, run {m['date']} on a {m['cores']}-core {m['cpu']}, torch {m['torch']}, "
               f"{m['torch_threads']} thread).")
    floor = (f"Why not 3×: the frame's matrix products are {f['matmul_mflop_per_frame']['frame']:.0f} MFLOP "
             f"({f['matmul_mflop_per_frame']['target']:.0f} in the target: every reward member scores every "
             f"member's imagined steps, every target-Q member values every imagined state), and the best "
             f"single matmul this core ran is ~{f['best_gemm_gflops']:.0f} GFLOP/s, a floor of "
             f"{f['floor_ms']:.1f} ms per frame; 3× would be {target_ms:.1f} ms, i.e. "
             f"{100 * f['floor_ms'] / target_ms:.0f} % of peak counting every elementwise op, three "
             f"backward passes and three Adam steps of small kernels. Of today's "
             f"{cur['frame_ms']:.1f} ms the target takes {cur['target']:.1f} and the Q and policy steps "
             f"the rest of the value update's {cur['value update']:.1f}; the world model takes "
             f"{cur['world update']:.1f}.")
    return {"speed": table, "speed-summary": summary, "speed-floor": floor}


def tables() -> dict[str, str]:
    out = {}
    for part in (toy_tables, pendulum_tables, sb3_tables, speed_tables):
        out.update(part())
    return out


# --- figures ------------------------------------------------------------------------------------
def figures(out_dir: Path) -> list[Path]:
    from steve import plots, toy_demo   # matplotlib only when figures are asked for

    out_dir = Path(out_dir)
    made = []
    steps, curves = toy_demo.read_trials(TOY / "toy_trials.csv")
    summary = read_json(TOY / "summary.json")
    toy_demo.plot(steps, curves, out_dir / "toy_results.png", summary["trials"], summary["seed"])
    made.append(out_dir / "toy_results.png")
    plain = [_run_dir(a, s) for a, _ in PENDULUM_ALGOS for s in SEEDS if (_run_dir(a, s) / "summary.json").is_file()]
    if plain:
        made.append(plots.plot_compare(plain, out_dir / "pendulum_3seeds.png"))
    corrupt = [_run_dir(a, s, True) for a, _ in PENDULUM_ALGOS for s in SEEDS
               if (_run_dir(a, s, True) / "summary.json").is_file()]
    if corrupt:
        seeds = {int(p.name.rsplit("_s", 1)[1]) for p in corrupt}
        reference = [p for p in plain if int(p.name.rsplit("_s", 1)[1]) in seeds]
        made.append(plots.plot_compare(corrupt + reference, out_dir / "pendulum_corrupted_model.png"))
    return made


if __name__ == "__main__":
    sys.exit(main(__file__, tables, figures))
