"""`podforge repair`: a deleted or damaged catalog rebuilt from the files and the newest backup."""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from core import backup
from core.catalog import Catalog
from core.errors import CatalogError
from core.repair import repair
from core.workspace import Workspace
from tests.conftest import delete_catalog, notified

ROOT = Path(__file__).resolve().parents[1]


def _rows(catalog_path: Path) -> dict[str, tuple[object, ...]]:
    """Every segment's reviewable state by audio path, read with plain sqlite3."""
    conn = sqlite3.connect(f"{catalog_path.as_uri()}?mode=ro", uri=True)
    try:
        return {
            r[0]: tuple(r[1:])
            for r in conn.execute(
                "SELECT audio, status, text, text_source, split, flags, start_sec, snr_db, "
                "similarity FROM segments"
            )
        }
    finally:
        conn.close()


def _history(catalog_path: Path) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(f"{catalog_path.as_uri()}?mode=ro", uri=True)
    try:
        return conn.execute(
            "SELECT s.audio, h.action, h.old_status, h.new_status, h.old_text, h.new_text, "
            "h.undone FROM review_history h JOIN segments s ON s.id = h.segment_id ORDER BY h.id"
        ).fetchall()
    finally:
        conn.close()


def _user_files(root: Path) -> dict[str, str]:
    """Hashes of every file but the catalog and its backups."""
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
        and not p.name.startswith("catalog.sqlite")
        and backup.BACKUPS_DIR not in p.relative_to(root).parts
    }


def _decide_then_back_up(ws: Workspace) -> tuple[list[str], Path]:
    """Decisions and an edit, then a later open takes the backup (as the app's next start
    would); returns the segments' audio paths in review order and the backup."""
    with Catalog.open(ws.catalog_path) as cat:
        ids = cat.segment_ids()
        assert len(ids) >= 8
        cat.set_status(ids[0], "accepted")
        cat.set_status(ids[1], "rejected")
        cat.set_status(ids[2], "accepted")
        cat.set_text(ids[3], "typed by a person before the backup")
        audio = [s.audio for s in cat.segments_by_ids(ids)]
    folder = ws.root / backup.BACKUPS_DIR
    assert backup.list_backups(folder) == []
    Catalog.open(ws.catalog_path).close()
    (made,) = backup.list_backups(folder)
    return audio, made


def _run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("podforge")
    return subprocess.run([str(exe), *args], capture_output=True, text=True, cwd=ROOT, timeout=120)


def test_a_deleted_catalog_is_rebuilt_by_the_cli(demo_copy: Workspace) -> None:
    ws = demo_copy
    files = _user_files(ws.root)
    audio, made = _decide_then_back_up(ws)
    at_backup, history_at_backup = _rows(ws.catalog_path), _history(ws.catalog_path)
    with Catalog.open(ws.catalog_path) as cat:  # more work after the backup
        by_audio = {s.audio: s.id for s in cat.segments()}
        cat.set_status(by_audio[audio[4]], "accepted")
        cat.set_status(by_audio[audio[5]], "rejected")
        cat.set_text(by_audio[audio[6]], "typed after the backup")
    assert backup.list_backups(ws.root / backup.BACKUPS_DIR) == [made]  # within the interval
    delete_catalog(ws)

    with pytest.raises(CatalogError, match=f"podforge repair {ws.root}"):
        Catalog.open(ws.catalog_path)
    assert not ws.catalog_path.exists()

    result = _run_cli("repair", str(ws.root))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert f"source: backup .backups/{made.name}" in out
    when = backup.backup_time(made)
    assert when is not None
    lost = [line for line in out.splitlines() if line.startswith("lost:")]
    assert len(lost) == 1 and when.strftime("%Y-%m-%d %H:%M:%S UTC") in lost[0]
    n = len(at_backup)
    assert f"restored: 4 recordings, {n} segments (2 accepted, 1 rejected, 1 transcript " in out
    assert "not restored" not in out  # every file had its row

    after = _rows(ws.catalog_path)
    assert after == at_backup
    assert after[audio[3]][1:3] == ("typed by a person before the backup", "manual")
    assert after[audio[4]][0] == "pending" and after[audio[5]][0] == "pending"
    assert after[audio[6]][2] != "manual"  # the edit after the backup is the one lost
    assert _history(ws.catalog_path) == history_at_backup
    assert _user_files(ws.root) == files  # no user file changed, moved or removed
    assert not list(ws.root.glob(".catalog.sqlite.repair*"))
    with Catalog.open(ws.catalog_path) as cat:  # the history works: undo the edit
        undone = cat.undo()
        assert undone is not None and undone.action == "edit"
        seg = cat.segment(undone.segment_id)
        assert seg.audio == audio[3] and seg.text_source != "manual"


def test_a_damaged_catalog_is_moved_aside_and_rebuilt(demo_copy: Workspace) -> None:
    ws = demo_copy
    _audio, made = _decide_then_back_up(ws)
    at_backup = _rows(ws.catalog_path)
    delete_catalog(ws)
    junk = b"a disk error wrote this" * 500
    ws.catalog_path.write_bytes(junk)
    with pytest.raises(CatalogError, match="podforge repair"):
        Catalog.open(ws.catalog_path)

    report = repair(ws)
    assert report.source == made and report.source_is_backup
    assert any("catalog.sqlite" in s for s in report.skipped_sources)
    (aside,) = report.moved_aside
    assert aside.parent.parent == ws.root / backup.BACKUPS_DIR
    assert aside.read_bytes() == junk  # kept as it was
    assert _rows(ws.catalog_path) == at_backup
    lines = report.lines(ws.root)
    assert f"moved aside (kept): {aside.relative_to(ws.root).as_posix()}" in lines
    # The moved-aside file is never taken for a source again; a second repair is stable.
    again = repair(ws)
    assert again.source is not None and _rows(ws.catalog_path) == at_backup


def test_orphans_and_files_the_catalog_does_not_know(demo_copy: Workspace) -> None:
    ws = demo_copy
    audio, _made = _decide_then_back_up(ws)
    with Catalog.open(ws.catalog_path) as cat:
        recordings = cat.recordings()
    # A segment file the user deleted (it was accepted).
    (ws.root / audio[0]).unlink()
    # A segment file of no recording.
    shutil.copyfile(ws.root / audio[1], ws.segments_dir / "alice" / "nobody-0badc0de-0001.wav")
    # A segment file of a known recording that the catalog has no row for.
    rec = next(r for r in recordings if r.speaker == Path(audio[2]).parent.name)
    extra = f"segments/{rec.speaker}/{Path(rec.path).stem}-0099.wav"
    shutil.copyfile(ws.root / audio[2], ws.root / extra)
    # An original in raw/ imported after the backup (with its sidecar).
    tone = 0.1 * np.sin(2 * np.pi * 220 * np.arange(24000 * 3) / 24000)
    sf.write(ws.raw_dir / "alice" / "late-1234abcd.wav", tone.astype(np.float32), 24000)
    (ws.raw_dir / "alice" / "late-1234abcd.srt").write_text(
        "1\n00:00:00,000 --> 00:00:02,500\nHello.\n"
    )
    (ws.raw_dir / "alice" / "notes.md").write_text("not audio: ignored")
    files = _user_files(ws.root)
    delete_catalog(ws)

    report = repair(ws)
    assert report.segments_gone == [(audio[0], "accepted")]
    assert report.orphan_segments == ["segments/alice/nobody-0badc0de-0001.wav"]
    assert report.to_reingest == {rec.path: [extra]}
    assert report.registered_recordings == ["raw/alice/late-1234abcd.wav"]
    lines = "\n".join(report.lines(ws.root))
    assert f"segment file gone: {audio[0]} (accepted)" in lines
    assert "segments/alice/nobody-0badc0de-0001.wav" in lines
    assert f"podforge ingest {ws.root} {ws.root / rec.path} --speaker {rec.speaker}" in lines
    assert f"podforge ingest {ws.root} {ws.raw_dir / 'alice' / 'late-1234abcd.wav'}" in lines
    assert _user_files(ws.root) == files
    with Catalog.open(ws.catalog_path) as cat:
        late = next(r for r in cat.recordings() if r.path == "raw/alice/late-1234abcd.wav")
        assert (late.state, late.transcript) == ("imported", "raw/alice/late-1234abcd.srt")
        assert late.sample_rate == 24000 and late.duration_sec == pytest.approx(3.0)
        assert cat.recording(rec.id or 0).state == "imported"  # ingest will cut it again
        assert audio[0] not in {s.audio for s in cat.segments()}


def test_without_any_backup_the_suggested_ingest_brings_the_segments_back(
    demo_copy: Workspace,
) -> None:
    from core.dataset.ingest import IngestOptions, ingest

    ws = demo_copy
    before = _rows(ws.catalog_path)
    delete_catalog(ws)
    report = repair(ws)
    assert report.source is None and report.recordings == 0
    assert len(report.registered_recordings) == 4 and len(report.to_reingest) == 4
    assert any(line.startswith("lost: every review decision") for line in report.lines(ws.root))
    for raw in sorted(report.to_reingest):
        speaker = Path(raw).parent.name
        ingest(ws, [ws.root / raw], speaker, IngestOptions(transcribe=False, speaker_filter=False))
    after = _rows(ws.catalog_path)
    assert after.keys() == before.keys()  # the same files, registered again
    assert all(after[a][4:7] == before[a][4:7] for a in after)  # flags, times, SNR


def test_repairing_a_healthy_catalog_loses_nothing(demo_copy: Workspace) -> None:
    ws = demo_copy
    _decide_then_back_up(ws)
    with Catalog.open(ws.catalog_path) as cat:
        ids = cat.segment_ids()
        cat.set_status(ids[5], "rejected")  # newer than the backup: the catalog itself has it
    before, history = _rows(ws.catalog_path), _history(ws.catalog_path)
    report = repair(ws)
    assert report.source is not None and report.source.name == "catalog.sqlite"
    assert not report.source_is_backup and report.lost_after is None
    assert not any(line.startswith("lost:") for line in report.lines(ws.root))
    assert _rows(ws.catalog_path) == before and _history(ws.catalog_path) == history
    assert {p.name for p in report.moved_aside} >= {"catalog.sqlite"}


async def test_the_app_shows_a_missing_catalog_instead_of_an_empty_one(
    demo_copy: Workspace,
) -> None:
    from tui.app import PodforgeApp
    from tui.screens.home import HomeScreen

    delete_catalog(demo_copy)
    app = PodforgeApp(Workspace.open(demo_copy.root))
    async with app.run_test(size=(120, 36)) as pilot:
        messages = await notified(pilot)
        assert any("catalog is missing" in m and "podforge repair" in m for m in messages)
        assert isinstance(app.screen, HomeScreen)
    assert not demo_copy.catalog_path.exists()
