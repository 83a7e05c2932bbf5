"""Every number in a README's results and every figure it shows come from data committed under
`<paper>/results/`: `python <paper>/results.py --check` holds for each paper, a hand-edited number
fails it, and every figure a README names is rebuilt from those files (common/results.py)."""
import importlib
import re
import subprocess
import sys

import pytest

from common.results import fill_blocks, markdown_table, mismatches, readme_blocks
from helpers import ROOT, copy_project

PAPERS = ["searl", "pb2_procgen", "synthetic_envs", "steve", "optim4rl"]

# Results tables whose runs' data were lost with their machine and are not committed; each README
# says so above the table. Only these may stand outside a generated block, and each names the
# issue whose re-run replaces it.
UNBACKED = {
    "searl": {},
    "steve": {},
}

UNBACKED_BLOCK = re.compile(r"<!-- unbacked:(?P<name>[\w.-]+) -->\n.*?<!-- /unbacked:(?P=name) -->", re.S)
GENERATED_BLOCK = re.compile(r"<!-- results:(?P<name>[\w.-]+) -->\n.*?<!-- /results:(?P=name) -->", re.S)
FIGURE = re.compile(r"\]\((results/[^)\s]+\.png)\)")


def readme(paper: str) -> str:
    return (ROOT / paper / "README.md").read_text()


def results_module(paper: str):
    return importlib.import_module(f"{paper}.results")


def results_section(text: str) -> str:
    """From '## Results' to the next second-level heading."""
    start = text.index("\n## Results")
    end = text.find("\n## ", start + 1)
    return text[start:end if end > 0 else None]


@pytest.mark.parametrize("paper", PAPERS)
def test_readme_holds_the_numbers_the_data_gives(paper):
    assert mismatches(readme(paper), results_module(paper).tables()) == []


@pytest.mark.parametrize("paper", PAPERS)
def test_every_results_table_is_generated_or_listed_as_lost(paper):
    section = results_section(readme(paper))
    unbacked = {m.group("name") for m in UNBACKED_BLOCK.finditer(section)}
    assert unbacked == set(UNBACKED.get(paper, {})), "unbacked blocks must be the listed ones"
    rest = GENERATED_BLOCK.sub("", UNBACKED_BLOCK.sub("", section))
    rest = re.sub(r"```.*?```", "", rest, flags=re.S)   # commands may print tables
    stray = [line for line in rest.splitlines() if line.startswith("|")]
    assert stray == [], f"{paper}/README.md: a results table outside a generated block: {stray[0]}"


@pytest.mark.parametrize("paper", PAPERS)
def test_a_hand_edited_number_fails_the_check(paper):
    text, generated = readme(paper), results_module(paper).tables()
    name, body = next((n, b) for n, b in readme_blocks(text).items() if re.search(r"\d", b))
    digit = re.search(r"\d", body)
    edited_body = body[:digit.start()] + str((int(digit.group()) + 1) % 10) + body[digit.end():]
    edited = text.replace(f"<!-- results:{name} -->\n{body}", f"<!-- results:{name} -->\n{edited_body}", 1)
    assert edited != text
    assert any(line.startswith(f"{name}:") for line in mismatches(edited, generated))


@pytest.mark.parametrize("paper", PAPERS)
def test_every_figure_named_in_the_readme_is_rebuilt_from_the_data(paper, tmp_path):
    module = results_module(paper)
    named = {path.split("/")[-1] for path in FIGURE.findall(readme(paper))}
    for name in named:
        assert (ROOT / paper / "results" / name).is_file(), f"{paper}/README.md names a missing {name}"
    rebuilt = {path.name for path in module.figures(tmp_path)}
    assert all((tmp_path / name).stat().st_size > 0 for name in rebuilt)
    lost = set(module.UNBACKED_FIGURES)
    assert named - rebuilt == lost & named, f"figures with neither data nor a reason: {named - rebuilt - lost}"
    assert not lost & rebuilt


def test_blocks_are_filled_and_compared_exactly():
    text = "a\n<!-- results:t -->\nold\n<!-- /results:t -->\nb\n<!-- results:u -->\nx\n<!-- /results:u -->\n"
    table = markdown_table(["n", "mean"], [[1, "0.5"]])
    filled = fill_blocks(text, {"t": table})
    assert readme_blocks(filled) == {"t": table + "\n", "u": "x\n"}
    assert mismatches(filled, {"t": table}) == ["u: README block that no data generates"]
    assert mismatches(filled, {"t": table, "u": "x", "v": "y"}) == [
        "v: generated but no <!-- results:v --> block in the README"]
    assert mismatches(filled.replace("0.5", "0.6"), {"t": table, "u": "x"}) == ["t: README differs from the data"]


def test_the_check_command_exits_1_naming_the_edited_block(tmp_path):
    project = copy_project(tmp_path, ["optim4rl"])
    check = [sys.executable, "optim4rl/results.py", "--check"]
    proc = subprocess.run(check, capture_output=True, text=True, cwd=project, timeout=120)
    assert proc.returncode == 0, proc.stderr
    text = (project / "optim4rl" / "README.md").read_text()
    name, body = next((n, b) for n, b in readme_blocks(text).items() if re.search(r"\d", b))
    digit = re.search(r"\d", body)
    edited = body[:digit.start()] + str((int(digit.group()) + 1) % 10) + body[digit.end():]
    (project / "optim4rl" / "README.md").write_text(text.replace(body, edited, 1))
    proc = subprocess.run(check, capture_output=True, text=True, cwd=project, timeout=120)
    assert proc.returncode == 1
    assert f"optim4rl/README.md: {name}: README differs from the data" in proc.stderr


NUMBER = re.compile(r"\d+(?:,\d{3})*(?:\.\d+)?")


def top_readme_rows() -> dict[str, list[str]]:
    """{paper folder: cells} of the top README's first table (one row per paper)."""
    text = (ROOT / "README.md").read_text()
    table = text[text.index("| paper |"):].split("\n\n", 1)[0].splitlines()
    header = [c.strip() for c in table[0].strip("|").split("|")]
    rows = {}
    for line in table[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        paper = re.search(r"\]\((\w+)/README\.md\)", cells[0]).group(1)
        rows[paper] = dict(zip(header, cells))
    return rows


@pytest.mark.parametrize("paper", PAPERS)
def test_the_top_readme_quotes_only_numbers_the_papers_data_gives(paper):
    """Every number in the top README's "ours" cell for a paper stands in one of that paper's
    generated README blocks (a lost run's number in its unbacked block), so it is traced to data."""
    text = readme(paper)
    traced = "".join(readme_blocks(text).values()) + "".join(
        m.group(0) for m in UNBACKED_BLOCK.finditer(text))
    cell = top_readme_rows()[paper]["ours (scale)"]
    untraced = [n for n in NUMBER.findall(cell) if n not in traced]
    assert untraced == [], f"README.md's {paper} row quotes numbers no {paper} data block holds: {untraced}"
