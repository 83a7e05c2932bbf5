"""pb2_procgen/README.md's results, rebuilt from the data committed under pb2_procgen/results/ only.

    python pb2_procgen/results.py            # rewrite the README's generated blocks and the figures
    python pb2_procgen/results.py --check    # exit 1 naming each block that differs from the data

From which files:

- results/toy_seeds0-19.json, results/toy_seeds1000-1019.json: `python bench/pb2_toy.py --json F`
  (with `--first-seed 1000` for the second): per seed the best final Q of PB2, PBT and random search
  and each run's wall time -> the toy table and its sentence.
- results/toy_reference.json: `bench/pb2_toy_reference.py --json F` (the reference's explore step
  with GPy against ours, seeds 1000-1039, per seed) -> the reference table and its sentence.
- results/toy_ablations.json: `bench/pb2_toy_reference.py --ablations --json F` (ours with one
  departure from the reference undone at a time, seeds 1000-1039) -> the ablation table.
- ../bench/results/pb2_vs_ray.json: `python bench/pb2_vs_ray.py` (the side-by-side with Ray Tune)
  -> the Ray Tune sentence.
- results/cartpole/<method>_seed<N>/: one `train.py --env CartPole-v1` run each (config.json,
  metrics.csv, summary.json) -> the CartPole table, the paired tests, the schedule sentence,
  cartpole_methods_5seeds.png and cartpole_pb2_mult_schedules.png.
- results/exp3_variants.json: `python pb2_procgen/exp3_variants.py` -> the EXP3 table in
  Implementation details.
- results/bigfish_speed/: one `train.py --env bigfish` PPO iteration (config.json,
  metrics.csv, summary.json) -> the agent-speed sentence.
"""
from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE.parent) not in sys.path:   # run as a script: make common/ and pb2_procgen/ importable
    sys.path.insert(0, str(HERE.parent))

import numpy as np  # noqa: E402
from scipy import stats  # noqa: E402

from common.results import main, markdown_table, mean_se, read_csv, read_json  # noqa: E402

RESULTS = HERE / "results"
CARTPOLE = RESULTS / "cartpole"
BIGFISH = RESULTS / "bigfish_speed"
TOY_CUTOFF = 0.845       # the independent numpy PB2's mean in the spec

# method name in the tables, run-folder prefix, the train.py flags
CARTPOLE_METHODS = (("PB2-Rand", "pb2_rand", "PB2 random"), ("PB2-Mult", "pb2_mult", "PB2 exp3_dep"),
                    ("PBT", "pbt", "PBT random"), ("random search", "random_search", "random random"))
CARTPOLE_METRICS = (("best agent, final test return", "best", "final"),
                    ("best agent, mean over rounds", "best", "area"),
                    ("population mean, final", "mean", "final"),
                    ("population mean, mean over rounds", "mean", "area"))
CARTPOLE_PAIRS = (("PB2-Rand", "random search"), ("PB2-Mult", "random search"), ("PBT", "random search"),
                  ("PB2-Rand", "PBT"), ("PB2-Mult", "PBT"))
CAP = 500.0              # CartPole-v1's return cap

UNBACKED_FIGURES: dict[str, str] = {}


# --- formatting -----------------------------------------------------------------------------------
def pm(values, digits: int) -> str:
    mean, se = mean_se(values)
    return f"{mean:.{digits}f} ± {se:.{digits}f}"


def p_value(p: float) -> str:
    """Two significant digits, plain decimals down to 0.001."""
    return f"{p:#.2g}" if p >= 0.001 else f"{p:.1e}".replace("e-0", "e-")


def paired(a, b) -> tuple[float, int, float]:
    """(mean of a - b, seeds where a > b, paired t-test p)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    diff = a - b
    p = float(stats.ttest_rel(a, b).pvalue) if np.any(diff != diff[0]) else float("nan")
    return float(diff.mean()), int((diff > 0).sum()), p


# --- the PBT toy ----------------------------------------------------------------------------------
def best_achievable_q() -> float:
    """Q after 40 toy steps with h = (1, 1) throughout (toy.py's own update)."""
    from pb2_procgen.toy import ToyAgent

    agent = ToyAgent({"h0": 1.0, "h1": 1.0})
    agent.train_segment(40)
    return agent.test_return()


def toy_tables() -> dict[str, str]:
    low, high = read_json(RESULTS / "toy_seeds0-19.json"), read_json(RESULTS / "toy_seeds1000-1019.json")
    names = (("PB2", "PB2"), ("PBT", "PBT"), ("random", "random search (`--search random`)"))
    rows = []
    for key, label in names:
        wall = np.mean(low["wall_seconds"][key] + high["wall_seconds"][key])
        rows.append([label, pm(low["best_final_q"][key], 3), pm(high["best_final_q"][key], 3), f"{wall:.2f} s"])
    best = best_achievable_q()
    rows.append(["best achievable (h = (1, 1) throughout)", f"{best:.3f}", f"{best:.3f}", ""])
    table = markdown_table(["method", f"best final Q, seeds {low['seeds'][0]}–{low['seeds'][-1]} (mean ± s.e.)",
                            f"seeds {high['seeds'][0]}–{high['seeds'][-1]}", "wall per run"], rows)
    parts = []
    for data in (low, high):
        q = data["best_final_q"]
        _, wins, p = paired(q["PB2"], q["PBT"])
        _, wins_random, p_random = paired(q["PBT"], q["random"])
        parts.append((wins, len(data["seeds"]), p, wins_random, p_random, data["seeds"]))
    (w0, n0, p0, r0, pr0, s0), (w1, n1, p1, r1, pr1, s1) = parts
    sentence = (f"PB2 ends above PBT on {w0} of {n0} seeds {s0[0]}–{s0[-1]} (paired t-test p = {p_value(p0)}) "
                f"and on {w1} of {n1} seeds {s1[0]}–{s1[-1]} (p = {p_value(p1)}); PBT above random search on "
                f"{r0} of {n0} (p = {p_value(pr0)}) and {r1} of {n1} (p = {p_value(pr1)}).")
    return {"toy": table, "toy_stats": sentence}


def toy_reference_tables() -> dict[str, str]:
    data = read_json(RESULTS / "toy_reference.json")
    seeds = data["seeds"]
    ref, ours = (np.array(data["best_final_q"][k]) for k in ("reference", "ours"))
    rows = [[f"the reference's (`pbt.py` + `pb2_utils.py`, GPy {data['reference']['GPy']})", pm(ref, 4),
             f"{int((ref >= TOY_CUTOFF).sum())} of {len(ref)}"],
            ["ours (`train.py --env toy --search PB2`)", pm(ours, 4), f"{int((ours >= TOY_CUTOFF).sum())} of {len(ours)}"]]
    table = markdown_table(["PB2 explore step", f"best final Q, seeds {seeds[0]}–{seeds[-1]} (mean ± s.e.)",
                            f"runs ≥ {TOY_CUTOFF}"], rows)
    diff, wins, p = paired(ours, ref)
    ties = int((ours == ref).sum())
    sentence = (f"Ours minus the reference, paired by seed: {diff:+.4f} ± {mean_se(ours - ref)[1]:.4f}, ours "
                f"higher on {wins} of {len(seeds)} seeds{f' ({ties} ties)' if ties else ''}, paired t-test "
                f"p = {p_value(p)}.")
    return {"toy_reference": table + "\n\n" + sentence}


ABLATION_LABELS = {
    "default": "ours, as committed",
    "refit_pending_gp": "the pending GP refitted, as the reference (`REFIT_PENDING_GP = True`, detail 2)",
    "no_gp_restart": "no random restart of the GP fit (`GP_RESTARTS = 0`, detail 5)",
    "plain_random_starts": "ten plain random acquisition starts, no screening (`ACQ_CANDIDATES = 10`, detail 3)",
}


def toy_ablation_table() -> str:
    data = read_json(RESULTS / "toy_ablations.json")
    seeds, q = data["seeds"], data["best_final_q"]
    base = q["default"]
    rows = []
    for name, values in q.items():
        if name == "default":
            rows.append([ABLATION_LABELS[name], pm(values, 4), "—"])
        else:
            diff, wins, p = paired(values, base)
            rows.append([ABLATION_LABELS[name], pm(values, 4),
                         f"{diff:+.4f} ({wins} of {len(seeds)} seeds higher, p = {p_value(p)})"])
    return markdown_table(["our PB2", f"best final Q, seeds {seeds[0]}–{seeds[-1]} (mean ± s.e.)",
                           "− as committed (paired t-test)"], rows)


def ray_sentence() -> str:
    data = read_json(HERE.parent / "bench" / "results" / "pb2_vs_ray.json")
    per_seed, seeds = data["per_seed"], data["seeds"]

    def column(name, key):
        return [row[key] for row in per_seed[name]]

    return (f"Side by side with Ray Tune {data['versions']['ray']} on the same machine "
            f"({data['machine']['cores']}-core {' '.join(data['machine']['cpu'].split()[:2])}, "
            f"{data['machine']['date']}), with the same initial population per seed "
            f"(`python bench/pb2_vs_ray.py`, seeds {seeds[0]}–{seeds[-1]}): our PB2 "
            f"{pm(column('ours_PB2', 'best_q'), 3)} against Ray's PB2 {pm(column('ray_PB2', 'best_q'), 3)}, "
            f"our PBT {np.mean(column('ours_PBT', 'best_q')):.3f} against Ray's "
            f"{np.mean(column('ray_PBT', 'best_q')):.3f}, and {np.mean(column('ours_PB2', 'overhead_ms_per_round')):.1f} ms "
            f"of scheduler time per round against Ray's {np.mean(column('ray_PB2', 'overhead_ms_per_round')):.0f} ms "
            f"(PB2); details in [bench/README.md](../bench/README.md#pb2_vs_raypy).")


# --- CartPole -------------------------------------------------------------------------------------
def cartpole_runs() -> dict[str, list[Path]]:
    """method -> its run folders, by seed."""
    runs = {}
    for name, prefix, _ in CARTPOLE_METHODS:
        folders = sorted((f for f in CARTPOLE.glob(f"{prefix}_seed*") if f.is_dir()),
                         key=lambda p: int(p.name.rsplit("seed", 1)[1]))
        runs[name] = [f for f in folders if (f / "summary.json").is_file()]
    return runs


def cartpole_values() -> dict[str, dict]:
    """method -> seeds, per-seed per-round best / mean test return, wall seconds."""
    from pb2_procgen.plots import per_round, read_rows

    values = {}
    for name, folders in cartpole_runs().items():
        entry = {"seeds": [], "best": [], "mean": [], "wall": []}
        for folder in folders:
            _, best, mean = per_round(read_rows(folder), "test_return")
            entry["seeds"].append(read_json(folder / "config.json")["seed"])
            entry["best"].append(best)
            entry["mean"].append(mean)
            entry["wall"].append(read_json(folder / "summary.json")["wall_seconds"])
        values[name] = entry
    return values


def metric(entry: dict, curve: str, kind: str) -> list[float]:
    return [run[-1] if kind == "final" else float(np.mean(run)) for run in entry[curve]]


def cartpole_tables() -> dict[str, str]:
    values = cartpole_values()
    rows = []
    for name, _, flags in CARTPOLE_METHODS:
        entry = values[name]
        cells = [pm(metric(entry, curve, kind), 0) for _, curve, kind in CARTPOLE_METRICS]
        rows.append([f"{name} (`{flags}`)", len(entry["seeds"]), *cells, f"{np.mean(entry['wall']):.0f} s"])
    table = markdown_table(["method (`--search --cat_exp`)", "seeds", *[m for m, _, _ in CARTPOLE_METRICS],
                            "wall per run"], rows)
    seeds = values["random search"]["seeds"]
    test_rows = []
    for a, b in CARTPOLE_PAIRS:
        assert values[a]["seeds"] == values[b]["seeds"], (a, b)
        cells = []
        for _, curve, kind in CARTPOLE_METRICS:
            diff, wins, p = paired(metric(values[a], curve, kind), metric(values[b], curve, kind))
            cells.append(f"{diff:+.0f} ({wins} of {len(seeds)}, p = {p_value(p)})")
        test_rows.append([f"{a} − {b}", *cells])
    tests = markdown_table(["paired difference (seeds where higher, paired t-test p)",
                            *[m for m, _, _ in CARTPOLE_METRICS]], test_rows)
    significant, total = {}, 0
    for a, b in CARTPOLE_PAIRS:
        for label, curve, kind in CARTPOLE_METRICS:
            total += 1
            diff, _, p = paired(metric(values[a], curve, kind), metric(values[b], curve, kind))
            if p < 0.05:
                significant.setdefault((a, b, "above" if diff > 0 else "below"), []).append(label)
    found = sum(len(v) for v in significant.values())
    summary = ("Paired t-tests with p < 0.05: " + ("; ".join(
        f"{a} {side} {b} on {' and on '.join(labels)}" for (a, b, side), labels in significant.items())
        if significant else "none") + f". The other {total - found} of the {total} tests do not reach it.")
    at_cap = {name: sum(run[-1] >= CAP for run in values[name]["best"]) for name in values}
    cap = ("Runs whose best agent ends at the cap of 500: " +
           ", ".join(f"{name} {at_cap[name]} of {len(values[name]['seeds'])}" for name, _, _ in CARTPOLE_METHODS) + ".")
    return {"cartpole": table, "cartpole_tests": tests + "\n\n" + cap + "\n\n" + summary,
            "cartpole_schedules": schedules_sentence()}


def schedules_sentence() -> str:
    """Each agent's sequence of augmentation types in PB2-Mult seed 0 (a run of equal values once)."""
    folder = CARTPOLE / "pb2_mult_seed0"
    rows = read_csv(folder / "metrics.csv")
    agents = sorted({int(r["agent"]) for r in rows})
    parts = []
    for agent in agents:
        sequence = [r["aug_type"] for r in rows if int(r["agent"]) == agent]
        runs = [value for i, value in enumerate(sequence) if i == 0 or value != sequence[i - 1]]
        rounds = len(sequence)
        parts.append(f"agent {agent} " + (f"keeps `{runs[0]}` for all {rounds} rounds" if len(runs) == 1
                                          else "plays " + " → ".join(f"`{v}`" for v in runs)))
    lrs = [float(r["lr"]) for r in rows]
    return ("PB2-Mult's schedules (seed 0): " + "; ".join(parts) +
            f". Its agents' learning rates span {min(lrs):.1e} to {max(lrs):.1e} over the run:")


# --- EXP3 variants --------------------------------------------------------------------------------
def exp3_table() -> str:
    data = read_json(RESULTS / "exp3_variants.json")
    settings = data["settings"]
    names = list(next(iter(settings.values()))["variants"])
    header = ["TV.EXP3.M update"]
    for setting in settings:
        header += [f"{setting}: explorer's expected reward", "− ours (paired, ± s.e.)"]
    rows = []
    for name in names:
        row = [name]
        for entry in settings.values():
            base = np.array(entry["variants"][names[0]]["expected_reward"])
            values = np.array(entry["variants"][name]["expected_reward"])
            row.append(f"{values.mean():.4f}")
            diff = values - base
            if name == names[0]:
                row.append("—")
            elif not np.any(diff):
                row.append("identical")
            else:
                row.append(f"{diff.mean() + 0.0:+.4f} ± {mean_se(diff)[1]:.4f}".replace("-0.0000", "+0.0000"))
        rows.append(row)
    return markdown_table(header, rows) + f"\n\n({data['seeds']} paired seeds per cell; uniform choice scores 0.5.)"


# --- bigfish speed --------------------------------------------------------------------------------
def bigfish_sentence() -> str | None:
    if not (BIGFISH / "summary.json").is_file():
        return None
    config, summary = read_json(BIGFISH / "config.json"), read_json(BIGFISH / "summary.json")
    rows = read_csv(BIGFISH / "metrics.csv")
    agent = config["agent"]
    steps = sum(int(r["agent_steps"]) for r in rows if int(r["round"]) == max(int(x["round"]) for x in rows))
    wall = summary["wall_seconds"]
    rate = steps / wall
    return (f"One PPO/DrAC iteration on bigfish at the default {agent['num_envs']} envs × {agent['num_steps']} "
            f"steps ({steps} env steps, {config['agent']['epochs']} epochs of {agent['minibatches']} minibatches, "
            f"no test episodes) took {wall:.0f} s of wall time, {rate:.0f} env steps/s, on one torch thread while "
            f"the 2 cores were shared with about ten other processes (its CPU time was not recorded; alone it "
            f"would be several times faster). At this shared-core rate the paper's 25M steps per agent would take "
            f"{25e6 / rate / 86400:.0f} days per agent here.")


# --- the command ----------------------------------------------------------------------------------
def tables() -> dict[str, str]:
    out = {}
    out.update(toy_tables())
    out.update(toy_reference_tables())
    out["toy_ablations"] = toy_ablation_table()
    out["pb2_vs_ray"] = ray_sentence()
    out.update(cartpole_tables())
    out["exp3_variants"] = exp3_table()
    speed = bigfish_sentence()
    if speed is not None:
        out["bigfish_speed"] = speed
    return out


def figures(out_dir: Path) -> list[Path]:
    from pb2_procgen.plots import plot_methods, plot_schedules

    runs = [folder for folders in cartpole_runs().values() for folder in folders]
    methods, _ = plot_methods(runs, Path(out_dir) / "cartpole_methods_5seeds.png")
    schedules = plot_schedules(CARTPOLE / "pb2_mult_seed0", Path(out_dir) / "cartpole_pb2_mult_schedules.png")
    return [methods, schedules]


if __name__ == "__main__":
    sys.exit(main(__file__, tables, figures))
