"""Config sweeps: one JSON file of lists expands into numbered configurations.

Every value in a config file is a list of choices, and the file stands for the grid of all
their combinations. A choice that is a dict is itself such a grid, so a list of dicts offers the
SUM of its dicts' combinations (e.g. two optimizer kwargs blocks with 5 learning rates each give
10 choices), while the keys of one dict multiply:

    {"lr": [1e-3, 3e-3], "env": [{"name": ["catch"], "num_envs": [8, 64]}], "seed": [42]}
    -> 2 * 2 * 1 = 4 combinations

A configuration index starts at 1. Index i selects combination (i - 1) mod N, read as a
mixed-radix number whose FIRST key (in file order) varies fastest; inside a list, the choices
occupy consecutive ranges in list order (a dict choice takes as many slots as it has
combinations). Indexes i, i + N, i + 2N, ... are the same combination: run k = (i - 1) // N of it.
When the config sets `generate_random_seed: true`, each run k gets its own seed (see
`derive_seed`); otherwise every run keeps the config's `seed`.

    python optim4rl/sweeper.py                      # every JSON in optim4rl/configs/
    python optim4rl/sweeper.py optim4rl/configs/sds_a2c.json
    python optim4rl/sweeper.py sds_a2c --config_idx 13    # print one decoded config
"""
from __future__ import annotations

import copy
import hashlib
import json
import sys
from pathlib import Path
from typing import Any, Sequence

if __package__ in (None, ""):  # run as a script: make this paper's package and common/ importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.cli import ArgumentParser, UsageError, run_main  # noqa: E402

CONFIGS_DIR = Path(__file__).resolve().parent / "configs"
RESERVED_KEYS = ("config_idx", "num_combinations")  # the sweeper adds these to every config
SEED_RANGE = 1_000_000  # generated seeds lie in [0, 1e6), the reference's range


def derive_seed(base_seed: int, run: int) -> int:
    """The seed of run `run` (0, 1, ...) of a config with `generate_random_seed: true`.

    The reference draws `np.random.randint(1e6)` from an unseeded generator when an experiment
    starts, so its seeds cannot be reproduced. Here the seed is a fixed function of the config's
    `seed` and the run number (a SHA-256 hash, stable across machines and library versions):
    every run of a sweep gets a different seed in [0, 1e6), rerunning an index gives the same
    seed, and run k of every combination shares one seed (paired comparisons).
    """
    digest = hashlib.sha256(f"optim4rl-seed:{int(base_seed)}:{int(run)}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % SEED_RANGE


def find_config(name: str | Path, configs_dir: str | Path = CONFIGS_DIR) -> Path:
    """A config file given as a path, or as a name in `configs_dir` (with or without .json)."""
    path = Path(name)
    if path.is_file():
        return path
    for candidate in (Path(configs_dir) / path.name, Path(configs_dir) / f"{path.name}.json"):
        if candidate.is_file():
            return candidate
    raise UsageError(f"config file not found: {name} (give a path to a JSON file or a name in "
                     f"{configs_dir})")


class Sweeper:
    """The grid of one config file. `generate_config_for_idx(i)` gives configuration i (1-based)."""

    def __init__(self, config_file: str | Path):
        self.config_file = Path(config_file)
        self.config_name = self.config_file.stem
        if not self.config_file.is_file():
            raise UsageError(f"config file not found: {self.config_file}")
        try:
            data = json.loads(self.config_file.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            first_line = str(error).splitlines()[0]
            raise UsageError(f"cannot parse config file {self.config_file} as JSON: "
                             f"{first_line}") from None
        if not isinstance(data, dict):
            raise UsageError(f"config file {self.config_file} must hold a JSON object of "
                             f"key: [choices], not a {type(data).__name__}")
        reserved = [key for key in RESERVED_KEYS if key in data]
        if reserved:
            raise UsageError(f"config file {self.config_file}: {reserved} are set by the "
                             f"sweeper; remove them from the file")
        self.config_dict = data
        self.total_combinations = self._count_dict(data, "")

    # -- counting ------------------------------------------------------------------------------
    def _count_dict(self, node: dict, where: str) -> int:
        total = 1
        for key, values in node.items():
            total *= self._count_list(values, f"{where}{key}")
        return total

    def _count_list(self, values: Any, where: str) -> int:
        if not isinstance(values, list):
            raise UsageError(f"config file {self.config_file}: the value of '{where}' must be a "
                             f"list of choices, got {json.dumps(values)[:60]}; write "
                             f"[{json.dumps(values)[:40]}] for a single choice")
        if not values:
            raise UsageError(f"config file {self.config_file}: '{where}' is an empty list; give "
                             f"at least one choice")
        return sum(self._count_dict(item, f"{where}[{i}]/") if isinstance(item, dict) else 1
                   for i, item in enumerate(values))

    # -- decoding ------------------------------------------------------------------------------
    def _decode_dict(self, node: dict, index: int) -> dict:
        config = {}
        for key, values in node.items():  # the first key varies fastest
            radix = self._count_list(values, key)
            config[key] = self._decode_list(values, index % radix)
            index //= radix
        return config

    def _decode_list(self, values: list, index: int) -> Any:
        for item in values:  # choices take consecutive ranges, in list order
            size = self._count_dict(item, "") if isinstance(item, dict) else 1
            if index < size:
                return self._decode_dict(item, index) if isinstance(item, dict) \
                    else copy.deepcopy(item)
            index -= size
        raise AssertionError("index out of range")  # unreachable: index < count of the list

    def check_index(self, config_idx: int, max_runs: int | None = None) -> int:
        """`config_idx` if it is a valid configuration index (an int >= 1, and at most
        max_runs * N when `max_runs` is given), else a UsageError."""
        if isinstance(config_idx, bool) or not isinstance(config_idx, int):
            raise UsageError(f"config index must be an integer >= 1, got {config_idx!r}")
        if config_idx < 1:
            raise UsageError(f"config index must be >= 1 (indexes start at 1; {self.config_name} "
                             f"has {self.total_combinations} combinations), got {config_idx}")
        if max_runs is not None and config_idx > max_runs * self.total_combinations:
            raise UsageError(f"config index {config_idx} is beyond {max_runs} run(s) of the "
                             f"{self.total_combinations} combinations of {self.config_name} "
                             f"(allowed: 1..{max_runs * self.total_combinations})")
        return config_idx

    def combination_of(self, config_idx: int) -> int:
        """The combination (1..N) that configuration index `config_idx` runs."""
        return (self.check_index(config_idx) - 1) % self.total_combinations + 1

    def run_of(self, config_idx: int) -> int:
        """Which run (0, 1, ...) of its combination `config_idx` is."""
        return (self.check_index(config_idx) - 1) // self.total_combinations

    def indexes_of(self, combination: int, runs: int) -> list[int]:
        """The configuration indexes of the first `runs` runs of a combination (1..N)."""
        if not 1 <= combination <= self.total_combinations:
            raise UsageError(f"combination must be in 1..{self.total_combinations}, "
                             f"got {combination}")
        return [combination + k * self.total_combinations for k in range(runs)]

    def generate_config_for_idx(self, config_idx: int) -> dict:
        """The configuration of index `config_idx` (>= 1), with `config_idx` and
        `num_combinations` added and, under `generate_random_seed`, the run's own seed."""
        self.check_index(config_idx)
        run, index0 = divmod(config_idx - 1, self.total_combinations)
        config = self._decode_dict(self.config_dict, index0)
        if config.get("generate_random_seed"):
            base = config.get("seed", 0)
            if isinstance(base, bool) or not isinstance(base, int):
                raise UsageError(f"config file {self.config_file}: 'seed' must be an integer "
                                 f"when generate_random_seed is true, got {base!r}")
            config["seed"] = derive_seed(base, run)
        config["config_idx"] = config_idx
        config["num_combinations"] = self.total_combinations
        return config


def main(argv: Sequence[str] | None = None) -> None:
    parser = ArgumentParser(
        prog="sweeper.py",
        description="Print the number of combinations of config files (all JSON files in "
                    "optim4rl/configs/ when none is given).")
    parser.add_argument("configs", nargs="*", metavar="CONFIG",
                        help="config files (a path, or a name in optim4rl/configs/)")
    parser.add_argument("--config_idx", type=int, default=None,
                        help="also print the decoded configuration of this index")
    parser.add_argument("--configs-dir", default=str(CONFIGS_DIR),
                        help="where to look for configs given by name (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.configs:
        files = [find_config(name, args.configs_dir) for name in args.configs]
    else:
        files = sorted(Path(args.configs_dir).glob("*.json"))
        if not files:
            raise UsageError(f"no JSON config files in {args.configs_dir}")
    for path in files:
        sweeper = Sweeper(path)
        print(f"The number of total combinations in {path.name}: {sweeper.total_combinations}")
        if args.config_idx is not None:
            print(json.dumps(sweeper.generate_config_for_idx(args.config_idx), indent=2))


if __name__ == "__main__":
    run_main(main, prog="sweeper.py")
