"""Dataset exports: accepted segments in their stored splits, in three standard layouts.

Export formats (``exports/<name>/``):

- ``jsonl``: ``{train,val,test}/metadata.jsonl`` + ``{split}/wavs/*.wav``; one segment
  record (:func:`segment_record`) per line, ``audio`` relative to the split folder.
- ``ljspeech``: ``wavs/<id>.wav`` + ``metadata.csv`` (``id|text|text``, all splits) and
  ``metadata_{train,val,test}.csv``; exactly one record per line (:func:`ljspeech_id`,
  :func:`ljspeech_text`).
- ``audiofolder``: the Hugging Face layout, ``{train,validation,test}/`` with the audio and a
  ``metadata.jsonl`` whose ``file_name`` column names it.

An export is built beside its target and swapped in at the end
(:func:`core.atomic.swap_in_folder`, marked ``export``), so a reader never sees a
half-written export; segment files are hard-linked when the file system allows. ``<name>``
is a plain folder name (:func:`check_export_name`), and an existing folder is replaced only
when podforge made it.

Splits come from :mod:`core.dataset.splits` (:func:`~core.dataset.splits.ensure_splits`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.atomic import check_swap_target, swap_in_folder
from core.catalog import Catalog
from core.dataset.splits import _SPLIT_OF, SPLITS, Split, ensure_splits, usable
from core.errors import ExportError
from core.records import Recording, Segment
from core.workspace import Workspace

FORMATS = ("jsonl", "ljspeech", "audiofolder")
EXPORT_KIND = "export"
EXPORT_NAME = re.compile(r"(?!\.)[\w.\-]{1,100}")
LJSPEECH_FILES = {"wavs", "metadata.csv", *(f"metadata_{s}.csv" for s in SPLITS)}


@dataclass
class ExportResult:
    folder: Path
    format: str
    counts: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    skipped_no_text: int = 0
    split_note: str = ""
    warnings: list[str] = field(default_factory=list)
    """Lines for the user: a split far from 80/10/10, a ``--seed`` that no longer applies."""


def segment_record(seg: Segment, rec: Recording, audio: str, split: str | None) -> dict[str, Any]:
    """The export record of one segment (fields in docs/DATASET.md)."""
    q = seg.qc
    return {
        "audio": audio,
        "text": seg.text,
        "speaker": seg.speaker,
        "recording": rec.original_name,
        "start_sec": seg.start_sec,
        "end_sec": seg.end_sec,
        "duration_sec": seg.duration_sec,
        "sample_rate": seg.sample_rate,
        "bit_depth": seg.bit_depth,
        "num_channels": seg.num_channels,
        "qc": {
            "rms_db": q.rms_db,
            "snr_db": q.snr_db,
            "clipped": q.clipped,
            "hum_score": q.hum_score,
            "plosive_ratio": q.plosive_ratio,
            "lufs": q.lufs,
            "true_peak_db": q.true_peak_db,
        },
        "status": seg.status,
        "split": split,
    }


def export(
    ws: Workspace,
    fmt: str,
    *,
    seed: int | None = None,
    name: str | None = None,
    speaker: str | None = None,
) -> ExportResult:
    """Export accepted segments (with text) to ``exports/<name>/`` in ``fmt``.

    Each segment goes to its split stored in the catalog (:func:`ensure_splits` assigns the
    ones without one first; ``seed`` draws those only while the catalog has no split seed).
    ``name`` (default: ``fmt``) must be a plain folder name (:func:`check_export_name`); an
    existing ``exports/<name>/`` is replaced only when podforge made it (its
    ``.podforge-folder`` marker says ``export``, or it has an older podforge export's exact
    layout). Both are checked before anything, the catalog's splits included, is written.
    """
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r}; use one of {', '.join(FORMATS)}")
    folder = ws.exports_dir / (fmt if name is None else check_export_name(name))
    check_swap_target(folder, kind=EXPORT_KIND, parent=ws.exports_dir, adopt=is_unmarked_export)
    with Catalog.open(ws.catalog_path) as catalog:
        accepted = catalog.segments(status="accepted", speaker=speaker)
        if not any(usable(s) for s in accepted):
            raise ExportError(
                f"{ws.root}: no accepted segments with a transcript to export; review some "
                f"first (or `podforge accept {ws.root} --passing`)"
            )
        state = ensure_splits(catalog, speaker=speaker, seed=seed)
        accepted = catalog.segments(status="accepted", speaker=speaker)
        # (a segment accepted by another process since ensure_splits waits for the next export)
        ready = [s for s in accepted if usable(s) and s.split in _SPLIT_OF]
        recordings = {r.id: r for r in catalog.recordings() if r.id is not None}
    splits = {s.id: _SPLIT_OF[s.split or ""] for s in ready if s.id is not None}
    result = ExportResult(
        folder=folder,
        format=fmt,
        skipped_no_text=len(accepted) - len(ready),
        split_note="; ".join(state.notes),
        warnings=list(state.warnings),
    )
    with tempfile.TemporaryDirectory(prefix=f".{result.folder.name}.", dir=ws.exports_dir) as tmp:
        staging = Path(tmp) / "export"
        staging.mkdir()
        _WRITERS[fmt](ws, staging, ready, recordings, splits, result)
        swap_in_folder(
            staging, folder, kind=EXPORT_KIND, parent=ws.exports_dir, adopt=is_unmarked_export
        )
    return result


def check_export_name(name: str) -> str:
    """``name`` when it is a plain folder name for ``exports/`` (letters, digits, ``_``,
    ``-``, ``.``; not starting with ``.``; at most 100 characters), else :class:`ExportError`."""
    if not EXPORT_NAME.fullmatch(name):
        raise ExportError(
            f"export name {name!r} is not allowed: use a plain folder name inside exports/ "
            "(letters, digits, '_', '-', '.'; not starting with '.'; no '/'; at most 100 "
            "characters), e.g. --name alice-v2"
        )
    return name


def is_unmarked_export(folder: Path) -> bool:
    """True when ``folder`` has exactly the layout of an export written by a podforge that did
    not mark its folders yet (so that re-exporting over it keeps working)."""
    try:
        names = {p.name for p in folder.iterdir()}
    except OSError:
        return False
    if names == LJSPEECH_FILES:
        return (folder / "wavs").is_dir() and all((folder / n).is_file() for n in names - {"wavs"})
    for parts in ({"train", "val", "test"}, {"train", "validation", "test"}):
        if names == parts:
            return all((folder / n / "metadata.jsonl").is_file() for n in parts)
    return False


def _write_jsonl(
    ws: Workspace, out: Path, segs: Sequence[Segment], recs: dict[int, Recording],
    splits: dict[int, Split], result: ExportResult,
) -> None:  # fmt: skip
    lines: dict[str, list[str]] = {s: [] for s in SPLITS}
    for seg in segs:
        split = splits[seg.id or 0]
        audio = f"wavs/{Path(seg.audio).name}"
        _place(ws.root / seg.audio, out / split / audio)
        record = segment_record(seg, recs[seg.recording_id], audio, split)
        lines[split].append(json.dumps(record, ensure_ascii=False))
        _count(result, split, seg)
    for part, rows in lines.items():
        (out / part).mkdir(exist_ok=True)
        (out / part / "metadata.jsonl").write_text("".join(r + "\n" for r in rows), "utf-8")


def _write_ljspeech(
    ws: Workspace, out: Path, segs: Sequence[Segment], recs: dict[int, Recording],
    splits: dict[int, Split], result: ExportResult,
) -> None:  # fmt: skip
    rows: dict[str, list[str]] = {s: [] for s in SPLITS}
    used: set[str] = set()
    for seg in segs:
        split = splits[seg.id or 0]
        stem = ljspeech_id(Path(seg.audio).stem, used)
        _place(ws.root / seg.audio, out / "wavs" / f"{stem}.wav")
        text = ljspeech_text(seg.text)
        rows[split].append(f"{stem}|{text}|{text}")
        _count(result, split, seg)
    every = [row for part in SPLITS for row in rows[part]]
    (out / "metadata.csv").write_text("".join(r + "\n" for r in every), "utf-8")
    for part, lines in rows.items():
        (out / f"metadata_{part}.csv").write_text("".join(r + "\n" for r in lines), "utf-8")


def _write_audiofolder(
    ws: Workspace, out: Path, segs: Sequence[Segment], recs: dict[int, Recording],
    splits: dict[int, Split], result: ExportResult,
) -> None:  # fmt: skip
    folder_of = {"train": "train", "val": "validation", "test": "test"}
    lines: dict[str, list[str]] = {s: [] for s in SPLITS}
    for seg in segs:
        split = splits[seg.id or 0]
        name = Path(seg.audio).name
        _place(ws.root / seg.audio, out / folder_of[split] / name)
        record = segment_record(seg, recs[seg.recording_id], name, split)
        record["file_name"] = record.pop("audio")
        lines[split].append(json.dumps(record, ensure_ascii=False))
        _count(result, split, seg)
    for part, rows in lines.items():
        (out / folder_of[part]).mkdir(exist_ok=True)
        (out / folder_of[part] / "metadata.jsonl").write_text(
            "".join(r + "\n" for r in rows), "utf-8"
        )


def ljspeech_id(stem: str, used: set[str]) -> str:
    """An LJSpeech id (and wav name) for a segment file stem: every run of characters other
    than letters, digits, ``_``, ``-`` and ``.`` (``|``, line breaks, spaces...) becomes one
    ``_``; a clash with an id in ``used`` gets ``-2``, ``-3``...; the id is added to ``used``."""
    base = _UNSAFE_ID.sub("_", stem).lstrip(".") or "segment"
    found, n = base, 1
    while found in used:
        n += 1
        found = f"{base}-{n}"
    used.add(found)
    return found


def ljspeech_text(text: str) -> str:
    """A transcript as one LJSpeech field: ``|`` and control characters become spaces, and
    whitespace runs (line breaks included) one space."""
    cleaned = "".join(" " if c == "|" or unicodedata.category(c) == "Cc" else c for c in text)
    return " ".join(cleaned.split())


_UNSAFE_ID = re.compile(r"[^\w.\-]+")

_WRITERS = {"jsonl": _write_jsonl, "ljspeech": _write_ljspeech, "audiofolder": _write_audiofolder}


def _count(result: ExportResult, split: str, seg: Segment) -> None:
    result.counts[split] = result.counts.get(split, 0) + 1
    result.seconds[split] = result.seconds.get(split, 0.0) + seg.duration_sec


def _place(source: Path, target: Path) -> None:
    """Hard-link ``source`` at ``target`` (copy where links are impossible)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)
