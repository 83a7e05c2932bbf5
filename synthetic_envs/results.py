"""The README's results tables and figures, rebuilt from the data committed under
synthetic_envs/results/ only:

- `results/proxies/<run>/`: the best proxy of a NES run (`proxy.pt`), its `config.json`,
  `summary.json`, `metrics.csv` where kept, and its evaluations (`evaluation.json`, `eval10.json`,
  ...: every agent's seed, solved flag, steps to solve, final return, real steps and its test
  curve, compacted by `compact_evaluation` to the tests where the return changed);
- `results/mode1_feb2021/feb2021_m1_s<S>/`: the mode-1 NES runs in the February-2021 Fig. 5 setting
  (`configs/rn_cliff_fig5_feb2021.yaml`): config, summary, metrics and two evaluations each.

    python synthetic_envs/results.py            # rewrite the README's blocks and the figures
    python synthetic_envs/results.py --check    # compare only

Evaluations are written by `evaluate.py RUN [...] --name NAME` and then compacted into the
folder with `python -c "from synthetic_envs.results import compact_file; compact_file(SRC, DST)"`
(`compact_file(SRC, DST, curves=False)` for evaluations no figure draws as curves).
"""
from __future__ import annotations

import json
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.results import main, markdown_table, read_csv, read_json  # noqa: E402

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
PROXIES = RESULTS / "proxies"
RUNS = RESULTS / "mode1_feb2021"
CLIFF_RUNS = RESULTS / "cliff_runs"   # Cliff runs re-run on 2026-12-07 whose proxy is not committed
AUC_RUNS = RESULTS / "cliff_fig5_auc"   # the mixed-date AUC setting's NES runs (no proxies), re-run on 2026-12-07

UNBACKED_FIGURES = {
}


# --- data helpers ------------------------------------------------------------------------------

def compact_curve(curve: list) -> list:
    """An agent's test curve [(train steps, real train steps, return), ...] kept at its first
    test, every test whose return differs from the one before, and its last test: the held
    step function the plots draw (figures.curves_on_steps) is unchanged."""
    keep = [c for i, c in enumerate(curve) if i == 0 or i == len(curve) - 1 or c[2] != curve[i - 1][2]]
    return [list(c) for c in keep]


def compact_evaluation(report: dict, curves: bool = True) -> dict:
    """evaluate.py's report with each agent's curve compacted (or left out: `curves` False, for
    evaluations no figure draws as curves)."""
    out = json.loads(json.dumps(report))
    out.pop("figures", None)
    out["run_dir"] = Path(out["run_dir"]).name
    out["curves"] = ("compacted: tests where the return changed, plus the first and the last" if curves
                     else "left out: per-agent scores only")
    for groups in out["groups"].values():
        for summary in groups.values():
            if not out.get("vary_hp") and summary["agents"]:   # one hp for the group: kept once
                summary["hp"] = summary["agents"][0].get("hp")
                for agent in summary["agents"]:
                    agent.pop("hp", None)
            for agent in summary["agents"]:
                if curves:
                    agent["curve"] = compact_curve(agent["curve"])
                else:
                    agent.pop("curve")
    return out


def compact_file(src, dst, curves: bool = True) -> None:
    Path(dst).write_text(json.dumps(compact_evaluation(read_json(src), curves), separators=(",", ":")) + "\n")


def run_dir(run: str) -> Path:
    """A committed run folder: with its proxy under results/proxies/, else under results/cliff_runs/."""
    return PROXIES / run if (PROXIES / run).is_dir() else CLIFF_RUNS / run


def evaluation(run: str, name: str = "evaluation", root: Path | None = None) -> dict:
    return read_json((root / run if root else run_dir(run)) / f"{name}.json")


def group(report: dict, name: str, agent: str | None = None) -> dict:
    return report["groups"][agent or report["agents"][0]][name]


def pct(fraction: float) -> str:
    return f"{100 * fraction:.0f}%"


def ret(value: float) -> str:
    return f"{value:.1f}".replace("-", "−")


def steps(value) -> str:
    return "–" if value is None else f"{value:,.0f}"


def ratio(a, b) -> str:
    return "–" if a is None or not b else f"{a / b:.2f}"


# --- Cliff reward network, mode 2 ---------------------------------------------------------------

def _seeded(prefix: str) -> list[Path]:
    """Committed proxy folders `<prefix><seed>` that have a summary and an evaluation, by seed."""
    runs = [d for root in (PROXIES, CLIFF_RUNS) for d in root.glob(f"{prefix}*") if d.name[len(prefix):].isdigit()
            and (d / "summary.json").is_file() and (d / "evaluation.json").is_file()]
    return sorted(runs, key=lambda d: int(d.name[len(prefix):]))


def cliff_rn_mode2() -> str:
    rows = []
    for d in _seeded("cliff_rn_mode2_s"):
        summary, report = read_json(d / "summary.json"), evaluation(d.name)
        proxy, base, count = (group(report, g) for g in ("proxy", "baseline", "intrinsic"))
        rows.append([summary["seed"], f"{summary['wall_seconds']:.0f} s", f"{summary['env_steps'] / 1e6:.1f}M",
                     steps(proxy["steps_to_solve"]), pct(proxy["solved_fraction"]), ret(proxy["final_return"]),
                     f"{steps(base['steps_to_solve'])} ({pct(base['solved_fraction'])})",
                     f"**{ratio(proxy['steps_to_solve'], base['steps_to_solve'])}**",
                     f"{steps(count['steps_to_solve'])} ({pct(count['solved_fraction'])})"])
    return markdown_table(["seed", "NES wall", "NES real steps", "RN agents: steps to solve", "solved",
                           "last-10 return", "plain Q-learning", "steps ratio", "count-based (mode −1)"], rows)


def cliff_rn_mode2_summary() -> str:
    reports = [evaluation(d.name) for d in _seeded("cliff_rn_mode2_s")]
    proxies = [group(r, "proxy") for r in reports]
    base, count = group(reports[0], "baseline"), group(reports[0], "intrinsic")
    ratios = [p["steps_to_solve"] / group(r, "baseline")["steps_to_solve"] for p, r in zip(proxies, reports)]
    solving = sum(p["solved_fraction"] == 1 for p in proxies)
    optimal = sum(round(p["final_return"], 1) == -12.0 for p in proxies)
    return (f"On the {len(reports)} seeds the learned RN makes fresh Q-learning agents solve the Cliff in "
            f"{min(ratios):.2f}–{max(ratios):.2f}× the real steps of plain Q-learning "
            f"({min(p['steps_to_solve'] for p in proxies):,.0f}–{max(p['steps_to_solve'] for p in proxies):,.0f} vs "
            f"{steps(base['steps_to_solve'])}; the paper's plain Q-learning needs ≈ 1,400); every agent solves on "
            f"{solving} of the {len(reports)} seeds and the agents' last-10 mean is the optimal path's −12.0 on "
            f"{optimal}. The count-based bonus (β 0.1, the reference's value) needs "
            f"{steps(count['steps_to_solve'])} ({ratio(count['steps_to_solve'], base['steps_to_solve'])}× plain).")


SETTINGS = (("mir", "the reference's estimator: mirrored, 1 agent per score, ε 0.1"),
            ("anti", "antithetic, 2 agents per score, ε 0.1"),
            ("mode2", "**antithetic, 2 agents per score, ε 0.01 (`configs/rn_cliff.yaml`)**"))


def cliff_rn_nes_settings() -> str:
    rows = []
    for key, label in SETTINGS:
        prefix = "cliff_rn_mode2_s" if key == "mode2" else f"cliff_rn_settings_{key}_s"
        cells = []
        for seed in (0, 1, 2):
            report = evaluation(f"{prefix}{seed}")
            cells.append((ratio(group(report, "proxy")["steps_to_solve"], group(report, "baseline")["steps_to_solve"]),
                          steps(group(report, "proxy")["steps_to_solve"])))
        rows.append([label, ", ".join(c[0] for c in cells) + " (" + ", ".join(c[1] for c in cells) + " steps)"])
    return markdown_table(["NES settings", "steps ratio (seeds 0, 1, 2)"], rows)


MODES = ((1, "potential, exclusive"), (2, "potential, additive"), (3, "potential + info, exclusive"),
         (4, "potential + info, additive"), (5, "non-potential, exclusive"), (6, "non-potential, additive"),
         (7, "non-potential + info, exclusive"), (8, "non-potential + info, additive"),
         (101, "w·info, exclusive"), (102, "r + w·info"))


def cliff_rn_modes() -> str:
    rows = []
    base = None
    for mode, words in MODES:
        run = f"cliff_rn_mode{mode}_s0"
        if not (run_dir(run) / "evaluation.json").is_file():
            rows.append([f"{mode} {words}", "lost with its machine, not re-run in time", "", "", "", "", ""])
            continue
        summary, report = read_json(run_dir(run) / "summary.json"), evaluation(run)
        p, base = group(report, "proxy"), group(report, "baseline")
        rows.append([f"{mode} {words}", f"{summary['wall_seconds']:.0f} s", f"{summary['env_steps'] / 1e6:.1f}M",
                     steps(p["steps_to_solve"]), pct(p["solved_fraction"]), ret(p["final_return"]),
                     ratio(p["steps_to_solve"], base["steps_to_solve"])])
    count = group(evaluation("cliff_rn_mode2_s0"), "intrinsic")
    rows.append(["0 plain Q-learning", "", "", steps(base["steps_to_solve"]), pct(base["solved_fraction"]),
                 ret(base["final_return"]), "1"])
    rows.append(["−1 count-based", "", "", steps(count["steps_to_solve"]), pct(count["solved_fraction"]),
                 ret(count["final_return"]), ratio(count["steps_to_solve"], base["steps_to_solve"])])
    return markdown_table(["mode", "NES wall", "NES real steps", "RN agents: steps to solve", "solved",
                           "last-10 return", "steps ratio"], rows)


def cliff_rn_modes_summary() -> str:
    present = [m for m, _ in MODES if (run_dir(f"cliff_rn_mode{m}_s0") / "evaluation.json").is_file()]

    def facts(mode):
        report = evaluation(f"cliff_rn_mode{mode}_s0")
        p, b = group(report, "proxy"), group(report, "baseline")
        return p, (p["steps_to_solve"] / b["steps_to_solve"] if p["steps_to_solve"] is not None else None)
    additive = {m: facts(m) for m in (2, 4, 6, 8) if m in present}
    exclusive = {m: facts(m) for m in (1, 3, 5, 7, 101) if m in present}
    r102 = facts(102) if 102 in present else ({"solved_fraction": float("nan")}, None)
    ratios = [r for _, r in additive.values() if r is not None]
    solved_exclusive = [m for m, (p, _) in exclusive.items() if p["solved_fraction"] > 0]
    finals = ", ".join(f"{m}: {ret(p['final_return'])}" for m, (p, _) in exclusive.items())
    return (f"The additive modes {', '.join(map(str, additive))} make Q-learning solve in {min(ratios):.2f}–{max(ratios):.2f}× the real "
            f"steps of plain Q-learning ({', '.join(pct(p['solved_fraction']) for p, _ in additive.values())} of the "
            + (f"agents solving); mode 102 gives {'–' if r102[1] is None else f'{r102[1]:.2f}'}× "
               f"({pct(r102[0]['solved_fraction'])} solving). " if 102 in present else "agents solving). ")
            + f"Of the exclusive modes ({', '.join(map(str, exclusive))}), "
            + (f"{len(solved_exclusive)} ({', '.join(map(str, solved_exclusive))}) trained any solving agent"
               if solved_exclusive else "none trained a solving agent")
            + f" in 60 iterations (their agents' last-10 means: {finals}).")


def cliff_plain_ties() -> str:
    first = group(evaluation("cliff_rn_mode2_s0"), "baseline")
    last_report = evaluation("cliff_rn_mode2_s0", "evaluation_last_ties")
    last, rn_last = group(last_report, "baseline"), group(last_report, "proxy")
    return (f"Plain Q-learning's steps to solve depend on how a greedy step breaks ties between equal "
            f"Q-values (all of them at the start): with ties to the first action (torch ≥ 1.7, numpy; "
            f"this folder's default) the {first['n_agents']} agents need {steps(first['steps_to_solve'])} "
            f"real steps ({pct(first['solved_fraction'])} solved), with ties to the last action (torch "
            f"≤ 1.6 on the CPU, which the original ran on; `--set agent_hp.argmax_ties=last`, "
            f"`evaluate.py --argmax-ties last`) {steps(last['steps_to_solve'])} "
            f"({pct(last['solved_fraction'])}); the paper shows ≈ 1,400. The seed-0 RN's agents need "
            f"{steps(rn_last['steps_to_solve'])} with last-action ties (steps ratio "
            f"{ratio(rn_last['steps_to_solve'], last['steps_to_solve'])}).")


def cliff_rn_transfer() -> str:
    transfer, sarsa = evaluation("cliff_rn_mode2_s0", "transfer"), evaluation("cliff_rn_mode2_s0", "sarsa")
    ql = {g: group(transfer, g, "ql") for g in ("proxy", "baseline", "intrinsic")}
    sv = {g: group(transfer, g, "sarsa") for g in ("proxy", "baseline", "intrinsic")}
    sf = {g: group(sarsa, g, "sarsa") for g in ("proxy", "baseline", "intrinsic")}
    n = ql["proxy"]["n_agents"]
    return (f"**Transfer** (the seed-0 RN, `evaluate.py RUN --agents ql,sarsa --vary-hp --intrinsic --name "
            f"transfer`, α and ε sampled per agent, {n} agents per group): Q-learning solves in "
            f"{steps(ql['proxy']['steps_to_solve'])} real steps vs {steps(ql['baseline']['steps_to_solve'])} on "
            f"the real env ({ratio(ql['proxy']['steps_to_solve'], ql['baseline']['steps_to_solve'])}×) and "
            f"{steps(ql['intrinsic']['steps_to_solve'])} with the count-based bonus "
            f"({pct(ql['proxy']['solved_fraction'])}, {pct(ql['baseline']['solved_fraction'])} and "
            f"{pct(ql['intrinsic']['solved_fraction'])} of the agents solving). SARSA, which the RN never "
            f"saw, does **not** transfer under the original's rule: {pct(sv['proxy']['solved_fraction'])} of "
            f"the SARSA agents with the RN end solved (last-10 mean {ret(sv['proxy']['final_return'])}) vs "
            f"{pct(sv['baseline']['solved_fraction'])} on the real env ({ret(sv['baseline']['final_return'])}) "
            f"and {pct(sv['intrinsic']['solved_fraction'])} with the count-based bonus "
            f"({ret(sv['intrinsic']['final_return'])}). With fixed hyperparameters (`--agents sarsa "
            f"--intrinsic --name sarsa`, ε 0.1) the SARSA agents end solved in "
            f"{pct(sf['proxy']['solved_fraction'])} (RN), {pct(sf['baseline']['solved_fraction'])} (plain) and "
            f"{pct(sf['intrinsic']['solved_fraction'])} (count-based) of the cases; last-10 means "
            f"{ret(sf['proxy']['final_return'])}, {ret(sf['baseline']['final_return'])}, "
            f"{ret(sf['intrinsic']['final_return'])}.")


# --- Cliff RN under the reference's settings ------------------------------------------------------

def _eval_cells(report: dict) -> list[str]:
    p, b = group(report, "proxy"), group(report, "baseline")
    solved = [a for a in p["agents"] if a["solved"]]
    return [f"{len(solved)} of {p['n_agents']}", ret(p["final_return"]),
            steps(p["steps_to_solve"]), f"{steps(b['steps_to_solve'])} ({pct(b['solved_fraction'])})"]


def cliff_rn_fig5_auc_proxies() -> str:
    rows = []
    for run in ("cliff_rn_fig5_mode1_s248", "cliff_rn_fig5_mode2_s200"):
        summary = read_json(PROXIES / run / "summary.json")
        for name, label in (("eval10", "spec's (ε 0.1, 500 episodes)"), ("eval10_ref", "reference's (ε 0.01, 200)")):
            rows.append([f"mode {summary['mode']}, seed {summary['seed']}", label, *_eval_cells(evaluation(run, name))])
    return markdown_table(["committed proxy", "evaluation", "agents solved", "last-10 return",
                           "steps to solve", "plain Q-learning (same seeds)"], rows)


def auc_runs(mode: int) -> list[dict]:
    """The mixed-date AUC setting's finished NES runs of one mode, by seed, each with its metrics
    and the evaluations committed beside it (only the best-ranked mode-1 runs are evaluated)."""
    runs = []
    for d in AUC_RUNS.glob(f"auc_m{mode}_s*"):
        if not (d / "summary.json").is_file():
            continue
        run = {"dir": d, "summary": read_json(d / "summary.json"), "metrics": read_csv(d / "metrics.csv"), "evals": {}}
        for name in ("eval10", "eval10_ref"):
            if (d / f"{name}.json").is_file():
                run["evals"][name] = read_json(d / f"{name}.json")
        runs.append(run)
    return sorted(runs, key=lambda r: r["summary"]["seed"])


def _and(items: list[str]) -> str:
    """a, b and c"""
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def _seed_list(seeds: list[int]) -> str:
    """0–4, 200–214: runs of consecutive seeds joined."""
    spans, start = [], None
    for i, s in enumerate(seeds):
        start = s if start is None else start
        if i + 1 == len(seeds) or seeds[i + 1] != s + 1:
            spans.append(f"{start}" if start == s else f"{start}–{s}")
            start = None
    return ", ".join(spans)


def _auc_row(label: str, runs: list[dict], name: str, first_row: bool, plain_steps: bool) -> list[str]:
    evaluated = [r for r in runs if name in r["evals"]]
    proxies = [group(r["evals"][name], "proxy") for r in evaluated]
    plain = group(evaluated[0]["evals"][name], "baseline")
    agents = [a for g in proxies for a in g["agents"]]
    solved = [a for a in agents if a["solved"]]
    last10 = float(np.mean([a["final_return"] for a in agents]))
    if plain_steps:      # every run solves: the range of the runs' mean steps, and as a share of plain's
        per_run = [g["steps_to_solve"] for g in proxies]
        base = plain["steps_to_solve"]
        steps_cell = (f"{min(per_run):,.0f}–{max(per_run):,.0f} "
                      f"(**{min(per_run) / base:.2f}–{max(per_run) / base:.2f}×**)")
    else:
        with_solver = [g["steps_to_solve"] for g in proxies if g["steps_to_solve"] is not None]
        steps_cell = "–" if not with_solver else (
            _and([f"{v:,.0f}" for v in with_solver])
            + (" (the one run with a solver)" if len(with_solver) == 1
               else f" (the {len(with_solver)} runs with a solver)"))
    walls = [r["summary"]["wall_seconds"] for r in runs]
    real = [r["summary"]["env_steps"] for r in runs]
    seeds = [r["summary"]["seed"] for r in runs]
    return [label, f"{len(runs)} (seeds {_seed_list(seeds)})" if first_row else "same",
            f"{np.mean(walls):.0f} s, {np.mean(real) / 1e6:.1f}M" if first_row else "",
            f"{len(agents):,}", f"**{100 * len(solved) / len(agents):.1f}%** ({len(solved)})",
            ret(last10), steps_cell, f"{steps(plain['steps_to_solve'])} ({pct(plain['solved_fraction'])})"]


def cliff_rn_fig5_auc() -> str:
    rows = []
    for mode, what in ((1, "mode 1"), (2, "mode 2 (control)")):
        runs = auc_runs(mode)
        for i, (name, label) in enumerate((("eval10", "spec's evaluation (ε 0.1, 500 episodes)"),
                                            ("eval10_ref", "the reference's (ε 0.01, 200 episodes)"))):
            rows.append(_auc_row(f"{what}, {label}", runs, name, i == 0, plain_steps=mode == 2))
    return markdown_table(["mixed-date AUC setting (`rn_cliff_fig5.yaml`)", "NES runs", "NES wall, real steps per run",
                           "agents (10 per evaluated run)", "solved", "last-10 return", "steps to solve",
                           "plain Q-learning"], rows)


def _behaviour(report: dict) -> str:
    """What an RN's evaluation agents do at their last test: all wander (−50: 50 steps without
    reaching the goal), most fall into the cliff (below −50), or a mix."""
    finals = [a["final_return"] for a in group(report, "proxy")["agents"]]
    if all(f == -50 for f in finals):
        return "wander"
    return "cliff" if sum(f < -50 for f in finals) > len(finals) / 2 else "mixed"


def wander_score(run: dict) -> float:
    """The AUC score of agents that only wander (final test return −50), before their steps:
    −unsolved_weight × (threshold + 50). A score above it means a final return above −50 (steps
    are subtracted too); for one agent, whose return is a whole number and whose 100 episodes take
    at most 5,000 steps, it means the agent reached the goal."""
    config = read_json(run["dir"] / "config.json")
    return -config["unsolved_weight"] * (config["nes_threshold"] + 50)


def ret_int(value: float) -> str:
    return f"{value:,.0f}".replace("-", "−")


def cliff_rn_fig5_auc_summary() -> str:
    m1, m2 = auc_runs(1), auc_runs(2)
    iterations = sum(len(r["metrics"]) for r in m1)
    above = sum(any(float(x["proxy_score"]) > wander_score(r) for x in r["metrics"]) for r in m1)
    found = [[x for x in r["metrics"] if float(x["best_worker_score"]) > wander_score(r)] for r in m1]
    evaluated = [r for r in m1 if len(r["evals"]) == 2]
    kinds = {name: [_behaviour(r["evals"][name]) for r in evaluated] for name in ("eval10", "eval10_ref")}
    mixed = kinds["eval10"].count("mixed")
    solvers = [sum(a["solved"] for a in group(r["evals"]["eval10"], "proxy")["agents"]) for r in evaluated]
    with_solvers = [n for n in solvers if n]
    learned_m2 = sum(group(r["evals"]["eval10"], "proxy")["solved_fraction"] == 1 for r in m2 if r["evals"])
    solver_text = ("" if not with_solvers else
                   f" ({len(with_solvers)} RNs have solvers: {_and([str(n) for n in with_solvers])} of their 10 "
                   f"agents)")
    return (f"In {'none' if not above else above} of the {len(m1)} mode-1 runs did the current RN's score rise "
            f"above {ret_int(wander_score(m1[0]))} (its 16 agents, one per worker, better than wandering on average) "
            f"at any of the 50 iterations; in {sum(map(len, found))} of the {iterations:,} iterations "
            f"({sum(bool(f) for f in found)} runs) one perturbation's agent reached the goal, and the mirrored "
            f"update did not keep it. Of the {len(evaluated)} runs' RNs, {kinds['eval10'].count('wander')} make "
            f"every evaluation agent wander (−50), {kinds['eval10'].count('cliff')} send most of them into the "
            f"cliff and {mixed} mix{'es' if mixed == 1 else ''} the two"
            f"{solver_text}; under the reference's evaluation {kinds['eval10_ref'].count('wander')} make every "
            f"agent wander, {kinds['eval10_ref'].count('cliff')} send most into the cliff and "
            f"{kinds['eval10_ref'].count('mixed')} mix the two. The same setting learns "
            f"mode 2 in {learned_m2} of {len(m2)} runs (every agent solving).")


def feb2021_runs() -> list[Path]:
    """The committed February-2021 mode-1 runs, by seed (a run stopped for time has no summary.json)."""
    return sorted((d for d in RUNS.glob("feb2021_m1_s*") if (d / "metrics.csv").is_file()),
                  key=lambda d: read_json(d / "config.json")["seed"])


def _run_facts(d: Path) -> dict:
    """Seed, iterations, wall and real steps of a run, from its summary or (stopped) its metrics."""
    metrics = read_csv(d / "metrics.csv")
    facts = {"seed": read_json(d / "config.json")["seed"], "metrics": metrics,
             "iterations": len(metrics), "wall_seconds": float(metrics[-1]["wall_seconds"]),
             "env_steps": int(metrics[-1]["env_steps"]), "finished": (d / "summary.json").is_file(),
             "evals": {}}
    for name in ("eval10", "eval10_ref"):
        if (d / f"{name}.json").is_file():
            facts["evals"][name] = group(evaluation(d.name, name, RUNS), "proxy")
            facts.setdefault("plain", {})[name] = group(evaluation(d.name, name, RUNS), "baseline")
    return facts


def _eval_cell(facts: dict, name: str) -> str:
    g = facts["evals"].get(name)
    if g is None:
        return "not evaluated"
    return f"{sum(a['solved'] for a in g['agents'])} of {g['n_agents']}, {ret(g['final_return'])}"


def cliff_rn_fig5_feb2021() -> str:
    rows = []
    for d in feb2021_runs():
        f = _run_facts(d)
        proxy = [float(r["proxy_score"]) for r in f["metrics"]]
        best = [float(r["best_worker_score"]) for r in f["metrics"]]
        rows.append([f["seed"], f"{f['iterations']}" + ("" if f["finished"] else " (stopped for time)"),
                     f"{f['wall_seconds']:.0f} s", f"{f['env_steps'] / 1e6:.1f}M",
                     f"{ret(max(proxy))} (first at {proxy.index(max(proxy))}) / {ret(min(proxy))}",
                     f"{ret(max(best))} ({sum(b > -50 for b in best)})",
                     _eval_cell(f, "eval10"), _eval_cell(f, "eval10_ref")])
    return markdown_table(["seed", "iterations", "NES wall", "NES real steps",
                           "current RN's agents, mean final return: highest (first iteration with it: the evaluated RN) / lowest",
                           "best perturbation's agent: highest (iterations above −50)",
                           "spec's evaluation: solved, last-10", "reference's evaluation: solved, last-10"], rows)


def cliff_rn_fig5_feb2021_summary() -> str:
    facts = [_run_facts(d) for d in feb2021_runs()]
    if not facts:
        return "No run in this setting is committed yet."
    finished = [f for f in facts if f["finished"]]
    evaluated = [f for f in facts if len(f["evals"]) == 2]
    solved = {name: sum(sum(a["solved"] for a in f["evals"][name]["agents"]) for f in evaluated)
              for name in ("eval10", "eval10_ref")}
    agents = {name: sum(f["evals"][name]["n_agents"] for f in evaluated) for name in ("eval10", "eval10_ref")}
    plain = evaluated[0]["plain"]
    above = sum(any(float(r["proxy_score"]) > -50 for r in f["metrics"]) for f in facts)
    perturbed = sum(float(r["best_worker_score"]) > -50 for f in facts for r in f["metrics"])
    iterations = sum(f["iterations"] for f in facts)
    walls = [f["wall_seconds"] for f in finished]
    stopped = [f for f in facts if not f["finished"]]
    stopped_text = "" if not stopped else (
        "; " + ", ".join(f"seed {f['seed']} stopped for time after {f['iterations']}" for f in stopped)
        + " iterations, not evaluated")
    learned = [f for f in facts if max(float(r["proxy_score"]) for r in f["metrics"]) >= -20]
    learned_text = ""
    for f in learned:
        first = next(r for r in f["metrics"] if float(r["proxy_score"]) >= -20)
        found = next(r for r in f["metrics"] if float(r["best_worker_score"]) > -50)
        learned_text += (f" Seed {f['seed']}'s search found the goal: a perturbation's agent first did better than "
                         f"wandering at iteration {found['iteration']} ({ret(float(found['best_worker_score']))}), "
                         f"and from iteration {first['iteration']} the current RN's agents reached the goal "
                         f"({ret(float(first['proxy_score']))} there; {ret(float(f['metrics'][-1]['proxy_score']))} "
                         f"at the last iteration).")
        for name, label in (("eval10", "spec's"), ("eval10_ref", "reference's")):
            g, b = f["evals"].get(name), f.get("plain", {}).get(name)
            if g is not None:
                learned_text += (f" Under the {label} evaluation {sum(a['solved'] for a in g['agents'])} of "
                                 f"{g['n_agents']} of its agents solve (last-10 mean {ret(g['final_return'])}, "
                                 f"{steps(g['steps_to_solve'])} real steps to solve vs plain Q-learning's "
                                 f"{steps(b['steps_to_solve'])}: {ratio(g['steps_to_solve'], b['steps_to_solve'])}×).")
    return (f"{len(facts)} NES runs (seeds {', '.join(str(f['seed']) for f in facts)}; {len(finished)} ran "
            f"all 200 iterations in {min(walls):,.0f}–{max(walls):,.0f} s of NES wall each, the two cores "
            f"shared with other runs{stopped_text}). In {above} of the {len(facts)} runs did the "
            f"current RN's 16 agents (one per worker) average above −50, what wandering for 50 steps "
            f"gives, at any iteration; in {perturbed} of their {iterations:,} iterations did any "
            f"perturbation's agent do better than wandering. Evaluated with 10 fresh Q-learning agents on "
            f"each of the {len(evaluated)} finished runs' best RN (the run's last-action ties), "
            f"{solved['eval10']} of {agents['eval10']} agents solve under the spec's evaluation (ε 0.1, 500 "
            f"episodes; plain Q-learning with the same seeds and ties: {steps(plain['eval10']['steps_to_solve'])} "
            f"steps, {pct(plain['eval10']['solved_fraction'])} solved) and {solved['eval10_ref']} of "
            f"{agents['eval10_ref']} under the reference's (ε 0.01, 200 episodes; plain: "
            f"{steps(plain['eval10_ref']['steps_to_solve'])} steps, {pct(plain['eval10_ref']['solved_fraction'])})."
            + learned_text)


# --- Cliff SE -----------------------------------------------------------------------------------

def cliff_se() -> str:
    rows = []
    for d in _seeded("cliff_se_s"):
        summary, report = read_json(d / "summary.json"), evaluation(d.name)
        p, b = group(report, "proxy"), group(report, "baseline")
        rows.append([summary["seed"], f"{summary['wall_seconds']:.0f} s", f"{summary['env_steps'] / 1e3:.0f}k",
                     f"{summary['iterations']}" + (" (solved, stopped)" if summary["solved"] else ""),
                     f"**{ret(p['final_return'])}**", f"**{pct(p['solved_fraction'])}**",
                     f"{steps(b['steps_to_solve'])} real steps, {pct(b['solved_fraction'])}"])
    return markdown_table(
        ["seed", "NES wall", "NES real steps (all tests)", "iterations", "SE agents on the real Cliff",
         "solved with 0 real steps", "plain Q-learning (same seeds)"], rows)


# --- CartPole and Acrobot SEs -----------------------------------------------------------------

def _first_at(metrics: list[dict], threshold: float):
    return next((r for r in metrics if float(r["proxy_score"]) >= threshold), None)


def cartpole_se_seeds() -> str:
    rows = []
    for seed in (0, 1, 2):
        metrics = read_csv(PROXIES / f"cartpole_se_s{seed}" / "metrics.csv")
        first = _first_at(metrics, 195)
        best = max(metrics, key=lambda r: float(r["proxy_score"]))
        rows.append([seed,
                     f"iteration {first['iteration']} ({float(first['proxy_score']):.1f})" if first else "not reached",
                     f"{float(first['wall_seconds']):,.0f} s" if first else "–",
                     f"{int(first['env_steps']) / 1e6:.2f}M" if first else "–",
                     f"{float(best['proxy_score']):.1f} ({best['iteration']})", len(metrics)])
    return markdown_table(["seed", "current SE first ≥ 195", "NES wall until then", "real steps until then",
                           "best proxy (iteration)", "iterations run"], rows)


def _progress(metrics: list[dict], iterations: list[int], mark: dict, digits_k: bool) -> str:
    by_it = {int(r["iteration"]): r for r in metrics}
    rows = []
    for it in iterations:
        r = by_it[it]
        score = ret(float(r["proxy_score"]))
        rows.append([it, f"{int(r['env_steps']) / 1e3:.0f}k" if digits_k else f"{int(r['env_steps']) / 1e6:.2f}M",
                     f"**{score}** ({mark[it]})" if it in mark else score,
                     ret(float(r["best_worker_score"])), ret(float(r["mean_worker_score"]))])
    return rows


def cartpole_se_s0_progress() -> str:
    metrics = read_csv(PROXIES / "cartpole_se_s0" / "metrics.csv")
    first = int(_first_at(metrics, 195)["iteration"])
    last = int(metrics[-1]["iteration"])
    rows = _progress(metrics, [0, 10, 20, 30, first, last], {first: "first ≥ 195"}, True)
    return markdown_table(["iteration", "real steps so far", "current SE's agents on real CartPole",
                           "best perturbation", "mean perturbation"], rows)


def acrobot_se_progress() -> str:
    metrics = read_csv(PROXIES / "acrobot_se_s0" / "metrics.csv")
    first = int(_first_at(metrics, -100)["iteration"])
    last = int(metrics[-1]["iteration"])
    rows = _progress(metrics, [0, 10, 18, 37, 48, first, last], {first: "solved, best"}, False)
    return markdown_table(["iteration", "real steps so far", "current SE's agents on real Acrobot",
                           "best perturbation", "mean perturbation"], rows)


def acrobot_se_solved() -> str:
    metrics = read_csv(PROXIES / "acrobot_se_s0" / "metrics.csv")
    first = _first_at(metrics, -100)
    return (f"**solved at iteration {first['iteration']} (the {int(first['iteration']) + 1}th), after "
            f"{float(first['wall_seconds']):,.0f} s of NES wall and {int(first['env_steps']) / 1e6:.2f}M real "
            f"steps** (all of them test episodes), with a current-SE score of {ret(float(first['proxy_score']))}; "
            f"the run was stopped after {len(metrics)} iterations ({float(metrics[-1]['wall_seconds']):,.0f} s).")


def acrobot_se_evaluation() -> str:
    """The iteration-53 Acrobot SE's 20-agent evaluation (`evaluate.py RUN --n-agents 20 --early-stop
    --name eval20`): SE agents are solved when their final real test reaches the threshold, real-env
    agents when the mean of their last 10 tests does (early stop), so their final test may be below it."""
    report = evaluation("acrobot_se_s0", "eval20")
    p, b = group(report, "proxy"), group(report, "baseline")
    threshold = f"{report['threshold']:.0f}".replace("-", "−")

    def finals(g: dict) -> list[float]:
        return [a["final_return"] for a in g["agents"]]

    def spread(g: dict, bold: bool) -> str:
        mean = f"**{ret(g['final_return'])}**" if bold else ret(g["final_return"])
        return f"{mean} ± {g['final_return_std']:.1f} (median {ret(statistics.median(finals(g)))})"

    at_threshold = sum(f >= report["threshold"] for f in finals(b)) / b["n_agents"]
    rows = [["trained on the SE", f"**{steps(p['steps_to_solve'])}**",
             f"{pct(p['solved_fraction'])} (final test ≥ {threshold})", spread(p, True)],
            ["trained on real Acrobot", f"{steps(b['steps_to_solve'])} (until solved)",
             f"{pct(b['solved_fraction'])} by the rule; {pct(at_threshold)} with a final test ≥ {threshold}",
             spread(b, False)]]
    return markdown_table(["group", "real training steps", "solved", "real return, final 10-episode test"], rows)


def cartpole_se_evaluation() -> str:
    """The seed-0 and seed-2 CartPole SEs' 20-agent evaluations (`evaluate.py RUN --n-agents 20
    --early-stop --name eval20`, evaluation seeds 1000+): SE agents are solved when their final real
    test reaches 195; real-env agents stop once the mean of their last 10 tests does (the 10-test
    rule), so their final test may be below it. The real-env agents are the same 20 in both files
    (same seeds and hyperparameters); the row is read from seed 0's."""
    reports = {seed: evaluation(f"cartpole_se_s{seed}", "eval20") for seed in (0, 2)}
    threshold = reports[0]["threshold"]

    def spread(g: dict, bold: bool) -> str:
        mean = f"**{g['final_return']:.2f}**" if bold else f"{g['final_return']:.2f}"
        return f"{mean} ± {g['final_return_std']:.2f}"

    rows = []
    for seed, report in reports.items():
        p = group(report, "proxy")
        rows.append([f"trained on the seed-{seed} SE", f"**{steps(p['steps_to_solve'])}**",
                     pct(p["solved_fraction"]), spread(p, True)])
    b = group(reports[0], "baseline")
    below = sorted(a["final_return"] for a in b["agents"] if a["final_return"] < threshold)
    at_threshold = 1 - len(below) / b["n_agents"]
    missed = "" if not below else (" (one agent ≈ " + f"{below[0]:.0f})" if len(below) == 1 else
                                  f" ({len(below)} agents: " + ", ".join(f"{v:.1f}" for v in below) + ")")
    rows.append(["trained on real CartPole", f"{steps(b['steps_to_solve'])} (until solved)",
                 f"{pct(at_threshold)}{missed}; {pct(b['solved_fraction'])} by the 10-test rule",
                 spread(b, False)])
    return markdown_table(["group", "real training steps", "solved (final test ≥ 195)",
                           "real return, final 10-episode test"], rows)


def cartpole_se_transfer() -> str:
    """The seed-0 SE's transfer evaluation (`evaluate.py RUN --agents dueling_ddqn,td3_discrete
    --n-agents 5 --early-stop --name transfer`); ± is the standard deviation over the agents."""
    report = evaluation("cartpole_se_s0", "transfer")
    names = {"dueling_ddqn": "Dueling DDQN", "td3_discrete": "discrete TD3 (Gumbel-softmax)"}
    rows = []
    for agent in report["agents"]:
        p, b = group(report, "proxy", agent), group(report, "baseline", agent)
        se = f"{pct(p['solved_fraction'])}, {p['final_return']:.1f} ± {p['final_return_std']:.1f}"
        rows.append([names.get(agent, agent), f"**{se}**" if p["solved_fraction"] == 0 else se,
                     f"{pct(b['solved_fraction'])}, {b['final_return']:.1f} ± {b['final_return_std']:.1f}, "
                     f"{steps(b['steps_to_solve'])}"])
    return markdown_table(["agent", "trained on the SE (0 real steps): solved, return",
                           "trained on real CartPole: solved, return, real steps"], rows)


def cartpole_se_transfer_sentence() -> str:
    report = evaluation("cartpole_se_s0", "transfer")
    dd, td3 = group(report, "proxy", "dueling_ddqn")["agents"], group(report, "proxy", "td3_discrete")["agents"]
    at_top = [a for a in dd if a["final_return"] >= 200]
    others = sorted((a["final_return"] for a in dd if a["final_return"] < 200), reverse=True)
    episodes = [a["episodes"] for a in dd if a["final_return"] < 200]
    td3_episodes = [a["episodes"] for a in td3]
    return (f"The SE transfers to Dueling DDQN in part ({len(at_top)} of {len(dd)} agents at 200"
            + (f", the others at {' and '.join(f'{v:.1f}' for v in others)} after "
               f"{min(episodes)}-{max(episodes)} SE episodes" if others else "")
            + f") but not to discrete TD3: its agents stop after {min(td3_episodes)}-{max(td3_episodes)} SE "
            f"episodes, their SE return at its plateau, and fall over on real CartPole at once (final return "
            f"{min(a['final_return'] for a in td3):.1f}-{max(a['final_return'] for a in td3):.1f}). The paper "
            f"reports transfer to both (discrete TD3 lower).")


def cartpole_se_varyhp() -> str:
    """The seed-0 SE with varied DDQN hyperparameters (`evaluate.py RUN --vary-hp --n-agents 10
    --early-stop --name varyhp10`): each SE agent and its real-env twin share one sample."""
    report = evaluation("cartpole_se_s0", "varyhp10")
    p, b = group(report, "proxy"), group(report, "baseline")
    at_threshold = sum(a["final_return"] >= report["threshold"] for a in b["agents"]) / b["n_agents"]
    rows = [["trained on the SE", f"**{steps(p['steps_to_solve'])}**",
             f"{pct(p['solved_fraction'])} (final test ≥ 195)",
             f"**{p['final_return']:.1f}** ± {p['final_return_std']:.1f}"],
            ["trained on real CartPole", f"{steps(b['steps_to_solve'])} (until solved, over the solved agents)",
             f"{pct(b['solved_fraction'])} by the 10-test rule; {pct(at_threshold)} with a final test ≥ 195",
             f"{b['final_return']:.1f} ± {b['final_return_std']:.1f}"]]
    return markdown_table(["group", "real training steps", "solved", "real return, final 10-episode test"], rows)


def cartpole_se_varyhp_sentence() -> str:
    report = evaluation("cartpole_se_s0", "varyhp10")
    p, b = group(report, "proxy")["agents"], group(report, "baseline")["agents"]
    hps = [a["hp"] for a in p]

    def span(key: str, fmt: str) -> str:
        return f"{format(min(h[key] for h in hps), fmt)}-{format(max(h[key] for h in hps), fmt)}"

    def sci(x: float) -> str:
        mantissa, exponent = f"{x:.1e}".split("e")
        return f"{mantissa}e{int(exponent)}"
    layers = sorted({h["hidden_layer"] for h in hps})
    lr_span = f"{sci(min(h['lr'] for h in hps))} to {sci(max(h['lr'] for h in hps))}"
    failed_se = [a for a in p if not a["solved"]]
    failed_real = [a for a in b if not a["solved"]]
    same = [i for i, (x, y) in enumerate(zip(p, b)) if not x["solved"] and not y["solved"]]

    def failures(agents: list, real: bool) -> str:
        return ", ".join(f"{a['final_return']:.1f}" + (f", a {a['hp']['hidden_layer']}-layer net after its "
                                                       f"{a['episodes']:,} episodes" if real else "") for a in agents)
    solved_real = [a["episodes"] for a in b if a["solved"]]
    return (f"The SE, learned with the fixed tuned DDQN, trains agents it never saw (hidden sizes "
            f"{span('hidden_size', 'd')}, {' or '.join(map(str, layers))} layers, lr {lr_span}, batches "
            f"{span('batch_size', 'd')}) about as well as the real env does: {len(p) - len(failed_se)} of {len(p)} "
            f"solve on the SE and {len(b) - len(failed_real)} of {len(b)} on the real env "
            f"(by the 10-test rule; {'the same agent fails in both' if same else 'not the same agent'}: the SE's "
            f"failure ends at {failures(failed_se, False)}, the real env's at {failures(failed_real, True)}). The SE "
            f"agents trained "
            f"for {min(a['episodes'] for a in p)}-{max(a['episodes'] for a in p)} SE episodes "
            f"({min(a['train_steps'] for a in p) / 1e3:.1f}k-{max(a['train_steps'] for a in p) / 1e3:.1f}k SE steps) "
            f"where the real-env agents that solved needed {min(solved_real)}-{max(solved_real)} episodes. The "
            f"paper's claim that SEs are robust to varied agent hyperparameters holds here, on this seed with "
            f"{len(p)} agents.")


def tables() -> dict[str, str]:
    return {
        "cliff_rn_mode2": cliff_rn_mode2(),
        "cliff_rn_mode2_summary": cliff_rn_mode2_summary(),
        "cliff_plain_ties": cliff_plain_ties(),
        "cliff_rn_nes_settings": cliff_rn_nes_settings(),
        "cliff_rn_modes": cliff_rn_modes(),
        "cliff_rn_modes_summary": cliff_rn_modes_summary(),
        "cliff_rn_transfer": cliff_rn_transfer(),
        "cliff_rn_fig5_auc": cliff_rn_fig5_auc(),
        "cliff_rn_fig5_auc_summary": cliff_rn_fig5_auc_summary(),
        "cliff_rn_fig5_auc_proxies": cliff_rn_fig5_auc_proxies(),
        "cliff_rn_fig5_feb2021": cliff_rn_fig5_feb2021(),
        "cliff_rn_fig5_feb2021_summary": cliff_rn_fig5_feb2021_summary(),
        "cliff_se": cliff_se(),
        "cartpole_se_seeds": cartpole_se_seeds(),
        "cartpole_se_s0_progress": cartpole_se_s0_progress(),
        "cartpole_se_evaluation": cartpole_se_evaluation(),
        "cartpole_se_transfer": cartpole_se_transfer(),
        "cartpole_se_transfer_sentence": cartpole_se_transfer_sentence(),
        "cartpole_se_varyhp": cartpole_se_varyhp(),
        "cartpole_se_varyhp_sentence": cartpole_se_varyhp_sentence(),
        "acrobot_se_progress": acrobot_se_progress(),
        "acrobot_se_solved": acrobot_se_solved(),
        "acrobot_se_evaluation": acrobot_se_evaluation(),
    }


# --- figures ------------------------------------------------------------------------------------

def _staged(run: Path, names: list[str], parent: Path) -> Path:
    """A copy of a committed run folder's `names` under `parent` (the plots write next to their data)."""
    tmp = Path(tempfile.mkdtemp(prefix="run_", dir=parent))
    for name in names:
        if (run / name).is_file():
            shutil.copy(run / name, tmp / name)
    return tmp


def figures(out_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    out_dir = Path(out_dir)
    made = []
    with tempfile.TemporaryDirectory(prefix="synthetic_envs_results_") as scratch:
        _figures(out_dir, made, Path(scratch))
    return made


def _figures(out_dir: Path, made: list, scratch: Path) -> None:
    from synthetic_envs.figures import plot_histograms, plot_mode_comparison, plot_reward_grid, plot_visitation
    from synthetic_envs.plots import plot_evaluation, plot_nes_progress, plot_nes_seeds

    def moved(path: Path, name: str) -> Path:
        target = out_dir / name
        shutil.move(str(path), target)
        made.append(target)
        return target

    mode2 = PROXIES / "cliff_rn_mode2_s0"
    stage = _staged(mode2, ["config.json", "proxy.pt"], scratch)   # plot_evaluation also draws Φ
    evaluation_png, phi_png = plot_evaluation(stage, evaluation("cliff_rn_mode2_s0"))
    moved(evaluation_png, "cliff_rn_mode2_evaluation.png")
    moved(phi_png, "cliff_rn_mode2_phi.png")
    made.append(plot_reward_grid(mode2, out_dir / "cliff_rn_mode2_reward_grid.png"))
    made.append(plot_visitation(mode2, out_dir / "cliff_rn_mode2_visitation.png"))
    made.append(plot_histograms([mode2], out_dir / "cliff_rn_mode2_transfer_histograms.png",
                                ["evaluation", "transfer"]))
    made.append(plot_mode_comparison([PROXIES / "cliff_rn_fig5_mode1_s248", PROXIES / "cliff_rn_fig5_mode2_s200"],
                                     out_dir / "cliff_rn_fig5_protocol.png", name="eval10_ref"))
    made.append(plot_mode_comparison([run_dir(f"cliff_rn_mode{m}_s0") for m in (1, 2, 5, 6)],
                                     out_dir / "cliff_rn_modes.png"))
    runs = feb2021_runs()
    if runs:
        made.append(plot_nes_seeds(runs, out_dir / "cliff_rn_fig5_feb2021_nes.png"))
    stage = _staged(PROXIES / "cliff_se_s1", ["config.json", "proxy.pt"], scratch)
    moved(plot_evaluation(stage, evaluation("cliff_se_s1"))[0], "cliff_se_evaluation.png")
    for env in ("cartpole", "acrobot"):
        stage = _staged(PROXIES / f"{env}_se_s0", ["config.json", "metrics.csv"], scratch)
        moved(plot_nes_progress(stage), f"{env}_se_nes.png")
    made.append(plot_nes_seeds([PROXIES / f"cartpole_se_s{s}" for s in (0, 1, 2)], out_dir / "cartpole_se_nes_seeds.png"))
    for seed, png in ((0, "cartpole_se_evaluation.png"), (2, "cartpole_se_s2_evaluation.png")):
        stage = _staged(PROXIES / f"cartpole_se_s{seed}", ["config.json", "proxy.pt"], scratch)
        moved(plot_evaluation(stage, evaluation(f"cartpole_se_s{seed}", "eval20"))[0], png)
    stage = _staged(PROXIES / "acrobot_se_s0", ["config.json", "proxy.pt"], scratch)   # plot_evaluation reads the proxy
    moved(plot_evaluation(stage, evaluation("acrobot_se_s0", "eval20"))[0], "acrobot_se_evaluation.png")
    stage = _staged(PROXIES / "cartpole_se_s0", ["config.json", "proxy.pt"], scratch)
    moved(plot_evaluation(stage, evaluation("cartpole_se_s0", "transfer"), "transfer")[0], "cartpole_se_transfer.png")
    moved(plot_evaluation(stage, evaluation("cartpole_se_s0", "varyhp10"), "varyhp10")[0], "cartpole_se_varyhp.png")


if __name__ == "__main__":
    sys.exit(main(__file__, tables, figures))
