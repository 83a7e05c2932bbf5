"""The README's promise: a paper folder plus `common/` is all a method needs. Each paper and
`common/` are copied into a fresh project, and the paper's documented smoke command and every
script's --help run there, as `python <paper>/<script>.py`, under `python -S` with only the
installed packages on the path (tests/helpers.py says why).
"""

import pytest
from helpers import ROOT, copy_project
from helpers import isolated_python as python

from common.runs import check_run_dir

PAPERS = ("searl", "pb2_procgen", "synthetic_envs", "steve", "optim4rl")
# every script a user runs as `python <paper>/<script>.py` (bench/ is not part of a paper)
SCRIPTS = sorted(f"{paper}/{path.name}" for paper in PAPERS for path in (ROOT / paper).glob("*.py")
                 if 'if __name__ == "__main__"' in path.read_text())

# Each paper's smoke command from its README and run_all.sh, run from the copy's root. Where the
# smoke preset takes more than a few seconds a budget flag shrinks it (the same code path, fewer
# steps), so that this file stays near a minute and a half on 2 CPU cores.
SMOKES = {
    # 1500 steps: two generations of 3 individuals (selection and mutation run), not four
    "searl": [("searl/train.py --smoke --set total_steps=1500", "runs/searl")],
    # the toy only: the bigfish smoke takes ~50 s on 2 cores (and needs procgen installed)
    "pb2_procgen": [("pb2_procgen/train.py --smoke --env toy", "runs/toy")],
    # 2 NES iterations instead of the Cliff smoke's 20, serial (worker processes: a torch import each)
    "synthetic_envs": [("synthetic_envs/train.py --smoke --iterations 2", "runs/cliff")],
    # 600 frames instead of 1500: 500 random frames, then 100 of learning with the model
    "steve": [("steve/train.py experiments/goodruns/pendulum/steve0.json --smoke --frames 600 "
               "--eval-every 600", "runs/pendulum")],
    # run_all.sh's pair: meta-train φ, then fresh agents with it; 5e3 env steps (one meta-iteration
    # of 3200) and 1e4, not the smoke's 6.4e4 and 2e5
    "optim4rl": [("optim4rl/train.py --smoke --config_file catch_meta --config_idx 1 "
                  "--set env.train_steps=5e3", "runs/meta"),
                 ("optim4rl/train.py --smoke --config_file catch_lopt --config_idx 1 "
                  "--set env.train_steps=1e4 --param-load-path runs/meta/param.pt", "runs/lopt")],
}


@pytest.fixture(scope="module")
def all_papers(tmp_path_factory):
    return copy_project(tmp_path_factory.mktemp("project"), PAPERS)


def test_the_isolated_python_cannot_import_this_checkout(tmp_path):
    result = python("-c", "import common", cwd=tmp_path)
    assert result.returncode != 0 and "No module named 'common'" in result.stderr, (
        "python -S still imports this checkout's common: the copies below would not be tested alone")
    result = python("-c", "import gymnasium, matplotlib, numpy, scipy, torch, tqdm, yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stderr


# every script's --help as `python <script> --help` would run it (runpy, __main__), all in one
# isolated interpreter so torch is imported once, not once per script
HELP_RUNNER = """
import contextlib, io, runpy, sys
for script in sys.argv[1:]:
    sys.argv, out, code = [script, "--help"], io.StringIO(), 0
    try:
        with contextlib.redirect_stdout(out):
            runpy.run_path(script, run_name="__main__")
    except SystemExit as stop:
        code = stop.code or 0
    print(script, code, out.getvalue().startswith("usage:"))
"""


def test_help_of_every_script_from_a_copy(all_papers):
    result = python("-c", HELP_RUNNER, *SCRIPTS, cwd=all_papers, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.splitlines() == [f"{script} 0 True" for script in SCRIPTS], result.stderr[-3000:]


@pytest.mark.slow
@pytest.mark.parametrize("paper", PAPERS)
def test_smoke_run_from_a_copy_of_the_paper_and_common(tmp_path, paper):
    project = copy_project(tmp_path, [paper])
    for command, run_dir in SMOKES[paper]:
        result = python(*command.split(), "--out-dir", run_dir, cwd=project)
        assert result.returncode == 0, f"{command}\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
        assert check_run_dir(project / run_dir) == [], command
    # the bytecode the run left shows whose modules it imported: the copy's
    assert (project / "common" / "__pycache__").is_dir() and (project / paper / "__pycache__").is_dir()
