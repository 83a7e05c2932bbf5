"""`parallel_map(fn, items, workers, backend)`: the same map on one process, a local process
pool, or a Ray cluster.

- `serial` (default): a plain loop in this process.
- `process`: a spawn-started pool of `workers` processes, one torch thread each (the fast
  setting for small networks on few cores). `fn` must be importable (a module-level function).
- `ray`: Ray tasks, one CPU and one torch thread each. Ray is imported only when chosen;
  `ray_address` joins an existing cluster (`ray start --head` ...), otherwise a local Ray starts
  with `workers` CPUs. Every node needs this repository installed (`pip install -r
  requirements.txt -r requirements-ray.txt`).

`map(fn, items, shared=obj)` calls `fn(item, obj)` and hands `obj` (a replay buffer) to the
workers without a copy per job:
- `serial`: the object itself.
- `process`: the pool calls `obj.share_memory_()` (see `common.buffers.SharedMemoryMixin`), which
  moves its arrays into /dev/shm segments once; each job then pickles only the segment names and
  the small state, and the worker maps the same memory read-only. The main process keeps writing
  into the same segments, so the next map sees the transitions added in between. The pool unlinks
  the segments when it closes.
- `ray`: `ray.put(obj)` once per map, passed as a top-level argument so that each task reads it
  from the object store (zero-copy for numpy arrays on the same node, one copy per node). A
  buffer already moved to /dev/shm would travel as segment names, readable on this machine only.
Workers get a copy of the object's sampler state: draw indices from the job's own seeded rng and
call `batch_at(idx)`, or every job samples the same batches.

Results come back in the order of `items`. For seeded work (the seed travels inside the item)
every backend gives the same results, as long as `fn`'s numerics do not depend on the number of
torch threads (call `common.device.set_single_thread()` in the main process to be sure).

Keep a `WorkerPool` open across calls (e.g. one per training run) to pay the start-up once.
"""
from __future__ import annotations

import itertools
import multiprocessing
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Callable, Iterable

from common.cli import UsageError
from common.device import set_single_thread

BACKENDS = ("serial", "process", "ray")


def _process_worker_init(parent_pid: int) -> None:
    """A pool process: one torch thread, and it ends with its parent. Without this, a run killed
    with SIGKILL leaves its pool processes training until their current job ends (minutes, for a
    population); Linux's parent-death signal ends them at once (elsewhere: a no-op)."""
    set_single_thread()
    import signal
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # ctrl-C is the parent's to report, in one line
    if sys.platform.startswith("linux"):
        import ctypes
        try:
            ctypes.CDLL(None).prctl(1, signal.SIGKILL)   # PR_SET_PDEATHSIG
        except (AttributeError, OSError):
            return
        if os.getppid() != parent_pid:   # the parent died before prctl took effect
            os._exit(1)


def _single_threaded_call(fn: Callable, item: Any, *shared: Any) -> Any:
    set_single_thread()
    return fn(item, *shared)


class WorkerPool:
    """A reusable map over items with the chosen backend; use as a context manager."""

    def __init__(self, workers: int = 1, backend: str = "serial", ray_address: str | None = None):
        if backend not in BACKENDS:
            raise UsageError(f"unknown backend {backend!r}; allowed: {', '.join(BACKENDS)}")
        if workers < 1:
            raise UsageError(f"--workers must be at least 1, got {workers}")
        self.workers, self.backend = workers, backend
        self._executor = None
        self._shared_objects = []  # what map moved into shared memory: released by close()
        self._ray = None
        self._started_ray = False
        if backend == "process":
            self._executor = ProcessPoolExecutor(
                max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                initializer=_process_worker_init, initargs=(os.getpid(),))
        elif backend == "ray":
            self._start_ray(ray_address)

    def _start_ray(self, address: str | None) -> None:
        try:
            import ray
        except ImportError:
            raise UsageError("--backend ray needs Ray: pip install -r requirements-ray.txt") from None
        self._ray = ray
        if not ray.is_initialized():
            env_vars = {"OMP_NUM_THREADS": "1"}
            if address:
                options = {"address": address}
            else:  # local workers can import whatever this process can (tests, script folders)
                options = {"num_cpus": self.workers}
                env_vars["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if os.path.isdir(p))
            ray.init(include_dashboard=False, log_to_driver=False,
                     runtime_env={"env_vars": env_vars}, **options)
            self._started_ray = True
        self._remote = ray.remote(num_cpus=1)(_single_threaded_call)

    def map(self, fn: Callable, items: Iterable, shared: Any = None) -> list:
        """`[fn(item) for item in items]`, or `[fn(item, shared) ...]` when `shared` is given
        (sent once, not per job: see the module docstring); results in the order of items."""
        items = list(items)
        extra = () if shared is None else (shared,)
        if self.backend == "serial":
            return [fn(item, *extra) for item in items]
        if self.backend == "process":
            if shared is not None:
                self._share(shared)
            return list(self._executor.map(fn, items, *(itertools.repeat(x) for x in extra)))
        fn_ref = self._ray.put(fn)
        extra = tuple(self._ray.put(x) for x in extra)
        return self._ray.get([self._remote.remote(fn_ref, item, *extra) for item in items])

    def _share(self, shared: Any) -> None:
        """Move `shared`'s arrays into shared memory (a no-op once they are there)."""
        if not hasattr(shared, "share_memory_"):
            raise TypeError(f"shared= on the process backend needs an object with "
                            f"share_memory_() (e.g. a replay buffer), got {type(shared).__name__}")
        shared.share_memory_()
        if not any(obj is shared for obj in self._shared_objects):
            self._shared_objects.append(shared)

    def close(self, cancel: bool = False) -> None:
        """Stop the pool; `cancel` drops the jobs not yet started (after ctrl-C or an error, so
        the run does not first work through the rest of a population's queue)."""
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=cancel)
            self._executor = None
        for obj in self._shared_objects:
            obj.release_shared_memory()
        self._shared_objects.clear()
        if self._started_ray:
            self._ray.shutdown()
            self._started_ray = False

    def __enter__(self) -> "WorkerPool":
        return self

    def __exit__(self, exc_type, *exc) -> None:
        self.close(cancel=exc_type is not None)


def parallel_map(fn: Callable, items: Iterable, workers: int = 1, backend: str = "serial",
                 ray_address: str | None = None, shared: Any = None) -> list:
    """`[fn(item) for item in items]` (or `fn(item, shared)`), run by `backend` on `workers`
    workers; order kept."""
    with WorkerPool(workers, backend, ray_address) as pool:
        return pool.map(fn, items, shared)
