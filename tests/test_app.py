"""The app shell on a real workspace: Pilot tests and a snapshot of the home screen."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.widgets import DataTable

from core.workspace import Workspace
from tests.conftest import delete_catalog, notified, tables_settled
from tui.app import PodforgeApp
from tui.screens.home import HomeScreen
from tui.widgets.target_bar import TargetBar

pytestmark = pytest.mark.usefixtures("no_color_unset")


async def _loaded(pilot: Pilot[None], recordings: int) -> None:
    """Wait until the home screen shows ``recordings`` rows (the overview loads in a worker)."""
    for _ in range(200):
        await pilot.pause(0.02)
        screen = pilot.app.screen
        if isinstance(screen, HomeScreen):
            table = screen.query_one("#recordings", DataTable)
            if table.row_count == recordings:
                return
    raise AssertionError("home screen never showed the recordings")


async def test_home_shows_speakers_recordings_and_progress(demo_workspace: Workspace) -> None:
    app = PodforgeApp(Workspace.open(demo_workspace.root))
    async with app.run_test(size=(120, 36)) as pilot:
        await _loaded(pilot, 4)
        screen = app.screen
        speakers = screen.query_one("#speakers", DataTable)
        assert speakers.row_count == 2
        first = [str(c) for c in speakers.get_row_at(0)]
        assert first[0] == "alice" and first[1].startswith("✓")
        assert screen.query_one(TargetBar).minutes == 0.0
        scripts = sorted(demo_workspace.scripts_dir.glob("*.md"))
        assert [p.name for p in scripts] == ["welcome.md", "with-sound.md"]
        assert screen.query_one("#episodes", DataTable).row_count == len(scripts)
        assert not screen.query_one("#runs", DataTable).display  # empty: hint shown instead
        assert "No training runs yet." in str(screen.query_one("#runs-empty").render())


async def test_refresh_picks_up_changes_from_another_process(workspace: Workspace) -> None:
    app = PodforgeApp(workspace)
    async with app.run_test(size=(120, 36)) as pilot:
        await _loaded(pilot, 0)
        speakers = app.screen.query_one("#speakers", DataTable)
        assert [str(c) for c in speakers.get_row_at(1)][1].startswith("✗")  # carol: no consent
        # Another process records carol's consent and adds a script meanwhile.
        from core.settings import new_consent

        Workspace.open(workspace.root).add_speaker("carol", new_consent("Carol C", "test consent"))
        (workspace.scripts_dir / "pilot.md").write_text("+++\ntitle = 'x'\n+++\n")
        await pilot.press("r")
        for _ in range(100):
            await pilot.pause(0.02)
            if app.screen.query_one("#episodes", DataTable).row_count == 1:
                break
        assert app.screen.query_one("#episodes", DataTable).row_count == 1
        assert [str(c) for c in speakers.get_row_at(1)][1].startswith("✓ Carol C")


async def test_a_corrupted_workspace_toml_is_reported_once(workspace: Workspace) -> None:
    app = PodforgeApp(workspace)
    async with app.run_test(size=(120, 36)) as pilot:
        await _loaded(pilot, 0)
        workspace.config_path.write_text("schema = [broken")
        for _ in range(3):
            await pilot.press("r")
            await pilot.pause(0.2)
        messages = await notified(pilot, lambda ms: any("not valid TOML" in m for m in ms))
        assert len([m for m in messages if "not valid TOML" in m]) == 1


async def test_a_load_that_finishes_late_never_replaces_a_newer_result(
    workspace: Workspace,
) -> None:
    """Loads run in threads that cannot be stopped: one started earlier may finish later.
    Its (older) overview is dropped, and it cannot clear an error so that it is told twice."""
    from core.catalog import Catalog
    from core.overview import load_overview
    from tui.messages import OverviewFailed, OverviewLoaded

    app = PodforgeApp(workspace)
    async with app.run_test(size=(120, 36)) as pilot:
        await _loaded(pilot, 0)
        screen = app.screen
        assert isinstance(screen, HomeScreen)
        screen._timer.pause()  # only the loads below
        with Catalog.open(workspace.catalog_path) as catalog:
            old = load_overview(workspace, catalog)
        newest = screen._loads + 2
        screen.post_message(OverviewFailed("workspace.toml: broken", newest))
        screen.post_message(OverviewLoaded(old, newest - 1))  # started earlier, finished later
        screen.post_message(OverviewFailed("workspace.toml: broken", newest + 1))
        await pilot.pause(0.2)
        messages = await notified(pilot, lambda ms: any("broken" in m for m in ms))
        told = [m for m in messages if "broken" in m]
        assert told == ["workspace.toml: broken"]
        # A newer load's result is shown (and clears the error).
        screen.post_message(OverviewLoaded(old, newest + 2))
        await pilot.pause(0.2)
        assert screen._last_error is None


async def test_keys_panel_toggles_and_q_quits(workspace: Workspace) -> None:
    app = PodforgeApp(workspace)
    async with app.run_test(size=(120, 36)) as pilot:
        await _loaded(pilot, 0)
        await pilot.press("question_mark")
        await pilot.pause()
        assert app.screen.query("HelpPanel")
        await pilot.press("question_mark")
        await pilot.pause()
        assert not app.screen.query("HelpPanel")
        await pilot.press("q")
        await pilot.pause()
    assert app.return_code == 0


async def test_bindings_have_ids_and_descriptions(workspace: Workspace) -> None:
    app = PodforgeApp(workspace)
    async with app.run_test(size=(120, 36)) as pilot:
        await _loaded(pilot, 0)
        bindings = [b for b in app.BINDINGS + HomeScreen.BINDINGS if not isinstance(b, tuple)]
        assert bindings
        for b in bindings:
            assert b.id and b.description, b  # type: ignore[union-attr]


async def test_a_broken_catalog_is_a_notification_not_a_crash(workspace: Workspace) -> None:
    delete_catalog(workspace)
    workspace.catalog_path.write_bytes(b"definitely not sqlite" * 200)
    app = PodforgeApp(workspace)
    async with app.run_test(size=(120, 36)) as pilot:
        messages = await notified(pilot)
        assert any(
            "not a valid catalog" in m and str(workspace.catalog_path) in m for m in messages
        )
        assert isinstance(app.screen, HomeScreen)  # still running, still on the home screen


SNAPSHOT_SIZE = (140, 36)


def test_snapshot_empty_workspace(tmp_path: Path, snap_compare) -> None:  # type: ignore[no-untyped-def]
    ws = Workspace.create(tmp_path / "empty-show", name="empty-show")
    app = PodforgeApp(ws)

    async def settle(pilot: Pilot[None]) -> None:
        await _loaded(pilot, 0)
        await tables_settled(pilot)

    assert snap_compare(app, terminal_size=SNAPSHOT_SIZE, run_before=settle)


async def test_home_shows_each_voice_and_its_last_evaluation(workspace: Workspace) -> None:
    import json

    import tomli_w

    for speaker, step in (("alice", 800), ("carol", 120)):
        folder = workspace.voices_dir / speaker
        folder.mkdir(parents=True)
        (folder / "voice.toml").write_text(tomli_w.dumps({"step": step, "run_id": "r1"}))
    (workspace.voices_dir / "alice" / "eval").mkdir()
    old = {"passed": True, "gates": {"wer": {"value": 0.01, "threshold": 0.07, "passed": True}}}
    new = {
        "passed": False,
        "gates": {
            "wer": {"value": 0.12, "threshold": 0.07, "passed": False},
            "cer": {"value": 0.01, "threshold": 0.03, "passed": True},
            "similarity": {"value": 0.5, "threshold": 0.75, "passed": False},
        },
    }
    (workspace.voices_dir / "alice" / "eval" / "20261120T100000Z.json").write_text(json.dumps(old))
    (workspace.voices_dir / "alice" / "eval" / "20261121T100000Z.json").write_text(json.dumps(new))
    app = PodforgeApp(workspace)
    async with app.run_test(size=(150, 36)) as pilot:
        speakers = app.screen.query_one("#speakers", DataTable)
        for _ in range(200):
            await pilot.pause(0.02)
            if speakers.row_count == 2:
                break
        rows = {str(speakers.get_row_at(i)[0]): str(speakers.get_row_at(i)[-1]) for i in range(2)}
        assert rows["alice"] == "step 800 · eval ✗ similarity, wer"  # the newest report
        assert rows["carol"] == "step 120 · not evaluated"


async def test_v_on_a_broken_catalog_is_a_notification_not_a_crash(workspace: Workspace) -> None:
    delete_catalog(workspace)
    workspace.catalog_path.write_bytes(b"definitely not sqlite" * 200)
    app = PodforgeApp(workspace)
    async with app.run_test(size=(120, 36)) as pilot:
        await pilot.pause(0.2)
        await pilot.press("v")
        await pilot.pause(0.2)
        await pilot.press("v", "r")
        await pilot.pause(0.2)
        assert app.is_running and app._exception is None
        assert isinstance(app.screen, HomeScreen)
        messages = await notified(pilot, lambda ms: any("not a valid catalog" in m for m in ms))
        assert any("not a valid catalog" in m and "review" in m for m in messages), messages
        assert all("\n" not in m for m in messages)


def _run_in_pty(args: list[str], env: dict[str, str]) -> tuple[int, bytes]:
    """Run ``args`` on a pseudo-terminal until it exits; returns its exit status and output."""
    import fcntl
    import os
    import pty
    import select
    import struct
    import subprocess
    import termios
    import time

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 36, 120, 0, 0))
    proc = subprocess.Popen(args, stdin=slave, stdout=slave, stderr=slave, env=env)
    os.close(slave)
    deadline = time.monotonic() + 60
    seen = b""
    try:
        while True:
            assert time.monotonic() < deadline, "the app never exited"
            ready, _, _ = select.select([master], [], [], 0.05)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # the child closed the terminal
                    chunk = b""
                seen += chunk
                if not chunk and proc.poll() is not None:
                    break
            elif proc.poll() is not None:
                break
        return proc.wait(), seen
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)


_CRASH_SCRIPT = """
import sys
from tui.screens.home import HomeScreen
def crash(self):
    raise RuntimeError("planted failure")
HomeScreen.on_mount = crash  # an unexpected exception inside the running app
from tui.cli import main
main(["open", sys.argv[1]])
"""


def test_a_crash_inside_the_app_exits_non_zero(workspace: Workspace) -> None:
    import os
    import sys

    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "TERM": "xterm-256color", "PYTHONPATH": str(root)}
    status, output = _run_in_pty([sys.executable, "-c", _CRASH_SCRIPT, str(workspace.root)], env)
    assert b"planted failure" in output  # it got as far as the running app, then crashed
    assert status == 1


async def test_decisions_left_in_the_journal_survive_a_damaged_catalog(
    workspace: Workspace,
) -> None:
    from core.journal import DecisionJournal

    journal = DecisionJournal.open(workspace.root)  # a previous run, one decision pending
    journal.record("status", 1, status="accepted")
    journal.close()
    kept = journal.path.read_bytes()
    delete_catalog(workspace)
    workspace.catalog_path.write_bytes(b"definitely not sqlite" * 200)
    app = PodforgeApp(workspace)
    async with app.run_test(size=(120, 36)) as pilot:
        messages = await notified(
            pilot, lambda ms: any("kept in the journal" in m for m in ms), steps=150
        )
        assert any("1 decision kept in the journal" in m and "not a valid" in m for m in messages)
        assert app.is_running and app.pending_decisions == 1
    journals = list((workspace.root / ".journal").glob("review-*.jsonl"))
    assert [p.read_bytes() for p in journals] == [kept]  # adopted into the new session's file
