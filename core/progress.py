"""Progress reports, cancellation and timestamps: the shapes long-running work shares.

Long jobs (ingest, render, evaluation, the demo build) take an optional ``progress``
callback and an optional ``cancel`` hook; the app runs them in workers and turns the
callbacks into messages. A job polls ``cancel()`` between units of work and stops with
:class:`Cancelled`; nothing is half-written when it does.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from core.errors import PodforgeError

Progress = Callable[[int, int, str], None]
"""``progress(done, total, what)``: ``done`` of ``total`` units, ``what`` names the unit."""

StageProgress = Callable[[str, int, int], None]
"""``progress(stage, done, total)`` for jobs that run in named stages (the episode master)."""

CancelCheck = Callable[[], bool]
"""``cancel()`` is true once the user asked the job to stop."""


class Cancelled(PodforgeError):
    """The user stopped the job; what was finished is kept, nothing is half-written."""


def check_cancel(cancel: CancelCheck | None) -> None:
    """Raise :class:`Cancelled` if ``cancel`` says so."""
    if cancel is not None and cancel():
        raise Cancelled("stopped")


def now_iso() -> str:
    """The current UTC time as ISO 8601 with milliseconds (catalog rows, journals, runs)."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")
