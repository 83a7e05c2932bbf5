"""STEVE's learning cost per environment frame, today's code against the code at commit
955085d ("baseline"), side by side on one torch thread: one frame = one value-learner update
(the STEVE target, a Q step and a policy step) + one world-model update + one acting forward of
the policy on a single observation, at the laptop HalfCheetah sizes (obs 17, action 6; 64-unit
policy/Q/reward/done nets and 128-unit transition nets, 3 hidden layers each; batch 128;
ensembles 4/4/4; H = 3; algo steve). Run by hand:

    python bench/steve_update.py            # 3 rounds (~4 min on 2 cores)
    python bench/steve_update.py --quick    # 2 rounds, fewer frames (~1 min)

The baseline is exported with `git archive 955085d steve common` into a temporary folder, and
each side runs in its own child process with that folder (or this checkout) first on sys.path;
the sides alternate for --rounds rounds and the table reports medians (each side's figure is
itself the median of 5 blocks of frames). A third side,
"baseline + malloc", runs the baseline with the allocator settings today's learners make
themselves (common.device.keep_freed_memory, which steve/valuerl.py calls; here as environment variables), to separate
their effect from the code's. A fourth, "current + compile", is today's code with the learners'
torch.compile path (steve/train.py --compile; compiled during the warm-up, not timed). The floor printed last is the frame's matmul work at the best
rate one [1536, 64] x [64, 64] matmul reaches on this core. Writes bench/results/steve_update.json.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BASELINE_COMMIT = "955085d"
ENVS = {"HalfCheetah": {"obs": 17, "action": 6}, "Pendulum": {"obs": 3, "action": 1}}
SIZES = {"batch": 128, "hidden": 64, "hidden_layers": 3, "transition_hidden": 128,
         "transition_layers": 3, "aux_hidden": 64, "aux_layers": 3, "ensembles": [4, 4, 4],
         "horizon": 3, "algo": "steve"}
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": str(32 << 20), "MALLOC_TRIM_THRESHOLD_": str(256 << 20)}
SIDES = {"baseline": ("baseline", {}, False), "baseline + malloc": ("baseline", MALLOC_ENV, False),
         "current": ("current", {}, False), "current + compile": ("current", {}, True)}
PARTS = ("frame_ms", "value update", "target", "world update", "act")


# -- one side, in a child process ----------------------------------------------------------------
def child(src: str, obs: int, action: int, frames: int, compile: bool = False, warmup: int = 20) -> dict:
    """Milliseconds per frame (and per part) of the code found first on sys.path (src); `compile`:
    the learners' torch.compile path (steve/train.py --compile), compiled during the warm-up."""
    sys.path.insert(0, src)
    import torch

    import steve.valuerl as valuerl

    torch.set_num_threads(1)
    for module in (valuerl, sys.modules.get("common")):
        where = Path(module.__file__).resolve() if module else None
        assert where is None or Path(src).resolve() in where.parents, f"imported {where}, not from {src}"
    value = valuerl.ValueLearner(obs, action, valuerl.ValueConfig(
        algo="steve", rollout_len=SIZES["horizon"], q_members=4, hidden_dim=SIZES["hidden"],
        hidden_layers=SIZES["hidden_layers"]), 0, **({"compile": True} if compile else {}))
    world = valuerl.WorldModelLearner(obs, action, 4, 4, 0, **({"compile": True} if compile else {}),
                                      transition_hidden=SIZES["transition_hidden"],
                                      transition_layers=SIZES["transition_layers"],
                                      aux_hidden=SIZES["aux_hidden"], aux_layers=SIZES["aux_layers"])
    g, b = torch.Generator().manual_seed(0), SIZES["batch"]
    batches = [(torch.randn(b, obs, generator=g), torch.rand(b, action, generator=g) * 2 - 1,
                torch.randn(b, generator=g), torch.randn(b, obs, generator=g),
                (torch.rand(b, generator=g) < 0.01).float()) for _ in range(64)]
    single = torch.randn(obs, generator=g)

    def frame(i):
        value.update(batches[i % 64], world.model)
        world.update(batches[(i + 7) % 64])
        value.act(single)

    for i in range(warmup):
        frame(i)
    result = {"frame_ms": ms_per_call(frame, frames)}
    for name, step in (("value update", lambda i: value.update(batches[i % 64], world.model)),
                       ("world update", lambda i: world.update(batches[i % 64])),
                       ("target", lambda i: value.targets(*batches[i % 64][2:], world.model)),
                       ("act", lambda i: value.act(single))):
        result[name] = ms_per_call(step, max(frames // 2, 10))
    result["gemm_gflops"] = best_gemm_gflops()
    return result


def ms_per_call(step, calls: int, blocks: int = 5) -> float:
    """The median over `blocks` blocks of calls: a burst of the machine's other work spoils one
    block, not the figure."""
    per_block, times = max(calls // blocks, 1), []
    for block in range(blocks):
        start = time.perf_counter()
        for i in range(block * per_block, (block + 1) * per_block):
            step(i)
        times.append((time.perf_counter() - start) / per_block * 1e3)
    return statistics.median(times)


def best_gemm_gflops() -> float:
    """The best rate of a [1536, 64] x [64, 64] matmul (the target's typical shape)."""
    import torch

    a, b = torch.randn(1536, 64), torch.randn(64, 64)
    best = float("inf")
    for _ in range(200):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * 1536 * 64 * 64 / best / 1e9


def matmul_mflop_per_frame(obs: int, act: int) -> dict:
    """The multiply-adds (x2) of one frame's matmuls in today's code: the target (policy on
    B(1+MH) rows, transition and done on MHB, reward on NMHB, target Q on L·B(1+MH)), the routed
    training steps (forward and the two backward matmuls: x3; the policy's gradient through Q:
    x2) and the act."""
    def mlp(rows, dims):
        return 2 * rows * sum(a * b for a, b in zip(dims[:-1], dims[1:]))

    h, t, b, horizon = SIZES["hidden"], SIZES["transition_hidden"], SIZES["batch"], SIZES["horizon"]
    m, n, l = SIZES["ensembles"]
    policy, q = [obs, h, h, h, act], [obs + act, h, h, h, 1]
    transition, aux = [obs + act, t, t, t, obs], [2 * obs + act, h, h, h, 1]
    frames = b * (1 + m * horizon)
    target = (mlp(frames, policy) + mlp(m * horizon * b, transition) + mlp(m * horizon * b, aux)
              + mlp(n * m * horizon * b, aux) + mlp(l * frames, q))
    training = (3 * mlp(b, q) + 3 * mlp(b, policy) + 2 * mlp(l * b, q)
                + 3 * (mlp(b, transition) + 2 * mlp(b, aux)) + mlp(1, policy))
    return {"target": target / 1e6, "training_and_act": training / 1e6, "frame": (target + training) / 1e6}


# -- the comparison ------------------------------------------------------------------------------
def export_baseline(folder: Path) -> Path:
    """`git archive BASELINE_COMMIT steve common`, unpacked into folder/baseline."""
    from common.cli import UsageError

    archive = subprocess.run(["git", "-C", str(ROOT), "archive", BASELINE_COMMIT, "steve", "common"],
                             capture_output=True, check=False)
    if archive.returncode != 0:
        raise UsageError(f"git archive {BASELINE_COMMIT} failed (this needs a git checkout with its "
                         f"history): {archive.stderr.decode().strip()[:200]}")
    target = folder / "baseline"
    target.mkdir()
    with tempfile.TemporaryFile() as tar:
        tar.write(archive.stdout)
        tar.seek(0)
        tarfile.open(fileobj=tar).extractall(target, filter="data")
    return target


def run_side(src: Path, env_extra: dict, compile: bool, args) -> dict:
    from bench.benchlib import ONE_THREAD_ENV

    command = [sys.executable, str(Path(__file__).resolve()), "--child", str(src), str(args.obs),
               str(args.action), str(args.frames), str(int(compile))]
    proc = subprocess.run(command, cwd=ROOT, env={**os.environ, **ONE_THREAD_ENV, **env_extra},
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"the {src} side failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def compare(args) -> tuple[dict, dict]:
    """(median of every figure per side, every round's figures per side)."""
    runs = {side: [] for side in SIDES}
    with tempfile.TemporaryDirectory() as tmp:
        sources = {"baseline": export_baseline(Path(tmp)), "current": ROOT}
        for round_ in range(args.rounds):
            for side, (code, env_extra, compile) in SIDES.items():
                runs[side].append(run_side(sources[code], env_extra, compile, args))
                print(f"round {round_ + 1}/{args.rounds} {side:>17}: "
                      f"{runs[side][-1]['frame_ms']:7.2f} ms/frame", flush=True)
    medians = {side: {key: statistics.median(r[key] for r in results) for key in results[0]}
               for side, results in runs.items()}
    return medians, runs


def report(args, medians: dict, runs: dict) -> dict:
    from bench.benchlib import machine, markdown_table

    base, now = medians["baseline"]["frame_ms"], medians["current"]["frame_ms"]
    compiled_ms = medians["current + compile"]["frame_ms"]
    rows = [[side, *(f"{medians[side][key]:.2f}" for key in PARTS), f"{1e3 / medians[side]['frame_ms']:.1f}",
             f"{base / medians[side]['frame_ms']:.2f}x"] for side in SIDES]
    print(markdown_table(["code", "ms/frame", "value update", "of which target", "world update", "act",
                          "frames/s", "vs baseline"], rows))
    flop = matmul_mflop_per_frame(args.obs, args.action)
    rate = medians["current"]["gemm_gflops"]
    floor_ms = flop["frame"] / rate
    print(f"floor: {flop['frame']:.0f} MFLOP of matmuls per frame ({flop['target']:.0f} in the target) "
          f"at {rate:.0f} GFLOP/s (the best [1536,64]x[64,64] matmul here) = {floor_ms:.1f} ms/frame, "
          f"at most {base / floor_ms:.1f}x over the baseline even if nothing else cost anything")
    info = machine()
    return {
        "baseline_commit": BASELINE_COMMIT,
        "baseline_frame_ms": base, "current_frame_ms": now, "speedup": base / now,
        "frames_per_s_baseline": 1e3 / base, "frames_per_s_current": 1e3 / now,
        "baseline_malloc_frame_ms": medians["baseline + malloc"]["frame_ms"],
        "compiled_frame_ms": compiled_ms, "speedup_compiled": base / compiled_ms,
        "compiled_vs_eager": now / compiled_ms,
        "speedup_code_only": medians["baseline + malloc"]["frame_ms"] / now,
        "parts_ms": medians,
        "floor": {"matmul_mflop_per_frame": flop, "best_gemm_gflops": rate, "floor_ms": floor_ms,
                  "max_speedup": base / floor_ms},
        "sizes": {**SIZES, **ENVS[args.env], "env": args.env},
        "rounds": args.rounds, "frames_per_round": args.frames,
        "torch": info["torch"], "cpu": info["cpu"], "threads": 1, "runs": runs,
    }


def main(argv=None) -> None:
    from bench.benchlib import add_output_args, write_result
    from common.cli import UsageError

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_output_args(parser)
    parser.add_argument("--rounds", type=int, default=None, help="alternations of the sides (default 3; --quick 2)")
    parser.add_argument("--frames", type=int, default=None,
                        help="timed frames per side and round (default 200; --quick 60)")
    parser.add_argument("--pendulum", action="store_true", help="Pendulum sizes (obs 3, action 1)")
    args = parser.parse_args(argv)
    for name in ("rounds", "frames"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise UsageError(f"--{name} must be at least 1, got {getattr(args, name)}")
    args.rounds = args.rounds or (2 if args.quick else 3)
    args.frames = args.frames or (60 if args.quick else 200)
    args.env = "Pendulum" if args.pendulum else "HalfCheetah"
    args.obs, args.action = ENVS[args.env]["obs"], ENVS[args.env]["action"]
    result = report(args, *compare(args))
    path = write_result("steve_update", result, args.results_dir)
    print(f"speedup {result['speedup']:.2f}x ({result['baseline_frame_ms']:.2f} -> "
          f"{result['current_frame_ms']:.2f} ms/frame); the code alone (baseline with the same malloc "
          f"settings) {result['speedup_code_only']:.2f}x; --compile {result['speedup_compiled']:.2f}x "
          f"({result['compiled_vs_eager']:.2f}x today's eager) -> {path}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:  # one side: import nothing from this checkout before its code
        src, obs, action, frames, compile = sys.argv[2], *map(int, sys.argv[3:7])
        print(json.dumps(child(src, obs, action, frames, bool(compile))), flush=True)
    else:
        sys.path.insert(0, str(ROOT))
        from common.cli import run_main

        run_main(main)
