"""Provenance in the MP3: ID3 tags written with mutagen (title, show, chapters, cover, what
made it).

:func:`write_id3` adds to an episode's MP3 (before it is moved into place): the title
(``TIT2``), the show (``TALB``, the workspace's name), the chapters as ``CHAP`` frames under
one ordered top-level ``CTOC`` (the ID3 chapter addendum players read), a cover (``APIC``)
when the workspace has ``assets/cover.jpg`` or ``.png``, and a ``TXXX`` frame
``SYNTHETIC_SPEECH`` saying that the speech is synthetic, which voices spoke and which
podforge version made it. Tags are ID3v2.4, UTF-8. The streamed master writes the same
title, show and statement into the WAV's ``LIST/INFO`` chunk (``INAM``, ``IPRD``, ``ICMT``,
``ISFT``, through libsndfile).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["SYNTHETIC_FRAME", "Mp3Tags", "find_cover", "write_id3"]

SYNTHETIC_FRAME = "SYNTHETIC_SPEECH"
"""The ``TXXX`` description of the provenance statement."""

COVERS = (("cover.jpg", "image/jpeg"), ("cover.jpeg", "image/jpeg"), ("cover.png", "image/png"))


@dataclass(frozen=True)
class Mp3Tags:
    """What an episode's MP3 says about itself."""

    title: str
    show: str
    provenance: str
    """The ``SYNTHETIC_SPEECH`` statement: synthetic, which voices, which podforge."""
    cover: Path | None = None
    software: str = "podforge"
    """What made the file (the WAV's ``ISFT``)."""


def find_cover(assets: Path) -> Path | None:
    """``assets/cover.jpg`` (or ``.jpeg``, ``.png``), if the workspace has one."""
    return next((assets / name for name, _ in COVERS if (assets / name).is_file()), None)


def write_id3(
    path: Path, tags: Mp3Tags, chapters: Sequence[tuple[str, float]], duration_sec: float
) -> None:
    """Add ``tags`` and ``chapters`` (``(title, start_sec)``, in order) to the MP3 at
    ``path``, in place (call it on the file before it is moved into place)."""
    import mutagen.id3

    lib: Any = mutagen.id3  # untyped
    APIC, CHAP, CTOC, TALB, TIT2, TXXX = lib.APIC, lib.CHAP, lib.CTOC, lib.TALB, lib.TIT2, lib.TXXX
    try:
        id3 = lib.ID3(str(path))
    except lib.ID3NoHeaderError:
        id3 = lib.ID3()
    id3.setall("TIT2", [TIT2(encoding=3, text=[tags.title])])
    id3.setall("TALB", [TALB(encoding=3, text=[tags.show])])
    id3.setall("TXXX", [TXXX(encoding=3, desc=SYNTHETIC_FRAME, text=[tags.provenance])])
    id3.delall("CHAP")
    id3.delall("CTOC")
    total_ms = max(0, round(duration_sec * 1000))
    ids = [f"chp{i}" for i in range(len(chapters))]
    for i, (title, start) in enumerate(chapters):
        end = chapters[i + 1][1] if i + 1 < len(chapters) else duration_sec
        id3.add(
            CHAP(
                element_id=ids[i],
                start_time=min(total_ms, max(0, round(start * 1000))),
                end_time=min(total_ms, max(0, round(end * 1000))),
                sub_frames=[TIT2(encoding=3, text=[title])],
            )
        )
    if ids:
        id3.add(
            CTOC(
                element_id="toc",
                flags=lib.CTOCFlags.TOP_LEVEL | lib.CTOCFlags.ORDERED,
                child_element_ids=ids,
                sub_frames=[TIT2(encoding=3, text=["Chapters"])],
            )
        )
    id3.delall("APIC")
    if tags.cover is not None:
        mime = dict(COVERS).get(tags.cover.name.lower(), "image/jpeg")
        id3.add(APIC(encoding=3, mime=mime, type=3, desc="cover", data=tags.cover.read_bytes()))
    id3.save(str(path), v2_version=4)
