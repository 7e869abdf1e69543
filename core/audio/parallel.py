"""Threads for chunked audio work: how many this process may use, and a span runner.

numpy, soxr and LAME release the GIL for the work these threads do, so the chunks of a
long signal (true-peak scans, the limiter's readings, MP3 chunks) run in parallel. At
most 8 threads, never more than the CPUs this process may use (its affinity).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Final

__all__ = ["run_spans", "threads"]

_MAX_THREADS: Final = 8


def threads() -> int:
    """Threads for the chunked work on long audio: the CPUs this process may use (at most 8)."""
    try:
        count = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        count = os.cpu_count() or 1
    return max(1, min(_MAX_THREADS, count))


def run_spans(job: Callable[[int, int], None], spans: list[tuple[int, int]]) -> None:
    """Call ``job(start, end)`` for every span, on several threads.

    numpy and soxr release the GIL for the array operations the jobs do; each job
    writes only its own span of the shared arrays.
    """
    workers = min(threads(), len(spans))
    if workers <= 1:
        for start, end in spans:
            job(start, end)
        return
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for future in [pool.submit(job, start, end) for start, end in spans]:
            future.result()
