"""The review decisions' journal: a durable queue in front of the catalog.

The app never lets a locked catalog block a key press or lose a decision. Every decision is
first appended to a JSON-lines file in the workspace and fsynced, then written to the catalog
with a short busy timeout; one the catalog could not take stays *pending* and is retried in
order. Each running app has its own journal, locked with ``flock``; journals of apps no
longer running are adopted at start. Replaying is idempotent (the last sequence number
written is stored with each decision).

Details: docs/REVIEW.md, "The decision journal"."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import sqlite3
import threading
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Literal

from core.atomic import atomic_write_text
from core.catalog import Catalog
from core.errors import CatalogBusyError, CatalogError, WorkspaceError
from core.progress import now_iso
from core.records import ReviewAction, SegmentStatus

JOURNAL_DIR = ".journal"
"""The journal's folder inside the workspace."""

Op = Literal["status", "text", "undo"]
OPS: tuple[str, ...] = ("status", "text", "undo")
META_PREFIX = "journal:"
"""Catalog ``meta`` key prefix: ``journal:<session>`` = the last sequence number written."""


@dataclass(frozen=True)
class Decision:
    """One journaled review decision."""

    session: str
    seq: int
    op: str
    segment_id: int | None = None
    status: SegmentStatus | None = None
    text: str | None = None
    at: str = ""

    @property
    def id(self) -> str:
        return f"{self.session}:{self.seq}"


@dataclass(frozen=True)
class Applied:
    """A decision written to the catalog (``action``: what the catalog recorded; ``None`` for
    an undo with nothing to undo, or when an earlier run had already written it)."""

    decision: Decision
    action: ReviewAction | None
    already: bool = False


@dataclass
class Outcome:
    """What one :meth:`DecisionJournal.apply` did."""

    applied: list[Applied] = field(default_factory=list)
    dropped: list[tuple[Decision, str]] = field(default_factory=list)
    locked: bool = False
    """The catalog was locked by another writer: the rest stays pending."""
    error: str | None = None
    """Another catalog failure (damaged, unreadable): the rest stays pending."""


class DecisionJournal:
    """One running app's decision queue on disk (thread-safe: the UI thread records, a
    worker thread may apply)."""

    def __init__(self, folder: Path, session: str, lock_fd: int, adopted: list[Decision]) -> None:
        self.folder = folder
        self.session = session
        self.path = folder / f"review-{session}.jsonl"
        self._lock_fd = lock_fd
        self._mutex = threading.Lock()  # the pending list and the file
        self._applying = threading.Lock()  # one apply at a time, in order
        self._pending: list[Decision] = []
        self._seq = 0
        self._file: IO[str] | None = None
        self.adopted = len(adopted)
        if adopted:
            self._pending = list(adopted)
            self._rewrite()
        else:
            self._open_for_append()

    # -- opening and closing -------------------------------------------------------
    @classmethod
    def open(cls, root: Path | str) -> DecisionJournal:
        """Start a new session's journal in ``<root>/.journal``, adopting the pending
        decisions of sessions that are no longer running."""
        folder = Path(root) / JOURNAL_DIR
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        session = f"{stamp}-{os.getpid()}-{secrets.token_hex(3)}"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            lock_fd = os.open(folder / f"review-{session}.lock", os.O_RDWR | os.O_CREAT, 0o644)
            fcntl.flock(lock_fd, fcntl.LOCK_EX)
            leftovers = _claim_leftovers(folder, session)
        except OSError as exc:
            raise WorkspaceError(
                f"{folder}: cannot write the review journal ({exc.strerror or exc}); check the "
                "workspace folder's permissions and free space"
            ) from None
        adopted = [d for _, decisions in leftovers for d in decisions]
        journal = cls(folder, session, lock_fd, _unique(adopted))
        for path, _ in leftovers:  # their decisions are safe in the new journal now
            _remove_session(path)
        return journal

    def close(self, *, wait_s: float = 10.0) -> None:
        """Release this session; its file is removed when nothing is pending, else kept for
        the next start to replay. Waits up to ``wait_s`` for an apply in another thread."""
        applying = self._applying.acquire(timeout=wait_s)
        try:
            self._close()
        finally:
            if applying:
                self._applying.release()

    def _close(self) -> None:
        with self._mutex:
            if self._file is not None:
                self._file.close()
                self._file = None
            if not self._pending:
                with contextlib.suppress(FileNotFoundError):
                    self.path.unlink()
                with contextlib.suppress(FileNotFoundError):
                    self.path.with_suffix(".lock").unlink()
            if self._lock_fd >= 0:
                os.close(self._lock_fd)  # releases the flock
                self._lock_fd = -1

    # -- recording -----------------------------------------------------------------
    @property
    def pending(self) -> list[Decision]:
        """Decisions not yet written to the catalog, oldest first."""
        with self._mutex:
            return list(self._pending)

    def record(
        self,
        op: Op,
        segment_id: int | None = None,
        *,
        status: SegmentStatus | None = None,
        text: str | None = None,
    ) -> Decision:
        """Append a decision to the journal, durably (flush + fsync), and queue it."""
        if op not in OPS:
            raise ValueError(f"unknown journal op {op!r}")
        with self._mutex:
            self._seq += 1
            decision = Decision(self.session, self._seq, op, segment_id, status, text, now_iso())
            if self._file is None:
                raise WorkspaceError(f"{self.path}: the review journal is closed")
            try:
                self._file.write(json.dumps(asdict(decision), ensure_ascii=False) + "\n")
                self._file.flush()
                os.fsync(self._file.fileno())
            except OSError as exc:
                self._seq -= 1
                raise WorkspaceError(
                    f"{self.path}: cannot write the review journal ({exc.strerror or exc}); "
                    "free some disk space and try again"
                ) from None
            self._pending.append(decision)
            return decision

    # -- applying ------------------------------------------------------------------
    def apply(self, catalog: Catalog, *, busy_timeout: float, wait: bool = True) -> Outcome | None:
        """Write the pending decisions to ``catalog``, in order, each in its own transaction
        waiting at most ``busy_timeout`` for the write lock. Stops at the first one that the
        catalog refuses (locked, damaged): it and the rest stay pending. Decisions recorded
        meanwhile are written too. Returns ``None`` (doing nothing) when another thread is
        applying and ``wait`` is false."""
        if not self._applying.acquire(blocking=wait):
            return None
        outcome = Outcome()
        try:
            if self._lock_fd < 0:
                return None  # closed
            while not (outcome.locked or outcome.error):
                with self._mutex:
                    queue = list(self._pending)
                if not queue:
                    break
                for decision in queue:
                    try:
                        result = _apply_one(catalog, decision, busy_timeout)
                    except CatalogBusyError:
                        outcome.locked = True
                        break
                    except (CatalogError, sqlite3.Error) as exc:
                        outcome.error = str(exc) or type(exc).__name__
                        break
                    if isinstance(result, str):
                        outcome.dropped.append((decision, result))
                        self._write_dropped(decision, result)
                    else:
                        outcome.applied.append(result)
                    with self._mutex:
                        self._pending.remove(decision)
            if outcome.applied or outcome.dropped:
                with self._mutex, contextlib.suppress(OSError):
                    # Not compacted (disk full?): the file still lists written decisions,
                    # which a replay skips (their meta mark); the next compaction drops them.
                    self._rewrite()
        finally:
            self._applying.release()
        return outcome

    # -- files -----------------------------------------------------------------------
    def _open_for_append(self) -> None:
        new = not self.path.exists()
        self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 (kept open)
        if new:
            _fsync_dir(self.folder)

    def _rewrite(self) -> None:
        """Compact: replace the file atomically with only the pending decisions (mutex held)."""
        if self._file is not None:
            self._file.close()
            self._file = None
        lines = "".join(json.dumps(asdict(d), ensure_ascii=False) + "\n" for d in self._pending)
        try:
            atomic_write_text(self.path, lines)
        finally:
            self._open_for_append()

    def _write_dropped(self, decision: Decision, reason: str) -> None:
        entry = {**asdict(decision), "dropped_at": now_iso(), "reason": reason}
        with (
            contextlib.suppress(OSError),
            open(self.folder / "dropped.jsonl", "a", encoding="utf-8") as fh,
        ):
            fh.write(json.dumps(entry, ensure_ascii=False) + "\n")
            fh.flush()
            os.fsync(fh.fileno())


def _apply_one(catalog: Catalog, decision: Decision, busy_timeout: float) -> Applied | str:
    """Write one decision (and its ``meta`` mark) in one transaction; a string: why it was
    dropped."""
    key = META_PREFIX + decision.session
    with catalog.transaction(busy_timeout=busy_timeout):
        done = catalog.meta(key)
        if done is not None and int(done) >= decision.seq:
            return Applied(decision, None, already=True)
        sid = decision.segment_id
        if decision.op != "undo" and (sid is None or not catalog.segments_by_ids([sid])):
            return f"segment {sid} is no longer in the catalog"
        action: ReviewAction | None
        if decision.op == "status" and sid is not None and decision.status is not None:
            action = catalog.set_status(sid, decision.status, source="key")
        elif decision.op == "text" and sid is not None and decision.text is not None:
            action = catalog.set_text(sid, decision.text, source="key")
        elif decision.op == "undo":
            action = catalog.undo()
        else:
            return f"malformed journal entry {decision.id} ({decision.op})"
        catalog.set_meta(key, str(decision.seq))
    return Applied(decision, action)


def _claim_leftovers(folder: Path, own: str) -> list[tuple[Path, list[Decision]]]:
    """The journals of sessions no longer running (their lock is free), oldest first."""
    found: list[tuple[Path, list[Decision]]] = []
    for path in sorted(folder.glob("review-*.jsonl")):
        if path.stem == f"review-{own}":
            continue
        lock_path = path.with_suffix(".lock")
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue  # another app is running on this workspace: its journal is its own
        try:
            found.append((path, _read_decisions(path)))
        finally:
            os.close(fd)
    return found


def _read_decisions(path: Path) -> list[Decision]:
    """The decisions in a journal file; a torn last line (a crash mid-append, never
    acknowledged to the user) is skipped."""
    decisions: list[Decision] = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            raw = json.loads(line)
            decisions.append(
                Decision(
                    session=str(raw["session"]),
                    seq=int(raw["seq"]),
                    op=str(raw["op"]),
                    segment_id=None if raw.get("segment_id") is None else int(raw["segment_id"]),
                    status=raw.get("status"),
                    text=raw.get("text"),
                    at=str(raw.get("at", "")),
                )
            )
        except (ValueError, KeyError, TypeError):
            continue
    return decisions


def _unique(decisions: list[Decision]) -> list[Decision]:
    seen: set[str] = set()
    out = []
    for d in decisions:
        if d.id not in seen:
            seen.add(d.id)
            out.append(d)
    return out


def _remove_session(path: Path) -> None:
    for p in (path, path.with_suffix(".lock")):
        with contextlib.suppress(FileNotFoundError):
            p.unlink()


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
