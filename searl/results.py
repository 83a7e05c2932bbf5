"""Rebuild searl/README.md's results blocks and figures from searl/results/ only.

    python searl/results.py            # rewrite the README's generated blocks and the figures
    python searl/results.py --check    # exit 1 naming each block that differs from the data

The data:

- results/small_runs/<name>/{config.json, summary.json, metrics.csv, population.csv}: the smaller
  runs (SEARL-TD3 and single-agent TD3 on Pendulum-v1 and HalfCheetah-v5, the reference slice copy,
  the SEARL-DQN smoke), copied from their run folders by `python searl/collect_results.py RUN_DIR`;
  metrics.csv is the elite's (SEARL) or the agent's (baseline) noise-free test return per
  generation / test point, population.csv every individual of every generation;
- results/mutation_drift.json: `python bench/searl_mutation_drift.py` (each mutation's change of
  an individual's actions and Q values, per seed);
- results/small_runs/{searl,td3}_hc_2m_s0: the paper's HalfCheetah experiment (the SEARL run
  copied with `--partial` while unfinished: no summary.json, its metrics.csv ends where it stopped);
- ../bench/results/searl_population_speed.json: `python bench/searl_population_speed.py`;
- ../bench/results/searl_generation_speed.json: `python bench/searl_generation_speed.py`.
"""
from __future__ import annotations

import re
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from common.results import main, markdown_table, read_csv, read_json  # noqa: E402

RESULTS = HERE / "results"
RUNS = RESULTS / "small_runs"
SPEED = HERE.parent / "bench" / "results" / "searl_population_speed.json"
GENERATION_SPEED = HERE.parent / "bench" / "results" / "searl_generation_speed.json"
HC2M_SEARL, HC2M_TD3 = RUNS / "searl_hc_2m_s0", RUNS / "td3_hc_2m_s0"
DRIFT = RESULTS / "mutation_drift.json"

UNBACKED_FIGURES: dict[str, str] = {}

SEARL = "--config_file searl/configs/searl_td3.yaml"
TD3 = "--config_file searl/configs/td3.yaml"
SLICE = "--set td3.preserve_growth=false"
# (run-folder name pattern, env, method, command, how the return column reads)
GROUPS = [
    (r"searl_pendulum_s(\d+)", "Pendulum-v1", "SEARL-TD3, population 5",
     f"{SEARL} --env Pendulum-v1 --population 5 --total-steps 30000 --seed S", "median5"),
    (r"td3_pendulum_s(\d+)", "Pendulum-v1", "single-agent TD3",
     f"{TD3} --env Pendulum-v1 --total-steps 30000 --seed S", "final"),
    (r"searl_halfcheetah_s(\d+)", "HalfCheetah-v5", "SEARL-TD3, population 4",
     f"{SEARL} --env HalfCheetah-v5 --population 4 --total-steps 40000 --seed S", "final"),
    (r"td3_halfcheetah_s(\d+)", "HalfCheetah-v5", "single-agent TD3",
     f"{TD3} --env HalfCheetah-v5 --total-steps 40000 --seed S", "final"),
    (r"searl_halfcheetah_slice_s(\d+)", "HalfCheetah-v5", "SEARL-TD3, reference slice copy",
     f"{SEARL} --env HalfCheetah-v5 --population 4 --total-steps 40000 {SLICE} --seed S", "final"),
    (r"searl_pendulum_slice_s(\d+)", "Pendulum-v1", "SEARL-TD3, reference slice copy",
     f"{SEARL} --env Pendulum-v1 --population 5 --total-steps 30000 {SLICE} --seed S", "median5"),
    (r"searl_dqn_smoke()", "CartPole-v1", "SEARL-DQN smoke",
     "--config_file searl/configs/searl_dqn.yaml --smoke --set torch_threads=1", "smoke"),
]


# --- the committed runs -----------------------------------------------------------------------

def runs(pattern: str) -> list[dict]:
    """The committed runs whose folder name matches `pattern`, by seed: {seed, summary, metrics,
    returns (test return per metrics row), path}."""
    found = []
    for path in sorted(RUNS.iterdir()) if RUNS.is_dir() else []:
        if re.fullmatch(pattern, path.name) and (path / "summary.json").is_file():
            summary, metrics = read_json(path / "summary.json"), read_csv(path / "metrics.csv")
            column = "elite_test_return" if "elite_test_return" in metrics[0] else "test_return"
            found.append({"seed": summary["seed"], "summary": summary, "metrics": metrics,
                          "returns": [float(r[column]) for r in metrics], "path": path})
    return sorted(found, key=lambda r: r["seed"])


def median_last5(run: dict) -> float:
    """Median elite test return over the run's last 5 generations."""
    return statistics.median(run["returns"][-5:])


def num(x: float, digits: int = 0) -> str:
    """A return as the README writes it: a real minus sign."""
    text = f"{x:.{digits}f}"
    return text.replace("-", "−")


def joined(values, digits: int = 0) -> str:
    return ", ".join(num(v, digits) for v in values)


def return_cell(group_runs: list[dict], kind: str) -> str:
    best = joined(r["summary"]["best_return"] for r in group_runs)
    if kind == "median5":
        what = "median of the last 5 generations" if len(group_runs) > 1 else "median of the last 5"
        return f"{what}: {joined(median_last5(r) for r in group_runs)} (best {best})"
    if kind == "smoke":
        return (f"final {joined((r['summary']['final_return'] for r in group_runs), 1)} (random ≈ 22: "
                "a smoke budget shows the pipeline, not learning)")
    return f"final {joined(r['summary']['final_return'] for r in group_runs)} (best {best})"


def small_runs_table() -> str:
    rows = []
    for pattern, env, method, command, kind in GROUPS:
        group = runs(pattern)
        if not group:
            continue
        steps = sorted({r["summary"]["env_steps"] for r in group})
        steps_text = " / ".join(f"{s:,}".replace(",", " ") for s in steps)
        seeds = ", ".join(str(r["seed"]) for r in group)
        wall = ", ".join(f"{r['summary']['wall_seconds']:.0f} s" for r in group)
        envs = sorted({r["summary"]["env"] for r in group})
        assert envs == [env], f"{pattern}: runs of {envs}, expected {env}"
        rows.append([env, method, f"`{command}`", seeds, steps_text, return_cell(group, kind), wall])
    return markdown_table(["env", "method", "command", "seeds", "env steps",
                           "elite / agent test return", "wall"], rows)


def every_seed(values: list[float], ok) -> str:
    hits = sum(ok(v) for v in values)
    return "on every seed" if hits == len(values) else f"on {hits} of {len(values)} seeds"


def issue_check_sentence() -> str:
    pend = [median_last5(r) for r in runs(GROUPS[0][0])]
    hc = [r["summary"]["best_return"] for r in runs(GROUPS[2][0])]
    holds = all(v >= -300 for v in pend) and all(v >= 1000 for v in hc)
    return (f"What the issue asks {'holds' if holds else 'does not hold everywhere'}: Pendulum-v1 "
            f"median elite return over the last 5 generations ≥ −300 {every_seed(pend, lambda v: v >= -300)} "
            f"(lowest {num(min(pend))}), HalfCheetah-v5 best elite return ≥ 1000 "
            f"{every_seed(hc, lambda v: v >= 1000)} (lowest {num(min(hc))}).")


def vs_td3_sentence() -> str:
    """SEARL's elite against single-agent TD3 on the seeds both were run with."""
    parts = []
    for searl_pattern, td3_pattern, env, searl_value, what in (
            (GROUPS[0][0], GROUPS[1][0], "Pendulum-v1", median_last5,
             "SEARL's median of the last 5 generations"),
            (GROUPS[2][0], GROUPS[3][0], "HalfCheetah-v5", lambda r: r["summary"]["final_return"],
             "SEARL's final elite")):
        searl = {r["seed"]: r for r in runs(searl_pattern)}
        td3 = {r["seed"]: r for r in runs(td3_pattern)}
        seeds = sorted(set(searl) & set(td3))
        if not seeds:
            continue
        updates = sorted({td3[s]["summary"]["updates"] for s in seeds})
        per_generation = sorted({int(row["updates_per_individual"]) for s in seeds
                                 for row in searl[s]["metrics"][1:]})
        parts.append(f"{env} seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))}: "
                     f"TD3 final {joined(td3[s]['summary']['final_return'] for s in seeds)} vs "
                     f"{what} {joined(searl_value(searl[s]) for s in seeds)} (TD3: "
                     f"{' / '.join(f'{u:,}' for u in updates)} updates of one agent; SEARL: "
                     f"{' / '.join(f'{u:,}' for u in per_generation)} updates per individual "
                     f"per generation, with fresh optimizers each generation)")
    return "On the seeds run with both methods: " + "; ".join(parts) + "."


# --- architecture mutants' fitness rank ---------------------------------------------------------

def mutant_ranks(run: dict) -> tuple[float, int]:
    """Mean fitness rank (0 = worst, 1 = best; ties share their mean rank) of the architecture
    mutants within their generation, and how many there were."""
    rows = read_csv(run["path"] / "population.csv")
    by_generation: dict[int, list[dict]] = {}
    for row in rows:
        by_generation.setdefault(int(row["generation"]), []).append(row)
    ranks = []
    for members in by_generation.values():
        fitness = [float(m["fitness"]) for m in members]
        for member, f in zip(members, fitness):
            if member["mutation"].startswith("architecture") and len(members) > 1:
                below = sum(g < f for g in fitness)
                equal = sum(g == f for g in fitness) - 1
                ranks.append((below + equal / 2) / (len(members) - 1))
    return (sum(ranks) / len(ranks) if ranks else float("nan")), len(ranks)


def mutant_rank_sentence() -> str:
    parts, finals = [], []
    for ours, ref, label, value, what in (
            (GROUPS[2][0], GROUPS[4][0], "HalfCheetah", lambda r: r["summary"]["final_return"],
             "final elite"),
            (GROUPS[0][0], GROUPS[5][0], "Pendulum", median_last5, "median of the last 5")):
        ours_runs = {r["seed"]: r for r in runs(ours)}
        for seed, ref_run in ((r["seed"], r) for r in runs(ref)):
            if seed not in ours_runs:
                continue
            (a, n), (b, m) = mutant_ranks(ours_runs[seed]), mutant_ranks(ref_run)
            parts.append(f"{a:.2f} ({n} mutants) with function-preserving growth vs {b:.2f} ({m}) "
                         f"with the slice copy on {label} seed {seed}")
            finals.append(f"{label} seed {seed}, {what}: {num(value(ours_runs[seed]))} vs "
                          f"{num(value(ref_run))}")
    if not parts:
        return "No run pair of the two growth schemes with the same seed is committed."
    return ("Function-preserving growth vs the reference's slice copy, one seed each: "
            + "; ".join(finals) + ". Mean fitness rank of the architecture mutants within their "
            "generation (0 = worst, 1 = best): " + "; ".join(parts) + ".")


# --- the bench files ----------------------------------------------------------------------------

def speed_table() -> str:
    data = read_json(SPEED)
    rows = []
    labels = {"initial": "initial: [128], relu (generation 1 of a run)",
              "grown": "grown: 12 random architecture / activation mutations each "
                       "(widths {lo}–{hi}, {dl}–{dh} layers, mixed activations)"}
    for key, result in data["results"].items():
        widths = [w for hidden in result["hidden"] for w in hidden]
        depths = [len(hidden) for hidden in result["hidden"]]
        label = labels.get(key, key).format(lo=min(widths), hi=max(widths), dl=min(depths),
                                            dh=max(depths))
        speedup = f"{result['speedup']:.2f}×"
        rows.append([label, f"{result['serial_updates_per_s']:.0f}",
                     f"{result['batched_updates_per_s']:.0f}",
                     f"**{speedup}**" if key == "initial" else speedup,
                     f"{result['speedup_cpu']:.2f}×",
                     f"{result['serial_peak_rss_mb']:.0f} / {result['batched_peak_rss_mb']:.0f} MB"])
    return markdown_table([f"population ({data['population']} individuals, batch {data['batch_size']})",
                           "one by one (updates/s)", "batched (updates/s)", "speedup (wall)",
                           "speedup (CPU time)", "peak memory (one by one / batched)"], rows)


def speed_sentence() -> str:
    data = read_json(SPEED)
    s = data["scaling"]
    initial = data["results"]["initial"]["speedup"]
    sizes = ", ".join(map(str, s["sizes"][:-1])) + f" and {s['sizes'][-1]}"
    times = ", ".join(f"{t:.2f}" for t in s["cpu_ms_per_group_step"][:-1]) + \
        f" and {s['cpu_ms_per_group_step'][-1]:.2f}"
    met = "met" if data["target_met"] else "not met"
    return (f"{data['pairs']} alternating pairs of {data['updates_per_child']} updates per individual, "
            f"{data['machine']['date']} (`bench/results/searl_population_speed.json`). **The issue's "
            f"target, speedup ≥ {data['target']:.0f} at SEARL's initial sizes, is {met} here: "
            f"{initial:.2f}×, and on this CPU no group size can reach it.** The bench also times "
            f"batched groups of {sizes} individuals (best of 5 bursts, CPU time): {times} ms per "
            f"group step, i.e. {s['overhead_ms']:.2f} ms + {s['per_individual_ms']:.2f} ms per "
            f"individual. The {s['per_individual_ms']:.2f} ms is work that batching cannot remove "
            f"(the same elementwise passes over every individual's activations), against "
            f"{s['serial_cpu_ms_per_update']:.2f} ms per one-by-one update, so even an infinite "
            f"group would be at most {s['speedup_limit']:.2f}× faster here.")


def _last_at(rows: list[dict], frames: int) -> dict | None:
    """The last row logged at or before `frames` env steps."""
    before = [r for r in rows if int(r["env_steps"]) <= frames]
    return before[-1] if before else None


def hc2m_table() -> str:
    searl, td3 = read_csv(HC2M_SEARL / "metrics.csv"), read_csv(HC2M_TD3 / "metrics.csv")
    searl_end, td3_end = int(searl[-1]["env_steps"]), int(td3[-1]["env_steps"])
    step = 50_000 if searl_end <= 500_000 else 100_000
    marks = sorted({10_000, *range(step, searl_end + 1, step), searl_end})
    rows = []
    for frames in marks:
        s, t = _last_at(searl, frames), _last_at(td3, frames)
        rows.append([f"{frames:,}", f"{float(s['elite_test_return']):.0f} ({s['generation']})",
                     f"{float(s['wall_seconds']) / 60:.0f} min", f"{float(t['test_return']):.0f}",
                     f"{float(t['wall_seconds']) / 60:.0f} min"])
    for frames in sorted({1_000_000, 1_500_000, td3_end} - set(marks)):
        t = _last_at(td3, frames)
        if frames > searl_end and t is not None:
            rows.append([f"TD3: {frames:,}", "", "", f"{float(t['test_return']):.0f}",
                         f"{float(t['wall_seconds']) / 60:.0f} min"])
    return markdown_table(["frames", "SEARL elite test return (generation)", "SEARL wall",
                           "single-agent TD3 test return", "TD3 wall"], rows)


def hc2m_sentence() -> str:
    searl, td3 = read_csv(HC2M_SEARL / "metrics.csv"), read_json(HC2M_TD3 / "summary.json")
    last, elite = searl[-1], [float(r["elite_test_return"]) for r in searl]
    td3_rows = read_csv(HC2M_TD3 / "metrics.csv")
    at_same = _last_at(td3_rows, int(last["env_steps"]))
    finished = (HC2M_SEARL / "summary.json").is_file()
    searl_part = (f"SEARL reached {int(last['env_steps']):,} frames" if not finished
                  else f"SEARL finished its {int(last['env_steps']):,} frames")
    return (f"Single-agent TD3 finished its {td3['env_steps']:,} frames: final test return "
            f"{td3['final_return']:.0f}, best {td3['best_return']:.0f}, "
            f"{td3['wall_seconds'] / 3600:.1f} h of wall time. {searl_part} (generation "
            f"{last['generation']}) in {float(last['wall_seconds']) / 3600:.1f} h: elite test return "
            f"{elite[-1]:.0f} at the last generation, best {max(elite):.0f}; single-agent TD3 at the same "
            f"frames: {float(at_same['test_return']):.0f}.")


def generation_speed_table() -> str:
    data = read_json(GENERATION_SPEED)
    labels = {"initial": "generation 1: [128], relu",
              "grown": "grown: tanh, 2-3 layers of 256-400 units (seeded fixture)"}
    paths = {"before": "before (1 process, torch's tanh / elu)",
             "default": "`--workers 2 --backend process`",
             "compile": "`--workers 2 --backend process --compile`"}
    rows = []
    for population, result in data["generations"].items():
        for path, r in result["runs"].items():
            rows.append([labels[population], paths[path], f"{r['train_s']:.1f}",
                         f"{r['eval_s'] + r['test_s']:.1f}", f"**{r['generation_s']:.1f}**",
                         f"{result['speedup'][path]:.2f}×", f"{r['warm_up_s']:.0f}"])
    return markdown_table(["population (10 individuals)", "path", "train s (5 000 updates each)",
                           "evaluate + test s", "s per generation", "vs before",
                           "first call s (start-up, compiling)"], rows)


def generation_speed_sentence() -> str:
    data = read_json(GENERATION_SPEED)
    grown = data["generations"]["grown"]["generation_s"]["default"]
    kernels = ", ".join(f"{name} {k['torch_us']:.0f} / {k['used_us']:.0f} µs"
                        for name, k in data["kernels"].items())
    met = "met" if data["target_met"] else "not met"
    return (f"{data['machine']['date']}, {data['machine']['cpu']}, {data['machine']['cores']} cores "
            f"(`bench/results/searl_generation_speed.json`; training timed over {data['timed_updates']} "
            f"updates per individual and scaled to {data['generation_updates']:,}). **The issue's target, "
            f"≤ {data['target_grown_generation_s']:.0f} s per generation for the grown population, is {met} "
            f"here: {grown:.1f} s.** Activation kernels on this machine, torch's / the ones used "
            f"(common/activations.py), one thread, (10, 100, 400) float32: {kernels}.")


def grown_profile_sentence() -> str:
    run = read_json(GENERATION_SPEED)
    data = {**run["grown_profile"], "machine": run["machine"]}
    share = {op["op"]: op["share"] for op in data["top_ops"]}
    matmul = share.get("aten::baddbmm", 0) + share.get("aten::bmm", 0)
    named = ", ".join(f"`{op['op']}` {100 * op['share']:.0f}%" for op in data["top_ops"][:8])
    return (f"torch.profiler over {data['updates']} updates ({data['machine']['date']}, one process, "
            f"`grown_profile` in `bench/results/searl_generation_speed.json`): "
            f"{data['ms_per_update_step']:.0f} ms of CPU per update of the whole grown population "
            f"(groups of {' and '.join(map(str, data['groups']))}); the matrix products take "
            f"{100 * matmul:.0f}% of it; by self CPU time: {named}.")


def drift_table() -> str:
    data = read_json(DRIFT)
    by_name: dict[str, dict[bool, dict]] = {}
    for row in data["rows"]:
        by_name.setdefault(row["mutation"], {})[row["preserve_growth"]] = row
    labels = {"parameter noise": "parameter noise (actor only)"}

    def sci(x: float) -> str:
        return "0" if x == 0 else f"{x:.1e}"

    rows = []
    for name, schemes in by_name.items():
        cells = {p: (sci(r["action_change"]), sci(r["q_change"])) for p, r in schemes.items()}
        if len(set(cells.values())) == 1:
            rows.append([labels.get(name, name), "both", *cells[True]])
        else:
            rows.append([labels.get(name, name), "function-preserving (ours)", *cells[True]])
            rows.append([labels.get(name, name), "slice copy (reference)", *cells[False]])
    return markdown_table(["mutation", "scheme", "actions", "Q"], rows)


def drift_sentence() -> str:
    data = read_json(DRIFT)
    return (f"{data['env']}, {data['states']} replay states, {data['seeds']} seeded mutations per row, "
            f"{data['machine']['date']} (`searl/results/mutation_drift.json`, "
            f"{data['cpu_seconds']:.0f} s of CPU).")


def tables() -> dict[str, str]:
    return {
        "small-runs": small_runs_table(),
        "small-runs-issue-check": issue_check_sentence(),
        "small-runs-vs-td3": vs_td3_sentence(),
        "mutant-ranks": mutant_rank_sentence(),
        "hc-2m": hc2m_table(),
        "hc-2m-summary": hc2m_sentence(),
        "generation-speed": generation_speed_table(),
        "generation-speed-summary": generation_speed_sentence(),
        "grown-profile": grown_profile_sentence(),
        "population-speed": speed_table(),
        "population-speed-limit": speed_sentence(),
        "mutation-drift": drift_table(),
        "mutation-drift-run": drift_sentence(),
    }


def figures(out_dir: Path) -> list[Path]:
    from searl.plots import plot_learning_curve, plot_population

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    made = []
    for env, searl_pattern, td3_pattern, seed, name in (
            ("HalfCheetah", GROUPS[2][0], GROUPS[3][0], 0, "halfcheetah_searl_vs_td3.png"),
            ("Pendulum", GROUPS[0][0], GROUPS[1][0], 2, "pendulum_searl_vs_td3.png")):
        searl = [r for r in runs(searl_pattern) if r["seed"] == seed]
        td3 = [r["path"] for r in runs(td3_pattern) if r["seed"] == seed]
        if searl:
            made.append(plot_learning_curve(searl[0]["path"], td3, out_dir / name))
    if (HC2M_SEARL / "metrics.csv").is_file():
        made.append(plot_learning_curve(HC2M_SEARL, [HC2M_TD3], out_dir / "halfcheetah_2m.png"))
        made.append(plot_population(HC2M_SEARL, out_dir / "halfcheetah_2m_population.png"))
    hc0 = [r for r in runs(GROUPS[2][0]) if r["seed"] == 0]
    if hc0:
        made.append(plot_population(hc0[0]["path"], out_dir / "halfcheetah_population.png"))
    return [path for path in made if path is not None]


if __name__ == "__main__":
    sys.exit(main(__file__, tables, figures))
