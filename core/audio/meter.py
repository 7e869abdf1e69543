"""Measuring loudness and peaks: BS.1770 integrated loudness, true peak and sample peak.

Measuring only; :mod:`core.audio.conditioning` and :mod:`core.audio.limiter` apply gain.
Pure functions on ``float32``/``float64`` numpy arrays, mono ``(n,)`` or ``(n, channels)``
(up to 5), at any sample rate; no I/O. :func:`integrated_lufs` computes exactly what
pyloudnorm does, vectorised; :func:`true_peak_db` (4x, soxr) is the figure reported
everywhere, while the limiter enforces its ceiling with stricter detectors. Long audio is
oversampled in chunks on several threads, never whole. The underscored helpers here are
shared with the limiter and conditioning, inside ``core.audio`` only. scipy is imported on
first use.

Details: docs/AUDIO.md, "Measuring"."""

from __future__ import annotations

import functools
import math
from typing import Final

import numpy as np
import numpy.typing as npt
import soxr

from core.audio.parallel import run_spans
from core.audio.types import Float64Array, FloatArray, IntArray

__all__ = [
    "BLOCK_SEC",
    "LoudnessMeter",
    "integrated_lufs",
    "mono32",
    "sample_peak_db",
    "true_peak_db",
]


BLOCK_SEC: Final = 0.4
"""BS.1770 gating block length in seconds; shorter audio has no integrated loudness."""

_OVERLAP: Final = 0.75
_ABSOLUTE_GATE: Final = -70.0
_RELATIVE_GATE: Final = -10.0

_METER_OVERSAMPLE: Final = 4

_CHANNEL_WEIGHTS: Final = (1.0, 1.0, 1.0, 1.41, 1.41)
"""BS.1770 channel weights (L, R, C, Ls, Rs), as pyloudnorm applies them."""

_LONG_SAMPLES: Final = 1 << 21
"""From this length (87 s at 24 kHz) the 4x signal is never held whole: it is made a
chunk at a time, on several threads, and only where it is needed (memory and speed)."""
_CHUNK_SAMPLES: Final = 1 << 16
_CHUNK_MARGIN: Final = 1024
"""Input samples resampled beyond each chunk's ends (soxr's filter needs < 256)."""


def integrated_lufs(audio: npt.ArrayLike, sr: int) -> float | None:
    """BS.1770-4 integrated loudness in LUFS, or ``None`` when it cannot be measured.

    Same result as ``pyloudnorm.Meter(sr).integrated_loudness`` within 0.001 LU (tested
    at five rates; the filters run in float32, the block sums in float64, so the
    difference is typically 1e-5 LU and has been measured up to 6e-4 LU); ``None``
    where that raises (audio shorter than one 400 ms block) or returns ``-inf``. ``audio`` is mono
    ``(n,)`` or ``(n, channels)`` with up to 5 channels, weighted as pyloudnorm does
    (1.0 for the first three, 1.41 for the surround pair).
    """
    power = _k_power(_audio32(audio), sr)
    return None if power is None else _gated_lufs(_block_energies(power, sr))


def sample_peak_db(audio: npt.ArrayLike) -> float:
    """The largest sample magnitude in dBFS; ``-inf`` for digital silence or no samples."""
    x = np.asarray(audio)
    if x.size == 0:
        return -math.inf
    return _db(_abs_max(x))


def true_peak_db(audio: npt.ArrayLike, sr: int, oversample: int = _METER_OVERSAMPLE) -> float:
    """True peak in dBTP: the peak of the signal oversampled ``oversample`` times.

    Oversampling is soxr "HQ"; the result is never below the sample peak and is
    ``-inf`` for digital silence. ``audio`` is ``(n,)`` or ``(n, channels)``: the peak
    of all channels.
    """
    original = np.asarray(audio)
    x = _audio32(original)
    peak = _abs_max(original)  # in the input's own precision
    if peak == 0.0 or oversample <= 1:
        return _db(peak)
    if x.shape[0] >= _LONG_SAMPLES:
        return _db(max(peak, _scan(x, sr, oversample)))
    return _db(max(peak, _abs_max(_oversampled(x, sr, oversample))))


def mono32(audio: npt.ArrayLike) -> FloatArray:
    """``audio`` as contiguous float32 mono ``(n,)``; ``ValueError`` for any other shape."""
    x = np.ascontiguousarray(audio, dtype=np.float32)
    if x.ndim != 1:
        raise ValueError(f"expected mono audio of shape (n,), got shape {x.shape}")
    return x


def _audio32(audio: npt.ArrayLike) -> FloatArray:
    """``audio`` as contiguous float32 ``(n,)`` or ``(n, channels)`` (1 to 5 channels)."""
    x = np.ascontiguousarray(audio, dtype=np.float32)
    if x.ndim == 1 or (x.ndim == 2 and 1 <= x.shape[1] <= len(_CHANNEL_WEIGHTS)):
        return x
    raise ValueError(
        f"expected audio of shape (n,) or (n, channels) with 1 to "
        f"{len(_CHANNEL_WEIGHTS)} channels, got shape {x.shape}"
    )


def _chunks(n: int) -> list[tuple[int, int]]:
    """Fixed chunk bounds for long audio (a function of ``n`` alone: deterministic)."""
    return [(a, min(n, a + _CHUNK_SAMPLES)) for a in range(0, n, _CHUNK_SAMPLES)]


def _db(amplitude: float) -> float:
    return 20.0 * math.log10(amplitude) if amplitude > 0.0 else -math.inf


def _abs_max(x: npt.NDArray[np.floating]) -> float:
    if x.size == 0:
        return 0.0
    return max(float(x.max()), -float(x.min()))


@functools.lru_cache(maxsize=16)
def _k_weighting_sos(sr: int) -> FloatArray:
    """pyloudnorm's K-weighting (high shelf, then high pass) as float32 sections."""
    from pyloudnorm import IIRfilter

    stages = [
        IIRfilter(4.0, 1 / np.sqrt(2), 1500.0, sr, "high_shelf"),
        IIRfilter(0.0, 0.5, 38.0, sr, "high_pass"),
    ]
    rows = []
    for stage in stages:
        a = np.asarray(stage.a, dtype=np.float64)
        b = np.asarray(stage.b, dtype=np.float64) * float(stage.passband_gain)
        rows.append(np.concatenate((b / a[0], a / a[0])))
    sos = np.vstack(rows).astype(np.float32)
    sos.setflags(write=False)
    return sos


def _k_power(x: FloatArray, sr: int) -> FloatArray | None:
    """Per-sample power of the K-weighted signal; ``None`` if shorter than one block."""
    from scipy import signal  # type: ignore[import-untyped, unused-ignore]

    if x.shape[0] < BLOCK_SEC * sr:
        return None
    weighted: FloatArray = signal.sosfilt(_k_weighting_sos(sr).copy(), x, axis=0)
    np.square(weighted, out=weighted)
    if weighted.ndim == 1:
        return weighted
    power = weighted[:, 0].copy()
    for c in range(1, weighted.shape[1]):
        weight = _CHANNEL_WEIGHTS[c]
        power += weighted[:, c] if weight == 1.0 else np.float32(weight) * weighted[:, c]
    return power


@functools.lru_cache(maxsize=64)
def _block_edges(n: int, sr: int) -> tuple[IntArray, IntArray, IntArray]:
    """pyloudnorm's block bounds (same float arithmetic) as sorted edges + indices."""
    step = 1.0 - _OVERLAP
    num_blocks = int(np.round((n / sr - BLOCK_SEC) / (BLOCK_SEC * step))) + 1
    j = np.arange(num_blocks)
    lower = np.minimum((BLOCK_SEC * (j * step) * sr).astype(np.int64), n)
    upper = np.minimum((BLOCK_SEC * (j * step + 1) * sr).astype(np.int64), n)
    edges = np.unique(np.concatenate(([0, n], lower, upper)))
    return edges, np.searchsorted(edges, lower), np.searchsorted(edges, upper)


def _block_energies(power: FloatArray, sr: int) -> Float64Array:
    """Mean square of each 400 ms block, from the per-sample K-weighted power."""
    edges, lower, upper = _block_edges(power.size, sr)
    pieces = _piece_sums(power, edges)
    cumulative = np.concatenate(([0.0], np.cumsum(pieces)))
    blocks: Float64Array = (cumulative[upper] - cumulative[lower]) / (BLOCK_SEC * sr)
    return np.maximum(blocks, 0.0)


def _piece_sums(power: FloatArray, edges: IntArray) -> Float64Array:
    """Float64 sums of ``power`` between consecutive ``edges`` (the last edge is the end).

    The same sums as ``np.add.reduceat(power, edges[:-1], dtype=np.float64)``, made a
    stretch at a time: reduceat's casting would copy all of ``power`` to float64 first.
    """
    if power.size < _CHUNK_SAMPLES:
        out: Float64Array = np.add.reduceat(power, edges[:-1], dtype=np.float64)
        return out
    out = np.empty(edges.size - 1)
    first = 0
    while first < edges.size - 1:
        last = int(np.searchsorted(edges, edges[first] + _CHUNK_SAMPLES, side="right")) - 1
        last = min(max(last, first + 1), edges.size - 1)
        stretch = power[edges[first] : edges[last]].astype(np.float64)
        out[first:last] = np.add.reduceat(stretch, edges[first:last] - edges[first])
        first = last
    return out


def _gated_lufs(z: Float64Array) -> float | None:
    """BS.1770 gating of block energies ``z``; ``None`` where pyloudnorm gives -inf."""
    with np.errstate(divide="ignore"):
        block_lufs = -0.691 + 10.0 * np.log10(z)
    above_absolute = block_lufs >= _ABSOLUTE_GATE
    if not above_absolute.any():
        return None
    relative = -0.691 + 10.0 * math.log10(float(z[above_absolute].mean())) + _RELATIVE_GATE
    gated = (block_lufs > relative) & (block_lufs > _ABSOLUTE_GATE)
    if not gated.any():
        return None
    lufs = -0.691 + 10.0 * math.log10(float(z[gated].mean()))
    return lufs if math.isfinite(lufs) else None


def _oversampled(x: FloatArray, sr: int, oversample: int) -> FloatArray:
    """``x`` oversampled with soxr "HQ", in float32 (plenty for peak magnitudes)."""
    up = soxr.resample(x, sr, sr * oversample, quality="HQ")
    return np.asarray(up, dtype=np.float32)


def _chunk_oversampled(
    x: FloatArray, sr: int, oversample: int, start: int, end: int
) -> tuple[FloatArray, int]:
    """``x[start:end]`` oversampled with 1024 samples of context on both sides.

    Returns the oversampled context and the index of ``start``'s first point in it. The
    points match a one-piece resampling of ``x`` to float32 rounding.
    """
    lo = max(0, start - _CHUNK_MARGIN)
    hi = min(x.shape[0], end + _CHUNK_MARGIN)
    part = soxr.resample(x[lo:hi], sr, sr * oversample, quality="HQ")
    return np.asarray(part, dtype=np.float32), (start - lo) * oversample


def _scan(
    x: FloatArray,
    sr: int,
    oversample: int,
    reach: FloatArray | None = None,
    residues: list[float] | None = None,
) -> float:
    """The peak of ``x`` oversampled, chunk by chunk on several threads (long audio).

    With ``reach`` (an empty array of ``x.shape[0]``) it also fills in the envelope's
    ``reach`` (see :class:`_Envelope`; 4x only) and appends each chunk's residue (see
    :func:`_reach`) to ``residues``. Only a chunk at a time is ever oversampled: memory
    stays at a few copies of ``x``.
    """
    spans = _chunks(x.shape[0])
    peaks = [0.0] * len(spans)
    columns = [x] if x.ndim == 1 else [x[:, c] for c in range(x.shape[1])]

    def job(start: int, end: int) -> None:
        part, skip = _chunk_oversampled(x, sr, oversample, start, end)
        if reach is None:
            peak = _abs_max(part[skip : skip + (end - start) * oversample])
        else:
            if start > 0:
                skip -= oversample  # the points of sample start - 1 too
            points = part[skip : skip + (end - start + (start > 0)) * oversample]
            ups = [points] if points.ndim == 1 else [points[:, c] for c in range(points.shape[1])]
            peak, residue = _reach(reach, ups, columns, start, end)
            if residues is not None:
                residues.append(residue)
        peaks[start // _CHUNK_SAMPLES] = peak

    run_spans(job, spans)
    return max(peaks, default=0.0)


def _grid_max(points: FloatArray, count: int, oversample: int) -> FloatArray:
    """For ``count`` samples, the largest magnitude of each one's ``oversample`` points.

    ``points`` may hold fewer than ``count * oversample`` points: a last sample with only
    some of its points gets the largest of those, samples with none get 0.
    """
    out = np.zeros(count, dtype=np.float32)
    m = min(points.shape[0], count * oversample)
    whole = m // oversample
    if whole:
        # Strided maxima and minima of the (k, oversample) grid: far faster than abs()
        # followed by .max(axis=1), and no (k, oversample) temporary.
        grid = points[: whole * oversample].reshape(whole, oversample)
        high = grid[:, 0].copy()
        low = grid[:, 0].copy()
        for k in range(1, oversample):
            np.maximum(high, grid[:, k], out=high)
            np.minimum(low, grid[:, k], out=low)
        np.negative(low, out=low)
        np.maximum(high, low, out=out[:whole])
    if whole < count and whole * oversample < m:
        out[whole] = float(np.abs(points[whole * oversample : m]).max())
    return out


def _reach(
    reach: FloatArray, ups: list[FloatArray], columns: list[FloatArray], start: int, end: int
) -> tuple[float, float]:
    """Fill ``reach[start:end]`` from each channel's 4x points; return their peak there
    and the residue.

    ``ups`` hold the points of samples ``start - 1`` (when ``start > 0``) to ``end - 1``;
    ``columns`` are the channels' samples (whole signal). The residue is the largest
    ``|x[k] - up[4k]|``: soxr's point at a sample's own instant is the signal through
    soxr's filter, so the difference is what the filter removed there (content above
    its passband, near the Nyquist frequency), which no 4x point shows.
    """
    lead = 1 if start > 0 else 0
    count = end - start + lead
    after = _grid_max(ups[0], count, _METER_OVERSAMPLE)
    for up in ups[1:]:
        np.maximum(after, _grid_max(up, count, _METER_OVERSAMPLE), out=after)
    # The largest 4x magnitude from sample k up to k + 1, and from k - 1 up to k.
    out = reach[start:end]
    out[:] = after[lead:]
    if lead:
        np.maximum(out, after[:-1], out=out)
    elif count > 1:
        np.maximum(out[1:], after[:-1], out=out[1:])
    residue = 0.0
    for x, up in zip(columns, ups, strict=True):
        np.maximum(out, np.abs(x[start:end]), out=out)
        own = up[lead * _METER_OVERSAMPLE :: _METER_OVERSAMPLE][: end - start]
        residue = max(residue, _abs_max(x[start : start + own.shape[0]] - own))
    return _abs_max(after[lead:]), residue


class LoudnessMeter:
    """BS.1770 integrated loudness of audio fed a piece at a time, in order.

    ``total`` is the length of the whole signal in samples (pyloudnorm's 400 ms blocks
    depend on it). The K-weighting filters keep their state across pieces, and the
    per-sample power is summed, in float64, between the block edges a piece at a time:
    only the sums (one per 100 ms) are kept, so memory does not grow with the pieces.
    :meth:`lufs` equals :func:`integrated_lufs` of the whole signal (within 1e-4 LU:
    float64 sums in another order).
    """

    def __init__(self, sr: int, total: int, channels: int = 1) -> None:
        if not 1 <= channels <= len(_CHANNEL_WEIGHTS):
            raise ValueError(f"a meter takes 1 to {len(_CHANNEL_WEIGHTS)} channels, got {channels}")
        self.sr = sr
        self.total = total
        self.channels = channels
        self.fed = 0
        self._measurable = total >= BLOCK_SEC * sr
        if self._measurable:
            self._edges, self._lower, self._upper = _block_edges(total, sr)
        else:
            self._edges = np.array([0, total], dtype=np.int64)
        self._sums = np.zeros(max(self._edges.size - 1, 0))
        sections = _k_weighting_sos(sr).shape[0]
        shape = (sections, 2) if channels == 1 else (sections, 2, channels)
        self._state = np.zeros(shape, dtype=np.float32)

    def add(self, audio: npt.ArrayLike) -> None:
        """Feed the next ``(m,)`` (mono) or ``(m, channels)`` samples."""
        from scipy import signal  # type: ignore[import-untyped, unused-ignore]

        x = _audio32(audio)
        if (1 if x.ndim == 1 else x.shape[1]) != self.channels or (
            self.channels == 1 and x.ndim != 1
        ):
            raise ValueError(f"expected {self.channels} channel(s), got shape {x.shape}")
        m = x.shape[0]
        if m == 0:
            return
        if self.fed + m > self.total:
            raise ValueError(f"fed {self.fed + m} samples to a meter of {self.total}")
        start = self.fed
        self.fed += m
        if not self._measurable:
            return
        weighted, self._state = signal.sosfilt(
            _k_weighting_sos(self.sr).copy(), x, axis=0, zi=self._state
        )
        weighted = np.asarray(weighted, dtype=np.float32)
        np.square(weighted, out=weighted)
        if weighted.ndim == 1:
            power = weighted
        else:
            power = weighted[:, 0].copy()
            for c in range(1, weighted.shape[1]):
                weight = _CHANNEL_WEIGHTS[c]
                power += weighted[:, c] if weight == 1.0 else np.float32(weight) * weighted[:, c]
        edges = self._edges
        first = int(np.searchsorted(edges, start, side="right")) - 1
        inner = edges[(edges > start) & (edges < start + m)] - start
        local = np.concatenate(([0], inner)).astype(np.int64)
        sums = np.add.reduceat(power.astype(np.float64), local)
        self._sums[first : first + sums.size] += sums

    def energies(self) -> Float64Array | None:
        """The 400 ms blocks' mean squares so far (all of them once everything is fed)."""
        if not self._measurable:
            return None
        cumulative = np.concatenate(([0.0], np.cumsum(self._sums)))
        blocks: Float64Array = (cumulative[self._upper] - cumulative[self._lower]) / (
            BLOCK_SEC * self.sr
        )
        return np.maximum(blocks, 0.0)

    def lufs(self) -> float | None:
        """The integrated loudness (as :func:`integrated_lufs`); ``None``: not measurable."""
        blocks = self.energies()
        return None if blocks is None else _gated_lufs(blocks)
