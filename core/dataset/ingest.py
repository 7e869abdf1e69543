"""Ingest: long recordings in, conditioned and quality-checked 5-15 s utterances out.

Per file: import, stream-decode to a temporary file (memory stays bounded), plan, condition,
measure QC and store all of a recording's segments in one catalog transaction. Then the
analysis passes (transcription, speaker filter) over segments still lacking results, committed
batch by batch. Idempotent and resumable: a kill leaves nothing half-stored, and results do
not depend on where a run was interrupted. Honest reporting: the stored length is the decoded
length, a short-decoding file is marked truncated (:data:`TRUNCATED_NOTE`), and every skipped
analysis stage is a :class:`SkippedStage` naming the setting that makes it run.

Details: docs/DATASET.md, "Stages"."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import BinaryIO

import numpy as np
import numpy.typing as npt

from core.audio.conditioning import condition, hum_notch
from core.audio.io import SUPPORTED_EXTENSIONS, downmix, iter_blocks, probe, read, write_wav
from core.audio.types import FloatArray
from core.catalog import Catalog
from core.dataset.align import align_to_reference
from core.dataset.importer import import_recording
from core.dataset.qc import (
    NO_TEXT_FLAG,
    OTHER_SPEAKER_FLAG,
    ClipCounter,
    bandwidth_hz,
    flags_for,
    measure,
)
from core.dataset.segment import (
    PlanLimits,
    PlanReport,
    TimeSpan,
    VadStream,
    plan_adaptive,
    plan_from_cues,
)
from core.dataset.subtitles import read_subtitles, read_text
from core.errors import ModelError, PodforgeError
from core.records import Recording, Segment, SegmentUpdate
from core.tempfiles import clean_stale, workspace_tempdir
from core.voices.folder import anchor_paths
from core.workspace import Workspace

log = logging.getLogger(__name__)

VAD_RATE = 16000
ANALYSIS_BATCH = 16
TRUNCATED_NOTE = "truncated"
"""How ``Recording.error`` starts for a recording that decoded to less than its header said."""
TRUNCATED_MIN_SEC = 0.5
TRUNCATED_MIN_SHARE = 0.02
"""A file is truncated when it decodes to less than its header's length by more than both."""


@dataclass(frozen=True)
class IngestOptions:
    """What an ingest run does beyond segmentation and QC."""

    transcribe: bool = True
    speaker_filter: bool = True


@dataclass(frozen=True)
class IngestProgress:
    """One progress report: ``stage`` of ``file`` is ``done`` of ``total`` units."""

    stage: str  # files | decode | segment | transcribe | speaker | done
    file: str
    done: float
    total: float


Reporter = Callable[[IngestProgress], None]


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
    truncated: bool = False  # decoded to less than its header announced
    note: str | None = None  # one line: truncation, or whose recording it already is
    segmentation: str | None = None  # what adaptive segmentation did to too-long regions


@dataclass(frozen=True)
class SkippedStage:
    """An analysis stage that did not run for some segments, why, and what makes it run."""

    stage: str  # transcription | speaker filter
    segments: int  # how many segments are left without its results
    reason: str  # one line
    fix: str  # the setting (or option) that makes it run

    def line(self) -> str:
        return (
            f"{self.stage} skipped for {self.segments} segment(s): {self.reason}; fix: {self.fix}"
        )


@dataclass
class IngestSummary:
    """What an ingest run did, file by file, and how long it took."""

    speaker: str
    files: list[FileResult] = field(default_factory=list)
    transcribed: int = 0
    speaker_checked: int = 0
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)
    skipped_stages: list[SkippedStage] = field(default_factory=list)

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
    *,
    cutter: Cutter | None = None,
    analysers: Analysers | None = None,
) -> IngestSummary:
    """Ingest ``paths`` for ``speaker``. A bad file is recorded in the summary; the rest go on.

    ``cutter`` (default: file by file in this process) cuts the imported recordings that
    are not segmented yet elsewhere, e.g. on a Ray cluster (:mod:`core.cluster.ingest`), and
    ``analysers`` runs the transcription and speaker-filter batches (:class:`Analysers`);
    this process still imports, writes every file and commits the catalog, in file order."""
    started = time.perf_counter()
    ws.speaker(speaker)
    emit = report or (lambda _p: None)
    summary = IngestSummary(speaker=speaker)
    files, problems = discover(paths)
    summary.files += [FileResult(source=p.split(":")[0], error=p) for p in problems]
    for stale in clean_stale(ws.root):
        log.info("removed %s, left by a podforge process that was killed", stale)
    with Catalog.open(ws.catalog_path) as catalog:
        emit(IngestProgress("files", "", 0, len(files)))
        if cutter is None:
            for number, path in enumerate(files, 1):
                summary.files.append(_ingest_file(ws, catalog, path, speaker, emit))
                emit(IngestProgress("files", path.name, number, len(files)))
        else:
            summary.files += _ingest_spread(ws, catalog, files, speaker, emit, cutter)
        analyse(ws, catalog, speaker, options, emit, summary, analysers or LOCAL_ANALYSERS)
        _count_flags(catalog, speaker, summary.files)
        summary.seconds = time.perf_counter() - started
        catalog.set_meta(f"last_ingest:{speaker}", _summary_json(summary))
    emit(IngestProgress("done", "", 1, 1))
    return summary


def _ingest_file(
    ws: Workspace, catalog: Catalog, path: Path, speaker: str, emit: Reporter
) -> FileResult:
    """Import and segment one file; a failure is recorded in the result, never raised."""
    result, rec = _import_file(ws, catalog, path, speaker)
    if rec is None:
        return result
    try:
        _store_cut(ws, catalog, rec, result, cut_recording(ws, rec, emit))
    except PodforgeError as exc:
        _fail_file(ws, catalog, rec, result, path, exc)
        return result
    return _file_outcome(catalog, rec, result)


def _ingest_spread(
    ws: Workspace,
    catalog: Catalog,
    files: Sequence[Path],
    speaker: str,
    emit: Reporter,
    cutter: Cutter,
) -> list[FileResult]:
    """Import every file, let ``cutter`` cut the recordings that need it, store each cut
    (its WAVs, then one catalog transaction) in file order as it comes back."""
    imported = [(path, *_import_file(ws, catalog, path, speaker)) for path in files]
    todo = [(path, result, rec) for path, result, rec in imported if rec is not None]
    for number, ((path, result, rec), cut) in enumerate(
        zip(todo, cutter(ws, [rec for _, _, rec in todo]), strict=True), 1
    ):
        try:
            if isinstance(cut, PodforgeError):
                raise cut
            _store_cut(ws, catalog, rec, result, cut)
        except PodforgeError as exc:
            _fail_file(ws, catalog, rec, result, path, exc)
        else:
            _file_outcome(catalog, rec, result)
        emit(IngestProgress("files", path.name, number, len(todo)))
    return [result for _, result, _ in imported]


def _import_file(
    ws: Workspace, catalog: Catalog, path: Path, speaker: str
) -> tuple[FileResult, Recording | None]:
    """Import one file; the recording when it still needs cutting, else ``None`` (failed,
    someone else's, or already segmented: the result says which)."""
    result = FileResult(source=str(path))
    try:
        rec = import_recording(ws, catalog, path, speaker).recording
    except PodforgeError as exc:
        result.error = str(exc)
        log.warning("ingest: %s", result.error)
        return result, None
    result.recording_id, result.duration_sec = rec.id, rec.duration_sec
    if rec.speaker != speaker:
        # The same content is in the catalog already, as someone else's recording.
        result.skipped = True
        result.note = (
            f"already ingested for speaker '{rec.speaker}' (as {rec.original_name}); "
            f"not added to '{speaker}'"
        )
        return result, None
    if rec.state == "segmented":
        result.skipped = True
        if rec.original_name != path.name:
            result.note = f"already ingested (as {rec.original_name})"
        _file_outcome(catalog, rec, result)
        return result, None
    return result, rec


def _store_cut(
    ws: Workspace, catalog: Catalog, rec: Recording, result: FileResult, cut: CutRecording
) -> None:
    store_cut(ws, catalog, rec, cut)
    if cut.plan is not None and cut.plan.long_regions:
        result.segmentation = cut.plan.summary()


def _fail_file(
    ws: Workspace,
    catalog: Catalog,
    rec: Recording,
    result: FileResult,
    path: Path,
    exc: PodforgeError,
) -> None:
    # Name the file the user gave, not its copy in raw/.
    result.error = str(exc).replace(str(ws.root / rec.path), str(path))
    log.warning("ingest: %s", result.error)
    catalog.set_recording_state(rec.id or 0, "failed", result.error)


def _file_outcome(catalog: Catalog, rec: Recording, result: FileResult) -> FileResult:
    """Fill in ``result`` from the stored recording and its segments."""
    rec = catalog.recording(rec.id or 0)
    result.duration_sec = rec.duration_sec
    if is_truncated(rec):
        result.truncated = True
        result.note = rec.error
    segments = catalog.segments(recording_id=rec.id)
    result.segments = len(segments)
    result.flagged = sum(1 for s in segments if s.flags)
    return result


def is_truncated(rec: Recording) -> bool:
    """True when ``rec`` decoded to less than its header announced (see :data:`TRUNCATED_NOTE`)."""
    return rec.state == "segmented" and (rec.error or "").startswith(TRUNCATED_NOTE)


def _count_flags(catalog: Catalog, speaker: str, files: Sequence[FileResult]) -> None:
    """Each file's flagged count as the flags stand now (after the analysis passes)."""
    flagged: dict[int, int] = {}
    for s in catalog.segments(speaker=speaker):
        if s.flags:
            flagged[s.recording_id] = flagged.get(s.recording_id, 0) + 1
    for f in files:
        if f.recording_id is not None and not f.error and f.segments:
            f.flagged = flagged.get(f.recording_id, 0)


def truncation_note(decoded_sec: float, header_sec: float) -> str | None:
    """The note for a file that decoded to ``decoded_sec`` while its header said ``header_sec``
    (``None`` when the difference is within a codec's padding and the headers' rounding)."""
    missing = header_sec - decoded_sec
    if missing <= max(TRUNCATED_MIN_SEC, TRUNCATED_MIN_SHARE * header_sec):
        return None
    return (
        f"{TRUNCATED_NOTE}: only {decoded_sec:.1f} s decoded of the {header_sec:.1f} s its header "
        "announces (the file is cut short or damaged); export the original again to keep the rest"
    )


@dataclass
class CutRecording:
    """One recording cut into conditioned, QC'd segments, not stored yet.

    ``audio`` holds each segment's conditioned samples when the cut was made without
    writing (on a cluster worker); it is empty when the WAVs are written already."""

    segments: list[Segment]
    decoded_sec: float
    note: str | None  # the truncation note (:func:`truncation_note`)
    plan: PlanReport | None  # what adaptive segmentation did (None: planned from cues)
    audio: list[npt.NDArray[np.float32]] = field(default_factory=list)


Cutter = Callable[[Workspace, Sequence[Recording]], Iterator[CutRecording | PodforgeError]]
"""Cuts recordings elsewhere (:func:`cut_recording` for each, ``write=False``), yielding one
cut or the one-line error of each recording, in the order given."""


def segment_recording(
    ws: Workspace, catalog: Catalog, rec: Recording, emit: Reporter
) -> PlanReport | None:
    """Cut one imported recording into conditioned, QC'd segments and store them.

    Returns what adaptive segmentation did (``None`` for a recording planned from its
    subtitle cues)."""
    cut = cut_recording(ws, rec, emit)
    store_cut(ws, catalog, rec, cut)
    return cut.plan


def cut_recording(
    ws: Workspace, rec: Recording, emit: Reporter, *, write: bool = True
) -> CutRecording:
    """Decode, plan, condition and measure one imported recording.

    With ``write`` the segments' WAVs are written into ``segments/`` (atomically, each);
    without, their samples come back in :attr:`CutRecording.audio` and nothing but the
    decoding's temporary folder in ``<workspace>/.tmp/`` is written."""
    assert rec.id is not None  # nosec B101  # narrowing: a stored recording
    targets = ws.settings.audio
    sr = targets.sample_rate
    raw_path = ws.root / rec.path
    sidecar = ws.root / rec.transcript if rec.transcript else None
    cues = read_subtitles(sidecar) if sidecar and sidecar.suffix in (".srt", ".vtt") else None
    plan: PlanReport | None = None
    vad = (
        None
        if cues
        else VadStream(ws.settings.segmentation.vad_mode, ws.settings.segmentation.frame_ms)
    )
    header_sec = probe(raw_path).duration_sec
    with workspace_tempdir(ws.root, "ingest") as tmp:
        pcm_path = tmp / "audio.f32"
        total, native, clips = _decode_to_disk(raw_path, pcm_path, sr, vad, rec, emit)
        decoded_sec = native / rec.sample_rate
        audio = (
            np.memmap(pcm_path, dtype=np.float32, mode="r") if total else np.zeros(0, np.float32)
        )
        total_sec = len(audio) / sr
        limits = PlanLimits(
            min_sec=targets.min_segment_sec,
            max_sec=targets.max_segment_sec,
            margin_sec=targets.margin_ms / 1000.0,
        )
        if cues:
            spans = plan_from_cues(cues, total_sec, limits=limits)
        else:
            assert vad is not None  # nosec B101  # narrowing: made without cues
            spans, plan = plan_adaptive(
                vad.finish(), audio, sr, vad_mode=ws.settings.segmentation.vad_mode,
                frame_ms=ws.settings.segmentation.frame_ms, limits=limits,
            )  # fmt: skip
            log.info("ingest: %s: %s", rec.original_name, plan.summary())
        pieces = _cut_segments(ws, rec, spans, audio, clips, emit, write=write)
        del audio  # the memory map, before its file is removed
    note = truncation_note(decoded_sec, header_sec)
    if note:
        log.info("ingest: %s: %s", rec.original_name, note)
    return CutRecording(
        segments=[segment for segment, _ in pieces],
        decoded_sec=round(decoded_sec, 3),
        note=note,
        plan=plan,
        audio=[] if write else [samples for _, samples in pieces],
    )


def store_cut(ws: Workspace, catalog: Catalog, rec: Recording, cut: CutRecording) -> None:
    """Write the WAVs a cut brought back (if any), then store its segments in one catalog
    transaction (replacing the recording's earlier ones)."""
    assert rec.id is not None  # nosec B101  # narrowing: a stored recording
    for segment, samples in zip(cut.segments, cut.audio, strict=True) if cut.audio else ():
        write_wav(ws.root / segment.audio, samples, segment.sample_rate,
                  subtype=ws.settings.audio.subtype)  # fmt: skip
    catalog.replace_segments(rec.id, cut.segments, duration_sec=cut.decoded_sec, note=cut.note)


def _cut_segments(
    ws: Workspace,
    rec: Recording,
    spans: Sequence[TimeSpan],
    audio: npt.NDArray[np.float32],
    clips: ClipCounter,
    emit: Reporter,
    *,
    write: bool,
) -> list[tuple[Segment, npt.NDArray[np.float32]]]:
    """Condition, measure (and with ``write``, write) every span of ``audio``, on every core.

    Segments are independent and numpy/scipy/soxr release the GIL; ``map`` keeps the
    order, so the result does not depend on the number of threads.
    """
    sr = ws.settings.audio.sample_rate
    stem = Path(rec.path).stem

    def one(item: tuple[int, TimeSpan]) -> tuple[Segment, npt.NDArray[np.float32]]:
        index, span = item
        cut = np.array(audio[int(span.start_sec * sr) : int(span.end_sec * sr)], np.float32)
        rel = f"segments/{rec.speaker}/{stem}-{index:04d}.wav"
        clipped = clips.ratio(span.start_sec, span.end_sec)
        segment, conditioned = _condition_and_measure(ws, rec, span, cut, rel, clipped)
        if write:
            write_wav(ws.root / rel, conditioned, sr, subtype=ws.settings.audio.subtype)
            return segment, np.zeros(0, np.float32)
        return segment, conditioned

    pieces: list[tuple[Segment, npt.NDArray[np.float32]]] = []
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        for index, piece in enumerate(pool.map(one, enumerate(spans, 1)), 1):
            pieces.append(piece)
            emit(IngestProgress("segment", rec.original_name, index, len(spans)))
    return pieces


def _decode_to_disk(
    raw_path: Path, pcm_path: Path, sr: int, vad: VadStream | None, rec: Recording, emit: Reporter
) -> tuple[int, int, ClipCounter]:
    """Stream the recording to ``pcm_path`` (mono float32 at ``sr``).

    Decodes at the native rate and channel count so that clipping is counted before the
    downmix and resampling blur it; the VAD gets a 16 kHz copy. Returns the frames written
    (at ``sr``), the frames decoded (at the file's rate) and the clip counts.
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
    native_frames = 0

    def push(out: npt.NDArray[np.float32], fh: BinaryIO) -> None:
        nonlocal frames
        fh.write(np.ascontiguousarray(out, dtype=np.float32).tobytes())
        frames += len(out)
        if vad is not None and to_vad is not None:
            vad.feed(to_vad.resample_chunk(out))

    with pcm_path.open("wb") as fh:
        for block in iter_blocks(raw_path, mono=False, block_sec=30.0):
            native = block.reshape(len(block), -1)
            native_frames += len(native)
            clips.feed(native)
            mono = downmix(native)
            push(to_sr.resample_chunk(mono) if to_sr is not None else mono, fh)
            emit(IngestProgress("decode", rec.original_name, frames / sr, rec.duration_sec))
        if to_sr is not None:
            push(to_sr.resample_chunk(np.zeros(0, np.float32), last=True), fh)
        if vad is not None and to_vad is not None:
            vad.feed(to_vad.resample_chunk(np.zeros(0, np.float32), last=True))
    clips.finish()
    return frames, native_frames, clips


def _condition_and_measure(
    ws: Workspace,
    rec: Recording,
    span: TimeSpan,
    cut: npt.NDArray[np.float32],
    rel: str,
    clipped: float,
) -> tuple[Segment, npt.NDArray[np.float32]]:
    """Condition one cut (DC removed, optional hum notch, loudness + true-peak ceiling),
    measure its QC (``clipped`` comes from the native-rate count); the segment to be
    stored at ``rel`` and its conditioned samples."""
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
    flags = flags_for(qc, ws.settings.qc, duration, targets, bandwidth=bandwidth_hz(cut, sr))
    if not span.text:
        flags = (*flags, NO_TEXT_FLAG)
    segment = Segment(
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
    return segment, conditioned.audio


# -- analysis passes ---------------------------------------------------------------


BatchTexts = Callable[[Sequence[Sequence[Path]]], Iterator[list[str]]]
"""Batches of segment files -> each batch's transcripts, in order (called once per pass:
a cluster's actors live as long as the returned iterator)."""
BatchEmbeddings = Callable[[Sequence[Sequence[Path]]], Iterator[FloatArray]]
"""Batches of segment files -> each batch's speaker embeddings ``(n, dim)``, in order."""


@dataclass(frozen=True)
class Analysers:
    """Where the analysis passes run their batches. Each factory loads its model for ``ws``
    (a one-line :class:`~core.errors.ModelError` when it cannot: the stage is then skipped)
    and returns the function that runs batches: in this process (:data:`LOCAL_ANALYSERS`)
    or on a cluster (:func:`core.cluster.analysis.ray_analysers`). The driver writes every
    result to the catalog either way."""

    transcriber: Callable[[Workspace], BatchTexts]
    embedder: Callable[[Workspace], BatchEmbeddings]


def _local_transcriber(ws: Workspace) -> BatchTexts:
    from core.models.asr import load_asr

    model = load_asr(ws.settings.models.asr, device=ws.settings.models.device)

    def run(batches: Sequence[Sequence[Path]]) -> Iterator[list[str]]:
        for batch in batches:
            clips = [read(p, target_rate=VAD_RATE)[0] for p in batch]
            yield [t.text.strip() for t in model.transcribe_many(clips, language="en")]

    return run


def _local_embedder(ws: Workspace) -> BatchEmbeddings:
    from core.models.speaker import load_speaker_encoder

    encoder = load_speaker_encoder(ws.settings.models.speaker, device=ws.settings.models.device)

    def run(batches: Sequence[Sequence[Path]]) -> Iterator[FloatArray]:
        for batch in batches:
            yield encoder.embed_many([read(p, target_rate=VAD_RATE)[0] for p in batch])

    return run


LOCAL_ANALYSERS = Analysers(_local_transcriber, _local_embedder)


def analyse(
    ws: Workspace,
    catalog: Catalog,
    speaker: str,
    options: IngestOptions,
    emit: Reporter,
    summary: IngestSummary | None = None,
    analysers: Analysers = LOCAL_ANALYSERS,
) -> None:
    """Transcribe and speaker-check the segments of ``speaker`` that still lack results
    (their model batches run where ``analysers`` says).

    Each stage runs on its own: a model that cannot be loaded skips that stage only. A
    stage that leaves segments without its results, because it is turned off, its model
    is missing or there is nothing to compare with, is recorded in
    ``summary.skipped_stages`` with the setting that makes it run.
    """
    report = summary if summary is not None else IngestSummary(speaker=speaker)

    def untranscribed() -> list[Segment]:
        return [s for s in catalog.segments(speaker=speaker) if not s.text_source]

    def unchecked() -> list[Segment]:
        return [s for s in catalog.segments(speaker=speaker) if s.qc.similarity is None]

    def skip(stage: str, left: int, exc: PodforgeError, key: str, value: str) -> None:
        fix = (
            f'set [models] {key} in workspace.toml (now "{value}") to a model that loads here: '
            'a downloaded one, a local folder or "tiny"'
            if isinstance(exc, ModelError)
            else "correct what the message names, then run the ingest again"
        )
        report.skipped_stages.append(SkippedStage(stage, left, str(exc).rstrip("."), fix))
        log.info("ingest: %s", report.skipped_stages[-1].line())

    todo = untranscribed()
    if todo and not options.transcribe:
        off, fix = "turned off for this run (--no-asr)", "run the ingest again without --no-asr"
        report.skipped_stages.append(SkippedStage("transcription", len(todo), off, fix))
    elif todo:
        try:
            report.transcribed = transcribe_segments(ws, catalog, todo, emit, analysers)
        except PodforgeError as exc:
            skip("transcription", len(untranscribed()), exc, "asr", ws.settings.models.asr)
    todo = unchecked()
    if todo and not options.speaker_filter:
        off = "turned off for this run (--no-speaker-filter)"
        fix = "run the ingest again without --no-speaker-filter"
        report.skipped_stages.append(SkippedStage("speaker filter", len(todo), off, fix))
    elif todo:
        segments = catalog.segments(speaker=speaker)
        try:
            done = check_speaker(ws, catalog, speaker, segments, todo, emit, analysers)
        except PodforgeError as exc:
            skip("speaker filter", len(unchecked()), exc, "speaker", ws.settings.models.speaker)
        else:
            report.speaker_checked = done
            if not done:
                report.skipped_stages.append(
                    SkippedStage(
                        "speaker filter",
                        len(todo),
                        f"no anchor clips for '{speaker}' (no clean 3-15 s segment yet)",
                        f"put reference clips in voices/{speaker}/anchors/*.wav",
                    )
                )


def transcribe_segments(
    ws: Workspace,
    catalog: Catalog,
    todo: Sequence[Segment],
    emit: Reporter,
    analysers: Analysers = LOCAL_ANALYSERS,
) -> int:
    """ASR for segments without text; ``.txt`` sidecars replace ASR words by aligned text."""
    run = analysers.transcriber(ws)
    references = _txt_references(ws, catalog, todo)
    done = 0
    batches = list(_batches(todo, ANALYSIS_BATCH))
    paths = [[ws.root / s.audio for s in batch] for batch in batches]
    for batch, texts in zip(batches, run(paths), strict=True):
        catalog.update_analysis(
            [_text_update(seg, text, "asr") for seg, text in zip(batch, texts, strict=True)]
        )
        done += len(batch)
        emit(IngestProgress("transcribe", ws.settings.models.asr, done, len(todo)))
    for recording_id, reference in references.items():
        segs = catalog.segments(recording_id=recording_id)
        aligned = align_to_reference([s.text for s in segs], reference)
        catalog.update_analysis(
            [
                _text_update(s, text, "txt")
                for s, text in zip(segs, aligned, strict=True)
                if s.text_source == "asr"
            ]
        )
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
    analysers: Analysers = LOCAL_ANALYSERS,
) -> int:
    """ECAPA cosine of each segment to the speaker's anchors; flags segments below threshold."""
    from core.models.speaker import similarity_to_anchors

    run = analysers.embedder(ws)
    anchor_files = anchor_paths(ws, speaker, everyone)
    if not anchor_files:
        return 0
    threshold = ws.settings.qc.min_speaker_similarity
    done = 0
    batches = list(_batches(todo, ANALYSIS_BATCH))
    results = run([anchor_files, *([ws.root / s.audio for s in batch] for batch in batches)])
    anchors = next(results)  # the anchors' batch first, then the segments'
    for batch, embeddings in zip(batches, results, strict=True):
        scores = similarity_to_anchors(embeddings, anchors)
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
        emit(IngestProgress("speaker", speaker, done, len(todo)))
    return done


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


def _text_update(seg: Segment, text: str, source: str) -> SegmentUpdate:
    """``seg``'s new text from ``source`` (``asr`` or ``txt``); a segment given words loses
    its no-text flag."""
    flags = _without(seg.flags, NO_TEXT_FLAG) if text else None
    return SegmentUpdate(seg.id or 0, text=text, text_source=source, flags=flags)


def _batches(items: Sequence[Segment], size: int) -> Iterable[Sequence[Segment]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _summary_json(summary: IngestSummary) -> str:
    import json
    from dataclasses import asdict

    data = asdict(summary)
    data["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return json.dumps(data)
