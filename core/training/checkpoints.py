"""Training checkpoints: ``runs/<id>/checkpoints/step-N/{adapter/, state.pt}``.

``adapter/`` is the peft adapter (``save_pretrained``); ``state.pt`` holds the step, the
optimizer and scheduler states and every RNG state (torch, CUDA, numpy, Python), so a resumed
run computes exactly what an uninterrupted one would. A checkpoint is written beside its
final name and renamed into place: a folder with a ``state.pt`` is complete. ``state.pt`` is
read with ``weights_only=True``; the only non-tensor globals it holds are numpy's RNG state
array, allowed explicitly.
"""

from __future__ import annotations

import random
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from core.training.protocol import MetricsWriter

STATE = "state.pt"
ADAPTER = "adapter"


def newest_checkpoint(run_dir: Path) -> Path | None:
    """The complete checkpoint with the highest step, or ``None``."""
    found = [p for p in (run_dir / "checkpoints").glob("step-*") if (p / STATE).is_file()]
    return max(found, key=checkpoint_step, default=None)


def checkpoint_step(path: Path) -> int:
    """The step a ``step-N`` checkpoint folder was written at."""
    return int(path.name.split("-")[1])


def save_checkpoint(
    run_dir: Path, model: Any, optimizer: Any, scheduler: Any, step: int, metrics: MetricsWriter
) -> Path:
    """Adapter + optimizer + scheduler + RNG states, written beside and renamed into place."""
    import torch

    target = run_dir / "checkpoints" / f"step-{step}"
    if (target / STATE).is_file():
        return target
    tmp = Path(tempfile.mkdtemp(prefix=f".step-{step}.", dir=run_dir / "checkpoints"))
    model.save_pretrained(tmp / ADAPTER)
    torch.save(
        {
            "step": step,
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            "numpy_rng": np.random.get_state(),
            "python_rng": random.getstate(),
        },
        tmp / STATE,
    )
    if target.exists():
        shutil.rmtree(target)
    tmp.rename(target)
    metrics.write("checkpoint", step=step, path=target.relative_to(run_dir).as_posix())
    return target


def read_state(path: Path) -> dict[str, Any]:
    """``state.pt`` of the checkpoint folder ``path``, loaded with ``weights_only=True``."""
    import torch

    numpy_state: list[Any] = [
        np.ndarray,
        np.dtype,
        type(np.dtype(np.uint32)),
        np.zeros(1).__reduce__()[0],  # numpy's array reconstructor, whatever its module path
    ]
    with torch.serialization.safe_globals(numpy_state):
        state: dict[str, Any] = torch.load(path / STATE, weights_only=True)
    return state


def load_checkpoint(path: Path, model: Any, optimizer: Any, scheduler: Any) -> int:
    """Restore the adapter weights, optimizer, scheduler and RNG states; returns the step."""
    import torch
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    weights = load_file(str(path / ADAPTER / "adapter_model.safetensors"))
    set_peft_model_state_dict(model, weights)
    state = read_state(path)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["torch_rng"])
    if state["cuda_rng"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    np.random.set_state(state["numpy_rng"])
    random.setstate(state["python_rng"])
    return int(state["step"])
