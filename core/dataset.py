"""The training set: deterministic train/val/test splits and exports of accepted segments.

Splits are made per speaker over *units* so that near-identical audio never straddles two
splits: a unit is a whole recording when the speaker has at least three recordings, and
otherwise a block of consecutive segments of about a minute within a recording (recorded in
the export's ``split_note``). Units are ordered by a hash of the seed and the unit's key,
then test and val each take units from the end of that order until they hold 10 % of the
speaker's accepted duration (at least one unit each when there are three or more units);
the rest is train. The same catalog and seed give the same splits.

Export formats (``exports/<name>/``):

- ``jsonl``: ``{train,val,test}/metadata.jsonl`` + ``{split}/wavs/*.wav``; one DESIGN.md
  segment record per line, ``audio`` relative to the split folder.
- ``ljspeech``: ``wavs/*.wav`` + ``metadata.csv`` (``id|text|text``, all splits) and
  ``metadata_{train,val,test}.csv``.
- ``audiofolder``: the Hugging Face layout, ``{train,validation,test}/`` with the audio and a
  ``metadata.jsonl`` whose ``file_name`` column names it.

An export is built beside its target and swapped in at the end, so a reader never sees a
half-written export; segment files are hard-linked when the file system allows.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from core.atomic import swap_in_folder
from core.catalog import Catalog
from core.errors import ExportError
from core.records import Recording, Segment
from core.workspace import Workspace

Split = Literal["train", "val", "test"]
SPLITS: tuple[Split, ...] = ("train", "val", "test")
FORMATS = ("jsonl", "ljspeech", "audiofolder")
BLOCK_SECONDS = 60.0
HELD_OUT_SHARE = 0.10
MIN_RECORDINGS_FOR_RECORDING_SPLIT = 3


@dataclass
class ExportResult:
    folder: Path
    format: str
    counts: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    skipped_no_text: int = 0
    split_note: str = ""


def assign_splits(
    segments: Sequence[Segment], recordings: dict[int, Recording], seed: int
) -> tuple[dict[int, Split], str]:
    """Map each segment id to its split; also a note on how units were formed."""
    by_speaker: dict[str, list[Segment]] = defaultdict(list)
    for s in segments:
        by_speaker[s.speaker].append(s)
    out: dict[int, Split] = {}
    notes = []
    for speaker, segs in sorted(by_speaker.items()):
        n_recordings = len({s.recording_id for s in segs})
        by_recording = n_recordings >= MIN_RECORDINGS_FOR_RECORDING_SPLIT
        if not by_recording:
            notes.append(
                f"{speaker}: {n_recordings} recording(s), fewer than "
                f"{MIN_RECORDINGS_FOR_RECORDING_SPLIT}: split by ~{BLOCK_SECONDS:.0f} s blocks "
                "within recordings"
            )
        units = _units(segs, recordings, by_recording)
        ordered = sorted(units, key=lambda key: _hash(seed, key))
        total = sum(s.duration_sec for key in ordered for s in units[key])
        chosen: dict[str, Split] = {}
        # Test, then val, take units from the end of the order, always leaving one unit for
        # each split still to fill; with fewer than three units, test (then val) stays empty.
        held_out: tuple[tuple[Split, int], ...] = (("test", 2), ("val", 1))
        for split, keep in held_out:
            held = 0.0
            while len(ordered) > keep and (held == 0.0 or held < HELD_OUT_SHARE * total):
                key = ordered.pop()
                chosen[key] = split
                held += sum(s.duration_sec for s in units[key])
        for key in ordered:
            chosen[key] = "train"
        for key, split in chosen.items():
            for s in units[key]:
                if s.id is not None:
                    out[s.id] = split
    return out, "; ".join(notes)


def _units(
    segs: Sequence[Segment], recordings: dict[int, Recording], by_recording: bool
) -> dict[str, list[Segment]]:
    units: dict[str, list[Segment]] = defaultdict(list)
    for s in sorted(segs, key=lambda s: (s.recording_id, s.start_sec)):
        sha = recordings[s.recording_id].sha256
        key = sha if by_recording else f"{sha}:{int(s.start_sec // BLOCK_SECONDS)}"
        units[key].append(s)
    return units


def _hash(seed: int, key: str) -> str:
    return hashlib.sha256(f"{seed}:{key}".encode()).hexdigest()


def segment_record(seg: Segment, rec: Recording, audio: str, split: str | None) -> dict[str, Any]:
    """The DESIGN.md export record of one segment."""
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
    seed: int = 42,
    name: str | None = None,
    speaker: str | None = None,
) -> ExportResult:
    """Export accepted segments (with text) to ``exports/<name>/`` in ``fmt``."""
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r}; use one of {', '.join(FORMATS)}")
    with Catalog.open(ws.catalog_path) as catalog:
        accepted = catalog.segments(status="accepted", speaker=speaker)
        usable = [s for s in accepted if s.text.strip()]
        if not usable:
            raise ExportError(
                f"{ws.root}: no accepted segments with a transcript to export; review some "
                f"first (or `podforge accept {ws.root} --passing`)"
            )
        recordings = {r.id: r for r in catalog.recordings() if r.id is not None}
        splits, note = assign_splits(usable, recordings, seed)
        catalog.set_splits([(s.id, splits.get(s.id)) for s in accepted if s.id is not None])
    result = ExportResult(
        folder=ws.exports_dir / (name or fmt),
        format=fmt,
        skipped_no_text=len(accepted) - len(usable),
        split_note=note,
    )
    with tempfile.TemporaryDirectory(prefix=f".{result.folder.name}.", dir=ws.exports_dir) as tmp:
        staging = Path(tmp) / "export"
        staging.mkdir()
        _WRITERS[fmt](ws, staging, usable, recordings, splits, result)
        swap_in_folder(staging, result.folder)
    return result


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
    for seg in segs:
        split = splits[seg.id or 0]
        stem = Path(seg.audio).stem
        _place(ws.root / seg.audio, out / "wavs" / f"{stem}.wav")
        text = " ".join(seg.text.replace("|", " ").split())
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
