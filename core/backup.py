"""Rotating backups of the catalog, made with SQLite's online backup API.

Review decisions and transcript edits live only in ``catalog.sqlite``. Copies of it are kept
in ``<workspace>/.backups/catalog-<UTC time>.sqlite`` (a folder beside the catalog):

- each is a complete, standalone SQLite file (rollback journal, no ``-wal`` beside it) made
  by :meth:`sqlite3.Connection.backup` from a live connection, so it is a consistent snapshot
  even while other processes write (WAL readers never block writers);
- it is written into a temporary file in the same folder (name starting with ``.``) that is
  renamed into place, so a backup is either whole or absent;
- only the newest :data:`KEEP` are kept (older ones are removed by :func:`rotate`);
- :class:`core.catalog.Catalog` takes one when it is opened, if the catalog holds review
  history and the newest backup is older than :data:`OPEN_INTERVAL_S` (many processes
  opening the catalog do not churn), and one after every :data:`EVERY_DECISIONS` decisions
  or edits made through one connection.

``podforge repair`` (:mod:`core.repair`) restores from the newest valid backup.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path

from core.atomic import atomic_path

log = logging.getLogger(__name__)

BACKUPS_DIR = ".backups"
"""The folder, beside the catalog, that holds its backups."""

KEEP = 5
"""How many backups are kept; older ones are removed after each new one."""

OPEN_INTERVAL_S = 10 * 60.0
"""Opening the catalog takes a backup only if the newest one is older than this."""

EVERY_DECISIONS = 50
"""A connection takes a backup after this many review decisions or edits."""

_PREFIX = "catalog-"
_SUFFIX = ".sqlite"
_STAMP = "%Y%m%dT%H%M%S%fZ"
_STALE_TEMP_S = 3600.0


def backups_dir(catalog_path: Path | str) -> Path:
    """The backups folder of the catalog at ``catalog_path``."""
    return Path(catalog_path).parent / BACKUPS_DIR


def backup_name(when: datetime) -> str:
    """``catalog-YYYYMMDDTHHMMSSffffffZ.sqlite``: names sort in time order."""
    return f"{_PREFIX}{when.astimezone(UTC).strftime(_STAMP)}{_SUFFIX}"


def backup_time(path: Path) -> datetime | None:
    """The UTC time in a backup's name, or ``None`` when the name is not a backup's."""
    name = path.name
    if not (name.startswith(_PREFIX) and name.endswith(_SUFFIX)):
        return None
    try:
        stamp = datetime.strptime(name[len(_PREFIX) : -len(_SUFFIX)], _STAMP)
    except ValueError:
        return None
    return stamp.replace(tzinfo=UTC)


def list_backups(folder: Path) -> list[Path]:
    """The backups in ``folder``, newest first (temporary files are not backups)."""
    try:
        entries = list(folder.iterdir())
    except OSError:
        return []
    found = [p for p in entries if backup_time(p) is not None and p.is_file()]
    return sorted(found, key=lambda p: p.name, reverse=True)


def is_due(folder: Path, interval_s: float = OPEN_INTERVAL_S, now: datetime | None = None) -> bool:
    """Whether the newest backup in ``folder`` is older than ``interval_s`` (or there is none)."""
    backups = list_backups(folder)
    newest = backup_time(backups[0]) if backups else None
    if newest is None:
        return True
    age = ((now or datetime.now(UTC)) - newest).total_seconds()
    return age >= interval_s or age < 0  # a clock set back must not stop backups for good


def take_backup(
    conn: sqlite3.Connection, folder: Path, *, keep: int = KEEP, now: datetime | None = None
) -> Path:
    """Copy the database behind ``conn`` into a new backup in ``folder``, then rotate.

    ``conn`` must not be inside a transaction. The copy is a consistent snapshot even while
    other processes write. Returns the backup's path.
    """
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / backup_name(now or datetime.now(UTC))
    with atomic_path(target) as tmp:
        dst = sqlite3.connect(tmp, isolation_level=None)
        try:
            # A fresh temporary needs no journal or syncs of its own (atomic_path fsyncs the
            # finished file before the rename), which makes the copy much faster.
            dst.execute("PRAGMA synchronous = OFF")
            dst.execute("PRAGMA journal_mode = OFF")
            conn.backup(dst)
            # The copy inherits WAL mode from the header; a backup is one standalone file.
            dst.execute("PRAGMA journal_mode = DELETE")
        finally:
            dst.close()
    rotate(folder, keep)
    return target


def rotate(folder: Path, keep: int = KEEP) -> list[Path]:
    """Remove all but the newest ``keep`` backups (and stale temporary files); returns those
    removed. Only files named like backups are touched."""
    removed: list[Path] = []
    for old in list_backups(folder)[keep:]:
        with contextlib.suppress(FileNotFoundError):  # another process rotated it already
            old.unlink()
            removed.append(old)
    cutoff = time.time() - _STALE_TEMP_S
    for tmp in folder.glob(f".{_PREFIX}*{_SUFFIX}.*.tmp{_SUFFIX}"):
        with contextlib.suppress(OSError):
            if tmp.stat().st_mtime < cutoff:  # left by a killed process
                tmp.unlink()
    return removed


def check_catalog_file(path: Path) -> str | None:
    """``None`` when ``path`` is a readable catalog database, else why not (one line).

    Opens it read-only and runs ``PRAGMA quick_check``; nothing is written.
    """
    if not path.is_file():
        return "no such file"
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        return str(exc)
    try:
        result = conn.execute("PRAGMA quick_check").fetchone()[0]
        if result != "ok":
            return f"damaged ({result})"
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        missing = {"recordings", "segments", "review_history"} - tables
        if missing:
            return f"not a podforge catalog (no {', '.join(sorted(missing))} table)"
    except sqlite3.Error as exc:
        return str(exc)
    finally:
        conn.close()
    return None
