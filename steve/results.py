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
- results/runs/halfcheetah_<algo>_s<seed>/: the 200k-frame HalfCheetah-v5 runs of issue 33
  (`ddpg` = ddpg0.json, `steve_full` = steve_full0.json, `mve_tdk` = mve_tdk0.json) -> the
  HalfCheetah tables and sentence, halfcheetah_200k.png.
- ../bench/results/steve_vs_sb3.json, ../bench/results/steve_update.json: what
  `python bench/steve_vs_sb3.py` and `python bench/steve_update.py` write
  -> the Against-SB3 and Speed tables and sentences.

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

UNBACKED_FIGURES: dict[str, str] = {}

HC_ALGOS = (("ddpg", "DDPG"), ("mve_tdk", "MVE (TD-k)"), ("steve_full", "STEVE, full routing"))
HC_MARKS = (50_000, 100_000, 150_000, 200_000)   # the curve table's frames
HC_LEVELS = (1000, 2000, 3000)                   # "first evaluation at or above"
HC_EARLY = (50_000, 100_000)                     # "mean greedy return over the evaluations up to ..."


# --- reading ------------------------------------------------------------------------------------
def _run_dir(algo: str, seed: int, corrupt: bool = False, env: str = "pendulum") -> Path:
    return RUNS / f"{env}_{algo}{'_corrupt' if corrupt else ''}_s{seed}"


def _optional(row: dict, key: str) -> float | None:
    return float(row[key]) if row.get(key) not in ("", None) else None


def _load(run: Path) -> dict | None:
    if not (run / "summary.json").is_file():
        return None
    rows = read_csv(run / "metrics.csv")
    return {"frames": [int(r["env_steps"]) for r in rows], "score": [float(r["score"]) for r in rows],
            "model_use": [_optional(r, "model_use") for r in rows],
            "calib_state_1": [_optional(r, "calib_state_1") for r in rows],
            "summary": read_json(run / "summary.json"), "config": read_json(run / "config.json")}


def _runs(algo: str, corrupt: bool = False, env: str = "pendulum") -> dict[int, dict]:
    return {seed: run for seed in SEEDS if (run := _load(_run_dir(algo, seed, corrupt, env))) is not None}


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


def _mean(values) -> float:
    values = list(values)
    return sum(values) / len(values)


def _at(run: dict, frames: int) -> float | None:
    """The greedy return of the evaluation at exactly `frames`, None if there was none."""
    return next((s for f, s in zip(run["frames"], run["score"]) if f == frames), None)


def _first_at_or_above(run: dict, level: float) -> int | None:
    return next((f for f, s in zip(run["frames"], run["score"]) if s >= level), None)


def _minutes(run: dict) -> str:
    return f"{run['summary']['wall_seconds'] / 60:.0f} min"


def _early_mean(run: dict, until: int) -> float:
    return _mean(score for frames, score in zip(run["frames"], run["score"]) if frames <= until)


def _ahead_from(leader: dict, other: dict) -> int | None:
    """The first evaluation from which `leader` is above `other` at every later evaluation too."""
    pairs = [(f, a, b) for f, a in zip(leader["frames"], leader["score"])
             for g, b in zip(other["frames"], other["score"]) if f == g]
    start = None
    for frames, a, b in pairs:
        if a > b:
            start = frames if start is None else start
        else:
            start = None
    return start


def _calibration(run: dict) -> tuple[float, float] | None:
    """The one-step state calibration (error² / ensemble variance) at the first and the last
    evaluation that logged it; None for runs without an ensemble model."""
    logged = [c for c in run["calib_state_1"] if c is not None]
    return (logged[0], logged[-1]) if logged else None


def halfcheetah_tables() -> dict[str, str]:
    final, curve = [], []
    for algo, label in HC_ALGOS:
        runs = _runs(algo, env="halfcheetah")
        for seed, run in sorted(runs.items()):
            use = run["model_use"][-1]
            calib = _calibration(run)
            final.append([label, str(seed), f"{run['frames'][-1]:,}", _num(run["score"][-1]),
                          _num(_mean(run["score"][-LAST:])), _num(_mean(run["score"][-10:])),
                          _num(max(run["score"])), "–" if use is None else f"{use:.3f}",
                          "–" if calib is None else f"{calib[0]:.1f} → {calib[1]:.1f}", _minutes(run)])
        if not runs:
            continue
        cells = [" / ".join("–" if (v := _at(runs[s], f)) is None else _num(v) for f in HC_MARKS)
                 if s in runs else "not run" for s in SEEDS]
        means = [[v for r in runs.values() if (v := _at(r, f)) is not None] for f in HC_MARKS]
        curve.append([label, *cells, " / ".join(_num(_mean(m)) if m else "–" for m in means),
                      *(", ".join(_k(_first_at_or_above(runs[s], level)).replace("never", "–")
                                  for s in SEEDS if s in runs) for level in HC_LEVELS)])
    final_table = markdown_table(["algo", "seed", "frames", "greedy return, last eval", f"mean of last {LAST}",
                                  "mean of last 10", "best", "model use (last)",
                                  "one-step state error² / variance, first → last eval", "wall"], final)
    curve_table = markdown_table(["algo", "seed 0", "seed 1", "seed 2",
                                  "mean at " + " / ".join(f"{f // 1000}k" for f in HC_MARKS),
                                  *(f"first ≥ {level}" for level in HC_LEVELS)], curve)
    return {"hc-200k-final": final_table, "hc-200k-curve": curve_table, "hc-200k-text": halfcheetah_text()}


def halfcheetah_text() -> str:
    runs = {algo: r for algo, _ in HC_ALGOS if (r := _runs(algo, env="halfcheetah"))}
    labels = dict(HC_ALGOS)
    if not runs:
        return "No HalfCheetah run is committed yet."

    def seeds(r):
        return f"{len(r)} seed{'s' * (len(r) > 1)}"

    ends = ", ".join(f"{labels[a]} {_num(_mean(r[s]['score'][-1] for s in r))} ({seeds(r)})" for a, r in runs.items())
    early = "; ".join(f"up to {until // 1000}k: " + ", ".join(
        f"{labels[a]} {_num(_mean(_early_mean(run, until) for run in r.values()))}" for a, r in runs.items())
        for until in HC_EARLY)
    text = (f"Greedy return at the last evaluation, mean over seeds: {ends}. Mean greedy return over the "
            f"evaluations {early} (mean over seeds).")
    if "ddpg" in runs and "steve_full" in runs:
        common = sorted(set(runs["ddpg"]) & set(runs["steve_full"]))
        ahead = [s for s in common if runs["steve_full"][s]["score"][-1] > runs["ddpg"][s]["score"][-1]]
        text += (f" STEVE (full routing) ends above DDPG on {len(ahead)} of {len(common)} seeds"
                 + (f" (seed{'s' * (len(ahead) > 1)} {', '.join(map(str, ahead))})" if ahead else "") + ".")
        lead = [_ahead_from(runs["ddpg"][s], runs["steve_full"][s]) for s in common]
        text += (" DDPG is above STEVE at every evaluation from "
                 + ", ".join(f"{_k(f)} (seed {s})" if f is not None else f"no evaluation (seed {s}: STEVE is level or ahead at the last)"
                             for s, f in zip(common, lead)) + " frames on.")
        lo, hi = _model_use_range(runs["steve_full"])
        calib = [c for r in runs["steve_full"].values() for c in r["calib_state_1"] if c is not None]
        text += (f" Its model use stayed between {lo:.2f} and {hi:.2f}; the world model's one-step state "
                 f"error² over ensemble variance ranged from {min(calib):.1f} to {max(calib):.1f} "
                 f"(a calibrated 4-member ensemble gives about 1.25).")
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
             "current": "today", "current + compile": "today, `--compile`"}
    rows = [[names[k], f"{p['frame_ms']:.1f}", f"{p['value update']:.1f}", f"{p['target']:.1f}",
             f"{p['world update']:.1f}", f"{1000 / p['frame_ms']:.0f}"] for k, p in parts.items()]
    table = markdown_table(["code", "ms per frame", "value update", "of which the target",
                            "world-model update", "frames/s"], rows)
    m, f, cur = bench["machine"], bench["floor"], parts["current"]
    target_ms = bench["baseline_frame_ms"] / 3
    summary = (f"**{bench['speedup']:.2f}× faster** ({bench['speedup_code_only']:.2f}× from the code, the "
               f"rest from the allocator)")
    if "speedup_compiled" in bench:
        summary += (f"; with `--compile` **{bench['speedup_compiled']:.2f}×** ({bench['compiled_vs_eager']:.2f}× "
                    f"today's eager path)")
    summary += (f". Medians of {bench['rounds']} rounds of {bench['frames_per_round']} frames, run {m['date']} "
                f"on a {m['cores']}-core {m['cpu']}, torch {m['torch']}, {m['torch_threads']} thread.")
    floor = (f"Where the time goes: the frame's matrix products are "
             f"{f['matmul_mflop_per_frame']['frame']:.0f} MFLOP ({f['matmul_mflop_per_frame']['target']:.0f} in the "
             f"target: every reward member scores every member's imagined steps, every target-Q member values "
             f"every imagined state), and the best single matmul this core ran is ~{f['best_gemm_gflops']:.0f} "
             f"GFLOP/s: a floor of {f['floor_ms']:.1f} ms per frame, where 3× would be {target_ms:.1f} ms "
             f"({100 * f['floor_ms'] / target_ms:.0f} % of that peak over the whole frame). Of today's "
             f"{cur['frame_ms']:.1f} ms the target takes {cur['target']:.1f} and the Q and policy steps the rest "
             f"of the value update's {cur['value update']:.1f}; the world model takes {cur['world update']:.1f}. "
             f"The rest is the many small kernels around the matmuls (elementwise ops, three backward passes, "
             f"three Adam steps), each a few microseconds at these sizes.")
    return {"speed": table, "speed-summary": summary, "speed-floor": floor}


def tables() -> dict[str, str]:
    out = {}
    for part in (toy_tables, pendulum_tables, halfcheetah_tables, sb3_tables, speed_tables):
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
    cheetah = [_run_dir(a, s, env="halfcheetah") for a, _ in HC_ALGOS for s in SEEDS
               if (_run_dir(a, s, env="halfcheetah") / "summary.json").is_file()]
    if cheetah:
        made.append(plots.plot_compare(cheetah, out_dir / "halfcheetah_200k.png"))
    return made


if __name__ == "__main__":
    sys.exit(main(__file__, tables, figures))
