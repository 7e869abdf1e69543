"""``podforge doctor``: is this machine ready for this workspace?

:func:`run_checks` looks, without downloading anything or waiting on the network, at:

* each model ``[models]`` names (``tts``, ``asr``, ``speaker``): the built-in ``"tiny"``
  stand-in, a local folder (with the files its loader needs), or a hub id found in the
  Hugging Face cache (``HF_HOME`` / ``HF_HUB_CACHE``; only ``local_files_only`` look-ups) or,
  for the speaker model, in podforge's own copy of it; a missing one comes with the command
  that fetches it while online (:func:`model_presence`);
* the torch device ``models.device`` gives, CUDA, the GPU and its memory, the NVIDIA driver
  found and the one the installed PyTorch's CUDA needs (:mod:`core.models.cuda_info`);
* PortAudio and an audio output device (optional: only listening in the app needs them),
  espeak-ng (the draft voice), ffmpeg (optional).

Every check is a :class:`Check`; ``fail`` marks a required item that is missing or broken,
``warn`` something optional or merely worth knowing. Heavy libraries are imported inside.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Literal

from core.models.hub import hub_cache_dir, hub_offline, looks_like_path
from core.workspace import Workspace

Level = Literal["ok", "warn", "fail"]
ModelKind = Literal["tts", "asr", "speaker"]

HUB_URL = "https://huggingface.co"
LABELS: dict[ModelKind, str] = {"tts": "TTS model", "asr": "ASR model", "speaker": "speaker model"}


@dataclass(frozen=True)
class Check:
    """One line of the doctor's report."""

    item: str
    level: Level
    detail: str
    fix: str = ""
    """What to run or change, when something is missing."""


@dataclass(frozen=True)
class ModelPresence:
    """Whether the model ``models.<kind>`` names can be loaded from this machine as it is."""

    kind: ModelKind
    model_id: str
    present: bool
    detail: str
    """Where it is, or what is missing."""
    fetch: str = ""
    """The command that fetches it (with network), for a hub model that is missing."""
    downloadable: bool = False
    """A hub id: a loader with network access would download it."""


def model_presence(kind: ModelKind, model_id: str) -> ModelPresence:
    """Look for ``model_id`` as the loader of ``kind`` would, never downloading."""
    if model_id == "tiny":
        return ModelPresence(kind, model_id, True, "built-in tiny stand-in (built locally)")
    folder = Path(model_id).expanduser()
    if folder.is_dir():
        missing = [name for name in _folder_files(kind) if not (folder / name).is_file()]
        if missing:
            return ModelPresence(
                kind, model_id, False, f"local folder {folder} has no {', '.join(missing)}"
            )
        return ModelPresence(kind, model_id, True, f"local folder {folder}")
    if looks_like_path(model_id):
        return ModelPresence(kind, model_id, False, f"local folder {folder} does not exist")
    if kind == "asr":
        return _asr_presence(model_id)
    if kind == "speaker":
        from core.models.speaker import default_savedir

        copy = default_savedir(model_id)
        if all((copy / name).is_file() for name in _SPEAKER_FILES):
            return ModelPresence(kind, model_id, True, f"podforge's copy in {copy}")
    return _hub_presence(kind, model_id, model_id, _hub_files(kind))


def run_checks(ws: Workspace) -> list[Check]:
    """Every check for ``ws`` on this machine, in report order."""
    checks = [_hub_check()]
    models = ws.settings.models
    for kind, model_id in (("tts", models.tts), ("asr", models.asr), ("speaker", models.speaker)):
        checks.append(model_check(model_presence(kind, model_id)))  # type: ignore[arg-type]
    checks += _cuda_checks(models.device, models.tts)
    checks += _audio_checks()
    checks.append(_espeak_check())
    checks.append(_ffmpeg_check())
    return checks


def failures(checks: list[Check]) -> list[Check]:
    return [c for c in checks if c.level == "fail"]


def summary(checks: list[Check]) -> str:
    """The final line: all required items OK, or which ones are not."""
    failed = failures(checks)
    warned = sum(c.level == "warn" for c in checks)
    note = f" ({warned} warning(s))" if warned else ""
    if not failed:
        return f"all required items OK{note}"
    return (
        f"{len(failed)} required item(s) missing or broken: "
        f"{', '.join(c.item for c in failed)}{note}; see the fixes above"
    )


def model_check(presence: ModelPresence) -> Check:
    item = f"{LABELS[presence.kind]} (models.{presence.kind} = {presence.model_id!r})"
    if presence.present:
        return Check(item, "ok", presence.detail)
    fix = (
        f"with network: {presence.fetch}"
        if presence.fetch
        else f'fix models.{presence.kind} in workspace.toml (a hub id, a local folder or "tiny")'
    )
    return Check(item, "fail", presence.detail, fix)


# -- models ------------------------------------------------------------------------------

_SPEAKER_FILES = ("hyperparams.yaml", "embedding_model.ckpt")


def _folder_files(kind: ModelKind) -> tuple[str, ...]:
    if kind == "tts":
        from core.models.csm import MODEL_FILES as csm_files

        return csm_files
    if kind == "asr":
        from core.models.asr import MODEL_FILES as asr_files

        return asr_files
    from core.models.speaker import HYPERPARAMS_FILE

    return (HYPERPARAMS_FILE,)


def _hub_files(kind: ModelKind) -> tuple[str, ...]:
    if kind == "tts":
        return ("config.json",)
    if kind == "speaker":
        return _SPEAKER_FILES
    from core.models.asr import MODEL_FILES as asr_files

    return asr_files


def _asr_presence(model_id: str) -> ModelPresence:
    """A faster-whisper name or hub id, resolved to its repository as the ASR loader does."""
    from core.models.asr import asr_hub_repo

    repo = asr_hub_repo(model_id)
    if repo is None:
        from faster_whisper.utils import available_models

        return ModelPresence(
            "asr", model_id, False,
            f"unknown faster-whisper model name (known: {', '.join(available_models())})",
        )  # fmt: skip
    return _hub_presence("asr", model_id, repo, _hub_files("asr"))


def _hub_presence(
    kind: ModelKind, model_id: str, repo: str, files: tuple[str, ...]
) -> ModelPresence:
    """Look in the Hugging Face cache only (``local_files_only``): never the network."""
    from huggingface_hub import snapshot_download

    cache = hub_cache_dir()
    gated = (
        f" (accept its terms at {HUB_URL}/{repo} and run `uv run hf auth login` first)"
        if kind == "tts"
        else ""
    )
    fetch = f"uv run hf download {repo}{gated}"
    try:
        # Only reads the cache (local_files_only): nothing is downloaded, so no revision to pin.
        found = snapshot_download(repo, cache_dir=cache, local_files_only=True)  # nosec B615
        folder = Path(found)
    except Exception:  # LocalEntryNotFoundError, a bad repo id, an unreadable cache
        where = f"not in the Hugging Face cache ({cache})"
        if hub_offline():
            where += "; HF_HUB_OFFLINE is set, so nothing will be downloaded"
        return ModelPresence(kind, model_id, False, where, fetch, downloadable=True)
    missing = [name for name in files if not (folder / name).is_file()]
    if missing:
        return ModelPresence(
            kind, model_id, False,
            f"incomplete in the Hugging Face cache ({folder} has no {', '.join(missing)})",
            fetch, downloadable=True,
        )  # fmt: skip
    return ModelPresence(kind, model_id, True, f"Hugging Face cache ({folder})")


def _hub_check() -> Check:
    offline = "HF_HUB_OFFLINE is set: nothing is downloaded" if hub_offline() else "online allowed"
    return Check("Hugging Face cache", "ok", f"{hub_cache_dir()} ({offline})")


# -- torch, CUDA, the driver -------------------------------------------------------------


def _cuda_checks(device: str, tts: str) -> list[Check]:
    from core.models.cuda_info import cuda_facts, cuda_unavailable_reason, driver_satisfies

    try:
        facts = cuda_facts()
    except Exception as exc:  # a broken torch install is a finding, not a crash
        return [Check("PyTorch", "fail", f"does not import: {exc}", "uv sync")]
    reason = cuda_unavailable_reason(facts.torch_version, facts.torch_cuda, facts.driver)
    checks: list[Check] = []
    setting = f"models.device = {device!r}"
    if device.startswith("cuda") and not facts.available:
        checks.append(Check(f"torch device ({setting})", "fail", reason,
                            'set models.device to "auto" or "cpu", or fix the driver'))  # fmt: skip
    elif device == "cpu" or not facts.available:
        level: Level = "ok" if device == "cpu" or tts == "tiny" else "warn"
        note = "" if level == "ok" else " (training a real model on the CPU is impractical)"
        checks.append(Check(f"torch device ({setting})", level, f"cpu{note}"))
    else:
        checks.append(Check(f"torch device ({setting})", "ok", "cuda"))
    build = f"PyTorch {facts.torch_version}, CUDA {facts.torch_cuda or 'none (CPU build)'}"
    if facts.available:
        checks.append(Check("CUDA", "ok", f"{facts.gpu_name}, {facts.vram_gb} GB VRAM; {build}"))
    else:
        checks.append(Check("CUDA", "warn", f"unavailable; {build}"))
    need = facts.need
    needed = f"needs >= {need.minimum} for CUDA {need.cuda}" if need else "needs: unknown"
    if facts.driver is None:
        checks.append(Check("NVIDIA driver", "warn", f"none found; PyTorch's CUDA {needed}"))
    elif not facts.available:
        checks.append(Check("NVIDIA driver", "fail", reason,
                            "upgrade the driver or install a PyTorch for an older CUDA "
                            "(docs/TRAINING.md)"))  # fmt: skip
    else:
        ok = need is None or driver_satisfies(facts.driver, need.minimum)
        compat = "" if ok else " (running through CUDA minor-version compatibility)"
        checks.append(Check("NVIDIA driver", "ok" if ok else "warn",
                            f"{facts.driver} ({facts.driver_source}); PyTorch's CUDA "
                            f"{needed}{compat}"))  # fmt: skip
    return checks


# -- audio, espeak-ng, ffmpeg ------------------------------------------------------------


def _audio_checks() -> list[Check]:
    from core.audio.playback import check_output

    hint = "optional: only listening in the app needs it; see docs/PLAYBACK.md"
    try:
        import sounddevice

        version = str(sounddevice.get_portaudio_version()[1]).split(",")[0]
    except Exception as exc:  # OSError: no PortAudio library; PortAudioError at initialise
        return [Check("PortAudio", "warn", f"does not load ({exc})", hint),
                Check("audio output", "warn", "not checked (no PortAudio)", hint)]  # fmt: skip
    problem = check_output()
    output = (
        Check("audio output", "ok", f"device {os.environ.get('PODFORGE_AUDIO_DEVICE', 'default')}")
        if problem is None
        else Check("audio output", "warn", problem, hint)
    )
    return [Check("PortAudio", "ok", version), output]


def _espeak_check() -> Check:
    from core.episodes.synthesis import draft

    if draft.available():
        try:
            version = f"espeakng-loader {metadata.version('espeakng-loader')}"
        except metadata.PackageNotFoundError:
            version = "espeakng-loader"
        return Check("espeak-ng (draft voice)", "ok", version)
    return Check(
        "espeak-ng (draft voice)", "fail", "the espeak-ng library or its data does not load",
        "uv sync --reinstall-package espeakng-loader",
    )  # fmt: skip


def _ffmpeg_check() -> Check:
    found = shutil.which("ffmpeg")
    if found:
        return Check("ffmpeg (optional)", "ok", found)
    return Check("ffmpeg (optional)", "warn", "not found; podforge decodes audio with PyAV, "
                 "only the benches' independent loudness meter uses ffmpeg")  # fmt: skip
