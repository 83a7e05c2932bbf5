"""Run folders: config.json, metrics.csv, summary.json and atomic checkpoints.

A run folder holds everything one run produced. Starting a run never touches a folder that
already holds files unless `--resume` was given, and `--resume` needs a checkpoint there. One
process at a time writes a folder (lock_run_dir); a checkpoint is checked against its zip's
CRC-32s before it is loaded (verify_checkpoint), and a run's checkpoint records its config.json's
hash, so --resume reads only the folder's own (seal_checkpoint / unseal_checkpoint). A
train.py checks everything a user can get wrong (env id, config keys, budget, device) *before*
creating its RunDir, so a failed start leaves nothing behind.

    python -m common.runs check RUN_DIR   # prints "env<TAB>env_steps<TAB>final_return<TAB>wall"
"""
from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import pickle
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
import zipfile
from pathlib import Path
from typing import Any, Iterable, Mapping

try:
    import fcntl
except ImportError:   # Windows: no advisory locks; run folders are not locked there
    fcntl = None

import torch

from common.cli import Diverged, UsageError, WriteFailed, is_write_failure
from common.config import RUN_META_KEY, load_config_file

SUMMARY_KEYS = ("env_steps", "test_steps", "final_return", "best_return", "wall_seconds")
CHECKPOINT = "latest.pt"


def default_run_dir(paper: str, env_id: str, seed: int, root: str | Path = "runs") -> Path:
    """`runs/<paper>/<env>__<seed>__<timestamp>`, with a suffix if that name is taken."""
    safe_env = env_id.replace("/", "-").replace(":", "-")
    stem = Path(root) / paper / f"{safe_env}__{seed}__{time.strftime('%Y%m%d-%H%M%S')}"
    path, n = stem, 1
    while path.exists():
        n += 1
        path = stem.with_name(f"{stem.name}-{n}")
    return path


class RunDir:
    """One run's folder. `RunDir(path)` starts a new run; `RunDir(path, resume=True)` reopens one
    that has a checkpoint."""

    def __init__(self, path: str | Path, resume: bool = False, config: Mapping[str, Any] | None = None):
        """`config`: the new run's resolved config. With it, a folder that holds only an earlier
        start of this same config, stopped before its first checkpoint, is started afresh
        (`restartable`) instead of refused."""
        self.path = Path(path)
        self.checkpoints = self.path / "checkpoints"
        self.resume = resume
        check_out_dir(self.path, resume, config)
        restart = not resume and config is not None and restartable(self.path, config)
        try:
            self.checkpoints.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise UsageError(f"cannot create run folder {self.path}: {error.strerror}") from None
        lock_run_dir(self.path)   # before clearing: a live run's folder is refused here
        for entry in [*self.path.iterdir(), *self.checkpoints.iterdir()]:
            # half-written files of a run killed while writing one; a restart: the earlier start's files
            if is_temporary(entry) or (restart and entry.name in RESTARTABLE_FILES):
                entry.unlink()

    # -- config and summary ---------------------------------------------------------------------
    def write_config(self, config: Mapping[str, Any]) -> None:
        """config.json: the resolved config plus `_run` (versions, command, start time, run id).
        A resumed run keeps the config.json of its first start."""
        if self.resume and (self.path / "config.json").exists():
            return
        write_run_config(self.path, config)

    def run_id(self) -> str | None:
        """The id config.json gives this run (files of another run carry another id)."""
        return run_id_of(self.path)

    def write_summary(self, summary: Mapping[str, Any]) -> None:
        """summary.json with the collection's keys (SUMMARY_KEYS) plus paper-specific ones and
        `status: finished`. A non-finite final or best return is never written as a result:
        the summary says `status: diverged` and `Diverged` is raised."""
        missing = [key for key in SUMMARY_KEYS if key not in summary]
        if missing:
            raise ValueError(f"summary is missing keys {missing}")
        bad = [key for key in ("final_return", "best_return") if not _finite(summary[key])]
        if bad:
            error = Diverged(f"{' and '.join(bad)} not finite ({summary[bad[0]]})",
                             summary.get("env_steps"))
            self.write_divergence(error, summary)
            raise error
        write_json_atomic(self.path / "summary.json",
                          {**summary, "status": "finished", "run_id": self.run_id()})

    def write_divergence(self, error: Diverged, partial: Mapping[str, Any] | None = None) -> None:
        write_divergence(self.path, error, partial, self.checkpoints / CHECKPOINT)

    def metrics(self, keep_rows: int | None = None, name: str = "metrics.csv") -> "CsvLog":
        """The metrics CSV (must have an `env_steps` column). On resume pass `keep_rows`, the
        row count saved in the checkpoint, so rows logged after that checkpoint are dropped."""
        return CsvLog(self.path / name, required=("env_steps",), keep_rows=keep_rows)

    # -- checkpoints ----------------------------------------------------------------------------
    def save_checkpoint(self, state: Any, name: str = CHECKPOINT) -> Path:
        """Atomically, sealed with config.json's hash (seal_checkpoint: `state` is a dict, saved
        after write_config), so that --resume can tell the folder's own checkpoint and whether the
        config was edited since (load_checkpoint)."""
        return save_checkpoint(seal_checkpoint(state, self.path), self.checkpoints / name)

    def load_checkpoint(self, name: str = CHECKPOINT, map_location="cpu") -> Any:
        """The state save_checkpoint wrote; another run's checkpoint, a file of something else, or
        an edited config.json since then is one line (unseal_checkpoint)."""
        path = self.checkpoints / name
        return unseal_checkpoint(load_checkpoint(path, map_location), self.path, path)


CONFIG_HASH_KEY = "_config_sha256"   # in a run's checkpoint: its config.json's hash at that time


def _file_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def seal_checkpoint(state: Mapping[str, Any], folder: str | Path) -> dict:
    """`state` plus the SHA-256 of `folder`/config.json (which holds the run's id), written
    before the run's first checkpoint: unseal_checkpoint tells by it whether a checkpoint is
    this run's and whether config.json was edited since."""
    config = Path(folder) / "config.json"
    if not isinstance(state, Mapping) or not config.is_file():
        raise ValueError(f"a checkpoint is a dict saved after {config} is written")
    return {**state, CONFIG_HASH_KEY: _file_hash(config)}


def unseal_checkpoint(state: Any, folder: str | Path, path: str | Path) -> dict:
    """The state seal_checkpoint sealed, its hash removed, after checking that `folder`'s
    config.json is the one it was written with. Another paper's or program's file (no hash), a
    checkpoint of another run (another config.json, so another hash) and a config.json edited
    or removed since are each one line (UsageError, exit 2), never a traceback or a run
    continued under a config that no longer describes it."""
    config = Path(folder) / "config.json"
    if not isinstance(state, dict) or CONFIG_HASH_KEY not in state:
        raise UsageError(f"--resume: {path} is not a checkpoint of the run in {folder} (it does not record "
                         f"the config.json it was written with: another paper's or program's file, or one "
                         f"written before checkpoints recorded it); start a new run in another --out-dir")
    saved = state.pop(CONFIG_HASH_KEY)
    if not config.is_file() or _file_hash(config) != saved:
        raise UsageError(f"--resume: {config} was changed or removed since the checkpoint {Path(path).name} "
                         f"was written (or that checkpoint is another run's); restore the run's own "
                         f"config.json (a run continues under the config it started with), or start a "
                         f"new run in another --out-dir")
    return state


_LOCKS: dict[Path, int] = {}


def lock_run_dir(path: str | Path) -> None:
    """Hold an exclusive lock on a run folder for the rest of this process's life, so that two
    processes (two `--resume` of one folder, a second start) never write one run. The lock is
    flock(2) on the folder itself: no lock file, and the kernel drops it when the holder exits,
    however it dies (kill -9 included), so a dead run's folder is never stuck. A folder held by a
    live process is a UsageError (one line, exit 2). No-op where the folder does not exist yet, on
    systems without fcntl (Windows), and for a folder this process already holds."""
    path = Path(path).absolute()
    if fcntl is None or path in _LOCKS or not path.is_dir():
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise UsageError(f"run folder {path} is in use by another process (a run writing it now); "
                         f"wait for it to end, or choose another --out-dir") from None
    _LOCKS[path] = fd


def unlock_run_dir(path: str | Path) -> None:
    """Release lock_run_dir's lock before this process ends (tests; a process that moves on)."""
    fd = _LOCKS.pop(Path(path).absolute(), None)
    if fd is not None:
        os.close(fd)


def run_id_of(folder: str | Path) -> str | None:
    """The id a run's config.json gives it (files of another run carry another id)."""
    try:
        return json.loads((Path(folder) / "config.json").read_text())[RUN_META_KEY].get("id")
    except (OSError, ValueError, KeyError, AttributeError):
        return None


def write_divergence(folder: str | Path, error: Diverged, partial: Mapping[str, Any] | None = None,
                     checkpoint: str | Path | None = None) -> None:
    """summary.json of a run stopped by non-finite numbers: what and when, and what the run
    had reached (non-finite returns as null); the last good checkpoint stays as it was."""
    folder = Path(folder)
    partial = dict(partial or {})
    summary = {key: partial.get(key) for key in SUMMARY_KEYS}
    summary.update({key: value for key, value in partial.items() if key not in SUMMARY_KEYS})
    for key in ("final_return", "best_return"):
        if not _finite(summary[key]):
            summary[key] = None
    summary.update(status="diverged", diverged_at_step=error.step, non_finite=error.what,
                   run_id=run_id_of(folder))
    error.run_path = folder
    error.checkpoint_kept = checkpoint is not None and Path(checkpoint).is_file()
    write_json_atomic(folder / "summary.json", summary)


def reopen_run(args, config_flags: Iterable[str], budget_key: str) -> tuple[RunDir, dict]:
    """For `--resume`: the run folder in `--out-dir` and its saved config. The saved config is
    what the run continues with, so a flag that would change it is refused; only the budget
    (`budget_key`, e.g. total_steps) may be raised to extend a finished run."""
    if not args.out_dir:
        raise UsageError("--resume needs --out-dir RUN_DIR (the run folder to continue)")
    changed = [f"--{key}" for key in config_flags if key != budget_key and hasattr(args, key)]
    changed += [flag for flag, given in (("--config", args.config), ("--set", args.overrides),
                                         ("--smoke", args.smoke)) if given]
    if changed:
        raise UsageError(f"--resume continues the run's saved config; only the budget may "
                         f"change (got {', '.join(changed)})")
    run = RunDir(args.out_dir, resume=True)
    config = load_config_file(run.path / "config.json")
    if hasattr(args, budget_key):
        config[budget_key] = getattr(args, budget_key)
    return run, config


class CsvLog:
    """A CSV file written one row at a time: header from the first row's keys, flushed after
    every row so a crash loses nothing already logged."""

    def __init__(self, path: str | Path, required: Iterable[str] = (), keep_rows: int | None = None):
        self.path = Path(path)
        self.required = tuple(required)
        self.fieldnames: list[str] | None = None
        self.rows_written = 0
        if keep_rows is not None and keep_rows > 0 and not self.path.exists():
            raise UsageError(f"--resume: {self.path} is missing; the checkpoint expects its first "
                             f"{keep_rows} rows (restore the file, or start a new run in another --out-dir)")
        if self.path.exists() and keep_rows is not None:
            self._truncate(keep_rows)
        elif self.path.exists():
            raise ValueError(f"{self.path} exists; pass keep_rows when resuming")
        self._file = None

    def _truncate(self, keep_rows: int) -> None:
        """Keep the header and the first `keep_rows` rows (those logged before the checkpoint);
        a file with fewer is a UsageError: resuming would lose its history without a word."""
        try:
            with open(self.path, newline="", encoding="utf-8") as f:
                rows = list(csv.reader(f))
        except (OSError, UnicodeDecodeError, csv.Error) as error:   # a folder, binary bytes, a broken row
            reason = getattr(error, "strerror", None) or type(error).__name__
            raise UsageError(f"--resume: {self.path} cannot be read as a CSV ({reason}); restore it, or start "
                             f"a new run in another --out-dir") from None
        if len(rows) < 1 + keep_rows:
            raise UsageError(f"--resume: {self.path} holds {max(len(rows) - 1, 0)} rows, the checkpoint "
                             f"expects at least {keep_rows} (restore the file, or start a new run in "
                             f"another --out-dir)")
        if not rows:
            return
        self.fieldnames = rows[0]
        kept = rows[: 1 + keep_rows]
        self.rows_written = len(kept) - 1
        replace_atomically(self.path, lambda f: csv.writer(f).writerows(kept), newline="")

    def write(self, row: Mapping[str, Any]) -> None:
        if self.fieldnames is None:
            missing = [key for key in self.required if key not in row]
            if missing:
                raise ValueError(f"{self.path.name} rows need the columns {missing}")
            self.fieldnames = list(row)
        unknown = [key for key in row if key not in self.fieldnames]
        if unknown:
            raise ValueError(f"{self.path.name}: columns {unknown} not in header {self.fieldnames}")
        if self._file is None:
            new = not self.path.exists() or self.path.stat().st_size == 0
            self._file = open(self.path, "a", newline="")
            self._writer = csv.DictWriter(self._file, fieldnames=self.fieldnames)
            if new:
                self._writer.writeheader()
        self._writer.writerow({key: _plain(value) for key, value in row.items()})
        self._file.flush()
        self.rows_written += 1

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


# -- atomic files --------------------------------------------------------------------------------
def save_checkpoint(state: Any, path: str | Path) -> Path:
    """torch.save to a temporary file in the same folder, fsync, then os.replace: a crash while
    saving leaves the previous checkpoint intact, never a truncated one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except (RuntimeError, OSError) as error:   # torch.save's writer turns a full disk into a RuntimeError
        if not (is_write_failure(error) if isinstance(error, OSError) else _torch_write_error(path, error)):
            raise
        raise WriteFailed(f"cannot write {path} ({_why_unwritable(path, error)})") from None
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def _torch_write_error(path: Path, error: RuntimeError) -> bool:
    """torch.save's zip writer failing on the file (not, say, an unpicklable object)."""
    text = str(error)
    return "unexpected pos" in text or "file write failed" in text or _low_on_space(path)


def _low_on_space(path: Path) -> bool:
    try:
        return shutil.disk_usage(path.parent).free < 1 << 20
    except OSError:
        return False


def _why_unwritable(path: Path, error: BaseException) -> str:
    if _low_on_space(path):
        return "no space left on device"
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:200]


def verify_checkpoint(path: str | Path) -> None:
    """Check every record of a torch.save zip file against the CRC-32 the zip stores for it,
    before unpickling: torch.load itself reads tensor bytes unchecked, so a flipped byte inside
    tensor data would load as a different number. A mismatch is a UsageError naming the file
    and the record (one line, exit 2). Files that are not zips (torch's legacy format) pass
    through to torch.load, which reports them."""
    try:
        with zipfile.ZipFile(path) as archive:
            damaged = archive.testzip()
    except zipfile.BadZipFile:
        return
    except (OSError, RuntimeError, ValueError, EOFError) as error:   # a header or length broken
        damaged = f"its zip structure ({type(error).__name__})"
    if damaged is not None:
        raise UsageError(f"checkpoint {path} is damaged (checksum mismatch in {damaged}); restore it "
                         f"from a copy or start a new run in another --out-dir")


def load_checkpoint(path: str | Path, map_location="cpu", weights_only: bool = False) -> Any:
    """Load a checkpoint this collection wrote. weights_only=False by default because checkpoints
    also hold numpy arrays and RNG states: load only files you trust (your own runs); files of
    plain data (exported policies, proxies) pass weights_only=True. A missing, truncated or
    corrupt file (or, with weights_only, one holding pickled objects) is a UsageError naming the
    file (one line, exit 2)."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"checkpoint not found: {path}")
    verify_checkpoint(path)
    try:
        return torch.load(path, map_location=map_location, weights_only=weights_only)
    except (RuntimeError, EOFError, OSError, ValueError, pickle.UnpicklingError,
            zipfile.BadZipFile, AttributeError, ModuleNotFoundError, ImportError) as error:
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0][:120]
        raise UsageError(f"cannot read checkpoint {path} (truncated, corrupt or from another "
                         f"version: {reason}); restore it from a copy or start a new run "
                         f"in another --out-dir") from None


# what a run writes before its first checkpoint (RunDir users: config, logs; checkpoints/ holds
# at most a temporary file being written)
RESTARTABLE_FILES = ("config.json", "metrics.csv", "population.csv")


def restartable(path: str | Path, config: Mapping[str, Any]) -> bool:
    """Whether `path` holds only an earlier start of this same `config` (config.json equal but
    for `_run`) that was stopped before its first checkpoint: nothing to resume, nothing to lose."""
    path = Path(path)
    checkpoints = path / "checkpoints"
    if not path.is_dir() or (checkpoints / CHECKPOINT).exists():
        return False
    if any(entry.name not in RESTARTABLE_FILES + ("checkpoints",) and not is_temporary(entry)
           for entry in path.iterdir()):
        return False
    if checkpoints.exists() and (not checkpoints.is_dir() or
                                 not all(is_temporary(entry) for entry in checkpoints.iterdir())):
        return False
    if not (path / "config.json").is_file():   # killed before config.json: only logs could be there
        return not any((path / name).exists() for name in RESTARTABLE_FILES)
    try:
        saved = json.loads((path / "config.json").read_text())
        saved.pop(RUN_META_KEY, None)
        return saved == json.loads(json.dumps(dict(config)))
    except (OSError, ValueError, TypeError, AttributeError):
        return False


def is_temporary(entry: Path) -> bool:
    """A half-written file of an atomic write (`.NAME.tmp`, `.NAME.tmp-PID`)."""
    return entry.is_file() and entry.name.startswith(".") and ".tmp" in entry.name


def check_out_dir(path: str | Path, resume: bool = False, config: Mapping[str, Any] | None = None) -> None:
    """Everything about a run folder that can fail, checked before anything is written: a new
    run needs an empty or absent folder in a writable place (or, given its `config`, one that
    holds only an earlier start of the same config stopped before its first checkpoint);
    --resume needs a checkpoint."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UsageError(f"run folder {path} exists and is not a folder")
    if resume:
        if not (path / "checkpoints" / CHECKPOINT).is_file():
            raise UsageError(f"--resume: no checkpoint at {path / 'checkpoints' / CHECKPOINT}; "
                             f"start a new run without --resume (the same command starts it afresh)")
        return
    if path.is_dir() and config is not None and restartable(path, config):
        return
    if path.is_dir() and any(path.iterdir()):
        raise UsageError(f"run folder {path} already holds a run; pass --resume to "
                         f"continue it, or choose another --out-dir")
    require_writable(path)


def require_writable(path: str | Path) -> None:
    """`path`, or the nearest folder above it that exists, takes new files: a UsageError (one
    line, exit 2) before anything is written otherwise (a read-only mount, /proc, a file)."""
    path = Path(path)
    existing = path.absolute()
    while not existing.exists():
        existing = existing.parent
    try:   # a probe, not os.access: root may "access" /proc or a read-only mount and still fail
        if not existing.is_dir():
            raise NotADirectoryError
        os.rmdir(tempfile.mkdtemp(prefix=".probe-", dir=existing))
    except OSError:
        raise UsageError(f"cannot create run folder {path}: {existing} is not a writable folder") \
            from None


def require_finite(what: str, value: Any, step: int | None = None) -> None:
    """Raise `Diverged` unless `value` (a number, array or tensor) is all finite."""
    if not _finite(value):
        raise Diverged(f"{what} is not finite", step)


def _finite(value: Any) -> bool:
    if value is None:
        return False
    if isinstance(value, (int, float)):   # the per-step case (a loss as a float): no numpy
        return math.isfinite(value)
    if isinstance(value, torch.Tensor):
        return bool(torch.isfinite(value).all())
    try:
        import numpy

        return bool(numpy.isfinite(numpy.asarray(value, dtype=float)).all())
    except (TypeError, ValueError):
        return False


def write_run_config(folder: str | Path, config: Mapping[str, Any]) -> Path:
    """<folder>/config.json (atomic): the resolved config plus `_run` (versions, command, start)."""
    meta = {"versions": versions(), "command": " ".join(sys.argv),
            "started": time.strftime("%Y-%m-%d %H:%M:%S"), "id": uuid.uuid4().hex}
    path = Path(folder) / "config.json"
    write_json_atomic(path, {**config, RUN_META_KEY: meta})
    return path


def write_json_atomic(path: str | Path, data: Any) -> None:
    text = json.dumps(data, indent=2, default=_plain) + "\n"
    replace_atomically(path, lambda f: f.write(text))


def replace_atomically(path: str | Path, write, mode: str = "w", **open_kwargs) -> None:
    """Write `path` through `write(file)` into `.NAME.tmp` beside it, then os.replace: readers see
    the old file or the new one, never half of one; a failed write (a full disk) leaves the old
    file as it was and removes the temporary one."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, mode, **open_kwargs) as f:
            write(f)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _plain(value: Any) -> Any:
    """numpy / torch values and paths as plain python values for JSON and CSV."""
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "tolist"):  # numpy arrays and scalars, torch tensors
        return value.tolist()
    if isinstance(value, (Mapping, list, tuple, str, int, float, bool)) or value is None:
        return value
    return str(value)


def versions() -> dict:
    """Versions of what a result depends on, for config.json."""
    import gymnasium
    import numpy

    info = {"python": platform.python_version(), "torch": torch.__version__,
            "numpy": numpy.__version__, "gymnasium": gymnasium.__version__,
            "platform": platform.platform(), "cpu_threads": torch.get_num_threads()}
    try:
        info["git_commit"] = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
            cwd=Path(__file__).resolve().parent).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        info["git_commit"] = None
    return info


# -- checking a finished run ---------------------------------------------------------------------
def check_run_dir(path: str | Path) -> list[str]:
    """Problems with a finished run folder (empty when it has every output the collection
    promises: config.json, metrics.csv with env_steps, summary.json's keys, a PNG)."""
    path = Path(path)
    problems = []
    for name in ("config.json", "summary.json"):
        try:
            json.loads((path / name).read_text())
        except (OSError, ValueError) as error:
            problems.append(f"{name}: {error}")
    if not problems:
        config = json.loads((path / "config.json").read_text())
        summary = json.loads((path / "summary.json").read_text())
        problems += [f"summary.json lacks '{key}'" for key in (*SUMMARY_KEYS, "status", "run_id")
                     if key not in summary]
        if summary.get("status") not in (None, "finished", "diverged"):
            problems.append(f"the run did not finish (status {summary['status']!r})")
        problems += [f"summary.json's {key} is not a number ({summary[key]!r})" for key in SUMMARY_KEYS
                     if key in summary and summary.get("status") != "diverged" and not _is_number(summary[key])]
        config_id = (config.get(RUN_META_KEY) or {}).get("id")
        if summary.get("run_id") and config_id and summary["run_id"] != config_id:
            problems.append(f"files of different runs: summary.json is from run "
                            f"{summary['run_id']}, config.json from run {config_id}")
        if summary.get("status") == "diverged":
            problems.append(f"the run diverged: {summary.get('non_finite')} at env step "
                            f"{summary.get('diverged_at_step')}")
    try:
        with open(path / "metrics.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        if not rows or "env_steps" not in rows[0]:
            problems.append("metrics.csv has no rows or no env_steps column")
    except OSError as error:
        problems.append(f"metrics.csv: {error}")
    if not any(path.glob("*.png")):
        problems.append("no PNG plot in the run folder")
    return problems


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_main(args: list[str]) -> int:
    """Exit status 0: a complete run folder; 1: a run folder with problems (one line);
    2: a usage mistake (no such folder, wrong arguments)."""
    if len(args) != 2 or args[0] != "check":
        print("usage: python -m common.runs check RUN_DIR", file=sys.stderr)
        return 2
    path = Path(args[1])
    if not path.is_dir():
        print(f"no run folder at {path}", file=sys.stderr)
        return 2
    problems = check_run_dir(path)
    if problems:
        print("; ".join(problems), file=sys.stderr)
        return 1
    config = json.loads((path / "config.json").read_text())
    summary = json.loads((path / "summary.json").read_text())
    env = summary.get("env", config.get("env", "?"))
    print(f"{env}\t{summary['env_steps']}\t{summary['final_return']:.4g}\t"
          f"{summary['wall_seconds']:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(_check_main(sys.argv[1:]))
