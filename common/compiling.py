"""torch.compile with an eager fallback, for the papers' optional `--compile` paths.

`compiled(fn, who)` returns a callable that runs `fn` through torch.compile and, where compiling
fails (no C++ compiler, an unsupported op, ...), says so in one line on stderr, once per process,
and from then on runs `fn` eagerly: the same numbers as without `--compile`, only slower.
"""
from __future__ import annotations

import sys

import torch

_EAGER_ONLY: list[BaseException] = []   # holds the error once torch.compile has failed in this process


def compiled(fn, who: str):
    """`fn` through torch.compile, falling back to `fn` itself where compiling fails. `who` names
    the caller in the one-line message (e.g. "searl")."""
    compiled_fn = torch.compile(fn)

    def call(*args, **kwargs):
        if _EAGER_ONLY:
            return fn(*args, **kwargs)
        try:
            return compiled_fn(*args, **kwargs)
        except Exception as error:   # noqa: BLE001 - any compiler failure means: run eagerly
            _EAGER_ONLY.append(error)
            first_line = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
            print(f"{who}: torch.compile failed ({type(error).__name__}: {first_line}); "
                  f"training eagerly", file=sys.stderr, flush=True)
            return fn(*args, **kwargs)
    return call
