"""Segment review: keyboard-only accept / reject / fix transcript, with playback.

Every decision and edit is first appended to the review journal (:mod:`core.journal`,
flushed and fsynced) and then written to the catalog inside the key handler, waiting only
briefly for the write lock, so a crash or a kill right after a key press never loses it
and a catalog locked by another process never freezes the screen: the decision stays
pending (marked ``*`` in the list, counted on the status line) until the app's background
retry writes it. A catalog that cannot be read is a notification, never a crash. The list
is virtual (:class:`~tui.widgets.segment_list.SegmentList`); the detail pane shows the
waveform with the play position, QC with failed metrics highlighted, and the transcript.
Workers (and the audio thread's end-of-playback callback) talk to the screen by posting
messages.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any, ClassVar, TypeVar

from rich.table import Table
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import BindingType
from textual.containers import Horizontal, Vertical
from textual.timer import Timer
from textual.widgets import Footer, Header, Input, Static

from core.audio.playback import Player
from core.catalog import ORDERS, VIEWS, Catalog, StatusCounts
from core.dataset.qc import METRIC_ROWS
from core.errors import PlaybackError, PodforgeError
from core.journal import Applied, Decision, DecisionJournal, Op, Outcome
from core.records import ReviewAction, Segment, SegmentStatus
from core.workspace import Workspace
from tui import keymap
from tui.format import duration
from tui.messages import (
    DecisionsWritten,
    PlaybackEnded,
    PlaybackFailed,
    PlaybackStarted,
    WaveformFailed,
    WaveformLoaded,
)
from tui.screens.base import WorkspaceScreen
from tui.styles import STYLES
from tui.widgets.segment_list import SegmentList
from tui.widgets.target_bar import TargetBar
from tui.widgets.waveform import Waveform

POSITION_REFRESH_S = 0.1
SEEK_S = 1.0

F = TypeVar("F", bound=Callable[..., Any])


def _catalog_guard(method: F) -> F:
    """A handler that reads or writes the catalog: a catalog failure (damaged, unreadable)
    is a notification and the screen keeps working, never a traceback."""

    @functools.wraps(method)
    def wrapper(self: ReviewScreen, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except PodforgeError as exc:
            self.report_error(str(exc))
            return None

    return wrapper  # type: ignore[return-value]


class ReviewScreen(WorkspaceScreen):
    """Review the workspace's segments one key at a time."""

    CSS_PATH = STYLES / "review.tcss"
    BINDINGS: ClassVar[list[BindingType]] = keymap.REVIEW
    SCREEN_TITLE = "podforge — review"

    def __init__(self, workspace: Workspace, player: Player | None = None) -> None:
        super().__init__(workspace)
        self.catalog = Catalog.open(workspace.catalog_path)
        self.player = player if player is not None else Player()
        self.view = "pending"
        self.order = "order"
        self.autoplay = False
        self.counts = StatusCounts()
        self._editing = False
        self._playing_id: int | None = None
        self._position_timer: Timer | None = None
        self._playback_errors: set[str] = set()
        self._last_error: str | None = None

    # -- layout ------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        audio = self.workspace.settings.audio
        yield Header()
        with Vertical(id="progress"):
            yield TargetBar(audio.target_minutes_min, audio.target_minutes_max)
            yield Static("", id="status-line")
        with Horizontal(id="body"):
            yield SegmentList(self._fetch_rows, id="segments")
            with Vertical(id="detail"):
                yield Static("", id="meta")
                yield Waveform(id="waveform")
                yield Static("", id="qc")
                yield Static("", id="transcript")
                yield Input(id="edit", placeholder="transcript — enter saves, escape cancels")
        yield Footer()

    @_catalog_guard
    def on_mount(self) -> None:
        self.query_one("#edit", Input).display = False
        self.query_one(SegmentList).focus()
        self._recount()
        self._load_view()
        self._mark_unsaved()

    def report_error(self, message: str) -> None:
        """Notify a catalog failure once (not on every key press)."""
        if message != self._last_error:
            self._last_error = message
            self.notify(message, severity="error", timeout=10)

    def _fetch_rows(self, ids: Sequence[int]) -> list[Segment]:
        try:
            return self.catalog.segments_by_ids(ids)
        except PodforgeError as exc:
            self.report_error(str(exc))
            return []

    def on_unmount(self) -> None:
        self.player.stop()
        self.catalog.close()

    # -- view --------------------------------------------------------------------
    def _load_view(self, keep: int | None = None) -> None:
        ids = self.catalog.segment_ids(self.view, self.order)
        self.query_one(SegmentList).set_ids(ids, keep=keep)
        self._show_status()

    def _recount(self) -> None:
        self.counts = self.catalog.counts()
        self.query_one(TargetBar).minutes = self.counts.accepted_seconds / 60.0

    def _show_status(self) -> None:
        c = self.counts
        seg_list = self.query_one(SegmentList)
        where = f"{seg_list.cursor + 1}/{len(seg_list.ids)}" if seg_list.ids else "0/0"
        line = Text.assemble(
            (f"view {self.view}", "bold"), f" · sort {self.order} · {where}   ",
            ("pending ", "dim"), f"{c.pending}  ", ("accepted ", "dim"), f"{c.accepted}  ",
            ("rejected ", "dim"), f"{c.rejected}  ", ("auto-play ", "dim"),
            "on" if self.autoplay else "off",
        )  # fmt: skip
        if not seg_list.ids:
            line.append(f"   — no {self.view} segments (f: change filter)", "italic")
        waiting = self.pending_count
        if waiting:
            line.append(
                f"   * {waiting} pending write{'s' if waiting != 1 else ''} "
                "(catalog busy; kept in the journal, retrying)",
                "bold yellow",
            )
        self.query_one("#status-line", Static).update(line, layout=False)

    @on(SegmentList.Highlighted)
    @_catalog_guard
    def _highlighted(self, message: SegmentList.Highlighted) -> None:
        self._cancel_edit()
        seg = self.query_one(SegmentList).current
        self._show_detail(seg)
        self._show_status()
        if seg is not None and seg.id != self._playing_id and self.player.playing:
            self.player.stop()
            self._playing_id = None
        if seg is not None:
            self._load_waveform(seg)

    def _show_detail(self, seg: Segment | None) -> None:
        meta, qc, transcript = (
            self.query_one(f"#{n}", Static) for n in ("meta", "qc", "transcript")
        )
        if seg is None:
            meta.update(Text("nothing to review here", "dim italic"), layout=False)
            qc.update("", layout=False)
            transcript.update("", layout=False)
            self.query_one(Waveform).clear_audio()
            return
        rec = self.catalog.recording(seg.recording_id)
        status_style = {"accepted": "green", "rejected": "red"}.get(seg.status, "yellow")
        span = f"  {duration(seg.start_sec)}–{duration(seg.end_sec)}  ({seg.duration_sec:.1f} s)"
        meta.update(
            Text.assemble(
                (seg.status.upper(), f"bold {status_style}"),
                f"  {seg.speaker}  ",
                (rec.original_name, "cyan"),
                span,
            ),
            layout=False,  # fixed heights in review.tcss: no relayout per key press
        )
        qc.update(_qc_table(seg), layout=False)
        text = Text(seg.text or "(no transcript — e to type it)", "" if seg.text else "dim italic")
        source = f"  [{seg.text_source}]" if seg.text_source else ""
        transcript.update(Text.assemble(text, (source, "dim")), layout=False)

    @work(thread=True, exclusive=True, group="waveform")
    def _load_waveform(self, seg: Segment) -> None:
        from core.audio.io import read

        try:
            audio, rate = read(self.workspace.root / seg.audio)
        except PodforgeError as exc:
            self.post_message(WaveformFailed(str(exc)))
            return
        self.post_message(WaveformLoaded(seg.id, audio, rate))

    @on(WaveformFailed)
    def _load_failed(self, message: WaveformFailed) -> None:
        self.notify(message.reason, severity="error")

    @on(WaveformLoaded)
    def _set_waveform(self, message: WaveformLoaded) -> None:
        current = self.query_one(SegmentList).current
        if current is not None and current.id == message.segment_id:
            self.query_one(Waveform).set_audio(message.audio, message.sample_rate)

    # -- decisions -----------------------------------------------------------------
    @property
    def journal(self) -> DecisionJournal | None:
        """The app's review journal (``None``: it could not be opened; nothing is written)."""
        journal = getattr(self.app, "decisions", None)
        return journal if isinstance(journal, DecisionJournal) else None

    @property
    def pending_count(self) -> int:
        """Decisions journaled but not yet written to the catalog."""
        journal = self.journal
        return len(journal.pending) if journal is not None else 0

    def _commit(
        self,
        op: Op,
        segment_id: int | None = None,
        *,
        status: SegmentStatus | None = None,
        text: str | None = None,
    ) -> Applied | Decision | None:
        """Journal a decision (durable when this returns), then try to write it to the
        catalog at once with a short wait for the lock. Returns what the catalog recorded,
        the :class:`Decision` when it waits in the journal, or ``None`` when it could not even
        be journaled (said in a notification; nothing changed)."""
        from tui.app import UI_BUSY_TIMEOUT_S

        journal = self.journal
        if journal is None:
            self.report_error("the review journal cannot be written; decisions are disabled")
            return None
        try:
            decision = journal.record(op, segment_id, status=status, text=text)
        except PodforgeError as exc:
            self.report_error(str(exc))
            return None
        if len(journal.pending) > 1 or getattr(self.app, "retrying", False):
            return decision  # queued behind others: the background retry keeps the order
        outcome = journal.apply(self.catalog, busy_timeout=UI_BUSY_TIMEOUT_S, wait=False)
        if outcome is None:
            return decision
        mine = next((a for a in outcome.applied if a.decision.id == decision.id), None)
        others = [a for a in outcome.applied if a.decision.id != decision.id]
        report = getattr(self.app, "report_outcome", None)
        if report is not None:
            report(outcome)
        if others:
            self._written(Outcome(applied=others))
        return mine if mine is not None else decision

    @_catalog_guard
    def action_decide(self, status: SegmentStatus) -> None:
        seg_list = self.query_one(SegmentList)
        seg = seg_list.current
        if seg is None or seg.id is None:
            return
        result = self._commit("status", seg.id, status=status)  # before anything else
        if result is None:
            return
        if isinstance(result, Applied) and result.action is not None:
            self._count_change(seg, result.action.old_status, status)
            seg_list.update_row(self.catalog.segment(seg.id))
        else:  # waits in the journal: show it as decided, marked unsaved
            self._count_change(seg, seg.status, status)
            seg_list.update_row(replace(seg, status=status))
            self._mark_unsaved()
        seg_list.move(1)  # auto-advance
        if self.autoplay:
            self.action_play()

    def _count_change(self, seg: Segment, old: str, new: str) -> None:
        if old == new:
            return
        c = self.counts
        values = {"pending": c.pending, "accepted": c.accepted, "rejected": c.rejected}
        values[old] -= 1
        values[new] += 1
        seconds = c.accepted_seconds + seg.duration_sec * (
            (new == "accepted") - (old == "accepted")
        )
        self.counts = StatusCounts(
            pending=values["pending"], accepted=values["accepted"], rejected=values["rejected"],
            flagged=c.flagged, accepted_seconds=seconds, total_seconds=c.total_seconds,
        )  # fmt: skip
        self.query_one(TargetBar).minutes = seconds / 60.0
        self._show_status()

    @_catalog_guard
    def action_undo(self) -> None:
        result = self._commit("undo")
        if result is None:
            return
        if isinstance(result, Decision):
            self._mark_unsaved()
            self.notify("the catalog is locked: the undo waits in the journal", timeout=3)
            return
        if result.action is None:
            self.notify("nothing to undo")
            return
        self._show_undo(result.action)

    def _show_undo(self, action: ReviewAction) -> None:
        if not self.pending_count:
            self._recount()
        seg_list = self.query_one(SegmentList)
        if action.segment_id in seg_list.ids:
            seg_list.update_row(self.catalog.segment(action.segment_id))
            seg_list.move_to(seg_list.ids.index(action.segment_id))
        else:
            self._load_view(keep=action.segment_id)
        self._show_detail(seg_list.current)
        self._show_status()
        self.notify(f"undid {action.action} of segment {action.segment_id}", timeout=2)

    # -- transcript edit -----------------------------------------------------------
    def action_edit(self) -> None:
        seg = self.query_one(SegmentList).current
        if seg is None:
            return
        edit = self.query_one("#edit", Input)
        edit.value = seg.text
        edit.display = True
        self.query_one("#transcript", Static).display = False
        self._editing = True
        edit.focus()
        edit.cursor_position = len(edit.value)

    @on(Input.Submitted, "#edit")
    @_catalog_guard
    def _save_edit(self, event: Input.Submitted) -> None:
        seg_list = self.query_one(SegmentList)
        seg = seg_list.current
        text = event.value.strip()
        if seg is not None and seg.id is not None and text != seg.text:
            result = self._commit("text", seg.id, text=text)  # journaled on enter
            if isinstance(result, Applied):
                seg = self.catalog.segment(seg.id)
            elif result is not None:  # waits in the journal
                seg = replace(seg, text=text, text_source="manual")
                self._mark_unsaved()
            seg_list.update_row(seg)
        self._cancel_edit()
        self._show_detail(seg)

    def _cancel_edit(self) -> None:
        if not self._editing:
            return
        self._editing = False
        self.query_one("#edit", Input).display = False
        self.query_one("#transcript", Static).display = True
        self.query_one(SegmentList).focus()

    def action_back(self) -> None:
        if self._editing:
            self._cancel_edit()
        else:
            self.app.pop_screen()

    # -- written in the background -----------------------------------------------------
    def on_decisions_written(self, message: DecisionsWritten) -> None:
        self._written(message.outcome)

    @_catalog_guard
    def _written(self, outcome: Outcome) -> None:
        """Show decisions the catalog now holds (written by the retry, or queued earlier)."""
        seg_list = self.query_one(SegmentList)
        for item in outcome.applied:
            decision = item.decision
            if decision.op == "undo":
                if item.action is not None:
                    self._show_undo(item.action)
                elif not item.already:
                    self.notify("nothing to undo")
            elif decision.segment_id is not None and decision.segment_id in seg_list.ids:
                seg_list.update_row(self.catalog.segment(decision.segment_id))
        if outcome.applied or outcome.dropped:
            self._mark_unsaved()
            if not self.pending_count:
                self._recount()  # the catalog's own counts again
            self._show_detail(seg_list.current)
        self._show_status()

    def _mark_unsaved(self) -> None:
        journal = self.journal
        pending = journal.pending if journal is not None else []
        self.query_one(SegmentList).mark_unsaved(
            {d.segment_id for d in pending if d.segment_id is not None}
        )
        self._show_status()

    # -- navigation ------------------------------------------------------------------
    def action_move(self, delta: int) -> None:
        self.query_one(SegmentList).move(delta)

    @_catalog_guard
    def action_next_pending(self) -> None:
        seg_list = self.query_one(SegmentList)
        for index in range(seg_list.cursor + 1, len(seg_list.ids)):
            row = seg_list.row(index)
            if row is not None and row.status == "pending":
                seg_list.move_to(index)
                return
        self.notify("no pending segment below this one")

    @_catalog_guard
    def action_cycle_view(self) -> None:
        self.view = VIEWS[(VIEWS.index(self.view) + 1) % len(VIEWS)]
        self._load_view(keep=self._current_id())

    @_catalog_guard
    def action_cycle_order(self) -> None:
        orders = list(ORDERS)
        self.order = orders[(orders.index(self.order) + 1) % len(orders)]
        self._load_view(keep=self._current_id())

    def action_toggle_autoplay(self) -> None:
        self.autoplay = not self.autoplay
        self._show_status()

    def _current_id(self) -> int | None:
        seg = self.query_one(SegmentList).current
        return seg.id if seg else None

    # -- playback ------------------------------------------------------------------
    def action_play(self) -> None:
        seg = self.query_one(SegmentList).current
        if seg is None:
            return
        if self.player.playing and self._playing_id == seg.id:
            self.player.stop()
            self._playing_id = None
            self.query_one(Waveform).position_sec = None
            return
        self._playing_id = seg.id
        self._start_playback(seg)

    @work(thread=True, exclusive=True, group="playback")
    def _start_playback(self, seg: Segment) -> None:
        try:
            self.player.play_file(self.workspace.root / seg.audio, on_finished=self._finished)
        except PlaybackError as exc:
            self.post_message(PlaybackFailed(str(exc)))
            return
        self.post_message(PlaybackStarted())

    def _finished(self) -> None:  # called on the audio thread
        self.post_message(PlaybackEnded())

    @on(PlaybackFailed)
    def _playback_failed(self, message: PlaybackFailed) -> None:
        self._playing_id = None
        if message.reason not in self._playback_errors:  # say it once, then stay quiet
            self._playback_errors.add(message.reason)
            self.notify(message.reason, title="no playback", severity="warning", timeout=10)

    @on(PlaybackStarted)
    def _track_position(self) -> None:
        if self._position_timer is None:
            self._position_timer = self.set_interval(POSITION_REFRESH_S, self._show_position)

    def _show_position(self) -> None:
        waveform = self.query_one(Waveform)
        waveform.position_sec = self.player.position_sec if self.player.playing else None

    @on(PlaybackEnded)
    def _stop_tracking(self) -> None:
        if self._position_timer is not None:
            self._position_timer.stop()
            self._position_timer = None
        self._playing_id = None
        self.query_one(Waveform).position_sec = None

    def action_seek(self, direction: int) -> None:
        if self.player.playing:
            self.player.seek(direction * SEEK_S)
            self._show_position()


def _qc_table(seg: Segment) -> Table:
    """QC metrics, the failed ones in bold warning colours."""
    table = Table.grid(padding=(0, 3))
    for _ in range(2):
        table.add_column()
    cells: list[Text] = []
    for metric in METRIC_ROWS:
        shown = metric.format(getattr(seg.qc, metric.field))
        style = "bold red" if metric.flag in seg.flags else ""
        cells.append(Text.assemble((f"{metric.label} ", "dim"), (shown, style)))
    for row in range(0, len(cells), 2):
        table.add_row(*cells[row : row + 2])
    others = [f for f in seg.flags if f not in {metric.flag for metric in METRIC_ROWS}]
    if others:
        table.add_row(Text("flags: " + ", ".join(others), "bold yellow"))
    return table
