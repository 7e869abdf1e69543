"""Retakes: score each rendered line, and render other candidates of the suspect ones.

A line's candidates are renders of the same text with seeds derived from its own
(:func:`candidate_seed`; candidate 0 is the line's usual seed, so a render without retakes
is unchanged). Each candidate's audio lives in the render cache like any line (the audio
cache knows nothing of QA). Its scores (:class:`~core.episodes.qa.LineScores`) live in a
second cache, ``episodes/<name>/qa/<key>.json``, keyed by the audio's hash, the reference
text and the scorer's identity (ASR and speaker models, normaliser and QA versions): a change
of ``[qa]`` limits re-judges stored scores without synthesising or scoring again.

:class:`ModelScorer` is the real scorer (faster-whisper back-transcription, ECAPA similarity
to the voice's anchors); :class:`Scorer` is what :func:`core.episodes.render.render_episode`
needs, so tests can plant scores. A candidate chosen by ear is recorded in
``episodes/<name>/choices.json`` (by the line's text and voice) and wins over QA at every
re-render.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from core.atomic import atomic_write_text
from core.episodes.qa import LineScores, QaLimits, RateRange, badness, judge, signal_scores
from core.episodes.script import Line
from core.episodes.synthesis.backends import Rendered
from core.episodes.synthesis.cache import RenderCache
from core.errors import VoiceError
from core.evaluation.text import NORMALISER, normalise
from core.workspace import Workspace

__all__ = [
    "QA_VERSION",
    "Candidate",
    "CheckJob",
    "LineVerdict",
    "ModelScorer",
    "ScoreCache",
    "Scorer",
    "candidate_seed",
    "check_lines",
    "choice_id",
    "load_choices",
    "save_choice",
    "score_audio",
]

QA_VERSION = 1
"""Changes whenever a score's computation changes: part of every score's cache key."""

ASR_RATE = 16000


def candidate_seed(seed: int, take: int) -> int:
    """The seed of candidate ``take`` of a line whose own seed is ``seed`` (take 0: itself)."""
    if take == 0:
        return seed
    digest = hashlib.sha256(f"{seed}:take:{take}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


class Scorer(Protocol):
    """What line QA needs: a transcript and a similarity for a clip (16 kHz mono)."""

    identity: str
    """Everything that shapes the scores (models, versions): part of the score cache key."""

    def transcribe(self, clips: Sequence[npt.NDArray[np.float32]]) -> Sequence[str | None]: ...

    def similarity(
        self, voice: str, clips: Sequence[npt.NDArray[np.float32]]
    ) -> list[float | None]: ...


class ModelScorer:
    """faster-whisper (``models.asr``) and ECAPA (``models.speaker``), loaded on first use.

    Similarity is to the voice's anchor clips (``voices/<speaker>/anchors``, else the
    speaker's best accepted segments); ``identity_check=False`` (the draft voice, nobody's
    clone) scores none.
    """

    def __init__(self, ws: Workspace, *, identity_check: bool = True) -> None:
        models = ws.settings.models
        self.ws = ws
        self.identity_check = identity_check
        self.identity = (
            f"asr={models.asr};speaker={models.speaker if identity_check else 'none'};"
            f"norm={NORMALISER};qa={QA_VERSION}"
        )
        self._asr: Any = None
        self._encoder: Any = None
        self._anchors: dict[str, Any] = {}

    def transcribe(self, clips: Sequence[npt.NDArray[np.float32]]) -> list[str]:
        from core.models.asr import load_asr

        if self._asr is None:
            self._asr = load_asr(self.ws.settings.models.asr, self.ws.settings.models.device)
        return [t.text for t in self._asr.transcribe_many(list(clips), word_timestamps=False)]

    def similarity(
        self, voice: str, clips: Sequence[npt.NDArray[np.float32]]
    ) -> list[float | None]:
        if not self.identity_check:
            return [None] * len(clips)
        from core.audio.io import read
        from core.catalog import Catalog
        from core.evaluation.scoring import similarities
        from core.models.speaker import load_speaker_encoder
        from core.voices.folder import anchor_paths

        if self._encoder is None:
            models = self.ws.settings.models
            self._encoder = load_speaker_encoder(models.speaker, models.device)
        if voice not in self._anchors:
            with Catalog.open(self.ws.catalog_path) as catalog:
                accepted = catalog.segments(speaker=voice, status="accepted")
            paths = anchor_paths(self.ws, voice, accepted)
            audio = [read(p, target_rate=ASR_RATE)[0] for p in paths]
            self._anchors[voice] = self._encoder.embed_many(audio) if audio else None
        if self._anchors[voice] is None:
            return [None] * len(clips)
        return similarities(self._encoder, list(clips), self._anchors[voice])


def score_audio(
    audio: npt.ArrayLike,
    sample_rate: int,
    reference: str,
    transcript: str | None,
    similarity: float | None,
) -> LineScores:
    """The :class:`~core.episodes.qa.LineScores` of one candidate from its transcript and
    similarity (computed by a :class:`Scorer`) and its signal."""
    from core.evaluation.scoring import cer, wer, whisper_wer

    words = len(normalise(reference).split())
    error: float | None = None
    chars: float | None = None
    whisper: float | None = None
    if transcript is not None and words:
        error, chars = wer(reference, transcript), cer(reference, transcript)
        whisper = whisper_wer([reference], [transcript])
    return LineScores(
        reference=reference,
        transcript=transcript,
        wer=error,
        cer=chars,
        wer_whisper=whisper,
        similarity=similarity,
        words=words,
        signal=signal_scores(audio, sample_rate),
    )


@dataclass
class ScoreCache:
    """``episodes/<name>/qa/``: one JSON file of scores per scored candidate."""

    folder: Path

    @staticmethod
    def key(audio_digest: str, reference: str, scorer_identity: str) -> str:
        blob = json.dumps([audio_digest, reference, scorer_identity], ensure_ascii=False)
        return hashlib.sha256(blob.encode()).hexdigest()[:32]

    def get(self, key: str) -> LineScores | None:
        try:
            data = json.loads((self.folder / f"{key}.json").read_text(encoding="utf-8"))
            return LineScores.from_json(data)
        except (OSError, ValueError, KeyError, TypeError):
            return None  # absent or damaged: scored again

    def put(self, key: str, scores: LineScores) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.folder / f"{key}.json", json.dumps(scores.to_json(), indent=1))

    def prune(self, keep: set[str]) -> None:
        """Remove score files of candidates no longer in use (only files named like a key)."""
        for path in self.folder.glob("*.json"):
            if len(path.stem) == 32 and path.stem not in keep and not path.is_symlink():
                path.unlink(missing_ok=True)


def audio_digest(path: Path) -> str:
    """The hash of a cached candidate's file (its audio, losslessly stored)."""
    from core.dataset.importer import file_sha256

    return file_sha256(path)


@dataclass
class Candidate:
    """One render of a line: its take number, seed, cache key and scores."""

    take: int
    seed: int
    key: str
    scores: LineScores | None = None
    reasons: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "take": self.take,
            "seed": self.seed,
            "passed": not self.reasons,
            "reasons": self.reasons,
            "scores": None if self.scores is None else self.scores.to_json(),
        }


@dataclass
class LineVerdict:
    """A line's QA: its candidates and the one kept (and why)."""

    index: int
    source_line: int
    speaker: str
    candidates: list[Candidate]
    voice: str = ""
    text: str = ""
    chosen: int = 0
    """Index into ``candidates``."""
    how: str = "passed"
    """``passed`` (the first passing candidate), ``best`` (none passed: the least bad),
    or ``by ear`` (chosen in the editor)."""

    @property
    def kept(self) -> Candidate:
        return self.candidates[self.chosen]

    @property
    def suspect(self) -> bool:
        return bool(self.kept.reasons) and self.how != "by ear"

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "source_line": self.source_line,
            "speaker": self.speaker,
            "voice": self.voice,
            "text": self.text,
            "verdict": "suspect" if self.suspect else "pass",
            "reasons": self.kept.reasons,
            "kept_take": self.kept.take,
            "kept_seed": self.kept.seed,
            "how": self.how,
            "candidates": [c.to_json() for c in self.candidates],
        }


# --------------------------------------------------------------------------- choices by ear


def _choices_path(ws: Workspace, name: str) -> Path:
    return ws.episodes_dir / name / "choices.json"


def choice_id(voice: str, text: str) -> str:
    """What a choice by ear is recorded under: the line's voice and text."""
    return hashlib.sha256(f"{voice}\n{text}".encode()).hexdigest()[:16]


def load_choices(ws: Workspace, name: str) -> dict[str, int]:
    """``{choice_id: take}`` of the episode's candidates chosen by ear."""
    try:
        data = json.loads(_choices_path(ws, name).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {str(k): int(v) for k, v in data.items() if isinstance(v, int)}


def save_choice(ws: Workspace, name: str, voice: str, text: str, take: int | None) -> None:
    """Record (or, with ``take=None``, forget) the candidate chosen by ear for a line."""
    choices = load_choices(ws, name)
    if take is None:
        choices.pop(choice_id(voice, text), None)
    else:
        choices[choice_id(voice, text)] = take
    path = _choices_path(ws, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(choices, indent=1, sort_keys=True) + "\n")


# --------------------------------------------------------------------------- the pass


@dataclass
class CheckJob:
    """One line to check: the script's line, what its voice was asked to say, its seed."""

    line: Line
    spoken: Line
    seed: int
    chosen_take: int | None = None
    """The take chosen by ear, if any (then no other candidate is made)."""


def check_lines(
    jobs: Sequence[CheckJob],
    *,
    candidates: int,
    limits: QaLimits,
    rates: Mapping[str, RateRange],
    scorer: Scorer | None,
    scores: ScoreCache,
    cache: RenderCache,
    key_of: Callable[[Line, int], str],
    render: Callable[[list[tuple[Line, int]]], list[Rendered]],
    batch_size: int,
    report: Callable[[int, int, str], None] | None = None,
) -> tuple[list[LineVerdict], set[str], set[str]]:
    """Score every line's first candidate (rendered already, or now), render more for each
    suspect line, up to ``candidates`` in all (a batch of the voice engine per take); keep the
    first passing candidate, else the least bad (:func:`~core.episodes.qa.badness`); a line
    chosen by ear keeps that take. ``scorer=None``: no QA, only the takes chosen by ear
    (``candidates`` must then be 1). Returns the verdicts, in ``jobs`` order, and the render
    and score cache keys in use."""
    verdicts = {
        job.line.index: LineVerdict(
            job.line.index, job.line.source_line, job.line.speaker, [],
            voice=job.line.voice, text=job.line.text,
        )
        for job in jobs
    }  # fmt: skip
    audio_keys: set[str] = set()
    score_keys: set[str] = set()
    if candidates < 1:
        raise ValueError("a line needs at least one candidate")
    pending = list(jobs)
    for take in range(candidates):
        if not pending:
            break
        round_jobs = []
        for job in pending:
            if job.chosen_take is not None and take == 0:
                chosen = job.chosen_take
            elif job.chosen_take is not None:
                continue
            else:
                chosen = take
            seed = candidate_seed(job.seed, chosen)
            round_jobs.append((job, Candidate(chosen, seed, key_of(job.spoken, seed))))
        missing = [(job, cand) for job, cand in round_jobs if cache.file(cand.key) is None]
        for start in range(0, len(missing), max(1, batch_size)):
            batch = missing[start : start + max(1, batch_size)]
            made = render([(job.spoken, cand.seed) for job, cand in batch])
            for (_, cand), rendered in zip(batch, made, strict=True):
                cache.put(cand.key, rendered)
        if scorer is not None:
            _score(round_jobs, scorer, scores, cache, score_keys, report)
        still = []
        for job, cand in round_jobs:
            audio_keys.add(cand.key)
            if cand.scores is not None:
                cand.reasons = judge(cand.scores, limits, rates[job.line.voice])
            verdict = verdicts[job.line.index]
            verdict.candidates.append(cand)
            if scorer is None:  # QA off: a take chosen by ear is all that counts
                verdict.how = "by ear" if job.chosen_take is not None else "unchecked"
            elif job.chosen_take is not None:
                verdict.chosen, verdict.how = len(verdict.candidates) - 1, "by ear"
            elif not cand.reasons:
                verdict.chosen, verdict.how = len(verdict.candidates) - 1, "passed"
            elif take == candidates - 1:
                verdict.chosen = _least_bad(verdict, limits, rates[job.line.voice])
                verdict.how = "best"
            else:
                still.append(job)
        pending = still
    return [verdicts[job.line.index] for job in jobs], audio_keys, score_keys


def _least_bad(verdict: LineVerdict, limits: QaLimits, rates: RateRange) -> int:
    """The index of ``verdict``'s least bad candidate (the first of equals)."""
    worst = [
        badness(c.scores, limits, rates) if c.scores is not None else math.inf
        for c in verdict.candidates
    ]
    return worst.index(min(worst))


def _score(
    round_jobs: list[tuple[CheckJob, Candidate]],
    scorer: Scorer,
    scores: ScoreCache,
    cache: RenderCache,
    score_keys: set[str],
    report: Callable[[int, int, str], None] | None,
) -> None:
    """Fill each candidate's scores: from the score cache, else transcribed and compared."""
    from core.audio.io import resample
    from core.episodes.verbalise import verbalise

    todo: list[tuple[CheckJob, Candidate, str, npt.NDArray[np.float32], int]] = []
    for job, cand in round_jobs:
        reference = verbalise(job.line.text)
        key = ScoreCache.key(audio_digest(cache.path(cand.key)), reference, scorer.identity)
        score_keys.add(key)
        cand.scores = scores.get(key)
        if cand.scores is None:
            rendered = cache.get(cand.key)
            if rendered is None:
                raise VoiceError(
                    f"cannot read back line {job.line.source_line} from {cache.folder}"
                )
            todo.append((job, cand, key, rendered.audio, rendered.sample_rate))
    if not todo:
        return
    if report is not None:
        report(0, len(todo), f"checking {len(todo)} line(s)")
    clips = [resample(audio, rate, ASR_RATE) for _, _, _, audio, rate in todo]
    transcripts = scorer.transcribe(clips)
    similar: list[float | None] = [None] * len(todo)
    for voice in sorted({job.line.voice for job, *_ in todo}):
        mine = [i for i, (job, *_) in enumerate(todo) if job.line.voice == voice]
        for i, value in zip(mine, scorer.similarity(voice, [clips[i] for i in mine]), strict=True):
            similar[i] = value
    for (job, cand, key, audio, rate), text, sim in zip(todo, transcripts, similar, strict=True):
        cand.scores = score_audio(audio, rate, verbalise(job.line.text), text, sim)
        scores.put(key, cand.scores)
