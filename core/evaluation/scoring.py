"""The evaluation's figures: WER/CER, speaker similarity and the real-time factor.

WER and CER are computed with :mod:`jiwer` after :func:`core.evaluation.text.normalise`;
corpus figures pool every edit over every item (not a mean of per-item rates). Similarity is
the mean ECAPA cosine of each clip to the anchors' embeddings; a clip too short to embed
(``core.models.speaker.MIN_SAMPLES``) scores ``None`` and counts as 0 in the mean. The
real-time factor is seconds spent synthesising over seconds of audio made. Training's quality
probe (:mod:`core.training.quality`) uses these same functions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jiwer
import numpy as np
import numpy.typing as npt

from core.evaluation.text import normalise

__all__ = [
    "cer",
    "corpus_cer",
    "corpus_wer",
    "mean_similarity",
    "real_time_factor",
    "similarities",
    "wer",
    "whisper_wer",
]


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


def whisper_wer(references: Sequence[str], hypotheses: Sequence[str]) -> float | None:
    """Corpus WER after Whisper's English normaliser (the ASR leaderboards' form) on both
    sides; pairs whose reference keeps no word in that form are left out, ``None`` when
    none is left."""
    from core.evaluation.text import whisper_normalise

    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses")
    pairs = [
        (whisper_normalise(r), whisper_normalise(h))
        for r, h in zip(references, hypotheses, strict=True)
    ]
    kept = [(r, h) for r, h in pairs if r]
    if not kept:
        return None
    return corpus_wer([r for r, _ in kept], [h for _, h in kept], normalised=False)


def wer(reference: str, hypothesis: str, *, normalised: bool = True) -> float:
    """Word error rate of one pair: ``wer("the cat sat", "the cat sat down") == 1/3``."""
    return corpus_wer([reference], [hypothesis], normalised=normalised)


def cer(reference: str, hypothesis: str, *, normalised: bool = True) -> float:
    """Character error rate of one pair."""
    return corpus_cer([reference], [hypothesis], normalised=normalised)


def similarities(
    encoder: Any, clips: Sequence[npt.NDArray[np.float32]], anchors: Any
) -> list[float | None]:
    """ECAPA cosine of each 16 kHz clip to the anchor embeddings (``encoder`` is a
    :class:`core.models.speaker.SpeakerEncoder`); ``None`` for a clip too short to embed."""
    from core.models.speaker import MIN_SAMPLES, similarity_to_anchors

    out: list[float | None] = [None] * len(clips)
    embeddable = [i for i, clip in enumerate(clips) if clip.size >= MIN_SAMPLES]
    if embeddable:
        sims = similarity_to_anchors(encoder.embed_many([clips[i] for i in embeddable]), anchors)
        for i, sim in zip(embeddable, sims, strict=True):
            out[i] = float(sim)
    return out


def mean_similarity(values: Sequence[float | None]) -> float:
    """The mean over every clip, a clip that could not be embedded (``None``) counting as 0."""
    return float(np.mean([v or 0.0 for v in values])) if values else 0.0


def real_time_factor(render_seconds: float, audio_seconds: float) -> float | None:
    """Seconds spent rendering per second of audio made; ``None`` when no audio was made."""
    return render_seconds / audio_seconds if audio_seconds > 0 else None
