"""Ingest: long recordings in, conditioned and quality-checked 5-15 s utterances out.

Per file: import the original into ``raw/`` (:mod:`core.importer`), stream-decode it to
the workspace rate (mono float32 spilled to a temporary file, so memory stays bounded for
a 3-hour file), plan utterances from its subtitle cues or from voice activity
(:mod:`core.segment`), condition each cut to the loudness targets (:mod:`core.loudness`),
measure QC (:mod:`core.qc`), write ``segments/<speaker>/<recording>-NNNN.wav`` and store all
of a recording's segments in one catalog transaction.

Then two analysis passes over the speaker's segments that still lack results: transcription
(faster-whisper, :mod:`core.transcribe`) for segments without subtitle text, and the speaker
filter (ECAPA, :mod:`core.speaker_id`). Both commit batch by batch.

Idempotent and resumable: a recording already segmented is skipped; a kill mid-recording
leaves no rows for it (its segment files are rewritten identically on the next run); the
analysis passes pick up what is missing, and their results do not depend on where a run
was interrupted (the speaker reference is computed from a deterministic choice of anchors).
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import BinaryIO

import numpy as np
import numpy.typing as npt

from core.align import align_to_reference
from core.audio import SUPPORTED_EXTENSIONS, downmix, iter_blocks, read, write_wav
from core.catalog import Catalog
from core.errors import PodforgeError
from core.importer import import_recording
from core.loudness import condition, hum_notch
from core.qc import ClipCounter, flags_for, measure
from core.records import Recording, Segment, SegmentUpdate
from core.segment import Span, VadStream, plan_from_cues, plan_from_vad
from core.subtitles import read_subtitles, read_text
from core.workspace import Workspace

log = logging.getLogger(__name__)

VAD_RATE = 16000
ANALYSIS_BATCH = 16
MAX_ANCHORS = 8
NO_TEXT_FLAG = "no_text"
OTHER_SPEAKER_FLAG = "other_speaker"


@dataclass(frozen=True)
class IngestOptions:
    """What an ingest run does beyond segmentation and QC."""

    transcribe: bool = True
    speaker_filter: bool = True


@dataclass(frozen=True)
class Progress:
    """One progress report: ``stage`` of ``file`` is ``done`` of ``total`` units."""

    stage: str  # files | decode | segment | transcribe | speaker | done
    file: str
    done: float
    total: float


Reporter = Callable[[Progress], None]


@dataclass
class FileResult:
    """The outcome of one input file."""

    source: str
    recording_id: int | None = None
    duration_sec: float = 0.0
    segments: int = 0
    flagged: int = 0
    skipped: bool = False  # already ingested
    error: str | None = None


@dataclass
class IngestSummary:
    """What an ingest run did, file by file, and how long it took."""

    speaker: str
    files: list[FileResult] = field(default_factory=list)
    transcribed: int = 0
    speaker_checked: int = 0
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)

    @property
    def failed(self) -> list[FileResult]:
        return [f for f in self.files if f.error]


def discover(paths: Iterable[Path | str]) -> tuple[list[Path], list[str]]:
    """Audio files named by ``paths`` (folders are searched recursively), and problems found."""
    found: list[Path] = []
    problems: list[str] = []
    for entry in map(Path, paths):
        if entry.is_dir():
            found += sorted(
                p
                for p in entry.rglob("*")
                if p.is_file() and p.suffix.lower() in SUPPORTED_EXTENSIONS
            )
        elif entry.is_file():
            found.append(entry)
        else:
            problems.append(f"{entry}: no such file or folder")
    unique = list(dict.fromkeys(p.resolve() for p in found))
    return unique, problems


def ingest(
    ws: Workspace,
    paths: Iterable[Path | str],
    speaker: str,
    options: IngestOptions = IngestOptions(),
    report: Reporter | None = None,
) -> IngestSummary:
    """Ingest ``paths`` for ``speaker``. A bad file is recorded in the summary; the rest go on."""
    started = time.perf_counter()
    ws.speaker(speaker)
    emit = report or (lambda _p: None)
    summary = IngestSummary(speaker=speaker)
    files, problems = discover(paths)
    summary.files += [FileResult(source=p.split(":")[0], error=p) for p in problems]
    with Catalog.open(ws.catalog_path) as catalog:
        emit(Progress("files", "", 0, len(files)))
        for number, path in enumerate(files, 1):
            summary.files.append(_ingest_file(ws, catalog, path, speaker, emit))
            emit(Progress("files", path.name, number, len(files)))
        try:
            analyse(ws, catalog, speaker, options, emit, summary)
        except PodforgeError as exc:
            summary.warnings.append(str(exc))
        summary.seconds = time.perf_counter() - started
        catalog.set_meta(f"last_ingest:{speaker}", _summary_json(summary))
    emit(Progress("done", "", 1, 1))
    return summary


def _ingest_file(
    ws: Workspace, catalog: Catalog, path: Path, speaker: str, emit: Reporter
) -> FileResult:
    """Import and segment one file; a failure is recorded in the result, never raised."""
    result = FileResult(source=str(path))
    try:
        rec = import_recording(ws, catalog, path, speaker).recording
    except PodforgeError as exc:
        result.error = str(exc)
        log.warning("ingest: %s", result.error)
        return result
    result.recording_id, result.duration_sec = rec.id, rec.duration_sec
    try:
        if rec.state == "segmented":
            result.skipped = True
        else:
            segment_recording(ws, catalog, rec, emit)
    except PodforgeError as exc:
        # Name the file the user gave, not its copy in raw/.
        result.error = str(exc).replace(str(ws.root / rec.path), str(path))
        log.warning("ingest: %s", result.error)
        catalog.set_recording_state(rec.id or 0, "failed", result.error)
        return result
    segments = catalog.segments(recording_id=rec.id)
    result.segments = len(segments)
    result.flagged = sum(1 for s in segments if s.flags)
    return result


def segment_recording(ws: Workspace, catalog: Catalog, rec: Recording, emit: Reporter) -> int:
    """Cut one imported recording into conditioned, QC'd segments; returns how many."""
    assert rec.id is not None
    targets = ws.settings.audio
    sr = targets.sample_rate
    raw_path = ws.root / rec.path
    sidecar = ws.root / rec.transcript if rec.transcript else None
    cues = read_subtitles(sidecar) if sidecar and sidecar.suffix in (".srt", ".vtt") else None
    vad = (
        None
        if cues
        else VadStream(ws.settings.segmentation.vad_mode, ws.settings.segmentation.frame_ms)
    )
    with tempfile.TemporaryDirectory(prefix="podforge-ingest-") as tmp:
        pcm_path = Path(tmp) / "audio.f32"
        total, clips = _decode_to_disk(raw_path, pcm_path, sr, vad, rec, emit)
        audio = (
            np.memmap(pcm_path, dtype=np.float32, mode="r") if total else np.zeros(0, np.float32)
        )
        total_sec = len(audio) / sr
        margin = targets.margin_ms / 1000.0
        if cues:
            spans = plan_from_cues(
                cues, total_sec, min_sec=targets.min_segment_sec,
                max_sec=targets.max_segment_sec, margin_sec=margin,
            )  # fmt: skip
        else:
            assert vad is not None
            spans = plan_from_vad(
                vad.finish(), total_sec, min_sec=targets.min_segment_sec,
                max_sec=targets.max_segment_sec, margin_sec=margin,
            )  # fmt: skip
        segments = _cut_segments(ws, rec, spans, audio, clips, emit)
    catalog.replace_segments(rec.id, segments)
    return len(segments)


def _cut_segments(
    ws: Workspace,
    rec: Recording,
    spans: Sequence[Span],
    audio: npt.NDArray[np.float32],
    clips: ClipCounter,
    emit: Reporter,
) -> list[Segment]:
    """Condition, measure and write every span of ``audio``, on every core.

    Segments are independent and numpy/scipy/soxr release the GIL; ``map`` keeps the
    order, so the result does not depend on the number of threads.
    """
    sr = ws.settings.audio.sample_rate
    stem = Path(rec.path).stem

    def one(item: tuple[int, Span]) -> Segment:
        index, span = item
        cut = np.array(audio[int(span.start_sec * sr) : int(span.end_sec * sr)], np.float32)
        rel = f"segments/{rec.speaker}/{stem}-{index:04d}.wav"
        clipped = clips.ratio(span.start_sec, span.end_sec)
        return _condition_and_measure(ws, rec, span, cut, rel, clipped)

    segments: list[Segment] = []
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        for index, segment in enumerate(pool.map(one, enumerate(spans, 1)), 1):
            segments.append(segment)
            emit(Progress("segment", rec.original_name, index, len(spans)))
    return segments


def _decode_to_disk(
    raw_path: Path, pcm_path: Path, sr: int, vad: VadStream | None, rec: Recording, emit: Reporter
) -> tuple[int, ClipCounter]:
    """Stream the recording to ``pcm_path`` (mono float32 at ``sr``).

    Decodes at the native rate and channel count so that clipping is counted before the
    downmix and resampling blur it; the VAD gets a 16 kHz copy.
    """
    import soxr

    clips = ClipCounter(rec.sample_rate, rec.channels)
    to_sr = (
        soxr.ResampleStream(rec.sample_rate, sr, 1, dtype="float32", quality="HQ")
        if rec.sample_rate != sr
        else None
    )
    to_vad = soxr.ResampleStream(sr, VAD_RATE, 1, dtype="float32", quality="HQ") if vad else None
    frames = 0

    def push(out: npt.NDArray[np.float32], fh: BinaryIO) -> None:
        nonlocal frames
        fh.write(np.ascontiguousarray(out, dtype=np.float32).tobytes())
        frames += len(out)
        if vad is not None and to_vad is not None:
            vad.feed(to_vad.resample_chunk(out))

    with pcm_path.open("wb") as fh:
        for block in iter_blocks(raw_path, mono=False, block_sec=30.0):
            native = block.reshape(len(block), -1)
            clips.feed(native)
            mono = downmix(native)
            push(to_sr.resample_chunk(mono) if to_sr is not None else mono, fh)
            emit(Progress("decode", rec.original_name, frames / sr, rec.duration_sec))
        if to_sr is not None:
            push(to_sr.resample_chunk(np.zeros(0, np.float32), last=True), fh)
        if vad is not None and to_vad is not None:
            vad.feed(to_vad.resample_chunk(np.zeros(0, np.float32), last=True))
    clips.finish()
    return frames, clips


def _condition_and_measure(
    ws: Workspace,
    rec: Recording,
    span: Span,
    cut: npt.NDArray[np.float32],
    rel: str,
    clipped: float,
) -> Segment:
    """Condition one cut (DC removed, optional hum notch, loudness + true-peak ceiling),
    measure its QC (``clipped`` comes from the native-rate count), write it."""
    targets = ws.settings.audio
    sr = targets.sample_rate
    work = (cut - np.mean(cut, dtype=np.float64)).astype(np.float32) if len(cut) else cut
    if ws.settings.segmentation.hum_notch:
        work = hum_notch(hum_notch(work, sr, 50.0), sr, 60.0)
    conditioned = condition(
        work, sr, target_lufs=targets.target_lufs, ceiling_dbtp=targets.true_peak_dbtp
    )
    qc = replace(measure(conditioned, sr, raw=cut), clipped=round(clipped, 6))
    duration = len(cut) / sr
    flags = flags_for(qc, ws.settings.qc, duration, targets)
    if not span.text:
        flags = (*flags, NO_TEXT_FLAG)
    write_wav(ws.root / rel, conditioned.audio, sr, subtype=targets.subtype)
    return Segment(
        recording_id=rec.id or 0,
        speaker=rec.speaker,
        audio=rel,
        start_sec=round(span.start_sec, 3),
        end_sec=round(span.end_sec, 3),
        duration_sec=round(duration, 3),
        sample_rate=sr,
        bit_depth=16 if targets.subtype == "PCM_16" else 24,
        num_channels=1,
        text=span.text,
        text_source="subtitle" if span.text else "",
        qc=qc,
        flags=flags,
    )


# -- analysis passes ---------------------------------------------------------------


def analyse(
    ws: Workspace,
    catalog: Catalog,
    speaker: str,
    options: IngestOptions,
    emit: Reporter,
    summary: IngestSummary | None = None,
) -> None:
    """Transcribe and speaker-check the segments of ``speaker`` that still lack results."""
    segments = catalog.segments(speaker=speaker)
    if options.transcribe:
        todo = [s for s in segments if not s.text_source]
        if todo:
            done = transcribe_segments(ws, catalog, todo, emit)
            if summary is not None:
                summary.transcribed = done
    if options.speaker_filter:
        segments = catalog.segments(speaker=speaker)
        todo = [s for s in segments if s.qc.similarity is None]
        if todo:
            done = check_speaker(ws, catalog, speaker, segments, todo, emit)
            if summary is not None:
                summary.speaker_checked = done


def transcribe_segments(
    ws: Workspace, catalog: Catalog, todo: Sequence[Segment], emit: Reporter
) -> int:
    """ASR for segments without text; ``.txt`` sidecars replace ASR words by aligned text."""
    from core.transcribe import load_asr

    model = load_asr(ws.settings.models.asr, device=ws.settings.models.device)
    references = _txt_references(ws, catalog, todo)
    done = 0
    for batch in _batches(todo, ANALYSIS_BATCH):
        clips = [read(ws.root / s.audio, target_rate=VAD_RATE)[0] for s in batch]
        transcripts = model.transcribe_many(clips, language="en")
        updates = []
        for seg, tr in zip(batch, transcripts, strict=True):
            updates.append(
                SegmentUpdate(seg.id or 0, text=tr.text.strip(), text_source="asr",
                              flags=_without(seg.flags, NO_TEXT_FLAG) if tr.text.strip() else None)
            )  # fmt: skip
        catalog.update_analysis(updates)
        done += len(batch)
        emit(Progress("transcribe", ws.settings.models.asr, done, len(todo)))
    for recording_id, reference in references.items():
        segs = catalog.segments(recording_id=recording_id)
        aligned = align_to_reference([s.text for s in segs], reference)
        catalog.update_analysis(
            [
                SegmentUpdate(s.id or 0, text=text, text_source="txt",
                              flags=_without(s.flags, NO_TEXT_FLAG) if text else None)
                for s, text in zip(segs, aligned, strict=True)
                if s.text_source == "asr"
            ]
        )  # fmt: skip
    return done


def _txt_references(ws: Workspace, catalog: Catalog, todo: Sequence[Segment]) -> dict[int, str]:
    out: dict[int, str] = {}
    for rec_id in sorted({s.recording_id for s in todo}):
        rec = catalog.recording(rec_id)
        if rec.transcript and rec.transcript.endswith(".txt"):
            out[rec_id] = " ".join(read_text(ws.root / rec.transcript))
    return out


def check_speaker(
    ws: Workspace,
    catalog: Catalog,
    speaker: str,
    everyone: Sequence[Segment],
    todo: Sequence[Segment],
    emit: Reporter,
) -> int:
    """ECAPA cosine of each segment to the speaker's anchors; flags segments below threshold."""
    from core.speaker_id import load_speaker_encoder, similarity_to_anchors

    encoder = load_speaker_encoder(ws.settings.models.speaker, device=ws.settings.models.device)
    anchor_clips = [read(p, target_rate=VAD_RATE)[0] for p in anchor_paths(ws, speaker, everyone)]
    if not anchor_clips:
        return 0
    anchors = encoder.embed_many(anchor_clips)
    threshold = ws.settings.qc.min_speaker_similarity
    done = 0
    for batch in _batches(todo, ANALYSIS_BATCH):
        clips = [read(ws.root / s.audio, target_rate=VAD_RATE)[0] for s in batch]
        scores = similarity_to_anchors(encoder.embed_many(clips), anchors)
        updates = []
        for seg, score in zip(batch, scores, strict=True):
            flags = _without(seg.flags, OTHER_SPEAKER_FLAG)
            if float(score) < threshold:
                flags = (*flags, OTHER_SPEAKER_FLAG)
            updates.append(
                SegmentUpdate(seg.id or 0, similarity=round(float(score), 4), flags=flags)
            )
        catalog.update_analysis(updates)
        done += len(batch)
        emit(Progress("speaker", speaker, done, len(todo)))
    return done


def anchor_paths(ws: Workspace, speaker: str, segments: Sequence[Segment]) -> list[Path]:
    """The speaker's reference clips: ``voices/<speaker>/anchors/*.wav`` when present, else the
    best-QC segments (no flags but a missing transcript, 3-15 s, highest SNR), chosen
    deterministically so an interrupted run and a whole run compare against the same anchors.
    """
    folder = ws.voices_dir / speaker / "anchors"
    given = sorted(folder.glob("*.wav")) if folder.is_dir() else []
    if given:
        return given
    clean = [
        s
        for s in segments
        if set(s.flags) <= {NO_TEXT_FLAG, OTHER_SPEAKER_FLAG} and 3.0 <= s.duration_sec <= 15.0
    ]
    clean.sort(key=lambda s: (-(s.qc.snr_db or 0.0), s.audio))
    return [ws.root / s.audio for s in clean[:MAX_ANCHORS]]


def accept_passing(ws: Workspace, speaker: str | None = None) -> int:
    """Accept every pending segment with no flag (recorded in the review history as ``cli``)."""
    with Catalog.open(ws.catalog_path) as catalog:
        ids = [
            s.id
            for s in catalog.segments(speaker=speaker, status="pending")
            if not s.flags and s.id is not None
        ]
        return catalog.set_status_many(ids, "accepted", source="cli")


def _without(flags: Sequence[str], flag: str) -> tuple[str, ...]:
    return tuple(f for f in flags if f != flag)


def _batches(items: Sequence[Segment], size: int) -> Iterable[Sequence[Segment]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _summary_json(summary: IngestSummary) -> str:
    import json
    from dataclasses import asdict

    data = asdict(summary)
    data["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return json.dumps(data)
