"""Import long recordings into a workspace: copy the original into ``raw/``, register it.

Originals are copied byte for byte (atomically) and never changed afterwards; a file
whose content is already in the catalog is not imported twice (content hash): the existing
recording is returned, whichever speaker it belongs to (the caller compares
``recording.speaker``; :mod:`core.dataset.ingest` reports whose it is). ``duration_sec`` is the
header's length here; the ingest replaces it by the decoded length.
Sidecar transcripts (``.srt``, ``.vtt``, ``.txt`` with the same stem) travel with it.
"""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass
from pathlib import Path

from core.atomic import atomic_path
from core.audio.io import SUPPORTED_EXTENSIONS, probe
from core.catalog import Catalog
from core.errors import AudioError
from core.records import Recording
from core.workspace import Workspace

SIDECAR_EXTENSIONS = (".srt", ".vtt", ".txt")
_HASH_BLOCK = 1 << 20


@dataclass(frozen=True)
class ImportResult:
    """What happened to one file: imported now, or already in the catalog."""

    recording: Recording
    created: bool


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(_HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def find_sidecar(audio_path: Path) -> Path | None:
    """The first transcript beside ``audio_path`` with the same stem (.srt, .vtt, .txt)."""
    for ext in SIDECAR_EXTENSIONS:
        candidate = audio_path.with_suffix(ext)
        if candidate.is_file():
            return candidate
    return None


def import_recording(
    ws: Workspace, catalog: Catalog, source: Path | str, speaker: str
) -> ImportResult:
    """Copy ``source`` (and its sidecar) into ``raw/<speaker>/`` and add it to the catalog."""
    source = Path(source)
    ws.speaker(speaker)  # unknown speakers are refused before anything is copied
    if source.suffix.lower() not in SUPPORTED_EXTENSIONS:
        raise AudioError(
            f"{source}: unsupported file type {source.suffix or '(none)'}; "
            f"use one of {', '.join(sorted(SUPPORTED_EXTENSIONS))}"
        )
    if not source.is_file():
        raise AudioError(f"{source}: no such file")
    info = probe(source)  # refuses non-audio before anything is copied
    sha = file_sha256(source)
    existing = catalog.recording_by_hash(sha)
    if existing is not None:
        return ImportResult(existing, created=False)

    folder = ws.raw_dir / speaker
    stem = f"{source.stem}-{sha[:8]}"
    target = folder / f"{stem}{source.suffix.lower()}"
    _copy(source, target)
    transcript = None
    sidecar = find_sidecar(source)
    if sidecar is not None:
        sidecar_target = folder / f"{stem}{sidecar.suffix.lower()}"
        _copy(sidecar, sidecar_target)
        transcript = sidecar_target.relative_to(ws.root).as_posix()
    record = Recording(
        speaker=speaker,
        path=target.relative_to(ws.root).as_posix(),
        original_name=source.name,
        sha256=sha,
        sample_rate=info.sample_rate,
        channels=info.channels,
        duration_sec=info.duration_sec,
        format=info.format,
        subtype=info.subtype,
        transcript=transcript,
    )
    rec_id = catalog.add_recording(record)
    return ImportResult(catalog.recording(rec_id), created=True)


def _copy(source: Path, target: Path) -> None:
    with atomic_path(target) as tmp:
        shutil.copyfile(source, tmp)
