"""The sound-generator interface: what a text-to-audio model behind a ``gen=`` cue offers.

:class:`SoundBackend` is the small interface a render and the editor call; the one
implementation today is :class:`~core.episodes.sound.stable_audio.StableAudioBackend`
(diffusers' ``StableAudioPipeline``), and another text-to-audio model is added as a second
implementation picked by :func:`make_sound_backend`. :func:`max_seconds_for` is the model's
length limit, known without loading the model (the parser checks cues against it).
Importing this module loads no model library.

Details: docs/EPISODES.md, "Generated sound"."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final, Protocol

import numpy as np
import numpy.typing as npt

from core.episodes.script import GeneratedSound
from core.models.hub import looks_like_path

if TYPE_CHECKING:
    from core.workspace import Workspace

STAGE_SOUND: Final = "sound …"
"""The ``what`` prefix of a render's progress reports while a sound is generated
(``done``/``total`` are denoising steps)."""

STABLE_AUDIO_OPEN: Final = "stabilityai/stable-audio-open-1.0"
STABLE_AUDIO_MAX_SECONDS: Final = 47.55
"""Stable Audio Open 1.0's window: 1024 latent frames of 2048 samples at 44.1 kHz."""

StepProgress = Callable[[int, int], None]
"""``(done, total)`` denoising steps, called after each step."""


@dataclass(frozen=True)
class SoundSource:
    """The audio a ``from=`` cue varies: ``(n, channels)`` float32 at ``sample_rate``, and
    the SHA-256 of its file (part of the cache key)."""

    audio: npt.NDArray[np.float32]
    sample_rate: int
    sha256: str


@dataclass(frozen=True)
class Generated:
    """A generated sound: ``(n, channels)`` float32 at the model's rate."""

    audio: npt.NDArray[np.float32]
    sample_rate: int


class SoundBackend(Protocol):
    name: str
    model: str
    """The model as configured (``[models] sound``)."""
    sample_rate: int
    max_seconds: float
    default_steps: int
    default_guidance: float

    def identity(self) -> dict[str, object]:
        """Everything about the model and its libraries that shapes a sound (cache key)."""
        ...

    def generate(
        self,
        request: GeneratedSound,
        seed: int,
        source: SoundSource | None,
        progress: StepProgress | None = None,
    ) -> Generated:
        """Make ``request`` (its ``None`` fields at this backend's defaults) with ``seed``."""
        ...


def sound_model(ws: Workspace) -> str:
    """``[models] sound`` of ``ws``."""
    return ws.settings.models.sound


def max_seconds_for(model_id: str, root: Path | None = None) -> float:
    """The longest sound ``model_id`` makes, without loading it: the tiny model's window, a
    local folder's (from its ``transformer/`` and ``vae/`` configs), else Stable Audio Open's
    47.55 s (checked again against the loaded model when it generates)."""
    if model_id == "tiny":
        from core.models.tiny.sound import tiny_max_seconds

        return tiny_max_seconds()
    if looks_like_path(model_id):
        folder = Path(model_id).expanduser()
        if not folder.is_absolute() and root is not None:
            folder = root / folder
        try:
            dit = json.loads((folder / "transformer" / "config.json").read_text("utf-8"))
            vae = json.loads((folder / "vae" / "config.json").read_text("utf-8"))
            hop = int(np.prod(vae["downsampling_ratios"]))
            return float(dit["sample_size"]) * hop / float(vae["sampling_rate"])
        except (OSError, ValueError, KeyError, TypeError):
            pass  # not readable here: the loader says what is wrong
    return STABLE_AUDIO_MAX_SECONDS


def make_sound_backend(ws: Workspace, *, allow_cpu: bool | None = None) -> SoundBackend:
    """The one sound-backend factory: ``[models] sound`` through Stable Audio (a hub id, a
    local folder or ``"tiny"``). Loads nothing until the first sound is generated.
    ``allow_cpu`` (default ``[models] sound_cpu``) lets a real model run on the CPU."""
    from core.episodes.sound.stable_audio import StableAudioBackend

    cpu = ws.settings.models.sound_cpu if allow_cpu is None else allow_cpu
    backend: SoundBackend = StableAudioBackend(
        sound_model(ws), device=ws.settings.models.device, allow_cpu=cpu, root=ws.root
    )
    return backend
