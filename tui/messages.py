"""The messages that workers (and the audio thread) post to the app and its screens.

Slow work runs in thread workers; they never touch widgets but post one of these, and the
screen handles it on the UI thread with ``@on(<message>)``. They live here, at top level,
so their handler names (``on_<snake_case name>``) do not depend on the screen that posts
them. A widget's own events (``SegmentList.Highlighted``) stay in the widget. The types in
the fields are imported only for type checking: importing this module is cheap.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from textual.message import Message

if TYPE_CHECKING:
    import numpy.typing as npt
    from textual.notifications import SeverityLevel

    from core.episodes.editor import Analysis
    from core.episodes.render import RenderResult
    from core.journal import Outcome
    from core.overview import Overview
    from core.training.protocol import Status


# -- any screen ----------------------------------------------------------------------------
@dataclass
class DecisionsWritten(Message, bubble=False):
    """Journaled decisions were written to the catalog (or dropped) by the background retry:
    posted by the worker to the app, then by the app to each screen."""

    outcome: Outcome


@dataclass
class Notice(Message):
    """A worker has something to tell the user (a notification, shown on the UI thread)."""

    text: str
    severity: SeverityLevel = "information"
    timeout: float | None = None
    title: str = ""


@dataclass
class PlaybackFailed(Message):
    """The player could not play (said once per distinct reason)."""

    reason: str


# -- home ----------------------------------------------------------------------------------
@dataclass
class OverviewLoaded(Message):
    """A fresh overview was read in a worker thread (the ``seq``-th load started)."""

    overview: Overview
    seq: int


@dataclass
class OverviewFailed(Message):
    """Reading the overview failed with a user-facing error (the ``seq``-th load started)."""

    error: str
    seq: int


# -- review --------------------------------------------------------------------------------
@dataclass
class WaveformLoaded(Message):
    """A segment's audio was read in a worker."""

    segment_id: int | None
    audio: npt.NDArray[Any]
    sample_rate: int


@dataclass
class WaveformFailed(Message):
    """A segment's audio could not be read."""

    reason: str


@dataclass
class PlaybackStarted(Message):
    """The player started the current segment."""


@dataclass
class PlaybackEnded(Message):
    """The player reached the end of the segment."""


# -- script editor -------------------------------------------------------------------------
@dataclass
class Analysed(Message):
    """A parse of the text of ``generation`` finished in a worker."""

    result: Analysis
    generation: int


@dataclass
class LineCached(Message):
    """A preview put a line into the render cache: its state changed."""


@dataclass
class RenderProgress(Message):
    """The render finished a line (``what`` = ``SPEAKER: text``) or reports a stage."""

    done: int
    total: int
    what: str


@dataclass
class RenderFinished(Message):
    """The render ended: a ``result``, or an ``error`` (at ``failed_line`` if it was a
    line's synthesis that failed)."""

    result: RenderResult | None
    error: str | None
    failed_line: int | None


# -- training dashboard --------------------------------------------------------------------
@dataclass
class RunStarted(Message):
    """A worker was launched for ``run_id``."""

    run_id: str
    pid: int


@dataclass
class RunsRefreshed(Message):
    """Statuses and new metrics read in a worker thread (``fresh``: new metric events by run)."""

    runs: list[tuple[str, Status]]
    fresh: dict[str, list[dict[str, Any]]]
