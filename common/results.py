"""Committed results: README tables and figures rebuilt from small data files.

Every paper folder keeps the data behind its README's numbers under `<paper>/results/` (per run:
the evaluation curve and the summary; per evaluation: the per-agent scores) and a
`<paper>/results.py` that rebuilds, from those files only,

- the README's generated blocks: text between `<!-- results:NAME -->` and `<!-- /results:NAME -->`
  (a table, or a sentence with its numbers), and
- the README's committed figures.

    python <paper>/results.py            # rewrite the README's blocks and the figures
    python <paper>/results.py --check    # exit 1 and name each block that differs from the data

A paper's results.py defines `tables() -> {name: markdown}`, `figures(out_dir) -> [png paths]` and
`UNBACKED_FIGURES = {png name: why it has no data}`, then calls `main(__file__, tables, figures)`.
tests/test_results.py runs the check for every paper.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import re
import shutil
import sys
from pathlib import Path
from typing import Callable, Iterable, Sequence

BLOCK = re.compile(r"<!-- results:(?P<name>[\w.-]+) -->\n(?P<body>.*?)<!-- /results:(?P=name) -->", re.S)


# --- reading the committed data ---------------------------------------------------------------

def read_csv(path: str | Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def read_json(path: str | Path):
    return json.loads(Path(path).read_text())


def copy_run_files(run_dir: str | Path, dest: str | Path, names: Sequence[str]) -> Path:
    """Copy the small files `names` of a finished run folder (those it has) into `dest`: the data
    a README's results are rebuilt from. Never checkpoints or replay memories: name the files."""
    run_dir, dest = Path(run_dir), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    for name in names:
        if (run_dir / name).is_file():
            shutil.copyfile(run_dir / name, dest / name)
    return dest


def mean_se(values: Sequence[float]) -> tuple[float, float]:
    """Mean and standard error (sample standard deviation / sqrt(n); NaN for one value: one run
    has no spread to report)."""
    values = [float(v) for v in values]
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, math.nan
    var = sum((v - mean) ** 2 for v in values) / (len(values) - 1)
    return mean, math.sqrt(var / len(values))


# --- writing markdown -------------------------------------------------------------------------

def markdown_table(header: Sequence[str], rows: Iterable[Sequence]) -> str:
    """A GitHub markdown table, one line per row (no final newline; fill_blocks adds it)."""
    lines = ["| " + " | ".join(str(c) for c in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def readme_blocks(text: str) -> dict[str, str]:
    """{name: body} of every generated block in a README's text."""
    return {m.group("name"): m.group("body") for m in BLOCK.finditer(text)}


def fill_blocks(text: str, generated: dict[str, str]) -> str:
    """The README text with each generated block's body replaced by `generated[name]`."""
    def body(match):
        name = match.group("name")
        if name not in generated:
            return match.group(0)
        new = generated[name] if generated[name].endswith("\n") else generated[name] + "\n"
        return f"<!-- results:{name} -->\n{new}<!-- /results:{name} -->"
    return BLOCK.sub(body, text)


def mismatches(text: str, generated: dict[str, str]) -> list[str]:
    """One line per problem: a block whose body differs from the data, a generated block the
    README lacks, a README block nothing generates."""
    found = readme_blocks(text)
    problems = []
    for name, body in generated.items():
        want = body if body.endswith("\n") else body + "\n"
        if name not in found:
            problems.append(f"{name}: generated but no <!-- results:{name} --> block in the README")
        elif found[name] != want:
            problems.append(f"{name}: README differs from the data")
    problems += [f"{name}: README block that no data generates" for name in found if name not in generated]
    return problems


# --- the command ------------------------------------------------------------------------------

def main(results_py: str, tables: Callable[[], dict[str, str]],
         figures: Callable[[Path], list[Path]], argv: list[str] | None = None) -> int:
    """`python <paper>/results.py [--check] [--figures-to DIR]`."""
    paper_dir = Path(results_py).resolve().parent
    parser = argparse.ArgumentParser(
        prog=f"{paper_dir.name}/results.py",
        description=f"Rebuild {paper_dir.name}/README.md's results blocks and its figures from "
                    f"the data under {paper_dir.name}/results/ only.")
    parser.add_argument("--check", action="store_true",
                        help="compare the README with the data; exit 1 naming each block that differs")
    parser.add_argument("--figures-to", type=Path, default=paper_dir / "results",
                        help="folder for the rebuilt figures (default: %(default)s)")
    parser.add_argument("--no-figures", action="store_true", help="tables only")
    args = parser.parse_args(argv)
    readme = paper_dir / "README.md"
    text = readme.read_text()
    generated = tables()
    if args.check:
        problems = mismatches(text, generated)
        for line in problems:
            print(f"{paper_dir.name}/README.md: {line}", file=sys.stderr)
        return 1 if problems else 0
    new = fill_blocks(text, generated)
    if new != text:
        readme.write_text(new)
    print(f"{readme}: {len(generated)} blocks from the data")
    if not args.no_figures:
        args.figures_to.mkdir(parents=True, exist_ok=True)
        for path in figures(args.figures_to):
            print(path)
    missing = [line for line in mismatches(new, generated) if "no <!-- results" in line]
    for line in missing:
        print(f"{paper_dir.name}/README.md: {line}", file=sys.stderr)
    return 1 if missing else 0
