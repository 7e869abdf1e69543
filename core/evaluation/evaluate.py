"""How good a voice is: intelligibility, likeness and speed, measured on held-out text.

:func:`evaluate_voice` renders held-out texts with a voice, transcribes the renders back with
the workspace's ASR model (``models.asr``) and measures (:mod:`core.evaluation.scoring`):

* **WER / CER** of the transcripts against the texts, after
  :func:`~core.evaluation.text.normalise`, pooled over every item;
* **similarity**: the mean ECAPA cosine (``models.speaker``) between each render and the
  speaker's anchors, and as a reference the same for the real held-out recordings;
* **RTF**, the real-time factor: seconds spent synthesising over seconds of audio made.

Each aggregate is held to its gate (:mod:`core.evaluation.gates`); the report
(:mod:`core.evaluation.report`) is saved as ``voices/<speaker>/eval/<UTC time>.json``. This
module is the orchestration; the names below from the other modules are re-exported because
``core.evaluation`` (a module before it became a package) forwards its old names here. See
docs/EVALUATION.md.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from core.audio.types import FloatArray
from core.catalog import Catalog
from core.episodes.script import Line, Span
from core.errors import EvaluationError, at
from core.evaluation.gates import apply_gates
from core.evaluation.report import REPORT_SCHEMA, EvalItem, EvalReport, latest_report, save_report
from core.evaluation.scoring import (
    cer,
    corpus_cer,
    corpus_wer,
    mean_similarity,
    real_time_factor,
    similarities,
    wer,
    whisper_wer,
)
from core.evaluation.text import (
    NORMALISER,
    WHISPER_NORMALISER,
    normalise,
    number_to_words,
)
from core.records import Segment
from core.workspace import Workspace

__all__ = [
    "REPORT_SCHEMA",
    "EvalItem",
    "EvalReport",
    "EvaluationError",
    "cer",
    "corpus_cer",
    "corpus_wer",
    "evaluate_voice",
    "held_out_segments",
    "latest_report",
    "normalise",
    "number_to_words",
    "read_texts",
    "wer",
]

MIN_HELD_OUT = 3
"""With fewer test items than this, the val split is added (and the report says so)."""
ASR_RATE = 16000
WARMUP_TEXT = "Hello."
BACKENDS = ("csm", "draft")

Progress = Callable[[int, int, str], None]
"""``progress(done, total, what)``, called as the evaluation goes."""


# ----------------------------------------------------------------------------- evaluation


def held_out_segments(ws: Workspace, speaker: str) -> tuple[list[Segment], str, list[str]]:
    """The speaker's accepted, transcribed segments in the test split stored in the catalog
    (the one training leaves out; :func:`core.dataset.splits.ensure_splits` assigns the segments
    that have none first), with the val split added when the test split has fewer than
    :data:`MIN_HELD_OUT`: ``(segments, source, notes)``."""
    from core.dataset.splits import ensure_splits

    with Catalog.open(ws.catalog_path) as catalog:
        ensure_splits(catalog, speaker=speaker)
        accepted = catalog.segments(speaker=speaker, status="accepted")

    def in_split(name: str) -> list[Segment]:
        return [s for s in accepted if s.id is not None and s.split == name and normalise(s.text)]

    chosen = in_split("test")
    source, notes = "test", []
    if len(chosen) < MIN_HELD_OUT:
        val = in_split("val")
        if val:
            notes.append(
                f"the test split holds {len(chosen)} transcribed segment(s), fewer than "
                f"{MIN_HELD_OUT}: added the {len(val)} of the val split"
            )
            chosen, source = chosen + val, "test+val"
    return chosen, source, notes


def read_texts(path: Path) -> list[str]:
    """One text per non-blank line of ``path``."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise EvaluationError(at(path, f"cannot read the texts file: {exc}")) from None
    texts = [" ".join(line.split()) for line in lines if line.strip()]
    if not texts:
        raise EvaluationError(at(path, "holds no text: write one text per line"))
    return texts


def evaluate_voice(
    ws: Workspace,
    voice: str,
    *,
    texts: list[str] | None = None,
    seed: int = 0,
    backend: str = "csm",
    progress: Progress | None = None,
) -> EvalReport:
    """Render held-out texts with ``voice``, measure them, save and return the report.

    ``texts``: what to render (default: the transcripts of the speaker's held-out segments,
    see :func:`held_out_segments`). ``backend``: ``"csm"`` (the base model with the voice's
    adapter and anchors) or ``"draft"`` (espeak-ng, a baseline). Raises a one-line
    :class:`~core.errors.PodforgeError` when the voice, its model or held-out text is missing.
    """
    from core.audio.io import read, resample
    from core.dataset.splits import split_seed
    from core.episodes.pronunciations import load_pronunciations, spoken_text
    from core.episodes.synthesis.backends import make_backend
    from core.models.asr import load_asr
    from core.models.speaker import MIN_SAMPLES, load_speaker_encoder, similarity_to_anchors
    from core.voices.folder import anchor_paths, trained_voice

    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
    ws.speaker(voice)  # an unknown speaker is a one-line SpeakerError
    if backend == "csm":
        trained_voice(ws, voice)  # no trained voice: a one-line VoiceError before any model loads
    tts = make_backend(ws, backend)
    report_progress = progress or (lambda done, total, what: None)
    models = ws.settings.models

    held_out, source, notes = held_out_segments(ws, voice)
    if texts is None:
        if not held_out:
            raise EvaluationError(
                f"speaker {voice!r} has no accepted, transcribed segment in the test or val "
                f"split (see `podforge splits {ws.root}`): accept more recordings, or pass "
                "--texts FILE"
            )
        texts = [s.text for s in held_out]
        text_ids: list[int | None] = [s.id for s in held_out]
    else:
        source, notes = "texts", []  # the held-out segments serve only as the reference
        text_ids = [None] * len(texts)
    pairs = [(" ".join(t.split()), i) for t, i in zip(texts, text_ids, strict=True) if normalise(t)]
    kept = [t for t, _ in pairs]
    if len(kept) < len(texts):
        notes.append(f"{len(texts) - len(kept)} text(s) without words after normalisation skipped")
    if not kept:
        raise EvaluationError("none of the texts to evaluate holds a word")

    with Catalog.open(ws.catalog_path) as catalog:
        accepted = catalog.segments(speaker=voice, status="accepted")
        seed_of_split = split_seed(catalog)
    anchors = anchor_paths(ws, voice, accepted)
    if not anchors:
        raise EvaluationError(
            f"speaker {voice!r} has no anchor clip (voices/{voice}/anchors/*.wav) and no "
            "clean accepted segment to use as one"
        )

    steps = len(kept) + 4
    # The measuring models first, so that a missing one is reported before any rendering.
    report_progress(0, steps, "loading the ASR and speaker models")
    asr = load_asr(models.asr, models.device)
    encoder = load_speaker_encoder(models.speaker, models.device)

    report_progress(1, steps, "loading the voice")
    started = time.perf_counter()
    tts.render(_line(voice, WARMUP_TEXT, 0), seed)  # loads the model and warms it up
    load_seconds = time.perf_counter() - started

    lexicon = load_pronunciations(ws.root)  # said as a render says it; scored as written
    renders: list[FloatArray] = []
    timings: list[float] = []
    audio_seconds: list[float] = []
    for i, text in enumerate(kept):
        report_progress(2 + i, steps, f"rendering {i + 1}/{len(kept)}")
        started = time.perf_counter()
        rendered = tts.render(_line(voice, spoken_text(text, lexicon), i + 1), seed + i)
        timings.append(time.perf_counter() - started)
        audio = np.asarray(rendered.audio, dtype=np.float32).reshape(-1)
        audio_seconds.append(audio.size / rendered.sample_rate)
        renders.append(resample(audio, rendered.sample_rate, ASR_RATE) if audio.size else audio)
    del tts
    _free_memory()

    report_progress(2 + len(kept), steps, "transcribing the renders")
    hypotheses = [t.text for t in asr.transcribe_many(renders)]

    report_progress(3 + len(kept), steps, "measuring speaker similarity")
    anchor_audio = [read(p, target_rate=ASR_RATE)[0] for p in anchors]
    anchor_embeddings = encoder.embed_many(anchor_audio)
    render_similarities = similarities(encoder, renders, anchor_embeddings)
    reference: float | None = None
    real = [read(ws.root / s.audio, target_rate=ASR_RATE)[0] for s in held_out]
    real = [clip for clip in real if clip.size >= MIN_SAMPLES]
    if real:
        reference = float(
            np.mean(similarity_to_anchors(encoder.embed_many(real), anchor_embeddings))
        )
    else:
        notes.append("no real held-out recording: no reference similarity")
    del asr, encoder
    _free_memory()

    items = [
        EvalItem(
            text=text,
            hypothesis=hyp,
            wer=wer(text, hyp),
            cer=cer(text, hyp),
            wer_whisper=whisper_wer([text], [hyp]),
            similarity=sim,
            rtf=real_time_factor(spent, secs),
            seconds=secs,
            render_seconds=spent,
            segment_id=segment_id,
        )
        for (text, segment_id), hyp, sim, spent, secs in zip(
            pairs, hypotheses, render_similarities, timings, audio_seconds, strict=True
        )
    ]
    total_audio, total_render = sum(audio_seconds), sum(timings)
    report = _assemble(
        ws,
        voice=voice,
        backend=backend,
        seed=seed,
        source=source,
        items=items,
        reference=reference,
        rtf=real_time_factor(total_render, total_audio),
        render_seconds=total_render,
        audio_seconds=total_audio,
        load_seconds=load_seconds,
        anchors=[_relative(ws, p) for p in anchors],
        notes=notes,
        segment_ids=[s.id for s in held_out if s.id is not None],
        split_seed=seed_of_split,
    )
    report_progress(steps, steps, "done")
    return report


def _assemble(
    ws: Workspace,
    *,
    voice: str,
    backend: str,
    seed: int,
    source: str,
    items: list[EvalItem],
    reference: float | None,
    rtf: float | None,
    render_seconds: float,
    audio_seconds: float,
    load_seconds: float,
    anchors: list[str],
    notes: list[str],
    segment_ids: list[int] | None = None,
    split_seed: int | None = None,
) -> EvalReport:
    """Aggregate, gate and save."""
    refs = [item.text for item in items]
    hyps = [item.hypothesis for item in items]
    corpus_w, corpus_c = corpus_wer(refs, hyps), corpus_cer(refs, hyps)
    similarity = mean_similarity([item.similarity for item in items])
    gates = apply_gates(
        ws.settings.evaluation,
        {"wer": corpus_w, "cer": corpus_c, "similarity": similarity, "rtf": rtf},
    )
    now = datetime.now(UTC)
    m = ws.settings.models
    report = EvalReport(
        voice=voice,
        backend=backend,
        created_at=now.isoformat(timespec="seconds").replace("+00:00", "Z"),
        seed=seed,
        texts_source=source,
        items=items,
        wer=corpus_w,
        cer=corpus_c,
        similarity=similarity,
        reference_similarity=reference,
        rtf=rtf,
        render_seconds=render_seconds,
        audio_seconds=audio_seconds,
        load_seconds=load_seconds,
        gates=gates,
        passed=all(ok for _, _, ok in gates.values()),
        models={
            "tts": m.tts if backend == "csm" else "espeak-ng",
            "asr": m.asr,
            "speaker": m.speaker,
        },
        anchors=anchors,
        notes=notes,
        segment_ids=list(segment_ids or []),
        split_seed=split_seed,
        wer_whisper=whisper_wer(refs, hyps),
        normalisers={"wer": NORMALISER, "cer": NORMALISER, "wer_whisper": WHISPER_NORMALISER},
    )
    save_report(ws, report, now)
    return report


# ----------------------------------------------------------------------------- helpers


def _line(voice: str, text: str, index: int) -> Line:
    return Line(
        index=index,
        speaker=voice.upper(),
        voice=voice,
        parts=(Span(text),),
        source_line=index + 1,
        chapter=0,
    )


def _relative(ws: Workspace, path: Path) -> str:
    try:
        return str(path.relative_to(ws.root))
    except ValueError:
        return str(path)


def _free_memory() -> None:
    gc.collect()
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
