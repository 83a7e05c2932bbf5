"""The identity experiment of Lan et al. (2023), Sec. 4.1: transforms, Perf, data, learning."""
import csv
import math

import numpy as np
import pytest
import torch

from common.cli import UsageError
from optim4rl.identity import (load_collected, make_model, make_sequences, identity_perf,
                               plot_gradient_histograms, robust_input, robust_output,
                               run_identity, train_identity)


pytestmark = pytest.mark.usefixtures("one_thread")


def rl_like_gradients(seed, steps, coords, zero_fraction=0.45):
    """Magnitudes log-uniform over 1e-8..1e-2, random signs, and a share of exact zeros (20% of
    collected Catch A2C gradients and 47% of big_dense_long ones were exactly 0)."""
    rng = np.random.default_rng(seed)
    g = 10.0 ** rng.uniform(-8, -2, (steps, coords)) * rng.choice([-1.0, 1.0], (steps, coords))
    return (g * (rng.random((steps, coords)) >= zero_fraction)).astype(np.float32)


def test_robust_input_is_sign_and_log_abs_with_tiny_eps():
    g = torch.tensor([2.0, -1e-3, 0.0])
    x = robust_input(g)
    assert x.shape == (3, 2)
    assert x[:, 0].tolist() == [1.0, -1.0, 0.0]
    assert x[0, 1].item() == pytest.approx(math.log(2.0))
    assert x[1, 1].item() == pytest.approx(math.log(1e-3), rel=1e-6)
    assert x[2, 1].item() == pytest.approx(math.log(1e-18), rel=1e-5)   # finite at g = 0


def test_robust_output_is_sign_times_exp():
    g = torch.tensor([3e-5, -7.0, 0.0])
    out = torch.tensor([0.0, math.log(2.0), 5.0])
    assert robust_output(g, out).tolist() == pytest.approx([1.0, -2.0, 0.0])
    # a perfect network (out = log|g|) gives back g, down to tiny magnitudes
    g = torch.tensor([1e-8, -4e-6, 0.25])
    assert torch.allclose(robust_output(g, robust_input(g)[:, 1]), g, rtol=1e-5, atol=0)


def test_models_wrap_lstm_and_mlp_in_the_transforms():
    g = torch.tensor([[1e-3, -2e-7, 0.0], [5e-2, 3e-9, -1e-5]])   # [S = 2 steps, K = 3 coordinates]
    robust = make_model("RobustRNN", generator=torch.Generator().manual_seed(3))
    normal = make_model("NormalRNN", generator=torch.Generator().manual_seed(3))
    assert robust.rnn.input_size == 2 and robust.rnn.hidden_size == 8
    assert [type(m).__name__ for m in robust.mlp] == ["Linear", "ReLU", "Linear", "ReLU", "Linear"]
    assert [m.out_features for m in robust.mlp if hasattr(m, "out_features")] == [16, 16, 1]
    with torch.no_grad():
        x, _ = robust.rnn(robust_input(g))
        expected = robust_output(g, robust.mlp(x).squeeze(-1))
        assert torch.equal(robust(g)[0], expected)
        x, _ = normal.rnn(g.unsqueeze(-1))
        assert torch.equal(normal(g)[0], normal.mlp(x).squeeze(-1))


def test_perf_counts_outputs_within_ten_percent():
    target = torch.tensor([1.0, -2.0, 1e-6, 0.5])
    pred = torch.tensor([1.09, -1.85, 0.95e-6, 0.6])        # the last is 20% off
    assert identity_perf(pred, target) == pytest.approx(0.75)
    assert identity_perf(-target, target) == 0.0             # the sign matters
    assert identity_perf(torch.tensor([0.0, 1e-9]), torch.tensor([0.0, 0.0])) == 0.5


def test_load_collected_and_sequences(tmp_path):
    grad = np.arange(12, dtype=np.float32).reshape(6, 2)   # T = 6 steps, K = 2 coordinates
    np.savez(tmp_path / "data.npz", grad=grad, update=-grad)
    g, u = load_collected(tmp_path / "data.npz")
    assert g.shape == (6, 2) and g.dtype == np.float32 and np.array_equal(u, -grad)
    seqs = make_sequences(g, 4)                  # one chunk of 4 steps; the last 2 are dropped
    assert seqs.shape == (1, 4, 2)
    assert seqs[0, :, 1].tolist() == [1.0, 3.0, 5.0, 7.0]    # coordinate 1 over time
    with pytest.raises(UsageError):
        make_sequences(g, 7)
    with pytest.raises(UsageError):
        load_collected(tmp_path / "missing.npz")
    np.savez(tmp_path / "bad.npz", x=grad)
    with pytest.raises(UsageError):
        load_collected(tmp_path / "bad.npz")


def test_robust_rnn_beats_normal_rnn_on_rl_like_gradients():
    seqs = make_sequences(rl_like_gradients(0, 50, 2000), 5)
    perf = {}
    for name in ("NormalRNN", "RobustRNN"):
        model = make_model(name, generator=torch.Generator().manual_seed(0))
        curve = train_identity(model, seqs, epochs=100, learning_rate=3e-3, max_steps=150)
        assert curve["step"][-1] == 150 and all(math.isfinite(m) for m in curve["mse"])
        perf[name] = curve["perf"][-1]
    # seeds 0-4 measured: RobustRNN 0.449-0.459, NormalRNN 0.004-0.006
    assert perf["RobustRNN"] > 0.4
    assert perf["NormalRNN"] < 0.1


def test_run_identity_writes_csv_and_plot(tmp_path):
    np.savez(tmp_path / "data.npz", grad=rl_like_gradients(1, 20, 200),
             update=np.zeros((20, 200), np.float32))
    cfg = {"meta_net": {"name": ["RobustRNN", "NormalRNN"], "rnn_type": "LSTM",
                        "mlp_dims": [16, 16], "hidden_size": 8},
           "optimizer": {"name": "Adam", "kwargs": {"learning_rate": 3e-3, "gradient_clip": -1}},
           "epoch": 3, "seq_len": 5, "early_stop": False}
    out = run_identity(cfg, tmp_path / "data.npz", tmp_path / "run", 7)
    again = run_identity(cfg, tmp_path / "data.npz", tmp_path / "run2",
                         torch.Generator().manual_seed(7))
    assert set(out["curves"]) == {"RobustRNN", "NormalRNN"}
    assert out["curves"]["RobustRNN"]["step"] == [4, 8, 12]       # 4 chunks per epoch
    assert out["curves"] == again["curves"]                        # same seed, same run
    with open(tmp_path / "run" / "identity.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["model", "step", "mse", "perf"] and len(rows) == 6
    assert (tmp_path / "run" / "identity_perf.png").stat().st_size > 1000
    with pytest.raises(UsageError):
        run_identity({"meta_net": {"name": "BigRNN"}}, tmp_path / "data.npz", tmp_path / "x", 0)


def test_gradient_histograms_png(tmp_path):
    grad = rl_like_gradients(2, 30, 100)
    paths = plot_gradient_histograms(grad, tmp_path / "collect", update=grad * 3)
    assert paths["grad"].name == "grad_hist.png" and paths["grad"].stat().st_size > 1000
    assert paths["update"].stat().st_size > 1000
