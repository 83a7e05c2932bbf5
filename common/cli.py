"""The command-line side every train.py shares: one-line usage errors and the common flags.

A mistake a user can make (unknown env, bad config key, missing file, negative budget, CUDA on a
CPU machine, --resume without a checkpoint) raises `UsageError` anywhere in the code; `run_main`
turns it into a single line on stderr and exit status 2, never a stack trace. A run that
diverges (`Diverged`: NaN or inf in training) ends with one line and exit status 1, and so does
a run whose files cannot be written (a full disk, a read-only or over-quota folder: `OSError`
with one of WRITE_ERRNOS, or `WriteFailed`).
"""
from __future__ import annotations

import argparse
import errno
import signal
import sys
import threading
from pathlib import Path
from typing import Callable, Sequence


class UsageError(Exception):
    """A problem with what the user asked for; reported as one line, exit status 2."""


class Diverged(Exception):
    """Training produced a NaN or inf (a loss, parameters, returns): the run stops, its
    summary.json says `status: diverged`, and `run_main` exits 1 with one line."""

    def __init__(self, what: str, step: int | None = None):
        super().__init__(what)
        self.what, self.step, self.run_path, self.checkpoint_kept = what, step, None, False

    def __str__(self) -> str:
        where = f" at env step {self.step}" if self.step is not None else ""
        saved = ""
        if self.run_path is not None:
            saved = f"; summary in {self.run_path / 'summary.json'}" + \
                (", last good checkpoint kept" if self.checkpoint_kept else "")
        return f"training diverged{where}: {self.what}{saved}"


class WriteFailed(OSError):
    """A run file could not be written (torch.save reports a full disk as a RuntimeError; this
    names the file and the reason instead)."""


# the errors that mean "this folder cannot be written now", not a bug: one line, exit 1
WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG}
DENIED_ERRNOS = {errno.EACCES, errno.EPERM}   # only for a named file (a write the run was making)


def is_write_failure(error: BaseException) -> bool:
    if isinstance(error, WriteFailed):
        return True
    return isinstance(error, OSError) and (error.errno in WRITE_ERRNOS or
                                           (error.errno in DENIED_ERRNOS and error.filename is not None))


def write_failed_line(name: str, error: OSError) -> str:
    """What a run whose write failed says: which file, why, and whether --resume can continue."""
    from common import runs   # here, not at the top: common.runs imports this module
    reason = (error.strerror or str(error)).lower()
    what = (str(error) if isinstance(error, WriteFailed) else
            f"cannot {'access' if error.errno in DENIED_ERRNOS else 'write'} {error.filename} ({reason})"
            if error.filename else f"a write failed ({reason})")
    folders = [str(path) for path in runs._LOCKS]
    if folders and any(has_checkpoint(folder) for folder in folders):
        return (f"{name}: error: {what}; the last checkpoint in {folders[0]} is whole: make room and run "
                f"the same command with --resume --out-dir {folders[0]}")
    where = f" delete {folders[0]} (or choose another --out-dir) and" if folders else ""
    return f"{name}: error: {what}; no checkpoint was written yet: make room,{where} start again"


def positive_int(text: str) -> int:
    """argparse type for counts that must be at least 1 (workers, episodes)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


class ArgumentParser(argparse.ArgumentParser):
    """argparse with a one-line error (argparse prints the whole usage block first)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def add_common_args(parser: argparse.ArgumentParser, config_aliases: Sequence[str] = ()) -> None:
    """Add the flags every paper's train.py has, with the same names everywhere.

    Flags that override a config key default to `argparse.SUPPRESS`, so only the flags a user
    actually typed reach `common.config.resolve_config` and override the config file.
    `config_aliases` keeps a seed project's spelling (e.g. SEARL's `--config_file`).
    """
    parser.add_argument("--env", default=argparse.SUPPRESS,
                        help="environment id (a gymnasium id, or one the paper defines)")
    parser.add_argument("--seed", type=int, default=argparse.SUPPRESS,
                        help="random seed for python, numpy, torch and the environments")
    parser.add_argument("--device", default="auto",
                        help="auto | cpu | cuda | cuda:N (default: auto = cuda if available)")
    parser.add_argument("--out-dir", default=None,
                        help="run folder (default: runs/<paper>/<env>__<seed>__<timestamp>)")
    parser.add_argument("--config", *config_aliases, dest="config", default=None,
                        help="JSON or YAML file of config keys; command-line flags override it")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE",
                        help="override any config key (repeatable; VALUE is parsed as YAML)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --out-dir from its latest checkpoint")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny budget of the real method (finishes in well under a minute)")


def add_parallel_args(parser: argparse.ArgumentParser) -> None:
    """Flags for papers that spread work (individuals, agents, NES workers) over processes;
    their values go straight to `common.parallel.WorkerPool`."""
    parser.add_argument("--workers", type=positive_int, default=1,
                        help="parallel workers (default: 1)")
    parser.add_argument("--backend", default="serial", choices=("serial", "process", "ray"),
                        help="serial (default) | process: local spawn pool, one torch thread "
                             "per worker | ray: Ray tasks, local or on a cluster")
    parser.add_argument("--ray-address", default=None,
                        help="join an existing Ray cluster, e.g. 'auto' or 'HEAD_IP:6379' "
                             "(default: start a local Ray with --workers CPUs)")


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the run is, like ctrl-C's KeyboardInterrupt."""


def _raise_terminated(signum, frame) -> None:
    raise Terminated()


def interrupted_line(name: str, signal_name: str) -> str:
    """What a run stopped by ctrl-C or SIGTERM says: where its files are and how to continue.
    The run folders are those this process holds (common.runs.lock_run_dir): the checkpoints in
    them were written atomically, so the last one is whole."""
    from common import runs   # here, not at the top: common.runs imports this module
    folders = [str(path) for path in runs._LOCKS]
    if not folders:
        return f"{name}: interrupted ({signal_name}) before a run folder was written"
    if not any(has_checkpoint(folder) for folder in folders):
        return (f"{name}: interrupted ({signal_name}); {', '.join(folders)} holds no checkpoint yet, "
                f"so there is nothing to resume: delete it (or choose another --out-dir) and start again")
    return (f"{name}: interrupted ({signal_name}); {', '.join(folders)} keeps the last checkpoint "
            f"and the rows logged before it: run the same command with --resume --out-dir "
            f"{folders[0]} to continue")


# where each paper keeps the checkpoint --resume reads (common.runs.RunDir, steve, optim4rl)
CHECKPOINT_FILES = ("checkpoints/latest.pt", "checkpoints/backup.pt", "checkpoint.pt")


def has_checkpoint(folder) -> bool:
    return any((Path(folder) / name).is_file() for name in CHECKPOINT_FILES)


def run_main(main: Callable[[Sequence[str] | None], object], argv: Sequence[str] | None = None,
             prog: str | None = None) -> None:
    """Call `main(argv)`; a UsageError becomes one line on stderr and exit status 2, a divergence
    or a failed write one line and 1, ctrl-C or SIGTERM one line (where the run folder is, and --resume) and
    130 / 143, never a stack trace."""
    name = prog or (sys.argv[0] if sys.argv and sys.argv[0] else "train.py")
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        main(argv)
    except UsageError as error:
        print(f"{name}: error: {error}", file=sys.stderr)
        sys.exit(2)
    except Diverged as error:   # NaN / inf in training: a failed run, not a usage error
        print(f"{name}: error: {error}", file=sys.stderr)
        sys.exit(1)
    except OSError as error:    # a full disk, a read-only folder: a failed run, in one line
        if not is_write_failure(error):
            raise
        print(write_failed_line(name, error), file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt as stop:
        terminated = isinstance(stop, Terminated)
        print(interrupted_line(name, "SIGTERM" if terminated else "ctrl-C"), file=sys.stderr)
        sys.exit(143 if terminated else 130)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
