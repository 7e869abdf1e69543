"""Loudness and peak measurement, loudness conditioning and a mains-hum notch.

Pure functions on mono ``float32``/``float64`` numpy arrays at any sample rate; no I/O.

Measurements
------------
* :func:`integrated_lufs` is ITU-R BS.1770-4 integrated loudness, exactly as
  ``pyloudnorm.Meter(sr).integrated_loudness`` computes it (the same K-weighting
  filters, built by ``pyloudnorm.IIRfilter``; the same 400 ms blocks with 75 % overlap,
  the -70 LUFS absolute and -10 LU relative gates), with the block loop vectorised.
  It returns ``None`` where pyloudnorm raises (shorter than one 400 ms block) or
  answers ``-inf`` (silence, or nothing above the -70 LUFS gate).
* :func:`true_peak_db` is the BS.1770 true peak in dBTP: the peak of the signal
  oversampled 4x with soxr "HQ", never below the sample peak; ``-inf`` for digital
  silence. soxr's passband ends at about 0.92 of the Nyquist frequency (11 kHz at
  24 kHz), so content above that is not seen; audio that went through soxr on its way
  to the target rate has none.
* :func:`sample_peak_db` is the plain sample peak in dBFS.

Conditioning
------------
:func:`condition` applies a static gain that brings the integrated loudness to the
target (-19 LUFS by default). If the true peak then exceeds the ceiling (-1 dBTP),
a look-ahead peak limiter lowers the gain around the peaks only:

1. the peak envelope is, for each sample, the peak of the continuous signal between
   its neighbours: soxr's 4x points, the points halfway between them (6-point
   Lagrange interpolation, which makes an 8x signal) and a parabola through each 8x
   extremum. It is computed only where the 4x signal comes within 0.7 dB of the
   ceiling (a 4x grid can miss a peak by up to 0.6 dB), so inter-sample peaks count;
2. the required gain per sample is ``ceiling / envelope`` (at most 1); a running
   minimum over +-5 ms (look-ahead and hold) followed by a triangular smoothing window
   no wider than that minimum gives a smooth gain curve that is, at every sample, at
   or below the required gain; it is computed only around the peaks;
3. the result is oversampled again and checked the same way; a pass of gain
   reduction is added where it still exceeds the ceiling (up to 4 passes) and any
   residue after that is removed by a static scale, so the ceiling always holds.

Limiting lowers the loudness a little, so the static gain is raised (secant steps)
and the gain curve made again until the loudness is within 0.1 LU of the target (at
most 8 rounds and +12 dB of make-up; the loudness of each round is estimated from the
K-weighted power times the squared gain curve, and measured exactly at the end). Where
the target cannot be reached under the ceiling (a sine at -2 LUFS with a -1 dBTP
ceiling), the ceiling wins. A segment too short or too quiet to measure gets no
loudness gain; only the ceiling applies.

The limiter aims 0.06 dB under the ceiling, so the ceiling also holds for other
true-peak meters: 8x and 16x polyphase resamplers (``scipy.signal.resample_poly``)
read within 0.02 dB of this meter on speech, square waves, sines and 10.5 kHz bursts.
Content above soxr's passband (see :func:`true_peak_db`) is not seen.

Cost, 10 s at 24 kHz on one core: ~2 ms for a loudness, ~2.5 ms for a true peak,
~4-6 ms for :func:`condition` when no limiting is needed and ~15-20 ms when it is.
scipy is imported on first use, not with this module (it takes over a second).

Hum notch
---------
:func:`hum_notch` removes mains hum with a cascade of narrow ``scipy.signal.iirnotch``
filters at the mains frequency and its harmonics, run forwards and backwards
(zero phase, the notch depth doubled in dB). The audio is extended at both ends by
repeating its first and last whole mains periods, so that the notches ring up outside
the segment while the hum continues in phase: 50 Hz hum drops by more than 60 dB and
speech changes by about 0.1 dB.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt
import soxr

__all__ = [
    "BLOCK_SEC",
    "Conditioned",
    "condition",
    "hum_notch",
    "integrated_lufs",
    "sample_peak_db",
    "true_peak_db",
]

FloatArray = npt.NDArray[np.float32]
Float64Array = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

BLOCK_SEC: Final = 0.4
"""BS.1770 gating block length in seconds; shorter audio has no integrated loudness."""

_OVERLAP: Final = 0.75
_ABSOLUTE_GATE: Final = -70.0
_RELATIVE_GATE: Final = -10.0

_METER_OVERSAMPLE: Final = 4
_LIMITER_MARGIN_DB: Final = 0.05
_LIMITER_WINDOW_SEC: Final = 0.005
_LIMITER_PASSES: Final = 4
_MAKEUP_ROUNDS: Final = 8
_MAKEUP_MAX_DB: Final = 12.0
_LOUDNESS_TOLERANCE_LU: Final = 0.1
_AIM: Final = 10.0 ** (-0.01 / 20.0)
"""The gain curve aims this far under the ceiling it is checked against (rounding)."""
_GRID_SLACK: Final = 10.0 ** (-0.7 / 20.0)
"""A 4x grid reads a peak at most ~0.6 dB low (content up to soxr's passband edge)."""

# 6-point Lagrange interpolation of the point halfway between samples q and q + 1,
# from samples q - 2 .. q + 3.
_MIDPOINT_TAPS: Final = np.array([3.0, -25.0, 150.0, 150.0, -25.0, 3.0]) / 256.0


@dataclass(frozen=True)
class Conditioned:
    """The result of :func:`condition`.

    ``lufs`` is the integrated loudness of ``audio`` (``None``: too short or too quiet
    to measure), ``true_peak_db`` its 4x true peak in dBTP (``-inf`` for silence),
    ``gain_db`` the static gain applied (loudness gain plus any make-up for the
    limiter) and ``limited`` whether the peak limiter changed anything.
    """

    audio: FloatArray
    lufs: float | None
    true_peak_db: float
    gain_db: float
    limited: bool


def integrated_lufs(audio: npt.ArrayLike, sr: int) -> float | None:
    """BS.1770-4 integrated loudness in LUFS, or ``None`` when it cannot be measured.

    Same result as ``pyloudnorm.Meter(sr).integrated_loudness`` (within 1e-5 LU: the
    filters run in float32, the block sums in float64); ``None`` where that raises
    (audio shorter than one 400 ms block) or returns ``-inf``.
    """
    power = _k_power(_mono32(audio), sr)
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
    ``-inf`` for digital silence.
    """
    original = np.asarray(audio)
    x = _mono32(original)
    peak = _abs_max(original)  # in the input's own precision
    if peak == 0.0 or oversample <= 1:
        return _db(peak)
    return _db(max(peak, _abs_max(_oversampled(x, sr, oversample))))


def condition(
    audio: npt.ArrayLike,
    sr: int,
    *,
    target_lufs: float = -19.0,
    ceiling_dbtp: float = -1.0,
) -> Conditioned:
    """Gain ``audio`` to ``target_lufs`` and keep its true peak at or under ``ceiling_dbtp``.

    See the module docstring for the limiter. The input is not modified; the output is
    a new ``float32`` array of the same length.
    """
    x = _mono32(audio)
    if _abs_max(x) == 0.0:  # digital silence (or nothing): nothing to measure or gain
        return Conditioned(x.copy(), None, -math.inf, 0.0, False)
    ceiling = 10.0 ** ((ceiling_dbtp - _LIMITER_MARGIN_DB) / 20.0)
    power = _k_power(x, sr)
    blocks = None if power is None else _block_energies(power, sr)
    measured = None if blocks is None else _gated_lufs(blocks)
    gain = 1.0 if measured is None else 10.0 ** ((target_lufs - measured) / 20.0)

    up = _oversampled(x, sr, _METER_OVERSAMPLE)
    peak = max(_abs_max(x), _abs_max(up))
    if peak * gain <= ceiling * _GRID_SLACK:
        return _gained(x, gain, blocks, peak)

    envelope = _Envelope(x, up)
    goal = target_lufs
    for attempt in range(2):
        total, curve, estimate = _fit_makeup(x, sr, envelope, power, gain, goal, ceiling * _AIM)
        if curve is None:  # no sample reaches the ceiling after all
            return _gained(x, gain, blocks, peak)
        curve *= np.float32(total)
        curve *= x
        out, out_up = _verified(curve, sr, ceiling)
        lufs = integrated_lufs(out, sr)
        if (
            attempt == 1
            or measured is None
            or lufs is None
            or estimate is None
            or abs(estimate - goal) > _LOUDNESS_TOLERANCE_LU  # capped: nothing to gain
            or abs(lufs - target_lufs) <= _LOUDNESS_TOLERANCE_LU
        ):
            break
        goal += target_lufs - lufs  # the estimate was off by this much: aim beside it
    return Conditioned(
        audio=out,
        lufs=lufs,
        true_peak_db=_db(max(_abs_max(out), _abs_max(out_up))),
        gain_db=_db(total),
        limited=True,
    )


def _fit_makeup(
    x: FloatArray,
    sr: int,
    envelope: _Envelope,
    power: FloatArray | None,
    gain: float,
    target_lufs: float,
    aim: float,
) -> tuple[float, FloatArray | None, float | None]:
    """Total gain, limiter gain curve and estimated loudness that best meet the target.

    The static ``gain`` is raised (secant steps on loudness against make-up, at most
    +12 dB) until the limited signal's estimated loudness is within 0.1 LU of the
    target. K-weighting is nearly linear in a slowly varying gain, so the loudness is
    estimated from the K-weighted power times the squared curve, without filtering.
    """
    makeup_db = 0.0
    previous: tuple[float, float] | None = None
    total = gain
    curve: FloatArray | None = None
    estimate: float | None = None
    for round_ in range(_MAKEUP_ROUNDS):
        total = gain * 10.0 ** (makeup_db / 20.0)
        curve = _gain_curve(envelope.where_above(aim / total), aim / total, sr)
        if power is None or curve is None:
            return total, curve, None
        estimate = _gated_lufs(_block_energies(power * (curve * curve), sr) * (total * total))
        if estimate is None or abs(estimate - target_lufs) <= _LOUDNESS_TOLERANCE_LU:
            break
        if round_ == _MAKEUP_ROUNDS - 1:
            break
        slope = 1.0  # loudness rises by at most 1 LU per dB of make-up
        if previous is not None and makeup_db != previous[0]:
            slope = (estimate - previous[1]) / (makeup_db - previous[0])
            slope = min(1.0, max(0.05, slope))
        previous = (makeup_db, estimate)
        wanted = min(_MAKEUP_MAX_DB, max(0.0, makeup_db + (target_lufs - estimate) / slope))
        if abs(wanted - makeup_db) <= 0.01:
            break
        makeup_db = wanted
    return total, curve, estimate


def hum_notch(
    audio: npt.ArrayLike,
    sr: int,
    mains_hz: float,
    harmonics: int = 4,
    q: float = 30.0,
) -> FloatArray:
    """Notch out ``mains_hz`` and its first ``harmonics`` multiples (zero phase).

    ``harmonics`` counts the notched frequencies: 4 at 50 Hz notches 50, 100, 150 and
    200 Hz. Each notch is ``scipy.signal.iirnotch`` with quality ``q`` (bandwidth
    ``f / q``: 1.7 Hz at 50 Hz for q = 30), so speech is left almost untouched.
    Frequencies at or above 95 % of the Nyquist frequency are skipped. The cascade runs
    forwards and backwards over the audio extended at both ends by repeating its first
    and last whole mains periods, so that the hum continues in phase while the narrow
    notches ring up (their time constant is ``q / (pi f)``, 0.19 s at 50 Hz).
    """
    from scipy import signal  # type: ignore[import-untyped, unused-ignore]

    x = _mono64(audio)
    if mains_hz <= 0 or harmonics < 1 or q <= 0:
        raise ValueError("hum_notch needs mains_hz > 0, harmonics >= 1 and q > 0")
    freqs = [k * mains_hz for k in range(1, harmonics + 1) if k * mains_hz < 0.475 * sr]
    n = x.size
    period = _whole_periods(sr, mains_hz)
    if not freqs or n < max(2, period):
        return x.astype(np.float32)
    sos = np.vstack([signal.tf2sos(*signal.iirnotch(f, q, fs=sr)) for f in freqs])
    pad = int(5.0 * q / (math.pi * freqs[0]) * sr)  # 5 time constants of the narrowest
    before = np.arange(-pad, 0) % period
    after = n - period + np.arange(pad) % period
    extended = np.concatenate((x[before], x, x[after]))
    filtered = signal.sosfiltfilt(sos, extended, padlen=0)
    return np.asarray(filtered[pad : pad + n], dtype=np.float32)


def _whole_periods(sr: int, mains_hz: float) -> int:
    """The fewest samples holding a whole number of mains periods (within 0.01 sample)."""
    for count in range(1, 101):
        length = count * sr / mains_hz
        if abs(length - round(length)) < 0.01:
            return round(length)
    return round(sr / mains_hz)


# --- measurement internals --------------------------------------------------------


def _mono64(audio: npt.ArrayLike) -> Float64Array:
    x = np.asarray(audio, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"expected mono audio of shape (n,), got shape {x.shape}")
    return x


def _mono32(audio: npt.ArrayLike) -> FloatArray:
    x = np.ascontiguousarray(audio, dtype=np.float32)
    if x.ndim != 1:
        raise ValueError(f"expected mono audio of shape (n,), got shape {x.shape}")
    return x


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

    if x.size < BLOCK_SEC * sr:
        return None
    weighted: FloatArray = signal.sosfilt(_k_weighting_sos(sr).copy(), x)
    np.square(weighted, out=weighted)
    return weighted


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
    pieces = np.add.reduceat(power, edges[:-1], dtype=np.float64)
    cumulative = np.concatenate(([0.0], np.cumsum(pieces)))
    blocks: Float64Array = (cumulative[upper] - cumulative[lower]) / (BLOCK_SEC * sr)
    return np.maximum(blocks, 0.0)


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


# --- limiter internals ------------------------------------------------------------


def _gained(x: FloatArray, gain: float, blocks: Float64Array | None, peak: float) -> Conditioned:
    """The static-gain result: loudness and peak follow from the input's by linearity."""
    return Conditioned(
        audio=x * np.float32(gain),
        lufs=None if blocks is None else _gated_lufs(blocks * (gain * gain)),
        true_peak_db=_db(peak * gain),
        gain_db=_db(gain),
        limited=False,
    )


class _Envelope:
    """Per-sample peak envelope of ``x`` at 8x, computed only where it matters.

    ``values[k]``, once known, is the largest magnitude among sample k, the 4x
    sub-samples on either side of it and the points halfway between those (the odd
    points of an 8x signal). It is computed for the samples :meth:`where_above` asks
    about and left 0 elsewhere.
    """

    def __init__(self, x: FloatArray, up: FloatArray) -> None:
        self.x = x
        self.up = up
        n = x.size
        os = _METER_OVERSAMPLE
        grid = np.zeros((n, os), dtype=np.float32)
        m = min(up.size, grid.size)
        np.abs(up[:m], out=grid.reshape(-1)[:m])
        # The largest 4x magnitude from sample k up to (not including) sample k + 1.
        self.after = grid[:, 0].copy()
        for k in range(1, os):  # strided maxima: far faster than .max(axis=1)
            np.maximum(self.after, grid[:, k], out=self.after)
        self.values = np.zeros(n, dtype=np.float32)
        self.known = np.zeros(n, dtype=bool)

    def where_above(self, level: float) -> FloatArray:
        """The envelope, exact wherever it may exceed ``level`` (0 where it cannot)."""
        # A 4x grid misses a peak by at most _GRID_SLACK: below that, nothing to do.
        t = level * _GRID_SLACK
        wanted = self.after > t
        wanted[1:] |= wanted[:-1]  # what lies after sample k also borders sample k + 1
        wanted |= (self.x > t) | (self.x < -t)
        wanted &= ~self.known
        todo = np.flatnonzero(wanted)
        if todo.size:
            self.values[todo] = np.maximum(np.abs(self.x[todo]), _peaks_near(self.up, todo))
            self.known[todo] = True
        return self.values


def _peaks_near(up: FloatArray, samples: IntArray) -> FloatArray:
    """For each sample k, the peak magnitude of the signal between samples k - 1 and k + 1.

    soxr's 4x points are the even points of an 8x signal; the odd ones (halfway
    between 4x points q and q + 1) are interpolated from 4x points q - 2 .. q + 3
    (zero beyond the ends). A parabola through each 8x extremum and its neighbours
    then places the peak between the 8x points (an 8x grid alone can miss it by up to
    0.14 dB near the Nyquist frequency; the parabola's error is below 0.01 dB).
    """
    os = _METER_OVERSAMPLE
    q = (samples * os)[:, None] + np.arange(-os, os)[None, :]
    points = np.zeros(q.shape)
    mids = np.zeros(q.shape)
    for tap, offset in zip(_MIDPOINT_TAPS, range(-2, 4), strict=True):
        index = q + offset
        inside = (index >= 0) & (index < up.size)
        values = np.where(inside, up[np.clip(index, 0, max(up.size - 1, 0))], 0.0)
        mids += tap * values
        if offset == 0:
            points = values
    eight = np.empty((q.shape[0], 2 * q.shape[1]))
    eight[:, 0::2] = points
    eight[:, 1::2] = mids
    before, here, after = eight[:, :-2], eight[:, 1:-1], eight[:, 2:]
    curvature = before - 2.0 * here + after
    extremum = ((here - before) * (here - after) > 0.0) & (curvature != 0.0)
    safe = np.where(extremum, curvature, 1.0)
    vertex = np.where(extremum, here - (after - before) ** 2 / (8.0 * safe), 0.0)
    peaks: FloatArray = np.maximum(np.abs(eight).max(axis=1), np.abs(vertex).max(axis=1)).astype(
        np.float32
    )
    return peaks


def _runs(mask: npt.NDArray[np.bool_], pad: int) -> list[tuple[int, int]]:
    """Runs of ``mask`` widened by ``pad`` each side and merged where they overlap."""
    n = mask.size
    edges = np.diff(np.concatenate(([0], mask.view(np.int8), [0])))
    starts = np.maximum(np.flatnonzero(edges == 1) - pad, 0)
    ends = np.minimum(np.flatnonzero(edges == -1) + pad, n)
    if starts.size == 0:
        return []
    reach = np.maximum.accumulate(ends)
    new = np.concatenate(([True], starts[1:] > reach[:-1]))
    first = np.flatnonzero(new)
    last = np.concatenate((first[1:] - 1, [starts.size - 1]))
    return list(zip(starts[first].tolist(), reach[last].tolist(), strict=True))


def _gain_curve(envelope: FloatArray, limit: float, sr: int) -> FloatArray | None:
    """Smooth gain, <= ``limit / envelope`` wherever that is < 1; None if nothing tops it."""
    hot = envelope > limit
    if not hot.any():
        return None
    half = max(1, round(_LIMITER_WINDOW_SEC * sr))
    curve = np.ones(envelope.size, dtype=np.float32)
    # The smoothing reaches 2 * half samples: pieces this far apart do not interact.
    for start, end in _runs(hot, 2 * half + 2):
        required = np.ones(end - start)
        piece = envelope[start:end].astype(np.float64)
        where = hot[start:end]
        required[where] = limit / piece[where]
        curve[start:end] = _smooth_gain(required, half)
    return curve


def _smooth_gain(required: Float64Array, half: int) -> Float64Array:
    """A smooth gain curve that never exceeds ``required`` at any sample."""
    from scipy import ndimage  # type: ignore[import-untyped, unused-ignore]

    held = ndimage.minimum_filter1d(required, size=2 * half + 1, mode="nearest")
    # Two box filters of half-width half//2 make a triangle of half-width <= half, so
    # each smoothed value averages held values that all include ``required`` here.
    box = 2 * (half // 2) + 1
    smooth = ndimage.uniform_filter1d(held, size=box, mode="nearest")
    smooth = ndimage.uniform_filter1d(smooth, size=box, mode="nearest")
    gain: Float64Array = np.minimum(smooth, required)
    return gain


def _verified(out: FloatArray, sr: int, ceiling: float) -> tuple[FloatArray, FloatArray]:
    """``out`` with its 8x envelope at or under ``ceiling`` (changed in place), its 4x."""
    for _ in range(_LIMITER_PASSES):
        up = _oversampled(out, sr, _METER_OVERSAMPLE)
        envelope = _Envelope(out, up).where_above(ceiling * _AIM)
        if not (envelope > ceiling).any():
            return out, up
        # Aim a little under the check, so float32 rounding cannot tip it over.
        curve = _gain_curve(envelope, ceiling * _AIM, sr)
        if curve is not None:
            out *= curve
    up = _oversampled(out, sr, _METER_OVERSAMPLE)
    peak = float(_Envelope(out, up).where_above(ceiling).max(initial=0.0))
    if peak > ceiling:
        out *= np.float32(ceiling * _AIM / peak)
        up = _oversampled(out, sr, _METER_OVERSAMPLE)
    return out, up
