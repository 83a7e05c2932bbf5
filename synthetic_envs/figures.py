"""The paper's figures from run folders (plots.py's --modes, --visitation, --reward-grid and
--histograms call these):

- Fig. 5:  RN modes against the baselines on one plot: each group's mean greedy test return over
           real training steps, from the evaluation.json of several runs;
- Fig. 10: the reward a Cliff RN gives per (state, action), next to the real reward;
- Fig. 17: how often agents trained with and without a Cliff RN visit each cell;
- Figs. 3-4: histograms of the real return of agents trained on a proxy vs on the real env, one
           panel per agent type (transfer) of one or more evaluations.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import Polygon  # noqa: E402

from common.cli import UsageError  # noqa: E402
from common.config import load_config_file  # noqa: E402
from common.runs import load_checkpoint  # noqa: E402
from synthetic_envs import inner  # noqa: E402
from synthetic_envs.envs import CliffWalk, env_spec  # noqa: E402
from synthetic_envs.proxies import RN_MODES, RewardEnv, build_proxy  # noqa: E402
from synthetic_envs.tabular import EVAL_OVERRIDES, TABULAR_HP  # noqa: E402

# the original's legend words (GTNC_visualize_*_compare_reward_envs.py)
MODE_WORDS = {1: "exc. pot. RN", 2: "add. pot. RN", 3: "exc. pot. RN + info", 4: "add. pot. RN + info",
              5: "exc. non-pot. RN", 6: "add. non-pot. RN", 7: "exc. non-pot. RN + info",
              8: "add. non-pot. RN + info", 101: "exc. w·info", 102: "add. w·info"}


def load_evaluation(run_dir: Path, name: str = "evaluation") -> dict:
    path = Path(run_dir) / f"{name}.json"
    if not path.is_file():
        raise UsageError(f"no {path} (run synthetic_envs/evaluate.py {run_dir} first)")
    return json.loads(path.read_text())


def curves_on_steps(members: list[dict], grid: np.ndarray, x_column: int = 1) -> np.ndarray:
    """Each agent's test return held from the step of its test (curve column `x_column`: 0
    training steps, 1 real training steps) until the next one (the original's plots repeat each
    episode's test return over the episode's steps); after an agent's last test its return is
    carried forward. NaN before its first test."""
    out = np.full((len(members), len(grid)), np.nan)
    for i, member in enumerate(members):
        xs = np.array([c[x_column] for c in member["curve"]], float)
        ys = np.array([c[2] for c in member["curve"]], float)
        if len(xs):
            idx = np.searchsorted(xs, grid, side="right") - 1
            out[i, idx >= 0] = ys[idx[idx >= 0]]
    return out


def plot_mode_comparison(run_dirs: list[Path], out: Path, max_steps: int = 3000, name: str = "evaluation",
                         spread: float = 0.2) -> Path:
    """Fig. 5: mean test return over real training steps of agents trained with each run's RN,
    and of the plain and count-based / ICM agents (taken from the first run that has them).
    The band is ± `spread` standard deviations over agents, as the original's STD_MULT."""
    reports = [load_evaluation(d, name) for d in run_dirs]
    if any(r["kind"] != "rn" for r in reports):
        raise UsageError("--modes compares reward-network runs (kind rn)")
    if len({r["env"] for r in reports}) != 1:
        raise UsageError("--modes needs runs on one env, got " + ", ".join(sorted({r["env"] for r in reports})))
    agent = reports[0]["agents"][0]
    grid = np.arange(max_steps + 1, dtype=float)
    lines = [(f"{agent} + {MODE_WORDS[r['mode']]} (mode {r['mode']})", r["groups"][agent]["proxy"]["agents"])
             for r in sorted(reports, key=lambda r: r["mode"])]
    for group, label in (("baseline", agent), ("intrinsic", f"{agent} + count-based / ICM (mode −1)")):
        report = next((r for r in reports if group in r["groups"][agent]), None)
        if report is not None:
            lines.append((label, report["groups"][agent][group]["agents"]))
    fig, ax = plt.subplots(figsize=(7, 4.6))
    for label, members in lines:
        curves = curves_on_steps(members, grid)
        with warnings.catch_warnings():   # before an agent's first test its column is NaN
            warnings.simplefilter("ignore", RuntimeWarning)
            mean, std = np.nanmean(curves, axis=0), np.nanstd(curves, axis=0)
        style = "--" if label == agent or "mode −1" in label else "-"
        (line,) = ax.plot(grid, mean, style, label=f"{label} ({len(members)} agents)", lw=1.4)
        ax.fill_between(grid, mean - spread * std, mean + spread * std, color=line.get_color(), alpha=0.12)
    threshold = env_spec(reports[0]["env"]).threshold
    ax.axhline(threshold, color="k", ls=":", lw=1, label=f"solved ({threshold:g})")
    ax.set(xlabel="real env training steps", ylabel="greedy test return (held over each episode)",
           xlim=(0, max_steps), title=f"{reports[0]['env']}: reward-network modes vs baselines (mean, band ±{spread:g} std)\n"
           f"evaluation: {reports[0].get('protocol', 'early stop')}")
    if reports[0]["env"] == "cliff":
        ax.set_ylim(-100, -5)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def load_cliff_rn(run_dir: Path) -> tuple[dict, RewardEnv]:
    """The run's config and its saved Cliff reward network wrapped around a fresh Cliff."""
    config = load_config_file(Path(run_dir) / "config.json")   # missing or damaged: one line
    if not (Path(run_dir) / "proxy.pt").is_file():
        raise UsageError(f"no proxy file {Path(run_dir) / 'proxy.pt'}")
    saved = load_checkpoint(Path(run_dir) / "proxy.pt")
    if saved["kind"] != "rn" or saved["env"] != "cliff":
        raise UsageError(f"{run_dir} holds a {saved['kind']} on {saved['env']}; this figure needs a Cliff RN")
    real = CliffWalk()
    net = build_proxy("rn", real, saved["proxy_config"], saved["mode"], env_spec("cliff").info_dim)
    net.load_state_dict(saved["state_dict"])
    gamma = config["agent_hp"]["gamma"]
    return config, RewardEnv(net, real, gamma, saved.get("zero_terminal_potential", False))


def cliff_reward_table(env: RewardEnv) -> np.ndarray:
    """r'(s, a), the reward the agent sees for each Cliff (state, action) [48, 4]."""
    cliff = env.real_env
    table = np.zeros((cliff.n_states, 4))
    for s in range(cliff.n_states):
        for a in range(4):
            nxt, reward, terminated, vector = cliff.transitions[s][a]
            table[s, a] = env.reward(s, reward, nxt, terminated, vector)
    return table


def _draw_action_triangles(ax, table: np.ndarray, norm, cmap, title: str) -> None:
    """Each cell split into four triangles (right, left, down, up: the Cliff's actions), coloured
    by the reward of taking that action there; the cliff and goal cells, where no action is
    taken, are left blank."""
    rows, cols = CliffWalk.ROWS, CliffWalk.COLS
    cliff = CliffWalk()
    corners = {0: ((0.5, -0.5), (0.5, 0.5)), 1: ((-0.5, -0.5), (-0.5, 0.5)),
               2: ((-0.5, 0.5), (0.5, 0.5)), 3: ((-0.5, -0.5), (0.5, -0.5))}
    for s in range(rows * cols):
        row, col = divmod(s, cols)
        if s in cliff.cliff or s == cliff.goal:
            continue
        for a, (c1, c2) in corners.items():
            points = [(col, row), (col + c1[0], row + c1[1]), (col + c2[0], row + c2[1])]
            ax.add_patch(Polygon(points, facecolor=cmap(norm(table[s, a])), edgecolor="w", lw=0.3))
    for s in cliff.cliff:
        ax.add_patch(plt.Rectangle((s % cols - 0.5, s // cols - 0.5), 1, 1, facecolor="0.85", hatch="//",
                                   edgecolor="red", lw=0.5))
    ax.text(0, rows - 1 + 0.62, "S", ha="center", va="top", weight="bold")
    ax.text(cols - 1, rows - 1, "G", ha="center", va="center", weight="bold")
    ax.set(xlim=(-0.5, cols - 0.5), ylim=(rows - 0.5 + 0.3, -0.5), aspect="equal", xticks=[], yticks=[], title=title)


def plot_reward_grid(run_dir: Path, out: Path) -> Path:
    """Fig. 10: the learned reward per (state, action) on the Cliff grid, next to the real one."""
    config, env = load_cliff_rn(run_dir)
    learned = cliff_reward_table(env)
    real = np.array([[env.real_env.transitions[s][a][1] for a in range(4)] for s in range(48)])
    fig, axes = plt.subplots(3, 1, figsize=(10, 9.6))
    cmap = plt.get_cmap("coolwarm_r")
    for ax, table, title in ((axes[0], real, "real reward r(s, a)"),
                             (axes[1], learned, f"reward the agent sees with the RN, mode {env.mode}: "
                                                f"{RN_MODES[env.mode]}"),
                             (axes[2], learned - real, "what the RN changes: r'(s, a) − r(s, a) (own colour scale)")):
        bound = np.abs(table).max() or 1.0
        norm = matplotlib.colors.TwoSlopeNorm(0.0, -bound, bound)
        _draw_action_triangles(ax, table, norm, cmap, title)
        fig.colorbar(matplotlib.cm.ScalarMappable(norm, cmap), ax=ax, fraction=0.02)
    fig.suptitle(f"Cliff: reward per (state, action), each cell split by action (→ ← ↓ ↑), "
                 f"seed {config['seed']}")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


class VisitCounter:
    """A Cliff that counts every state it is in (the start on reset, s' on each step)."""

    def __init__(self, env: CliffWalk):
        self.env, self.counts = env, np.zeros(env.n_states)
        self.observation_space, self.action_space = env.observation_space, env.action_space
        self.transitions, self.n_states = env.transitions, env.n_states

    def reset(self, seed=None, options=None):
        state, info = self.env.reset(seed)
        self.counts[state] += 1
        return state, info

    def step(self, action):
        out = self.env.step(action)
        self.counts[out[0]] += 1
        return out

    def close(self) -> None:
        pass


def visitation(run_dir: Path, n_agents: int, episodes: int, seed: int) -> dict[str, np.ndarray]:
    """Mean visits per cell over the training of `n_agents` Q-learning agents (evaluation
    settings: ε 0.1) for `episodes` episodes each, with the run's RN and on the plain Cliff."""
    config, rn_env = load_cliff_rn(run_dir)
    hp = dict(TABULAR_HP["ql"], **dict(EVAL_OVERRIDES, max_episodes=episodes))
    settings = dict(config["inner"], threshold=env_spec("cliff").threshold)
    counts = {"with the RN": np.zeros(48), "plain Q-learning": np.zeros(48)}
    for i in range(n_agents):
        for label in counts:
            counter = VisitCounter(CliffWalk())
            train_env = counter
            if label == "with the RN":
                train_env = RewardEnv(rn_env.net, counter, rn_env.gamma, rn_env.zero_terminal)
            agent = inner.make_agent("ql", counter, hp, seed + i)
            inner.train_agent(agent, train_env, CliffWalk(), hp, settings, on_se=False, early_stop=False)
            counts[label] += counter.counts / n_agents
    return counts


def plot_visitation(run_dir: Path, out: Path, n_agents: int = 10, episodes: int = 100, seed: int = 0) -> Path:
    """Fig. 17: state-visitation heatmaps (log colour scale, shared) with and without the RN."""
    counts = visitation(run_dir, n_agents, episodes, seed)
    fig, axes = plt.subplots(1, 2, figsize=(13, 3.2))
    high = max(c.max() for c in counts.values())
    norm = matplotlib.colors.LogNorm(vmin=0.1, vmax=high)
    for ax, (label, count) in zip(axes, counts.items()):
        grid = count.reshape(CliffWalk.ROWS, CliffWalk.COLS)
        image = ax.imshow(np.maximum(grid, 0.1), norm=norm, cmap="magma")
        for (row, col), value in np.ndenumerate(grid):
            ax.text(col, row, f"{value:.0f}", ha="center", va="center", fontsize=6,
                    color="w" if value < high / 20 else "k")
        ax.set(xticks=[], yticks=[], title=f"{label}: {count.sum():.0f} states visited per agent")
    fig.colorbar(image, ax=axes, fraction=0.02)
    fig.suptitle(f"Cliff state visitation: mean over {n_agents} Q-learning agents (ε 0.1), "
                 f"{episodes} training episodes each")
    fig.savefig(out, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return out


def plot_histograms(run_dirs: list[Path], out: Path, names: list[str]) -> Path:
    """Figs. 3-4: per evaluation and agent type, the real return of agents trained on the proxy
    and on the real env (and count-based / ICM if evaluated)."""
    if not names:
        raise UsageError("--histograms needs at least one evaluation name (--name)")
    panels = []
    for run_dir in run_dirs:
        for name in names:
            report = load_evaluation(run_dir, name)
            hp = ", varied hp" if report["vary_hp"] else ""
            panels += [(f"{Path(run_dir).name}/{name}: {agent}{hp}", report, agent) for agent in report["agents"]]
    cols = min(3, len(panels))
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.6 * rows), squeeze=False)
    colors = {"proxy": "tab:blue", "baseline": "tab:gray", "intrinsic": "tab:orange"}
    for ax, (title, report, agent) in zip(axes.flat, panels):
        proxy_label = "trained on the SE" if report["kind"] == "se" else f"with the RN (mode {report['mode']})"
        labels = {"proxy": proxy_label, "baseline": "on the real env", "intrinsic": "count-based / ICM"}
        finals = {g: [m["final_return"] for m in s["agents"]] for g, s in report["groups"][agent].items()}
        bins = np.histogram_bin_edges(np.concatenate(list(finals.values())), bins=20)
        for group, values in finals.items():
            ax.hist(values, bins=bins, alpha=0.55, color=colors[group],
                    label=f"{labels[group]}: mean {np.mean(values):.1f}")
        ax.axvline(report["threshold"], color="k", ls=":", lw=1)
        ax.set(xlabel="real return (mean of the last tests)", ylabel="agents", title=title)
        ax.title.set_fontsize(8)
        ax.legend(fontsize=7)
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out

