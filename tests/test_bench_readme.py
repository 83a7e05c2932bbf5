"""bench/README.md's "Latest results" tables against the data behind them: every row names a
machine and date, and a row whose script wrote `bench/results/<name>.json` names that JSON's
machine (cores and CPU) and date, so the README cannot drift from the measurements. Reads files
only (no bench is run)."""
import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
MACHINE_COLUMN = "machine, date"


def cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def latest_results_rows(text: str) -> dict[str, str]:
    """script name -> its machine/date cell, over every table of the "Latest results" section."""
    section = text.split("\n## Latest results\n", 1)[1].split("\n## ", 1)[0]
    rows, column = {}, None
    for line in section.splitlines():
        if not line.startswith("|"):
            column = None
        elif column is None:  # a table's header
            column = cells(line).index(MACHINE_COLUMN)
        elif not set(line) <= set("|-: "):  # not the separator line
            row = cells(line)
            rows[re.search(r"`(\w+)\.py`", row[0]).group(1)] = row[column]
    return rows


def cpu_name(cpu: str) -> str:
    """'Intel(R) Xeon(R) Processor' -> 'Intel Xeon', 'AMD EPYC 7B13' -> 'AMD EPYC'."""
    return " ".join(re.sub(r"\((R|TM)\)", "", cpu).split()[:2])


def test_cpu_name():
    assert cpu_name("Intel(R) Xeon(R) Processor") == "Intel Xeon"
    assert cpu_name("AMD EPYC 7B13 64-Core Processor") == "AMD EPYC"


def test_latest_results_name_the_machine_and_date_of_their_json():
    rows = latest_results_rows((ROOT / "bench" / "README.md").read_text())
    assert {"td3_throughput", "pb2_toy"} <= set(rows), rows  # both tables were read
    assert all(rows.values()), [name for name, cell in rows.items() if not cell]
    results = sorted(RESULTS.glob("*.json"))
    assert results
    for path in results:
        assert path.stem in rows, f"{path.name} has no row in the Latest results tables"
        machine = json.loads(path.read_text())["machine"]
        cell = rows[path.stem]
        for expected in (f"{machine['cores']}-core {cpu_name(machine['cpu'])}", machine["date"]):
            assert expected in cell, f"{path.stem}: {cell!r} should name {expected!r}"


def test_latest_results_sentence_holds_for_every_json():
    """The sentence above the tables: 2 cores, no GPU, PyTorch 2.13 CPU, one torch thread."""
    for path in RESULTS.glob("*.json"):
        machine = json.loads(path.read_text())["machine"]
        assert (machine["cores"], machine["gpu"], machine["torch_threads"]) == (2, None, 1), path
        assert machine["torch"].startswith("2.13.") and machine["torch"].endswith("+cpu"), path
