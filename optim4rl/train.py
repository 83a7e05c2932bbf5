"""The collection's usual entry point; the same as the seed's `optim4rl/main.py`:

    python optim4rl/train.py --config_file optim4rl/configs/catch_meta.json --config_idx 1
"""
from common.cli import run_main
from optim4rl.main import main

if __name__ == "__main__":
    run_main(main, prog="optim4rl/train.py")
