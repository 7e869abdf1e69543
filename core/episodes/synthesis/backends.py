"""Synthesis backends: how one script line becomes audio for one speaker.

A backend says which SSML-lite tags it honours; the renderer warns once per tag kind
it cannot honour instead of dropping it silently. ``cache_identity`` names everything
about the backend and the voice that shapes the audio, for the render cache key.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np
import numpy.typing as npt

from core.episodes.script import Line
from core.episodes.synthesis.draft import DraftVoice, synthesize
from core.errors import VoiceError
from core.settings import Speaker

if TYPE_CHECKING:
    from core.workspace import Workspace

Audio = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Rendered:
    """One line's audio."""

    audio: Audio
    sample_rate: int


class Backend(Protocol):
    name: str
    version: str
    supported_tags: frozenset[str]
    batch_size: int
    """How many lines :meth:`render_many` renders together (1: one at a time)."""

    def cache_identity(self, voice: str) -> dict[str, object]:
        """Everything about ``voice`` in this backend that changes its audio."""
        ...

    def render(self, line: Line, seed: int) -> Rendered:
        """Synthesise ``line`` in its speaker's voice."""
        ...

    def render_many(self, items: Sequence[tuple[Line, int]]) -> list[Rendered]:
        """``render(line, seed)`` for each item, possibly in one batch: the same audio."""
        ...


class DraftBackend:
    """The espeak-ng draft voice: instant on CPU; previews and the demo.

    Per speaker it uses ``draft_voice`` and ``draft_pitch`` from ``workspace.toml``.
    espeak-ng honours breaks, emphasis and prosody rate through SSML. It is deterministic,
    so the seed does not change its output.
    """

    name = "draft"
    version = "espeak-ng-1"
    supported_tags = frozenset({"break", "emphasis", "prosody"})
    batch_size = 1  # instant per line: nothing to gain from batches

    def __init__(self, speakers: dict[str, Speaker], sample_rate: int = 24000) -> None:
        self.speakers = speakers
        self.sample_rate = sample_rate

    def _voice(self, voice: str) -> DraftVoice:
        sp = self.speakers[voice]
        return DraftVoice(language=sp.draft_voice, pitch=sp.draft_pitch)

    def cache_identity(self, voice: str) -> dict[str, object]:
        v = self._voice(voice)
        return {"language": v.language, "pitch": v.pitch, "rate": v.rate, "range": v.pitch_range}

    def render(self, line: Line, seed: int) -> Rendered:
        audio = synthesize(line.ssml(), self._voice(line.voice), self.sample_rate, ssml=True)
        return Rendered(audio=audio, sample_rate=self.sample_rate)

    def render_many(self, items: Sequence[tuple[Line, int]]) -> list[Rendered]:
        return [self.render(line, seed) for line, seed in items]


def make_backend(ws: Workspace, name: str) -> Backend:
    """The one backend factory: ``"draft"`` (espeak-ng at the workspace rate) or ``"csm"``
    (the base model + each speaker's adapter), every line watermarked
    (:class:`~core.episodes.synthesis.watermarked.Watermarked`) unless ``[watermark]`` turns
    the mark off. Unknown names are a one-line VoiceError."""
    backend: Backend
    if name == "draft":
        backend = DraftBackend(ws.settings.speakers, ws.settings.audio.sample_rate)
    elif name == "csm":
        from core.episodes.synthesis.csm_backend import CsmBackend

        backend = CsmBackend(ws)
    else:
        raise VoiceError(f"unknown synthesis backend {name!r}; use draft or csm")
    if not ws.settings.watermark.enabled:
        return backend
    from core.episodes.synthesis.watermarked import Watermarked

    return Watermarked(backend)
