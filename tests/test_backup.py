"""Rotating catalog backups: made on open and after decisions, valid, rotated, concurrent."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from core import backup
from core.catalog import SCHEMA_VERSION, Catalog
from core.records import Recording, Segment

ROOT = Path(__file__).resolve().parents[1]


def _catalog_with_segments(path: Path, n: int) -> tuple[Catalog, list[int]]:
    cat = Catalog.open(path)
    rec = cat.add_recording(
        Recording(speaker="alice", path="raw/alice/talk-abcdabcd.wav", original_name="talk.wav",
                  sha256="ab" * 32, sample_rate=24000, channels=1, duration_sec=600.0,
                  format="WAV")
    )  # fmt: skip
    ids = cat.add_segments(
        [
            Segment(recording_id=rec, speaker="alice", audio=f"segments/alice/s-{i:04d}.wav",
                    start_sec=i * 6.0, end_sec=i * 6.0 + 5.0, duration_sec=5.0,
                    text=f"utterance {i}", text_source="asr")
            for i in range(n)
        ]
    )  # fmt: skip
    return cat, ids


def _statuses(path: Path) -> dict[int, str]:
    """Read a backup with plain sqlite3, read-only: an independent check that it is whole."""
    conn = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
    try:
        assert conn.execute("PRAGMA quick_check").fetchone()[0] == "ok"
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        return dict(conn.execute("SELECT id, status FROM segments").fetchall())
    finally:
        conn.close()


def test_a_backup_every_n_decisions_holds_those_decisions(tmp_path: Path) -> None:
    cat, ids = _catalog_with_segments(tmp_path / "catalog.sqlite", 8)
    folder = tmp_path / backup.BACKUPS_DIR
    assert backup.list_backups(folder) == []  # no history yet: nothing to protect
    cat.backup_every = 3
    cat.set_status(ids[0], "accepted")
    cat.set_status(ids[1], "rejected")
    assert backup.list_backups(folder) == []
    cat.set_text(ids[2], "typed by a person")  # edits count too
    (first,) = backup.list_backups(folder)
    assert _statuses(first)[ids[0]] == "accepted" and _statuses(first)[ids[1]] == "rejected"
    cat.set_status_many(ids[3:6], "accepted")
    newest = backup.list_backups(folder)
    assert len(newest) == 2 and newest[1] == first
    assert [_statuses(newest[0])[i] for i in ids[:6]] == [
        "accepted", "rejected", "pending", "accepted", "accepted", "accepted",
    ]  # fmt: skip
    conn = sqlite3.connect(f"{newest[0].as_uri()}?mode=ro", uri=True)
    assert conn.execute(
        "SELECT text, text_source FROM segments WHERE id = ?", (ids[2],)
    ).fetchone() == (
        "typed by a person",
        "manual",
    )
    assert conn.execute("SELECT COUNT(*) FROM review_history").fetchone()[0] == 6
    conn.close()
    cat.close()
    # Backups are standalone files: no -wal/-shm beside them, no temporary left behind.
    assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in newest)


def test_opening_takes_a_backup_at_most_once_per_interval(tmp_path: Path) -> None:
    path = tmp_path / "catalog.sqlite"
    cat, ids = _catalog_with_segments(path, 2)
    cat.set_status(ids[0], "accepted")
    cat.close()
    folder = tmp_path / backup.BACKUPS_DIR
    assert backup.list_backups(folder) == []
    Catalog.open(path).close()
    (made,) = backup.list_backups(folder)
    assert _statuses(made)[ids[0]] == "accepted"
    for _ in range(3):  # many processes opening it in a row: no churn
        Catalog.open(path).close()
    assert backup.list_backups(folder) == [made]
    # Once the newest backup is older than the interval, the next open takes another.
    old = datetime.now(UTC) - timedelta(seconds=backup.OPEN_INTERVAL_S + 5)
    made.rename(folder / backup.backup_name(old))
    Catalog.open(path).close()
    assert len(backup.list_backups(folder)) == 2
    Catalog.open(path, backups=False).close()
    assert len(backup.list_backups(folder)) == 2


def test_rotation_keeps_the_newest_k(tmp_path: Path) -> None:
    cat, _ids = _catalog_with_segments(tmp_path / "catalog.sqlite", 1)
    folder = tmp_path / backup.BACKUPS_DIR
    start = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    conn = sqlite3.connect(tmp_path / "catalog.sqlite", isolation_level=None)
    made = [
        backup.take_backup(conn, folder, keep=3, now=start + timedelta(minutes=i)) for i in range(7)
    ]
    conn.close()
    assert backup.list_backups(folder) == made[:-4:-1]  # the newest three, newest first
    assert all(not p.exists() for p in made[:4])
    assert backup.backup_time(made[-1]) == start + timedelta(minutes=6)
    (tmp_path / backup.BACKUPS_DIR / "notes.txt").write_text("mine")
    backup.rotate(folder, keep=1)
    assert (folder / "notes.txt").read_text() == "mine"  # only backups are ever removed
    assert len(backup.list_backups(folder)) == 1
    cat.close()


_BUSY_WRITER = """
import sys, time
from core.catalog import Catalog
cat = Catalog.open(sys.argv[1], backups=False)
ids = [int(x) for x in sys.argv[2].split(",")]
print("ready", flush=True)
end = time.monotonic() + float(sys.argv[3])
n = 0
while time.monotonic() < end:
    cat.set_status(ids[n % len(ids)], "accepted" if n % 2 else "rejected")
    cat.set_text(ids[(n + 1) % len(ids)], f"edit {n}")
    n += 1
print(n)
"""


def test_a_backup_while_another_process_writes(tmp_path: Path) -> None:
    path = tmp_path / "catalog.sqlite"
    cat, ids = _catalog_with_segments(path, 40)
    writer = subprocess.Popen(
        [sys.executable, "-c", _BUSY_WRITER, str(path), ",".join(map(str, ids)), "3"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert writer.stdout is not None
    assert writer.stdout.readline().strip() == "ready"
    made: list[Path] = []
    history: list[int] = []
    deadline = time.monotonic() + 2.5
    while time.monotonic() < deadline:
        made.append(cat.backup())
        conn = sqlite3.connect(f"{made[-1].as_uri()}?mode=ro", uri=True)
        assert conn.execute("PRAGMA quick_check").fetchone()[0] == "ok"
        history.append(conn.execute("SELECT COUNT(*) FROM review_history").fetchone()[0])
        conn.close()
    out, err = writer.communicate(timeout=60)
    assert writer.returncode == 0, err
    writes = int(out.split()[-1])
    assert writes > 0 and len(made) >= 2
    assert history == sorted(history) and history[-1] > 0  # each a consistent, later snapshot
    assert len(backup.list_backups(tmp_path / backup.BACKUPS_DIR)) == min(len(made), backup.KEEP)
    cat.close()


def test_a_backup_that_cannot_be_written_does_not_lose_the_decision(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cat, ids = _catalog_with_segments(tmp_path / "catalog.sqlite", 2)
    (tmp_path / backup.BACKUPS_DIR).write_text("a file where the folder should be")
    cat.backup_every = 1
    cat.set_status(ids[0], "accepted")
    assert cat.segment(ids[0]).status == "accepted"
    assert "cannot write a catalog backup" in caplog.text
    cat.close()
