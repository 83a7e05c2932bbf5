import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent("""
    import sys
    from common.cli import (ArgumentParser, UsageError, add_common_args, add_parallel_args,
                            run_main)

    def main(argv):
        parser = ArgumentParser(prog="train.py")
        add_common_args(parser, config_aliases=("--config_file",))
        add_parallel_args(parser)
        parser.add_argument("--total-steps", type=int, default=100)
        args = parser.parse_args(argv)
        if args.total_steps < 0:
            raise UsageError(f"--total-steps must be >= 0, got {args.total_steps}")
        given = {k: v for k, v in vars(args).items() if k in ("env", "seed")}
        print("ok", given, args.config, args.overrides)

    run_main(main, prog="train.py")
""")


def run(*args):
    return subprocess.run([sys.executable, "-c", SCRIPT, *args], capture_output=True, text=True,
                          timeout=60)


def test_usage_error_is_one_line_and_exit_status_2():
    result = run("--total-steps", "-5")
    assert result.returncode == 2
    assert result.stderr == "train.py: error: --total-steps must be >= 0, got -5\n"
    assert "Traceback" not in result.stderr


def test_bad_flag_is_one_line_and_exit_status_2():
    result = run("--no-such-flag")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "unrecognized arguments" in result.stderr


def test_unknown_backend_is_one_line_and_exit_status_2():
    result = run("--backend", "threads")
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "invalid choice: 'threads'" in result.stderr


def test_only_typed_flags_reach_the_config_and_aliases_work():
    result = run("--seed", "3", "--config_file", "x.yaml", "--set", "lr=1")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok {'seed': 3} x.yaml ['lr=1']"


def test_help_documents_the_common_flags():
    result = run("--help")
    assert result.returncode == 0
    for flag in ("--env", "--seed", "--device", "--out-dir", "--config", "--config_file",
                 "--set", "--resume", "--smoke", "--workers", "--backend", "--ray-address"):
        assert flag in result.stdout


def test_workers_below_one_are_refused_by_the_parser():
    for value in ("0", "-1", "two"):
        result = run("--workers", value)
        assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
        assert "--workers" in result.stderr


def test_a_diverged_run_is_one_line_and_exit_status_1():
    script = textwrap.dedent("""
        from common.cli import Diverged, run_main
        def main(argv):
            raise Diverged("critic loss is not finite", 1200)
        run_main(main, prog="train.py")
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 1
    assert result.stderr == "train.py: error: training diverged at env step 1200: critic loss is not finite\n"


def _as_a_terminal_would() -> None:
    """ctrl-C's default action in the run, as a shell gives a foreground job: a test session
    started in the background (`pytest ... &` in a script) inherits SIGINT ignored, and the run
    would then never see the ctrl-C this test sends."""
    import signal
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _interrupt_a_run(tmp_path, command: list[str], checkpoint: str, how: str):
    """Start a real run, wait for its first checkpoint, stop it as a terminal would (ctrl-C: SIGINT
    to the whole process group, pool workers included) or as a scheduler would (SIGTERM to the
    run's process), and return the finished process and its stderr."""
    import os
    import signal
    import time

    from helpers import ROOT
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, str(ROOT / command[0]), *command[1:], "--out-dir", str(out)],
                            cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"},
                            start_new_session=True, preexec_fn=_as_a_terminal_would)
    deadline = time.time() + 120
    while not (out / checkpoint).is_file() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    assert proc.poll() is None, "the run ended before it could be interrupted"
    if how == "ctrl-C":
        os.killpg(proc.pid, signal.SIGINT)
    else:
        proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    return proc, err, out


def test_ctrl_c_on_a_pool_run_is_one_line_naming_the_folder_and_resume(tmp_path):
    """ctrl-C used to print a 53-144-line traceback (the run's and each pool worker's) and say
    nothing of --resume."""
    proc, err, out = _interrupt_a_run(
        tmp_path, ["synthetic_envs/train.py", "--smoke", "--iterations", "400", "--workers", "2", "--backend",
                   "process", "--no-plots"], "checkpoints/latest.pt", "ctrl-C")
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err[-3000:]
    last = [line for line in err.replace("\r", "\n").splitlines() if line.strip()][-1]
    assert "interrupted (ctrl-C)" in last and f"--resume --out-dir {out}" in last, last


def test_sigterm_is_one_line_naming_the_folder_and_resume(tmp_path):
    proc, err, out = _interrupt_a_run(
        tmp_path, ["steve/train.py", "experiments/goodruns/pendulum/ddpg0.json", "--smoke", "--frames", "20000",
                   "--eval-every", "500", "--backup-every", "500", "--no-plots"], "checkpoints/backup.pt", "SIGTERM")
    assert proc.returncode == 143, err[-2000:]
    assert "Traceback" not in err, err[-3000:]
    last = [line for line in err.replace("\r", "\n").splitlines() if line.strip()][-1]
    assert "interrupted (SIGTERM)" in last and f"--resume --out-dir {out}" in last, last


@pytest.mark.parametrize("command, checkpoint, how", [
    (["searl/train.py", "--smoke", "--total-steps", "400000", "--no-plots"], "checkpoints/latest.pt", "SIGTERM"),
    (["pb2_procgen/train.py", "--smoke", "--env", "toy", "--max_budget", "400000", "--no-plots"],
     "checkpoints/latest.pt", "ctrl-C"),
    (["optim4rl/main.py", "--config", "catch_meta", "--set", "env.num_envs=8", "--set", "env.train_steps=240000",
      "--checkpoint-every", "1"], "checkpoint.pt", "ctrl-C"),
], ids=["searl", "pb2_procgen", "optim4rl"])
def test_the_other_papers_stop_in_one_line_too(tmp_path, command, checkpoint, how):
    """The two tests above for SEARL, PB2 and optim4rl: one line naming the folder and the
    --resume that continues it, the conventional exit status, a checkpoint that loads."""
    from common.runs import load_checkpoint
    proc, err, out = _interrupt_a_run(tmp_path, command, checkpoint, how)
    assert proc.returncode == (130 if how == "ctrl-C" else 143), err[-2000:]
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err[-3000:]
    last = [line for line in err.replace("\r", "\n").splitlines() if line.strip()][-1]
    assert f"interrupted ({how})" in last and f"--resume --out-dir {out}" in last, last
    load_checkpoint(out / checkpoint)


def test_an_interrupted_run_without_a_checkpoint_says_there_is_nothing_to_resume(tmp_path):
    """Stopped before its first checkpoint: the line must not promise --resume."""
    from common import cli, runs
    folder = tmp_path / "run"
    folder.mkdir()
    runs.lock_run_dir(folder)
    try:
        line = cli.interrupted_line("train.py", "ctrl-C")
        assert "holds no checkpoint yet" in line and "--resume" not in line, line
        for name in cli.CHECKPOINT_FILES:   # each paper's checkpoint: resumable
            path = folder / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"x")
            line = cli.interrupted_line("train.py", "ctrl-C")
            assert f"--resume --out-dir {folder}" in line, (name, line)
            path.unlink()
    finally:
        runs.unlock_run_dir(folder)


def test_a_failed_write_is_one_line_and_exit_1_and_other_os_errors_are_not_swallowed(capsys):
    import errno

    from common.cli import run_main

    def full_disk(argv):
        raise OSError(errno.ENOSPC, "No space left on device", "runs/x/metrics.csv")

    with pytest.raises(SystemExit) as stop:
        run_main(full_disk, [], prog="train.py")
    err = capsys.readouterr().err
    assert stop.value.code == 1 and err.count("\n") == 1, err
    assert err.startswith("train.py: error: cannot write runs/x/metrics.csv (no space left on device)")

    def missing(argv):
        raise FileNotFoundError(errno.ENOENT, "No such file or directory", "x")

    with pytest.raises(FileNotFoundError):   # a bug, not a full disk: the traceback stays
        run_main(missing, [], prog="train.py")
