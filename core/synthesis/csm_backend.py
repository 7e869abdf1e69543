"""The CSM backend: one base model in memory, every speaker's LoRA adapter loaded into it.

A speaker's voice is ``voices/<speaker>/``: ``adapter/`` (peft), ``anchors/*.wav`` and
``voice.toml`` (anchor transcripts). Each line selects its speaker's adapter with
``set_adapter`` and is generated after the speaker's anchor clips as context turns, with a
seed of its own; the output length is bounded from the text length. ``<break>`` tags are
honoured by generating the text on either side separately and joining them with silence;
emphasis and prosody are not (the renderer warns once).
"""

from __future__ import annotations

import hashlib
import math
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from core.errors import VoiceError
from core.script import Break, Line, Span
from core.synthesis.backends import Rendered
from core.workspace import Workspace

SECONDS_PER_CHAR = 0.09  # generous: ~11 characters a second of speech
MIN_SECONDS = 2.0
MAX_SECONDS = 40.0


@dataclass
class Voice:
    speaker: str
    folder: Path
    anchors: list[tuple[str, Any]]  # (transcript, codes) context turns
    identity: dict[str, object]


class CsmBackend:
    """Renders lines with ``models.tts`` plus each speaker's trained adapter."""

    name = "csm"
    version = "csm-1"
    supported_tags = frozenset({"break"})

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        self._bundle: Any = None
        self._model: Any = None
        self._voices: dict[str, Voice] = {}

    # -- voices ------------------------------------------------------------------
    def voice_folder(self, speaker: str) -> Path:
        folder = self.ws.voices_dir / speaker
        if not (folder / "adapter" / "adapter_config.json").is_file():
            raise VoiceError(
                f"speaker {speaker!r} has no trained voice ({folder / 'adapter'} is missing): "
                f"train one with `podforge train {self.ws.root} --speaker {speaker}` and export "
                "it, or render with --draft"
            )
        return folder

    def cache_identity(self, voice: str) -> dict[str, object]:
        folder = self.voice_folder(voice)
        digest = hashlib.sha256()
        for path in sorted((folder / "adapter").glob("*")) + sorted((folder / "anchors").glob("*")):
            digest.update(path.name.encode())
            digest.update(path.read_bytes())
        if (folder / "voice.toml").is_file():
            digest.update((folder / "voice.toml").read_bytes())
        return {"base_model": self.ws.settings.models.tts, "voice": digest.hexdigest()[:24]}

    def _load(self, speaker: str) -> Voice:
        if speaker in self._voices:
            return self._voices[speaker]
        from peft import PeftModel

        from core import csm
        from core.audio import read

        folder = self.voice_folder(speaker)
        if self._bundle is None:
            self._bundle = csm.load_csm(self.ws.settings.models.tts, self.ws.settings.models.device)
        if self._model is None:
            self._model = PeftModel.from_pretrained(
                self._bundle.model, str(folder / "adapter"), adapter_name=speaker
            )
        else:
            self._model.load_adapter(str(folder / "adapter"), adapter_name=speaker)
        self._model.eval()
        meta = _voice_meta(folder)
        anchors = []
        for row in meta.get("anchors", []):
            audio, _ = read(folder / row["file"], target_rate=self._bundle.sample_rate)
            anchors.append((str(row["text"]), csm.encode_audio(self._bundle, audio)))
        voice = Voice(speaker, folder, anchors, self.cache_identity(speaker))
        self._voices[speaker] = voice
        return voice

    # -- rendering ---------------------------------------------------------------
    def render(self, line: Line, seed: int) -> Rendered:
        from core import csm

        voice = self._load(line.voice)
        self._model.set_adapter(line.voice)
        sr = self._bundle.sample_rate
        pieces: list[npt.NDArray[np.float32]] = []
        text = ""
        n = 0
        for part in (*line.parts, Break(0.0)):
            if isinstance(part, Span):
                text += part.text
                continue
            if text.strip():
                max_seconds = min(MAX_SECONDS, max(MIN_SECONDS, len(text) * SECONDS_PER_CHAR))
                pieces.append(
                    csm.synthesize(
                        self._bundle, " ".join(text.split()), 0, voice.anchors,
                        seed=seed + n, max_seconds=max_seconds,
                    )
                )  # fmt: skip
                n += 1
            text = ""
            if isinstance(part, Break) and part.seconds > 0:
                pieces.append(np.zeros(math.ceil(part.seconds * sr), np.float32))
        audio = np.concatenate(pieces) if pieces else np.zeros(0, np.float32)
        return Rendered(audio=audio.astype(np.float32), sample_rate=sr)


def _voice_meta(folder: Path) -> dict[str, Any]:
    path = folder / "voice.toml"
    if not path.is_file():
        return {}
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise VoiceError(f"{path}: unreadable ({exc}); export the voice again") from None
