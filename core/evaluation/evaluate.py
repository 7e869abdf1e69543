"""How good a voice is: intelligibility, likeness and speed, measured on held-out text.

:func:`evaluate_voice` renders held-out texts with a voice, transcribes the renders back with
the workspace's ASR model (``models.asr``) and measures:

* **WER / CER** of the transcripts against the texts, with :mod:`jiwer`, after
  :func:`normalise` (lower case, numbers as words, no punctuation); corpus figures pool every
  edit over every item (not a mean of per-item rates);
* **similarity**: the mean ECAPA cosine (``models.speaker``) between each render and the
  speaker's anchors, and as a reference the same for the real held-out recordings;
* **RTF**, the real-time factor: seconds spent synthesising over seconds of audio made.

Each aggregate is held to a gate from ``[eval]`` in ``workspace.toml``
(:class:`core.settings.Evaluation`); the report is saved as
``voices/<speaker>/eval/<UTC time>.json``. See docs/EVALUATION.md.
"""

from __future__ import annotations

import gc
import json
import re
import time
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jiwer
import numpy as np
import numpy.typing as npt

from core.atomic import atomic_write_text
from core.catalog import Catalog
from core.episodes.script import Line, Span
from core.errors import EvaluationError, at
from core.records import Segment
from core.workspace import Workspace

if TYPE_CHECKING:
    from core.episodes.synthesis.backends import Backend

__all__ = [
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
    "wer",
]

REPORT_SCHEMA = 2
"""2: ``segment_ids``, ``split_seed`` and each item's ``segment_id`` added."""
MIN_HELD_OUT = 3
"""With fewer test items than this, the val split is added (and the report says so)."""
ASR_RATE = 16000
WARMUP_TEXT = "Hello."
BACKENDS = ("csm", "draft")

Progress = Callable[[int, int, str], None]
"""``progress(done, total, what)``, called as the evaluation goes."""

FloatArray = npt.NDArray[np.float32]


# ----------------------------------------------------------------------------- normalisation

_ONES = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
]
_TENS = ["_", "_", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_SCALES = ((10**9, "billion"), (10**6, "million"), (1000, "thousand"))
_ORDINAL_IRREGULAR = {
    "one": "first",
    "two": "second",
    "three": "third",
    "five": "fifth",
    "eight": "eighth",
    "nine": "ninth",
    "twelve": "twelfth",
}
_DIGITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]

_THOUSANDS = re.compile(r"\b\d{1,3}(?:,\d{3})+\b")
_DECIMAL = re.compile(r"\b(\d+)\.(\d+)\b")
_ORDINAL = re.compile(r"\b(\d+)(st|nd|rd|th)\b", re.IGNORECASE)
_NUMBER = re.compile(r"\d+")
_APOSTROPHE = re.compile(r"(?<=\w)['’](?=\w)")
_NOT_WORD = re.compile(r"[^\w\s]|_")


def number_to_words(n: int) -> str:
    """A cardinal in English words without "and" or hyphens: 342 -> "three hundred forty two".

    Covers 0 up to 999,999,999,999; larger numbers are read digit by digit.
    """
    if n < 0:
        return "minus " + number_to_words(-n)
    if n >= 10**12:
        return " ".join(_DIGITS[int(d)] for d in str(n))
    if n < 20:
        return _ONES[n]
    if n < 100:
        tens, ones = divmod(n, 10)
        return _TENS[tens] + (f" {_ONES[ones]}" if ones else "")
    if n < 1000:
        hundreds, rest = divmod(n, 100)
        return f"{_ONES[hundreds]} hundred" + (f" {number_to_words(rest)}" if rest else "")
    for scale, name in _SCALES:
        if n >= scale:
            high, rest = divmod(n, scale)
            return f"{number_to_words(high)} {name}" + (f" {number_to_words(rest)}" if rest else "")
    raise AssertionError(n)  # pragma: no cover - every n < 10**12 is handled above


def _year_to_words(n: int) -> str:
    """1100..1999 and 2010..2099 the way years are said: 1999 -> "nineteen ninety nine"."""
    high, low = divmod(n, 100)
    if low == 0:
        return f"{number_to_words(high)} hundred"
    if low < 10:
        return f"{number_to_words(high)} oh {_ONES[low]}"
    return f"{number_to_words(high)} {number_to_words(low)}"


def _integer_words(digits: str) -> str:
    n = int(digits)
    if len(digits) == 4 and (1100 <= n <= 1999 or 2010 <= n <= 2099):
        return _year_to_words(n)
    if len(digits) > 1 and digits.startswith("0"):  # "007": read digit by digit
        return " ".join(_DIGITS[int(d)] for d in digits)
    return number_to_words(n)


def _ordinal_words(n: int) -> str:
    words = number_to_words(n).split()
    last = words[-1]
    if last in _ORDINAL_IRREGULAR:
        words[-1] = _ORDINAL_IRREGULAR[last]
    elif last.endswith("y"):
        words[-1] = last[:-1] + "ieth"
    else:
        words[-1] = last + "th"
    return " ".join(words)


def normalise(text: str) -> str:
    """The form both sides of WER/CER are compared in.

    Unicode NFKC, lower case; numbers with thousands separators (``1,250``) written out,
    decimals read as ``three point one four``, ordinals (``21st``) and ``%`` spelled out,
    other numbers written as words (four-digit numbers in 1100..1999 and 2010..2099 read as
    years, ``1999`` -> ``nineteen ninety nine``); apostrophes inside words removed
    (``don't`` -> ``dont``); every other punctuation mark (hyphens too) made a space;
    whitespace collapsed.
    """
    s = unicodedata.normalize("NFKC", text).lower()
    # "1,250" is a quantity, never a year: written out before the year rule can see it.
    s = _THOUSANDS.sub(lambda m: f" {number_to_words(int(m.group(0).replace(',', '')))} ", s)
    s = _DECIMAL.sub(
        lambda m: (
            f"{_integer_words(m.group(1))} point " + " ".join(_DIGITS[int(d)] for d in m.group(2))
        ),
        s,
    )
    s = _ORDINAL.sub(lambda m: " " + _ordinal_words(int(m.group(1))) + " ", s)
    s = _NUMBER.sub(lambda m: f" {_integer_words(m.group(0))} ", s)
    s = s.replace("%", " percent ").replace("&", " and ")
    s = _APOSTROPHE.sub("", s)
    s = _NOT_WORD.sub(" ", s)
    return " ".join(s.split())


# ----------------------------------------------------------------------------- metrics


def _pairs(
    references: Sequence[str], hypotheses: Sequence[str], normalised: bool
) -> tuple[list[str], list[str]]:
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses")
    refs = [normalise(r) if normalised else " ".join(r.split()) for r in references]
    hyps = [normalise(h) if normalised else " ".join(h.split()) for h in hypotheses]
    for i, ref in enumerate(refs):
        if not ref:
            raise ValueError(f"reference {i} is empty after normalisation: {references[i]!r}")
    return refs, hyps


def corpus_wer(
    references: Sequence[str], hypotheses: Sequence[str], *, normalised: bool = True
) -> float:
    """Word error rate over all pairs: (substitutions + deletions + insertions) / reference
    words, pooled; the texts go through :func:`normalise` first unless ``normalised=False``."""
    refs, hyps = _pairs(references, hypotheses, normalised)
    if not refs:
        raise ValueError("WER needs at least one reference")
    return float(jiwer.process_words(refs, hyps).wer)


def corpus_cer(
    references: Sequence[str], hypotheses: Sequence[str], *, normalised: bool = True
) -> float:
    """Character error rate over all pairs (spaces count as characters), after
    :func:`normalise` unless ``normalised=False``."""
    refs, hyps = _pairs(references, hypotheses, normalised)
    if not refs:
        raise ValueError("CER needs at least one reference")
    return float(jiwer.process_characters(refs, hyps).cer)


def wer(reference: str, hypothesis: str, *, normalised: bool = True) -> float:
    """Word error rate of one pair: ``wer("the cat sat", "the cat sat down") == 1/3``."""
    return corpus_wer([reference], [hypothesis], normalised=normalised)


def cer(reference: str, hypothesis: str, *, normalised: bool = True) -> float:
    """Character error rate of one pair."""
    return corpus_cer([reference], [hypothesis], normalised=normalised)


# ----------------------------------------------------------------------------- the report


@dataclass
class EvalItem:
    """One rendered text."""

    text: str
    hypothesis: str
    wer: float
    cer: float
    similarity: float | None
    """ECAPA cosine to the anchors; ``None`` when the render is too short to embed."""
    rtf: float | None
    """Render seconds over audio seconds; ``None`` when the render is empty."""
    seconds: float
    """Length of the rendered audio."""
    render_seconds: float
    """Wall time the render took."""
    segment_id: int | None = None
    """The held-out segment whose transcript this is; ``None`` for ``--texts``."""


@dataclass
class EvalReport:
    """What :func:`evaluate_voice` measured; ``to_json()`` is what is saved."""

    voice: str
    backend: str
    created_at: str
    seed: int
    texts_source: str
    items: list[EvalItem]
    wer: float
    cer: float
    similarity: float
    """Mean over the items; an item too short to embed counts as 0."""
    reference_similarity: float | None
    """The same for the real held-out recordings; ``None`` when there are none."""
    rtf: float | None
    """Total render time over total audio time; ``None`` when no audio was made."""
    render_seconds: float
    audio_seconds: float
    load_seconds: float
    """Loading the voice and one warm-up render; not part of the RTF."""
    gates: dict[str, tuple[float | None, float, bool]]
    """``{name: (value, threshold, passed)}`` for ``wer``, ``cer``, ``similarity``, ``rtf``."""
    passed: bool
    models: dict[str, str] = field(default_factory=dict)
    anchors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    segment_ids: list[int] = field(default_factory=list)
    """The held-out segments used (their texts rendered unless ``--texts``; their audio as
    the reference similarity): none of them is in a ``split.json`` ``train`` list of the
    voice's runs, since both come from the splits stored in the catalog."""
    split_seed: int | None = None
    path: Path | None = None
    """Where the report was saved."""

    @property
    def failed_gates(self) -> list[str]:
        return [name for name, (_, _, ok) in self.gates.items() if not ok]

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": REPORT_SCHEMA,
            "voice": self.voice,
            "backend": self.backend,
            "created_at": self.created_at,
            "seed": self.seed,
            "texts_source": self.texts_source,
            "models": dict(self.models),
            "anchors": list(self.anchors),
            "notes": list(self.notes),
            "split_seed": self.split_seed,
            "segment_ids": list(self.segment_ids),
            "aggregates": {
                "wer": self.wer,
                "cer": self.cer,
                "similarity": self.similarity,
                "reference_similarity": self.reference_similarity,
                "rtf": self.rtf,
                "render_seconds": self.render_seconds,
                "audio_seconds": self.audio_seconds,
                "load_seconds": self.load_seconds,
                "items": len(self.items),
            },
            "gates": {
                name: {"value": value, "threshold": threshold, "passed": ok}
                for name, (value, threshold, ok) in self.gates.items()
            },
            "passed": self.passed,
            "items": [asdict(item) for item in self.items],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n"


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
    from core.dataset.ingest import anchor_paths
    from core.dataset.splits import split_seed
    from core.models.asr import load_asr
    from core.models.speaker import MIN_SAMPLES, load_speaker_encoder, similarity_to_anchors

    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
    ws.speaker(voice)  # an unknown speaker is a one-line SpeakerError
    tts = _make_backend(ws, backend, voice)  # so is a speaker without a trained voice
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

    renders: list[FloatArray] = []
    timings: list[float] = []
    audio_seconds: list[float] = []
    for i, text in enumerate(kept):
        report_progress(2 + i, steps, f"rendering {i + 1}/{len(kept)}")
        started = time.perf_counter()
        rendered = tts.render(_line(voice, text, i + 1), seed + i)
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
    similarities: list[float | None] = [None] * len(renders)
    embeddable = [i for i, r in enumerate(renders) if r.size >= MIN_SAMPLES]
    if embeddable:
        sims = similarity_to_anchors(
            encoder.embed_many([renders[i] for i in embeddable]), anchor_embeddings
        )
        for i, sim in zip(embeddable, sims, strict=True):
            similarities[i] = float(sim)
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
            similarity=sim,
            rtf=(spent / secs) if secs > 0 else None,
            seconds=secs,
            render_seconds=spent,
            segment_id=segment_id,
        )
        for (text, segment_id), hyp, sim, spent, secs in zip(
            pairs, hypotheses, similarities, timings, audio_seconds, strict=True
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
        rtf=(total_render / total_audio) if total_audio > 0 else None,
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
    similarity = float(np.mean([item.similarity or 0.0 for item in items]))
    limits = ws.settings.evaluation
    gates: dict[str, tuple[float | None, float, bool]] = {
        "wer": (corpus_w, limits.max_wer, corpus_w <= limits.max_wer),
        "cer": (corpus_c, limits.max_cer, corpus_c <= limits.max_cer),
        "similarity": (similarity, limits.min_similarity, similarity >= limits.min_similarity),
        "rtf": (rtf, limits.max_rtf, rtf is not None and rtf <= limits.max_rtf),
    }
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
    )
    folder = ws.voices_dir / voice / "eval"
    path = folder / f"{now.strftime('%Y%m%dT%H%M%S.%fZ')}.json"
    atomic_write_text(path, report.to_json())
    report.path = path
    return report


def latest_report(ws: Workspace, voice: str) -> dict[str, Any] | None:
    """The newest saved report of ``voice`` as a dict (see :meth:`EvalReport.to_dict`), or
    ``None`` when it has none; an unreadable file is passed over for the one before it."""
    folder = ws.voices_dir / voice / "eval"
    if not folder.is_dir():
        return None
    for path in sorted(folder.glob("*.json"), reverse=True):
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            continue
        if isinstance(doc, dict):
            doc["path"] = str(path)
            return doc
    return None


# ----------------------------------------------------------------------------- helpers


def _make_backend(ws: Workspace, backend: str, voice: str) -> Backend:
    if backend == "draft":
        from core.episodes.synthesis.backends import DraftBackend

        return DraftBackend(ws.settings.speakers)
    from core.episodes.synthesis.csm_backend import CsmBackend

    csm = CsmBackend(ws)
    csm.voice_folder(voice)  # no trained voice: a one-line VoiceError before any model loads
    return csm


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
