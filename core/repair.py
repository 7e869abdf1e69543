"""Rebuild a workspace's catalog from the files on disk and the newest good copy of it.

``podforge repair WS`` runs :func:`repair`: the newest readable copy of the catalog is the
source, the files on disk decide what comes back from it, and what is on disk but not in the
source is registered where that is possible. The new catalog is built in a temporary file and
renamed into place; the old one is moved aside, never deleted, and no file in ``raw/``,
``segments/`` or ``runs/`` is touched. Stop the app and any worker before repairing.

Details: docs/WORKSPACE.md, "podforge repair"."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from core import backup
from core.catalog import SCHEMA_VERSION, Catalog
from core.errors import AudioError, CatalogError, SchemaTooNewError
from core.progress import now_iso
from core.workspace import CATALOG_NAME, Workspace

REPLACED_PREFIX = "replaced-"
"""``.backups/replaced-<UTC time>/`` holds a catalog that a repair replaced."""

MAX_LISTED = 20
"""How many paths one report line names before it says how many more there are."""

_TABLES = ("recordings", "segments", "review_history", "runs", "meta")


@dataclass
class RepairReport:
    """Exactly what :func:`repair` restored, registered, moved aside and could not restore."""

    catalog: Path
    source: Path | None = None
    source_time: datetime | None = None  # when the source was written (backups), else None
    source_is_backup: bool = False
    skipped_sources: list[str] = field(default_factory=list)  # "path: why"
    moved_aside: list[Path] = field(default_factory=list)
    recordings: int = 0
    segments: int = 0
    accepted: int = 0
    rejected: int = 0
    edited: int = 0  # transcripts a person typed
    history: int = 0
    runs: int = 0
    meta: int = 0
    registered_recordings: list[str] = field(default_factory=list)
    registered_runs: list[str] = field(default_factory=list)
    unreadable_raw: list[str] = field(default_factory=list)  # "path: why"
    originals_missing: list[str] = field(default_factory=list)  # kept: segments remain
    recordings_gone: list[str] = field(default_factory=list)  # original and segments gone
    segments_gone: list[tuple[str, str]] = field(default_factory=list)  # (audio, status)
    runs_gone: list[str] = field(default_factory=list)
    to_reingest: dict[str, list[str]] = field(default_factory=dict)  # raw path -> files
    orphan_segments: list[str] = field(default_factory=list)  # no recording at all
    reingest_commands: list[str] = field(default_factory=list)

    @property
    def lost_after(self) -> datetime | None:
        """Decisions and edits after this time are in no copy that was restored."""
        return self.source_time if self.source_is_backup else None

    def lines(self, root: Path) -> list[str]:
        """The report as lines for a terminal (paths relative to the workspace ``root``)."""

        def rel(p: Path) -> str:
            try:
                return p.relative_to(root).as_posix()
            except ValueError:
                return str(p)

        out = [f"repaired {self.catalog}"]
        for why in self.skipped_sources:
            out.append(f"skipped (unreadable): {why}")
        if self.source is None:
            out.append("source: none (no readable catalog or backup); registered files on disk")
        elif self.source_is_backup:
            kind = (
                "backup"
                if backup.backup_time(self.source)
                else "catalog moved aside by an earlier repair"
            )
            out.append(f"source: {kind} {rel(self.source)} (from {_when(self.source_time)})")
        else:
            out.append(f"source: {rel(self.source)} (readable)")
        for p in self.moved_aside:
            out.append(f"moved aside (kept): {rel(p)}")
        out.append(
            f"restored: {_n(self.recordings, 'recording')}, {_n(self.segments, 'segment')} "
            f"({self.accepted} accepted, {self.rejected} rejected, "
            f"{_n(self.edited, 'transcript')} typed by a person), "
            f"{_n(self.history, 'history entry', 'history entries')}, {_n(self.runs, 'run')}, "
            f"{_n(self.meta, 'meta entry', 'meta entries')}"
        )
        listed: list[tuple[str, list[str]]] = [
            ("registered from raw/ (not in the source)", self.registered_recordings),
            ("registered from runs/", self.registered_runs),
            ("original missing (recording kept for its segments)", self.originals_missing),
            ("not restored, unreadable in raw/ (left in place)", self.unreadable_raw),
            ("not restored, original and segments gone", self.recordings_gone),
            (
                "not restored, segment file gone",
                [f"{audio} ({status})" for audio, status in self.segments_gone],
            ),
            ("not restored, run folder gone", self.runs_gone),
        ]
        for label, items in listed:
            if items:
                out.append(f"{label}: {_some(items)}")
        for raw, files in self.to_reingest.items():
            out.append(
                f"not restored, {_n(len(files), 'segment file')} of {raw} without a catalog row "
                f"(left in place): {_some(files)}"
            )
        if self.orphan_segments:
            out.append(
                "not restored, segment files of no recording (left in place): "
                f"{_some(self.orphan_segments)}"
            )
        for command in self.reingest_commands:
            out.append(f"to cut them again: {command}")
        if self.source is None:
            out.append(
                "lost: every review decision and transcript edit (no readable catalog or "
                "backup); review again after ingesting"
            )
        elif self.lost_after is not None:
            out.append(
                f"lost: every decision and transcript edit made after {_when(self.lost_after)} "
                "(the backup's time) could not be restored; review those segments again"
            )
        return out


def repair(ws: Workspace) -> RepairReport:
    """Rebuild ``ws``'s catalog (see the module docstring); never touches user files."""
    root = ws.root
    path = ws.catalog_path
    folder = backup.backups_dir(path)
    started = datetime.now(UTC)
    report = RepairReport(catalog=path)
    _choose_source(path, folder, report)

    tmp = root / f".{CATALOG_NAME}.repair-{os.getpid()}.sqlite"
    _remove_sqlite_files(tmp)
    try:
        Catalog.open(tmp, force_create=True, backups=False).close()
        conn = sqlite3.connect(tmp, isolation_level=None)
        try:
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute("BEGIN IMMEDIATE")
            _rebuild(ws, conn, report)
            conn.execute("COMMIT")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            conn.close()
        aside = folder / f"{REPLACED_PREFIX}{started.strftime('%Y%m%dT%H%M%S%fZ')}"
        try:
            for suffix in ("", "-wal", "-shm", "-journal"):
                old = Path(f"{path}{suffix}")
                if old.exists():
                    aside.mkdir(parents=True, exist_ok=True)
                    os.replace(old, aside / old.name)
                    report.moved_aside.append(aside / old.name)
            os.replace(tmp, path)
        except OSError as exc:
            moved = ", ".join(str(p) for p in report.moved_aside) or "nothing"
            raise CatalogError(
                f"{path}: cannot put the rebuilt catalog in place ({exc.strerror}: "
                f"{exc.filename}); moved aside so far: {moved}; fix that and run repair again"
            ) from None
    finally:
        _remove_sqlite_files(tmp)
    Catalog.open(path, backups=False).close()  # it opens cleanly
    return report


def _choose_source(path: Path, folder: Path, report: RepairReport) -> None:
    """The newest readable copy: the catalog itself, else backups and earlier replaced
    catalogs by time, newest first."""
    candidates: list[tuple[datetime | None, Path, bool]] = []
    if path.exists():
        candidates.append((None, path, False))
    copies: list[tuple[datetime, Path, bool]] = []
    for b in backup.list_backups(folder):
        when = backup.backup_time(b)
        if when is not None:  # always, for what list_backups returns
            copies.append((when, b, True))
    with contextlib.suppress(OSError):
        for aside in folder.glob(f"{REPLACED_PREFIX}*/{CATALOG_NAME}"):
            when = _replaced_time(aside.parent.name)
            if when is not None:
                copies.append((when, aside, True))
    copies.sort(key=lambda c: c[0], reverse=True)
    candidates += copies
    for when, candidate, is_copy in candidates:
        why = backup.check_catalog_file(candidate)
        if why is None:
            version = _user_version(candidate)
            if version > SCHEMA_VERSION:
                if not is_copy:
                    raise SchemaTooNewError(
                        f"{candidate}: written by a newer podforge (catalog schema {version}, "
                        f"this one reads up to {SCHEMA_VERSION}); repair it with that podforge"
                    )
                why = f"written by a newer podforge (schema {version})"
        if why is None:
            report.source, report.source_time, report.source_is_backup = candidate, when, is_copy
            return
        report.skipped_sources.append(f"{candidate}: {why}")


def _rebuild(ws: Workspace, conn: sqlite3.Connection, report: RepairReport) -> None:
    """Fill the empty catalog behind ``conn`` (inside a transaction)."""
    root = ws.root
    src: dict[str, list[dict[str, Any]]] = {t: [] for t in _TABLES}
    if report.source is not None:
        src = _read_source(report.source)
    columns = {t: _columns(conn, t) for t in _TABLES}

    raw_files = _raw_files(root)
    segment_files = _segment_files(root)
    seg_by_rec: dict[int, list[dict[str, Any]]] = {}
    for s in src["segments"]:
        seg_by_rec.setdefault(int(s["recording_id"]), []).append(s)

    # Recordings: kept when the original or one of its segment files is still there.
    kept_recordings: dict[int, dict[str, Any]] = {}
    for r in src["recordings"]:
        has_segments = any(s["audio"] in segment_files for s in seg_by_rec.get(int(r["id"]), []))
        if r["path"] in raw_files:
            kept_recordings[int(r["id"])] = r
        elif has_segments:
            kept_recordings[int(r["id"])] = r
            report.originals_missing.append(str(r["path"]))
        else:
            report.recordings_gone.append(str(r["path"]))
    _insert(conn, "recordings", columns["recordings"], kept_recordings.values())
    report.recordings = len(kept_recordings)

    # Segments: kept when their file is there.
    kept_segments: list[dict[str, Any]] = []
    for s in src["segments"]:
        if int(s["recording_id"]) in kept_recordings and s["audio"] in segment_files:
            kept_segments.append(s)
        else:
            report.segments_gone.append((str(s["audio"]), str(s["status"])))
    _insert(conn, "segments", columns["segments"], kept_segments)
    report.segments = len(kept_segments)
    report.accepted = sum(1 for s in kept_segments if s["status"] == "accepted")
    report.rejected = sum(1 for s in kept_segments if s["status"] == "rejected")
    report.edited = sum(1 for s in kept_segments if s["text_source"] == "manual")

    kept_ids = {int(s["id"]) for s in kept_segments}
    history = [h for h in src["review_history"] if int(h["segment_id"]) in kept_ids]
    _insert(conn, "review_history", columns["review_history"], history)
    report.history = len(history)

    runs = [r for r in src["runs"] if (root / str(r["path"])).is_dir()]
    report.runs_gone = [str(r["path"]) for r in src["runs"] if r not in runs]
    _insert(conn, "runs", columns["runs"], runs)
    report.runs = len(runs)
    _insert(conn, "meta", columns["meta"], src["meta"])
    report.meta = len(src["meta"])

    # On disk but not in the source.
    known_paths = {str(r["path"]) for r in src["recordings"]}
    known_hashes = {str(r["sha256"]) for r in kept_recordings.values()}
    for rel in sorted(set(raw_files) - known_paths):
        _register_recording(ws, conn, rel, known_hashes, report)
    _register_runs(ws, conn, {str(r["id"]) for r in src["runs"]}, report)

    # Segment files without a row: theirs to cut again, or of no recording at all.
    restored_audio = {str(s["audio"]) for s in kept_segments}
    recordings = conn.execute("SELECT id, speaker, path FROM recordings").fetchall()
    by_stem = {(str(sp), Path(str(p)).stem): (int(i), str(p)) for i, sp, p in recordings}
    for audio in sorted(segment_files - restored_audio):
        speaker = Path(audio).parent.name
        stem = Path(audio).stem.rsplit("-", 1)[0]
        owner = by_stem.get((speaker, stem))
        if owner is None or owner[1] not in raw_files:
            report.orphan_segments.append(audio)
            continue
        report.to_reingest.setdefault(owner[1], []).append(audio)
        conn.execute(
            "UPDATE recordings SET state = 'imported', error = NULL WHERE id = ?", (owner[0],)
        )
    for raw in report.to_reingest:
        speaker = Path(raw).parent.name
        report.reingest_commands.append(f"podforge ingest {root} {root / raw} --speaker {speaker}")
    for rel in report.registered_recordings:
        if rel not in report.to_reingest:
            report.reingest_commands.append(
                f"podforge ingest {root} {root / rel} --speaker {Path(rel).parent.name}"
            )


def _register_recording(
    ws: Workspace, conn: sqlite3.Connection, rel: str, known: set[str], report: RepairReport
) -> None:
    """Add an original found in ``raw/`` as a recording in state ``imported``."""
    from core.audio.io import probe
    from core.dataset.importer import file_sha256, find_sidecar

    path = ws.root / rel
    try:
        info = probe(path)
    except AudioError as exc:
        report.unreadable_raw.append(f"{rel}: {exc}")
        return
    sha = file_sha256(path)
    if sha in known:
        report.unreadable_raw.append(f"{rel}: the same audio as a restored recording")
        return
    known.add(sha)
    sidecar = find_sidecar(path)
    conn.execute(
        "INSERT INTO recordings (speaker, path, original_name, sha256, sample_rate, channels, "
        "duration_sec, format, subtype, transcript, state, imported_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'imported', ?)",
        (
            Path(rel).parent.name, rel, path.name, sha, info.sample_rate, info.channels,
            info.duration_sec, info.format, info.subtype,
            sidecar.relative_to(ws.root).as_posix() if sidecar else None, now_iso(),
        ),
    )  # fmt: skip
    report.registered_recordings.append(rel)


def _register_runs(
    ws: Workspace, conn: sqlite3.Connection, known: set[str], report: RepairReport
) -> None:
    """Add ``runs/<id>/`` folders with a readable ``config.toml`` that the source lacks."""
    if not ws.runs_dir.is_dir():
        return
    for run_dir in sorted(ws.runs_dir.iterdir()):
        if run_dir.name.startswith(".") or run_dir.name in known or not run_dir.is_dir():
            continue
        try:
            config = tomllib.loads((run_dir / "config.toml").read_text(encoding="utf-8"))
            speaker = str(config["speaker"])
        except (OSError, ValueError, KeyError):
            continue  # not a run folder podforge made
        created = datetime.fromtimestamp(run_dir.stat().st_mtime, UTC)
        conn.execute(
            "INSERT INTO runs (id, speaker, kind, path, created_at, note) "
            "VALUES (?, ?, 'train', ?, ?, 'registered by podforge repair')",
            (run_dir.name, speaker, f"runs/{run_dir.name}",
             created.isoformat(timespec="milliseconds")),
        )  # fmt: skip
        report.registered_runs.append(f"runs/{run_dir.name}")


def _read_source(source: Path) -> dict[str, list[dict[str, Any]]]:
    conn = sqlite3.connect(f"{source.resolve().as_uri()}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        return {
            # t is one of _TABLES (our names), read only where the source has it.
            t: [dict(r) for r in conn.execute(f"SELECT * FROM {t}")] if t in tables else []  # nosec B608
            for t in _TABLES
        }
    except sqlite3.Error as exc:
        raise CatalogError(f"{source}: cannot read it ({exc}); try again") from None
    finally:
        conn.close()


def _columns(conn: sqlite3.Connection, table: str) -> list[str]:
    return [str(r[1]) for r in conn.execute(f"PRAGMA table_info({table})")]


def _insert(
    conn: sqlite3.Connection, table: str, columns: list[str], rows: Iterable[dict[str, Any]]
) -> None:
    """Insert ``rows`` with the columns both schemas have (an older source lacks some)."""
    rows = list(rows)
    if not rows:
        return
    cols = [c for c in columns if c in rows[0]]
    names, marks = ", ".join(cols), ", ".join("?" * len(cols))
    # table is one of _TABLES and cols the new catalog's own column names (PRAGMA table_info);
    # the values go as ? parameters.
    sql = f"INSERT INTO {table} ({names}) VALUES ({marks})"  # nosec B608
    conn.executemany(sql, [[row[c] for c in cols] for row in rows])


def _raw_files(root: Path) -> set[str]:
    """Originals in ``raw/<speaker>/`` (audio files; sidecars and temporaries are not)."""
    from core.audio.io import SUPPORTED_EXTENSIONS

    raw = root / "raw"
    found: set[str] = set()
    if not raw.is_dir():
        return found
    for p in raw.glob("*/*"):
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in SUPPORTED_EXTENSIONS:
            found.add(p.relative_to(root).as_posix())
    return found


def _segment_files(root: Path) -> set[str]:
    segments = root / "segments"
    if not segments.is_dir():
        return set()
    return {
        p.relative_to(root).as_posix()
        for p in segments.glob("*/*.wav")
        if p.is_file() and not p.name.startswith(".")
    }


def _user_version(path: Path) -> int:
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])
    finally:
        conn.close()


def _replaced_time(name: str) -> datetime | None:
    try:
        stamp = datetime.strptime(name.removeprefix(REPLACED_PREFIX), "%Y%m%dT%H%M%S%fZ")
    except ValueError:
        return None
    return stamp.replace(tzinfo=UTC)


def _remove_sqlite_files(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        with contextlib.suppress(FileNotFoundError):
            Path(f"{path}{suffix}").unlink()


def _when(moment: datetime | None) -> str:
    return "an unknown time" if moment is None else moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def _n(count: int, one: str, many: str | None = None) -> str:
    return f"{count} {one if count == 1 else many or one + 's'}"


def _some(items: list[str]) -> str:
    shown = ", ".join(items[:MAX_LISTED])
    more = len(items) - MAX_LISTED
    return f"{shown} and {more} more" if more > 0 else shown
