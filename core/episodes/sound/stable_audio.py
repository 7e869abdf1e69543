"""The Stable Audio sound backend: diffusers' ``StableAudioPipeline`` behind :class:`SoundBackend`.

``[models] sound`` is a hub id (``stabilityai/stable-audio-open-1.0``, gated: accept its
licence on the hub and log in), a local folder saved with ``save_pretrained``, or ``"tiny"``
(a random-init pipeline built locally, :mod:`core.models.tiny.sound`); all three load through
``StableAudioPipeline.from_pretrained``. The model loads on the first sound a render needs,
never for cached ones. A real model on the CPU (about a billion parameters, two passes a
step for guidance, 100 steps: hours on a laptop) is refused unless allowed
(``--allow-cpu-sound``, ``[models] sound_cpu``); the tiny one always runs. Generation is
:func:`core.episodes.sound.sdedit.denoise`, which reports every denoising step.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from core.episodes.script import GeneratedSound
from core.episodes.sound.backend import (
    STABLE_AUDIO_OPEN,
    Generated,
    SoundSource,
    StepProgress,
    max_seconds_for,
)
from core.errors import ModelError, at, one_line
from core.models.device import move_to_device, resolve_device, torch_cuda_count
from core.models.hub import hub_cache_dir, hub_offline, looks_like_path

MODEL_FILES = ("model_index.json",)
DEFAULT_STEPS = 100
DEFAULT_GUIDANCE = 7.0
HUB_URL = "https://huggingface.co"


class StableAudioBackend:
    """Stable Audio Open (or a pipeline of its shape): 44.1 kHz stereo, up to 47 s."""

    name = "stable-audio"
    sample_rate = 44100

    def __init__(
        self, model: str, *, device: str = "auto", allow_cpu: bool = False, root: Path | None = None
    ) -> None:
        self.model = model
        self.device_setting = device
        self.allow_cpu = allow_cpu
        self.root = root
        self.max_seconds = max_seconds_for(model, root)
        tiny = model == "tiny"
        if tiny:
            from core.models.tiny.sound import TINY_STEPS

            self.default_steps = TINY_STEPS
        else:
            self.default_steps = DEFAULT_STEPS
        self.default_guidance = DEFAULT_GUIDANCE
        self._pipe: Any = None
        self._device = ""

    # -- identity -------------------------------------------------------------------------
    def identity(self) -> dict[str, object]:
        from importlib.metadata import version

        device = self.device()
        return {
            "backend": self.name,
            "model": self._model_identity(),
            "dtype": _dtype_name(device),
            "diffusers": version("diffusers"),
            "torch": version("torch").split("+")[0],
            "scheduler": "CosineDPMSolverMultistepScheduler",
            "loop": "podforge-sdedit-1",
        }

    def _model_identity(self) -> object:
        if self.model == "tiny":
            from core.models.tiny.sound import TINY_SOUND

            return TINY_SOUND.stamp()
        return self.model

    def device(self) -> str:
        """The device the model runs on (``[models] device`` resolved once)."""
        if not self._device:
            self._device = resolve_device(
                self.device_setting, "sound model", torch_cuda_count, "PyTorch"
            )
        return self._device

    # -- loading --------------------------------------------------------------------------
    def check_device(self) -> None:
        """Refuse a real model on the CPU unless allowed: one line saying what to do."""
        if self.model != "tiny" and self.device() == "cpu" and not self.allow_cpu:
            raise ModelError(
                f"sound model {self.model!r} would run on the CPU, where one sound takes hours "
                "(about 1B parameters, two passes a step, 100 steps); render on a machine with "
                "a CUDA GPU, or allow it with `podforge render --allow-cpu-sound` "
                "(or [models] sound_cpu = true)"
            )

    def pipeline(self) -> Any:
        """The loaded pipeline (loaded on first use)."""
        if self._pipe is None:
            self.check_device()
            self._pipe = load_stable_audio(self.model, self.device(), self.root)
        return self._pipe

    # -- generating -----------------------------------------------------------------------
    def generate(
        self,
        request: GeneratedSound,
        seed: int,
        source: SoundSource | None,
        progress: StepProgress | None = None,
    ) -> Generated:
        from core.audio.io import resample
        from core.episodes.sound.sdedit import denoise

        pipe = self.pipeline()
        rate = int(pipe.vae.config.sampling_rate)
        audio = None
        if source is not None:
            audio = source.audio
            if source.sample_rate != rate:
                audio = resample(audio, source.sample_rate, rate)
        out = denoise(
            pipe,
            prompt=request.prompt,
            negative=request.negative,
            seconds=request.seconds,
            seed=seed,
            steps=request.steps or self.default_steps,
            guidance=self.default_guidance if request.guidance is None else request.guidance,
            source=audio,
            strength=1.0 if source is None else (request.strength or 1.0),
            on_step=progress,
        )
        return Generated(audio=out, sample_rate=rate)


def _dtype_name(device: str) -> str:
    return "float16" if device.startswith("cuda") else "float32"


def resolve_sound_model(model_id: str, root: Path | None = None) -> tuple[str, bool]:
    """Where ``model_id`` loads from and whether that is a local folder (``"tiny"``: the
    tiny pipeline's folder, built on first use)."""
    if model_id == "tiny":
        from core.models.tiny.sound import tiny_sound_path

        return str(tiny_sound_path()), True
    folder = Path(model_id).expanduser()
    if not folder.is_absolute() and root is not None and looks_like_path(model_id):
        folder = root / folder
    if folder.is_dir():
        return str(folder), True
    if looks_like_path(model_id):
        raise ModelError(
            f"sound model folder {model_id!r} does not exist: set [models] sound in "
            f'workspace.toml to an existing folder, a hub id such as "{STABLE_AUDIO_OPEN}", '
            'or "tiny"'
        )
    return model_id, False


def load_stable_audio(model_id: str, device: str, root: Path | None = None) -> Any:
    """``StableAudioPipeline.from_pretrained`` of ``model_id`` on ``device`` (float16 on a
    GPU, float32 on the CPU), with its progress bar off; every failure a user can cause is a
    one-line :class:`ModelError`."""
    path, local = resolve_sound_model(model_id, root)
    if local:
        from core.models.hub import check_model_files

        check_model_files(
            Path(path),
            MODEL_FILES,
            "Stable Audio",
            "save one with StableAudioPipeline.save_pretrained, or set [models] sound in "
            f'workspace.toml to "{STABLE_AUDIO_OPEN}" or "tiny"',
        )
    import diffusers
    import torch

    library: Any = diffusers  # only partly typed
    dtype = torch.float16 if device.startswith("cuda") else torch.float32
    hub: dict[str, Any] = {}
    if not local:
        hub = {"cache_dir": hub_cache_dir(), "local_files_only": hub_offline()}
    try:
        pipe = library.StableAudioPipeline.from_pretrained(path, dtype=dtype, **hub)
    except (OSError, ValueError, KeyError, RuntimeError, TypeError, ImportError) as exc:
        if local:
            raise ModelError(
                at(path, f"cannot load the sound model: {one_line(exc, first_line=True)}")
            ) from exc
        raise ModelError(
            f"sound model {model_id!r} cannot be loaded ({one_line(exc, first_line=True)}): it "
            f"is gated on the Hugging Face Hub; accept its licence at {HUB_URL}/{model_id}, log "
            "in with `huggingface-cli login` and load it once with network, or set [models] "
            'sound in workspace.toml to a local folder or "tiny"'
        ) from None
    move_to_device(pipe, device, f"sound model {model_id!r}")
    pipe.set_progress_bar_config(disable=True)
    return pipe
