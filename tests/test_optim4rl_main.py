"""optim4rl/main.py end to end: the seed's interface, the log folder, errors with exit status 2,
collect -> identity, and the Catch learning test (a meta-trained Optim4RL beats the untrained one
at the same learning rate)."""
import json
import subprocess
import sys

import numpy as np
import pytest

from common.runs import check_run_dir
from helpers import ROOT, rows, run_in_process, run_train
from optim4rl.logs import final_return, is_finished_log
from optim4rl.main import config_index
from optim4rl.sweeper import Sweeper

CONFIGS = ROOT / "optim4rl" / "configs"


def write_config(path, base: str, edit) -> str:
    cfg = json.loads((CONFIGS / base).read_text())
    edit(cfg)
    path.write_text(json.dumps(cfg))
    return str(path)


def run(config, idx, root, *extra):
    return run_train("optim4rl", "--config_file", str(config), "--config_idx", str(idx),
                     "--logs-root", str(root), *extra)


def refused(*args):
    """optim4rl/train.py ARGS for an input it refuses before any work (in this process)."""
    return run_in_process("optim4rl.train", *args)


def test_sweeper_counts_the_seed_configs():
    out = subprocess.run([sys.executable, str(ROOT / "optim4rl" / "sweeper.py")], capture_output=True,
                         text=True, cwd=ROOT, check=True).stdout
    assert "The number of total combinations in sds_a2c.json: 12" in out
    assert "The number of total combinations in catch_lopt.json: 8" in out
    assert "The number of total combinations in grid_meta.json: 96" in out
    lopt = Sweeper(CONFIGS / "catch_lopt.json")
    first = lopt.generate_config_for_idx(1)["agent_optimizer"]
    assert first["name"] == "Optim4RL" and first["kwargs"]["param_load_path"] == "logs/catch_meta/1/param.pt"
    assert lopt.generate_config_for_idx(2)["agent_optimizer"]["kwargs"]["param_load_path"] == ""
    assert lopt.generate_config_for_idx(3)["agent_optimizer"]["name"] == "Adam"
    assert lopt.generate_config_for_idx(3)["agent_optimizer"]["kwargs"]["learning_rate"] == 1e-4


def test_a2c_run_writes_the_seed_and_collection_outputs(tmp_path):
    config = write_config(tmp_path / "tiny_a2c.json", "catch_a2c.json",
                          lambda c: c["env"][0].update(num_envs=[16], train_steps=[16000]))
    done = run(config, 2, tmp_path / "logs")
    assert done.returncode == 0, done.stderr
    folder = tmp_path / "logs" / "tiny_a2c" / "2"
    lines = (folder / "log.txt").read_text().strip().splitlines()
    assert "Memory usage:" in lines[-2] and "Time elapsed:" in lines[-1]
    table = rows(folder / "result_catch.csv")
    assert list(table[0]) == ["Env", "Agent", "Step", "Return"]
    steps = [int(r["Step"]) for r in table]
    assert steps == sorted(steps) and steps[-1] == 16000
    assert json.loads((folder / "config.json").read_text())["agent_optimizer"]["name"] == "Adam"
    assert check_run_dir(folder) == []
    # a finished run is never overwritten
    again = refused("--config_file", config, "--config_idx", "2", "--logs-root", str(tmp_path / "logs"))
    assert again.returncode == 2 and len(again.stderr.strip().splitlines()) == 1
    assert (folder / "result_catch.csv").exists()


@pytest.mark.parametrize("case", ["budget", "param_load_path", "optimizer", "agent", "file", "env_choice",
                                  "agent_choice"])
def test_bad_input_is_one_line_and_exit_2(tmp_path, case):
    config, idx = str(CONFIGS / "catch_lopt.json"), 1   # index 1 needs logs/catch_meta/1/param.pt
    extra = ["--set", "env.train_steps=-5"] if case == "budget" else []
    if case == "budget":
        config = str(CONFIGS / "catch_a2c.json")
    elif case == "optimizer":
        config = write_config(tmp_path / "bad.json", "catch_a2c.json",
                              lambda c: c["agent_optimizer"][0].update(name=["AdamW"]))
    elif case == "agent":
        config = write_config(tmp_path / "bad.json", "catch_a2c.json", lambda c: c["agent"][0].update(name=["DQN"]))
    elif case == "file":
        config = str(tmp_path / "missing.json")
    elif case == "env_choice":   # a section given as a plain choice
        config = write_config(tmp_path / "bad.json", "catch_a2c.json", lambda c: c.update(env=["catch"]))
    elif case == "agent_choice":
        config = write_config(tmp_path / "bad.json", "catch_a2c.json", lambda c: c.update(agent=["A2C"]))
    done = refused("--config_file", config, "--config_idx", str(idx), "--logs-root", str(tmp_path / "logs"), *extra)
    assert done.returncode == 2, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
    assert not (tmp_path / "logs").exists()          # a failed start leaves nothing behind
    expected = {"budget": "env.train_steps", "param_load_path": "param_load_path", "optimizer": "AdamW",
                "agent": "DQN", "file": "not found", "env_choice": "'env' must be a list of sections",
                "agent_choice": "'agent' must be a list of sections"}[case]
    assert expected in done.stderr


@pytest.mark.slow
def test_collect_then_identity(tmp_path):
    config = write_config(tmp_path / "tiny_collect.json", "catch_collect.json",
                          lambda c: c["env"][0].update(num_envs=[16], train_steps=[32000]))
    assert run(config, 1, tmp_path / "logs").returncode == 0
    folder = tmp_path / "logs" / "tiny_collect" / "1"
    data = np.load(folder / "data.npz")
    assert data["grad"].shape == data["update"].shape == (100, 141)   # 100 updates, every 100th of 14 084
    assert (folder / "grad_hist.png").exists()
    identity = write_config(tmp_path / "tiny_identity.json", "bdl_identity.json", lambda c: c.update(
        datapath=["logs/tiny_collect/1/data.npz"], epoch=[2], name=[["catch"]]))
    done = run(identity, 1, tmp_path / "logs")
    assert done.returncode == 0, done.stderr
    table = rows(tmp_path / "logs" / "tiny_identity" / "1" / "identity.csv")
    assert {r["model"] for r in table} == {"RobustRNN"} and len(table) >= 2


@pytest.mark.slow
def test_meta_trained_optimizer_beats_the_untrained_one_on_catch(tmp_path):
    """A short catch_meta (16 agents, 30 meta-iterations) and then fresh agents at lr 1e-4: the
    learned φ trains them to a high return, the untrained φ (sign-SGD at 1e-4) does not."""
    meta = write_config(tmp_path / "catch_meta.json", "catch_meta.json", lambda c: (
        c["env"][0].update(num_envs=[16], train_steps=[48000]), c["agent"][0].update(reset_interval=[16])))
    assert run(meta, 1, tmp_path / "logs").returncode == 0
    assert (tmp_path / "logs" / "catch_meta" / "1" / "param.pt").exists()
    lopt = write_config(tmp_path / "catch_lopt.json", "catch_lopt.json",
                        lambda c: c["env"][0].update(train_steps=[2e5]))
    finals = {}
    for idx in (1, 2):  # 1: the meta-trained φ, 2: the untrained φ, both at lr 1e-4
        assert run(lopt, idx, tmp_path / "logs").returncode == 0
        returns = [float(r["Return"]) for r in rows(tmp_path / "logs" / "catch_lopt" / str(idx) / "result_catch.csv")]
        finals[idx] = final_return(returns)
    assert finals[1] > 0.8 and finals[2] < 0.0, finals


def test_common_flags_override_the_decoded_config(tmp_path):
    out = tmp_path / "run"
    done = run_train("optim4rl", "--config", "catch_a2c", "--config_idx", "1", "--out-dir", str(out), "--seed", "7",
                     "--env", "small_dense_short", "--set", "env.train_steps=12800", "--set", "env.num_envs=8")
    assert done.returncode == 0, done.stderr
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["seed"] == 7 and cfg["env"]["name"] == ["small_dense_short"] and cfg["env"]["train_steps"] == 12800
    assert (out / "result_small_dense_short.csv").exists()
    for bad in (["--set", "env.nope=1"], ["--param-load-path", str(tmp_path / "missing.pt"), "--config_idx", "1"]):
        config = "catch_lopt" if "--param-load-path" in bad else "catch_a2c"
        failed = refused("--config", config, "--out-dir", str(tmp_path / "bad"), *bad)
        assert failed.returncode == 2 and len(failed.stderr.strip().splitlines()) == 1, failed.stderr
        assert not (tmp_path / "bad").exists()


def test_set_values_take_the_keys_types_and_an_index_below_1_wraps_as_the_reference(tmp_path):
    sds = Sweeper(CONFIGS / "sds_a2c.json")           # 12 combinations; reference: (i - 1) mod N
    assert [config_index(sds, i) for i in (-13, -12, -1, 0, 1, 13)] == [11, 12, 11, 12, 1, 13]
    out = tmp_path / "run"
    done = run_train("optim4rl", "--config", "catch_a2c", "--config_idx", "-1", "--out-dir", str(out),
                     "--set", "env.train_steps=1.28e4", "--set", "env.num_envs=8",
                     "--set", "agent_optimizer.kwargs.learning_rate=3e-3")
    assert done.returncode == 0, done.stderr
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["config_idx"] == 1 and cfg["agent_optimizer"]["name"] == "RMSProp"   # -1 + 2
    assert cfg["env"]["train_steps"] == 12800.0 and cfg["env"]["num_envs"] == 8
    assert cfg["agent_optimizer"]["kwargs"]["learning_rate"] == 0.003            # a number, not '3e-3'
    assert rows(out / "result_catch.csv")[-1]["Step"] == "12800"


def test_a_run_folder_is_written_only_by_the_same_run(tmp_path):
    out = tmp_path / "run"
    args = ["--config", "catch_a2c", "--config_idx", "2", "--set", "env.train_steps=3200", "--set", "env.num_envs=8",
            "--out-dir", str(out)]
    assert run_train("optim4rl", *args).returncode == 0
    log = out / "log.txt"      # an interrupted run of the same config: rerun from the start, as the reference
    log.write_text("\n".join(log.read_text().splitlines()[:-2]) + "\n")
    assert not is_finished_log(log)
    assert run_train("optim4rl", *args).returncode == 0 and is_finished_log(log)
    finished = refused(*args)
    assert finished.returncode == 2 and "--overwrite" in finished.stderr
    assert run_train("optim4rl", *args, "--overwrite").returncode == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    for other in (["--seed", "9"], ["--set", "discount=0.99"], ["--config_idx", "1"]):
        refusal = refused(*args, *other, "--overwrite")
        assert refusal.returncode == 2 and "another run" in refusal.stderr, refusal.stderr
        assert len(refusal.stderr.strip().splitlines()) == 1
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_a_diverging_run_stops_with_one_line_and_its_summary_says_so(tmp_path):
    out = tmp_path / "run"
    result = subprocess.run([sys.executable, str(ROOT / "optim4rl" / "main.py"), "--config_file", "catch_a2c",
                             "--config_idx", "1", "--smoke", "--set",
                             "agent_optimizer.kwargs.learning_rate=1.0e+30", "--out-dir", str(out)],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("optim4rl/main.py: error: training diverged")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "diverged" and summary["best_return"] is None
    assert "stopped: training diverged" in (out / "log.txt").read_text()


def test_the_seed_sds_family_pairs_each_learned_optimizer_with_its_meta_run():
    meta, lopt = Sweeper(CONFIGS / "sds_meta.json"), Sweeper(CONFIGS / "sds_lopt.json")
    assert meta.total_combinations == 24 and lopt.total_combinations == 6      # as the seed's files
    names = [meta.generate_config_for_idx(i)["agent_optimizer"]["name"] for i in range(1, 25)]
    assert {n: names.count(n) for n in set(names)} == {"Optim4RL": 8, "LinearOptim": 8, "L2LGD2": 8}
    for i in range(1, 7):
        optimizer = lopt.generate_config_for_idx(i)["agent_optimizer"]
        meta_idx = int(optimizer["kwargs"]["param_load_path"].split("/")[2])
        assert meta.generate_config_for_idx(meta_idx)["agent_optimizer"]["name"] == optimizer["name"]


def test_update_against_gradient_slope_tells_sign_sgd_from_sgd(tmp_path):
    from optim4rl.plots import plot_update_vs_gradient, update_vs_gradient
    grad = np.random.default_rng(0).lognormal(-6, 2, size=(50, 40)) * np.sign(np.random.default_rng(1).normal(size=(50, 40)))
    for name, update, slope in (("sign", 14.8 * np.sign(grad), 0.0), ("sgd", grad, 1.0)):
        (tmp_path / name).mkdir()
        np.savez(tmp_path / name / "data.npz", grad=grad, update=update)
        stats = update_vs_gradient(tmp_path / name)
        assert stats["slope"] == pytest.approx(slope, abs=1e-6) and stats["points"] == grad.size
    assert update_vs_gradient(tmp_path / "sign")["median_update"] == pytest.approx(14.8)
    out = plot_update_vs_gradient([tmp_path / "sign", tmp_path / "sgd"], ["sign", "sgd"], tmp_path / "phi.png")
    assert out.stat().st_size > 1000


def kill_when_logged(args: list[str], out, text: str, env: dict, timeout: float) -> None:
    """Start `optim4rl/main.py ARGS --out-dir OUT` and kill it (-9: no clean-up runs) once its
    log.txt holds `text` (or after `timeout` seconds)."""
    import signal
    import time
    proc = subprocess.Popen([sys.executable, str(ROOT / "optim4rl" / "main.py"), *args, "--out-dir", str(out)],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + timeout
    while time.time() < deadline and text not in ((out / "log.txt").read_text()
                                                  if (out / "log.txt").exists() else ""):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


@pytest.mark.slow
def test_meta_training_killed_with_sigkill_resumes_exactly(tmp_path):
    import os

    import torch
    args = ["--config", "catch_meta", "--set", "env.num_envs=8", "--set", "env.train_steps=24000",
            "--set", "agent.reset_interval=8", "--checkpoint-every", "3"]          # 30 meta-iterations
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    one_thread = {**os.environ, "OMP_NUM_THREADS": "1"}         # the resume below runs with this shell's default
    assert run_train("optim4rl", *args, "--out-dir", str(whole), env=one_thread).returncode == 0
    assert not (whole / "checkpoint.pt").exists()                                 # a finished run keeps none
    kill_when_logged(args, cut, "Iteration 10/", env=one_thread, timeout=300)
    assert (cut / "checkpoint.pt").exists() and not is_finished_log(cut / "log.txt"), "nothing was tested"
    for wrong in (["--seed", "5"], ["--overwrite"]):                               # not this run: refused
        refused = run_train("optim4rl", *args, *wrong, "--resume", "--out-dir", str(cut))
        assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    kept = {p.name: p.read_bytes() for p in cut.iterdir()}
    forgot = run_train("optim4rl", *args, "--out-dir", str(cut))                  # the same command, no --resume
    assert forgot.returncode == 2 and "--resume" in forgot.stderr, forgot.stderr     # used to restart, log and φ lost
    assert {p.name: p.read_bytes() for p in cut.iterdir()} == kept
    (cut / ".checkpoint.pt.tmp-1").write_bytes(b"half a file")   # as a kill -9 while writing one leaves
    resumed = run_train("optim4rl", *args, "--resume", "--out-dir", str(cut), env={**os.environ, "OMP_NUM_THREADS": "2"})
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resumed after iteration" in (cut / "log.txt").read_text()
    assert not (cut / ".checkpoint.pt.tmp-1").exists()
    log = (cut / "log.txt").read_text()   # cut back to the checkpoint: each iteration logged once, in order
    logged = [int(line.split("Iteration ")[1].split("/")[0]) for line in log.splitlines() if "Iteration " in line]
    assert logged == list(range(5, 31, 5)), logged   # display_interval 5; killed after 10, checkpoint at 9
    assert "(1 torch threads, as the killed run)" in (cut / "log.txt").read_text()
    assert (cut / "result_catch.csv").read_text() == (whole / "result_catch.csv").read_text()
    a, b = (torch.load(d / "param.pt") for d in (whole, cut))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    again = run_train("optim4rl", *args, "--resume", "--out-dir", str(cut))        # finished: nothing to resume
    assert again.returncode == 2 and "finished" in again.stderr


@pytest.mark.slow
def test_a_run_takes_one_torch_thread_whatever_the_shell_and_more_only_when_asked(tmp_path):
    """--threads (default 1, as every paper here) fixes the run's CPU sums: OMP_NUM_THREADS does not
    change φ; --threads 2 splits them differently, which moves φ only by float rounding here
    (README: measured 1.5e-8 after 20 meta-iterations)."""
    import os

    import torch
    args = ["--config", "catch_meta", "--set", "env.num_envs=8", "--set", "env.train_steps=8000"]  # 10 iterations
    for name, shell, extra in (("one", "1", []), ("omp2", "2", []), ("two", "1", ["--threads", "2"])):
        done = run_train("optim4rl", *args, *extra, "--out-dir", str(tmp_path / name),
                         env={**os.environ, "OMP_NUM_THREADS": shell, "MKL_NUM_THREADS": shell})
        assert done.returncode == 0, done.stderr[-2000:]
    summaries = {name: json.loads((tmp_path / name / "summary.json").read_text()) for name in ("one", "omp2", "two")}
    assert [summaries[n]["torch_threads"] for n in ("one", "omp2", "two")] == [1, 1, 2]
    phi = {name: torch.load(tmp_path / name / "param.pt") for name in ("one", "omp2", "two")}
    assert all(torch.equal(phi["one"][k], phi["omp2"][k]) for k in phi["one"])
    assert (tmp_path / "one" / "result_catch.csv").read_text() == (tmp_path / "omp2" / "result_catch.csv").read_text()
    assert all(torch.allclose(phi["one"][k], phi["two"][k], rtol=0, atol=1e-5) for k in phi["one"])


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs a CUDA device")
def test_meta_training_testing_and_big_maps_run_on_cuda(tmp_path):
    meta = run_train("optim4rl", "--config", "catch_meta", "--set", "env.num_envs=8", "--set", "env.train_steps=8000",
                     "--device", "cuda", "--checkpoint-every", "2", "--out-dir", str(tmp_path / "meta"))
    assert meta.returncode == 0, meta.stderr[-2000:]
    assert "device cuda" in (tmp_path / "meta" / "log.txt").read_text()
    lopt = run_train("optim4rl", "--config", "catch_lopt", "--config_idx", "1", "--set", "env.train_steps=20000",
                     "--param-load-path", str(tmp_path / "meta" / "param.pt"), "--device", "cuda",
                     "--out-dir", str(tmp_path / "lopt"))
    assert lopt.returncode == 0, lopt.stderr[-2000:]
    big = run_train("optim4rl", "--config", "bdl_collect", "--smoke", "--set", "env.train_steps=20000", "--device", "cuda",
                    "--out-dir", str(tmp_path / "big"))
    assert big.returncode == 0, big.stderr[-2000:]
    assert np.load(tmp_path / "big" / "data.npz")["grad"].shape[0] > 0
    ppo = run_train("optim4rl", "--config", "inverted_double_pendulum_lopt", "--config_idx", "2", "--device", "cuda",
                    "--out-dir", str(tmp_path / "ppo"))
    assert ppo.returncode == 2 and "CPU only" in ppo.stderr and not (tmp_path / "ppo").exists()


def test_meta_training_killed_before_its_first_checkpoint_restarts_with_the_same_command(tmp_path):
    """Nothing to resume and nothing to lose: the same command starts it afresh (issue 34, item 2);
    --resume says there is no checkpoint, and a start of another config is still refused."""
    import os
    args = ["--config", "catch_meta", "--set", "env.num_envs=8", "--set", "env.train_steps=16000",
            "--set", "display_interval=1", "--checkpoint-every", "100"]        # 20 meta-iterations, no checkpoint
    out = tmp_path / "run"
    kill_when_logged(args, out, "Iteration 2/", env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=120)
    assert not is_finished_log(out / "log.txt") and not (out / "checkpoint.pt").exists(), "nothing was tested"
    resumed = run_train("optim4rl", *args, "--resume", "--out-dir", str(out))
    assert resumed.returncode == 2 and "no checkpoint.pt" in resumed.stderr and "without --resume" in resumed.stderr
    other = run_train("optim4rl", *args, "--seed", "5", "--out-dir", str(out))
    assert other.returncode == 2 and "another run" in other.stderr, other.stderr
    again = run_train("optim4rl", *args, "--out-dir", str(out))
    assert again.returncode == 0, again.stderr[-2000:]
    assert is_finished_log(out / "log.txt") and check_run_dir(out) == []
    assert (out / "log.txt").read_text().count("Iteration 1/20") == 1   # a fresh log, not the killed one's
