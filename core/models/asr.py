"""Speech to text with faster-whisper: transcripts with word timings for segments and lines.

``load_asr(model_id)`` loads ``"tiny"`` (the stand-in, which shadows faster-whisper's own
``"tiny"`` size), a local CTranslate2 folder, or a faster-whisper name / hub id. Decoding is
bounded and deterministic (beam search at temperature 0, no fallback, ``MAX_TOKENS`` a
window); a clip of up to 30 s is one window, so :meth:`AsrModel.transcribe_many` gives the
same results batched on a GPU or one at a time on a CPU. The heavy libraries are imported
inside the functions that use them.

Details: docs/DATASET.md, "Transcription"."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from core.audio.types import FloatArray
from core.errors import ModelError, one_line
from core.models.device import ctranslate2_cuda_count, resolve_device
from core.models.hub import check_model_files, hub_cache_dir, hub_offline, looks_like_path
from core.models.tiny.whisper import tiny_whisper_path

__all__ = [
    "SAMPLE_RATE",
    "AsrModel",
    "Transcript",
    "Word",
    "asr_hub_repo",
    "load_asr",
    "resolve_asr_model",
]

SAMPLE_RATE = 16000
"""The rate every clip given to :class:`AsrModel` must have (the caller resamples)."""

WINDOW_SEC = 30.0
"""Whisper's window: a clip up to this long is decoded in one go."""

BEAM_SIZE = 5
MAX_TOKENS = 224
"""At most this many tokens per window: Whisper's own limit, half its 448-token context.

CTranslate2 enforces it: it generates at most half of ``max_length``, which faster-whisper
sets to 448 when ``max_new_tokens`` is not given (and to the prompt's length plus
``max_new_tokens`` when it is, so that option really allows only about half as many).
The limit is the same for every clip, so a clip's transcript does not depend on the other
clips in its batch."""

# faster-whisper's rule for a window without speech: a likely <|nospeech|> and a poor text.
NO_SPEECH_THRESHOLD = 0.6
LOG_PROB_THRESHOLD = -1.0

MODEL_FILES = ("model.bin", "config.json", "tokenizer.json")
"""The files a local model folder must hold (without tokenizer.json faster-whisper would
silently fetch a tokenizer from the hub)."""


@dataclass(frozen=True)
class Word:
    """One word with its time in the clip, in seconds from the clip's start."""

    start_sec: float
    end_sec: float
    text: str
    probability: float


@dataclass(frozen=True)
class Transcript:
    """What was said in one clip."""

    text: str
    language: str | None
    words: tuple[Word, ...]
    avg_logprob: float | None
    """Mean log-probability per token over the whole text; ``None`` when nothing was said."""


def resolve_asr_model(model_id: str) -> str:
    """Where ``model_id`` loads from.

    ``"tiny"`` gives the tiny model's folder (built on first use), an existing local folder
    is returned as it is, anything else (a faster-whisper model name or a hub id) unchanged.
    """
    if model_id == "tiny":
        return str(tiny_whisper_path())
    return model_id


def load_asr(model_id: str, device: str = "auto", compute_type: str = "default") -> AsrModel:
    """Load the ASR model ``model_id`` (``"tiny"``, a local folder, a model name or hub id).

    ``device`` is ``"auto"`` (CUDA when CTranslate2 sees a GPU, else the CPU), ``"cpu"`` or
    ``"cuda"``. ``compute_type="default"`` means int8 on a CPU (float32 where int8 is not
    supported) and float16 on a GPU; any CTranslate2 compute type can be given instead.
    Every failure a user can cause is a one-line :class:`ModelError`.
    """
    resolved = resolve_asr_model(model_id)
    folder = Path(resolved).expanduser()
    if folder.is_dir():
        _check_model_folder(folder)
        path = str(folder)
    elif looks_like_path(model_id):
        raise ModelError(
            f"ASR model folder {model_id!r} does not exist: set models.asr in workspace.toml "
            'to an existing folder, a faster-whisper model name such as "large-v3", or "tiny"'
        )
    else:
        path = _fetch(model_id)
    device = resolve_device(
        device, "ASR model", ctranslate2_cuda_count, "CTranslate2", indexed=False
    )
    compute_type = _resolve_compute_type(device, compute_type)

    from faster_whisper import WhisperModel

    # CTranslate2 sizes its pool from OMP_NUM_THREADS only when its OpenMP runtime starts;
    # passed explicitly, a pinned count (core.cluster.threads) holds in any process.
    threads = int(os.environ.get("OMP_NUM_THREADS", "0") or 0)
    try:
        model = WhisperModel(path, device=device, compute_type=compute_type, cpu_threads=threads)
    except Exception as exc:  # ctranslate2 and tokenizers raise RuntimeError, ValueError, ...
        raise ModelError(
            f"ASR model {model_id!r} ({path}) cannot be loaded on {device} "
            f"with compute type {compute_type}: {one_line(exc, first_line=True)}"
        ) from exc
    return AsrModel(model, model_id=model_id, path=path, device=device, compute_type=compute_type)


class AsrModel:
    """A loaded faster-whisper model; made by :func:`load_asr`.

    Clips are mono float32 at :data:`SAMPLE_RATE` (16 kHz).
    """

    def __init__(
        self, model: Any, *, model_id: str, path: str, device: str, compute_type: str
    ) -> None:
        self.model = model
        """The ``faster_whisper.WhisperModel``."""
        self.model_id = model_id
        self.path = path
        self.device = device
        self.compute_type = compute_type

    def __repr__(self) -> str:
        return (
            f"AsrModel({self.model_id!r}, path={self.path!r}, device={self.device!r}, "
            f"compute_type={self.compute_type!r})"
        )

    @property
    def multilingual(self) -> bool:
        """False for English-only models (``*.en`` and the tiny stand-in)."""
        return bool(self.model.model.is_multilingual)

    def transcribe(
        self,
        audio16k: npt.NDArray[Any],
        *,
        language: str | None = "en",
        word_timestamps: bool = True,
    ) -> Transcript:
        """Transcribe one clip; ``language=None`` detects it (multilingual models only)."""
        return self.transcribe_many(
            [audio16k], language=language, batch_size=1, word_timestamps=word_timestamps
        )[0]

    def transcribe_many(
        self,
        clips: Sequence[npt.NDArray[Any]],
        *,
        language: str | None = "en",
        batch_size: int = 8,
        word_timestamps: bool = True,
    ) -> list[Transcript]:
        """Transcribe each clip; one :class:`Transcript` per clip, in order.

        On a GPU, clips of up to 30 s are decoded ``batch_size`` at a time with
        ``faster_whisper.BatchedInferencePipeline``; on a CPU one at a time. With
        ``language=None`` each clip's language is detected on its own.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, not {batch_size}")
        arrays = [_as_clip(clip) for clip in clips]
        language = self._check_language(language)
        results: list[Transcript | None] = [None] * len(arrays)
        short: list[int] = []
        for i, clip in enumerate(arrays):
            if clip.size == 0:
                results[i] = Transcript("", language, (), None)
            elif clip.size > WINDOW_SEC * SAMPLE_RATE:
                results[i] = self._transcribe_long(clip, language, word_timestamps)
            else:
                short.append(i)
        # Batching only pays on a GPU; a language to detect is detected per clip.
        batch = batch_size if self.device == "cuda" and language is not None else 1
        for start in range(0, len(short), batch):
            indices = short[start : start + batch]
            group = self._transcribe_windows(
                [arrays[i] for i in indices], language, word_timestamps, batch
            )
            for i, transcript in zip(indices, group, strict=True):
                results[i] = transcript
        return [t for t in results if t is not None]

    # ------------------------------------------------------------------ decoding

    def _check_language(self, language: str | None) -> str | None:
        if language is None:
            return None if self.multilingual else "en"
        if not self.multilingual:
            return "en"  # an English-only model transcribes everything as English
        supported: list[str] = self.model.supported_languages
        if language not in supported:
            raise ValueError(f"unknown language code {language!r} for ASR (e.g. 'en', 'de')")
        return language

    def _transcribe_windows(
        self,
        clips: Sequence[FloatArray],
        language: str | None,
        word_timestamps: bool,
        batch_size: int,
    ) -> list[Transcript]:
        """Decode clips of at most 30 s, each as exactly one Whisper window.

        The clips are laid end to end, each starting on a whole second, and handed to
        ``BatchedInferencePipeline`` as clip timestamps, so that each one is one chunk.
        """
        from faster_whisper import BatchedInferencePipeline

        starts: list[int] = []
        cursor = 0
        for clip in clips:
            starts.append(cursor)
            cursor += math.ceil(clip.size / SAMPLE_RATE) * SAMPLE_RATE
        audio = np.zeros(cursor, dtype=np.float32)
        for start, clip in zip(starts, clips, strict=True):
            audio[start : start + clip.size] = clip
        # Half a sample inside each bound, so that the pipeline's int(seconds * rate) lands
        # on the exact sample.
        clip_timestamps = [
            {"start": (start + 0.5) / SAMPLE_RATE, "end": (start + clip.size + 0.5) / SAMPLE_RATE}
            for start, clip in zip(starts, clips, strict=True)
        ]
        pipeline = BatchedInferencePipeline(self.model)
        segments, info = pipeline.transcribe(
            audio,
            **_decoding(language, word_timestamps),
            without_timestamps=True,
            clip_timestamps=clip_timestamps,
            batch_size=batch_size,
        )
        by_clip: list[list[Any]] = [[] for _ in clips]
        first_second = {start // SAMPLE_RATE: i for i, start in enumerate(starts)}
        for segment in segments:
            # Each chunk's segments carry seek = the chunk's start in 10 ms frames.
            index = first_second.get(round(segment.seek / 100))
            if index is None:  # pragma: no cover - faster-whisper changed its seek
                raise RuntimeError(f"faster-whisper segment at seek {segment.seek} is in no clip")
            if _is_silence(segment):
                continue
            by_clip[index].append(segment)
        return [
            _make_transcript(found, info.language, start / SAMPLE_RATE, clip.size / SAMPLE_RATE)
            for found, start, clip in zip(by_clip, starts, clips, strict=True)
        ]

    def _transcribe_long(
        self, clip: FloatArray, language: str | None, word_timestamps: bool
    ) -> Transcript:
        """A clip over 30 s: faster-whisper's sequential long-form decoding, window by window."""
        segments, info = self.model.transcribe(
            clip,
            **_decoding(language, word_timestamps),
            condition_on_previous_text=False,
            vad_filter=False,
            no_speech_threshold=NO_SPEECH_THRESHOLD,
            log_prob_threshold=LOG_PROB_THRESHOLD,
        )
        return _make_transcript(list(segments), info.language, 0.0, clip.size / SAMPLE_RATE)


# ---------------------------------------------------------------------- helpers


def _as_clip(audio: npt.NDArray[Any]) -> FloatArray:
    clip = np.asarray(audio, dtype=np.float32)
    if clip.ndim != 1:
        raise ValueError(f"ASR needs mono audio of shape (n,), not {clip.shape}")
    return np.ascontiguousarray(clip)


def _decoding(language: str | None, word_timestamps: bool) -> dict[str, Any]:
    """The decoding options both paths (batched windows, long-form) share, so that they
    decode alike: beam search at temperature 0 (no fallback)."""
    return {
        "language": language,
        "beam_size": BEAM_SIZE,
        "temperature": 0.0,
        "word_timestamps": word_timestamps,
    }


def _is_silence(segment: Any) -> bool:
    return bool(
        segment.no_speech_prob > NO_SPEECH_THRESHOLD and segment.avg_logprob < LOG_PROB_THRESHOLD
    )


def _make_transcript(
    segments: Sequence[Any], language: str | None, offset: float, duration: float
) -> Transcript:
    """One clip's transcript from its faster-whisper segments (times made clip-relative)."""
    text = "".join(segment.text for segment in segments).strip()
    words: list[Word] = []
    for segment in segments:
        for word in segment.words or ():
            start = min(max(round(float(word.start) - offset, 3), 0.0), duration)
            end = min(max(round(float(word.end) - offset, 3), start), duration)
            words.append(Word(start, end, word.word.strip(), float(word.probability)))
    # Each segment's avg_logprob is its summed log-probability over len(tokens) + 1.
    avg_logprob: float | None = None
    if segments and text:
        weights = [len(segment.tokens) + 1 for segment in segments]
        total = sum(float(s.avg_logprob) * w for s, w in zip(segments, weights, strict=True))
        avg_logprob = total / sum(weights)
    return Transcript(text, language, tuple(words), avg_logprob)


def _check_model_folder(folder: Path) -> None:
    check_model_files(
        folder,
        MODEL_FILES,
        "faster-whisper (CTranslate2) ASR",
        "convert a Whisper model with ct2-transformers-converter "
        "(--copy_files tokenizer.json preprocessor_config.json), or set models.asr in "
        'workspace.toml to a model name such as "large-v3" or "tiny"',
    )


def asr_hub_repo(model_id: str) -> str | None:
    """The hub repository a faster-whisper model name (``"large-v3"``) or hub id stands for;
    ``None`` for a name faster-whisper does not know.

    faster-whisper's own rule (``download_model``): anything with a ``/`` is a hub id, any
    other name is looked up in its table of converted models. The one place podforge maps a
    name to a repository: the loader and ``podforge doctor`` both ask here.
    """
    if "/" in model_id:
        return model_id
    from faster_whisper import utils

    if model_id not in utils.available_models():
        return None
    # The table behind available_models(); faster-whisper has no public look-up.
    table: dict[str, str] = getattr(utils, "_MODELS", {})
    return table.get(model_id, f"Systran/faster-whisper-{model_id}")


def _fetch(model_id: str) -> str:
    """The local folder of a faster-whisper model name or hub id, downloaded if need be."""
    from faster_whisper.utils import available_models, download_model
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    what = 'a local folder or "tiny"'
    repo = asr_hub_repo(model_id)
    if repo is None:
        raise ModelError(
            f"ASR model {model_id!r} is unknown: set models.asr in workspace.toml to a "
            f"faster-whisper model name ({', '.join(available_models())}), a hub id such as "
            f'"Systran/faster-whisper-large-v3", {what}'
        )
    cache = hub_cache_dir()
    try:
        return str(download_model(repo, local_files_only=hub_offline(), cache_dir=cache))
    except GatedRepoError:
        raise ModelError(
            f"ASR model {model_id!r} is gated on the Hugging Face Hub: accept its terms and log "
            f"in with `hf auth login`, or set models.asr in workspace.toml to {what}"
        ) from None
    except RepositoryNotFoundError:
        raise ModelError(
            f"ASR model {model_id!r} is not on the Hugging Face Hub: check models.asr in "
            f"workspace.toml (a faster-whisper model name, a hub id, {what})"
        ) from None
    except (OSError, ValueError):
        raise ModelError(
            f"ASR model {model_id!r} is not available offline: download it once on a machine "
            f"with network (loading it there fetches it into the Hugging Face cache, {cache}), "
            f"or set models.asr in workspace.toml to {what}"
        ) from None


def _resolve_compute_type(device: str, compute_type: str) -> str:
    if compute_type != "default":
        return compute_type
    import ctranslate2

    supported = set(ctranslate2.get_supported_compute_types(device))
    if device == "cpu":
        return "int8" if "int8" in supported else "float32"
    return "float16" if "float16" in supported else "default"
