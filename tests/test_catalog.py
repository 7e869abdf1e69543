"""The SQLite catalog: schema, WAL, review history with undo, concurrent writers."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from core.catalog import SCHEMA_VERSION, Catalog
from core.errors import CatalogError, SchemaTooNewError
from core.records import QC, Recording, Segment

ROOT = Path(__file__).resolve().parents[1]


def _recording(sha: str = "ab" * 32, speaker: str = "alice") -> Recording:
    return Recording(
        speaker=speaker,
        path=f"raw/{speaker}/talk-{sha[:8]}.wav",
        original_name="talk.wav",
        sha256=sha,
        sample_rate=44100,
        channels=2,
        duration_sec=600.0,
        format="WAV",
        subtype="PCM_16",
    )


def _segments(rec_id: int, n: int, speaker: str = "alice", tag: str = "") -> list[Segment]:
    return [
        Segment(
            recording_id=rec_id,
            speaker=speaker,
            audio=f"segments/{speaker}/{tag}{rec_id:04d}-{i:05d}.wav",
            start_sec=i * 10.0,
            end_sec=i * 10.0 + 8.0,
            duration_sec=8.0,
            text=f"utterance {i}",
            text_source="subtitle",
            qc=QC(rms_db=-20.0, snr_db=35.0, lufs=-19.0, true_peak_db=-1.2),
            flags=("hum",) if i % 5 == 0 else (),
        )
        for i in range(n)
    ]


@pytest.fixture
def catalog(tmp_path: Path) -> Catalog:
    cat = Catalog.open(tmp_path / "catalog.sqlite")
    yield cat  # type: ignore[misc]
    cat.close()


def test_new_catalog_is_wal_and_versioned(catalog: Catalog) -> None:
    assert catalog.schema_version == SCHEMA_VERSION
    conn = sqlite3.connect(catalog.path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"recordings", "segments", "review_history", "runs", "meta"} <= tables
    conn.close()


def test_reopening_does_not_migrate_again(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    with Catalog.open(path) as cat:
        cat.add_recording(_recording())
    with Catalog.open(path) as cat:
        assert len(cat.recordings()) == 1


def test_newer_catalog_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    Catalog.open(path).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 3}")
    conn.close()
    with pytest.raises(SchemaTooNewError, match="upgrade podforge"):
        Catalog.open(path)


def test_a_file_that_is_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(CatalogError) as info:
        Catalog.open(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_recordings_and_segments_round_trip(catalog: Catalog) -> None:
    rec_id = catalog.add_recording(_recording())
    assert catalog.recording(rec_id).sha256 == "ab" * 32
    assert catalog.recording_by_hash("ab" * 32) is not None
    assert catalog.recording_by_hash("cd" * 32) is None
    ids = catalog.add_segments(_segments(rec_id, 12))
    assert len(ids) == 12
    seg = catalog.segment(ids[5])
    assert seg.flags == ("hum",)
    assert seg.qc.snr_db == 35.0 and seg.qc.hum_score is None
    assert seg.text == "utterance 5" and seg.status == "pending"
    page = catalog.segments(limit=4, offset=4)
    assert [s.id for s in page] == ids[4:8]
    with pytest.raises(CatalogError, match="no segment with id 999"):
        catalog.segment(999)


def test_counts_by_status(catalog: Catalog) -> None:
    rec = catalog.add_recording(_recording())
    ids = catalog.add_segments(_segments(rec, 10))
    catalog.set_status(ids[0], "accepted")
    catalog.set_status(ids[1], "accepted")
    catalog.set_status(ids[2], "rejected")
    c = catalog.counts()
    assert (c.pending, c.accepted, c.rejected, c.flagged, c.total) == (7, 2, 1, 2, 10)
    assert c.accepted_seconds == pytest.approx(16.0)
    assert c.total_seconds == pytest.approx(80.0)
    assert catalog.counts(speaker="bob").total == 0


def test_review_history_and_undo(catalog: Catalog) -> None:
    rec = catalog.add_recording(_recording())
    a, b = catalog.add_segments(_segments(rec, 2))
    catalog.set_status(a, "accepted")
    catalog.set_text(b, "fixed transcript")
    catalog.set_status(b, "rejected")
    assert [h.action for h in catalog.history()] == ["accept", "edit", "reject"]

    undone = catalog.undo()
    assert undone is not None and undone.action == "reject"
    assert catalog.segment(b).status == "pending"
    assert catalog.segment(b).text == "fixed transcript"

    undone = catalog.undo()
    assert undone is not None and undone.action == "edit"
    assert catalog.segment(b).text == "utterance 1"

    undone = catalog.undo()
    assert undone is not None and undone.segment_id == a
    assert catalog.segment(a).status == "pending"
    assert catalog.undo() is None
    assert all(h.undone for h in catalog.history())


def test_a_decision_is_durable_for_another_connection(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    writer = Catalog.open(path)
    rec = writer.add_recording(_recording())
    (seg,) = writer.add_segments(_segments(rec, 1))
    writer.set_status(seg, "accepted")
    # No close, no explicit commit: a second connection sees it at once.
    with Catalog.open(path) as reader:
        assert reader.segment(seg).status == "accepted"
    writer.close()


_WRITER = """
import sys
from core.catalog import Catalog
from core.records import Recording, Segment
path, tag, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
cat = Catalog.open(path)
rec = cat.add_recording(Recording(speaker=tag, path=f"raw/{tag}.wav", original_name=tag,
    sha256=tag * 64, sample_rate=24000, channels=1, duration_sec=1.0, format="WAV"))
for i in range(n):
    (sid,) = cat.add_segments([Segment(recording_id=rec, speaker=tag, audio=f"s/{tag}{i}.wav",
        start_sec=i, end_sec=i + 1, duration_sec=1.0)])
    cat.set_status(sid, "accepted" if i % 2 else "rejected")
print("ok")
"""


def test_two_writer_processes_do_not_fail_with_locked(tmp_path: Path) -> None:
    """An ingest and the app writing at the same time both finish; nothing is lost."""
    path = tmp_path / "catalog.sqlite"
    Catalog.open(path).close()
    n = 150
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(path), tag, str(n)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for tag in ("a", "b")
    ]
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        assert out.strip() == "ok"
    with Catalog.open(path) as cat:
        assert cat.counts().total == 2 * n
        assert cat.counts().accepted == n
        assert len(cat.history()) == 2 * n


def test_a_lock_held_too_long_is_one_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "catalog.sqlite"
    Catalog.open(path).close()
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        cat = Catalog.open(path, busy_timeout=0.2)
        with pytest.raises(CatalogError, match="locked by another process"):
            cat.add_recording(_recording())
        cat.close()
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()


def test_runs_and_meta(catalog: Catalog) -> None:
    from core.records import Run

    catalog.add_run(Run(id="20261121-alice-1", speaker="alice", path="runs/20261121-alice-1"))
    assert [r.id for r in catalog.runs()] == ["20261121-alice-1"]
    catalog.set_meta("last_ingest", "x")
    catalog.set_meta("last_ingest", "y")
    assert catalog.meta("last_ingest") == "y"
    assert catalog.meta("missing") is None


def test_review_views_and_orders(catalog: Catalog) -> None:
    rec = catalog.add_recording(_recording())
    ids = catalog.add_segments(_segments(rec, 10))  # every 5th flagged "hum"
    catalog.set_status(ids[1], "accepted")
    catalog.set_status(ids[2], "rejected")
    assert catalog.segment_ids("all") == ids
    assert catalog.segment_ids("pending") == [i for i in ids if i not in (ids[1], ids[2])]
    assert catalog.segment_ids("accepted") == [ids[1]]
    assert catalog.segment_ids("rejected") == [ids[2]]
    assert catalog.segment_ids("flagged") == [ids[0], ids[5]]
    assert catalog.segment_ids("all", "qc")[:2] == [ids[0], ids[5]]
    assert catalog.segment_ids("all", speaker="bob") == []
    assert [s.id for s in catalog.segments_by_ids([ids[3], ids[0], 999])] == [ids[3], ids[0]]
    with pytest.raises(CatalogError, match="unknown view"):
        catalog.segment_ids("bogus")
    with pytest.raises(CatalogError, match="unknown order"):
        catalog.segment_ids("all", "bogus")


def test_undoing_an_edit_restores_the_text_and_its_source(catalog: Catalog) -> None:
    rec = catalog.add_recording(_recording())
    (seg,) = catalog.add_segments(_segments(rec, 1))
    from core.records import SegmentUpdate

    catalog.update_analysis([SegmentUpdate(seg, text="what the asr heard", text_source="asr")])
    catalog.set_text(seg, "what was said")
    assert (catalog.segment(seg).text, catalog.segment(seg).text_source) == (
        "what was said",
        "manual",
    )
    catalog.set_text(seg, "what was really said")
    catalog.undo()  # back to the first edit: still a person's text
    assert (catalog.segment(seg).text, catalog.segment(seg).text_source) == (
        "what was said",
        "manual",
    )
    catalog.undo()
    assert (catalog.segment(seg).text, catalog.segment(seg).text_source) == (
        "what the asr heard",
        "asr",
    )
    # A transcript the ASR writes later may replace it again: it is no longer a person's.
    catalog.update_analysis([SegmentUpdate(seg, text="a newer asr pass", text_source="asr")])
    assert catalog.segment(seg).text == "a newer asr pass"


@pytest.mark.parametrize(
    ("sidecar", "expected"), [(None, "asr"), ("raw/alice/talk-abababab.srt", "subtitle")]
)
def test_undoing_an_edit_recorded_before_text_sources_were_kept(
    tmp_path: Path, sidecar: str | None, expected: str
) -> None:
    """History rows written by schema 1 lack the old text source: it is inferred."""
    from core.catalog import _MIGRATIONS, _split_sql

    path = tmp_path / "catalog.sqlite"
    conn = sqlite3.connect(path, isolation_level=None)
    for statement in _split_sql(_MIGRATIONS[0]):
        conn.execute(statement)
    conn.execute("PRAGMA user_version = 1")
    conn.execute(
        "INSERT INTO recordings (id, speaker, path, original_name, sha256, sample_rate, "
        "channels, duration_sec, format, transcript, imported_at) VALUES "
        "(1, 'alice', 'raw/alice/talk-abababab.wav', 'talk.wav', 'ab', 44100, 1, 60, 'WAV', ?, "
        "'2026-01-01T00:00:00.000+00:00')",
        (sidecar,),
    )
    for sid, text in ((1, "first typed"), (2, "second typed")):
        conn.execute(
            "INSERT INTO segments (id, recording_id, speaker, audio, start_sec, end_sec, "
            "duration_sec, sample_rate, bit_depth, num_channels, text, text_source, created_at, "
            "updated_at) VALUES (?, 1, 'alice', ?, 0, 5, 5, 24000, 16, 1, ?, 'manual', 'x', 'x')",
            (sid, f"segments/alice/talk-abababab-{sid:04d}.wav", text),
        )
    history = [  # segment 1 edited once; segment 2 edited twice
        (1, "machine one", "first typed"),
        (2, "machine two", "typed once"),
        (2, "typed once", "second typed"),
    ]
    for sid, old, new in history:
        conn.execute(
            "INSERT INTO review_history (segment_id, action, old_status, new_status, old_text, "
            "new_text, source, at) VALUES (?, 'edit', 'pending', 'pending', ?, ?, 'key', 'x')",
            (sid, old, new),
        )
    conn.close()
    with Catalog.open(path) as cat:
        assert cat.schema_version == SCHEMA_VERSION
        cat.undo()
        assert (cat.segment(2).text, cat.segment(2).text_source) == ("typed once", "manual")
        cat.undo()
        assert (cat.segment(2).text, cat.segment(2).text_source) == ("machine two", expected)
        cat.undo()
        assert (cat.segment(1).text, cat.segment(1).text_source) == ("machine one", expected)


def _fresh_layout(root: Path) -> Path:
    for folder in ("raw", "segments"):
        (root / folder).mkdir(parents=True)
    return root / "catalog.sqlite"


def test_a_missing_catalog_in_a_fresh_folder_is_created(tmp_path: Path) -> None:
    path = _fresh_layout(tmp_path / "ws")
    Catalog.open(path).close()
    assert path.is_file()


@pytest.mark.parametrize(
    "where",
    [
        "raw/alice/talk-12345678.wav",
        "segments/alice/x-0001.wav",
        ".backups/catalog-20260101T000000000000Z.sqlite",
    ],
)
def test_a_missing_catalog_beside_recordings_is_not_silently_recreated(
    tmp_path: Path, where: str
) -> None:
    path = _fresh_layout(tmp_path / "ws")
    (path.parent / where).parent.mkdir(parents=True, exist_ok=True)
    (path.parent / where).write_bytes(b"RIFF")
    with pytest.raises(CatalogError) as info:
        Catalog.open(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    assert f"podforge repair {path.parent}" in message
    assert not path.exists()  # nothing created: the next open says the same
    with pytest.raises(CatalogError, match="missing"):
        Catalog.open(path)
