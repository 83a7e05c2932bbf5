"""Fixtures shared by several test files."""
import pytest
import torch


@pytest.fixture
def one_thread():
    """Tiny networks: one intra-op torch thread is fastest (and the machine is shared)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def release_run_folder_locks():
    """A run started in-process holds its folder's lock for the life of the process
    (common.runs.lock_run_dir); in the tests each in-process run stands for a process of its
    own, so its locks are released when the test ends."""
    yield
    from common import runs
    for path in list(runs._LOCKS):
        runs.unlock_run_dir(path)


@pytest.fixture(autouse=True)
def keep_subnormals():
    """steve/train.py run in-process flushes subnormal floats for the whole process
    (common.device.flush_denormals); the next test starts without it, as a new process would."""
    yield
    torch.set_flush_denormal(False)


@pytest.fixture
def broken_compiler(monkeypatch):
    """torch.compile failing as it does without a C++ compiler (at the first call), with
    common.compiling's process-wide fallback flag reset."""
    from common import compiling

    def broken_compile(fn):
        def call(*args, **kwargs):
            raise RuntimeError("InvalidCxxCompiler: No working C++ compiler found\nmore detail")
        return call
    monkeypatch.setattr(compiling.torch, "compile", broken_compile)
    monkeypatch.setattr(compiling, "_EAGER_ONLY", [])
