"""Which device a model runs on: ``models.device`` checked and resolved in one place.

``models.device`` is ``auto``, ``cpu``, ``cuda`` or (from code) ``cuda:N``. The libraries
only answer how many CUDA devices they see (:func:`torch_cuda_count` for the PyTorch models,
:func:`ctranslate2_cuda_count` for faster-whisper); the rules are here: ``auto`` is the first
GPU when the library sees one, else the CPU, and CUDA asked for without a GPU, or a name that
is not a device, is one :class:`~core.errors.ModelError`. A loader says how it names the first
GPU (speechbrain wants ``cuda:0``: it warns about a bare ``cuda``) and whether it takes an
index at all (CTranslate2's device name does not). torch and ctranslate2 are imported only
to count, and only when the answer depends on it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from core.errors import ModelError

CudaCount = Callable[[], int]
"""How many CUDA devices a library sees."""

_INDEXED = re.compile(r"cuda:\d+")


def torch_cuda_count() -> int:
    """CUDA devices PyTorch can use (none when ``torch.cuda.is_available()`` says no)."""
    import torch

    return int(torch.cuda.device_count()) if torch.cuda.is_available() else 0


def ctranslate2_cuda_count() -> int:
    """CUDA devices CTranslate2 (faster-whisper) can use."""
    import ctranslate2

    return int(ctranslate2.get_cuda_device_count())


def check_device(device: str, model: str, *, indexed: bool = True) -> None:
    """Refuse a ``models.device`` that is not ``auto``, ``cpu``, ``cuda`` (or ``cuda:N`` when
    ``indexed``), with one line naming ``model`` (``"ASR model"``) and the setting."""
    if device in ("auto", "cpu", "cuda") or (indexed and _INDEXED.fullmatch(device)):
        return
    choices = "auto, cpu, cuda, cuda:N" if indexed else "auto, cpu, cuda"
    raise ModelError(
        f"{model} device {device!r} is not one of {choices}: fix models.device in workspace.toml"
    )


def resolve_device(
    device: str,
    model: str,
    count: CudaCount,
    library: str,
    *,
    indexed: bool = True,
    first_gpu: str = "cuda",
) -> str:
    """The device ``model`` runs on for the setting ``device``: ``"cpu"``, ``first_gpu`` (for
    ``auto`` with a GPU, and ``cuda``) or ``cuda:N`` as given.

    ``count`` is how many CUDA devices ``library`` (``"PyTorch"``, ``"CTranslate2"``) sees;
    ``indexed=False`` refuses ``cuda:N``. Raises :class:`~core.errors.ModelError` for a name
    that is not a device and for CUDA asked for when the library sees no GPU.
    """
    check_device(device, model, indexed=indexed)
    if device == "cpu":
        return "cpu"
    gpus = count()
    if device == "auto":
        return first_gpu if gpus > 0 else "cpu"
    if gpus == 0:
        raise ModelError(
            f'CUDA was asked for (models.device = "{device}") but no GPU is visible ({library} '
            'sees no CUDA GPU): set models.device in workspace.toml to "auto" or "cpu", or '
            "check the NVIDIA driver (nvidia-smi) and CUDA_VISIBLE_DEVICES"
        )
    return first_gpu if device == "cuda" else device


def move_to_device(model: Any, device: str, what: str) -> None:
    """``model.to(device)``; one :class:`ModelError` line when it does not fit (``what`` names
    the model, e.g. ``"TTS model 'sesame/csm-1b' in bfloat16"``)."""
    from core.errors import one_line

    try:
        model.to(device)
    except (RuntimeError, MemoryError) as exc:
        raise ModelError(
            f"{what} does not fit on {device}: {one_line(exc, first_line=True)}; set "
            'models.device to "cpu" or free the GPU'
        ) from exc
