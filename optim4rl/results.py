"""Rebuild optim4rl/README.md's results blocks and Catch figures from optim4rl/results/ only.

    python optim4rl/results.py            # rewrite the README's generated blocks and the figures
    python optim4rl/results.py --check    # exit 1 naming each block that differs from the data

The data, copied from the run folders by `python optim4rl/collect_results.py LOGS_ROOT`:

- results/runs/<config>/<config_idx>/{config.json, summary.json, metrics.csv}: one folder per run
  of catch_meta, catch_lopt, catch_signsgd, catch_lopt_l2o, catch_meta_l2o, catch_a2c_sweep,
  catch_collect, catch_collect_phi, grid_small_meta, grid_small_lopt and grid_small_a2c_sweep;
  metrics.csv is the logged return curve (env_steps, return: the mean return of the episodes that
  ended in each logged iteration; PPO: the greedy evaluations);
- results/runs/grid_xfer/<name>/ and results/runs/idp_xfer/<name>/: runs of a φ (or optimizer)
  on a task it was not meta-trained on, named by --out-dir (idp_xfer: PPO on
  InvertedDoublePendulum-v5, with value_loss.json);
- results/runs/catch_collect_phi/<idx>/update_vs_gradient.json (fitted slope and median of
  |update / lr| over all collected pairs) and results/catch_collect_phi_pairs.csv (every 10th pair);
- results/runs/catch_collect/1/gradients.json (zero share, percentiles, histograms of g).

Final return = the mean of the last tenth of a curve's logged points (optim4rl.logs.final_return);
"mean over training" = the mean of all its logged points; ± = standard error over seeds.
"""
from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from common.results import main, markdown_table, mean_se, read_csv, read_json  # noqa: E402
from optim4rl.logs import final_return  # noqa: E402

RESULTS = HERE / "results"
RUNS = RESULTS / "runs"

UNBACKED_FIGURES: dict[str, str] = {}

# catch_lopt's combinations (index of run 0; run k is index + 8k)
CATCH_LOPT_N = 8
CATCH_LOPT_ROWS = [  # (label, index of run 0)
    ("Optim4RL, meta-trained φ (1e-4)", 1),
    ("Optim4RL, untrained φ (1e-4)", 2),
    ("Adam (1e-4)", 3),
    ("RMSProp (1e-4)", 4),
    ("Adam (1e-3)", 5),
    ("RMSProp (1e-3)", 6),
    ("Adam (3e-3)", 7),
    ("RMSProp (3e-3)", 8),
]
SWEEP_LRS = ["3e-2", "1e-2", "3e-3", "1e-3", "3e-4", "1e-4"]   # catch_a2c_sweep: RMSProp, Adam per lr
SWEEP_N = 12


# -- reading ----------------------------------------------------------------------------------

def curve(config: str, idx: int) -> tuple[np.ndarray, np.ndarray]:
    rows = read_csv(RUNS / config / str(idx) / "metrics.csv")
    return (np.array([float(r["env_steps"]) for r in rows]), np.array([float(r["return"]) for r in rows]))


def final(config: str, idx: int) -> float:
    return final_return(curve(config, idx)[1])


def over_training(config: str, idx: int) -> float:
    return float(np.mean(curve(config, idx)[1]))


def available(config: str, indexes) -> list[int]:
    return [i for i in indexes if (RUNS / config / str(i) / "metrics.csv").is_file()]


def summary(config: str, idx: int) -> dict:
    return read_json(RUNS / config / str(idx) / "summary.json")


def lr_of(config: str, idx: int) -> float:
    return float(read_json(RUNS / config / str(idx) / "config.json")["agent_optimizer"]["kwargs"]["learning_rate"])


def fmt(x: float, digits: int = 3) -> str:
    return f"{x:.{digits}f}".replace("-", "−")


def pm(values, digits: int = 3) -> str:
    mean, se = mean_se(values)
    return f"{fmt(mean, digits)} ± {se:.{digits}f}"


# the runs behind each row: (config, [index of run 0, 1, 2])
PHI = ("catch_lopt", [1, 9, 17])
UNTRAINED = ("catch_lopt", [2, 10, 18])
SIGNSGD = ("catch_signsgd", [1, 2, 3])
LINEAR = (("catch_lopt_l2o", [3, 9, 15]), ("catch_lopt_l2o", [4, 10, 16]))
L2LGD2 = (("catch_lopt_l2o", [5, 11, 17]), ("catch_lopt_l2o", [6, 12, 18]))


def sweep_runs(optimizer: str, lr: str) -> tuple[str, list[int]]:
    base = SWEEP_LRS.index(lr) * 2 + (1 if optimizer == "RMSProp" else 2)
    return "catch_a2c_sweep", [base + SWEEP_N * k for k in range(3)]


def finals(spec) -> list[float]:
    config, idx = spec
    return [final(config, i) for i in available(config, idx)]


def trainings(spec) -> list[float]:
    config, idx = spec
    return [over_training(config, i) for i in available(config, idx)]


def signsgd_lr() -> float:
    return lr_of(*[(SIGNSGD[0], i) for i in SIGNSGD[1]][0])


def sci(x: float, digits: int = 2) -> str:
    """1.95e-3 rather than 0.00195 or 1.95e-03."""
    mantissa, exponent = f"{x:.{digits - 1}e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"


def slash(values) -> str:
    return " / ".join(fmt(v) for v in values)


# -- tables -----------------------------------------------------------------------------------

def catch_lopt_table() -> str:
    rows = []
    for label, first in CATCH_LOPT_ROWS:
        idx = available("catch_lopt", [first + CATCH_LOPT_N * k for k in range(3)])
        values = slash(final("catch_lopt", i) for i in idx)
        if first == 1:
            label, values = f"**{label}**", f"**{values}** (φ from meta runs 1 / 2 / 3)"
            rows.append([label, values, fmt(over_training("catch_lopt", 1))])
            sg = available(*SIGNSGD)
            rows.append([f"**sign-SGD ({sci(signsgd_lr(), 3)} = {signsgd_lr() / 1e-4:.1f} × 1e-4), no φ**",
                         f"**{slash(final(SIGNSGD[0], i) for i in sg)}**", fmt(over_training(SIGNSGD[0], sg[0]))])
            continue
        rows.append([label, values, fmt(over_training("catch_lopt", first))])
    return markdown_table(["optimizer (lr)", "final return, seeds run 0 / 1 / 2", "mean over training, run 0"], rows)


def catch_meta_sentence() -> str:
    phi = finals(PHI)
    walls = [summary("catch_meta", i)["wall_seconds"] for i in available("catch_meta", [1, 2, 3])]
    return (f"In 62 meta-iterations ({min(walls) / 60:.1f}-{max(walls) / 60:.1f} minutes here, the cores shared "
            f"with other runs) φ learns to train Catch agents at a learning rate where the untrained optimizer "
            f"(sign-SGD with step 1e-4), Adam and RMSProp do not move: the {len(phi)} meta-training seeds give φs "
            f"whose fresh agents end at {fmt(min(phi))}-{fmt(max(phi))}.")


def catch_signsgd_sentence() -> str:
    phi, sg = finals(PHI), finals(SIGNSGD)
    phi_m, sg_m = trainings(PHI), trainings(SIGNSGD)
    diffs = [b - a for a, b in zip(phi, sg)]
    higher = sum(d > 0 for d in diffs)
    return (f"**The direct control: plain sign-SGD with the step φ learned.** Sign-SGD at lr "
            f"{sci(signsgd_lr(), 3)} ({signsgd_lr() / 1e-4:.1f} × 1e-4, the median |update / lr| of the meta-trained φ below), with "
            f"no learned optimizer at all, ends at {pm(sg)} over {len(sg)} seeds (mean over training "
            f"{fmt(float(np.mean(sg_m)))}), against {pm(phi)} ({fmt(float(np.mean(phi_m)))}) for the "
            f"meta-trained φ on the same seeds (paired differences sign-SGD − φ: "
            f"{', '.join(('+' if d >= 0 else '') + fmt(d) for d in diffs)}: sign-SGD higher on {higher} of "
            f"{len(diffs)} seeds). So on Catch the meta-trained φ "
            f"is no better than sign-SGD with a constant step: what meta-training bought is that step size.")


def catch_l2o_table() -> str:
    rows = [["**Optim4RL (1e-4)**", f"**{pm(finals(PHI))}** / {fmt(np.mean(trainings(PHI)))}",
             f"{pm(finals(UNTRAINED))} / {fmt(np.mean(trainings(UNTRAINED)))}"]]
    for label, (meta, untrained) in (("LinearOptim (1e-4)", LINEAR), ("L2LGD2 (1e-4)", L2LGD2)):
        rows.append([label, f"{pm(finals(meta))} / {fmt(np.mean(trainings(meta)))}",
                     f"{pm(finals(untrained))} / {fmt(np.mean(trainings(untrained)))}"])
    return markdown_table(["optimizer (lr)", "meta-trained φ", "untrained φ"], rows)


def sweep_cells() -> dict:
    cells = {}
    for opt in ("Adam", "RMSProp"):
        for lr in SWEEP_LRS:
            spec = sweep_runs(opt, lr)
            cells[opt, lr] = (finals(spec), trainings(spec))
    return cells


def best(cells, opt, which: int) -> str:
    return max(SWEEP_LRS, key=lambda lr: np.mean(cells[opt, lr][which]))


def catch_sweep_table() -> str:
    cells = sweep_cells()
    rows = []
    for lr in SWEEP_LRS:
        row = [lr]
        for opt in ("Adam", "RMSProp"):
            f, m = cells[opt, lr]
            a, b = pm(f), fmt(float(np.mean(m)))
            if lr == best(cells, opt, 0):
                a = f"**{a}**"
            if lr == best(cells, opt, 1):
                b = f"**{b}**"
            row.append(f"{a} / {b}")
        rows.append(row)
    return markdown_table(["lr", "Adam", "RMSProp"], rows)


def catch_tuned_sentence() -> str:
    cells = sweep_cells()
    phi, phi_m = finals(PHI), trainings(PHI)
    sg, sg_m = finals(SIGNSGD), trainings(SIGNSGD)
    lr = best(cells, "Adam", 0)
    f, m = cells["Adam", lr]
    above = [f"{o} {x}" for o in ("Adam", "RMSProp") for x in SWEEP_LRS
             if np.mean(cells[o, x][0]) > max(np.mean(phi), np.mean(sg))]
    lowest = {}
    for o in ("Adam", "RMSProp"):          # the smallest lr from which every larger lr ends above φ
        for x in SWEEP_LRS:                # largest lr first
            if np.mean(cells[o, x][0]) <= np.mean(phi):
                break
            lowest[o] = x
    return (f"**Tuned Adam and RMSProp win**: Adam at {lr} ends at {fmt(np.mean(f))} and averages "
            f"{fmt(np.mean(m))} over training, against {fmt(np.mean(phi))} and {fmt(np.mean(phi_m))} for the "
            f"meta-trained Optim4RL and {fmt(np.mean(sg))} and {fmt(np.mean(sg_m))} for sign-SGD at "
            f"{sci(signsgd_lr(), 3)}; every Adam setting from {lowest['Adam']} up and every RMSProp setting from "
            f"{lowest['RMSProp']} up ends above the learned optimizer ({len(above)} of the 12 settings end above "
            f"both it and sign-SGD).")


def phi_stats() -> list[tuple[str, dict]]:
    labels = {1: "Optim4RL, meta-trained φ (seed 0, 1e-4)", 2: "Optim4RL, untrained φ (1e-4)",
              3: "Adam (1e-3)", 4: "RMSProp (1e-3)"}
    return [(labels[i], read_json(RUNS / "catch_collect_phi" / str(i) / "update_vs_gradient.json"))
            for i in available("catch_collect_phi", [1, 2, 3, 4])]


def catch_phi_table() -> str:
    rows = []
    for label, st in phi_stats():
        digits = 3 if abs(st["slope"]) < 0.1 else 2
        median = st["median_update"]
        rows.append([label, fmt(st["slope"], digits).replace("−0.000", "0.000"),
                     f"{median:.1f}" if median >= 0.95 else f"{median:.2g}"])
    return markdown_table(["optimizer (lr)", "slope", "median \\|update / lr\\|"], rows)


def catch_phi_sentence() -> str:
    st = dict(phi_stats())["Optim4RL, meta-trained φ (seed 0, 1e-4)"]
    points = sum(s["points"] for _, s in phi_stats()) // len(phi_stats())
    return (f"`catch_collect_phi` trains one fresh Catch agent with each optimizer and records the gradient "
            f"and the update / lr of every 100th parameter coordinate at every update ({points:,} "
            f"non-zero pairs per run on average). The meta-trained φ moves a coordinate by a median {st['median_update']:.1f} "
            f"× lr = {sci(st['median_update'] * 1e-4)} per update, whatever its gradient (slope "
            f"{fmt(st['slope'])}).")


def catch_grad_sentence() -> str:
    g = read_json(RUNS / "catch_collect" / "1" / "gradients.json")
    p = g["abs_percentiles_nonzero"]
    return (f"The collected Catch gradients ({g['updates']} updates × {g['coordinates']} coordinates) are "
            f"{100 * g['zero_share']:.1f}% exact zeros and otherwise spread over four orders of magnitude "
            f"(1st / 50th / 99th percentile of the non-zero |g|: {sci(p['1'])} / {sci(p['50'])} / {sci(p['99'])}), "
            f"the paper's point about RL gradients:")


def catch_walls_sentence() -> str:
    meta = [summary(c, i)["wall_seconds"] for c, idx in (("catch_meta", [1, 2, 3]), ("catch_meta_l2o", [2, 3, 5, 6, 8, 9]))
            for i in available(c, idx)]
    fresh = [summary(c, i)["wall_seconds"] for c in ("catch_lopt", "catch_signsgd", "catch_lopt_l2o", "catch_a2c_sweep")
             for i in available(c, range(1, 40))]
    return (f"Wall time of these runs (`summary.json`), one torch thread each, with other "
            f"processes sharing the 2 cores: meta-training {min(meta) / 60:.1f}-{max(meta) / 60:.1f} min "
            f"({len(meta)} runs), a fresh agent {min(fresh):.0f}-{max(fresh):.0f} s ({len(fresh)} runs).")


def grid_transfer_table() -> str:
    def cell(spec, digits):
        f, m = finals(spec), trainings(spec)
        return f"{pm(f, digits)} / {fmt(float(np.mean(m)), digits)}"

    def xfer(prefix: str) -> tuple[str, list[str]]:
        return "grid_xfer", [f"{prefix}_{k}" for k in range(3)]
    sss = "small_sparse_short"
    rows = [
        ("Optim4RL, φ from the six gridworlds (committed φ, 300 iterations)", xfer("catch_phi"), xfer("sss_phi")),
        ("Optim4RL, φ after 200 iterations (a re-run of the same command)", xfer("catch_phi200"), xfer("sss_phi200")),
        ("Optim4RL, φ from the two small maps (`grid_small_meta`)", xfer("catch_phi2map"), GRID_PHI[sss]),
        ("Optim4RL, untrained φ (sign-SGD, clip 1)", xfer("catch_untrained"), GRID_UNTRAINED[sss]),
        ("Adam at the same lr (1e-3 / 3e-3)", sweep_runs("Adam", "1e-3"), grid_sweep_runs("Adam", "3e-3", sss)),
        ("**Adam at 3e-2 / 1e-2** (tuned)", sweep_runs("Adam", "3e-2"), grid_sweep_runs("Adam", "1e-2", sss)),
    ]
    return markdown_table(["optimizer", "Catch (lr 1e-3 for the learned ones)", "small_sparse_short (3e-3)"],
                          [[label, cell(c, 3), cell(g, 2)] for label, c, g in rows])


def grid_transfer_sentence() -> str:
    sss = "small_sparse_short"

    def xfer(prefix: str) -> tuple[str, list[str]]:
        return "grid_xfer", [f"{prefix}_{k}" for k in range(3)]
    specs = {"six": (xfer("catch_phi"), xfer("sss_phi")), "200": (xfer("catch_phi200"), xfer("sss_phi200")),
             "two": (xfer("catch_phi2map"), GRID_PHI[sss]), "untrained": (xfer("catch_untrained"), GRID_UNTRAINED[sss]),
             "same_lr": (sweep_runs("Adam", "1e-3"), grid_sweep_runs("Adam", "3e-3", sss)),
             "tuned": (sweep_runs("Adam", "3e-2"), grid_sweep_runs("Adam", "1e-2", sss))}
    stats = {name: [mean_se(finals(spec)) for spec in pair] for name, pair in specs.items()}

    def versus(other: str) -> str:
        """Where the six-gridworld φ ends higher, and whether by more than the two standard errors."""
        (a_c, a_se_c), (a_s, a_se_s) = stats["six"]
        (b_c, b_se_c), (b_s, b_se_s) = stats[other]
        won = [task for task, a, b in (("Catch", a_c, b_c), (sss, a_s, b_s)) if a > b]
        clear = [task for task, a, sa, b, sb in (("Catch", a_c, a_se_c, b_c, b_se_c), (sss, a_s, a_se_s, b_s, b_se_s))
                 if abs(a - b) > sa + sb]
        where = {2: "on both unseen tasks", 1: f"on {won[0]} only" if won else "", 0: "on neither task"}[len(won)]
        margin = ("" if not won else " by more than the two standard errors" if set(won) <= set(clear)
                  else " by less than the two standard errors" if not set(won) & set(clear) else "")
        return f"{where}{margin} ({a_c:.3f} vs {b_c:.3f}, {a_s:.2f} vs {b_s:.2f})"
    return (f"The six-gridworld φ ends above its untrained start {versus('untrained')}, above the two-map φ "
            f"{versus('two')} and above the φ after 200 iterations {versus('200')}. It ends above Adam at the "
            f"same learning rate {versus('same_lr')} and above tuned Adam {versus('tuned')}.")


# the two-map gridworld runs: grid_small_lopt (index i + 12k is run k; odd i: small_sparse_short,
# even: small_dense_short) and grid_small_a2c_sweep (i + 20k; read from each run's config.json)
GRID_MAPS = ("small_sparse_short", "small_dense_short")
GRID_LRS = ["3e-4", "1e-3", "3e-3", "1e-2", "3e-2"]
GRID_PHI = {"small_sparse_short": ("grid_small_lopt", [1, 13, 25]),
            "small_dense_short": ("grid_small_lopt", [2, 14, 26])}
GRID_UNTRAINED = {"small_sparse_short": ("grid_small_lopt", [3, 15, 27]),
                  "small_dense_short": ("grid_small_lopt", [4, 16, 28])}


def grid_sweep_runs(optimizer: str, lr: str, env: str) -> tuple[str, list[int]]:
    """The 3 runs of grid_small_a2c_sweep with this optimizer, lr and map (their config.json says)."""
    found = []
    for i in available("grid_small_a2c_sweep", range(1, 61)):
        c = read_json(RUNS / "grid_small_a2c_sweep" / str(i) / "config.json")
        opt = c["agent_optimizer"]
        if (c["env"]["name"] == [env] and opt["name"] == optimizer
                and abs(opt["kwargs"]["learning_rate"] - float(lr)) < 1e-12):
            found.append(i)
    return "grid_small_a2c_sweep", found


def grid_cell(spec, bold: tuple[bool, bool] = (False, False)) -> str:
    f, m = pm(finals(spec), 2), fmt(float(np.mean(trainings(spec))), 2)
    return f"{f'**{f}**' if bold[0] else f} / {f'**{m}**' if bold[1] else m}"


def grid_small_table() -> str:
    rows = [["Optim4RL, meta-trained φ (3e-3)", *(grid_cell(GRID_PHI[e]) for e in GRID_MAPS)],
            ["Optim4RL, untrained φ (3e-3)", *(grid_cell(GRID_UNTRAINED[e]) for e in GRID_MAPS)]]
    specs = {(o, lr, e): grid_sweep_runs(o, lr, e) for o in ("Adam", "RMSProp") for lr in GRID_LRS for e in GRID_MAPS}
    best = {}
    for e in GRID_MAPS:          # the best final and the best mean over training of all sweep settings
        for which, values in ((0, finals), (1, trainings)):
            best[e, which] = max(specs, key=lambda k: np.mean(values(specs[k])) if k[2] == e else -np.inf)
    for o in ("Adam", "RMSProp"):
        for lr in GRID_LRS:
            cells = [grid_cell(specs[o, lr, e], (best[e, 0] == (o, lr, e), best[e, 1] == (o, lr, e)))
                     for e in GRID_MAPS]
            label = f"{o} ({lr})"
            rows.append([f"**{label}**" if best[GRID_MAPS[0], 0][:2] == (o, lr) else label, *cells])
    return markdown_table(["optimizer (lr)", "sss, held out: final / mean", "sds, trained on: final / mean"], rows)


def grid_small_sentence() -> str:
    sss, sds = GRID_MAPS
    phi = {e: float(np.mean(finals(GRID_PHI[e]))) for e in GRID_MAPS}
    phi_m = {e: float(np.mean(trainings(GRID_PHI[e]))) for e in GRID_MAPS}
    untrained = {e: float(np.mean(finals(GRID_UNTRAINED[e]))) for e in GRID_MAPS}
    same_lr = {e: float(np.mean(finals(grid_sweep_runs("Adam", "3e-3", e)))) for e in GRID_MAPS}
    lr = max(GRID_LRS, key=lambda x: np.mean(finals(grid_sweep_runs("Adam", x, sss))))
    tuned = {e: float(np.mean(finals(grid_sweep_runs("Adam", lr, e)))) for e in GRID_MAPS}
    tuned_m = {e: float(np.mean(trainings(grid_sweep_runs("Adam", lr, e)))) for e in GRID_MAPS}
    wins = all(phi[e] > untrained[e] for e in GRID_MAPS)
    below = all(phi[e] < same_lr[e] for e in GRID_MAPS)
    return (f"**Tuned Adam and RMSProp win on both maps.** The meta-trained φ "
            f"{'beats' if wins else 'does not beat'} its own untrained start (sign-SGD with clip 1) on both maps "
            f"({phi[sss]:.2f} vs {untrained[sss]:.2f}, {phi[sds]:.2f} vs {untrained[sds]:.2f}) but "
            f"{'stays below' if below else 'is not below'} Adam at the learning rate it was meta-trained with "
            f"(3e-3: {same_lr[sss]:.2f} and {same_lr[sds]:.2f}), and Adam at {lr} ends "
            f"{100 * (tuned[sss] / phi[sss] - 1):.0f}% higher on the held-out map ({tuned[sss]:.2f} vs {phi[sss]:.2f}) "
            f"and {100 * (tuned[sds] / phi[sds] - 1):.0f}% higher on the training map ({tuned[sds]:.2f} vs "
            f"{phi[sds]:.2f}), and learns faster (mean over training {tuned_m[sss]:.2f} vs {phi_m[sss]:.2f}, "
            f"{tuned_m[sds]:.2f} vs {phi_m[sds]:.2f}).")


def grid_small_walls_sentence() -> str:
    meta = [summary("grid_small_meta", i)["wall_seconds"] / 60 for i in available("grid_small_meta", [1, 2, 3])]
    fresh = [summary(c, i)["wall_seconds"] for c, idx in (("grid_small_lopt", range(1, 37)),
                                                          ("grid_small_a2c_sweep", range(1, 61)))
             for i in available(c, idx)]
    return (f"Wall time of these runs (`summary.json`), one torch thread each, the other core busy with "
            f"other runs: meta-training {min(meta):.1f}-{max(meta):.1f} min ({len(meta)} runs), a fresh agent "
            f"(2e6 env steps) {min(fresh):.0f}-{max(fresh):.0f} s ({len(fresh)} runs).")


# PPO on InvertedDoublePendulum-v5 (inverted_double_pendulum_lopt, collected as idp_xfer/<name>):
# <optimizer>_<lr>_<k> is run k of the tuned sweep (Adam: --config_idx 2, 5, 8; RMSProp: 3, 6, 9)
IDP_LRS = ["1e-4", "3e-4", "1e-3"]
IDP_SEED0 = [("Optim4RL, φ from `grid_small_meta`", "phi_small_0"),
             ("Optim4RL, φ from `grid_meta_laptop` (the six gridworlds)", "phi_laptop_0"),
             ("Optim4RL, untrained φ (sign-SGD)", "untrained_0"),
             ("Adam", "adam_3e-4_0"), ("RMSProp", "rmsprop_3e-4_0")]


def mujoco_ppo_table() -> str:
    rows = []
    for label, name in IDP_SEED0:
        steps, returns = curve("idp_xfer", name)
        rows.append([label, f"{final('idp_xfer', name):.0f}", f"{max(returns):.0f}",
                     f"{summary('idp_xfer', name)['wall_seconds'] / 60:.1f} min"])
    return markdown_table(["optimizer", "final return (mean of the last tenth of the evaluations)", "best", "wall"],
                          rows)


def idp_finals(optimizer: str, lr: str) -> list[float]:
    return [final("idp_xfer", name) for name in available("idp_xfer", [f"{optimizer}_{lr}_{k}" for k in range(3)])]


def mujoco_tuned_table() -> str:
    cells = {(o, lr): idp_finals(o, lr) for o in ("adam", "rmsprop") for lr in IDP_LRS}
    top = {o: max(IDP_LRS, key=lambda lr: np.mean(cells[o, lr])) for o in ("adam", "rmsprop")}
    rows = []
    for lr in IDP_LRS:
        row = [lr]
        for o in ("adam", "rmsprop"):
            text = pm(cells[o, lr], 0)
            row.append(f"**{text}**" if lr == top[o] else text)
        rows.append(row)
    return markdown_table(["lr", "Adam", "RMSProp"], rows)


def mujoco_tuned_sentence() -> str:
    walls = [summary("idp_xfer", f"{o}_{lr}_{k}")["wall_seconds"] / 60 for o in ("adam", "rmsprop")
             for lr in IDP_LRS for k in range(3)]
    best = max(np.mean(idp_finals(o, lr)) for o in ("adam", "rmsprop") for lr in IDP_LRS)
    peak = max(max(curve("idp_xfer", f"{o}_{lr}_{k}")[1]) for o in ("adam", "rmsprop") for lr in IDP_LRS
               for k in range(3))
    phis = [final("idp_xfer", name) for name in ("phi_small_0", "phi_laptop_0")]
    return (f"2e5 env steps each, {min(walls):.1f}-{max(walls):.1f} min per run. Tuned, the best setting ends at "
            f"{best:,.0f} (the highest evaluation of any run is {peak:,.0f}); both learned φs end below "
            f"{max(phis) // 100 * 100 + 100:,.0f}.")


def mujoco_verdict() -> str:
    def loss(name: str) -> list[float]:
        return read_json(RUNS / "idp_xfer" / name / "value_loss.json")["value_loss"]
    small, laptop = loss("phi_small_0"), loss("phi_laptop_0")
    adam_wall = summary("idp_xfer", "adam_3e-4_0")["wall_seconds"]
    ratios = [summary("idp_xfer", n)["wall_seconds"] / adam_wall
              for n in ("phi_small_0", "phi_laptop_0", "untrained_0")]
    untrained, adam = final("idp_xfer", "untrained_0"), final("idp_xfer", "adam_3e-4_0")
    return (f"The paper's generalisation result (a φ meta-trained on gridworlds trains Brax agents) does not hold "
            f"for our laptop φs: after 200 meta-iterations on two small maps, or 300 on the six gridworlds (16 "
            f"agents each), their update magnitudes blow up PPO's value network here (value loss {small[-1]:.2g} at "
            f"the end of the two-map φ's run, up to {max(small):.2g}; up to {max(laptop):.2g} in the six-gridworld "
            f"φ's, against at most {max(loss('adam_3e-4_0')):.2g} with Adam), while the untrained φ (sign-SGD) "
            f"learns the task ({untrained:,.0f} against Adam's {adam:,.0f}). The learned optimizer also costs "
            f"{min(ratios):.1f}-{max(ratios):.1f}× the wall time of Adam on PPO's coordinates (two GRUs and two 16-16 "
            f"MLP heads per coordinate and step; `summary.json`'s wall times, three to four runs sharing the two "
            f"cores).")


def identity_data() -> tuple[dict, dict]:
    run = RUNS / "catch_identity" / "1"
    curves = {}
    for r in read_csv(run / "identity.csv"):
        c = curves.setdefault(r["model"], {"step": [], "perf": [], "mse": []})
        c["step"].append(int(r["step"]))
        c["perf"].append(float(r["perf"]))
        c["mse"].append(float(r["mse"]))
    return curves, read_json(run / "identity_summary.json")


def identity_table() -> str:
    curves, summ = identity_data()
    labels = {"RobustRNN": "RobustRNN (in: sign g, log\\|g\\|; out: sign g · exp(·))",
              "NormalRNN": "NormalRNN (raw g in and out)"}
    rows = []
    for name in ("RobustRNN", "NormalRNN"):
        c, m = curves[name], summ["models"][name]
        rows.append([labels[name], f"{c['perf'][-1]:.3f}", f"{max(c['perf']):.3f}", f"{m['perf_nonzero']:.3f}",
                     sci(c['mse'][-1]), f"{c['step'][-1]:,}"])
    return markdown_table(["model", "Perf (share within ±10%) at the end", "best Perf", "Perf on the non-zero gradients",
                           "MSE at the end", "Adam steps"], rows)


def identity_sentence() -> str:
    curves, _ = identity_data()
    normal, robust = curves["NormalRNN"], curves["RobustRNN"]
    return (f"The raw-input network cannot represent magnitudes that small and that spread: its Perf ends at "
            f"{normal['perf'][-1]:.3f} (best {max(normal['perf']):.3f} at one point of a noisy curve) and its final MSE "
            f"is {normal['mse'][-1] / robust['mse'][-1]:.0f} times RobustRNN's; with sign and log-magnitude inputs the "
            f"same network learns the identity (Perf {robust['perf'][-1]:.3f} at the end), as the paper shows.")


def tables() -> dict[str, str]:
    return {
        "catch_lopt": catch_lopt_table(),
        "catch_meta_sentence": catch_meta_sentence(),
        "catch_signsgd": catch_signsgd_sentence(),
        "catch_l2o": catch_l2o_table(),
        "catch_sweep": catch_sweep_table(),
        "catch_tuned": catch_tuned_sentence(),
        "catch_walls": catch_walls_sentence(),
        "catch_phi": catch_phi_table(),
        "catch_phi_sentence": catch_phi_sentence(),
        "catch_grad": catch_grad_sentence(),
        "grid_small": grid_small_table(),
        "grid_small_sentence": grid_small_sentence(),
        "grid_small_walls": grid_small_walls_sentence(),
        "grid_transfer": grid_transfer_table(),
        "grid_transfer_sentence": grid_transfer_sentence(),
        "mujoco_ppo": mujoco_ppo_table(),
        "mujoco_tuned": mujoco_tuned_table(),
        "mujoco_tuned_sentence": mujoco_tuned_sentence(),
        "mujoco_verdict": mujoco_verdict(),
        "identity": identity_table(),
        "identity_sentence": identity_sentence(),
    }


# -- figures ----------------------------------------------------------------------------------

def smooth(values: np.ndarray, window: int) -> np.ndarray:
    if window <= 1:
        return values
    c = np.cumsum(np.insert(values, 0, 0.0))
    out = np.empty_like(values)
    for i in range(len(values)):
        lo = max(0, i + 1 - window)
        out[i] = (c[i + 1] - c[lo]) / (i + 1 - lo)
    return out


def compare_runs(runs, out: Path, title: str, window: int = 1) -> Path:
    """One curve per (label, config, idx), as plots.compare draws run folders."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, config, idx in runs:
        steps, returns = curve(config, idx)
        ax.plot(steps, smooth(returns, window), label=label)
    ax.set_xlabel("env steps")
    ax.set_ylabel("episode return")
    ax.set_title(title + (f" (moving average of {window} points)" if window > 1 else ""), fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def mean_band(groups, out: Path, title: str, window: int = 3) -> Path:
    """Mean over seeds with a ± standard-error band, one line per (label, config, indexes)."""
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for label, (config, indexes) in groups:
        curves = [curve(config, i) for i in available(config, indexes)]
        n = min(len(c[0]) for c in curves)
        steps = curves[0][0][:n]
        ys = np.array([smooth(c[1][:n], window) for c in curves])
        mean = ys.mean(0)
        se = ys.std(0, ddof=1) / np.sqrt(len(ys)) if len(ys) > 1 else np.zeros_like(mean)
        ax.plot(steps, mean, label=f"{label} ({len(ys)} seeds)")
        ax.fill_between(steps, mean - se, mean + se, alpha=0.25)
    ax.set_xlabel("env steps")
    ax.set_ylabel("episode return")
    ax.set_title(title + f" (moving average of {window} points, ± s.e.)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def update_vs_gradient_figure(out: Path) -> Path:
    rows = read_csv(RESULTS / "catch_collect_phi_pairs.csv")
    stats = phi_stats()
    fig, axes = plt.subplots(1, len(stats), figsize=(4 * len(stats), 3.8), squeeze=False)
    for ax, (label, st), idx in zip(axes[0], stats, available("catch_collect_phi", [1, 2, 3, 4])):
        pairs = [(float(r["abs_grad"]), float(r["abs_update_over_lr"])) for r in rows if int(r["config_idx"]) == idx]
        log_g, log_u = np.log10([p[0] for p in pairs]), np.log10([p[1] for p in pairs])
        ax.hexbin(log_g, log_u, gridsize=50, bins="log", cmap="viridis", mincnt=1)
        lo, hi = np.percentile(log_g, [0.5, 99.5])
        ax.plot([lo, hi], [lo, hi], "r--", lw=1, label="update = g (SGD at this lr)")
        ax.set_title(f"{label}\nslope {st['slope']:.2f}, median |update| {st['median_update']:.3g}", fontsize=9)
        ax.set_xlabel("log10 |gradient| (every 10th pair)")
        ax.set_ylabel("log10 |update / lr|")
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def grad_hist_figure(out: Path) -> Path:
    """identity.plot_gradient_histograms' three panels, from the committed histograms."""
    g = read_json(RUNS / "catch_collect" / "1" / "gradients.json")
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5), tight_layout=True)
    for ax, key, label in ((axes[0], "hist_g", "$g$"), (axes[1], "hist_abs_g", "$|g|$")):
        h = g[key]
        ax.stairs(h["counts"], h["edges"], fill=True)
        ax.set_yscale("log")
        ax.set_xlabel(label)
        ax.set_ylabel("counts (log scale)")
        ax.grid(True)
    h = g["hist_log10_abs_g"]
    axes[2].stairs(h["density"], h["edges"], fill=True)
    axes[2].set_xlabel("$\\log_{10}(|g|+10^{-8})$")
    axes[2].set_ylabel("probability density")
    axes[2].grid(True)
    axes[2].set_title(f"exact zeros (at -8): {g['zero_share']:.1%}")
    fig.savefig(out)
    plt.close(fig)
    return out


def figures(out_dir: Path) -> list[Path]:
    out_dir = Path(out_dir)
    made = []
    lopt = [("Optim4RL meta-trained, lr 1e-4", "catch_lopt", 1),
            (f"sign-SGD, lr {sci(signsgd_lr(), 3)}", SIGNSGD[0], SIGNSGD[1][0])]
    lopt += [("Optim4RL untrained, lr 1e-4", "catch_lopt", 2), ("Adam 1e-4", "catch_lopt", 3),
             ("RMSProp 1e-4", "catch_lopt", 4), ("Adam 1e-3", "catch_lopt", 5), ("Adam 3e-3", "catch_lopt", 7),
             ("RMSProp 3e-3", "catch_lopt", 8)]
    made.append(compare_runs(lopt, out_dir / "catch_lopt.png", "Catch: fresh A2C agents (seed run 0)"))
    made.append(compare_runs([("Optim4RL, meta-trained φ", "catch_lopt", 1),
                              ("LinearOptim, meta-trained φ", "catch_lopt_l2o", 3),
                              ("L2LGD2, meta-trained φ", "catch_lopt_l2o", 5),
                              ("untrained Optim4RL (≈ sign-SGD, lr 1e-4)", "catch_lopt", 2)],
                             out_dir / "catch_three_learned_optimizers.png",
                             "Catch, fresh agents at lr 1e-4, run 0", window=3))
    cells = sweep_cells()
    made.append(mean_band([("Optim4RL, meta-trained φ, lr 1e-4", PHI),
                           (f"sign-SGD, lr {sci(signsgd_lr(), 3)}", SIGNSGD),
                           (f"Adam, lr {best(cells, 'Adam', 0)} (tuned)", sweep_runs("Adam", best(cells, "Adam", 0))),
                           (f"RMSProp, lr {best(cells, 'RMSProp', 0)} (tuned)",
                            sweep_runs("RMSProp", best(cells, "RMSProp", 0))),
                           ("Adam, lr 1e-3", sweep_runs("Adam", "1e-3"))],
                          out_dir / "catch_tuned.png", "Catch: learned φ, sign-SGD and tuned Adam / RMSProp"))
    made.append(update_vs_gradient_figure(out_dir / "catch_update_vs_gradient.png"))
    made.append(grad_hist_figure(out_dir / "catch_grad_hist.png"))
    from optim4rl.identity import plot_identity
    plot_identity(identity_data()[0], out_dir / "catch_identity_perf.png")
    made.append(out_dir / "catch_identity_perf.png")
    for env, png, title in (("small_sparse_short", "grid_sss_heldout.png", "small_sparse_short (held out)"),
                            ("small_dense_short", "grid_sds_trained.png", "small_dense_short (trained on)")):
        made.append(mean_band([("Optim4RL, meta-trained φ (3e-3)", GRID_PHI[env]),
                               ("Optim4RL, untrained φ (3e-3)", GRID_UNTRAINED[env]),
                               ("Adam (3e-3)", grid_sweep_runs("Adam", "3e-3", env)),
                               ("Adam (1e-2)", grid_sweep_runs("Adam", "1e-2", env)),
                               ("RMSProp (1e-2)", grid_sweep_runs("RMSProp", "1e-2", env))],
                              out_dir / png, title, window=5))
    made.append(compare_runs([(label.replace("`", ""), "idp_xfer", name) for label, name in IDP_SEED0],
                             out_dir / "idp_generalisation.png", "InvertedDoublePendulum-v5, PPO, lr 3e-4, run 0"))
    return made


if __name__ == "__main__":
    sys.exit(main(__file__, tables, figures))
