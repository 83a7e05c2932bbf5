"""Log folders of a sweep: logs/<config name>/<config index>/.

One run of `main.py --config_file X --config_idx i` writes into logs/<X's stem>/<i>/:

    config.json        the decoded configuration (plus `_run`: versions, command, start time)
    log.txt            timestamped info lines, ending with
                           ... Memory usage: X MB
                           ... Time elapsed: Y minutes
    result_<env>.csv   the return curve, columns Env,Agent,Step,Return (what analysis.py reads)
    metrics.csv        the collection's per-point table (env_steps, test_steps, return, ...)
    summary.json       the collection's headline keys (env_steps, test_steps, final_return,
                       best_return, wall_seconds) plus extras

A run is finished when log.txt ends with the Time line. A folder is written only when it is new
or holds this same run (`prepare_run_folder`); a finished one is rerun only when told to
overwrite it, and a folder of another run never.
"""
from __future__ import annotations

import csv
import json
import math
import os
import re
import resource
import sys
import time
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence, TextIO

from common.cli import UsageError
from common.config import RUN_META_KEY
from common.runs import (SUMMARY_KEYS, replace_atomically, require_writable, run_id_of, write_json_atomic,
                         write_run_config)

LOG_FILE = "log.txt"
RESULT_COLUMNS = ("Env", "Agent", "Step", "Return")
METRICS_FIRST_COLUMNS = ("env_steps", "test_steps", "return")
_MEMORY_LINE = re.compile(r"Memory usage: ([-+0-9.eE]+) MB\s*$")
_TIME_LINE = re.compile(r"Time elapsed: ([-+0-9.eE]+) minutes\s*$")


# -- the run folder -----------------------------------------------------------------------------
def read_finish_info(log_file: str | Path) -> tuple[float | None, float | None]:
    """(memory MB, minutes) from the last two lines of a log.txt; None for what is missing.
    The minutes are only read when the LAST line is the Time line (a finished run)."""
    try:
        with open(log_file, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 4096))
            tail = f.read().decode("utf-8", errors="replace")
    except OSError:
        return None, None
    lines = [line for line in tail.splitlines() if line.strip()]
    if not lines:
        return None, None
    minutes = memory = None
    match = _TIME_LINE.search(lines[-1])
    if match:
        minutes = _float_or_none(match.group(1))
        if len(lines) >= 2:
            match = _MEMORY_LINE.search(lines[-2])
            memory = _float_or_none(match.group(1)) if match else None
    return memory, minutes


def is_finished_log(log_file: str | Path) -> bool:
    """True when log.txt exists and its last line is `... Time elapsed: Y minutes`."""
    return read_finish_info(log_file)[1] is not None


def make_log_dir(logs_root: str | Path, config_name: str, config_idx: int,
                 overwrite: bool = False, config: Mapping[str, Any] | None = None) -> Path:
    """Create (or reuse) logs/<config_name>/<config_idx>/ for this run and return it; the
    folder rules are `prepare_run_folder`'s."""
    if isinstance(config_idx, bool) or not isinstance(config_idx, int) or config_idx < 1:
        raise UsageError(f"config index must be an integer >= 1, got {config_idx!r}")
    if not config_name or "/" in config_name or config_name in (".", ".."):
        raise UsageError(f"invalid config name {config_name!r}")
    return prepare_run_folder(Path(logs_root) / config_name / str(config_idx), config, overwrite)


RESUMABLE = "checkpoint.pt"   # main.CHECKPOINT: a MetaA2C run's state for --resume


def prepare_run_folder(path: str | Path, config: Mapping[str, Any] | None = None,
                       overwrite: bool = False) -> Path:
    """Create the folder of a run and return it, writing nothing into a folder of another run.

    An absent or empty folder is new. A folder with files is used only when it holds this same
    run, i.e. its config.json decodes to `config` (the reference reruns an unfinished index from
    the start); one whose log.txt ends with the Time line is finished and is rerun only with
    `overwrite`, and one with a checkpoint (a killed MetaA2C run) is continued with --resume or
    restarted only with `overwrite`. Anything else (another index, seed, config or paper, or files
    without a config.json) is refused with a UsageError, with or without `overwrite`.
    `config=None` skips the same-run test (only the finished-run rule applies)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UsageError(f"log folder {path} exists and is not a folder")
    if path.is_dir() and any(path.iterdir()):
        if config is not None and not holds_same_run(path, config):
            raise UsageError(f"{path} holds another run (its config.json is not this run's); "
                             f"choose another --out-dir, index or --logs-root")
        if not overwrite and is_finished_log(path / LOG_FILE):
            raise UsageError(f"{path} already holds this finished run (its {LOG_FILE} ends with the "
                             f"time line); pass --overwrite to run it again, or use another index")
        if not overwrite and (path / RESUMABLE).is_file():   # a killed meta-training: never discarded unasked
            raise UsageError(f"{path} holds this run, unfinished, with a checkpoint; pass --resume to "
                             f"continue it (or --overwrite to start it again from the beginning)")
    require_writable(path)   # a read-only folder: one line, exit 2, before anything is written
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UsageError(f"cannot create log folder {path}: {error.strerror}") from None
    return path


def holds_same_run(path: str | Path, config: Mapping[str, Any]) -> bool:
    """True when path/config.json is this run's: the same decoded config (its `_run` record of
    versions, command and start time aside)."""
    try:
        saved = json.loads((Path(path) / "config.json").read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(saved, dict):
        return False
    saved.pop(RUN_META_KEY, None)
    return saved == json.loads(json.dumps(dict(config), default=str))


class Logger:
    """Info lines with a timestamp, written to log.txt (flushed per line) and to a stream.

    `Logger(log_dir)` starts a fresh log.txt in that folder (mode "w", like the reference);
    pass mode="a" to append. Lines are echoed to `stream` (default: the current sys.stdout);
    stream=None keeps the console quiet."""

    def __init__(self, log_dir: str | Path, file_name: str = LOG_FILE, mode: str = "w",
                 stream: TextIO | None | str = "stdout"):
        if mode not in ("w", "a"):
            raise ValueError(f"mode must be 'w' or 'a', got {mode!r}")
        self.log_dir = Path(log_dir)
        self.path = self.log_dir / file_name
        self.stream = stream
        self._file = open(self.path, mode, encoding="utf-8")

    def _write(self, level: str, message: str) -> None:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        for text in str(message).splitlines() or [""]:
            line = f"{stamp} - {level}: {text}"
            if self._file is not None:
                self._file.write(line + "\n")
                self._file.flush()
            if self.stream is not None:
                stream = sys.stdout if self.stream == "stdout" else self.stream
                print(line, file=stream, flush=True)

    def info(self, message: str) -> None:
        self._write("INFO", message)

    def warning(self, message: str) -> None:
        self._write("WARNING", message)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> "Logger":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def peak_memory_mb() -> float:
    """Peak resident set size of this process in MB (ru_maxrss: KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def finish(logger: Logger, start_time: float) -> tuple[float, float]:
    """Write the run's last two lines, `Memory usage: X MB` (peak RSS) and
    `Time elapsed: Y minutes` since `start_time` (a time.time() value); return (X, Y)."""
    memory = peak_memory_mb()
    minutes = (time.time() - start_time) / 60
    logger.info(f"Memory usage: {memory:.2f} MB")
    logger.info(f"Time elapsed: {minutes:.2f} minutes")
    return memory, minutes


# -- files of a run -----------------------------------------------------------------------------
def write_config(log_dir: str | Path, config: Mapping[str, Any]) -> Path:
    """config.json (atomic): the decoded config plus `_run` (versions, command, start time)."""
    return write_run_config(log_dir, config)


def result_file(log_dir: str | Path, env: str) -> Path:
    """logs/<config>/<idx>/result_<env>.csv"""
    return Path(log_dir) / f"result_{env}.csv"


def write_results_csv(path: str | Path, rows: Iterable[Mapping[str, Any] | Sequence[Any]]) -> Path:
    """The return curve of a run, columns exactly Env,Agent,Step,Return (atomic rewrite).
    `rows` are mappings with those keys or (env, agent, step, return) tuples."""
    path = Path(path)
    table = []
    for row in rows:
        if isinstance(row, Mapping):
            if set(row) != set(RESULT_COLUMNS):
                raise ValueError(f"result rows need exactly the keys {RESULT_COLUMNS}, got "
                                 f"{sorted(row)}")
            row = [row[key] for key in RESULT_COLUMNS]
        elif len(row) != len(RESULT_COLUMNS):
            raise ValueError(f"result rows are (Env, Agent, Step, Return), got {row!r}")
        table.append([_cell(value) for value in row])
    _write_csv_atomic(path, list(RESULT_COLUMNS), table)
    return path


def read_results_csv(path: str | Path) -> dict[str, list]:
    """{'Env': [...], 'Agent': [...], 'Step': [float], 'Return': [float]} of a result CSV;
    ValueError if the header is not Env,Agent,Step,Return."""
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None or tuple(header) != RESULT_COLUMNS:
            raise ValueError(f"{path}: header must be {','.join(RESULT_COLUMNS)}, got {header}")
        columns: dict[str, list] = {key: [] for key in RESULT_COLUMNS}
        for line in reader:
            if not line:
                continue
            env, agent, step, ret = line
            columns["Env"].append(env)
            columns["Agent"].append(agent)
            columns["Step"].append(float(step))
            columns["Return"].append(float(ret))
    return columns


def final_return(returns: Sequence[float]) -> float:
    """The headline return of a curve: the mean of its last tenth of logged points (at least
    one point), which smooths the noise of a single evaluation."""
    values = [float(v) for v in returns]
    if not values:
        return math.nan
    tail = values[-max(1, math.ceil(len(values) / 10)):]
    return sum(tail) / len(tail)


def write_collection_outputs(log_dir: str | Path, rows: Sequence[Mapping[str, Any]],
                             summary: Mapping[str, Any]) -> tuple[Path, Path]:
    """metrics.csv and summary.json, the collection's outputs of one run (CONVENTIONS.md).

    rows: one mapping per logged point with at least `env_steps` and `return` (`test_steps`
    defaults to 0); columns env_steps,test_steps,return come first, then other keys in order.
    summary: must give `wall_seconds`; env_steps and test_steps default to the last row's,
    final_return to `final_return(returns)`, best_return to the largest return; any extra keys
    are kept."""
    log_dir = Path(log_dir)
    if not rows:
        raise ValueError("write_collection_outputs needs at least one logged row")
    missing = [key for key in ("env_steps", "return") if key not in rows[0]]
    if missing:
        raise ValueError(f"metrics rows need the keys {missing}")
    columns = list(METRICS_FIRST_COLUMNS)
    for row in rows:
        columns += [key for key in row if key not in columns]
    table = [[_cell(row.get(key, 0 if key == "test_steps" else "")) for key in columns]
             for row in rows]
    metrics_path = log_dir / "metrics.csv"
    _write_csv_atomic(metrics_path, columns, table)

    if "wall_seconds" not in summary:
        raise ValueError("summary needs 'wall_seconds'")
    returns = [float(row["return"]) for row in rows]
    defaults = {"env_steps": rows[-1]["env_steps"], "test_steps": rows[-1].get("test_steps", 0),
                "final_return": final_return(returns), "best_return": max(returns)}
    full = {**defaults, **summary}
    full = {**{key: full[key] for key in SUMMARY_KEYS},
            **{key: value for key, value in full.items() if key not in SUMMARY_KEYS},
            "status": "finished", "run_id": run_id_of(log_dir)}   # as every paper's (common.runs)
    summary_path = log_dir / "summary.json"
    write_json_atomic(summary_path, full)
    return metrics_path, summary_path


# -- helpers ------------------------------------------------------------------------------------
def _write_csv_atomic(path: Path, header: list[str], table: list[list]) -> None:
    replace_atomically(path, lambda f: csv.writer(f).writerows([header, *table]), newline="")


def _cell(value: Any) -> Any:
    if hasattr(value, "item") and getattr(value, "ndim", 0) == 0:  # numpy / torch scalars
        return value.item()
    return value


def _float_or_none(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None
