"""Device resolution (`--device auto|cpu|cuda[:i]`), seeding and CPU thread settings."""
from __future__ import annotations

import os
import random

import numpy as np
import torch

from common.cli import UsageError

DEVICE_CHOICES = "auto, cpu, cuda, cuda:N"


def resolve_device(spec: str = "auto") -> torch.device:
    """Turn a `--device` value into a torch.device; asking for absent CUDA is a UsageError."""
    spec = (spec or "auto").strip().lower()
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec == "cpu":
        return torch.device("cpu")
    if spec == "cuda" or spec.startswith("cuda:"):
        index = spec.partition(":")[2]
        if index and not index.isdigit():
            raise UsageError(f"--device {spec!r} is not valid; allowed: {DEVICE_CHOICES}")
        if not torch.cuda.is_available():
            raise UsageError(f"--device {spec} asked for CUDA, but torch finds no CUDA device "
                             f"on this machine; use --device cpu or auto")
        if index and int(index) >= torch.cuda.device_count():
            raise UsageError(f"--device {spec}: only {torch.cuda.device_count()} CUDA device(s) "
                             f"here (cuda:0..cuda:{torch.cuda.device_count() - 1})")
        return torch.device(spec)
    raise UsageError(f"--device {spec!r} is not valid; allowed: {DEVICE_CHOICES}")


def seed_everything(seed: int) -> np.random.Generator:
    """Seed python, numpy and torch (CPU and CUDA); return a numpy Generator for this seed.

    Environments are seeded separately, through `common.envs.make_env(env_id, seed)`.
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device
    return np.random.default_rng(seed)


def set_single_thread() -> None:
    """One torch (and BLAS) thread for this process: the fast setting for small MLPs when
    several worker processes share few CPU cores."""
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ["MKL_NUM_THREADS"] = "1"
    torch.set_num_threads(1)


def flush_denormals() -> bool:
    """Make this process's CPU float ops treat subnormal numbers (|x| < 1.2e-38 in float32) as 0.
    Weights that weight decay or a vanishing gradient drive towards zero (a dead ReLU unit's
    fan-out, a done head that never sees a terminal) end up subnormal, and an x86 core multiplies
    those one to two orders of magnitude slower: a STEVE done net's forward took 48 ms instead of
    1.2 ms after 20k HalfCheetah frames. Process-wide; changes results only below 1.2e-38.
    Returns False where the CPU cannot (then nothing changes)."""
    return torch.set_flush_denormal(True)


def keep_freed_memory(mmap_threshold: int = 32 << 20, trim_threshold: int = 256 << 20) -> None:
    """Let glibc keep freed memory for reuse instead of returning it to the OS. Batched updates
    allocate and free MB-sized activations each step; by default glibc hands them back and they
    return as fresh pages (page faults). Process-wide; the same as MALLOC_MMAP_THRESHOLD_ and
    MALLOC_TRIM_THRESHOLD_ in the environment (both are set: fixing only the trim threshold turns
    off glibc's adaptive mmap threshold). A no-op without glibc."""
    import ctypes
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (AttributeError, OSError, TypeError):  # not glibc (macOS, Windows)
        return
    mallopt(-3, mmap_threshold)   # M_MMAP_THRESHOLD
    mallopt(-1, trim_threshold)   # M_TRIM_THRESHOLD
