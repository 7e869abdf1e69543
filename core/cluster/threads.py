"""Thread counts pinned the same way on the driver and on every Ray worker.

Ray limits a task's threads to its CPU share (it sets ``OMP_NUM_THREADS``); float results of
torch and BLAS can depend on how a sum is split between threads, so a cluster run pins
torch, OpenMP/BLAS and CTranslate2 (which reads ``OMP_NUM_THREADS``) to one count, here and
in each worker, through :func:`pin_threads` and :func:`worker_env`.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
"""The environment variables that size OpenMP, MKL and OpenBLAS pools (and CTranslate2's)."""


def worker_env(threads: int) -> dict[str, str]:
    """The environment a Ray worker starts with so that its libraries use ``threads``."""
    return {name: str(threads) for name in THREAD_VARIABLES}


def pin_threads(threads: int) -> None:
    """Use ``threads`` threads from now on: the environment for libraries loaded later, and
    torch's pool when torch is loaded already (it is never imported here)."""
    if threads < 1:
        raise ValueError(f"threads must be at least 1, got {threads}")
    os.environ.update(worker_env(threads))
    torch = sys.modules.get("torch")
    if torch is not None and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


@contextlib.contextmanager
def pinned_threads(threads: int) -> Iterator[None]:
    """:func:`pin_threads` for the ``with`` block; the environment and torch's pool are put
    back afterwards."""
    saved = {name: os.environ.get(name) for name in THREAD_VARIABLES}
    torch = sys.modules.get("torch")
    torch_threads = torch.get_num_threads() if torch is not None else None
    pin_threads(threads)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        torch = sys.modules.get("torch")
        if torch is not None and torch_threads is not None:
            torch.set_num_threads(torch_threads)
