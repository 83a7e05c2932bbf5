import csv
import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
import time

import pytest
import torch
from helpers import tensor_data_offset

from common.cli import Diverged, UsageError
from common.runs import (RunDir, check_out_dir, check_run_dir, default_run_dir, load_checkpoint,
                         require_finite, save_checkpoint, unlock_run_dir)


def test_default_run_dir_layout_and_no_collisions(tmp_path):
    first = default_run_dir("searl", "ALE/Pong-v5", 7, root=tmp_path)
    assert first.parent == tmp_path / "searl"
    assert first.name.startswith("ALE-Pong-v5__7__")
    first.mkdir(parents=True)
    second = default_run_dir("searl", "ALE/Pong-v5", 7, root=tmp_path)
    assert second != first and not second.exists()


def test_refuses_to_overwrite_an_existing_run(tmp_path):
    run = RunDir(tmp_path / "run")
    run.write_config({"seed": 1})
    before = (tmp_path / "run" / "config.json").read_text()
    with pytest.raises(UsageError, match="already holds a run; pass --resume"):
        RunDir(tmp_path / "run")
    assert (tmp_path / "run" / "config.json").read_text() == before


def test_resume_needs_a_checkpoint(tmp_path):
    RunDir(tmp_path / "run")
    with pytest.raises(UsageError, match="--resume: no checkpoint"):
        RunDir(tmp_path / "run", resume=True)
    with pytest.raises(UsageError, match="--resume: no checkpoint"):
        RunDir(tmp_path / "never-made", resume=True)
    assert not (tmp_path / "never-made").exists()


def test_config_records_versions_and_survives_resume(tmp_path):
    run = RunDir(tmp_path / "run")
    run.write_config({"seed": 1, "env": "Pendulum-v1"})
    run.save_checkpoint({"step": 1})
    RunDir(tmp_path / "run", resume=True).write_config({"seed": 2})
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["seed"] == 1 and config["_run"]["versions"]["torch"] == torch.__version__


def read_rows(path):
    with open(path, newline="") as f:
        return list(csv.reader(f))


def test_metrics_header_once_flushed_rows_and_resume_truncation(tmp_path):
    run = RunDir(tmp_path / "run")
    metrics = run.metrics()
    for step in range(4):
        metrics.write({"env_steps": step * 10, "return": torch.tensor(step * 0.5)})
        # flushed: a reader sees the row before the writer is closed
        assert len(read_rows(tmp_path / "run" / "metrics.csv")) == step + 2
    assert read_rows(tmp_path / "run" / "metrics.csv")[0] == ["env_steps", "return"]
    # the run crashed after the checkpoint taken at row 2; rows 3-4 are dropped on resume
    run.write_config({"seed": 1})
    run.save_checkpoint({"metric_rows": 2})
    resumed = RunDir(tmp_path / "run", resume=True)
    metrics = resumed.metrics(keep_rows=resumed.load_checkpoint()["metric_rows"])
    metrics.write({"env_steps": 20, "return": 9.0})
    rows = read_rows(tmp_path / "run" / "metrics.csv")
    assert rows == [["env_steps", "return"], ["0", "0.0"], ["10", "0.5"], ["20", "9.0"]]


def test_metrics_must_have_env_steps_and_fixed_columns(tmp_path):
    metrics = RunDir(tmp_path / "run").metrics()
    with pytest.raises(ValueError, match="env_steps"):
        metrics.write({"return": 1.0})
    metrics.write({"env_steps": 1, "return": 1.0})
    with pytest.raises(ValueError, match="not in header"):
        metrics.write({"env_steps": 2, "surprise": 1.0})


def test_summary_needs_the_collection_keys(tmp_path):
    run = RunDir(tmp_path / "run")
    with pytest.raises(ValueError, match="missing keys"):
        run.write_summary({"env_steps": 1})
    run.write_summary({"env_steps": 10, "test_steps": 0, "final_return": -3.5,
                       "best_return": -1.0, "wall_seconds": 2.0, "generations": 3})
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["generations"] == 3


def test_check_run_dir_lists_what_is_missing(tmp_path):
    run = RunDir(tmp_path / "run")
    problems = check_run_dir(run.path)
    assert any("config.json" in p for p in problems) and any("PNG" in p for p in problems)
    run.write_config({"env": "CartPole-v1"})
    run.metrics().write({"env_steps": 5})
    run.write_summary({"env_steps": 5, "test_steps": 0, "final_return": 1.0,
                       "best_return": 1.0, "wall_seconds": 0.1})
    (run.path / "curve.png").write_bytes(b"\x89PNG")
    assert check_run_dir(run.path) == []
    out = subprocess.run([sys.executable, "-m", "common.runs", "check", str(run.path)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.split("\t")[:3] == ["CartPole-v1", "5", "1"]


def test_check_reports_a_summary_without_status_or_with_a_null_return_in_one_line(tmp_path, capsys):
    """A summary with no status and a null return (written by hand or by an old version) used to
    crash `python -m common.runs check`; it is a folder with problems: exit 1, one line."""
    from common.runs import _check_main
    run = RunDir(tmp_path / "run")
    run.write_config({"env": "CartPole-v1"})
    run.metrics().write({"env_steps": 5})
    (run.path / "curve.png").write_bytes(b"\x89PNG")
    (run.path / "summary.json").write_text(json.dumps(
        {"env_steps": 5, "test_steps": 0, "final_return": None, "best_return": 1.0, "wall_seconds": 0.1}))
    problems = check_run_dir(run.path)
    assert any("'status'" in p for p in problems) and any("'run_id'" in p for p in problems)
    assert any("final_return is not a number" in p for p in problems)
    assert _check_main(["check", str(run.path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_checkpoint_round_trip_keeps_numpy_and_rng_state(tmp_path):
    import numpy as np
    rng = np.random.default_rng(0)
    state = {"w": torch.arange(3.0), "buffer": np.arange(5), "rng": rng.bit_generator.state}
    save_checkpoint(state, tmp_path / "ck.pt")
    loaded = load_checkpoint(tmp_path / "ck.pt")
    assert torch.equal(loaded["w"], state["w"]) and loaded["buffer"].tolist() == [0, 1, 2, 3, 4]
    assert loaded["rng"] == state["rng"]


def test_failed_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    save_checkpoint({"step": 1}, tmp_path / "ck.pt")

    def crash_midway(obj, f):
        f.write(b"partial bytes")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", crash_midway)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint({"step": 2}, tmp_path / "ck.pt")
    monkeypatch.undo()
    assert load_checkpoint(tmp_path / "ck.pt") == {"step": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["ck.pt"]  # no temporary file left


WRITER = textwrap.dedent("""
    import sys, torch
    from common.runs import save_checkpoint
    big = torch.zeros(4_000_000)  # 16 MB: a write takes long enough to be interrupted
    step = 0
    while True:
        step += 1
        big[0] = step
        save_checkpoint({"step": step, "big": big}, sys.argv[1])
        print(step, flush=True)
""")


def test_checkpoint_survives_a_process_killed_while_saving(tmp_path):
    path = tmp_path / "ck.pt"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE,
                            text=True)
    try:
        for _ in range(3):  # let a few saves complete, then kill it somewhere in the next one
            proc.stdout.readline()
        time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    loaded = load_checkpoint(path)
    assert loaded["step"] >= 3 and loaded["big"][0] == loaded["step"]
    assert loaded["big"].shape == (4_000_000,)


def test_reopen_run_refuses_config_changes_and_extends_the_budget(tmp_path):
    import argparse
    from common.runs import reopen_run

    run = RunDir(tmp_path / "run")
    run.write_config({"env": "Pendulum-v1", "total_steps": 100})
    run.save_checkpoint({})

    def args(**given):
        return argparse.Namespace(out_dir=str(tmp_path / "run"), config=None, overrides=[],
                                  smoke=False, **given)
    reopened, config = reopen_run(args(total_steps=300), ("env", "total_steps"), "total_steps")
    assert reopened.resume and config["total_steps"] == 300 and config["env"] == "Pendulum-v1"
    with pytest.raises(UsageError, match=r"only the budget may change \(got --env\)"):
        reopen_run(args(env="CartPole-v1"), ("env", "total_steps"), "total_steps")
    with pytest.raises(UsageError, match="--resume needs --out-dir"):
        reopen_run(argparse.Namespace(out_dir=None), (), "total_steps")


# -- checkpoints that fail cleanly, folders that cannot be made, runs that diverge ---------------
@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_a_damaged_checkpoint_is_one_usage_error_naming_the_file(tmp_path, damage):
    path = save_checkpoint({"weights": torch.arange(1000.0), "step": 3}, tmp_path / "latest.pt")
    data = path.read_bytes()
    path.write_bytes({"truncate": data[: len(data) // 2], "garbage": b"not a checkpoint" * 50,
                      "empty": b""}[damage])
    with pytest.raises(UsageError) as error:
        load_checkpoint(path)
    message = str(error.value)
    assert str(path) in message and "start a new run" in message and "\n" not in message


def test_a_flipped_byte_inside_tensor_data_is_refused_not_loaded(tmp_path):
    """torch.load reads tensor bytes unchecked: without the CRC check this loads as another
    number. Every byte of the record is tried at one place: the first, a middle and the last."""
    weights = torch.arange(1000.0)
    path = save_checkpoint({"weights": weights, "step": 3}, tmp_path / "latest.pt")
    start, clean = tensor_data_offset(path), path.read_bytes()
    for offset in (start, start + 2000, start + 4 * 1000 - 1):
        damaged = bytearray(clean)
        damaged[offset] ^= 0x01
        path.write_bytes(bytes(damaged))
        with pytest.raises(UsageError, match=r"is damaged \(checksum mismatch in .*data/0\)") as error:
            load_checkpoint(path)
        assert str(path) in str(error.value) and "\n" not in str(error.value)
        path.write_bytes(clean)
        assert torch.equal(load_checkpoint(path)["weights"], weights)


def test_a_missing_checkpoint_file_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "nope.pt")


def test_an_unwritable_place_is_refused_before_anything_is_made(tmp_path):
    with pytest.raises(UsageError, match="cannot create run folder /proc/x: /proc is not a writable folder"):
        check_out_dir("/proc/x")
    (tmp_path / "file").write_text("x")
    with pytest.raises(UsageError, match="exists and is not a folder"):
        RunDir(tmp_path / "file")
    with pytest.raises(UsageError, match="is not a writable folder"):
        RunDir(tmp_path / "file" / "run")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_a_non_finite_return_is_written_as_a_divergence_never_a_result(tmp_path):
    run = RunDir(tmp_path / "run")
    run.write_config({"seed": 1})
    summary = {"env_steps": 500, "test_steps": 0, "final_return": float("nan"),
               "best_return": 3.0, "wall_seconds": 1.0}
    with pytest.raises(Diverged, match="final_return not finite") as error:
        run.write_summary(summary)
    written = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert written["status"] == "diverged" and written["diverged_at_step"] == 500
    assert written["final_return"] is None and written["best_return"] == 3.0
    assert written["run_id"] == json.loads((tmp_path / "run" / "config.json").read_text())["_run"]["id"]
    assert "summary.json" in str(error.value) and "checkpoint kept" not in str(error.value)
    assert any("diverged" in problem for problem in check_run_dir(tmp_path / "run"))


def test_require_finite_names_what_and_when():
    require_finite("critic loss", torch.tensor([1.0, 2.0]), 10)
    with pytest.raises(Diverged, match="at env step 10: critic loss is not finite"):
        require_finite("critic loss", torch.tensor([1.0, float("inf")]), 10)
    with pytest.raises(Diverged):
        require_finite("return", float("nan"))


def test_check_reports_files_of_different_runs(tmp_path):
    summary = {"env_steps": 1, "test_steps": 0, "final_return": 1.0, "best_return": 1.0,
               "wall_seconds": 1.0}
    for name in ("a", "b"):
        run = RunDir(tmp_path / name)
        run.write_config({"seed": 1})
        run.write_summary(summary)
        (tmp_path / name / "metrics.csv").write_text("env_steps\n1\n")
        (tmp_path / name / "plot.png").write_bytes(b"png")
    assert check_run_dir(tmp_path / "a") == []
    (tmp_path / "a" / "summary.json").write_bytes((tmp_path / "b" / "summary.json").read_bytes())
    assert any("files of different runs" in p for p in check_run_dir(tmp_path / "a"))


def test_weights_only_loading_refuses_pickled_objects_in_one_line(tmp_path):
    """load_checkpoint(weights_only=True), for files of plain data: a numpy array inside is a
    UsageError naming the file; plain tensors and lists load."""
    import numpy as np

    from common.runs import load_checkpoint, save_checkpoint

    save_checkpoint({"w": torch.ones(2), "bounds": [1.0, 2.0]}, tmp_path / "plain.pt")
    assert load_checkpoint(tmp_path / "plain.pt", weights_only=True)["bounds"] == [1.0, 2.0]
    save_checkpoint({"bounds": np.ones(2)}, tmp_path / "pickled.pt")
    assert load_checkpoint(tmp_path / "pickled.pt")["bounds"].shape == (2,)
    with pytest.raises(UsageError, match="pickled.pt"):
        load_checkpoint(tmp_path / "pickled.pt", weights_only=True)


def test_a_start_stopped_before_its_first_checkpoint_restarts_with_the_same_config(tmp_path):
    """Killed before its first checkpoint: the same config starts afresh in that folder (nothing
    to resume, nothing to lose); another config, a checkpoint, or any other file is refused."""
    config = {"env": "Pendulum-v1", "seed": 3, "hidden": [64, 64]}
    folder = tmp_path / "run"
    first = RunDir(folder, config=config)
    first.write_config(config)
    first.metrics().write({"env_steps": 100, "return": -5.0})
    (folder / "checkpoints" / ".latest.pt.tmp-123").write_bytes(b"half")   # the kill mid-write
    unlock_run_dir(folder)
    again = RunDir(folder, config=config)
    assert sorted(p.name for p in folder.rglob("*")) == ["checkpoints"]   # the stuck start is gone
    again.write_config(config)
    unlock_run_dir(folder)
    with pytest.raises(UsageError, match="already holds a run"):
        RunDir(folder, config={**config, "seed": 4})
    with pytest.raises(UsageError, match="already holds a run"):
        RunDir(folder)   # no config given: as before, refused
    (folder / "notes.txt").write_text("mine")
    with pytest.raises(UsageError, match="already holds a run"):
        RunDir(folder, config=config)
    (folder / "notes.txt").unlink()
    (folder / "checkpoints" / "latest.pt").write_bytes(b"x")
    with pytest.raises(UsageError, match="already holds a run"):
        RunDir(folder, config=config)
    assert (folder / "config.json").is_file()


def test_a_start_killed_before_its_config_json_leaves_a_folder_any_run_may_use(tmp_path):
    folder = tmp_path / "run"
    (folder / "checkpoints").mkdir(parents=True)   # RunDir made it, then the kill
    RunDir(folder, config={"seed": 1}).write_config({"seed": 1})
    unlock_run_dir(folder)
    assert (folder / "config.json").is_file()


def test_a_live_start_before_its_first_checkpoint_is_never_cleared(tmp_path):
    config = {"seed": 1}
    folder = tmp_path / "run"
    live = RunDir(folder, config=config)   # this process holds the lock: stands for a live run
    live.write_config(config)
    live.metrics().write({"env_steps": 1})
    code = ("from common.runs import RunDir; from common.cli import run_main\n"
            f"run_main(lambda argv: RunDir({str(folder)!r}, config={config!r}), prog='t')")
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           cwd=Path(__file__).resolve().parents[1])
    assert other.returncode == 2 and "in use by another process" in other.stderr, other.stderr
    assert (folder / "metrics.csv").read_text().count("\n") == 2
    unlock_run_dir(folder)


def test_resume_refuses_a_config_json_edited_since_the_checkpoint(tmp_path):
    run = RunDir(tmp_path / "run")
    run.write_config({"sigma": 0.1})
    run.save_checkpoint({"step": 3})
    unlock_run_dir(run.path)
    assert RunDir(run.path, resume=True).load_checkpoint() == {"step": 3}   # the hash is not in the state
    unlock_run_dir(run.path)
    text = (run.path / "config.json").read_text()
    (run.path / "config.json").write_text(text.replace("0.1", "0.5"))
    with pytest.raises(UsageError, match="config.json was changed or removed since the checkpoint"):
        RunDir(run.path, resume=True).load_checkpoint()
    unlock_run_dir(run.path)
    (run.path / "config.json").unlink()
    with pytest.raises(UsageError, match="changed or removed"):
        RunDir(run.path, resume=True).load_checkpoint()


def test_resume_reads_only_the_folders_own_checkpoint(tmp_path):
    """Two runs of one config differ in config.json's run id, so in its hash: a checkpoint copied
    from the other run, or a torch file of something else, is refused in one line."""
    import shutil

    runs = {}
    for name in ("a", "b"):
        runs[name] = RunDir(tmp_path / name)
        runs[name].write_config({"seed": 1})
        runs[name].save_checkpoint({"step": name})
        unlock_run_dir(runs[name].path)
    assert RunDir(runs["a"].path, resume=True).load_checkpoint() == {"step": "a"}
    unlock_run_dir(runs["a"].path)
    shutil.copyfile(runs["b"].checkpoints / "latest.pt", runs["a"].checkpoints / "latest.pt")
    with pytest.raises(UsageError, match="or that checkpoint is another run's"):
        RunDir(runs["a"].path, resume=True).load_checkpoint()
    unlock_run_dir(runs["a"].path)
    for foreign in ({"step": 3}, [1, 2], torch.zeros(2)):
        torch.save(foreign, runs["a"].checkpoints / "latest.pt")
        with pytest.raises(UsageError, match="is not a checkpoint of the run in"):
            RunDir(runs["a"].path, resume=True).load_checkpoint()
        unlock_run_dir(runs["a"].path)
    with pytest.raises(ValueError, match="saved after"):   # a run writes config.json first
        RunDir(tmp_path / "c").save_checkpoint({"step": 1})
    unlock_run_dir(tmp_path / "c")


def test_an_atomic_write_that_fails_keeps_the_old_file_and_leaves_no_temporary_file(tmp_path):
    import errno

    from common.cli import WriteFailed
    from common.runs import replace_atomically, save_checkpoint, write_json_atomic

    path = tmp_path / "summary.json"
    write_json_atomic(path, {"status": "running"})

    def fails(f):
        f.write("{half")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError):
        replace_atomically(path, fails)
    assert json.loads(path.read_text()) == {"status": "running"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.json"]

    class Unsaveable:   # torch.save reports a full disk as a RuntimeError from its writer
        def __reduce__(self):
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0")

    save_checkpoint({"step": 1}, tmp_path / "latest.pt")
    with pytest.raises(WriteFailed, match="cannot write .*latest.pt"):
        save_checkpoint({"step": 2, "bad": Unsaveable()}, tmp_path / "latest.pt")
    assert torch.load(tmp_path / "latest.pt")["step"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest.pt", "summary.json"]
