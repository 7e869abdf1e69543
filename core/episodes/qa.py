"""Line QA: is a rendered line what the script asked for? Scores, limits and the verdict.

A rendered line is scored three ways (:class:`LineScores`):

- **intelligibility** — its back-transcription against the line's verbalised text: WER and
  CER in podforge's form (:func:`core.evaluation.text.normalise`) and WER in Whisper's
  English form (:func:`core.evaluation.text.whisper_normalise`, the leaderboards');
- **identity** — ECAPA similarity to the voice's anchors (none for the draft voice, which is
  nobody's clone);
- **timing** — from the signal alone (:func:`signal_scores`, webrtcvad speech regions):
  leading and trailing silence, the longest pause inside the line, clipped samples, and the
  speaking rate (reference words a second of speech) against the speaker's own range
  (:func:`speaker_rate_range`, from their accepted segments), and the length against what
  the text needs at the speaker's median rate.

:func:`judge` holds the scores to :class:`~core.settings.LineQa` (the ``[qa]`` settings)
and returns the reasons a line is *suspect* (none: it passes). :func:`badness` orders
candidates when none passes. Scores never contain limits, so a change of limits re-judges
stored scores.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import numpy.typing as npt

from core.settings import LineQa as QaLimits

__all__ = [
    "DEFAULT_RATE",
    "LineScores",
    "QaLimits",
    "RateRange",
    "SignalScores",
    "badness",
    "judge",
    "signal_scores",
    "speaker_rate_range",
]

VAD_RATE = 16000
DEFAULT_RATE = (1.6, 4.6)
"""Words a second of speech accepted when a speaker has too few transcribed segments to
measure their own range (read English speech is about 2.5-3.5)."""
MIN_RATE_SEGMENTS = 5


@dataclass(frozen=True)
class SignalScores:
    """What the waveform alone says about a line (seconds unless named otherwise)."""

    duration: float
    speech: float
    """From the first speech to the end of the last (pauses inside included)."""
    lead: float
    trail: float
    longest_pause: float
    clipped_ratio: float


def signal_scores(audio: npt.ArrayLike, sample_rate: int) -> SignalScores:
    """Silences (webrtcvad, mode 2, 30 ms frames, gaps under 0.2 s filled) and clipping of a
    mono line."""
    from core.audio.io import resample
    from core.dataset.qc import clipping_ratio
    from core.dataset.segment import VadStream

    mono = np.asarray(audio, dtype=np.float32).reshape(-1)
    duration = mono.size / sample_rate if sample_rate else 0.0
    if mono.size == 0:
        return SignalScores(0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    vad = VadStream(mode=2, frame_ms=30, sample_rate=VAD_RATE)
    vad.feed(resample(mono, sample_rate, VAD_RATE) if sample_rate != VAD_RATE else mono)
    regions = vad.finish()
    clipped = float(clipping_ratio(mono))
    if not regions:
        return SignalScores(duration, 0.0, duration, 0.0, 0.0, clipped)
    pauses = [b.start_sec - a.end_sec for a, b in itertools.pairwise(regions)]
    return SignalScores(
        duration=duration,
        speech=max(0.0, min(duration, regions[-1].end_sec) - regions[0].start_sec),
        lead=regions[0].start_sec,
        trail=max(0.0, duration - regions[-1].end_sec),
        longest_pause=max(pauses, default=0.0),
        clipped_ratio=clipped,
    )


@dataclass(frozen=True)
class LineScores:
    """Every figure QA has for one rendered line (no limits: those are applied by
    :func:`judge`)."""

    reference: str
    """The verbalised text the voice was asked to say (before respellings)."""
    transcript: str | None
    wer: float | None
    cer: float | None
    wer_whisper: float | None
    similarity: float | None
    words: int
    signal: SignalScores

    @property
    def rate(self) -> float | None:
        """Reference words a second of speech."""
        return self.words / self.signal.speech if self.signal.speech > 0 else None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["rate"] = self.rate
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LineScores:
        given = data["signal"]
        signal = SignalScores(**{f.name: float(given[f.name]) for f in fields(SignalScores)})
        return cls(
            reference=str(data["reference"]),
            transcript=data.get("transcript"),
            wer=data.get("wer"),
            cer=data.get("cer"),
            wer_whisper=data.get("wer_whisper"),
            similarity=data.get("similarity"),
            words=int(data["words"]),
            signal=signal,
        )


@dataclass(frozen=True)
class RateRange:
    """The speaking rates (words a second) a speaker's lines may have, and their median."""

    low: float
    high: float
    median: float
    measured_on: int
    """Transcribed segments measured (0: the default range)."""


def speaker_rate_range(segments: Iterable[tuple[int, float]], tolerance: float) -> RateRange:
    """The range from ``(words, seconds)`` of a speaker's accepted segments: their 10th to
    90th percentile rate widened by ``tolerance`` (0.25: a quarter either way); the
    default :data:`DEFAULT_RATE` with fewer than five segments."""
    rates = sorted(words / seconds for words, seconds in segments if words > 0 and seconds > 0)
    if len(rates) < MIN_RATE_SEGMENTS:
        low, high = DEFAULT_RATE
        return RateRange(low, high, math.sqrt(low * high), 0)
    p10, p50, p90 = (float(np.percentile(rates, q)) for q in (10, 50, 90))
    return RateRange(p10 * (1 - tolerance), p90 * (1 + tolerance), p50, len(rates))


def judge(scores: LineScores, limits: QaLimits, rates: RateRange) -> list[str]:
    """Why ``scores`` fail ``limits`` (one short reason each); empty when the line passes."""
    reasons: list[str] = []
    if scores.wer is not None and scores.wer > limits.max_wer:
        reasons.append(f"WER {scores.wer:.0%} > {limits.max_wer:.0%}")
    elif scores.cer is not None and scores.cer > limits.max_cer:
        reasons.append(f"CER {scores.cer:.0%} > {limits.max_cer:.0%}")
    if scores.similarity is not None and scores.similarity < limits.min_similarity:
        reasons.append(f"similarity {scores.similarity:.2f} < {limits.min_similarity:.2f}")
    signal = scores.signal
    if signal.speech <= 0:
        reasons.append("no speech")
        return reasons
    if signal.lead > limits.max_lead_s:
        reasons.append(f"{signal.lead:.1f} s of silence before the speech")
    if signal.trail > limits.max_trail_s:
        reasons.append(f"{signal.trail:.1f} s of silence after the speech")
    if signal.longest_pause > limits.max_pause_s:
        reasons.append(f"a {signal.longest_pause:.1f} s pause inside the line")
    if signal.clipped_ratio > limits.max_clipped_ratio:
        reasons.append(f"{signal.clipped_ratio:.2%} of samples clipped")
    rate = scores.rate
    if rate is not None and scores.words >= 3 and not rates.low <= rate <= rates.high:
        reasons.append(f"{rate:.1f} words/s, outside {rates.low:.1f}-{rates.high:.1f}")
    if scores.words:
        expected = scores.words / rates.median
        ratio = signal.speech / expected
        if not limits.min_length_ratio <= ratio <= limits.max_length_ratio:
            reasons.append(f"{signal.speech:.1f} s of speech for ~{expected:.1f} s of text")
    return reasons


def badness(scores: LineScores, limits: QaLimits, rates: RateRange) -> float:
    """How far a candidate is from passing, for choosing the best when none passes: the
    failed checks count one each, then the WER, the similarity short of the limit and the
    silences past theirs break ties (lower is better)."""
    signal = scores.signal
    return (
        len(judge(scores, limits, rates))
        + (scores.wer or 0.0)
        + max(0.0, limits.min_similarity - (scores.similarity or limits.min_similarity))
        + 0.1 * max(0.0, signal.longest_pause - limits.max_pause_s)
        + 0.1 * max(0.0, signal.lead - limits.max_lead_s)
        + 0.1 * max(0.0, signal.trail - limits.max_trail_s)
    )
