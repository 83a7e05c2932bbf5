"""Where STEVE's time goes: milliseconds per value-learner update (target + Q and policy steps),
per world-model update and per target computation alone, on the laptop Pendulum sizes (64-unit
policy/Q/reward/done nets, 128x3 transition nets, batch 128, ensembles 4/4/4, H = 3), for one
and two torch threads, with plain and fused Adam alternated in one process. Run by hand:

    python bench/steve_update.py [--updates 200]
"""
from __future__ import annotations

import argparse
import time

import torch

from steve.valuerl import ValueConfig, ValueLearner, WorldModelLearner

OBS, ACT, BATCH = 3, 1, 128


def batches(generator):
    while True:
        yield (torch.randn(BATCH, OBS, generator=generator), torch.rand(BATCH, ACT, generator=generator) * 2 - 1,
               torch.randn(BATCH, generator=generator), torch.randn(BATCH, OBS, generator=generator),
               torch.zeros(BATCH))


def use_fused_adam(learner, fused: bool) -> None:
    for name in ("policy_opt", "q_opt", "opt"):
        opt = getattr(learner, name, None)
        if opt is not None:
            for group in opt.param_groups:
                group["fused"] = fused


def measure(updates: int, fused: bool) -> dict:
    value = ValueLearner(OBS, ACT, ValueConfig(algo="steve", hidden_dim=64), 0)
    world = WorldModelLearner(OBS, ACT, 4, 4, 0, transition_hidden=128, transition_layers=3, aux_hidden=64,
                              aux_layers=3)
    use_fused_adam(value, fused)
    use_fused_adam(world, fused)
    data = batches(torch.Generator().manual_seed(0))
    for _ in range(20):  # warm-up
        value.update(next(data), world.model)
        world.update(next(data))
    out = {}
    for name, step in (("value update", lambda: value.update(next(data), world.model)),
                       ("world update", lambda: world.update(next(data))),
                       ("target only", lambda: value.targets(*[next(data)[i] for i in (2, 3, 4)], world.model))):
        start = time.perf_counter()
        for _ in range(updates):
            step()
        out[name] = (time.perf_counter() - start) / updates * 1e3
    out["frames/s"] = 1e3 / (out["value update"] + out["world update"])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--updates", type=int, default=200)
    args = parser.parse_args()
    print(f"{'threads':>7} {'adam':>6} {'value ms':>9} {'world ms':>9} {'target ms':>10} {'frames/s':>9}")
    for threads in (1, 2):
        torch.set_num_threads(threads)
        for fused in (False, True, False, True):
            r = measure(args.updates, fused)
            print(f"{threads:>7} {'fused' if fused else 'plain':>6} {r['value update']:9.2f} "
                  f"{r['world update']:9.2f} {r['target only']:10.2f} {r['frames/s']:9.0f}")


if __name__ == "__main__":
    main()
