"""STEVE's tabular toy demo: how fast Q-learning, ensemble Q, MVE and STEVE learn the values of a
chain, with a perfect model and with a noisy one (Buckman et al., NeurIPS 2018; the reference is
research/steve/toy_demo.py in tensorflow/models).

    python steve/toy_demo.py [--trials N] [--seed S] [--out-dir DIR]

The toy: states 0..100 plus a terminal state 101; a single action moves s -> s+1, with reward -1
per step and +100 on entering the terminal (which is absorbing, reward 0). Undiscounted, so the
true value is V(s) = s. Every method keeps tabular value estimates (one table, or an ensemble of
tables), starts them at random integers in [0, 100] (terminal at 0), and each training step
samples a start state uniformly from 0..100, takes the real transition (s, r, s') and overwrites
the table entry with a target (learning rate 1, as in the reference):

* q_learning  - one table, one update per step, target r + Q(s').
* ensemble_q  - 8 tables, each updates its own random state per step; target r + mean_k Q_k(s').
* mve_*       - the H = 5 step model-rollout target from s': r + r_1 + ... + r_H + mean Q(s_H),
                averaged over the model rollouts.
* steve_*     - all H + 1 candidate targets T_i (i = 0..H, i = model steps after s'), one per
                (model rollout, Q member); their mean mu_i and variance var_i over the ensemble,
                and the STEVE target of the paper (Sec. 3, "Stochastic Ensemble Value Expansion"):
                T^STEVE = sum_i (w_i / sum_j w_j) mu_i with w_i = 1 / var_i (inverse variance).
* *_true uses the true dynamics (one rollout is enough: it is deterministic); *_noisy uses the
  noisy model: each model step from a non-terminal state jumps to a uniformly random state in
  0..100 with probability 0.1 (the reward is still the true one), sampled independently for each
  of the 8 model rollouts ("the model ensemble").

Tracked: the MSE of the ensemble-mean table against V(s) = s over states 0..100, averaged over
trials. Writes DIR/toy_results.csv (method,step,mse: the mean over trials, every 10 steps),
DIR/toy_trials.csv (method,trial,step,mse: each trial every 100 steps, which the figure's band
and the final spread come from), DIR/summary.json (settings, final MSE mean and std per method,
wall seconds) and DIR/toy_results.png, and prints the final MSE per method.

Reference values used (from the reference toy_demo.py): 100 non-terminal steps to the terminal
(states 0..100), final reward 100, step reward -1, no discount, learning rate 1 (overwrite),
noise 0.1, 10000 training steps, Q ensemble 8, model ensemble 8, horizon 5, 10 trials (our
--trials default), initial values uniform integers in [0, 100], variance epsilon 1e-8, population
(ddof=0) variance over the flattened model x Q ensemble, error = mean over states 0..100.

Changes from the reference, and why:
 1. Vectorised: the trials, and the 8 ensemble members within a step, are updated at once with
    numpy; the reference updates the members one after another, so a member there may already see
    an earlier member's write from the same step. With 8 random states out of 101 this rarely
    matters, and it makes 3 trials of all six methods take seconds instead of minutes.
 2. The MSE is logged every 10 steps (plus step 0), not every step, to keep the CSV small; the
    curves are smooth at that resolution.
 3. Seeding: one numpy Generator per method, derived from --seed and the method's index, so runs
    are reproducible and a method's curve does not depend on which methods ran before it.
 4. The estimate-error side statistics of the reference (per-target error of Q/MVE/STEVE
    estimates) are not computed; only the value MSE curves are, which is what the figure shows.
 5. The figure has a log y-axis (MSEs span 1e3 down to exact 0, plotted at a 1e-6 floor) and a
    min-max band over trials; the reference plots a linear axis with a mean +- std band.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

if __package__ in (None, ""):  # run as a script: make this paper's package and common/ importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.cli import ArgumentParser, UsageError, run_main  # noqa: E402

N_STATES = 101              # non-terminal states 0..100
TERMINAL = N_STATES         # index 101, absorbing, value 0
FINAL_REWARD = 100.0
NOISE = 0.1                 # chance that a noisy model step jumps to a random state
TRAIN_STEPS = 10_000
Q_ENSEMBLE = 8
MODEL_ENSEMBLE = 8
HORIZON = 5
EPS = 1e-8                  # keeps the inverse variance finite when an ensemble agrees exactly
LOG_EVERY = 10
TRIAL_LOG_EVERY = 100       # toy_trials.csv keeps every trial at this resolution (small file)
FLOOR = 1e-6                # plotted MSEs are floored here (exact zeros on a log axis)
TRUE_V = np.arange(N_STATES, dtype=float)

# name: (Q tables, rollout horizon, model rollouts, noisy model?, how targets are combined)
METHODS = {
    "q_learning": (1, 0, 1, False, "mve"),
    "ensemble_q": (Q_ENSEMBLE, 0, 1, False, "mve"),
    "mve_true": (Q_ENSEMBLE, HORIZON, 1, False, "mve"),
    "mve_noisy": (Q_ENSEMBLE, HORIZON, MODEL_ENSEMBLE, True, "mve"),
    "steve_true": (Q_ENSEMBLE, HORIZON, 1, False, "steve"),
    "steve_noisy": (Q_ENSEMBLE, HORIZON, MODEL_ENSEMBLE, True, "steve"),
}


def true_step(s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    nxt = np.minimum(s + 1, TERMINAL)
    reward = np.where(s == TERMINAL, 0.0, np.where(s + 1 == TERMINAL, FINAL_REWARD, -1.0))
    return nxt, reward


def noisy_step(s: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The noisy model: the true reward, but the next state is random 10% of the time."""
    nxt, reward = true_step(s)
    jump = (s != TERMINAL) & (rng.random(s.shape) < NOISE)
    return np.where(jump, rng.integers(0, N_STATES, s.shape), nxt), reward


def candidate_targets(Q, s1, r1, horizon, n_models, noisy, rng) -> np.ndarray:
    """T_i = r + r_1 + ... + r_i + Q_k(s_i) for i = 0..horizon (s_0 = s', the real next state),
    for every model rollout m and Q table k: shape (trials, updates, horizon + 1, m * k)."""
    trials = Q.shape[0]
    s = np.repeat(s1[..., None], n_models, axis=-1)           # (trials, updates, models)
    ret = np.repeat(r1[..., None], n_models, axis=-1)
    t = np.arange(trials)[:, None, None]
    out = []
    for i in range(horizon + 1):
        if i > 0:
            s, r = noisy_step(s, rng) if noisy else true_step(s)
            ret = ret + r
        out.append(ret[..., None] + Q[t, :, s])                 # (trials, updates, models, k)
    return np.stack(out, axis=2).reshape(*s1.shape, horizon + 1, -1)


def train(method: str, trials: int, rng: np.random.Generator) -> np.ndarray:
    """MSE curves of one method, shape (trials, logged steps)."""
    n_q, horizon, n_models, noisy, combine = METHODS[method]
    Q = rng.integers(0, N_STATES, (trials, n_q, N_STATES + 1)).astype(float)
    Q[..., TERMINAL] = 0.0
    t, k = np.arange(trials)[:, None], np.arange(n_q)[None, :]

    def mse():
        return np.mean((Q[..., :N_STATES].mean(axis=1) - TRUE_V) ** 2, axis=-1)

    curve = [mse()]
    for step in range(1, TRAIN_STEPS + 1):
        s = rng.integers(0, N_STATES, (trials, n_q))            # each table updates its own state
        s1, r1 = true_step(s)                                   # the real transition
        T = candidate_targets(Q, s1, r1, horizon, n_models, noisy, rng)
        # MVE uses only the longest horizon (with horizon 0 that is the plain Q-learning target)
        if combine == "mve":
            target = T[:, :, -1].mean(axis=-1)
        else:  # STEVE: weight each horizon by the inverse variance of its candidate targets
            w = 1.0 / (T.var(axis=-1) + EPS)
            target = (w * T.mean(axis=-1)).sum(axis=-1) / w.sum(axis=-1)
        Q[t, k, s] = target
        if step % LOG_EVERY == 0:
            curve.append(mse())
    return np.stack(curve, axis=1)


def plot(steps, curves: dict, path: Path, trials: int, seed: int) -> None:
    fig, ax = plt.subplots(figsize=(9, 4.8))
    colors = {"q_learning": "C0", "ensemble_q": "C1", "mve": "C2", "steve": "C3"}
    for method, c in curves.items():
        color = colors[method] if method in colors else colors[method.split("_")[0]]
        style = ":" if method.endswith("noisy") else "-"
        # log axis: floor exact zeros (converged true-model runs) so the line stays visible
        mean = np.maximum(c.mean(axis=0), FLOOR)
        ax.plot(steps, mean, style, color=color, lw=1.8, label=method)
        ax.fill_between(steps, np.maximum(c.min(axis=0), FLOOR), np.maximum(c.max(axis=0), FLOOR),
                        color=color, alpha=0.15, lw=0)
    ax.set_yscale("log")
    ax.set_xlabel("training steps")
    ax.set_ylabel(f"MSE vs. true V(s) = s  (floor {FLOOR:g})")
    ax.set_title(f"STEVE toy chain: error of the ensemble-mean values\n"
                 f"(mean of {trials} trials, band = min-max over trials, seed {seed})", fontsize=10)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9, title="method")
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_trials(steps, curves: dict, path: Path) -> None:
    """Every trial's MSE every TRIAL_LOG_EVERY steps (and the last step): the data the figure and
    the final spread are rebuilt from."""
    keep = (steps % TRIAL_LOG_EVERY == 0) | (steps == steps[-1])
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["method", "trial", "step", "mse"])
        for method, c in curves.items():
            for trial, curve in enumerate(c):
                for step, value in zip(steps[keep], curve[keep]):
                    writer.writerow([method, trial, int(step), f"{value:.6g}"])


def read_trials(path: Path):
    """(steps, {method: array (trials, steps)}) from a toy_trials.csv."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    methods = list(dict.fromkeys(r["method"] for r in rows))
    steps = np.array(sorted({int(r["step"]) for r in rows}))
    curves = {}
    for method in methods:
        trials = sorted({int(r["trial"]) for r in rows if r["method"] == method})
        c = np.zeros((len(trials), len(steps)))
        index = {int(step): i for i, step in enumerate(steps)}
        for r in rows:
            if r["method"] == method:
                c[int(r["trial"]), index[int(r["step"])]] = float(r["mse"])
        curves[method] = c
    return steps, curves


def parse_args(argv):
    parser = ArgumentParser(prog="steve/toy_demo.py", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=10, help="independent trials (default: 10)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--out-dir", default="runs/steve/toy_demo",
                        help="where toy_results.csv and toy_results.png go "
                             "(default: runs/steve/toy_demo)")
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.trials < 1:
        raise UsageError(f"--trials must be at least 1, got {args.trials}")
    if args.seed < 0:
        raise UsageError(f"--seed must be non-negative, got {args.seed}")
    out = Path(args.out_dir)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out-dir {out} exists and is not a folder")
    try:   # before the training, so an unusable place costs nothing
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UsageError(f"cannot create --out-dir {out}: {error.strerror}") from None

    start = time.time()
    steps = np.arange(0, TRAIN_STEPS + 1, LOG_EVERY)
    curves = {m: train(m, args.trials, np.random.default_rng([args.seed, i]))
              for i, m in enumerate(METHODS)}

    with open(out / "toy_results.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["method", "step", "mse"])
        for method, c in curves.items():
            for step, value in zip(steps, c.mean(axis=0)):
                writer.writerow([method, int(step), f"{value:.6g}"])
    write_trials(steps, curves, out / "toy_trials.csv")
    plot(steps, curves, out / "toy_results.png", args.trials, args.seed)
    summary = {"trials": args.trials, "seed": args.seed, "train_steps": TRAIN_STEPS,
               "final_mse": {m: {"mean": float(c[:, -1].mean()), "std": float(c[:, -1].std())}
                             for m, c in curves.items()},
               "wall_seconds": round(time.time() - start, 2)}
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")

    print(f"final MSE after {TRAIN_STEPS} steps ({args.trials} trials, seed {args.seed}):")
    print(f"  {'method':<12} {'mean':>10} {'std':>10}")
    for method, c in curves.items():
        print(f"  {method:<12} {c[:, -1].mean():>10.4g} {c[:, -1].std():>10.4g}")
    print(f"wrote {out / 'toy_results.csv'}, {out / 'toy_trials.csv'}, {out / 'summary.json'} "
          f"and {out / 'toy_results.png'} "
          f"in {time.time() - start:.1f}s")


if __name__ == "__main__":
    run_main(main, prog="steve/toy_demo.py")
