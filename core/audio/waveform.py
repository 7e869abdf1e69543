"""Per-column peak and RMS envelopes of a short clip, for drawing waveforms.

Pure numpy, no UI: the review screen's waveform widget (``tui/widgets/waveform.py``)
asks for one :class:`Peaks` per width it is drawn at and maps the play position to a
column with :func:`column_of`.

Columns split the clip evenly in time: column ``j`` of ``c`` covers samples
``floor(j * n / c)`` up to ``floor((j + 1) * n / c)``. A clip shorter than ``c`` samples
is stretched: each column then shows the one sample under it. Everything is computed
with ``ufunc.reduceat`` in a few vectorised passes per channel, without copying the
audio.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from core.audio.types import FloatArray

CLIP_LEVEL = 0.99
"""Samples with ``|x| >= CLIP_LEVEL`` count as clipped (at or near full scale)."""


@dataclass(frozen=True, eq=False)
class Peaks:
    """The envelope of a clip in ``len(low)`` columns.

    ``low``/``high`` are each column's smallest and largest sample, in ``[-1, 1]``;
    ``rms`` is its root mean square, in ``[0, 1]``. For multichannel audio the peaks
    are taken over all channels (the largest excursion of any channel) and ``rms`` is
    the loudest channel's. ``duration_sec`` is the whole clip's length.
    """

    low: FloatArray
    high: FloatArray
    rms: FloatArray
    duration_sec: float

    @property
    def columns(self) -> int:
        return len(self.low)

    def clipped(self, level: float = CLIP_LEVEL) -> npt.NDArray[np.bool_]:
        """Per column: does any sample reach ``|x| >= level``?"""
        return (self.high >= level) | (self.low <= -level)


def compute_peaks(audio: npt.NDArray[Any], sample_rate: int, columns: int) -> Peaks:
    """Min, max and RMS of ``audio`` in ``columns`` equal slices of time.

    ``audio`` is ``(n,)`` or ``(n, channels)``, float in ``[-1, 1]`` (int16/int32 are
    scaled to it); values beyond full scale are clamped. Any length is accepted: empty
    audio gives all-zero columns, audio shorter than ``columns`` is stretched.
    """
    if columns < 1:
        raise ValueError(f"columns must be at least 1, got {columns}")
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate!r}")
    a = _as_float_2d(audio)
    n = a.shape[0]
    if n == 0 or a.shape[1] == 0:
        zeros = np.zeros(columns, np.float32)
        return Peaks(zeros, zeros.copy(), zeros.copy(), n / sample_rate)

    # Slice starts; when n < columns they repeat, and reduceat then yields a[start] alone,
    # which is exactly the one sample under that column.
    starts = (np.arange(columns, dtype=np.int64) * n) // columns
    counts = np.maximum(np.diff(starts, append=n), 1)
    # Reduce each channel on its own (strided views, no copies), then across channels:
    # the min of the per-channel minima is the column's minimum over all channels.
    channels = [a[:, ch] for ch in range(a.shape[1])]
    low = np.min([np.minimum.reduceat(c, starts) for c in channels], axis=0)
    high = np.max([np.maximum.reduceat(c, starts) for c in channels], axis=0)
    power = np.max([np.add.reduceat(np.square(c, dtype=np.float64), starts) for c in channels], 0)
    rms = np.sqrt(power / counts)
    return Peaks(
        low=np.clip(low, -1.0, 1.0).astype(np.float32),
        high=np.clip(high, -1.0, 1.0).astype(np.float32),
        rms=np.clip(rms, 0.0, 1.0).astype(np.float32),
        duration_sec=n / sample_rate,
    )


def column_of(time_sec: float, peaks: Peaks, columns: int) -> int:
    """The column (``0 .. columns - 1``) that ``time_sec`` into the clip falls in.

    ``columns`` may differ from ``peaks.columns`` (a widget drawing two peak columns per
    cell asks in cells). Times at or before the start (and NaN) give 0, the end and
    beyond give the last column; an empty clip always gives 0.
    """
    if columns < 1:
        raise ValueError(f"columns must be at least 1, got {columns}")
    duration = peaks.duration_sec
    if duration <= 0 or not math.isfinite(time_sec) or time_sec <= 0:
        return 0
    return min(columns - 1, int(time_sec / duration * columns))


def _as_float_2d(audio: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
    """``audio`` as float32 ``(n, channels)``; integer PCM scaled to ``[-1, 1]``."""
    a = np.asarray(audio)
    if a.ndim not in (1, 2):
        raise ValueError(f"audio must have shape (n,) or (n, channels), got {a.shape}")
    if a.dtype.kind in "iu":
        info = np.iinfo(a.dtype)
        signed = a.dtype.kind == "i"
        scale = float(-info.min) if signed else (info.max + 1) / 2
        offset = 0.0 if signed else scale
        a = ((a.astype(np.float64) - offset) / scale).astype(np.float32)
    elif a.dtype.kind != "f":
        raise ValueError(f"audio must be float or integer PCM, got dtype {a.dtype}")
    a = a.astype(np.float32, copy=False)
    if not np.isfinite(a).all():
        a = np.nan_to_num(a, nan=0.0, posinf=1.0, neginf=-1.0)
    return a.reshape(-1, 1) if a.ndim == 1 else a
