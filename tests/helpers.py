"""What the end-to-end tests of every paper's train.py share."""
import csv
import os
import re
import shutil
import site
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_train(paper: str, *args, timeout=600, env=None) -> subprocess.CompletedProcess:
    """`python <paper>/train.py ARGS` in a subprocess, from the repository root (`env`: its
    environment variables, default this process's)."""
    return subprocess.run([sys.executable, str(ROOT / paper / "train.py"), *args],
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=env)


def rows(path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def without_wall_time(table: list[dict]) -> list[dict]:
    """Rows to compare across runs: everything but the wall clock."""
    return [{k: v for k, v in row.items() if k != "wall_seconds"} for row in table]


def run_in_process(module: str, *args, prog: str | None = None) -> subprocess.CompletedProcess:
    """`python <script> ARGS` for an input that is refused before any work, run as `main(ARGS)`
    of `module` in this process (what the script's `run_main` does, from the repository root):
    the same exit status and stderr, without a fresh interpreter's ~1.5 s import of torch.
    tests/test_bad_inputs.py runs a few such cases per entry point as real scripts."""
    import importlib

    from common.cli import run_main

    main = importlib.import_module(module).main
    prog = prog or module.replace(".", "/") + ".py"
    return _in_this_process([prog, *args], lambda: run_main(main, list(args), prog=prog))


def run_script_in_process(script, *args) -> subprocess.CompletedProcess:
    """`python SCRIPT ARGS` run as its `__main__` in this process (sys.argv and sys.path as the
    interpreter sets them, from the repository root), for --help and inputs refused before any
    work."""
    import runpy

    return _in_this_process([str(script), *args], lambda: runpy.run_path(str(script), run_name="__main__"),
                            script_dir=Path(script).parent)


def _in_this_process(argv: list[str], call, script_dir: Path | None = None) -> subprocess.CompletedProcess:
    """Run `call()` as a script with `argv` would run (`script_dir` first on sys.path, as the
    interpreter puts a script's folder): exit status from SystemExit (0 when it returns), stdout
    and stderr captured; the working directory, environment, sys.argv, sys.path and torch's
    thread count are restored afterwards, and the run-folder locks it took are released (a
    script's process would end)."""
    import contextlib
    import io
    import os

    import torch

    from common import runs

    stdout, stderr, code = io.StringIO(), io.StringIO(), 0
    held = set(runs._LOCKS)
    saved = os.getcwd(), dict(os.environ), torch.get_num_threads(), sys.argv, list(sys.path)
    sys.argv, sys.path[:0] = argv, [str(script_dir)] if script_dir else []
    os.chdir(ROOT)
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            call()
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
    finally:
        os.chdir(saved[0])
        os.environ.clear()
        os.environ.update(saved[1])
        torch.set_num_threads(saved[2])
        sys.argv, sys.path[:] = saved[3], saved[4]
        from common import runs
        for folder in set(runs._LOCKS) - held:
            runs.unlock_run_dir(folder)
    return subprocess.CompletedProcess(argv, code, stdout.getvalue(), stderr.getvalue())


# -- a fresh project: a copy of some paper folders and common/, run without this checkout ----------
# This collection is pip-installed in editable mode (requirements.txt: `-e .`), so a plain
# subprocess would import this checkout's `common` whatever a copy holds. The copies run under
# `python -S`: without the site module no .pth file is read, so the editable install is invisible;
# PYTHONPATH gives back the site-packages folders themselves (torch, gymnasium, ...).
def isolated_env() -> dict:
    """The environment of a fresh project: the installed packages, but not this collection."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX")}
    return {**env, "PYTHONPATH": os.pathsep.join(site.getsitepackages()), "OMP_NUM_THREADS": "1"}


def isolated_python(*args, cwd, timeout=300) -> subprocess.CompletedProcess:
    """`python ARGS` in `cwd` as a fresh project would run it (see isolated_env)."""
    return subprocess.run([sys.executable, "-S", *args], cwd=cwd, env=isolated_env(),
                          capture_output=True, text=True, timeout=timeout)


def copy_project(dest: Path, papers) -> Path:
    """`dest` with a copy of each paper folder in `papers` and of common/."""
    for folder in (*papers, "common"):
        shutil.copytree(ROOT / folder, dest / folder, ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def readme_example(paper: str) -> str:
    """The first ```python block under the "## Use it in your code" heading of <paper>/README.md:
    the example a test runs, so that the README and the test cannot drift."""
    text = (ROOT / paper / "README.md").read_text()
    section = text.split("\n## Use it in your code\n", 1)
    assert len(section) == 2, f"{paper}/README.md has no '## Use it in your code' section"
    block = re.search(r"```python\n(.*?)```", section[1].split("\n## ", 1)[0], re.S)
    assert block, f"{paper}/README.md's 'Use it in your code' section has no ```python block"
    return block.group(1)


def run_readme_example(paper: str, dest: Path, timeout=300) -> subprocess.CompletedProcess:
    """Copy <paper>/ and common/ into the empty folder `dest`, write the README's example there as
    example.py and run it as a fresh project would (`python -S example.py`)."""
    copy_project(dest, [paper])
    (dest / "example.py").write_text(readme_example(paper))
    return isolated_python("example.py", cwd=dest, timeout=timeout)


def tensor_data_offset(path, record: str = "tensor") -> int:
    """Where the bytes of a torch.save file's first tensor (record="tensor") or of its largest
    record (record="largest": a tensor, or the pickle where numbers are numpy arrays) start inside
    the zip's stored, uncompressed data, for tests that flip a byte there."""
    import zipfile
    with zipfile.ZipFile(path) as archive:
        records = [i for i in archive.infolist() if i.file_size > 0]
    info = (next(i for i in records if "/data/" in i.filename) if record == "tensor"
            else max(records, key=lambda i: i.file_size))
    data = Path(path).read_bytes()
    name_len, extra_len = (int.from_bytes(data[info.header_offset + k:info.header_offset + k + 2], "little")
                           for k in (26, 28))
    return info.header_offset + 30 + name_len + extra_len
