"""Resemble AI's Perth implicit watermark: the one place that loads and calls it.

The mark is a neural, imperceptible-by-design change to the magnitude spectrum below 2 kHz,
made at 32 kHz. It is one bit shared by every Perth user: it says "synthetic (Perth mark)",
not "made by podforge". It marks for transparency, not security: it can be removed.

Decisions:
- The watermarker is imported from its own module, not the package root: the package sets
  the class to ``None`` when an import fails, which would turn a broken install into an
  unmarked episode. Here any failure is one :class:`~core.errors.WatermarkError` line.
- Resampling to and from 32 kHz is done here with soxr (as everywhere in podforge), and a
  marked line keeps its exact length (the library's round trip drops the last partial hop:
  the original samples fill that tail).
- The network runs on the CPU: a line costs milliseconds, and the GPU stays with the voice.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import cache
from importlib import metadata
from typing import Any

import numpy as np
import numpy.typing as npt

from core.audio.io import resample
from core.audio.types import FloatArray
from core.errors import WatermarkError

METHOD = "perth-implicit"
"""What the manifest and the tags call the mark."""


@dataclass
class PerthMark:
    """The loaded Perth network (``perth_net``) and the rate it works at."""

    net: Any
    rate: int
    version: str
    _lock: threading.Lock

    @property
    def identity(self) -> str:
        """``perth-implicit/<library version>``: part of a marked line's cache key."""
        return f"{METHOD}/{self.version}"

    def apply(self, audio: npt.ArrayLike, sample_rate: int) -> FloatArray:
        """``audio`` (mono) with the mark, the same length and rate."""
        import torch

        x = np.asarray(audio, dtype=np.float32).reshape(-1)
        if x.size < self.net.hp.window_size * sample_rate // self.rate + 1:
            return x.copy()  # shorter than one analysis window: nothing to mark
        y = resample(x, sample_rate, self.rate) if sample_rate != self.rate else x
        with self._lock, torch.inference_mode():
            mag, phase = self.net.ap.signal_to_magphase(torch.from_numpy(np.ascontiguousarray(y)))
            marked_mag, _mask = self.net.encoder(mag[None])
            marked = self.net.ap.magphase_to_signal(marked_mag[0], phase).numpy()
        back = resample(marked, self.rate, sample_rate) if sample_rate != self.rate else marked
        out = x.copy()
        n = min(out.size, back.size)
        out[:n] = back[:n]
        return out

    def score(self, audio: npt.ArrayLike, sample_rate: int) -> float:
        """The detector's score for ``audio`` (mono): near 1 marked, near 0 unmarked (but near 1
        for hum and tonal music too: :mod:`core.watermark.detect` decides on speech only)."""
        import torch

        x = np.asarray(audio, dtype=np.float32).reshape(-1)
        y = resample(x, sample_rate, self.rate) if sample_rate != self.rate else x
        with self._lock, torch.inference_mode():
            mag, _phase = self.net.ap.signal_to_magphase(torch.from_numpy(np.ascontiguousarray(y)))
            found = self.net.decoder(mag[None])[0].clip(0.0, 1.0)
        return float(found.mean())


@cache
def load_mark() -> PerthMark:
    """The Perth watermarker with the weights inside its wheel (no download), once per process.

    Raises :class:`WatermarkError` (one line, what to do) when the library or one of the
    modules it imports without declaring them is missing or broken."""
    import contextlib
    import io
    import warnings

    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")  # pkg_resources' deprecation notice on import
            from perth.perth_net.perth_net_implicit.perth_watermarker import (
                PerthImplicitWatermarker,
            )

            marker = PerthImplicitWatermarker(device="cpu")  # prints "loaded PerthNet ..."
    except ImportError as exc:
        missing = getattr(exc, "name", None) or str(exc)
        raise WatermarkError(
            f"the watermark library cannot load ({missing} is missing); run `uv sync`, or turn "
            "the mark off with [watermark] enabled = false and a reason in workspace.toml"
        ) from exc
    except (OSError, RuntimeError, KeyError, AssertionError) as exc:
        raise WatermarkError(
            f"the watermark model cannot load ({type(exc).__name__}: {exc}); reinstall "
            "resemble-perth with `uv sync --reinstall-package resemble-perth`"
        ) from exc
    net = marker.perth_net.eval()
    return PerthMark(
        net=net,
        rate=int(net.hp.sample_rate),
        version=metadata.version("resemble-perth"),
        _lock=threading.Lock(),
    )
