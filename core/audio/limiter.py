"""The true-peak limiter: a look-ahead gain curve that holds a ceiling to the Nyquist frequency.

Applying, not reporting: the reported true peak is :func:`core.audio.meter.true_peak_db`
(4x); the ceiling is ENFORCED against stricter readings (soxr's 4x band, a near-ideal FFT
reconstruction and ffmpeg's short interpolator), each only where a cheap bound says it can
matter. :mod:`core.audio.conditioning` runs it within its loudness target;
:func:`limit_window` runs it on one window of a streamed master with a fixed gain. Written by
hand on purpose: off-the-shelf limiters do not hold their threshold as a ceiling. Channels
share one gain curve (linked). The underscored names here are shared with
:mod:`core.audio.conditioning` (and the tests), inside ``core.audio`` only.

Details: docs/AUDIO.md, "The true-peak limiter"."""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from core.audio.meter import (
    _CHUNK_MARGIN,
    _CHUNK_SAMPLES,
    _LONG_SAMPLES,
    _METER_OVERSAMPLE,
    _abs_max,
    _audio32,
    _chunk_oversampled,
    _oversampled,
    _reach,
    _scan,
)
from core.audio.parallel import run_spans
from core.audio.types import Float64Array, FloatArray, IntArray

__all__ = [
    "LIMIT_CONTEXT",
    "LimitedWindow",
    "limit_window",
]


_LIMITER_MARGIN_DB: Final = 0.05
_LIMITER_WINDOW_SEC: Final = 0.005
_LIMITER_PASSES: Final = 4
_AIM: Final = 10.0 ** (-0.01 / 20.0)
"""The gain curve aims this far under the ceiling it is checked against (rounding)."""
_GRID_SLACK: Final = 10.0 ** (-0.7 / 20.0)
"""A 4x grid reads a peak at most ~0.6 dB low (content up to soxr's passband edge)."""
_EIGHT_SLACK: Final = 10.0 ** (-0.25 / 20.0)
"""The 8x reading of soxr's band (:func:`_peaks_near`) is at most ~0.15 dB low: 0.14 dB
between 8x points at soxr's passband edge, 0.005 dB of midpoint interpolation error;
the rest covers the strict reconstruction's own error (its FFT context, < 0.01 dB)."""

# 6-point Lagrange interpolation of the point halfway between samples q and q + 1,
# from samples q - 2 .. q + 3.
_MIDPOINT_TAPS: Final = np.array([3.0, -25.0, 150.0, 150.0, -25.0, 3.0]) / 256.0

_STRICT_OVERSAMPLE: Final = 8
_STRICT_MARGIN: Final = 512
"""Input samples of context on each side of a stretch the strict detector reconstructs."""
_STRICT_TAPER: Final = 256
"""The outer samples of that context fade in and out (no wrap-around ringing)."""
_STRICT_SPAN: Final = 16384
"""Samples asked about per reconstruction at most (one FFT each)."""

_SHORT_TAPS: Final = 32
_SHORT_BETA: Final = 9.0
_SHORT_PHASES: Final = 16
"""The short interpolator (:func:`_short_kernels`): 32 taps, Kaiser beta 9, read at 16
phases per sample (a multiple of the 4 and 8 that ffmpeg's meter reads at 48 and
24 kHz) and refined by a parabola at each extremum."""
_SHORT_BLOCK: Final = 256
"""Intervals per matrix product (OpenBLAS threads products over 65536 x 4 multiply-adds)."""
_SHORT_SAMPLES: Final = 4096
"""Samples the short interpolator reads at a time (bounds its temporaries)."""


class _Envelope:
    """Per-sample peak envelope of ``x`` at 8x, computed only where it matters.

    The envelope at sample k, once known, is the largest magnitude among sample k, the
    4x sub-samples on either side of it and the points halfway between those (the odd
    points of an 8x signal), over all channels. It is computed for the samples
    :meth:`where_above` asks about and kept for those only (``known``,
    ``known_values``); elsewhere it counts as 0.

    With ``up`` (the whole 4x signal) the points are read from it. Without, the audio is
    long: it is scanned in chunks for ``reach`` (and ``peak``), and the 4x points around
    the samples asked about are made again, a stretch at a time.
    """

    def __init__(
        self,
        x: FloatArray,
        sr: int,
        up: FloatArray | None = None,
        *,
        reach: FloatArray | None = None,
        peak: float = 0.0,
        residue: float = 0.0,
    ) -> None:
        self.x = x
        self.sr = sr
        self.up = up
        self.columns = [x] if x.ndim == 1 else [x[:, c] for c in range(x.shape[1])]
        n = x.shape[0]
        # reach[k]: the largest magnitude bordering sample k, the sample itself and the
        # 4x points from sample k - 1 to sample k + 1 (what where_above compares).
        self.reach = np.empty(n, dtype=np.float32) if reach is None else reach
        if reach is not None:  # made by the caller (see _shaped_envelope), with the peak
            scanned = peak
        elif up is None:
            residues: list[float] = []
            scanned = _scan(x, sr, _METER_OVERSAMPLE, self.reach, residues)
            residue = max(residues, default=0.0)
        else:
            ups = [up] if up.ndim == 1 else [up[:, c] for c in range(up.shape[1])]
            residue = _reach(self.reach, ups, self.columns, 0, n)[1]
            scanned = _abs_max(up)
        self.peak = max(_abs_max(x), scanned)
        """The true peak: the largest magnitude of the samples and the 4x points."""
        self.residue = residue
        """The largest sample of what soxr's filter took away (see :func:`_reach`)."""
        self.unseen = residue * _unseen_factor(n)
        """At most this much of the continuous signal is not in the 4x points (anywhere)."""
        self.known: IntArray = np.zeros(0, dtype=np.int64)
        """The samples whose envelope is known, sorted."""
        self.known_values: FloatArray = np.zeros(0, dtype=np.float32)
        self.known_bounds: Float64Array = np.zeros(0)
        """For each known sample, a bound on its band-limited reconstruction while that is
        not made (:meth:`where_above`); 0 once it is (then in ``known_values``)."""

    def where_above(self, level: float) -> None:
        """Make the envelope exact wherever it may exceed ``level``.

        A sample's envelope is exact once it holds all three readings, or when the ones
        it holds are exact and a bound on the missing one is at most ``level``: the
        readings of soxr's band and of the short interpolator are made for every sample
        screened in, the band-limited reconstruction (the dearest) only where its bound
        (``known_bounds``) exceeds ``level``, now or at a later, lower level.
        """
        # The continuous signal is soxr's band (seen by the 4x grid, which misses its
        # peaks by at most _GRID_SLACK) plus what soxr's filter removes (at most
        # ``unseen``): where the two cannot reach ``level`` together, nothing to do.
        todo = np.flatnonzero(self.reach > (level - self.unseen) * _GRID_SLACK)
        if self.known.size:
            todo = todo[~np.isin(todo, self.known, assume_unique=True, kind="sort")]
        if todo.size:
            self._add(todo)
        pending = np.flatnonzero(self.known_bounds > level)
        if pending.size:
            ideal = _strict_peaks(self.x, self.known[pending])
            self.known_values[pending] = np.maximum(self.known_values[pending], ideal)
            self.known_bounds[pending] = 0.0

    def _add(self, todo: IntArray) -> None:
        """Make the band and short readings of ``todo`` (sorted, none known yet) and the
        bound on their reconstruction."""
        if self.up is not None:
            values = self._peaks(todo, self.up, 0)
        else:
            values = np.empty(todo.size, dtype=np.float32)

            def job(first: int, last: int) -> None:
                samples = todo[first:last]
                start, end = int(samples[0]), int(samples[-1]) + 1
                part, skip = _chunk_oversampled(self.x, self.sr, _METER_OVERSAMPLE, start, end)
                # part[skip] is the first 4x point of sample ``start``.
                base = start * _METER_OVERSAMPLE - skip
                values[first:last] = self._peaks(samples, part, base)

            run_spans(job, _groups(todo))
        # All readings bind: soxr's band alone (removing content near Nyquist can raise
        # a peak: meters with a passband under Nyquist, as BS.1770's and ffmpeg's, read
        # it), the band-limited reconstruction up to Nyquist and ffmpeg's short filter.
        # The reconstruction is soxr's band plus what its filter removed: at most the
        # band's 8x reading from sample k - 1 to k + 1 (with the 4x point at k + 1, in
        # reach[k + 1]) widened by _EIGHT_SLACK, plus ``unseen``.
        following = self.reach[np.minimum(todo + 1, self.x.shape[0] - 1)]
        bounds = np.maximum(values, following).astype(np.float64) / _EIGHT_SLACK + self.unseen
        np.maximum(values, _short_reading(self.x, todo), out=values)
        known = np.concatenate((self.known, todo))
        order = np.argsort(known, kind="stable")
        self.known = known[order]
        self.known_values = np.concatenate((self.known_values, values))[order]
        self.known_bounds = np.concatenate((self.known_bounds, bounds))[order]

    def above(self, limit: float) -> IntArray:
        """The known samples whose envelope exceeds ``limit`` (sorted)."""
        return self.known[self.known_values > limit]

    def values(self, start: int, end: int) -> FloatArray:
        """The envelope of samples ``start .. end - 1`` (0 where not known)."""
        out = np.zeros(end - start, dtype=np.float32)
        first, last = np.searchsorted(self.known, (start, end))
        out[self.known[first:last] - start] = self.known_values[first:last]
        return out

    def largest(self) -> float:
        """The largest known envelope value (0 if none)."""
        return float(self.known_values.max(initial=0.0))

    def _peaks(self, samples: IntArray, up: FloatArray, base: int) -> FloatArray:
        """Envelope values of ``samples`` from 4x points ``up`` (``up[0]`` is point ``base``)."""
        total = self.x.shape[0] * _METER_OVERSAMPLE
        ups = [up] if up.ndim == 1 else [up[:, c] for c in range(up.shape[1])]
        peaks = np.zeros(samples.size, dtype=np.float32)
        for x, column in zip(self.columns, ups, strict=True):
            np.maximum(peaks, np.abs(x[samples]), out=peaks)
            np.maximum(peaks, _peaks_near(_windows(column, samples, base, total)), out=peaks)
        return peaks


def _unseen_factor(n: int) -> float:
    """Bound on the continuous peak of a band-limited ``d`` near a sample, per unit of
    ``max |d[k]|`` over ``n`` samples.

    ``d(t) = sum_k d[k] sinc(t - k)``; between samples ``m - 1`` and ``m + 1`` the three
    nearest terms weigh at most 1 each and the term ``j`` samples away at most
    ``1 / (pi (j - 1))``: in all at most ``3 + (2 / pi)(ln n + 1)`` (14.6 for 30
    minutes at 24 kHz). A worst case, reached only by content at the Nyquist frequency.
    """
    return 3.0 + 2.0 / math.pi * (math.log(max(n, 2)) + 1.0)


def _groups(todo: IntArray) -> list[tuple[int, int]]:
    """``todo`` (sorted samples) cut into index ranges of nearby samples, each within a chunk.

    Samples less than two margins apart share a range (one resampling serves them).
    """
    return _nearby(todo, 2 * _CHUNK_MARGIN, _CHUNK_SAMPLES)


def _nearby(samples: IntArray, gap: int, span: int) -> list[tuple[int, int]]:
    """``samples`` (sorted) cut into index ranges: a range breaks where two samples are more
    than ``gap`` apart, and holds the longest stretch from its first sample that spans
    less than ``span`` samples."""
    breaks = np.flatnonzero(np.diff(samples) > gap) + 1
    bounds = [0, *breaks.tolist(), samples.size]
    groups: list[tuple[int, int]] = []
    for first, last in itertools.pairwise(bounds):
        while first < last:
            stop = int(np.searchsorted(samples, samples[first] + span, side="left"))
            stop = min(max(stop, first + 1), last)
            groups.append((first, stop))
            first = stop
    return groups


_WINDOW: Final = np.arange(-_METER_OVERSAMPLE - 2, _METER_OVERSAMPLE + 3)
"""4x points around sample k that :func:`_peaks_near` reads: 4k - 6 .. 4k + 6."""


def _windows(up: FloatArray, samples: IntArray, base: int, total: int) -> Float64Array:
    """For each sample k, the 4x points 4k - 6 .. 4k + 6 (0 outside ``[0, total)``).

    ``up[0]`` is 4x point ``base``; the points read must lie in ``up`` or outside
    ``[0, total)``.
    """
    index = (samples * _METER_OVERSAMPLE)[:, None] + _WINDOW[None, :]
    inside = (index >= 0) & (index < total)
    local = np.clip(index - base, 0, max(up.shape[0] - 1, 0))
    out: Float64Array = np.where(inside, up[local], 0.0)
    return out


def _peaks_near(windows: Float64Array) -> FloatArray:
    """For each sample k, the peak magnitude of the signal between samples k - 1 and k + 1.

    ``windows`` holds each sample's 4x points 4k - 6 .. 4k + 6 (:func:`_windows`). soxr's
    4x points are the even points of an 8x signal; the odd ones (halfway between 4x
    points q and q + 1) are interpolated from 4x points q - 2 .. q + 3 (zero beyond the
    ends). A parabola through each 8x extremum and its neighbours then places the peak
    between the 8x points (an 8x grid alone can miss it by up to 0.14 dB near the
    Nyquist frequency; the parabola's error is below 0.01 dB).
    """
    os = _METER_OVERSAMPLE
    width = 2 * os  # 4x points 4k - 4 .. 4k + 3
    points = windows[:, 2 : 2 + width]
    mids = np.zeros(points.shape)
    for tap, offset in zip(_MIDPOINT_TAPS, range(-2, 4), strict=True):
        mids += tap * windows[:, offset + 2 : offset + 2 + width]
    eight = np.empty((windows.shape[0], 2 * width))
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


def _strict_peaks(x: FloatArray, samples: IntArray) -> FloatArray:
    """For each of ``samples`` (sorted), the peak of the band-limited signal from k - 1
    to k + 1, over all channels: the near-ideal reconstruction the ceiling is held to.

    Nearby samples share one reconstruction (:func:`_strict_stretch`), made on several
    threads for long audio.
    """
    out = np.empty(samples.size, dtype=np.float32)
    groups = _nearby(samples, 2 * _STRICT_MARGIN, _STRICT_SPAN)

    def job(first: int, last: int) -> None:
        out[first:last] = _strict_stretch(x, samples[first:last])

    _run_jobs(job, groups, x.shape[0])
    return out


def _short_reading(x: FloatArray, samples: IntArray) -> FloatArray:
    """For each of ``samples`` (sorted), the short interpolator's peak from k - 1 to
    k + 1 (:func:`_short_peaks`), over all channels; blocks of samples at a time, on
    several threads for long audio."""
    out = np.empty(samples.size, dtype=np.float32)
    blocks = [
        (a, min(a + _SHORT_SAMPLES, samples.size)) for a in range(0, samples.size, _SHORT_SAMPLES)
    ]
    columns = [x] if x.ndim == 1 else [x[:, c] for c in range(x.shape[1])]

    def job(first: int, last: int) -> None:
        block = samples[first:last]
        value = _short_peaks(columns[0], block)
        for column in columns[1:]:
            np.maximum(value, _short_peaks(column, block), out=value)
        out[first:last] = value

    _run_jobs(job, blocks, x.shape[0])
    return out


def _run_jobs(job: Callable[[int, int], None], spans: list[tuple[int, int]], length: int) -> None:
    """``job(first, last)`` for every span: in turn for a single span or audio of ``length``
    samples under ``_LONG_SAMPLES``, else on several threads (:func:`run_spans`)."""
    if len(spans) == 1 or length < _LONG_SAMPLES:
        for first, last in spans:
            job(first, last)
    else:
        run_spans(job, spans)


def _strict_stretch(x: FloatArray, samples: IntArray) -> FloatArray:
    """:func:`_strict_peaks` for samples within one stretch of at most ``_STRICT_SPAN``.

    The stretch and ``_STRICT_MARGIN`` samples each side (zeros beyond the signal's
    ends; the outer ``_STRICT_TAPER`` faded) are oversampled 8x by FFT zero-padding: a
    brick-wall reconstruction up to the Nyquist frequency, whose bin is split evenly
    between +-Nyquist. The context keeps the FFT's periodic wrap away from the samples
    read (its effect there is under 0.01 dB). A parabola through each 8x extremum and
    its neighbours places the peak between the points (an 8x grid alone reads up to
    0.17 dB low at the Nyquist frequency; the parabola, under 0.01 dB). Only the
    points the samples need are refined and read.
    """
    from scipy import fft  # type: ignore[import-untyped, unused-ignore]

    n = x.shape[0]
    lo = int(samples[0]) - 1 - _STRICT_MARGIN
    length = fft.next_fast_len(int(samples[-1]) + 2 + _STRICT_MARGIN - lo, real=True)
    a, b = max(lo, 0), min(lo + length, n)
    segment = np.zeros((length, *x.shape[1:]))
    segment[a - lo : b - lo] = x[a:b]
    ramp = _strict_ramp()
    if segment.ndim > 1:
        ramp = ramp[:, None]
    segment[:_STRICT_TAPER] *= ramp
    segment[length - _STRICT_TAPER :] *= ramp[::-1]
    spectrum = fft.rfft(segment, axis=0)
    if length % 2 == 0:
        spectrum[-1] *= 0.5
    os_ = _STRICT_OVERSAMPLE
    up = fft.irfft(spectrum, n=length * os_, axis=0)
    points = up[:, None] if up.ndim == 1 else up
    peaks = np.zeros(samples.size, dtype=np.float32)
    local = samples - lo
    # Only the points from sample local[0] - 1 to local[-1] + 1 are read, and one more
    # each side for the parabolas (the context keeps them inside ``up``).
    first = (int(local[0]) - 1) * os_ - 1
    last = (int(local[-1]) + 1) * os_ + 2
    rows = local - (first + 1) // os_  # sample j's points start at row j's first
    for c in range(points.shape[1]):
        y = points[first:last, c] * os_
        magnitude = np.abs(y[1:-1])
        before, here, after = y[:-2], y[1:-1], y[2:]
        curvature = before - 2.0 * here + after
        extremum = ((here - before) * (here - after) > 0.0) & (curvature != 0.0)
        where = np.flatnonzero(extremum)
        vertex = here[where] - (after[where] - before[where]) ** 2 / (8.0 * curvature[where])
        magnitude[where] = np.maximum(magnitude[where], np.abs(vertex))
        per_sample = magnitude[:-1].reshape(-1, os_).max(axis=1)  # from sample j to j + 1
        value = np.maximum(per_sample[rows - 1], per_sample[rows])
        np.maximum(value, magnitude[rows * os_ + os_], out=value)
        np.maximum(peaks, value.astype(np.float32), out=peaks)
    return peaks


@functools.lru_cache(maxsize=1)
def _strict_ramp() -> Float64Array:
    """The fade-in of a strict stretch's outer context (its reverse fades out)."""
    ramp: Float64Array = np.sin(0.5 * np.pi * (np.arange(_STRICT_TAPER) + 0.5) / _STRICT_TAPER) ** 2
    ramp.setflags(write=False)
    return ramp


@functools.lru_cache(maxsize=1)
def _short_kernels() -> Float64Array:
    """The short interpolator's taps, ``(_SHORT_TAPS, _SHORT_PHASES)``: column ``j`` gives
    the value at ``m + j / _SHORT_PHASES`` from samples ``m - 15 .. m + 16``.

    A Kaiser-windowed (beta 9) sinc over 32 taps, each phase normalised to unit sum: the
    default interpolation filter of FFmpeg's swresample, which ffmpeg's ``ebur128``
    true-peak meter uses (it resamples to 192 kHz and takes the largest magnitude). Its
    window widens the transition band around the Nyquist frequency: near-Nyquist
    content and its image both pass in part, and on dense limited peaks it reads up to
    0.2 dB above the band-limited signal.
    """
    center = (_SHORT_TAPS - 1) // 2
    taps = np.arange(_SHORT_TAPS, dtype=np.float64)[:, None] - center
    u = taps - np.arange(_SHORT_PHASES)[None, :] / _SHORT_PHASES
    window = np.i0(_SHORT_BETA * np.sqrt(np.maximum(1.0 - (2.0 * u / _SHORT_TAPS) ** 2, 0.0)))
    kernels: Float64Array = np.sinc(u) * window
    kernels /= kernels.sum(axis=0, keepdims=True)
    kernels.setflags(write=False)
    return kernels


def _short_peaks(signal: npt.NDArray[np.floating], samples: IntArray) -> Float64Array:
    """For each of ``samples`` (sorted) of ``signal`` (one channel, zeros beyond its ends),
    the peak the short interpolator (:func:`_short_kernels`) reads from sample k - 1 to
    k + 1.

    The interpolator's points are made, in float64, for the intervals the samples need
    (m = k - 2 .. k + 1: each made once, however many samples share it); each sample's
    points from the last of interval k - 2 to the second of interval k + 1 form one
    sequence, in which a parabola through each extremum and its neighbours places the
    peak between the points. The products go to BLAS in blocks small enough that
    OpenBLAS runs them on the calling thread (its worker threads cost far more than such
    small products).
    """
    n = signal.shape[0]
    center = (_SHORT_TAPS - 1) // 2
    intervals = np.unique((samples[:, None] + np.arange(-2, 2)).ravel())
    taps = (intervals - center)[:, None] + np.arange(_SHORT_TAPS)
    inside = (taps >= 0) & (taps < n)
    windows = np.where(inside, signal[np.clip(taps, 0, max(n - 1, 0))], 0.0).astype(np.float64)
    kernels = _short_kernels()
    points = np.empty((intervals.size, _SHORT_PHASES))
    for row in range(0, intervals.size, _SHORT_BLOCK):
        np.matmul(windows[row : row + _SHORT_BLOCK], kernels, out=points[row : row + _SHORT_BLOCK])
    # Row m of ``points``: the points at m + j / _SHORT_PHASES. Intervals k - 2 .. k + 1
    # are consecutive rows, so each sample's sequence is a slice of the flattened rows.
    own = np.searchsorted(intervals, samples)
    flat = points.ravel()
    first = (own - 2) * _SHORT_PHASES + _SHORT_PHASES - 1  # the last point of k - 2
    sequence = flat[first[:, None] + np.arange(2 * _SHORT_PHASES + 3)]
    before, here, after = sequence[:, :-2], sequence[:, 1:-1], sequence[:, 2:]
    magnitude = np.abs(here)
    curvature = before - 2.0 * here + after
    extremum = ((here - before) * (here - after) > 0.0) & (curvature != 0.0)
    safe = np.where(extremum, curvature, 1.0)
    vertex = np.abs(here - (after - before) ** 2 / (8.0 * safe))
    np.maximum(magnitude, vertex, out=magnitude, where=extremum)
    # Intervals k - 1 and k and the point at sample k + 1.
    peaks: Float64Array = magnitude.max(axis=1)
    return peaks


def _runs(samples: IntArray, pad: int, n: int) -> list[tuple[int, int]]:
    """Runs of consecutive ``samples`` (sorted) widened by ``pad`` each side and merged
    where they overlap, within ``[0, n)``."""
    if samples.size == 0:
        return []
    step = np.flatnonzero(np.diff(samples) > 1)
    starts = np.maximum(samples[np.concatenate(([0], step + 1))] - pad, 0)
    ends = np.minimum(samples[np.concatenate((step, [samples.size - 1]))] + 1 + pad, n)
    reach = np.maximum.accumulate(ends)
    new = np.concatenate(([True], starts[1:] > reach[:-1]))
    first = np.flatnonzero(new)
    last = np.concatenate((first[1:] - 1, [starts.size - 1]))
    return list(zip(starts[first].tolist(), reach[last].tolist(), strict=True))


@dataclass
class _Curve:
    """A limiter gain curve over ``n`` samples: 1 except in ``pieces`` (start, gains)."""

    n: int
    pieces: list[tuple[int, FloatArray]]

    def applied(self, x: FloatArray, total: float) -> FloatArray:
        """A new array: ``x`` times ``total`` times the curve (one rounding per sample)."""
        scale = np.float32(total)
        out = x * scale
        for start, gains in self.pieces:
            scaled = gains * scale
            end = start + gains.size
            out[start:end] = x[start:end] * (scaled if x.ndim == 1 else scaled[:, None])
        return out

    def apply(self, out: FloatArray) -> None:
        """``out *= curve``, in place."""
        for start, gains in self.pieces:
            out[start : start + gains.size] *= gains if out.ndim == 1 else gains[:, None]

    def lowered(self) -> tuple[IntArray, FloatArray]:
        """The samples where the curve is under 1, and its values there."""
        samples: list[IntArray] = []
        values: list[FloatArray] = []
        for start, gains in self.pieces:
            where = np.flatnonzero(gains < 1.0)
            samples.append(where + start)
            values.append(gains[where])
        if not samples:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        return np.concatenate(samples), np.concatenate(values)


def _gain_curve(envelope: _Envelope, limit: float, sr: int) -> _Curve | None:
    """Smooth gain, <= ``limit / envelope`` wherever that is < 1; None if nothing tops it.

    The envelope is made exact where it may exceed ``limit`` first.
    """
    envelope.where_above(limit)
    hot = envelope.above(limit)
    if hot.size == 0:
        return None
    n = envelope.x.shape[0]
    half = max(1, round(_LIMITER_WINDOW_SEC * sr))
    pieces = []
    # The smoothing reaches 2 * half samples: pieces this far apart do not interact.
    for start, end in _runs(hot, 2 * half + 2, n):
        required = np.ones(end - start)
        piece = envelope.values(start, end).astype(np.float64)
        where = piece > limit
        required[where] = limit / piece[where]
        pieces.append((start, _smooth_gain(required, half).astype(np.float32)))
    return _Curve(n, pieces)


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


def _verified(
    out: FloatArray, sr: int, ceiling: float, first: _Envelope | None = None
) -> tuple[FloatArray, float]:
    """``out`` with its 8x envelope at or under ``ceiling`` (changed in place), its peak.

    The peak is the true peak (samples and 4x points) of the returned audio. ``first``
    is ``out``'s envelope, when the caller has it.
    """
    check, scale = _check_passes(out, sr, ceiling, first, _envelope_of)
    if scale is None:
        return out, check.peak
    if out.shape[0] >= _LONG_SAMPLES:
        return out, max(_abs_max(out), _scan(out, sr, _METER_OVERSAMPLE))
    return out, max(_abs_max(out), _abs_max(_oversampled(out, sr, _METER_OVERSAMPLE)))


def _check_passes(
    out: FloatArray,
    sr: int,
    ceiling: float,
    first: _Envelope | None,
    envelope_of: Callable[[FloatArray, int], _Envelope],
) -> tuple[_Envelope, np.float32 | None]:
    """The limiter's check passes on ``out`` (changed in place): the last envelope checked
    and the static scale applied after the passes (``None``: none was needed).

    Each pass reads ``out``'s envelope (``first``, when the caller has it, then
    ``envelope_of``) and adds a pass of gain reduction where it still exceeds ``ceiling``;
    a residue after :data:`_LIMITER_PASSES` passes is removed by a static scale. Shared by
    the whole-signal limiter (:func:`_verified`) and the windowed one
    (:func:`_verified_reach`).
    """
    check = first
    for _ in range(_LIMITER_PASSES):
        check = check if check is not None else envelope_of(out, sr)
        check.where_above(ceiling * _AIM)
        if check.above(ceiling).size == 0:
            return check, None
        # Aim a little under the check, so float32 rounding cannot tip it over.
        curve = _gain_curve(check, ceiling * _AIM, sr)
        if curve is not None:
            curve.apply(out)
        check = None
    final = envelope_of(out, sr)
    final.where_above(ceiling)
    peak = final.largest()
    if peak <= ceiling:
        return final, None
    scale = np.float32(ceiling * _AIM / peak)
    out *= scale
    return final, scale


def _shaped_envelope(
    shaped: FloatArray, sr: int, source: _Envelope, total: float, curve: _Curve
) -> _Envelope:
    """The envelope of ``shaped`` = ``source.x * total * curve``, for long audio.

    Away from the curve's pieces ``shaped`` is the source times ``total``, and so are
    its 4x points (resampling is linear), so its ``reach`` there is the source's, scaled
    (1 ppm high: rounding). soxr's filter spans far less than ``_CHUNK_MARGIN`` samples,
    so only the pieces and that margin around them are oversampled again.
    """
    reach = source.reach * np.float32(total * (1.0 + 1e-6))
    # Away from the pieces the residue scales too; where made again, it is measured.
    residues = [source.residue * total * (1.0 + 1e-6)]
    columns = [shaped] if shaped.ndim == 1 else [shaped[:, c] for c in range(shaped.shape[1])]
    n = shaped.shape[0]
    spans: list[tuple[int, int]] = []
    for start, end in _runs_of_spans(
        [(s, s + gains.size) for s, gains in curve.pieces], _CHUNK_MARGIN, n
    ):
        spans.extend((a, min(end, a + _CHUNK_SAMPLES)) for a in range(start, end, _CHUNK_SAMPLES))

    def job(start: int, end: int) -> None:
        part, skip = _chunk_oversampled(shaped, sr, _METER_OVERSAMPLE, start, end)
        if start > 0:
            skip -= _METER_OVERSAMPLE  # the points of sample start - 1 too
        points = part[skip : skip + (end - start + (start > 0)) * _METER_OVERSAMPLE]
        ups = [points] if points.ndim == 1 else [points[:, c] for c in range(points.shape[1])]
        residues.append(_reach(reach, ups, columns, start, end)[1])

    run_spans(job, spans)
    # The peak of every sample's surroundings is the peak of the samples and 4x points.
    return _Envelope(
        shaped, sr, reach=reach, peak=float(reach.max(initial=0.0)), residue=max(residues)
    )


def _runs_of_spans(spans: list[tuple[int, int]], pad: int, n: int) -> list[tuple[int, int]]:
    """Sorted ``spans`` widened by ``pad`` each side (within ``[0, n)``) and merged."""
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        start, end = max(0, start - pad), min(n, end + pad)
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def _envelope_of(x: FloatArray, sr: int) -> _Envelope:
    if x.shape[0] >= _LONG_SAMPLES:
        return _Envelope(x, sr)
    return _Envelope(x, sr, _oversampled(x, sr, _METER_OVERSAMPLE))


@dataclass(frozen=True)
class LimitedWindow:
    """One window of :func:`limit_window`: the gained, limited samples and their true peak."""

    audio: FloatArray
    peak: float
    """The window's true peak (samples and 4x points), linear."""
    limited: bool


LIMIT_CONTEXT: Final = 8192
"""Samples of context :func:`limit_window` needs on each side of a window for its result
to match the whole-signal limiter: soxr's filter (< 256 samples), the limiter's
look-ahead and smoothing (2 x 5 ms) and its check passes all reach far less."""


def limit_window(
    context: npt.ArrayLike,
    sr: int,
    *,
    gain: float,
    ceiling_dbtp: float,
    keep: tuple[int, int],
) -> LimitedWindow:
    """``context`` times ``gain``, its true peak held under ``ceiling_dbtp``; ``context[keep]``.

    The streaming form of :func:`condition`'s limiter with a fixed static gain (no
    make-up): the same envelope, gain curve and check passes, run on a window and
    :data:`LIMIT_CONTEXT` samples of context on each side (``keep`` is the window's
    span in ``context``; less context is needed only at the ends of the signal). A
    master cut into windows this way matches the whole-signal limiter to float32
    rounding, except where the final static scale (a residue after every check pass,
    rare) applies: it is then the window's own.
    """
    x = _audio32(context)
    a, b = keep
    ceiling = 10.0 ** ((ceiling_dbtp - _LIMITER_MARGIN_DB) / 20.0)
    if _abs_max(x) == 0.0:
        return LimitedWindow(x[a:b].copy(), 0.0, False)
    envelope = _Envelope(x, sr)
    curve = None
    if (envelope.peak / _GRID_SLACK + envelope.unseen) * gain > ceiling:
        curve = _gain_curve(envelope, ceiling * _AIM / gain, sr)
    if curve is None:
        out = x[a:b] * np.float32(gain)
        return LimitedWindow(out, float(envelope.reach[a:b].max(initial=0.0)) * gain, False)
    shaped = curve.applied(x, gain)
    reach = _verified_reach(
        shaped, sr, ceiling, _shaped_envelope(shaped, sr, envelope, gain, curve)
    )
    return LimitedWindow(shaped[a:b].copy(), float(reach[a:b].max(initial=0.0)), True)


def _verified_reach(out: FloatArray, sr: int, ceiling: float, first: _Envelope) -> FloatArray:
    """As :func:`_verified` (``out`` changed in place), returning the final ``reach``."""
    check, scale = _check_passes(out, sr, ceiling, first, _Envelope)
    if scale is None:
        return check.reach
    reach: FloatArray = check.reach * scale
    return reach
