"""The CSM backend: one base model in memory, every speaker's LoRA adapter loaded into it.

A speaker's voice is its :class:`~core.voices.folder.VoiceFolder`: the peft adapter, the anchor
clips and ``voice.toml`` (anchor transcripts). Each line selects its speaker's adapter with
``set_adapter`` and is generated after the speaker's anchor clips as context turns, with a
seed of its own; the output length is bounded from the text length. ``<break>`` tags are
honoured by generating the text on either side separately and joining them with silence;
emphasis and prosody are not (the renderer warns once).

One generation is at most 40 s (``MAX_SECONDS``), about 440 characters
(:data:`core.episodes.script.MAX_PIECE_CHARS`). Longer text is never cut off: it is split between
sentences (:func:`core.episodes.script.split_text`), each piece generated with its own seed and the
pieces joined with ``SENTENCE_GAP_S`` of silence; a single sentence longer than that is cut
at commas or between words (the parser warns about it at its line).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from core.episodes.script import MAX_PIECE_CHARS, Break, Line, Span, split_text
from core.episodes.synthesis.backends import Rendered
from core.voices.folder import VoiceFolder, trained_voice
from core.workspace import Workspace

SECONDS_PER_CHAR = 0.09  # generous: ~11 characters a second of speech
MIN_SECONDS = 2.0
MAX_SECONDS = 40.0
SENTENCE_GAP_S = 0.2  # silence between the pieces of a line too long for one generation


@dataclass
class Voice:
    speaker: str
    folder: Path
    anchors: list[tuple[str, Any]]  # (transcript, codes) context turns
    identity: dict[str, object]


class CsmBackend:
    """Renders lines with ``models.tts`` plus each speaker's trained adapter."""

    name = "csm"
    version = "csm-2"  # 2: long lines split between sentences instead of cut at 40 s
    supported_tags = frozenset({"break"})

    def __init__(self, ws: Workspace, max_chars: int = MAX_PIECE_CHARS) -> None:
        if not 1 <= max_chars <= MAX_SECONDS / SECONDS_PER_CHAR:
            raise ValueError(f"max_chars must lie in 1..{MAX_SECONDS / SECONDS_PER_CHAR:g}")
        self.ws = ws
        self.max_chars = max_chars
        self.last_pieces: list[str] = []
        """The texts generated for the last rendered line, one per generation, in order."""
        self._bundle: Any = None
        self._model: Any = None
        self._voices: dict[str, Voice] = {}

    # -- voices ------------------------------------------------------------------
    def voice_folder(self, speaker: str) -> Path:
        """``voices/<speaker>/``, the one door to a trained voice: every use of an adapter
        (a render, a preview) passes here first, ``podforge eval`` through the same
        :func:`core.voices.folder.trained_voice`.

        Raises :class:`~core.errors.ConsentError` when the speaker's consent record is
        missing or its scope does not cover synthesis (checked before anything else, also
        before the model loads), and :class:`~core.errors.VoiceError` when no adapter was
        exported.
        """
        return trained_voice(self.ws, speaker).root

    def cache_identity(self, voice: str) -> dict[str, object]:
        folder = VoiceFolder(self.voice_folder(voice))
        digest = hashlib.sha256()
        for path in sorted(folder.adapter.glob("*")) + sorted(folder.anchors.glob("*")):
            digest.update(path.name.encode())
            digest.update(path.read_bytes())
        if folder.toml.is_file():
            digest.update(folder.toml.read_bytes())
        return {"base_model": self.ws.settings.models.tts, "voice": digest.hexdigest()[:24]}

    def _load(self, speaker: str) -> Voice:
        if speaker in self._voices:
            return self._voices[speaker]
        from peft import PeftModel

        from core.audio.io import read
        from core.models import csm

        folder = VoiceFolder(self.voice_folder(speaker))
        if self._bundle is None:
            self._bundle = csm.load_csm(self.ws.settings.models.tts, self.ws.settings.models.device)
        if self._model is None:
            self._model = PeftModel.from_pretrained(
                self._bundle.model, str(folder.adapter), adapter_name=speaker
            )
        else:
            self._model.load_adapter(str(folder.adapter), adapter_name=speaker)
        self._model.eval()
        anchors = []
        for clip, text in folder.listed_anchors():
            audio, _ = read(clip, target_rate=self._bundle.sample_rate)
            anchors.append((text, csm.encode_audio(self._bundle, audio)))
        voice = Voice(speaker, folder.root, anchors, self.cache_identity(speaker))
        self._voices[speaker] = voice
        return voice

    # -- rendering ---------------------------------------------------------------
    def render(self, line: Line, seed: int) -> Rendered:
        from core.models import csm

        voice = self._load(line.voice)
        self._model.set_adapter(line.voice)
        sr = self._bundle.sample_rate
        pieces: list[npt.NDArray[np.float32]] = []
        generated: list[str] = []
        text = ""
        for part in (*line.parts, Break(0.0)):
            if isinstance(part, Span):
                text += part.text
                continue
            for k, piece in enumerate(split_text(text, self.max_chars)):
                if k > 0:
                    pieces.append(np.zeros(round(SENTENCE_GAP_S * sr), np.float32))
                max_seconds = min(MAX_SECONDS, max(MIN_SECONDS, len(piece) * SECONDS_PER_CHAR))
                pieces.append(
                    csm.synthesize(
                        self._bundle, piece, 0, voice.anchors,
                        seed=seed + len(generated), max_seconds=max_seconds,
                    )
                )  # fmt: skip
                generated.append(piece)
            text = ""
            if isinstance(part, Break) and part.seconds > 0:
                pieces.append(np.zeros(math.ceil(part.seconds * sr), np.float32))
        self.last_pieces = generated
        audio = np.concatenate(pieces) if pieces else np.zeros(0, np.float32)
        return Rendered(audio=audio.astype(np.float32), sample_rate=sr)
