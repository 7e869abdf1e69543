"""The workspace catalog: one SQLite file in WAL mode.

Holds recordings, segments (with QC, transcript, review status and split), the
review history (every decision, for undo), and training runs. Several processes
may use it at once (an ingest writing while the app reviews): every write takes
the write lock up front (``BEGIN IMMEDIATE``) and waits up to ``busy_timeout``
for it, so concurrent writers queue instead of failing with "database is locked".
Each public write method is one transaction: it is durable when it returns.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core import backup as _backup
from core.errors import CatalogBusyError, CatalogError, SchemaTooNewError
from core.progress import now_iso
from core.records import QC, Recording, ReviewAction, Run, Segment, SegmentStatus, SegmentUpdate

log = logging.getLogger(__name__)

BUSY_TIMEOUT_S = 15.0
"""How long a writer waits for another process's write lock before giving up."""

_MIGRATIONS: tuple[str, ...] = (
    # 1: the first schema.
    """
    CREATE TABLE recordings (
        id            INTEGER PRIMARY KEY,
        speaker       TEXT NOT NULL,
        path          TEXT NOT NULL,            -- relative to the workspace root (raw/...)
        original_name TEXT NOT NULL,
        sha256        TEXT NOT NULL UNIQUE,
        sample_rate   INTEGER NOT NULL,
        channels      INTEGER NOT NULL,
        duration_sec  REAL NOT NULL,
        format        TEXT NOT NULL,
        subtype       TEXT,
        transcript    TEXT,                     -- sidecar path relative to the root, if any
        state         TEXT NOT NULL DEFAULT 'imported',  -- imported | segmented | failed
        error         TEXT,
        imported_at   TEXT NOT NULL
    );
    CREATE INDEX recordings_speaker ON recordings(speaker);

    CREATE TABLE segments (
        id            INTEGER PRIMARY KEY,
        recording_id  INTEGER NOT NULL REFERENCES recordings(id),
        speaker       TEXT NOT NULL,
        audio         TEXT NOT NULL UNIQUE,     -- relative to the workspace root (segments/...)
        start_sec     REAL NOT NULL,
        end_sec       REAL NOT NULL,
        duration_sec  REAL NOT NULL,
        sample_rate   INTEGER NOT NULL,
        bit_depth     INTEGER NOT NULL,
        num_channels  INTEGER NOT NULL,
        text          TEXT NOT NULL DEFAULT '',
        text_source   TEXT NOT NULL DEFAULT '', -- subtitle | asr | manual | ''
        rms_db        REAL,
        snr_db        REAL,
        clipped       REAL,
        hum_score     REAL,
        plosive_ratio REAL,
        lufs          REAL,
        true_peak_db  REAL,
        similarity    REAL,
        flags         TEXT NOT NULL DEFAULT '', -- comma-separated QC failures
        status        TEXT NOT NULL DEFAULT 'pending'
                      CHECK (status IN ('pending', 'accepted', 'rejected')),
        split         TEXT CHECK (split IS NULL OR split IN ('train', 'val', 'test')),
        created_at    TEXT NOT NULL,
        updated_at    TEXT NOT NULL
    );
    CREATE INDEX segments_status ON segments(status, id);
    CREATE INDEX segments_speaker ON segments(speaker, status);
    CREATE INDEX segments_recording ON segments(recording_id, start_sec);

    CREATE TABLE review_history (
        id          INTEGER PRIMARY KEY,
        segment_id  INTEGER NOT NULL REFERENCES segments(id),
        action      TEXT NOT NULL,              -- accept | reject | reset | edit
        old_status  TEXT NOT NULL,
        new_status  TEXT NOT NULL,
        old_text    TEXT NOT NULL,
        new_text    TEXT NOT NULL,
        source      TEXT NOT NULL,              -- key | cli | script
        at          TEXT NOT NULL,
        undone      INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX review_history_live ON review_history(undone, id);

    CREATE TABLE runs (
        id          TEXT PRIMARY KEY,
        speaker     TEXT NOT NULL,
        kind        TEXT NOT NULL DEFAULT 'train',
        path        TEXT NOT NULL,              -- relative to the workspace root (runs/<id>)
        created_at  TEXT NOT NULL,
        note        TEXT NOT NULL DEFAULT ''
    );

    CREATE TABLE meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    """,
    # 2: an edit's history row keeps the text source it replaced, so undo restores it
    # (NULL in rows written before: undo infers it, see Catalog._previous_text_source).
    """
    ALTER TABLE review_history ADD COLUMN old_text_source TEXT;
    """,
    # 3: how a recording's segments were grouped when their splits were first assigned
    # ('recording': all in one split; 'block': by ~60 s blocks), so that segments accepted
    # later join their group's stored split (core.dataset.splits.ensure_splits). NULL: not yet
    # assigned, or assigned before this column existed (then inferred from the splits).
    """
    ALTER TABLE recordings ADD COLUMN split_unit TEXT
        CHECK (split_unit IS NULL OR split_unit IN ('recording', 'block'));
    """,
)

SCHEMA_VERSION = len(_MIGRATIONS)

# Whole statements, written out: the only SQL composed at run time is a WHERE clause of fixed
# column names and ? placeholders (_where, segment_ids) and an ORDER BY from ORDERS.
_SELECT_SEGMENTS = (
    "SELECT id, recording_id, speaker, audio, start_sec, end_sec, duration_sec, "
    "sample_rate, bit_depth, num_channels, text, text_source, rms_db, snr_db, clipped, "
    "hum_score, plosive_ratio, lufs, true_peak_db, similarity, flags, status, split "
    "FROM segments"
)
_SELECT_RECORDINGS = (
    "SELECT id, speaker, path, original_name, sha256, sample_rate, channels, duration_sec, "
    "format, subtype, transcript, state, error, imported_at FROM recordings"
)
_INSERT_SEGMENT = (
    "INSERT INTO segments (recording_id, speaker, audio, start_sec, end_sec, duration_sec, "
    "sample_rate, bit_depth, num_channels, text, text_source, rms_db, snr_db, clipped, "
    "hum_score, plosive_ratio, lufs, true_peak_db, similarity, flags, status, split, "
    "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, "
    "?, ?, ?, ?, ?, ?)"
)


VIEWS = ("pending", "flagged", "accepted", "rejected", "all")
"""Review views: by status, ``flagged`` (any QC flag) or everything."""

ORDERS = {
    "order": "recording_id, start_sec, id",
    "duration": "duration_sec DESC, id",
    "snr": "COALESCE(snr_db, -1e9), id",
    "qc": "(flags != '') DESC, LENGTH(flags) DESC, COALESCE(snr_db, -1e9), id",
}
"""Review orders: recording order, longest first, worst SNR first, most QC trouble first."""


@dataclass(frozen=True)
class StatusCounts:
    """Segment counts and durations by review status."""

    pending: int = 0
    accepted: int = 0
    rejected: int = 0
    flagged: int = 0
    accepted_seconds: float = 0.0
    total_seconds: float = 0.0

    @property
    def total(self) -> int:
        return self.pending + self.accepted + self.rejected


class Catalog:
    """A connection to a workspace's ``catalog.sqlite``. Use one per thread."""

    _grouping: bool = False  # inside transaction(): write methods join its transaction

    backup_every: int = _backup.EVERY_DECISIONS
    """Take a backup after this many decisions or edits through this connection (0: never)."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self._conn = conn
        self.path = path
        self.keep_backups = False  # Catalog.open turns them on
        self._since_backup = 0

    # -- opening ---------------------------------------------------------------
    @classmethod
    def open(
        cls,
        path: Path | str,
        *,
        busy_timeout: float = BUSY_TIMEOUT_S,
        backups: bool = True,
        force_create: bool = False,
    ) -> Catalog:
        """Open (creating and migrating as needed) the catalog at ``path``.

        A missing catalog is created only where nothing shows it existed: beside a ``raw/``
        or ``segments/`` holding files, or backups, it is a :class:`CatalogError` naming
        ``podforge repair`` (``force_create`` skips that check: repair builds one this way).
        ``backups``: keep rotating backups in ``.backups/`` beside it (:mod:`core.backup`).
        """
        path = Path(path)
        if not force_create and not path.exists():
            _refuse_to_recreate(path)
        try:
            conn = sqlite3.connect(
                path, timeout=busy_timeout, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise CatalogError(f"{path}: cannot open the catalog ({exc})") from None
        conn.row_factory = sqlite3.Row
        catalog = cls(conn, path)
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise CatalogError(f"{path}: cannot switch the catalog to WAL mode (got {mode})")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA foreign_keys = ON")
            catalog._migrate()
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise _catalog_error(path, exc) from None
        except BaseException:
            conn.close()
            raise
        catalog.keep_backups = backups
        if backups:
            catalog._backup_on_open()
        return catalog

    def close(self) -> None:
        self._conn.close()

    # -- backups ---------------------------------------------------------------
    def backup(self) -> Path:
        """Take a backup now (into ``.backups/`` beside the catalog); returns its path."""
        try:
            made = _backup.take_backup(self._conn, _backup.backups_dir(self.path))
        except (OSError, sqlite3.Error) as exc:
            raise CatalogError(
                f"{_backup.backups_dir(self.path)}: cannot write a catalog backup ({exc}); "
                "free some disk space or fix the folder's permissions"
            ) from None
        self._since_backup = 0
        return made

    def _backup_on_open(self) -> None:
        """A backup when the catalog holds review history and the newest is old enough."""
        try:
            if not _backup.is_due(_backup.backups_dir(self.path)):
                return
            has_history = self._conn.execute("SELECT EXISTS (SELECT 1 FROM review_history)")
            if not has_history.fetchone()[0]:
                return  # nothing a person did yet: a re-ingest rebuilds all of it
        except sqlite3.Error:
            return
        self._backup_quietly()

    def _decided(self, count: int) -> None:
        """Count decisions/edits committed through this connection; back up every so many."""
        self._since_backup += count
        if self.keep_backups and self.backup_every > 0 and self._since_backup >= self.backup_every:
            self._backup_quietly()

    def _backup_quietly(self) -> None:
        """A backup that failed must not fail the decision that triggered it: logged."""
        try:
            self.backup()
        except CatalogError as exc:
            log.warning("catalog backup failed: %s", exc)

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def schema_version(self) -> int:
        return int(self._conn.execute("PRAGMA user_version").fetchone()[0])

    def _migrate(self) -> None:
        version = self.schema_version
        if version > SCHEMA_VERSION:
            raise SchemaTooNewError(
                f"{self.path}: written by a newer podforge (catalog schema {version}, this one "
                f"reads up to {SCHEMA_VERSION}); upgrade podforge"
            )
        if version == SCHEMA_VERSION:
            return
        with self._write() as conn:
            # Re-read under the write lock: another process may have migrated meanwhile.
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
            for number in range(version + 1, SCHEMA_VERSION + 1):
                for statement in _split_sql(_MIGRATIONS[number - 1]):
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {number}")

    @contextlib.contextmanager
    def transaction(self, *, busy_timeout: float | None = None) -> Iterator[None]:
        """Run several write methods as one transaction (all or none of them is committed).

        ``busy_timeout``: wait at most this long for the write lock (default: the one given
        to :meth:`open`); a lock held longer is a :class:`CatalogBusyError`. The review
        journal (:mod:`core.journal`) writes each decision with its replay mark this way.
        """
        conn = self._conn
        previous = int(conn.execute("PRAGMA busy_timeout").fetchone()[0])
        if busy_timeout is not None:
            conn.execute(f"PRAGMA busy_timeout = {max(0, int(busy_timeout * 1000))}")
        backups, self.keep_backups = self.keep_backups, False  # none inside the transaction
        try:
            with self._write():
                self._grouping = True
                try:
                    yield
                finally:
                    self._grouping = False
        finally:
            self.keep_backups = backups
            conn.execute(f"PRAGMA busy_timeout = {previous}")
        self._decided(0)  # the backup the decisions inside made due, now they are committed

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taking the write lock up front (waits ``busy_timeout``).

        Inside :meth:`transaction` it joins the open transaction instead."""
        conn = self._conn
        if self._grouping:
            yield conn
            return
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.DatabaseError as exc:
            raise _catalog_error(self.path, exc) from None
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        try:
            conn.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            conn.execute("ROLLBACK")
            raise _catalog_error(self.path, exc) from None

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        try:
            return self._conn.execute(sql, params).fetchall()
        except sqlite3.DatabaseError as exc:
            raise _catalog_error(self.path, exc) from None

    # -- recordings ------------------------------------------------------------
    def add_recording(self, rec: Recording) -> int:
        """Insert a recording; returns its id."""
        with self._write() as conn:
            cur = conn.execute(
                "INSERT INTO recordings (speaker, path, original_name, sha256, sample_rate, "
                "channels, duration_sec, format, subtype, transcript, state, error, imported_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    rec.speaker, rec.path, rec.original_name, rec.sha256, rec.sample_rate,
                    rec.channels, rec.duration_sec, rec.format, rec.subtype, rec.transcript,
                    rec.state, rec.error, rec.imported_at or now_iso(),
                ),
            )  # fmt: skip
            return int(cur.lastrowid or 0)

    def recording_by_hash(self, sha256: str) -> Recording | None:
        rows = self._read(_SELECT_RECORDINGS + " WHERE sha256 = ?", (sha256,))
        return _recording(rows[0]) if rows else None

    def recording(self, recording_id: int) -> Recording:
        rows = self._read(_SELECT_RECORDINGS + " WHERE id = ?", (recording_id,))
        if not rows:
            raise CatalogError(f"{self.path}: no recording with id {recording_id}")
        return _recording(rows[0])

    def recordings(self, speaker: str | None = None) -> list[Recording]:
        if speaker is None:
            rows = self._read(_SELECT_RECORDINGS + " ORDER BY id")
        else:
            rows = self._read(
                _SELECT_RECORDINGS + " WHERE speaker = ? ORDER BY id",
                (speaker,),
            )
        return [_recording(r) for r in rows]

    def set_recording_state(self, recording_id: int, state: str, error: str | None = None) -> None:
        with self._write() as conn:
            conn.execute(
                "UPDATE recordings SET state = ?, error = ? WHERE id = ?",
                (state, error, recording_id),
            )

    # -- segments --------------------------------------------------------------
    def add_segments(self, segments: Sequence[Segment]) -> list[int]:
        """Insert segments in one transaction; returns their ids."""
        stamp = now_iso()
        with self._write() as conn:
            return [self._insert_segment(conn, s, stamp) for s in segments]

    @staticmethod
    def _insert_segment(conn: sqlite3.Connection, s: Segment, stamp: str) -> int:
        q = s.qc
        cur = conn.execute(
            _INSERT_SEGMENT,
            (
                s.recording_id, s.speaker, s.audio, s.start_sec, s.end_sec,
                s.duration_sec, s.sample_rate, s.bit_depth, s.num_channels, s.text,
                s.text_source, q.rms_db, q.snr_db, q.clipped, q.hum_score,
                q.plosive_ratio, q.lufs, q.true_peak_db, q.similarity,
                ",".join(s.flags), s.status, s.split, stamp, stamp,
            ),
        )  # fmt: skip
        return int(cur.lastrowid or 0)

    def replace_segments(
        self,
        recording_id: int,
        segments: Sequence[Segment],
        *,
        duration_sec: float | None = None,
        note: str | None = None,
    ) -> list[int]:
        """Set a recording's segments and mark it ``segmented``, all in one transaction.

        Segments already reviewed keep their decision when a segment with the same
        ``audio`` path comes back (re-running an ingest never loses a decision).
        ``duration_sec`` (the decoded length) replaces the stored one when given; ``note``
        goes into the recording's ``error`` (e.g. that the file is truncated), else it is
        cleared.
        """
        stamp = now_iso()
        ids: list[int] = []
        with self._write() as conn:
            kept = {
                row[0]: (row[1], row[2], row[3])
                for row in conn.execute(
                    "SELECT audio, status, text, text_source FROM segments "
                    "WHERE recording_id = ? AND (status != 'pending' OR text_source = 'manual')",
                    (recording_id,),
                )
            }
            conn.execute(
                "DELETE FROM review_history WHERE segment_id IN "
                "(SELECT id FROM segments WHERE recording_id = ? AND status = 'pending' "
                "AND text_source != 'manual')",
                (recording_id,),
            )
            conn.execute(
                "DELETE FROM segments WHERE recording_id = ? AND status = 'pending' "
                "AND text_source != 'manual'",
                (recording_id,),
            )
            for s in segments:
                if s.audio in kept:
                    row = conn.execute("SELECT id FROM segments WHERE audio = ?", (s.audio,))
                    ids.append(int(row.fetchone()[0]))
                    continue
                ids.append(self._insert_segment(conn, s, stamp))
            conn.execute(
                "UPDATE recordings SET state = 'segmented', error = ?, "
                "duration_sec = COALESCE(?, duration_sec) WHERE id = ?",
                (note, duration_sec, recording_id),
            )
        return ids

    def update_analysis(self, updates: Sequence[SegmentUpdate]) -> None:
        """Store machine results (transcripts, similarity, flags) for many segments at once.

        A transcript never replaces one a person typed (``text_source = 'manual'``).
        """
        stamp = now_iso()
        with self._write() as conn:
            for u in updates:
                if u.text is not None:
                    conn.execute(
                        "UPDATE segments SET text = ?, text_source = ?, updated_at = ? "
                        "WHERE id = ? AND text_source != 'manual'",
                        (u.text, u.text_source, stamp, u.segment_id),
                    )
                if u.similarity is not None:
                    conn.execute(
                        "UPDATE segments SET similarity = ?, updated_at = ? WHERE id = ?",
                        (u.similarity, stamp, u.segment_id),
                    )
                if u.flags is not None:
                    conn.execute(
                        "UPDATE segments SET flags = ?, updated_at = ? WHERE id = ?",
                        (",".join(u.flags), stamp, u.segment_id),
                    )

    def segment(self, segment_id: int) -> Segment:
        rows = self._read(_SELECT_SEGMENTS + " WHERE id = ?", (segment_id,))
        if not rows:
            raise CatalogError(f"{self.path}: no segment with id {segment_id}")
        return _segment(rows[0])

    def segments(
        self,
        *,
        speaker: str | None = None,
        status: SegmentStatus | None = None,
        recording_id: int | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[Segment]:
        """Segments in catalog order, optionally filtered and paged."""
        where, params = _where(speaker=speaker, status=status, recording_id=recording_id)
        sql = f"{_SELECT_SEGMENTS}{where} ORDER BY recording_id, start_sec, id"
        if limit is not None:
            sql += " LIMIT ? OFFSET ?"
            params += [limit, offset]
        return [_segment(r) for r in self._read(sql, params)]

    def segment_ids(
        self, view: str = "all", order: str = "order", speaker: str | None = None
    ) -> list[int]:
        """Ids of the segments in a review view, in the given order (cheap for 20,000 rows).

        ``view``: one of :data:`VIEWS` (``flagged`` = any QC flag, whatever the status);
        ``order``: one of :data:`ORDERS`.
        """
        if view not in VIEWS:
            raise CatalogError(f"unknown view {view!r}; use one of {', '.join(VIEWS)}")
        if order not in ORDERS:
            raise CatalogError(f"unknown order {order!r}; use one of {', '.join(ORDERS)}")
        clauses, params = [], []
        if view in ("pending", "accepted", "rejected"):
            clauses.append("status = ?")
            params.append(view)
        elif view == "flagged":
            clauses.append("flags != ''")
        if speaker is not None:
            clauses.append("speaker = ?")
            params.append(speaker)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        # Fixed clauses and ORDER BY from ORDERS (checked above); values are ? parameters.
        order_by = " ORDER BY " + ORDERS[order]
        sql = "SELECT id FROM segments" + where + order_by  # nosec B608
        rows = self._read(sql, params)
        return [int(r[0]) for r in rows]

    def segments_by_ids(self, ids: Sequence[int]) -> list[Segment]:
        """The segments with these ids, in the same order (missing ids are left out)."""
        found: dict[int, Segment] = {}
        for start in range(0, len(ids), 500):
            chunk = list(ids[start : start + 500])
            marks = ",".join("?" * len(chunk))
            for row in self._read(f"{_SELECT_SEGMENTS} WHERE id IN ({marks})", chunk):
                found[int(row["id"])] = _segment(row)
        return [found[i] for i in ids if i in found]

    def counts(self, speaker: str | None = None) -> StatusCounts:
        """Segment counts and durations by status (flagged = any QC flag, any status)."""
        where, params = _where(speaker=speaker)
        row = self._read(
            "SELECT "  # nosec B608  # WHERE from _where: constant column names; values are ? parameters
            "COALESCE(SUM(status = 'pending'), 0), COALESCE(SUM(status = 'accepted'), 0), "
            "COALESCE(SUM(status = 'rejected'), 0), COALESCE(SUM(flags != ''), 0), "
            "COALESCE(SUM(CASE WHEN status = 'accepted' THEN duration_sec END), 0.0), "
            f"COALESCE(SUM(duration_sec), 0.0) FROM segments{where}",
            params,
        )[0]
        return StatusCounts(
            pending=int(row[0]),
            accepted=int(row[1]),
            rejected=int(row[2]),
            flagged=int(row[3]),
            accepted_seconds=float(row[4]),
            total_seconds=float(row[5]),
        )

    # -- review decisions ------------------------------------------------------
    def set_status(
        self, segment_id: int, status: SegmentStatus, *, source: str = "key"
    ) -> ReviewAction:
        """Record a review decision (committed when this returns) and its history entry."""
        action = {"accepted": "accept", "rejected": "reject", "pending": "reset"}[status]
        with self._write() as conn:
            old_status, old_text, old_source = self._current(conn, segment_id)
            done = self._apply(
                conn, segment_id, action, old_status, status, old_text, old_text, source,
                old_source,
            )  # fmt: skip
        self._decided(1)
        return done

    def set_status_many(
        self, segment_ids: Sequence[int], status: SegmentStatus, *, source: str = "cli"
    ) -> int:
        """Record the same decision for many segments in one transaction (each in the history)."""
        action = {"accepted": "accept", "rejected": "reject", "pending": "reset"}[status]
        with self._write() as conn:
            for segment_id in segment_ids:
                old_status, old_text, old_source = self._current(conn, segment_id)
                self._apply(
                    conn, segment_id, action, old_status, status, old_text, old_text, source,
                    old_source,
                )  # fmt: skip
        self._decided(len(segment_ids))
        return len(segment_ids)

    def set_splits(
        self,
        splits: Sequence[tuple[int, str | None]],
        *,
        units: Mapping[int, str | None] | None = None,
    ) -> None:
        """Store each segment's train/val/test split (``None`` clears it) and, in the same
        transaction, recordings' ``split_unit`` (``units``: recording id -> unit or ``None``).

        Splits are assigned by :func:`core.dataset.splits.ensure_splits`; call it, not this."""
        with self._write() as conn:
            conn.executemany(
                "UPDATE segments SET split = ? WHERE id = ?", [(sp, i) for i, sp in splits]
            )
            if units:
                conn.executemany(
                    "UPDATE recordings SET split_unit = ? WHERE id = ?",
                    [(unit, rec_id) for rec_id, unit in units.items()],
                )

    def split_units(self, speaker: str | None = None) -> dict[int, str | None]:
        """Recording id -> how its segments were grouped for splits (``'recording'``,
        ``'block'``, or ``None`` when not recorded)."""
        where, params = _where(speaker=speaker)
        sql = "SELECT id, split_unit FROM recordings" + where  # nosec B608  # where: _where's
        rows = self._read(sql, params)
        return {int(r[0]): (str(r[1]) if r[1] is not None else None) for r in rows}

    def set_text(self, segment_id: int, text: str, *, source: str = "key") -> ReviewAction:
        """Replace a segment's transcript (text_source becomes ``manual``), with history."""
        with self._write() as conn:
            old_status, old_text, old_source = self._current(conn, segment_id)
            done = self._apply(
                conn, segment_id, "edit", old_status, old_status, old_text, text, source,
                old_source,
            )  # fmt: skip
        self._decided(1)
        return done

    def undo(self) -> ReviewAction | None:
        """Revert the newest decision or edit not yet undone; ``None`` when there is none.

        Undoing an edit restores the text and the ``text_source`` it replaced.
        """
        with self._write() as conn:
            row = conn.execute(
                "SELECT id, segment_id, action, old_status, new_status, old_text, new_text, "
                "source, at, old_text_source FROM review_history WHERE undone = 0 "
                "ORDER BY id DESC LIMIT 1"
            ).fetchone()
            if row is None:
                return None
            conn.execute("UPDATE review_history SET undone = 1 WHERE id = ?", (row["id"],))
            if row["action"] == "edit":
                old_source = row["old_text_source"]
                if old_source is None:  # written before schema 2 kept it
                    old_source = self._previous_text_source(conn, row)
                conn.execute(
                    "UPDATE segments SET status = ?, updated_at = ?, text = ?, text_source = ? "
                    "WHERE id = ?",
                    (row["old_status"], now_iso(), row["old_text"], old_source, row["segment_id"]),
                )
            else:
                conn.execute(
                    "UPDATE segments SET status = ?, updated_at = ? WHERE id = ?",
                    (row["old_status"], now_iso(), row["segment_id"]),
                )
            done = _action(row)
        self._decided(1)
        return done

    @staticmethod
    def _previous_text_source(conn: sqlite3.Connection, row: sqlite3.Row) -> str:
        """The text source an edit replaced, for history rows that did not store it:
        ``manual`` after an earlier (live) edit of the same segment; else what ingest would
        have written: ``''`` for no text, ``subtitle`` (an .srt/.vtt sidecar), ``txt`` (a .txt
        sidecar), ``asr`` (none)."""
        earlier = conn.execute(
            "SELECT 1 FROM review_history WHERE segment_id = ? AND action = 'edit' "
            "AND undone = 0 AND id < ? LIMIT 1",
            (row["segment_id"], row["id"]),
        ).fetchone()
        if earlier is not None:
            return "manual"
        if not row["old_text"]:
            return ""
        sidecar = conn.execute(
            "SELECT r.transcript FROM segments s JOIN recordings r ON r.id = s.recording_id "
            "WHERE s.id = ?",
            (row["segment_id"],),
        ).fetchone()
        suffix = Path(str(sidecar[0])).suffix.lower() if sidecar and sidecar[0] else ""
        return {".srt": "subtitle", ".vtt": "subtitle", ".txt": "txt"}.get(suffix, "asr")

    def history(self, segment_id: int | None = None) -> list[ReviewAction]:
        """The review history, oldest first (undone entries included, marked)."""
        sql = (
            "SELECT id, segment_id, action, old_status, new_status, old_text, new_text, source, "
            "at, undone FROM review_history"
        )
        if segment_id is None:
            rows = self._read(sql + " ORDER BY id")
        else:
            rows = self._read(sql + " WHERE segment_id = ? ORDER BY id", [segment_id])
        return [_action(r) for r in rows]

    @staticmethod
    def _current(conn: sqlite3.Connection, segment_id: int) -> tuple[str, str, str]:
        row = conn.execute(
            "SELECT status, text, text_source FROM segments WHERE id = ?", (segment_id,)
        ).fetchone()
        if row is None:
            raise CatalogError(f"no segment with id {segment_id}")
        return str(row[0]), str(row[1]), str(row[2])

    @staticmethod
    def _apply(
        conn: sqlite3.Connection,
        segment_id: int,
        action: str,
        old_status: str,
        new_status: str,
        old_text: str,
        new_text: str,
        source: str,
        old_text_source: str,
    ) -> ReviewAction:
        stamp = now_iso()
        if action == "edit":
            conn.execute(
                "UPDATE segments SET text = ?, text_source = 'manual', updated_at = ? WHERE id = ?",
                (new_text, stamp, segment_id),
            )
        else:
            conn.execute(
                "UPDATE segments SET status = ?, updated_at = ? WHERE id = ?",
                (new_status, stamp, segment_id),
            )
        cur = conn.execute(
            "INSERT INTO review_history (segment_id, action, old_status, new_status, old_text, "
            "new_text, source, at, old_text_source) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (segment_id, action, old_status, new_status, old_text, new_text, source, stamp,
             old_text_source),
        )  # fmt: skip
        return ReviewAction(
            id=int(cur.lastrowid or 0),
            segment_id=segment_id,
            action=action,
            old_status=old_status,  # type: ignore[arg-type]
            new_status=new_status,  # type: ignore[arg-type]
            old_text=old_text,
            new_text=new_text,
            source=source,
            at=stamp,
        )

    # -- runs ------------------------------------------------------------------
    def add_run(self, run: Run) -> None:
        with self._write() as conn:
            conn.execute(
                "INSERT INTO runs (id, speaker, kind, path, created_at, note) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (run.id, run.speaker, run.kind, run.path, run.created_at or now_iso(), run.note),
            )

    def runs(self) -> list[Run]:
        rows = self._read(
            "SELECT id, speaker, kind, path, created_at, note FROM runs ORDER BY created_at"
        )
        return [Run(**dict(r)) for r in rows]

    # -- key/value -------------------------------------------------------------
    def set_meta(self, key: str, value: str) -> None:
        with self._write() as conn:
            conn.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    def meta(self, key: str) -> str | None:
        rows = self._read("SELECT value FROM meta WHERE key = ?", (key,))
        return str(rows[0][0]) if rows else None


def _where(**filters: Any) -> tuple[str, list[Any]]:
    clauses = [f"{column} = ?" for column, value in filters.items() if value is not None]
    params = [value for value in filters.values() if value is not None]
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), params


def _split_sql(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip() and not _only_comments(s)]


def _only_comments(sql: str) -> bool:
    return all(not line.strip() or line.strip().startswith("--") for line in sql.splitlines())


def _refuse_to_recreate(path: Path) -> None:
    """Raise when ``path`` is missing but its folder shows a catalog existed there: files in
    ``raw/`` or ``segments/``, backups, or SQLite's ``-wal`` left behind."""
    root = path.parent
    evidence = [f"{name}/" for name in ("raw", "segments") if _holds_files(root / name)]
    if _backup.list_backups(_backup.backups_dir(path)):
        evidence.append(f"{_backup.BACKUPS_DIR}/")
    if Path(f"{path}-wal").exists():
        evidence.append(f"{path.name}-wal")
    if evidence:
        raise CatalogError(
            f"{path}: the catalog is missing but {_and(evidence)} "
            f"{'holds' if len(evidence) == 1 else 'hold'} files; rebuild it with "
            f"`podforge repair {root}` (it changes none of your files)"
        )


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def _holds_files(folder: Path) -> bool:
    """Whether ``folder`` has a file anywhere below it (stops at the first)."""
    return any(filenames for _dirpath, _dirnames, filenames in os.walk(folder))


def _catalog_error(path: Path, exc: sqlite3.Error) -> CatalogError:
    text = str(exc)
    if "locked" in text or "busy" in text:
        return CatalogBusyError(
            f"{path}: the catalog is locked by another process for longer than "
            f"{BUSY_TIMEOUT_S:.0f} s; wait for it to finish (or stop it) and try again"
        )
    if "not a database" in text or "malformed" in text:
        return CatalogError(
            f"{path}: not a valid catalog ({text}); rebuild it with "
            f"`podforge repair {path.parent}` (the damaged file is kept)"
        )
    return CatalogError(f"{path}: {text}")


def _recording(row: sqlite3.Row) -> Recording:
    return Recording(**dict(row))


def _segment(row: sqlite3.Row) -> Segment:
    d = dict(row)
    qc = QC(**{k: d.pop(k) for k in QC.__dataclass_fields__})
    flags = tuple(f for f in str(d.pop("flags")).split(",") if f)
    return Segment(qc=qc, flags=flags, **d)


def _action(row: sqlite3.Row) -> ReviewAction:
    d = dict(row)
    d.pop("old_text_source", None)
    d["undone"] = bool(d.get("undone", 0))
    return ReviewAction(**d)
