"""The review screen: every key, undo, edits, views, playback, and durability under SIGKILL."""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import pty
import re
import select
import signal
import sqlite3
import struct
import subprocess
import sys
import termios
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from rich.table import Table
from rich.text import Text
from textual.pilot import Pilot
from textual.widgets import Input, Static

from core.audio.playback import Player
from core.catalog import Catalog
from core.dataset.qc import OTHER_SPEAKER_FLAG
from core.records import SegmentUpdate
from core.workspace import Workspace
from tests.conftest import NO_DEVICE, notified
from tests.test_playback import HAVE_PORTAUDIO
from tui.app import PodforgeApp
from tui.screens.review import ReviewScreen
from tui.widgets.segment_list import SegmentList
from tui.widgets.target_bar import TargetBar
from tui.widgets.waveform import Waveform

ROOT = Path(__file__).resolve().parents[1]
SIZE = (130, 34)


pytestmark = pytest.mark.usefixtures("no_color_unset")


class ReviewApp(PodforgeApp):
    """The real app, opened straight on the review screen with a chosen player."""

    def __init__(self, workspace: Workspace, player: Player) -> None:
        super().__init__(workspace)
        self._player = player

    def initial_screen(self) -> ReviewScreen:
        return ReviewScreen(self.workspace, player=self._player)


async def _ready(pilot: Pilot[None]) -> ReviewScreen:
    for _ in range(200):
        await pilot.pause(0.02)
        screen = pilot.app.screen
        if isinstance(screen, ReviewScreen) and screen.query_one(Waveform).peaks is not None:
            return screen
    raise AssertionError("review screen never showed a segment")


@asynccontextmanager
async def _reviewing(
    ws: Workspace,
) -> AsyncIterator[tuple[Pilot[None], ReviewScreen, SegmentList]]:
    """The app on the review screen of ``ws`` (with no sound), once the screen is ready."""
    app = ReviewApp(ws, Player(device=NO_DEVICE))
    async with app.run_test(size=SIZE) as pilot:
        screen = await _ready(pilot)
        yield pilot, screen, screen.query_one(SegmentList)


def _status(ws: Workspace, segment_id: int) -> str:
    with Catalog.open(ws.catalog_path) as cat:
        return cat.segment(segment_id).status


async def test_accept_reject_commit_at_once_and_advance(demo_copy: Workspace) -> None:
    async with _reviewing(demo_copy) as (pilot, screen, seg_list):
        first, second = seg_list.ids[0], seg_list.ids[1]
        await pilot.press("a")
        assert _status(demo_copy, first) == "accepted"  # committed by the key handler
        assert seg_list.cursor == 1  # auto-advance
        await pilot.press("r")
        assert _status(demo_copy, second) == "rejected"
        assert screen.counts.accepted == 1 and screen.counts.rejected == 1
        with Catalog.open(demo_copy.catalog_path) as cat:
            accepted_min = cat.counts().accepted_seconds / 60
        assert screen.query_one(TargetBar).minutes == pytest.approx(accepted_min)


def _qc_cells(screen: ReviewScreen) -> dict[str, tuple[str, str]]:
    """The QC panel's cells as ``label -> (value as shown, its style)``."""
    table = screen.query_one("#qc", Static).content
    assert isinstance(table, Table)
    out: dict[str, tuple[str, str]] = {}
    for column in table.columns:
        for cell in column.cells:
            assert isinstance(cell, Text)
            label = cell.spans[0]  # the dim label; the value follows it, styled if flagged
            styles = {str(span.style) for span in cell.spans[1:]}
            out[cell.plain[: label.end].strip()] = (cell.plain[label.end :], " ".join(styles))
    return out


async def test_qc_panel_shows_the_speaker_cosine_to_its_thresholds_precision(
    demo_copy: Workspace,
) -> None:
    """The speaker check's cosine is shown to two decimals (its threshold has two), in red
    when flagged; a metric never measured is a bare dash, with no unit."""
    with Catalog.open(demo_copy.catalog_path) as cat:
        first = cat.segments()[0]
        assert first.id is not None and first.qc.similarity is None
        flags = (*first.flags, OTHER_SPEAKER_FLAG)
        cat.update_analysis([SegmentUpdate(first.id, similarity=0.546, flags=flags)])
    async with _reviewing(demo_copy) as (pilot, screen, seg_list):
        assert seg_list.ids[0] == first.id
        shown, style = _qc_cells(screen)["speaker"]
        assert shown == "0.55 cos" and "red" in style
        assert _qc_cells(screen)["SNR"][0] == f"{first.qc.snr_db:.1f} dB"
        await pilot.press("j")
        await pilot.pause()
        assert _qc_cells(screen)["speaker"] == ("–", "")


async def test_undo_restores_and_returns_to_the_segment(demo_copy: Workspace) -> None:
    async with _reviewing(demo_copy) as (pilot, _, seg_list):
        first = seg_list.ids[0]
        await pilot.press("a", "j", "j")
        assert seg_list.cursor == 3
        await pilot.press("u")
        assert _status(demo_copy, first) == "pending"
        assert seg_list.cursor == 0 and seg_list.current is not None
        assert seg_list.current.status == "pending"
        await pilot.press("u")  # nothing left to undo
        messages = await notified(pilot, lambda ms: any("nothing to undo" in m for m in ms))
        assert any("nothing to undo" in m for m in messages)


async def test_movement_keys_and_next_pending(demo_copy: Workspace) -> None:
    async with _reviewing(demo_copy) as (pilot, screen, seg_list):
        await pilot.press("j", "down", "j")
        assert seg_list.cursor == 3
        await pilot.press("k", "up")
        assert seg_list.cursor == 1
        await pilot.press("pagedown")
        assert seg_list.cursor == min(21, len(seg_list.ids) - 1)
        await pilot.press("pageup", "k", "k")
        assert seg_list.cursor == 0
        # Decide the next two in the "all" view, then n skips them.
        await pilot.press("f", "f", "f", "f")
        assert screen.view == "all"
        await pilot.press("a", "a")
        await pilot.press("k", "k", "k")  # back to the top (cursor clamps at 0)
        await pilot.press("n")
        assert seg_list.current is not None and seg_list.current.status == "pending"
        assert seg_list.cursor == 2


async def test_edit_transcript_enter_saves_escape_cancels(demo_copy: Workspace) -> None:
    async with _reviewing(demo_copy) as (pilot, screen, seg_list):
        seg_id = seg_list.ids[0]
        await pilot.press("e")
        edit = screen.query_one("#edit", Input)
        assert edit.display and edit.has_focus
        edit.value = ""
        await pilot.press(*"fixed words", "enter")
        with Catalog.open(demo_copy.catalog_path) as cat:
            seg = cat.segment(seg_id)
            assert (seg.text, seg.text_source) == ("fixed words", "manual")
            assert cat.history()[-1].action == "edit"
        assert not edit.display and seg_list.has_focus
        await pilot.press("e", *" more", "escape")
        with Catalog.open(demo_copy.catalog_path) as cat:
            assert cat.segment(seg_id).text == "fixed words"
        assert isinstance(pilot.app.screen, ReviewScreen)  # escape cancelled the edit only
        await pilot.press("u")  # an edit can be undone like a decision
        with Catalog.open(demo_copy.catalog_path) as cat:
            assert cat.segment(seg_id).text != "fixed words"


async def test_filter_and_sort_cycle(demo_copy: Workspace) -> None:
    async with _reviewing(demo_copy) as (pilot, screen, seg_list):
        total = len(seg_list.ids)
        await pilot.press("f")
        assert screen.view == "flagged"
        assert all(seg_list.row(i).flags for i in range(len(seg_list.ids)))  # type: ignore[union-attr]
        await pilot.press("f")
        assert screen.view == "accepted" and seg_list.ids == []
        assert "no accepted segments" in str(screen.query_one("#status-line", Static).render())
        await pilot.press("f", "f")
        assert screen.view == "all" and len(seg_list.ids) == total
        await pilot.press("s")
        assert screen.order == "duration"
        durations = [seg_list.row(i).duration_sec for i in range(len(seg_list.ids))]  # type: ignore[union-attr]
        assert durations == sorted(durations, reverse=True)
        await pilot.press("s")
        assert screen.order == "snr"
        await pilot.press("s", "s")
        assert screen.order == "order"


async def test_no_output_device_is_one_notification_and_the_screen_works(
    demo_copy: Workspace,
) -> None:
    app = ReviewApp(demo_copy, Player(device=NO_DEVICE))
    async with app.run_test(size=SIZE) as pilot:
        screen = await _ready(pilot)
        for _ in range(3):
            await pilot.press("space")
            await pilot.pause(0.2)
        await notified(pilot, lambda _: any(n.title == "no playback" for n in app._notifications))
        warnings = [n for n in app._notifications if n.title == "no playback"]
        assert len(warnings) == 1
        assert "\n" not in warnings[0].message and "PLAYBACK.md" in warnings[0].message
        await pilot.press("a")
        assert screen.counts.accepted == 1


async def test_escape_returns_home_and_home_shows_the_decision(demo_copy: Workspace) -> None:
    app = PodforgeApp(demo_copy)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause(0.3)
        await pilot.press("v")
        screen = await _ready(pilot)
        screen.player = Player(device=NO_DEVICE)
        await pilot.press("a")
        await pilot.press("escape")
        for _ in range(100):
            await pilot.pause(0.02)
            text = str(app.screen.query_one("#counts", Static).render())
            if "accepted 1" in text:
                break
        assert "accepted 1" in text


# -- real playback through PortAudio and ALSA into a fake sound card paced in real time
# (tests/test_playback.py: the null device is not paced), in a subprocess because
# PortAudio reads the ALSA configuration once, when sounddevice is imported ------------

_PLAY_SCRIPT = """
import asyncio, json, os, sys
from pathlib import Path
from tests.test_playback import HAVE_PORTAUDIO, _start_paced_sink
if HAVE_PORTAUDIO:
    _start_paced_sink(Path(os.environ["HOME"]) / "sink")  # before sounddevice is imported
from core.workspace import Workspace
from tests.test_review import ReviewApp, _ready
from core.audio.playback import Player

async def main():
    app = ReviewApp(Workspace.open(sys.argv[1]), Player())
    async with app.run_test(size=(130, 34)) as pilot:
        screen = await _ready(pilot)
        await pilot.press("space")
        for _ in range(100):
            await pilot.pause(0.02)
            if screen.player.playing:
                break
        playing = screen.player.playing
        await pilot.pause(0.6)
        position = screen.query_one("Waveform").position_sec
        await pilot.press("right")
        after_seek = screen.player.position_sec
        await pilot.press("space")
        await pilot.pause(0.1)
        notes = [n.message for n in app._notifications]
        print(json.dumps({"playing": playing, "position": position, "after_seek": after_seek,
                          "stopped": not screen.player.playing, "notes": notes}))

asyncio.run(main())
"""


def test_space_plays_through_the_real_audio_path(demo_copy: Workspace, tmp_path: Path) -> None:
    from tests.test_playback import paced_asoundrc

    home = tmp_path / "home"
    home.mkdir()
    (home / ".asoundrc").write_text(paced_asoundrc(home / "sink"))
    env = {**os.environ, "HOME": str(home), "PYTHONPATH": str(ROOT)}
    env.pop("NO_COLOR", None)
    out = subprocess.run(
        [sys.executable, "-c", _PLAY_SCRIPT, str(demo_copy.root)],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    if not HAVE_PORTAUDIO:
        assert any("libportaudio2" in n for n in result["notes"])
        return
    assert result["playing"], result
    assert result["position"] is not None and 0.2 < result["position"] < 2.0
    assert result["after_seek"] > result["position"] + 0.5
    assert result["stopped"]


# -- a real app process, a decision, then SIGKILL ---------------------------------------


def test_a_decision_survives_sigkill_right_after_the_key(demo_copy: Workspace) -> None:
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 34, 130, 0, 0))
    env = {**os.environ, "TERM": "xterm-256color", "PODFORGE_AUDIO_DEVICE": NO_DEVICE}
    exe = Path(sys.executable).with_name("podforge")
    proc = subprocess.Popen(
        [str(exe), "open", str(demo_copy.root)],
        stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True,
    )  # fmt: skip
    os.close(slave)
    seen = b""

    def wait_for(marker: bytes, timeout: float = 30.0) -> None:
        nonlocal seen
        deadline = time.monotonic() + timeout
        while marker not in re.sub(rb"\x1b\[[0-9;?]*[A-Za-z]", b"", seen):
            assert time.monotonic() < deadline, f"never saw {marker!r}: {seen[-300:]!r}"
            ready, _, _ = select.select([master], [], [], 0.05)
            if ready:
                seen += os.read(master, 65536)

    try:
        wait_for(b"Recordings")
        os.write(master, b"v")
        wait_for(b"view pending")
        with Catalog.open(demo_copy.catalog_path) as cat:
            first = cat.segment_ids("pending")[0]
        seen = b""
        os.write(master, b"a")
        wait_for(b"accepted 1")  # the screen shows it: the key was handled
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        os.close(master)
    conn = sqlite3.connect(demo_copy.catalog_path)
    assert conn.execute("SELECT status FROM segments WHERE id = ?", (first,)).fetchone()[0] == (
        "accepted"
    )
    assert conn.execute("SELECT COUNT(*) FROM review_history").fetchone()[0] == 1
    conn.close()


# -- snapshots ----------------------------------------------------------------------


Step = Callable[[Pilot[None]], Awaitable[object]]
"""One thing a snapshot does to the screen before it is taken."""


def _press(key: str) -> Step:
    return lambda pilot: pilot.press(key)


def _sleep(seconds: float) -> Step:
    return lambda pilot: asyncio.sleep(seconds)


async def _pause(pilot: Pilot[None]) -> None:
    await pilot.pause()


def _snapshot(snap_compare: Callable[..., bool], ws: Workspace, *steps: Step) -> bool:
    """Whether the review screen on ``ws`` matches its snapshot once it is ready and ``steps``
    have run in turn."""

    async def settle(pilot: Pilot[None]) -> None:
        await _ready(pilot)
        for step in steps:
            await step(pilot)

    app = ReviewApp(ws, Player(device=NO_DEVICE))
    return snap_compare(app, terminal_size=SIZE, run_before=settle)


def test_snapshot_review_list(demo_workspace: Workspace, snap_compare) -> None:  # type: ignore[no-untyped-def]
    assert _snapshot(snap_compare, demo_workspace, _sleep(0.05))


def test_snapshot_review_edit_mode(demo_copy: Workspace, snap_compare) -> None:  # type: ignore[no-untyped-def]
    assert _snapshot(snap_compare, demo_copy, _press("e"), _pause)


def test_snapshot_review_flagged_view(demo_copy: Workspace, snap_compare) -> None:  # type: ignore[no-untyped-def]
    assert _snapshot(snap_compare, demo_copy, _press("f"), _ready, _sleep(0.1))


def test_snapshot_review_no_device_notification(demo_copy: Workspace, snap_compare) -> None:  # type: ignore[no-untyped-def]
    assert _snapshot(snap_compare, demo_copy, _press("space"), notified, _sleep(0.1))


# -- a locked catalog: decisions go through the on-disk journal, never block the UI ------


class _Locked:
    """Another writer holding the catalog's write lock (``BEGIN IMMEDIATE``) until released."""

    def __init__(self, path: Path) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None, timeout=0.1)
        self.conn.execute("BEGIN IMMEDIATE")

    def release(self) -> None:
        if self.conn.in_transaction:
            self.conn.execute("ROLLBACK")
        self.conn.close()


def _journal_lines(ws: Workspace) -> list[dict[str, object]]:
    lines: list[dict[str, object]] = []
    for path in sorted((ws.root / ".journal").glob("review-*.jsonl")):
        lines += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return lines


def _history_count(ws: Workspace, segment_id: int) -> int:
    with Catalog.open(ws.catalog_path) as cat:
        return len(cat.history(segment_id))


def _status_text(screen: ReviewScreen) -> str:
    return str(screen.query_one("#status-line", Static).render())


async def _until(pilot: Pilot[None], check: object, steps: int = 300) -> bool:
    for _ in range(steps):
        if check():  # type: ignore[operator]
            return True
        await pilot.pause(0.02)
    return bool(check())  # type: ignore[operator]


async def test_a_locked_catalog_queues_the_decision_and_writes_it_when_released(
    demo_copy: Workspace,
) -> None:
    async with _reviewing(demo_copy) as (pilot, screen, seg_list):
        first = seg_list.ids[0]
        lock = _Locked(demo_copy.catalog_path)
        try:
            await pilot.press("a")  # handled while the other writer still holds the lock
            assert pilot.app.is_running and lock.conn.in_transaction
            assert seg_list.cursor == 1  # the screen moved on
            assert screen.pending_count == 1
            assert "1 pending" in _status_text(screen)
            row = seg_list.row(0)
            assert row is not None and row.status == "accepted" and first in seg_list.unsaved
            # The decision is on disk, in the journal; the catalog does not have it yet.
            entries = _journal_lines(demo_copy)
            assert [(e["op"], e["segment_id"], e["status"]) for e in entries] == [
                ("status", first, "accepted")
            ]
            assert _status(demo_copy, first) == "pending"
        finally:
            lock.release()
        # The background retry writes it: pending goes to 0, the journal is compacted.
        assert await _until(pilot, lambda: "pending write" not in _status_text(screen))
        assert screen.pending_count == 0
        assert _status(demo_copy, first) == "accepted"
        assert _history_count(demo_copy, first) == 1
        assert _journal_lines(demo_copy) == []
        assert first not in seg_list.unsaved
        assert screen.counts.accepted == 1


async def test_decisions_queued_behind_a_lock_keep_their_order(demo_copy: Workspace) -> None:
    async with _reviewing(demo_copy) as (pilot, screen, seg_list):
        first, second = seg_list.ids[0], seg_list.ids[1]
        lock = _Locked(demo_copy.catalog_path)
        try:
            await pilot.press("a", "r", "u")  # accept, reject, undo the reject
            assert screen.pending_count == 3
            assert [e["op"] for e in _journal_lines(demo_copy)] == ["status", "status", "undo"]
        finally:
            lock.release()
        assert await _until(pilot, lambda: "pending write" not in _status_text(screen))
        assert _status(demo_copy, first) == "accepted"
        assert _status(demo_copy, second) == "pending"  # the undo applied after the reject
        assert seg_list.cursor == 1  # the undo took the cursor back to the segment
        assert screen.counts.accepted == 1 and screen.counts.rejected == 0


async def test_quitting_with_pending_decisions_warns_and_keeps_them_for_the_next_start(
    demo_copy: Workspace,
) -> None:
    app = ReviewApp(demo_copy, Player(device=NO_DEVICE))
    lock = _Locked(demo_copy.catalog_path)
    try:
        async with app.run_test(size=SIZE) as pilot:
            screen = await _ready(pilot)
            first = screen.query_one(SegmentList).ids[0]
            await pilot.press("a", "q")
            messages = await notified(pilot, lambda ms: any("not written" in m for m in ms))
            assert app.is_running  # the first q only warns
            warning = [m for m in messages if "not written" in m]
            assert warning and "1 decision" in warning[0] and ".journal" in warning[0]
            await pilot.press("q")
            await pilot.pause()
        assert app.return_code == 0
        assert [e["segment_id"] for e in _journal_lines(demo_copy)] == [first]
        assert _status(demo_copy, first) == "pending"
    finally:
        lock.release()
    # The next start replays the journal (once) and empties it.
    app = ReviewApp(demo_copy, Player(device=NO_DEVICE))
    async with app.run_test(size=SIZE) as pilot:
        await _ready(pilot)
        assert await _until(pilot, lambda: _journal_lines(demo_copy) == [])
        assert _status(demo_copy, first) == "accepted"
        assert _history_count(demo_copy, first) == 1


async def test_a_journal_left_by_a_previous_run_is_replayed_exactly_once(
    demo_copy: Workspace,
) -> None:
    from core.journal import DecisionJournal

    with Catalog.open(demo_copy.catalog_path) as cat:
        a, b = cat.segment_ids("pending")[:2]
    # A run that applied its first decision but died before compacting its journal, and
    # never got to write its second one.
    journal = DecisionJournal.open(demo_copy.root)
    journal.record("status", a, status="accepted")
    before_apply = journal.path.read_bytes()
    with Catalog.open(demo_copy.catalog_path) as cat:
        journal.apply(cat, busy_timeout=1.0)
    journal.record("status", b, status="rejected")
    journal.close()
    second_line = journal.path.read_bytes()
    journal.path.write_bytes(before_apply + second_line)  # the compaction never happened
    assert len(_journal_lines(demo_copy)) == 2

    async def start() -> None:
        app = ReviewApp(demo_copy, Player(device=NO_DEVICE))
        async with app.run_test(size=SIZE) as pilot:
            screen = await _ready(pilot)
            assert await _until(pilot, lambda: _journal_lines(demo_copy) == [])
            assert await _until(pilot, lambda: app.pending_decisions == 0)
            assert screen.pending_count == 0
            assert _status(demo_copy, a) == "accepted" and _status(demo_copy, b) == "rejected"
            assert _history_count(demo_copy, a) == 1 and _history_count(demo_copy, b) == 1

    await start()
    await start()  # a second start finds nothing to replay: each decision written once
