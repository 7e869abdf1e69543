"""Episode delivery: the files of a mastered episode (WAV, MP3, chapters, transcripts,
manifest).

:func:`export_episode` writes ``<name>.wav`` (PCM_16), ``<name>.mp3`` (constant
bitrate, through soundfile/libsndfile and LAME), ``chapters.json`` (Podcasting 2.0
JSON chapters, version 1.2.0), the transcripts (``<name>.srt``, ``<name>.vtt``,
``<name>.transcript.json``: :mod:`core.episodes.transcripts`) and ``manifest.json``, each
atomically (``manifest.json`` last). The same result gives byte-identical files.
:func:`render_episode_files <core.episodes.master.render_episode_files>` writes the same
files as it streams.

The manifest and chapters are written from :class:`EpisodeFacts`, the part that the
in-memory and the streamed master's results share; the MP3 is :mod:`core.audio.mp3`.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from core.atomic import atomic_write_bytes, atomic_write_text
from core.audio.io import write_wav
from core.audio.mp3 import encode_mp3
from core.episodes.mixing import PlacedLine
from core.episodes.transcripts import srt, transcript_json, vtt

if TYPE_CHECKING:
    from core.episodes.master import MasteredEpisode, MixResult

__all__ = [
    "CHAPTERS_VERSION",
    "MANIFEST_SCHEMA",
    "EpisodeFacts",
    "ExportedEpisode",
    "chapters_json",
    "episode_paths",
    "export_episode",
    "manifest_for",
    "write_chapters_and_manifest",
]


CHAPTERS_VERSION: Final = "1.2.0"
"""Podcasting 2.0 JSON chapters version written to ``chapters.json``."""

MANIFEST_SCHEMA: Final = 1


@dataclass(frozen=True)
class ExportedEpisode:
    """The files :func:`export_episode` wrote."""

    wav: Path
    mp3: Path
    manifest: Path
    chapters: Path
    srt: Path
    vtt: Path
    transcript: Path
    """The Podcasting 2.0 JSON transcript (:mod:`core.episodes.transcripts`)."""


@dataclass(frozen=True, eq=False, kw_only=True)
class EpisodeFacts:
    """What a master reports about an episode: what the manifest and chapters state.

    ``lufs`` is the master's integrated loudness (``None`` if it cannot be measured:
    silence, or shorter than 400 ms) and ``true_peak_db`` its 4x true peak (``-inf`` for
    silence). The shared part of :class:`~core.episodes.master.MixResult` (the audio in
    memory) and :class:`~core.episodes.master.MasteredEpisode` (the audio in files).
    """

    sample_rate: int
    lines: tuple[PlacedLine, ...]
    chapters: tuple[tuple[str, float], ...]
    lufs: float | None
    true_peak_db: float
    target_lufs: float | None = None
    """The loudness the master aimed at (``None``: not mastered)."""
    ceiling_dbtp: float | None = None
    """The true-peak ceiling the master held (``None``: not mastered)."""


_NAME = re.compile(r"^[^/\\\x00]+$")


def episode_paths(folder: Path, name: str) -> ExportedEpisode:
    """The files of episode ``name`` in ``folder``; ``ValueError`` for an unusable name."""
    if not _NAME.match(name) or name in (".", ".."):
        raise ValueError(f"not a usable file name: {name!r}")
    folder = Path(folder)
    return ExportedEpisode(
        wav=folder / f"{name}.wav",
        mp3=folder / f"{name}.mp3",
        manifest=folder / "manifest.json",
        chapters=folder / "chapters.json",
        srt=folder / f"{name}.srt",
        vtt=folder / f"{name}.vtt",
        transcript=folder / f"{name}.transcript.json",
    )


def export_episode(
    result: MixResult,
    folder: Path,
    name: str,
    *,
    title: str,
    mp3_bitrate_kbps: int = 128,
    extra_manifest: Mapping[str, Any] | None = None,
) -> ExportedEpisode:
    """Write ``<name>.wav`` (PCM_16), ``<name>.mp3``, ``chapters.json`` and ``manifest.json``.

    Each file is written atomically; ``manifest.json`` comes last, so its presence means
    the export is complete. ``extra_manifest`` keys are added to the manifest's top level
    (they may not replace its own keys). The same inputs give byte-identical files.
    """
    paths = episode_paths(folder, name)
    manifest = manifest_for(result, name, title, mp3_bitrate_kbps, extra_manifest or {})
    mp3 = encode_mp3(result.audio, result.sample_rate, bitrate_kbps=mp3_bitrate_kbps, title=title)
    write_wav(paths.wav, result.audio, result.sample_rate, subtype="PCM_16")
    atomic_write_bytes(paths.mp3, mp3)
    write_chapters_and_manifest(paths, result, manifest)
    return paths


def write_chapters_and_manifest(
    paths: ExportedEpisode, result: EpisodeFacts, manifest: Mapping[str, Any]
) -> None:
    """Write ``chapters.json`` and the transcripts, then ``manifest.json`` (last: the export
    is complete)."""
    atomic_write_text(paths.chapters, _json(chapters_json(result)))
    atomic_write_text(paths.srt, srt(result.lines))
    atomic_write_text(paths.vtt, vtt(result.lines))
    atomic_write_text(paths.transcript, _json(transcript_json(result.lines)))
    atomic_write_text(paths.manifest, _json(manifest))


def chapters_json(result: EpisodeFacts) -> dict[str, Any]:
    """Podcasting 2.0 JSON chapters for ``result``."""
    return {
        "version": CHAPTERS_VERSION,
        "chapters": [
            {"startTime": round(start, 3), "title": title} for title, start in result.chapters
        ],
    }


def manifest_for(
    result: MixResult | MasteredEpisode,
    name: str,
    title: str,
    bitrate: int,
    extra: Mapping[str, Any],
) -> dict[str, Any]:
    """The ``manifest.json`` of ``result``; ``extra`` keys may not replace its own."""
    manifest: dict[str, Any] = {
        "schema": MANIFEST_SCHEMA,
        "title": title,
        "duration_sec": round(result.duration_sec, 6),
        "sample_rate": result.sample_rate,
        "channels": result.channels,
        "lufs": _finite(result.lufs, 2),
        "true_peak_dbtp": _finite(result.true_peak_db, 2),
        "target_lufs": result.target_lufs,
        "ceiling_dbtp": result.ceiling_dbtp,
        "files": {
            "wav": f"{name}.wav",
            "mp3": f"{name}.mp3",
            "chapters": "chapters.json",
            "transcripts": {
                "srt": f"{name}.srt",
                "vtt": f"{name}.vtt",
                "json": f"{name}.transcript.json",
            },
        },
        "mp3": {"bitrate_kbps": bitrate, "mode": "CBR"},
        "lines": [
            {
                "index": line.index,
                "speaker": line.speaker,
                "text": line.text,
                "start_sec": round(line.start_sec, 6),
                "end_sec": round(line.end_sec, 6),
                "backend": line.backend,
                "seed": line.seed,
            }
            for line in result.lines
        ],
        "chapters": [
            {"title": title, "start_sec": round(start, 6)} for title, start in result.chapters
        ],
    }
    clash = sorted(set(extra) & set(manifest))
    if clash:
        raise ValueError(f"extra_manifest may not replace the manifest's own keys: {clash}")
    manifest.update(extra)
    return manifest


def _finite(value: float | None, digits: int) -> float | None:
    return None if value is None or not math.isfinite(value) else round(value, digits)


def _json(data: Mapping[str, Any]) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
