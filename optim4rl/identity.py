"""The identity experiment of Lan et al. (2023), Sec. 4.1, and the gradient histograms of Sec. 4.

Why do RNN optimizers that read the raw gradient fail in RL? Agent gradients are tiny and spread
over many orders of magnitude (the collect experiment's histograms of g, |g| and log10|g| show
it). Sec. 4.1 trains a small coordinate-wise RNN (LSTM 8 + MLP 16-16) only to output its own
input, on collected gradients:

- NormalRNN reads g and outputs the MLP's value directly;
- RobustRNN reads [sign g, log(|g| + eps)] and outputs sign(g) * exp(MLP's value).

Both minimise the MSE to g with Adam. "Perf" is the fraction of outputs within +-10% of g.
NormalRNN's output is an affine-like function of tiny inputs; the absolute jitter of its weights
swamps gradients of 1e-6 and it can never output an exact 0, so it stays near Perf 0 on RL
gradients. RobustRNN works on the log scale, is exact on g = 0 (sign(0) = 0; a large share of
collected A2C gradients is exactly 0) and slowly learns the magnitudes (raw-scale MSE weights a
coordinate by |g|^2, so small ones are learned last). Data pipeline, schedule and metric follow
the seed project's RNN identity agent: every coordinate is one sequence over time, all
coordinates form one batch, time is cut into chunks of `seq_len` steps (the last incomplete
chunk is dropped), one Adam step per chunk, the hidden state carried from chunk to chunk
(truncated BPTT) and reset every epoch.
"""
from __future__ import annotations

import csv
from pathlib import Path

import matplotlib
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from common.cli import UsageError

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

MODELS = ("NormalRNN", "RobustRNN")
LOG_EPS = 1e-18      # RobustRNN's input is log(|g| + 1e-18), as in the seed project
CLIP_RATIO = 0.1     # Perf: an output counts when within +-10% of its target
HIST_EPS = 1e-8      # the collect plot shows log10(|g| + 1e-8)

# bdl_identity.json of the seed project (it sweeps lr over 3e-3, 1e-3, 3e-4, 1e-4).
DEFAULTS = {
    "models": list(MODELS), "epoch": 1000, "seq_len": 5, "hidden_size": 8,
    "mlp_dims": [16, 16], "rnn_type": "LSTM", "learning_rate": 3e-3, "gradient_clip": -1.0,
    "max_steps": None, "early_stop": True, "seed": 100,
}


# ---------------------------------------------------------------- data (Sec. 4, collect)

def load_collected(path) -> tuple[np.ndarray, np.ndarray | None]:
    """The collect run's data.npz: grad [T, K] and update [T, K] (None if the file has none)."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"collected data file not found: {path} (run a *_collect config first)")
    with np.load(path) as data:
        if "grad" not in data:
            raise UsageError(f"{path} has no array 'grad' (expected keys: grad, update)")
        grad = np.asarray(data["grad"], dtype=np.float32)
        update = np.asarray(data["update"], dtype=np.float32) if "update" in data else None
    if grad.ndim != 2 or (update is not None and update.shape != grad.shape):
        raise UsageError(f"{path}: grad must be [T, K] and update the same shape; got "
                         f"{grad.shape} and {None if update is None else update.shape}")
    return grad, update


def make_sequences(grad, seq_len: int, device="cpu") -> torch.Tensor:
    """[T, K] gradients -> [T // seq_len, seq_len, K] chunks; coordinate k is one sequence."""
    grad = torch.as_tensor(np.asarray(grad, dtype=np.float32), device=device)
    n = grad.shape[0] // seq_len
    if seq_len < 1 or n < 1:
        raise UsageError(f"seq_len must be in 1..{grad.shape[0]} (the number of collected "
                         f"update steps); got {seq_len}")
    return grad[: n * seq_len].reshape(n, seq_len, grad.shape[1])


# ---------------------------------------------------------------- models (Sec. 4.1)

def robust_input(g: torch.Tensor) -> torch.Tensor:
    """RobustRNN's input per coordinate: [sign(g), log(|g| + eps)] on a last axis of size 2."""
    return torch.stack([torch.sign(g), torch.log(g.abs() + LOG_EPS)], dim=-1)


def robust_output(g: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """RobustRNN's output: sign(g) * exp(out); the magnitude is learned on the log scale."""
    return torch.sign(g) * torch.exp(out)


class NormalRNN(nn.Module):
    """Coordinate-wise RNN on the raw gradient: g -> LSTM(8) -> MLP(16, 16) -> g_hat."""

    in_size = 1

    def __init__(self, hidden_size=8, mlp_dims=(16, 16), rnn_type="LSTM", generator=None):
        super().__init__()
        rnns = {"LSTM": nn.LSTM, "GRU": nn.GRU}
        if rnn_type not in rnns:
            raise UsageError(f"unknown rnn_type {rnn_type!r}; allowed: LSTM, GRU")
        self.rnn = rnns[rnn_type](self.in_size, hidden_size)   # time-major: [S, K, in]
        dims = [hidden_size, *mlp_dims, 1]
        layers = []
        for a, b in zip(dims[:-1], dims[1:]):
            layers += [nn.Linear(a, b), nn.ReLU()]
        self.mlp = nn.Sequential(*layers[:-1])                   # no activation on the output
        self.reset_parameters(generator)

    @torch.no_grad()
    def reset_parameters(self, generator=None):
        """Flax-like init: LeCun-normal kernels, orthogonal recurrent kernels, zero biases."""
        for name, p in self.named_parameters():
            if "bias" in name:
                p.zero_()
            elif "weight_hh" in name:
                for gate in p.view(-1, p.shape[1], p.shape[1]):  # one square block per gate
                    nn.init.orthogonal_(gate, generator=generator)
            else:
                nn.init.normal_(p, 0.0, p.shape[1] ** -0.5, generator=generator)

    def encode(self, g):
        return g.unsqueeze(-1)

    def decode(self, g, out):
        return out

    def forward(self, g: torch.Tensor, hidden=None):
        """g [S, K] -> (prediction [S, K], hidden state after the last step)."""
        x, hidden = self.rnn(self.encode(g), hidden)
        return self.decode(g, self.mlp(x).squeeze(-1)), hidden


class RobustRNN(NormalRNN):
    """Same network on [sign g, log|g|]; output sign(g) * exp(out) (Sec. 4.1)."""

    in_size = 2

    def encode(self, g):
        return robust_input(g)

    def decode(self, g, out):
        return robust_output(g, out)


def make_model(name: str, hidden_size=8, mlp_dims=(16, 16), rnn_type="LSTM", generator=None):
    classes = {"NormalRNN": NormalRNN, "RobustRNN": RobustRNN}
    if name not in classes:
        raise UsageError(f"unknown identity model {name!r}; allowed: {', '.join(MODELS)}")
    return classes[name](hidden_size, tuple(mlp_dims), rnn_type, generator)


# ---------------------------------------------------------------- metric and training

def within_tolerance(pred: torch.Tensor, target: torch.Tensor, clip_ratio=CLIP_RATIO):
    """Outputs inside [(1-r) y, (1+r) y] (bounds swapped for y < 0); y = 0 needs pred = 0."""
    lo, hi = (1 - clip_ratio) * target, (1 + clip_ratio) * target
    pos = (target >= 0) & (pred >= lo) & (pred <= hi)
    neg = (target < 0) & (pred <= lo) & (pred >= hi)
    return pos | neg


def identity_perf(pred: torch.Tensor, target: torch.Tensor, clip_ratio=CLIP_RATIO) -> float:
    """Perf (Sec. 4.1): the fraction of outputs within +-10% of their target."""
    return within_tolerance(pred, target, clip_ratio).float().mean().item()


def _detach(hidden):
    return tuple(h.detach() for h in hidden) if isinstance(hidden, tuple) else hidden.detach()


def train_identity(model, seqs, epochs=1000, learning_rate=3e-3, max_steps=None,
                   early_stop=True, gradient_clip=-1.0) -> dict:
    """Fit model(g) = g with MSE and Adam; one point per epoch: Adam steps so far, mean MSE, Perf.

    Like the seed project, the metrics of a chunk are those of the prediction made before the
    chunk's update, and training stops after 4 epochs if the best Perf is still below 0.01.
    `perf_nonzero` is Perf over the coordinates whose gradient is not exactly 0 (RobustRNN gets
    exact zeros right for free, since sign(0) = 0; RL gradients have many of them).
    """
    opt = torch.optim.Adam(model.parameters(), lr=learning_rate)
    curve = {"epoch": [], "step": [], "mse": [], "perf": [], "perf_nonzero": []}
    step, best = 0, 0.0
    for epoch in range(1, epochs + 1):
        hidden, losses, perfs, hits = None, [], [], [0, 0]   # hidden state reset every epoch
        for g in seqs:
            if max_steps is not None and step >= max_steps:
                break
            pred, hidden = model(g, hidden)
            loss = F.mse_loss(pred, g)                # the target is the input itself
            opt.zero_grad()
            loss.backward()
            if gradient_clip > 0:                     # element-wise, like optax.clip
                for p in model.parameters():
                    p.grad.clamp_(-gradient_clip, gradient_clip)
            opt.step()
            step, hidden = step + 1, _detach(hidden)  # truncated BPTT across chunks
            ok, nonzero = within_tolerance(pred.detach(), g), g != 0
            losses.append(loss.item())
            perfs.append(ok.float().mean().item())
            hits = [hits[0] + int((ok & nonzero).sum()), hits[1] + int(nonzero.sum())]
        if not losses:
            break
        for key, value in (("epoch", epoch), ("step", step), ("mse", float(np.mean(losses))),
                           ("perf", float(np.mean(perfs))),
                           ("perf_nonzero", hits[0] / hits[1] if hits[1] else float("nan"))):
            curve[key].append(value)
        best = max(best, curve["perf"][-1])
        if (early_stop and best < 0.01 and epoch >= 4) or (max_steps is not None
                                                            and step >= max_steps):
            break
    curve["best_perf"] = best
    return curve


# ---------------------------------------------------------------- the experiment

def identity_settings(cfg: dict) -> dict:
    """Flat settings from a flat cfg or one shaped like the seed's bdl_identity.json."""
    out = dict(DEFAULTS)
    net, optim = cfg.get("meta_net", {}), cfg.get("optimizer", {})
    kwargs = optim.get("kwargs", {}) if isinstance(optim, dict) else {}
    for key in DEFAULTS:
        for source in (cfg, cfg.get("agent", {}), net, kwargs):
            if key in source:
                out[key] = source[key]
    if "name" in net:
        out["models"] = net["name"]
    if isinstance(out["models"], str):
        out["models"] = [out["models"]]
    for key in ("epoch", "seq_len", "hidden_size"):
        if int(out[key]) < 1:
            raise UsageError(f"{key} must be a positive integer; got {out[key]}")
    if out["max_steps"] is not None and int(out["max_steps"]) < 1:
        raise UsageError(f"max_steps must be a positive integer or null; got {out['max_steps']}")
    if float(out["learning_rate"]) <= 0:
        raise UsageError(f"learning_rate must be positive; got {out['learning_rate']}")
    return out


def run_identity(cfg: dict, data_path, out_dir, generator: torch.Generator | int | None = None,
                 device="cpu") -> dict:
    """Train NormalRNN and RobustRNN to be the identity on collected gradients (Sec. 4.1).

    Writes identity.csv (model, step, mse, perf) and identity_perf.png into out_dir. Returns
    {"curves": {model: {"epoch", "step", "mse", "perf", "perf_nonzero": lists, "best_perf"}},
    "zero_fraction": share of exact zeros in the data, "summary": one line for the log}.
    `generator` may be a torch.Generator, an int seed, or None (then cfg["seed"]); every model
    starts from the same seed drawn once from it.
    """
    s = identity_settings(cfg)
    if not isinstance(generator, torch.Generator):
        seed = s["seed"] if generator is None else generator
        generator = torch.Generator().manual_seed(int(seed))
    base_seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    grad, _ = load_collected(data_path)
    seqs = make_sequences(grad, int(s["seq_len"]), device)
    curves = {}
    for name in s["models"]:
        model = make_model(name, int(s["hidden_size"]), s["mlp_dims"], s["rnn_type"],
                           torch.Generator().manual_seed(base_seed)).to(device)
        curves[name] = train_identity(
            model, seqs, int(s["epoch"]), float(s["learning_rate"]),
            None if s["max_steps"] is None else int(s["max_steps"]),
            bool(s["early_stop"]), float(s["gradient_clip"]))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_identity_csv(curves, out_dir / "identity.csv")
    plot_identity(curves, out_dir / "identity_perf.png")
    zero_fraction = float((seqs == 0).float().mean())
    summary = "; ".join(f"{n}: Perf {c['perf'][-1]:.3f} (best {c['best_perf']:.3f}, nonzero "
                        f"{c['perf_nonzero'][-1]:.3f}), MSE {c['mse'][-1]:.3g} after "
                        f"{c['step'][-1]} steps" for n, c in curves.items())
    return {"curves": curves, "zero_fraction": zero_fraction,
            "summary": f"{summary}; exact zeros in the data: {zero_fraction:.1%}"}


def write_identity_csv(results: dict, path) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["model", "step", "mse", "perf"])
        for name, c in results.items():
            for row in zip(c["step"], c["mse"], c["perf"]):
                writer.writerow([name, row[0], f"{row[1]:.6g}", f"{row[2]:.6g}"])


def plot_identity(results: dict, path) -> None:
    """Perf against Adam steps, one line per model (Sec. 4.1's figure)."""
    fig, ax = plt.subplots(figsize=(6, 4), tight_layout=True)
    for name, c in results.items():
        ax.plot(c["step"], c["perf"], marker="." if len(c["step"]) < 30 else None, label=name)
    ax.set_xlabel("training step")
    ax.set_ylabel("Perf (fraction within ±10%)")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(True)
    ax.legend()
    fig.savefig(path)
    plt.close(fig)


# ---------------------------------------------------------------- gradient histograms (Sec. 4)

def gradient_stats(grad) -> dict:
    """min / max / mean of |g| and of log10(|g| + 1e-8), for the collect run's log."""
    a = np.abs(np.asarray(grad, dtype=np.float64)).ravel()
    log_a = np.log10(a + HIST_EPS)
    return {"abs_min": a.min(), "abs_max": a.max(), "abs_mean": a.mean(),
            "log10_min": log_a.min(), "log10_max": log_a.max(), "log10_mean": log_a.mean()}


def plot_gradient_histograms(grad, out_dir, update=None) -> dict:
    """grad_hist.png: histograms of g, |g| and log10(|g| + 1e-8) (three panels).

    With `update` also update_hist.png, the histogram of log10(|update| + 1e-8).
    Returns {"grad": path} (and "update": path).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    g = np.asarray(grad, dtype=np.float64).ravel()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5), tight_layout=True)
    panels = ((g, "$g$", "counts"), (np.abs(g), "$|g|$", "counts"))
    for ax, (x, label, ylabel) in zip(axes, panels):
        ax.hist(x, bins=40)
        ax.set_yscale("log")                         # the mass sits in a spike around 0
        ax.set_xlabel(label)
        ax.set_ylabel(f"{ylabel} (log scale)")
        ax.grid(True)
    _log_hist(axes[2], g, "$\\log_{10}(|g|+10^{-8})$")
    axes[2].set_title(f"exact zeros (at -8): {np.mean(g == 0):.1%}")
    paths = {"grad": out_dir / "grad_hist.png"}
    fig.savefig(paths["grad"])
    plt.close(fig)
    if update is not None:
        fig, ax = plt.subplots(figsize=(5, 4.5), tight_layout=True)
        _log_hist(ax, np.asarray(update, dtype=np.float64).ravel(),
                  "$\\log_{10}(|\\Delta\\theta / lr|+10^{-8})$")
        paths["update"] = out_dir / "update_hist.png"
        fig.savefig(paths["update"])
        plt.close(fig)
    return paths


def _log_hist(ax, x, label):
    """Density histogram of log10(|x| + 1e-8) in half-decade bins."""
    log_x = np.log10(np.abs(x) + HIST_EPS)
    bins = np.arange(np.floor(log_x.min()), np.ceil(log_x.max()) + 0.5, 0.5)
    ax.hist(log_x, bins=bins if len(bins) > 1 else 10, density=True)
    ax.set_xlabel(label)
    ax.set_ylabel("probability density")
    ax.grid(True)
