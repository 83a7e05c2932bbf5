"""Bad input at every entry point, as one table: the README's promise that a mistake on the
command line "prints one line naming the problem and what is allowed, exits with status 2, and
leaves an existing run folder untouched".

Every case asserts: exit status 2; at most two non-empty lines on stderr, one of them
`<prog>: error: ...` naming the problem (`words`), the other, if any, ALE's "[Powered by Stella]"
banner (no tqdm bar: a bad input fails before training); no traceback; and every file of the
run folders below byte for byte as it was, nothing new in the working directory, and no
`{new}` folder created.

One real, finished run folder per paper is made once (module fixture, the papers' smallest
smoke runs, started together). Most cases run in-process (`common.cli.run_main(main, argv)`),
a few per entry point as scripts (`python <paper>/<script>.py`) to show the script path behaves
the same; `run_all.sh` runs as a command, `python -m common.runs check` twice as a command and
otherwise through its `_check_main` (its own statuses: 2 a usage mistake, 1 a folder with problems).

Placeholders in the argv strings: {searl} {pb2} {se} {steve} {o4} (the fixture run folders),
{new} (a fresh folder that must not appear), {empty} (an empty folder), {file} (a text file),
{missing} (a path that does not exist), {root} (this checkout), and damaged inputs made per
case (see INPUTS).
"""
from __future__ import annotations

import hashlib
import importlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers import ROOT, tensor_data_offset

from common.cli import run_main
from common.runs import _check_main

ENTRY_POINTS = {  # prog -> the module whose main() the script runs
    "searl/train.py": "searl.train",
    "searl/evaluate.py": "searl.evaluate",
    "pb2_procgen/train.py": "pb2_procgen.train",
    "synthetic_envs/train.py": "synthetic_envs.train",
    "synthetic_envs/evaluate.py": "synthetic_envs.evaluate",
    "steve/train.py": "steve.train",
    "steve/toy_demo.py": "steve.toy_demo",
    "steve/visualizer.py": "steve.visualizer",
    "optim4rl/main.py": "optim4rl.main",
    "optim4rl/train.py": "optim4rl.train",   # optim4rl.main's run under its own name
}
PENDULUM = "experiments/goodruns/pendulum/ddpg0.json"   # steve: a config under steve/configs
CASE_TIMEOUT = 60   # seconds; a case that starts training instead of refusing fails here
NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is no bad input here")

# The papers' smallest real runs (a few seconds each), started together into one folder.
FIXTURE_RUNS = {
    "searl": "searl/train.py --smoke --no-plots --set population=2 --total-steps 800",
    "pb2": "pb2_procgen/train.py --smoke --env toy --no-plots",
    "se": "synthetic_envs/train.py --smoke --iterations 1 --no-plots",
    "steve": f"steve/train.py {PENDULUM} --smoke --frames 200 --eval-every 200 --no-plots",
    "o4": "optim4rl/main.py --config catch_a2c --config_idx 1 --set env.train_steps=2000 "
          "--set env.num_envs=8",
}


def clean_env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


def run_fixture_commands(root: Path, *extra: str) -> None:
    """FIXTURE_RUNS side by side, each into root/<name> with `extra` arguments; all must succeed."""
    procs = {name: subprocess.Popen([sys.executable, str(ROOT / command.split()[0]), *command.split()[1:],
                                     *extra, "--out-dir", str(root / name)],
                                    cwd=root, env=clean_env(), stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True)
             for name, command in FIXTURE_RUNS.items()}
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, f"{FIXTURE_RUNS[name]} {' '.join(extra)}\n{out[-1000:]}\n{err[-2000:]}"


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("runs")
    run_fixture_commands(root)
    kill_meta_training_after_its_first_checkpoint(root / "o4meta")
    for needed in ("searl/elite_policy.pt", "searl/checkpoints/latest.pt", "pb2/checkpoints/latest.pt",
                   "se/proxy.pt", "se/checkpoints/latest.pt", "steve/checkpoints/valuerl.pt",
                   "steve/checkpoints/backup.pt", "o4/summary.json", "o4meta/checkpoint.pt"):
        assert (root / needed).is_file(), needed
    return {name: root / name for name in (*FIXTURE_RUNS, "o4meta")}


# optim4rl's MetaA2C run (the only optim4rl agent with --resume), killed with a checkpoint written
O4META = ("--config catch_meta --set env.num_envs=8 --set env.train_steps=240000 --checkpoint-every 1 "
          "--out-dir {o4meta}")


def kill_meta_training_after_its_first_checkpoint(folder: Path) -> None:
    """{o4meta}: a MetaA2C run killed (-9) once its first checkpoint is there (checkpoints are
    written atomically, so one that exists is whole), a second or so in."""
    argv = O4META.replace("{o4meta}", str(folder)).split()
    proc = subprocess.Popen([sys.executable, str(ROOT / "optim4rl" / "main.py"), *argv], cwd=folder.parent,
                            env=clean_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while not (folder / "checkpoint.pt").exists() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.05)
    finally:
        proc.kill()
        err = proc.communicate()[1]
    assert (folder / "checkpoint.pt").is_file(), err[-2000:]


# -- inputs made per case ---------------------------------------------------------------------------
def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _damaged_copy(runs, inputs, run: str, file: str) -> Path:
    """A copy of a fixture run folder with `file` cut to half its bytes."""
    copy = inputs / f"damaged_{run}_{file.replace('/', '_')}"
    shutil.copytree(runs[run], copy)
    _truncate(copy / file)
    return copy


def _metrics_cut(runs, inputs, run: str, keep: int | None) -> Path:
    """A copy of a fixture run folder whose metrics.csv is deleted (keep None) or cut to `keep`
    lines (0: an empty file): a --resume used to accept it and lose the history without a word."""
    copy = inputs / f"metrics_{run}_{keep}"
    shutil.copytree(runs[run], copy)
    if keep is None:
        (copy / "metrics.csv").unlink()
    else:
        lines = (copy / "metrics.csv").read_text().splitlines(keepends=True)
        (copy / "metrics.csv").write_text("".join(lines[:keep]))
    return copy


def _damaged_file(runs, inputs, run: str, file: str) -> Path:
    copy = inputs / f"half_{Path(file).name}"
    shutil.copyfile(runs[run] / file, copy)
    _truncate(copy)
    return copy


def _foreign_checkpoint(runs, inputs, run: str, file: str, content) -> Path:
    """A copy of a fixture run folder whose checkpoint `file` is replaced by another file:
    `content` names another run's checkpoint ("run/path") or is an object to torch.save."""
    copy = inputs / f"foreign_{run}"
    shutil.copytree(runs[run], copy)
    if isinstance(content, str):
        other, path = content.split("/", 1)
        shutil.copyfile(runs[other] / path, copy / file)
    else:
        torch.save(content, copy / file)
    return copy


def _edited(runs, inputs, run: str, file: str, edit) -> Path:
    """A copy of a fixture run folder with `file` rewritten by `edit(text) -> text`, or deleted
    (edit None)."""
    copy = inputs / f"edited_{run}_{Path(file).name}"
    shutil.copytree(runs[run], copy)
    if edit is None:
        (copy / file).unlink()
    else:
        text = (copy / file).read_text()
        assert edit(text) != text, f"the edit of {file} changed nothing"
        (copy / file).write_text(edit(text))
    return copy


def _flipped(runs, inputs, run: str, file: str) -> Path:
    """A copy of a fixture run folder with one bit flipped inside the largest record of checkpoint
    `file`: a tensor's bytes (torch.load alone would load it as another number) or, where the
    numbers are numpy arrays, the pickle."""
    copy = inputs / f"flipped_{run}"
    shutil.copytree(runs[run], copy)
    data = bytearray((copy / file).read_bytes())
    data[tensor_data_offset(copy / file, "largest") + 1000] ^= 0x10
    (copy / file).write_bytes(bytes(data))
    return copy


def _replaced(runs, inputs, run: str, file: str, content: bytes | None) -> Path:
    """A copy of a fixture run folder with `file` overwritten by `content`, or replaced by a
    folder (content None)."""
    copy = inputs / f"replaced_{run}_{Path(file).name}"
    shutil.copytree(runs[run], copy)
    (copy / file).unlink()
    if content is None:
        (copy / file).mkdir()
    else:
        (copy / file).write_bytes(content)
    return copy


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _steve_config(inputs: Path, name: str, updates: dict) -> Path:
    base = ROOT / "steve" / "configs" / PENDULUM
    return _write(inputs / f"{name}.json", json.dumps({"inherits": [str(base)], "updates": updates}))


def _cycle(inputs: Path) -> Path:
    a, b = inputs / "cycle_a.json", inputs / "cycle_b.json"
    _write(a, json.dumps({"inherits": [str(b)]}))
    _write(b, json.dumps({"inherits": [str(a)]}))
    return a


def _torch_file(path: Path, obj) -> Path:
    torch.save(obj, path)
    return path


INPUTS = {  # placeholder -> how to make it (runs, inputs folder, tmp_path)
    "empty": lambda r, i, t: (i / "empty").mkdir() or i / "empty",
    "file": lambda r, i, t: _write(i / "notes.txt", "not a run folder\n"),
    "missing": lambda r, i, t: i / "missing.yaml",
    "new": lambda r, i, t: t / "new",
    "badyaml": lambda r, i, t: _write(i / "broken.yaml", "total_steps: [1, 2\n  population: 3\n"),
    "listyaml": lambda r, i, t: _write(i / "list.yaml", "- total_steps\n- 100\n"),
    "algo_file": lambda r, i, t: _write(i / "algo.yaml", "algorithm: ppo\n"),
    "badjson": lambda r, i, t: _write(i / "broken.json", '{"inherits": ["algos/ddpg.json",\n'),
    # Latin-1 text (a config saved by an editor in another encoding): used to end in a traceback
    "latin1yaml": lambda r, i, t: _bytes(i / "latin1.yaml", "total_steps: 100  # r\u00e9sum\u00e9\n".encode("latin-1")),
    "latin1json": lambda r, i, t: _bytes(i / "latin1.json",
                                         '{"updates": {"name": "r\u00e9sum\u00e9"}}'.encode("latin-1")),
    "garbage": lambda r, i, t: _write(i / "garbage.pt", "not a checkpoint\n" * 50),
    "listpt": lambda r, i, t: _torch_file(i / "list.pt", [1, 2, 3]),
    "cycle": lambda r, i, t: _cycle(i),
    "steve_unknown_key": lambda r, i, t: _steve_config(i, "typo", {"policy_config": {"hiden_dim": 64}}),
    "steve_bad_env": lambda r, i, t: _steve_config(i, "bad_env", {"env": {"name": "Pendulum-v9"}}),
    "steve_bad_algo": lambda r, i, t: _steve_config(i, "bad_algo", {"policy_config": {"algo": "sac"}}),
    "steve_bad_explore": lambda r, i, t: _steve_config(
        i, "bad_explore", {"policy_config": {"exploration": {"type": "gaussian_noise"}}}),
    "steve_old_key": lambda r, i, t: _steve_config(
        i, "old_key", {"policy_config": {"explore_chance": 0.05}}),
    "damaged_searl": lambda r, i, t: _damaged_copy(r, i, "searl", "checkpoints/latest.pt"),
    "damaged_pb2": lambda r, i, t: _damaged_copy(r, i, "pb2", "checkpoints/latest.pt"),
    "damaged_se": lambda r, i, t: _damaged_copy(r, i, "se", "checkpoints/latest.pt"),
    "damaged_steve": lambda r, i, t: _damaged_copy(r, i, "steve", "checkpoints/backup.pt"),
    "damaged_proxy": lambda r, i, t: _damaged_copy(r, i, "se", "proxy.pt"),
    "nometrics_searl": lambda r, i, t: _metrics_cut(r, i, "searl", None),
    "emptymetrics_pb2": lambda r, i, t: _metrics_cut(r, i, "pb2", 0),
    "shortmetrics_se": lambda r, i, t: _metrics_cut(r, i, "se", 1),
    "damaged_se_config": lambda r, i, t: _damaged_copy(r, i, "se", "config.json"),
    "damaged_o4meta": lambda r, i, t: _damaged_copy(r, i, "o4meta", "checkpoint.pt"),
    # a checkpoint that is not the folder's own: another run's, or a torch file of something else
    "foreign_searl": lambda r, i, t: _foreign_checkpoint(r, i, "searl", "checkpoints/latest.pt",
                                                         "pb2/checkpoints/latest.pt"),
    "foreign_pb2": lambda r, i, t: _foreign_checkpoint(r, i, "pb2", "checkpoints/latest.pt",
                                                       {"weight": torch.zeros(3)}),
    "foreign_se": lambda r, i, t: _foreign_checkpoint(r, i, "se", "checkpoints/latest.pt", [1, 2, 3]),
    "foreign_steve": lambda r, i, t: _foreign_checkpoint(r, i, "steve", "checkpoints/backup.pt",
                                                         "searl/checkpoints/latest.pt"),
    "foreign_o4meta": lambda r, i, t: _foreign_checkpoint(r, i, "o4meta", "checkpoint.pt",
                                                          "se/checkpoints/latest.pt"),
    "edited_o4meta_config": lambda r, i, t: _edited(r, i, "o4meta", "config.json",
                                                    lambda text: text.replace('"discount": 0.995', '"discount": 0.9')),
    "edited_steve_config": lambda r, i, t: _edited(r, i, "steve", "config.json",
                                                   lambda text: text.replace('"seed": 0', '"seed": 7')),
    "nolog_o4meta": lambda r, i, t: _edited(r, i, "o4meta", "log.txt", None),
    # one bit flipped inside the data: every paper's --resume refuses it (zip CRC-32s)
    **{f"flipped_{run}": (lambda r, i, t, run=run, file=file: _flipped(r, i, run, file))
       for run, file in (("searl", "checkpoints/latest.pt"), ("pb2", "checkpoints/latest.pt"),
                         ("se", "checkpoints/latest.pt"), ("steve", "checkpoints/backup.pt"),
                         ("o4meta", "checkpoint.pt"))},
    # a file overwritten with bytes that are not text, or replaced by a folder
    "binmetrics_searl": lambda r, i, t: _replaced(r, i, "searl", "metrics.csv", bytes(range(128, 256)) * 40),
    "dirmetrics_pb2": lambda r, i, t: _replaced(r, i, "pb2", "metrics.csv", None),
    "binmetrics_steve": lambda r, i, t: _replaced(r, i, "steve", "metrics.csv", bytes(range(128, 256)) * 40),
    "listconfig_steve": lambda r, i, t: _replaced(r, i, "steve", "config.json", b"[1, 2]"),
    "binlog_o4meta": lambda r, i, t: _replaced(r, i, "o4meta", "log.txt", bytes(range(128, 256)) * 200),
    "cutlog_o4meta": lambda r, i, t: _edited(r, i, "o4meta", "log.txt", lambda text: text[:40]),
    "half_elite": lambda r, i, t: _damaged_file(r, i, "searl", "elite_policy.pt"),
    "half_valuerl": lambda r, i, t: _damaged_file(r, i, "steve", "checkpoints/valuerl.pt"),
}
PLACEHOLDER = re.compile(r"\{(\w+)\}")


def resolve(argv: str, runs: dict, inputs: Path, tmp_path: Path) -> list[str]:
    """Split `argv` like a shell and fill in its placeholders (making the inputs they name)."""
    made: dict[str, Path] = {}

    def fill(match):
        name = match.group(1)
        if name in runs:
            return str(runs[name])
        if name == "root":
            return str(ROOT)
        if name not in INPUTS:
            return match.group(0)   # YAML braces such as {h0: [1, 2]} stay as they are
        if name not in made:
            made[name] = INPUTS[name](runs, inputs, tmp_path)
        return str(made[name])

    return [PLACEHOLDER.sub(fill, arg) for arg in shlex.split(argv)]


# -- what must not change ---------------------------------------------------------------------------
def snapshot(*roots: Path) -> dict[str, str | None]:
    """Every path under `roots` with the sha256 of its bytes (None for folders)."""
    tree = {}
    for root in roots:
        tree[str(root)] = None if root.is_dir() else "absent"
        for path in sorted(root.rglob("*")) if root.is_dir() else ():
            tree[str(path)] = None if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
    return tree


def assert_refused(code, err: str, prog: str, words: tuple[str, ...]) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, f"exit status {code!r}, not 2; stderr:\n{err[-3000:]}"
    assert "Traceback" not in err, err[-3000:]
    assert 1 <= len(lines) <= 2, f"{len(lines)} lines on stderr:\n{err[-3000:]}"
    errors = [line for line in lines if line.startswith(f"{prog}: error: ")]
    assert len(errors) == 1, f"no single '{prog}: error:' line:\n{err}"
    others = [line for line in lines if line not in errors]
    assert all("Powered by Stella" in line for line in others), f"more than the error:\n{err}"
    for word in words:
        assert word in errors[0], f"the error does not name {word!r}: {errors[0]}"


@pytest.fixture
def guarded(runs, tmp_path, monkeypatch):
    """A working directory that must stay empty, the inputs folder, and the checks after the case."""
    cwd, inputs = tmp_path / "cwd", tmp_path / "inputs"
    cwd.mkdir()
    inputs.mkdir()
    monkeypatch.chdir(cwd)
    state = {"before": None}

    def freeze():
        state["before"] = snapshot(runs["searl"].parent, inputs, cwd)

    def alarm(signum, frame):
        raise TimeoutError(f"still running after {CASE_TIMEOUT}s: training, not refusing")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(CASE_TIMEOUT)
    yield {"cwd": cwd, "inputs": inputs, "freeze": freeze}
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)
    if state["before"] is not None:
        assert snapshot(runs["searl"].parent, inputs, cwd) == state["before"], \
            "a run folder, an input or the working directory changed"
    assert not (tmp_path / "new").exists(), "a new run folder was created"


# -- the table --------------------------------------------------------------------------------------
def bad(prog: str, label: str, argv: str, *words: str, xfail: str | None = None, marks=()):
    marks = [*marks, *([pytest.mark.xfail(strict=True, reason=xfail)] if xfail else [])]
    return pytest.param(prog, argv, words, id=f"{prog.removesuffix('.py')}:{label}", marks=marks)


ST, SE_, PB, SEV = "searl/train.py", "searl/evaluate.py", "pb2_procgen/train.py", "synthetic_envs/train.py"
SEE, VT, VTOY, VVIS = ("synthetic_envs/evaluate.py", "steve/train.py", "steve/toy_demo.py",
                       "steve/visualizer.py")
OM, OT = "optim4rl/main.py", "optim4rl/train.py"

CASES = [
    # searl/train.py -------------------------------------------------------------------------------
    bad(ST, "near-miss-env", "--env Pendulum-v2 --out-dir {searl}", "Pendulum-v1"),
    bad(ST, "unknown-env", "--smoke --env pendulum --out-dir {new}", "unknown environment id"),
    bad(ST, "near-miss-ale", "--env ALE/Pongg-v5 --out-dir {searl}", "ALE/Pong-v5"),
    bad(ST, "td3-on-discrete-env", "--smoke --env CartPole-v1 --out-dir {new}", "continuous"),
    bad(ST, "dqn-on-continuous-env", "--config_file {root}/searl/configs/searl_dqn.yaml --smoke "
        "--env Pendulum-v1 --out-dir {new}", "discrete"),
    bad(ST, "unknown-key", "--set nope=1 --out-dir {searl}", "unknown config key 'nope'"),
    bad(ST, "unknown-nested-key", "--set td3.lr_actr=1e-3 --out-dir {new}", "td3.lr_actr"),
    bad(ST, "set-without-value", "--set td3.batch_size --out-dir {new}", "KEY=VALUE"),
    # seeds: every RNG here takes [0, 2^31) (2^64 crashed in all five papers, three left a folder)
    bad(ST, "seed-2^64", "--seed 18446744073709551616 --out-dir {new}", "seed", "2147483648"),
    bad(PB, "seed-2^31", "--seed 2147483648 --out-dir {new}", "seed", "2147483648"),
    bad(SEV, "set-seed-2^64", "--set seed=18446744073709551616 --out-dir {new}", "seed", "2147483648"),
    bad(VT, "seed-2^64", f"{PENDULUM} --seed 18446744073709551616 --out-dir {{new}}", "--seed", "2147483648"),
    bad(OM, "seed-2^64", "--config catch_a2c --seed 18446744073709551616 --out-dir {new}", "seed", "2147483648"),
    # list entries are typed like the default's (these crashed in torch and left a folder)
    bad(ST, "set-list-entry-word", "--set 'td3.hidden=[64, abc]' --out-dir {new}", "td3.hidden[1]", "int"),
    bad(ST, "set-list-entry-fraction", "--set 'td3.hidden=[64.5]' --out-dir {new}", "td3.hidden[0]", "64.5"),
    bad(ST, "wrong-type-int", "--set td3.batch_size=abc --out-dir {searl}", "td3.batch_size"),
    bad(ST, "wrong-type-float-for-int", "--set population=2.5 --out-dir {new}", "population"),
    bad(ST, "wrong-type-mapping", "--set td3=3 --out-dir {new}", "td3"),
    bad(ST, "nan-lr", "--set td3.lr_actor=.nan --out-dir {searl}", "td3.lr_actor", "finite"),
    bad(ST, "inf-lr", "--set td3.lr_critic=.inf --out-dir {new}", "td3.lr_critic"),
    bad(ST, "negative-lr", "--set td3.lr_actor=-3e-4 --out-dir {searl}", "td3.lr_actor"),
    bad(ST, "gamma-above-1", "--set td3.gamma=1.5 --out-dir {new}", "td3.gamma"),
    bad(ST, "zero-budget", "--total-steps 0 --out-dir {searl}", "total_steps"),
    bad(ST, "negative-budget", "--total-steps -5 --out-dir {new}", "total_steps"),
    bad(ST, "population-0", "--population 0 --out-dir {new}", "population"),
    bad(ST, "zero-hidden", "--set 'td3.hidden=[64, 0]' --out-dir {new}", "td3.hidden"),
    bad(ST, "negative-mutation-probability", "--set 'mutation_probabilities={none: -1}' "
        "--out-dir {new}", "mutation_probabilities"),
    bad(ST, "unknown-activation", "--smoke --set td3.activation=foo --out-dir {new}", "td3.activation"),
    bad(ST, "unknown-optimizer", "--smoke --set td3.optimizer=sgdx --out-dir {searl}", "td3.optimizer"),
    bad(ST, "no-hidden-layer", "--smoke --set 'td3.hidden=[]' --out-dir {new}", "td3.hidden"),
    bad(ST, "unknown-mutable-hyperparameter", "--smoke --set 'td3.mutate_hyperparameters=[foo]' "
        "--out-dir {new}", "td3.mutate_hyperparameters"),
    bad(ST, "nothing-to-mutate", "--smoke --set 'td3.mutate_hyperparameters=[]' --out-dir {new}",
        "td3.mutate_hyperparameters"),
    bad(ST, "dqn-unknown-activation", "--config_file {root}/searl/configs/searl_dqn.yaml --smoke "
        "--set dqn.activation=foo --out-dir {new}", "dqn.activation"),
    bad(ST, "dqn-no-hidden-layer", "--config_file {root}/searl/configs/searl_dqn.yaml --smoke "
        "--set 'dqn.hidden=[]' --out-dir {new}", "dqn.hidden"),
    bad(ST, "unknown-algorithm-in-set", "--smoke --set algorithm=ppo --out-dir {new}", "ppo"),
    bad(ST, "unknown-algorithm-in-config", "--config {algo_file} --out-dir {new}", "ppo"),
    bad(ST, "workers-0", "--workers 0 --out-dir {searl}", "--workers"),
    bad(ST, "workers-negative", "--workers -1 --out-dir {new}", "--workers"),
    bad(ST, "workers-abc", "--workers abc --out-dir {new}", "--workers"),
    bad(ST, "bad-backend", "--backend threads --out-dir {searl}", "--backend"),
    bad(ST, "seed-abc", "--seed abc --out-dir {new}", "--seed"),
    bad(ST, "seed-negative", "--smoke --seed -1 --out-dir {new}", "seed"),
    bad(ST, "seed-negative-in-set", "--smoke --set seed=-3 --out-dir {searl}", "seed"),
    bad(ST, "unknown-flag", "--no-such-flag --out-dir {searl}", "--no-such-flag"),
    bad(ST, "missing-config", "--config_file {missing} --out-dir {new}", "config file not found"),
    bad(ST, "broken-yaml", "--config {badyaml} --out-dir {searl}", "cannot parse config file"),
    bad(ST, "latin1-yaml", "--config {latin1yaml} --out-dir {new}", "not UTF-8"),
    bad(ST, "yaml-not-a-mapping", "--config {listyaml} --out-dir {new}", "mapping"),
    bad(ST, "other-papers-config", "--config {pb2}/config.json --out-dir {new}", "unknown config key"),
    bad(ST, "cuda-without-cuda", "--smoke --device cuda --out-dir {searl}", "CUDA", marks=[NO_CUDA]),
    bad(ST, "device-tpu", "--smoke --device tpu --out-dir {new}", "tpu"),
    bad(ST, "unwritable-out-dir", "--smoke --out-dir /proc/x", "/proc"),
    bad(ST, "out-dir-is-a-file", "--smoke --out-dir {file}", "not a folder"),
    bad(ST, "expt-dir-unwritable", "--smoke --expt_dir /proc/x", "/proc"),
    bad(ST, "existing-run", "--smoke --out-dir {searl}", "already holds a run"),
    bad(ST, "other-papers-run", "--smoke --out-dir {steve}", "already holds a run"),
    bad(ST, "resume-without-out-dir", "--resume", "--resume needs --out-dir"),
    bad(ST, "resume-absent-folder", "--resume --out-dir {new}", "no checkpoint"),
    bad(ST, "resume-empty-folder", "--resume --out-dir {empty}", "no checkpoint"),
    bad(ST, "resume-changed-env", "--resume --env CartPole-v1 --out-dir {searl}", "--env"),
    bad(ST, "resume-changed-set", "--resume --set population=3 --out-dir {searl}", "--set"),
    bad(ST, "resume-with-smoke", "--resume --smoke --out-dir {searl}", "--smoke"),
    bad(ST, "resume-zero-budget", "--resume --total-steps 0 --out-dir {searl}", "total_steps"),
    bad(ST, "resume-truncated-checkpoint", "--resume --out-dir {damaged_searl}",
        "cannot read checkpoint", "latest.pt"),
    bad(ST, "resume-other-papers-run", "--resume --out-dir {pb2}", "config key"),
    bad(ST, "resume-metrics-deleted", "--resume --out-dir {nometrics_searl}", "metrics.csv is missing"),
    bad(ST, "resume-another-runs-checkpoint", "--resume --out-dir {foreign_searl}", "another run's"),
    bad(ST, "resume-metrics-overwritten", "--resume --out-dir {binmetrics_searl}", "metrics.csv cannot be read"),
    bad(ST, "resume-flipped-bit-in-data", "--resume --out-dir {flipped_searl}", "checksum mismatch"),
    # searl/evaluate.py ----------------------------------------------------------------------------
    bad(SE_, "absent-run-dir", "{new}", "no exported policy"),
    bad(SE_, "other-papers-run-dir", "{pb2}", "no exported policy"),
    bad(SE_, "other-papers-file", "{se}/proxy.pt", "not a SEARL policy file"),
    bad(SE_, "truncated-elite", "{half_elite}", "elite_policy.pt"),
    bad(SE_, "garbage-file", "{garbage}", "garbage.pt"),
    bad(SE_, "text-file", "{file}", "notes.txt"),
    bad(SE_, "episodes-0", "{searl} --episodes 0", "--episodes"),
    bad(SE_, "episodes-negative", "{searl} --episodes -3", "--episodes"),
    bad(SE_, "episodes-abc", "{searl} --episodes abc", "--episodes"),
    bad(SE_, "unknown-env", "{searl} --env Pendulum-v9", "Pendulum-v1"),
    bad(SE_, "env-of-another-shape", "{searl} --env CartPole-v1", "observations"),
    bad(SE_, "no-policy-argument", "", "policy"),
    bad(SE_, "seed-negative", "{searl} --seed -1", "--seed"),
    # pb2_procgen/train.py -------------------------------------------------------------------------
    bad(PB, "ale-env", "--env ALE/Pong-v5 --out-dir {pb2}", "ALE/Pong-v5"),
    bad(PB, "continuous-env", "--env Pendulum-v1 --out-dir {new}", "Pendulum-v1"),
    bad(PB, "near-miss-procgen", "--env bigfsh --out-dir {pb2}", "bigfish"),
    bad(PB, "near-miss-gym", "--env CartPole-v9 --out-dir {new}", "CartPole-v1"),
    bad(PB, "unknown-env", "--env toyy --out-dir {new}", "toy"),
    bad(PB, "bad-search", "--env toy --search PB3 --out-dir {pb2}", "--search"),
    bad(PB, "bad-cat-exp", "--env toy --cat_exp exp4 --out-dir {new}", "--cat_exp"),
    bad(PB, "batchsize-0", "--env toy --batchsize 0 --out-dir {pb2}", "batchsize"),
    bad(PB, "negative-budget", "--env toy --max_budget -1 --out-dir {new}", "max_budget"),
    bad(PB, "t-ready-above-budget", "--env toy --max_budget 10 --t_ready 100 --out-dir {new}",
        "--t_ready"),
    bad(PB, "quantile-out-of-range", "--env toy --set quantile=0.7 --out-dir {pb2}", "quantile"),
    bad(PB, "quantile-nan", "--env toy --set quantile=.nan --out-dir {new}", "quantile"),
    bad(PB, "negative-lr", "--env CartPole-v1 --set agent.lr=-1e-3 --out-dir {pb2}", "agent.lr"),
    bad(PB, "gamma-above-1", "--env CartPole-v1 --set agent.gamma=1.5 --out-dir {new}", "agent.gamma"),
    bad(PB, "unknown-key", "--env toy --set agent.nope=1 --out-dir {pb2}", "agent.nope"),
    bad(PB, "wrong-type", "--env toy --set batchsize=abc --out-dir {new}", "batchsize"),
    bad(PB, "unknown-bound", "--env toy --set 'bounds={nope: [0, 1]}' --out-dir {new}", "nope"),
    bad(PB, "infinite-bound", "--env toy --set 'bounds={h0: [0, .inf]}' --out-dir {pb2}", "h0"),
    bad(PB, "workers-0", "--env toy --workers 0 --out-dir {new}", "--workers"),
    bad(PB, "workers-abc", "--env toy --workers abc --out-dir {pb2}", "--workers"),
    bad(PB, "workers-negative", "--env CartPole-v1 --workers -1 --out-dir {new}", "--workers"),
    bad(PB, "ale-env-fresh-folder", "--env ALE/Pong-v5 --out-dir {new}", "ALE/Pong-v5"),
    bad(PB, "bad-backend", "--env toy --backend mpi --out-dir {new}", "--backend"),
    bad(PB, "seed-negative", "--env toy --seed -1 --out-dir {new}", "seed"),
    bad(PB, "gpu-per-trial-abc", "--env toy --gpu_per_trial abc --out-dir {new}", "--gpu_per_trial"),
    bad(PB, "cuda-without-cuda", "--env toy --device cuda:0 --out-dir {pb2}", "CUDA", marks=[NO_CUDA]),
    bad(PB, "device-tpu", "--env toy --device tpu --out-dir {new}", "tpu"),
    bad(PB, "missing-config", "--config {missing} --out-dir {new}", "config file not found"),
    bad(PB, "broken-yaml", "--config {badyaml} --out-dir {pb2}", "cannot parse config file"),
    bad(PB, "latin1-yaml", "--config {latin1yaml} --out-dir {new}", "not UTF-8"),
    bad(PB, "unwritable-out-dir", "--env toy --out-dir /proc/x", "/proc"),
    bad(PB, "out-dir-is-a-file", "--env toy --out-dir {file}", "not a folder"),
    bad(PB, "existing-run", "--env toy --out-dir {pb2}", "already holds a run"),
    bad(PB, "other-papers-run", "--env toy --out-dir {searl}", "already holds a run"),
    bad(PB, "resume-without-out-dir", "--resume", "--resume needs --out-dir"),
    bad(PB, "resume-absent-folder", "--resume --out-dir {new}", "no checkpoint"),
    bad(PB, "resume-changed-search", "--resume --search PBT --out-dir {pb2}", "--search"),
    bad(PB, "resume-zero-budget", "--resume --max_budget 0 --out-dir {pb2}", "max_budget"),
    bad(PB, "resume-negative-budget", "--resume --max_budget -4 --out-dir {pb2}", "max_budget"),
    bad(PB, "resume-truncated-checkpoint", "--resume --out-dir {damaged_pb2}",
        "cannot read checkpoint", "latest.pt"),
    bad(PB, "resume-other-papers-run", "--resume --out-dir {searl}", "config key"),
    bad(PB, "resume-metrics-emptied", "--resume --out-dir {emptymetrics_pb2}", "metrics.csv holds 0 rows"),
    bad(PB, "resume-foreign-torch-file", "--resume --out-dir {foreign_pb2}", "is not a checkpoint of the run"),
    bad(PB, "resume-metrics-a-folder", "--resume --out-dir {dirmetrics_pb2}", "metrics.csv cannot be read"),
    bad(PB, "resume-flipped-bit-in-data", "--resume --out-dir {flipped_pb2}", "checksum mismatch"),
    # synthetic_envs/train.py ----------------------------------------------------------------------
    bad(SEV, "near-miss-env", "--env clif --out-dir {se}", "cliff"),
    bad(SEV, "gym-id", "--env CartPole-v1 --out-dir {new}", "allowed"),
    bad(SEV, "bad-kind", "--kind xx --out-dir {se}", "--kind"),
    bad(SEV, "kind-not-on-env", "--kind se --env cmc --out-dir {new}", "--kind se"),
    bad(SEV, "bad-agent", "--agent foo --out-dir {new}", "--agent"),
    bad(SEV, "tabular-agent-on-continuous-env", "--env cmc --agent ql --out-dir {se}", "ql"),
    bad(SEV, "unknown-mode", "--mode 9 --out-dir {new}", "mode 9"),
    bad(SEV, "baseline-mode", "--mode 0 --out-dir {se}", "nothing to learn"),
    bad(SEV, "zero-iterations", "--iterations 0 --out-dir {new}", "iterations"),
    bad(SEV, "negative-iterations", "--iterations -2 --out-dir {se}", "iterations"),
    bad(SEV, "zero-sigma", "--set sigma=0 --out-dir {new}", "sigma"),
    bad(SEV, "inf-sigma", "--set sigma=.inf --out-dir {se}", "sigma"),
    bad(SEV, "nan-step-size", "--set step_size=.nan --out-dir {new}", "step_size"),
    bad(SEV, "negative-inner-lr", "--set agent_hp.alpha=-0.1 --out-dir {se}", "agent_hp.alpha"),
    bad(SEV, "inner-gamma-above-1", "--set agent_hp.gamma=2 --out-dir {new}", "agent_hp.gamma"),
    bad(SEV, "unknown-key", "--set nope=1 --out-dir {se}", "nope"),
    bad(SEV, "population-not-bool", "--kind se --env cartpole --set population=maybe --out-dir {new}", "population"),
    bad(SEV, "unknown-agent-hp", "--set agent_hp.nope=1 --out-dir {new}", "agent_hp.nope"),
    bad(SEV, "wrong-type", "--set num_workers=abc --out-dir {new}", "num_workers"),
    bad(SEV, "seed-negative", "--smoke --seed -1 --out-dir {new}", "seed"),
    bad(SEV, "bad-score-transform", "--set score_transform=9 --out-dir {se}", "score_transform"),
    bad(SEV, "unknown-proxy-activation", "--set proxy.activation=foo --out-dir {new}", "foo"),
    bad(SEV, "bad-estimator", "--set estimator=plain --out-dir {new}", "estimator"),
    bad(SEV, "workers-0", "--workers 0 --out-dir {se}", "--workers"),
    bad(SEV, "bad-backend", "--backend xyz --out-dir {new}", "--backend"),
    bad(SEV, "cuda-without-cuda", "--device cuda --out-dir {se}", "CUDA", marks=[NO_CUDA]),
    bad(SEV, "device-tpu", "--device tpu --out-dir {new}", "tpu"),
    bad(SEV, "missing-config", "--config {missing} --out-dir {new}", "config file not found"),
    bad(SEV, "broken-yaml", "--config {badyaml} --out-dir {se}", "cannot parse config file"),
    bad(SEV, "latin1-yaml", "--config {latin1yaml} --out-dir {new}", "not UTF-8"),
    bad(SEV, "unwritable-out-dir", "--smoke --out-dir /proc/x", "/proc"),
    bad(SEV, "out-dir-is-a-file", "--smoke --out-dir {file}", "not a folder"),
    bad(SEV, "existing-run", "--smoke --out-dir {se}", "already holds a run"),
    bad(SEV, "other-papers-run", "--smoke --out-dir {steve}", "already holds a run"),
    bad(SEV, "resume-without-out-dir", "--resume", "--resume needs --out-dir"),
    bad(SEV, "resume-absent-folder", "--resume --out-dir {new}", "no checkpoint"),
    bad(SEV, "resume-changed-mode", "--resume --mode 3 --out-dir {se}", "--mode"),
    bad(SEV, "resume-zero-iterations", "--resume --iterations 0 --out-dir {se}", "iterations"),
    bad(SEV, "resume-metrics-cut", "--resume --out-dir {shortmetrics_se}", "metrics.csv holds 0 rows"),
    bad(SEV, "resume-truncated-checkpoint", "--resume --out-dir {damaged_se}",
        "cannot read checkpoint", "latest.pt"),
    bad(SEV, "resume-other-papers-run", "--resume --out-dir {pb2}", "config"),
    bad(SEV, "resume-list-as-checkpoint", "--resume --out-dir {foreign_se}", "is not a checkpoint of the run"),
    bad(SEV, "resume-flipped-bit-in-data", "--resume --out-dir {flipped_se}", "checksum mismatch"),
    # synthetic_envs/evaluate.py -------------------------------------------------------------------
    bad(SEE, "absent-run-dir", "{new}", "no run folder"),
    bad(SEE, "file-as-run-dir", "{file}", "no run folder"),
    bad(SEE, "other-papers-run-dir", "{searl}", "proxy.pt"),
    bad(SEE, "truncated-proxy", "{damaged_proxy}", "cannot read checkpoint", "proxy.pt"),
    bad(SEE, "damaged-config", "{damaged_se_config}", "config.json"),
    bad(SEE, "unknown-agent", "{se} --agents ql,foo", "foo"),
    bad(SEE, "agent-not-for-env", "{se} --agents td3", "td3"),
    bad(SEE, "n-agents-0", "{se} --n-agents 0", "--n-agents"),
    bad(SEE, "n-agents-abc", "{se} --n-agents abc", "--n-agents"),
    bad(SEE, "test-episodes-0", "{se} --test-episodes 0", "--test-episodes"),
    bad(SEE, "check-every-negative", "{se} --check-every -1", "--check-every"),
    bad(SEE, "max-episodes-negative", "{se} --max-episodes -1", "--max-episodes"),
    bad(SEE, "workers-0", "{se} --workers 0", "--workers"),
    bad(SEE, "seed-negative", "{se} --seed -1", "--seed"),
    bad(SEE, "eps-above-1", "{se} --eps 2", "--eps"),
    bad(SEE, "eps-nan", "{se} --eps nan", "--eps"),
    # steve/train.py -------------------------------------------------------------------------------
    bad(VT, "missing-config", "{missing} --out-dir {new}", "config file not found"),
    bad(VT, "inherits-cycle", "{cycle} --out-dir {new}", "inherits cycle"),
    bad(VT, "broken-json", "{badjson} --out-dir {new}", "invalid JSON"),
    bad(VT, "latin1-json", "{latin1json} --out-dir {new}", "not UTF-8"),
    bad(VT, "unknown-config-key", "{steve_unknown_key} --out-dir {new}", "hiden_dim"),
    bad(VT, "old-config-key", "{steve_old_key} --out-dir {new}", "exploration"),
    bad(VT, "unknown-algo", "{steve_bad_algo} --out-dir {new}", "sac"),
    bad(VT, "unknown-exploration", "{steve_bad_explore} --out-dir {new}", "gaussian_noise"),
    bad(VT, "unknown-env-in-config", "{steve_bad_env} --out-dir {new}", "Pendulum-v9"),
    bad(VT, "other-papers-config", "{searl}/config.json --out-dir {new}", "config.json"),
    bad(VT, "frames-0", f"{PENDULUM} --frames 0 --out-dir {{steve}}", "--frames"),
    bad(VT, "frames-negative", f"{PENDULUM} --frames -5 --out-dir {{new}}", "--frames"),
    bad(VT, "frames-abc", f"{PENDULUM} --frames abc --out-dir {{new}}", "--frames"),
    bad(VT, "eval-every-0", f"{PENDULUM} --eval-every 0 --out-dir {{new}}", "--eval-every"),
    bad(VT, "negative-corruption", f"{PENDULUM} --corrupt-model -1 --out-dir {{steve}}",
        "--corrupt-model"),
    bad(VT, "compile-with-corruption", f"{PENDULUM} --compile --corrupt-model 1 --out-dir {{new}}",
        "--compile", "--corrupt-model"),
    bad(VT, "cuda-without-cuda", f"{PENDULUM} --device cuda --out-dir {{steve}}", "CUDA",
        marks=[NO_CUDA]),
    bad(VT, "gpu-id-without-cuda", f"{PENDULUM} 0 --out-dir {{new}}", "CUDA", marks=[NO_CUDA]),
    bad(VT, "device-tpu", f"{PENDULUM} --device tpu --out-dir {{new}}", "tpu"),
    bad(VT, "seed-negative", f"{PENDULUM} --smoke --seed -1 --out-dir {{new}}", "--seed"),
    bad(VT, "unwritable-out-dir", f"{PENDULUM} --out-dir /proc/x", "/proc"),
    bad(VT, "out-dir-is-a-file", f"{PENDULUM} --out-dir {{file}}", "notes.txt"),
    bad(VT, "existing-run", f"{PENDULUM} --smoke --out-dir {{steve}}", "already exists"),
    bad(VT, "other-papers-run", f"{PENDULUM} --smoke --out-dir {{searl}}", "already exists"),
    bad(VT, "resume-absent-folder", f"{PENDULUM} --resume --out-dir {{new}}", "no backup"),
    bad(VT, "resume-default-folder-absent", f"{PENDULUM} --resume --output-root {{new}}", "no backup"),
    bad(VT, "resume-other-papers-run", f"{PENDULUM} --resume --out-dir {{searl}}", "no backup"),
    bad(VT, "resume-truncated-backup", f"{PENDULUM} --resume --out-dir {{damaged_steve}}",
        "cannot read checkpoint", "backup.pt"),
    bad(VT, "resume-another-runs-backup", f"{PENDULUM} --resume --out-dir {{foreign_steve}}", "another run's"),
    bad(VT, "resume-config-json-edited", f"{PENDULUM} --resume --out-dir {{edited_steve_config}}",
        "config.json was changed"),
    bad(VT, "resume-metrics-overwritten", f"{PENDULUM} --resume --out-dir {{binmetrics_steve}}",
        "metrics.csv is not the text it was"),
    bad(VT, "resume-config-json-a-list", f"{PENDULUM} --resume --out-dir {{listconfig_steve}}",
        "config.json is missing or damaged"),
    bad(VT, "resume-flipped-bit-in-data", f"{PENDULUM} --resume --out-dir {{flipped_steve}}",
        "checksum mismatch"),
    bad(VT, "backup-every-0", f"{PENDULUM} --backup-every 0 --out-dir {{new}}", "--backup-every"),
    bad(VT, "set-unknown-key", f"{PENDULUM} --set policy_config.hiden_dim=3 --out-dir {{new}}", "hiden_dim"),
    bad(VT, "set-not-a-number", f"{PENDULUM} --set policy_config.batch_size=abc --out-dir {{new}}", "number"),
    bad(VT, "set-nan-rate", f"{PENDULUM} --set policy_config.learning_rate=.nan --out-dir {{new}}",
        "learning_rate"),
    bad(VT, "set-without-equals", f"{PENDULUM} --set policy_config --out-dir {{new}}", "KEY=VALUE"),
    bad(VT, "env-discrete", f"{PENDULUM} --env CartPole-v1 --out-dir {{new}}", "continuous"),
    bad(VT, "env-unknown", f"{PENDULUM} --env Pendulum-v9 --out-dir {{new}}", "Pendulum-v9"),
    bad(VT, "two-configs", f"{PENDULUM} --config experiments/goodruns/pendulum/steve0.json --out-dir {{new}}",
        "once"),
    bad(VT, "resume-other-seed", f"{PENDULUM} --smoke --resume --seed 99 --out-dir {{steve}}", "--seed 99"),
    bad(VT, "resume-other-config", f"{PENDULUM} --smoke --resume --set policy_config.batch_size=64 "
        "--out-dir {steve}", "policy_config.batch_size"),
    # steve/toy_demo.py ----------------------------------------------------------------------------
    bad(VTOY, "trials-0", "--trials 0 --out-dir {steve}", "--trials"),
    bad(VTOY, "trials-negative", "--trials -1 --out-dir {new}", "--trials"),
    bad(VTOY, "trials-abc", "--trials abc --out-dir {new}", "--trials"),
    bad(VTOY, "seed-negative", "--seed -1 --out-dir {new}", "--seed"),
    bad(VTOY, "out-dir-is-a-file", "--trials 1 --out-dir {file}", "not a folder"),
    bad(VTOY, "out-dir-under-a-file", "--trials 1 --out-dir {file}/toy", "notes.txt"),
    bad(VTOY, "unwritable-out-dir", "--trials 1 --out-dir /proc/x", "/proc"),
    bad(VTOY, "unknown-flag", "--trails 3 --out-dir {new}", "--trails"),
    # steve/visualizer.py --------------------------------------------------------------------------
    bad(VVIS, "missing-config", "{missing} {steve}/checkpoints/valuerl.pt", "config file not found"),
    bad(VVIS, "inherits-cycle", "{cycle} {steve}/checkpoints/valuerl.pt", "inherits cycle"),
    bad(VVIS, "absent-model", f"{PENDULUM} {{new}}/valuerl.pt", "no model file"),
    bad(VVIS, "folder-as-model", f"{PENDULUM} {{steve}}", "no model file"),
    bad(VVIS, "truncated-model", f"{PENDULUM} {{half_valuerl}}", "cannot read checkpoint",
        "valuerl.pt"),
    bad(VVIS, "garbage-model", f"{PENDULUM} {{garbage}}", "garbage.pt"),
    bad(VVIS, "model-of-another-kind", f"{PENDULUM} {{listpt}}", "list.pt"),
    bad(VVIS, "other-papers-model", f"{PENDULUM} {{searl}}/elite_policy.pt", "elite_policy.pt"),
    bad(VVIS, "model-of-another-env", "experiments/goodruns/halfcheetah/ddpg0.json "
        "{steve}/checkpoints/valuerl.pt", "valuerl.pt"),
    bad(VVIS, "seed-negative", f"{PENDULUM} {{steve}}/checkpoints/valuerl.pt --seed -1", "--seed"),
    bad(VVIS, "episodes-0", f"{PENDULUM} {{steve}}/checkpoints/valuerl.pt --episodes 0", "--episodes"),
    bad(VVIS, "episodes-abc", f"{PENDULUM} {{steve}}/checkpoints/valuerl.pt --episodes abc",
        "--episodes"),
    # optim4rl/main.py and optim4rl/train.py
    bad(OM, "missing-config", "--config_file nope --out-dir {new}", "config file not found"),
    bad(OM, "no-config", "--config_idx 1", "--config_file"),
    bad(OM, "broken-json", "--config_file {badjson} --out-dir {new}", "broken.json"),
    bad(OM, "latin1-json", "--config_file {latin1json} --out-dir {new}", "latin1.json"),
    # an index <= 0 runs combination i + N (the reference's modular decoding): 0 is catch_a2c's
    # combination 2, -1 its combination 1 with the default seed; neither is the {o4} run
    bad(OM, "index-0-into-another-run", "--config catch_a2c --config_idx 0 --out-dir {o4}", "another run"),
    bad(OM, "index-negative-into-other-paper", "--config catch_a2c --config_idx -1 --out-dir {searl}",
        "another run"),
    bad(OM, "index-abc", "--config catch_a2c --config_idx abc --out-dir {new}", "--config_idx"),
    bad(OM, "threads-negative", "--config catch_a2c --threads -1 --out-dir {new}", "--threads"),
    bad(OM, "unknown-env", "--config catch_a2c --env catchh --out-dir {o4}", "catchh"),
    bad(OM, "unknown-set-key", "--config catch_a2c --set env.nope=1 --out-dir {new}", "env.nope"),
    bad(OM, "cuda", "--config catch_a2c --device cuda --out-dir {o4}", "cuda", marks=[NO_CUDA]),
    bad(OM, "device-tpu", "--config catch_a2c --device tpu --out-dir {new}", "tpu"),
    bad(OM, "missing-param-load-path", "--config catch_lopt --param-load-path {new}/param.pt "
        "--out-dir {new}", "param.pt"),
    bad(OM, "garbage-param-load-path", "--config catch_lopt --param-load-path {garbage} "
        "--out-dir {o4}", "garbage.pt"),
    bad(OM, "identity-without-data", "--config catch_identity --logs-root {new} --out-dir {new}",
        "datapath"),
    bad(OM, "other-papers-config", "--config {searl}/config.json --out-dir {new}", "config.json"),
    # --set values take the key's type and must lie in its range
    bad(OM, "set-steps-negative", "--config catch_a2c --set env.train_steps=-5 --out-dir {new}",
        "env.train_steps", ">= 1"),
    bad(OM, "set-steps-abc", "--config catch_a2c --set env.train_steps=abc --out-dir {new}",
        "env.train_steps", "abc"),
    bad(OM, "set-steps-nan", "--config catch_a2c --set env.train_steps=.nan --out-dir {o4}",
        "env.train_steps", "finite"),
    bad(OM, "set-steps-below-one-update", "--config catch_a2c --set env.train_steps=100 --out-dir {new}",
        "env.train_steps", "one update"),
    bad(OM, "set-envs-fraction", "--config catch_a2c --set env.num_envs=2.5 --out-dir {new}",
        "env.num_envs", "int"),
    bad(OM, "set-lr-negative", "--config catch_a2c --set agent_optimizer.kwargs.learning_rate=-1e-3 "
        "--out-dir {new}", "learning_rate", "> 0"),
    bad(OM, "set-lr-abc", "--config catch_a2c --set agent_optimizer.kwargs.learning_rate=abc "
        "--out-dir {new}", "learning_rate", "abc"),
    bad(OM, "set-meta-lr-nan", "--config catch_meta --set meta_optimizer.kwargs.learning_rate=.nan "
        "--out-dir {new}", "meta_optimizer.kwargs.learning_rate", "finite"),
    bad(OM, "set-unknown-torso", "--config grid_small_meta --set agent.big_map_torso=hw --out-dir {new}",
        "big_map_torso", "reference"),
    bad(OM, "set-discount-above-1", "--config catch_a2c --set discount=1.5 --out-dir {new}", "discount"),
    # a folder of another run is never written, with or without --overwrite
    bad(OM, "out-dir-searl-run", "--config catch_a2c --out-dir {searl}", "another run"),
    bad(OM, "out-dir-steve-run-overwrite", "--config catch_a2c --out-dir {steve} --overwrite", "another run"),
    bad(OM, "out-dir-pb2-run", "--config catch_a2c --out-dir {pb2}", "another run"),
    bad(OM, "out-dir-se-run-overwrite", "--config catch_a2c --out-dir {se} --overwrite", "another run"),
    bad(OM, "out-dir-other-seed", "--config catch_a2c --config_idx 1 --set env.train_steps=2000 "
        "--set env.num_envs=8 --seed 5 --out-dir {o4} --overwrite", "another run"),
    bad(OM, "out-dir-same-run-finished", "--config catch_a2c --config_idx 1 --set env.train_steps=2000 "
        "--set env.num_envs=8 --out-dir {o4}", "finished", "--overwrite"),
    bad(OM, "out-dir-file", "--config catch_a2c --out-dir {file}", "not a folder"),
    # a killed meta-training ({o4meta}, with its checkpoint): what --resume checks first
    bad(OM, "resume-truncated-checkpoint", O4META.replace("{o4meta}", "{damaged_o4meta}") + " --resume",
        "checkpoint.pt"),
    bad(OM, "resume-flipped-bit-in-data", O4META.replace("{o4meta}", "{flipped_o4meta}") + " --resume",
        "checksum mismatch"),
    bad(OM, "resume-another-runs-checkpoint", O4META.replace("{o4meta}", "{foreign_o4meta}") + " --resume",
        "another run's"),
    bad(OM, "resume-config-json-edited", O4META.replace("{o4meta}", "{edited_o4meta_config}") + " --resume",
        "config.json was changed"),
    bad(OM, "resume-log-deleted", O4META.replace("{o4meta}", "{nolog_o4meta}") + " --resume", "log.txt is missing"),
    bad(OM, "resume-log-overwritten", O4META.replace("{o4meta}", "{binlog_o4meta}") + " --resume",
        "log.txt is not the text it was"),
    bad(OM, "resume-log-cut", O4META.replace("{o4meta}", "{cutlog_o4meta}") + " --resume", "log.txt holds 40 bytes"),
    bad(OM, "resume-other-seed", O4META + " --seed 5 --resume", "another run"),
    bad(OM, "rerun-without-resume", O4META, "pass --resume"),
    bad(OT, "index-0-into-another-run", "--config catch_a2c --config_idx 0 --out-dir {o4}", "another run"),
    bad(OT, "set-steps-negative", "--config catch_a2c --set env.train_steps=-5 --out-dir {new}",
        "env.train_steps"),
    bad(OT, "unknown-env", "--config catch_a2c --env Catch --out-dir {new}", "Catch"),
    bad(OT, "device-tpu", "--config catch_a2c --device tpu --out-dir {o4}", "tpu"),
    bad(OT, "no-config", "--config_idx 1", "--config_file"),
]


@pytest.mark.parametrize("prog, argv, words", CASES)
def test_bad_input_in_process(prog, argv, words, runs, tmp_path, guarded, capfd):
    args = resolve(argv, runs, guarded["inputs"], tmp_path)
    main = importlib.import_module(ENTRY_POINTS[prog]).main
    capfd.readouterr()
    guarded["freeze"]()
    with pytest.raises(SystemExit) as stopped:
        run_main(main, args, prog=prog)
    assert_refused(stopped.value.code, capfd.readouterr().err, prog, words)


# -- the same as scripts: one or two per entry point --------------------------------------------------
SCRIPT_CASES = [
    bad(ST, "script:near-miss-env", "--env Pendulum-v2 --out-dir {searl}", "Pendulum-v1"),
    bad(ST, "script:resume-truncated-checkpoint", "--resume --out-dir {damaged_searl}", "latest.pt"),
    bad(SE_, "script:truncated-elite", "{half_elite}", "elite_policy.pt"),
    bad(PB, "script:ale-env", "--env ALE/Pong-v5 --out-dir {pb2}", "ALE/Pong-v5"),
    bad(SEV, "script:nan-sigma", "--set sigma=.nan --out-dir {se}", "sigma"),
    bad(SEE, "script:other-papers-run-dir", "{searl}", "proxy.pt"),
    bad(VT, "script:inherits-cycle", "{cycle} --out-dir {new}", "inherits cycle"),
    bad(VTOY, "script:trials-0", "--trials 0 --out-dir {new}", "--trials"),
    bad(VVIS, "script:truncated-model", f"{PENDULUM} {{half_valuerl}}", "valuerl.pt"),
    bad(OM, "script:device-tpu", "--config catch_a2c --device tpu --out-dir {o4}", "tpu"),
    bad(OT, "script:index-0-into-another-run", "--config catch_a2c --config_idx 0 --out-dir {o4}",
        "another run"),
    bad(OM, "script:set-steps-1e5-into-searl-run", "--config catch_a2c --set env.train_steps=1e5 "
        "--out-dir {searl}", "another run"),
]


def run_command(command: list[str], cwd: Path, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=cwd, env=clean_env(), capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.parametrize("prog, argv, words", SCRIPT_CASES)
def test_bad_input_as_a_script(prog, argv, words, runs, tmp_path, guarded):
    args = resolve(argv, runs, guarded["inputs"], tmp_path)
    guarded["freeze"]()
    result = run_command([sys.executable, str(ROOT / prog), *args], guarded["cwd"])
    assert_refused(result.returncode, result.stderr, prog, words)


# -- the largest seed runs in every paper -------------------------------------------------------------
@pytest.mark.slow
def test_the_largest_allowed_seed_runs_in_every_paper(tmp_path):
    """The seed bound is not a guess: 2^31 - 1, with the seeds each paper derives from it
    (seed + 100, seed * 1000 + i, ...), trains in all five (their smallest runs, side by side)."""
    run_fixture_commands(tmp_path, "--seed", str(2**31 - 1))


# -- a run folder in use by another process ------------------------------------------------------------
IN_USE = {  # paper -> the --resume of its fixture run folder (each would continue that run)
    "searl": ("searl/train.py", "--resume --out-dir {searl}"),
    "pb2": ("pb2_procgen/train.py", "--resume --out-dir {pb2}"),
    "se": ("synthetic_envs/train.py", "--resume --out-dir {se}"),
    "steve": ("steve/train.py", f"{PENDULUM} --resume --out-dir {{steve}}"),
    "o4": ("optim4rl/main.py", "--config catch_a2c --config_idx 1 --set env.train_steps=2000 "
                               "--set env.num_envs=8 --out-dir {o4} --resume"),
}
HOLD_LOCK = ("import sys, time; from common.runs import lock_run_dir; lock_run_dir(sys.argv[1]); "
             "print('locked', flush=True); time.sleep(120)")


@pytest.mark.parametrize("paper", list(IN_USE))
def test_a_run_folder_in_use_is_refused_and_freed_when_its_writer_dies(paper, runs, tmp_path, guarded, capfd):
    """Two writers of one run folder (two --resume, say) used to both run and write duplicate
    metrics rows. The folder's lock: the second gets one line and exit 2, nothing touched; once
    the first is killed (-9: no clean-up runs) the folder is free again."""
    from common.runs import lock_run_dir, unlock_run_dir
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(runs[paper])], env=clean_env(),
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        prog, argv = IN_USE[paper]
        args = resolve(argv, runs, guarded["inputs"], tmp_path)
        main = importlib.import_module(ENTRY_POINTS[prog]).main
        capfd.readouterr()
        guarded["freeze"]()
        with pytest.raises(SystemExit) as stopped:
            run_main(main, args, prog=prog)
        assert_refused(stopped.value.code, capfd.readouterr().err, prog, ("in use by another process",))
    finally:
        holder.kill()
        holder.wait()
    lock_run_dir(runs[paper])      # the kernel dropped the dead holder's lock
    unlock_run_dir(runs[paper])


# -- python -m common.runs check, bash run_all.sh -------------------------------------------------------
CHECK_CASES = [  # (argv, status, words, as a command?): its documented statuses, 2 for a
    # usage mistake, 1 for a run folder with problems; the rest in-process (its _check_main)
    pytest.param("check {new}", 2, "no run folder", True, id="check:absent-folder"),
    pytest.param("check {file}", 2, "no run folder", False, id="check:file-not-folder"),
    pytest.param("check", 2, "usage", True, id="check:no-folder"),
    pytest.param("chek {searl}", 2, "usage", False, id="check:bad-subcommand"),
    pytest.param("check {searl} {pb2}", 2, "usage", False, id="check:two-folders"),
    pytest.param("check {empty}", 1, "config.json", False, id="check:empty-folder-has-problems"),
    pytest.param("check {damaged_se_config}", 1, "config.json", False, id="check:damaged-config"),
]


@pytest.mark.parametrize("argv, status, words, command", CHECK_CASES)
def test_runs_check(argv, status, words, command, runs, tmp_path, guarded, capfd):
    args = resolve(argv, runs, guarded["inputs"], tmp_path)
    guarded["freeze"]()
    if command:
        result = run_command([sys.executable, "-m", "common.runs", *args], guarded["cwd"], timeout=60)
        code, out, err = result.returncode, result.stdout, result.stderr
    else:
        capfd.readouterr()
        code = _check_main(args)
        out, err = capfd.readouterr()
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == status, err
    assert len(lines) == 1 and "Traceback" not in err, err
    assert words in lines[0] and out == "", err


@pytest.mark.parametrize("papers", [["nosuchpaper"], ["searl", "steev"], ["Searl"], [""]],
                         ids=["unknown", "typo-after-a-good-one", "wrong-case", "empty-name"])
def test_run_all_refuses_an_unknown_paper(papers, tmp_path):
    smoke = ROOT / "runs" / "smoke"
    before = sorted(smoke.iterdir()) if smoke.is_dir() else None
    result = run_command(["bash", str(ROOT / "run_all.sh"), *papers], tmp_path, timeout=60)
    assert result.returncode == 2, result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("run_all.sh: error: unknown paper"), result.stderr
    assert result.stdout == ""   # no paper ran
    assert (sorted(smoke.iterdir()) if smoke.is_dir() else None) == before


def test_the_table_is_large_enough():
    assert len(CASES) + len(SCRIPT_CASES) + len(CHECK_CASES) + 4 >= 100
    assert {case.values[0] for case in CASES} == set(ENTRY_POINTS)
