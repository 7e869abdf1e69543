"""core.journal: the review decisions' on-disk queue, replayed safely against the catalog."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from core.catalog import Catalog
from core.journal import JOURNAL_DIR, DecisionJournal
from core.workspace import Workspace


def _lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _ids(ws: Workspace, n: int) -> list[int]:
    with Catalog.open(ws.catalog_path) as cat:
        return cat.segment_ids("pending")[:n]


def test_record_is_on_disk_before_apply_and_compacted_after(demo_copy: Workspace) -> None:
    (a, b) = _ids(demo_copy, 2)
    journal = DecisionJournal.open(demo_copy.root)
    try:
        assert journal.path.parent == demo_copy.root / JOURNAL_DIR
        first = journal.record("status", a, status="accepted")
        second = journal.record("text", b, text="typed by hand")
        assert first.id != second.id
        on_disk = _lines(journal.path)  # read back by a fresh reader: flushed and fsynced
        assert [(e["op"], e["segment_id"]) for e in on_disk] == [("status", a), ("text", b)]
        with Catalog.open(demo_copy.catalog_path) as cat:
            outcome = journal.apply(cat, busy_timeout=1.0)
            assert outcome is not None and not outcome.locked and outcome.error is None
            assert [x.decision.id for x in outcome.applied] == [first.id, second.id]
            assert cat.segment(a).status == "accepted"
            assert (cat.segment(b).text, cat.segment(b).text_source) == ("typed by hand", "manual")
        assert journal.pending == [] and _lines(journal.path) == []
    finally:
        journal.close()
    assert not journal.path.exists()  # nothing pending: the session leaves nothing behind


def test_a_locked_catalog_keeps_decisions_pending_in_order(demo_copy: Workspace) -> None:
    (a,) = _ids(demo_copy, 1)
    journal = DecisionJournal.open(demo_copy.root)
    other = sqlite3.connect(demo_copy.catalog_path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another writer holds the lock
    try:
        journal.record("status", a, status="rejected")
        journal.record("undo")
        with Catalog.open(demo_copy.catalog_path) as cat:
            outcome = journal.apply(cat, busy_timeout=0.05)
            assert outcome is not None and outcome.locked and outcome.applied == []
            assert len(journal.pending) == 2 and len(_lines(journal.path)) == 2
            other.execute("ROLLBACK")
            outcome = journal.apply(cat, busy_timeout=1.0)
            assert outcome is not None and len(outcome.applied) == 2
            assert outcome.applied[1].action is not None  # the undo reverted the reject
            assert outcome.applied[1].action.new_status == "rejected"
            assert cat.segment(a).status == "pending"
            assert [h.undone for h in cat.history(a)] == [True]
    finally:
        other.close()
        journal.close()


def test_replay_after_a_crash_between_commit_and_compaction_applies_nothing_twice(
    demo_copy: Workspace,
) -> None:
    (a,) = _ids(demo_copy, 1)
    journal = DecisionJournal.open(demo_copy.root)
    journal.record("status", a, status="accepted")
    journal.record("undo")
    uncompacted = journal.path.read_bytes()
    with Catalog.open(demo_copy.catalog_path) as cat:
        journal.apply(cat, busy_timeout=1.0)
    journal.close()
    journal.path.write_bytes(uncompacted)  # as if the process died before compacting
    replay = DecisionJournal.open(demo_copy.root)
    try:
        assert replay.adopted == 2 and len(replay.pending) == 2
        assert not journal.path.exists()  # adopted: the old session's file is gone
        with Catalog.open(demo_copy.catalog_path) as cat:
            outcome = replay.apply(cat, busy_timeout=1.0)
            assert outcome is not None and all(x.already for x in outcome.applied)
            assert len(cat.history(a)) == 1 and cat.segment(a).status == "pending"
    finally:
        replay.close()


def test_a_running_sessions_journal_is_not_adopted(demo_copy: Workspace) -> None:
    (a,) = _ids(demo_copy, 1)
    running = DecisionJournal.open(demo_copy.root)
    running.record("status", a, status="accepted")
    second = DecisionJournal.open(demo_copy.root)
    try:
        assert second.adopted == 0 and second.pending == []
        assert running.path.exists() and len(running.pending) == 1
    finally:
        second.close()
        running.close()
    third = DecisionJournal.open(demo_copy.root)  # the first one has ended now
    try:
        assert third.adopted == 1
    finally:
        third.close()
    assert third.path.exists()  # still pending: kept for the next start


def test_torn_last_line_is_skipped_and_missing_segments_are_dropped(
    demo_copy: Workspace,
) -> None:
    (a,) = _ids(demo_copy, 1)
    journal = DecisionJournal.open(demo_copy.root)
    journal.record("status", 999999, status="accepted")
    journal.record("status", a, status="accepted")
    journal.close()
    with open(journal.path, "a") as fh:
        fh.write('{"session": "x", "seq": 1, "op": "sta')  # a crash mid-append
    replay = DecisionJournal.open(demo_copy.root)
    try:
        assert replay.adopted == 2
        with Catalog.open(demo_copy.catalog_path) as cat:
            outcome = replay.apply(cat, busy_timeout=1.0)
            assert outcome is not None
            assert [d.segment_id for d, _ in outcome.dropped] == [999999]
            assert cat.segment(a).status == "accepted"
        dropped = _lines(demo_copy.root / JOURNAL_DIR / "dropped.jsonl")
        assert dropped[0]["segment_id"] == 999999 and "no longer" in str(dropped[0]["reason"])
    finally:
        replay.close()
