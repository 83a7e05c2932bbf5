"""The collection's usual entry point; the same as the seed's `optim4rl/main.py`:

    python optim4rl/train.py --config_file optim4rl/configs/catch_meta.json --config_idx 1
"""
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make this paper's package and common/ importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.cli import run_main  # noqa: E402
from optim4rl.main import main as seed_main  # noqa: E402


def main(argv=None) -> None:
    """optim4rl/main.py's run, with argparse's own errors and --help naming this script."""
    seed_main(argv, prog="optim4rl/train.py")


if __name__ == "__main__":
    run_main(main, prog="optim4rl/train.py")
