"""Loudness and peak measurement, loudness conditioning and a mains-hum notch.

Pure functions on mono ``float32``/``float64`` numpy arrays at any sample rate; no I/O.
:func:`integrated_lufs`, :func:`true_peak_db` and (with ``multichannel=True``)
:func:`condition` also take ``(n, channels)`` arrays (see "Multichannel").

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
  silence. This is the figure reported everywhere (``Conditioned.true_peak_db``, the
  episode manifest), as other BS.1770 meters show it. soxr's passband ends at about
  0.92 of the Nyquist frequency, so content above that is not seen by it: the limiter
  does not rely on it alone (see "Strict detector").
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

Strict detector
---------------
The ceiling is ENFORCED against three readings at once, for every sample the limiter
looks at: soxr's 4x band (above); a near-ideal band-limited reconstruction up to
the Nyquist frequency (:func:`_strict_peaks`: FFT zero-padding 8x of the stretch with
512 samples of context each side, the Nyquist bin split, a parabola at each extremum);
and a short interpolator (:func:`_short_peaks`): the 32-tap Kaiser-windowed (beta 9)
sinc that FFmpeg's swresample uses by default, and so ffmpeg's ``ebur128`` true-peak
meter (it resamples to 192 kHz and takes the largest magnitude), read at 16 phases per
sample with a parabola at each extremum. All three bind: removing content near Nyquist
can raise a peak (meters with a passband under Nyquist, BS.1770's and ffmpeg's, read
such signals higher than the ideal), and a short filter's wide transition band lets
near-Nyquist content and its image through in part, so on dense limited peaks
(impulses in noise) ffmpeg reads up to 0.2 dB above the ideal. The short interpolator
departs from the band-limited signal only above 0.85 of the Nyquist frequency, and
what it makes of the residue (below) is at most 2.35 times its largest sample, within
the screening bound. Candidates are screened cheaply: ``|x[k] - up[4k]|`` (the sample minus soxr's
point at its instant) is what soxr's filter removed; its largest value times
:func:`_unseen_factor` (the worst case of a sinc sum, 14.6 for 30 minutes at 24 kHz)
bounds what the 4x grid cannot see, so only samples whose 4x reach plus that bound
can reach the ceiling are looked at. Those get soxr's 8x reading and the short
interpolator's (both cheap: the short one's points are made only for the intervals the
samples need, in small BLAS products that stay on the calling thread); the FFT
reconstruction, the dearest, is made only where its bound, the 8x reading widened by
0.25 dB (an 8x grid misses soxr's band by at most 0.15 dB) plus the unseen bound, can
reach the level asked about (``_Envelope.known_bounds``; tested against the
reconstruction in tests/test_loudness.py). On speech that is under half the samples
near the ceiling. Audio that went through soxr (every ingested recording) has almost
nothing in the unseen bound.

The limiter aims 0.06 dB under the ceiling. Measured (tests/test_loudness.py):
impulses in noise, clipped noise and Nyquist phase-flip bursts at 24, 44.1 and
48 kHz stay within 0.1 dB of the ceiling both by a 16x FFT reconstruction and by
ffmpeg's ``ebur128`` (run through PyAV). The reported figure stays the 4x one.

Cost, 10 s at 24 kHz on one core: ~2 ms for a loudness, ~2.5 ms for a true peak,
~4-6 ms for :func:`condition` when no limiting is needed and ~15-20 ms when it is.
Per ingested segment (6.7 s of draft-voice speech at 24 kHz with a -60 dBFS noise floor,
limited), measured in one run: :func:`condition` 11.6-12.1 ms, against 9.1-10.6 ms
before the strict detectors and 28.6 ms with them before this screening (the short
interpolator's products then ran on OpenBLAS's worker threads, which cost more than
the products on a busy 2-core machine).
scipy is imported on first use, not with this module (it takes over a second).

Multichannel
------------
Loudness sums the channels' K-weighted power with BS.1770's weights (pyloudnorm's:
1.0 for the first three channels, 1.41 for the surround pair; at most 5 channels); the
true peak is the largest of all channels. ``condition(..., multichannel=True)`` makes
one gain curve from the loudest channel at each sample and applies it to all of them
(a linked limiter: the image does not move). Without the flag, :func:`condition`
refuses anything but mono: a segment with channels is almost always a mistake there.
``max_gain_db`` caps the loudness gain (near-silence is not blown up).

Long audio
----------
From 2**21 samples (87 s at 24 kHz) the 4x signal is never held whole (30 minutes at
24 kHz would be 690 MB per channel): it is made in 65,536-sample chunks, each with
1024 samples of context on both sides (the result matches a one-piece resampling to
float32 rounding), on as many threads as the process may use, keeping only each
sample's largest nearby 4x magnitude; the 4x points around the samples that near the
ceiling are made again, a stretch at a time, when the envelope asks for them. The
limited output is checked again only around the gain curve's pieces: elsewhere it is
the input times the static gain, and so is its 4x signal. The envelope keeps its
values for the samples it computed only. For 30 minutes of 24 kHz mono speech with a
bed, :func:`condition` takes ~3.5 s of CPU and ~1.2 GB; results match the whole-signal
path to 1e-6. Audio shorter than that takes the whole-signal path, unchanged.

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
import itertools
import math
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt
import soxr

__all__ = [
    "BLOCK_SEC",
    "LIMIT_CONTEXT",
    "Conditioned",
    "LimitedWindow",
    "LoudnessMeter",
    "condition",
    "hum_notch",
    "integrated_lufs",
    "limit_window",
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

_CHANNEL_WEIGHTS: Final = (1.0, 1.0, 1.0, 1.41, 1.41)
"""BS.1770 channel weights (L, R, C, Ls, Rs), as pyloudnorm applies them."""

_LONG_SAMPLES: Final = 1 << 21
"""From this length (87 s at 24 kHz) the 4x signal is never held whole: it is made a
chunk at a time, on several threads, and only where it is needed (memory and speed)."""
_CHUNK_SAMPLES: Final = 1 << 16
_CHUNK_MARGIN: Final = 1024
"""Input samples resampled beyond each chunk's ends (soxr's filter needs < 256)."""
_MAX_THREADS: Final = 8


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


def condition(
    audio: npt.ArrayLike,
    sr: int,
    *,
    target_lufs: float = -19.0,
    ceiling_dbtp: float = -1.0,
    multichannel: bool = False,
    max_gain_db: float | None = None,
) -> Conditioned:
    """Gain ``audio`` to ``target_lufs`` and keep its true peak at or under ``ceiling_dbtp``.

    See the module docstring for the limiter. The input is not modified; the output is
    a new ``float32`` array of the same shape.

    ``audio`` must be mono ``(n,)`` unless ``multichannel`` is set; then it may also be
    ``(n, channels)`` (up to 5): the loudness is the BS.1770 channel-weighted sum (as
    :func:`integrated_lufs`), the ceiling holds for every channel and one gain curve,
    made from the loudest channel at each instant, is applied to all of them (a linked
    limiter: the stereo image does not move).

    ``max_gain_db`` caps the loudness gain: a quiet input is raised by at most that much
    (its target becomes its loudness plus the cap), so near-silence is not blown up.
    """
    x = _audio32(audio) if multichannel else _mono32(audio)
    if _abs_max(x) == 0.0:  # digital silence (or nothing): nothing to measure or gain
        return Conditioned(x.copy(), None, -math.inf, 0.0, False)
    ceiling = 10.0 ** ((ceiling_dbtp - _LIMITER_MARGIN_DB) / 20.0)
    power = _k_power(x, sr)
    blocks = None if power is None else _block_energies(power, sr)
    measured = None if blocks is None else _gated_lufs(blocks)
    if measured is not None and max_gain_db is not None:
        target_lufs = min(target_lufs, measured + max_gain_db)
    gain = 1.0 if measured is None else 10.0 ** ((target_lufs - measured) / 20.0)

    if x.shape[0] >= _LONG_SAMPLES:  # long audio: scanned in chunks, never held at 4x
        envelope = _Envelope(x, sr)
        peak, unseen = envelope.peak, envelope.unseen
    else:
        up = _oversampled(x, sr, _METER_OVERSAMPLE)
        peak = max(_abs_max(x), _abs_max(up))
        own = up[::_METER_OVERSAMPLE][: x.shape[0]]
        unseen = _abs_max(x[: own.shape[0]] - own) * _unseen_factor(x.shape[0])
    if (peak / _GRID_SLACK + unseen) * gain <= ceiling:
        return _gained(x, gain, blocks, peak)

    if x.shape[0] < _LONG_SAMPLES:
        envelope = _Envelope(x, sr, up)
    goal = target_lufs
    for attempt in range(2):
        total, curve, estimate = _fit_makeup(
            sr, envelope, power, blocks, gain, goal, ceiling * _AIM
        )
        if curve is None:  # no sample reaches the ceiling after all
            return _gained(x, gain, blocks, peak)
        shaped = curve.applied(x, total)
        first = None
        if x.shape[0] >= _LONG_SAMPLES:
            first = _shaped_envelope(shaped, sr, envelope, total, curve)
        out, out_peak = _verified(shaped, sr, ceiling, first)
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
        true_peak_db=_db(out_peak),
        gain_db=_db(total),
        limited=True,
    )


def _fit_makeup(
    sr: int,
    envelope: _Envelope,
    power: FloatArray | None,
    blocks: Float64Array | None,
    gain: float,
    target_lufs: float,
    aim: float,
) -> tuple[float, _Curve | None, float | None]:
    """Total gain, limiter gain curve and estimated loudness that best meet the target.

    The static ``gain`` is raised (secant steps on loudness against make-up, at most
    +12 dB) until the limited signal's estimated loudness is within 0.1 LU of the
    target. K-weighting is nearly linear in a slowly varying gain, so the loudness is
    estimated from the K-weighted power times the squared curve, without filtering:
    the block energies ``blocks`` of ``power`` less what the curve takes away, which is
    summed over the limited samples only.
    """
    makeup_db = 0.0
    previous: tuple[float, float] | None = None
    total = gain
    curve: _Curve | None = None
    estimate: float | None = None
    for round_ in range(_MAKEUP_ROUNDS):
        total = gain * 10.0 ** (makeup_db / 20.0)
        curve = _gain_curve(envelope, aim / total, sr)
        if power is None or blocks is None or curve is None:
            return total, curve, None
        estimate = _gated_lufs(_limited_energies(power, blocks, curve, sr) * (total * total))
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


def _audio32(audio: npt.ArrayLike) -> FloatArray:
    """``audio`` as contiguous float32 ``(n,)`` or ``(n, channels)`` (1 to 5 channels)."""
    x = np.ascontiguousarray(audio, dtype=np.float32)
    if x.ndim == 1 or (x.ndim == 2 and 1 <= x.shape[1] <= len(_CHANNEL_WEIGHTS)):
        return x
    raise ValueError(
        f"expected audio of shape (n,) or (n, channels) with 1 to "
        f"{len(_CHANNEL_WEIGHTS)} channels, got shape {x.shape}"
    )


def _threads() -> int:
    """Threads for the chunked work on long audio: the CPUs this process may use."""
    try:
        count = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        count = os.cpu_count() or 1
    return max(1, min(_MAX_THREADS, count))


def _chunks(n: int) -> list[tuple[int, int]]:
    """Fixed chunk bounds for long audio (a function of ``n`` alone: deterministic)."""
    return [(a, min(n, a + _CHUNK_SAMPLES)) for a in range(0, n, _CHUNK_SAMPLES)]


def _run_spans(job: Callable[[int, int], None], spans: list[tuple[int, int]]) -> None:
    """Call ``job(start, end)`` for every span, on several threads.

    numpy and soxr release the GIL for the array operations the jobs do; each job
    writes only its own span of the shared arrays.
    """
    workers = min(_threads(), len(spans))
    if workers <= 1:
        for start, end in spans:
            job(start, end)
        return
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for future in [pool.submit(job, start, end) for start, end in spans]:
            future.result()


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


def _limited_energies(
    power: FloatArray, blocks: Float64Array, curve: _Curve, sr: int
) -> Float64Array:
    """Block energies of ``power * curve**2``, from those of ``power`` (``blocks``).

    Only the samples the curve lowers are visited: the energy each block loses is a
    difference of a cumulative sum over them.
    """
    limited, gains = curve.lowered()
    if limited.size == 0:
        return blocks
    kept = gains.astype(np.float64)
    lost = power[limited] * (1.0 - kept * kept)
    cumulative = np.concatenate(([0.0], np.cumsum(lost)))
    edges, lower, upper = _block_edges(power.size, sr)
    first = np.searchsorted(limited, edges[lower])
    last = np.searchsorted(limited, edges[upper])
    out: Float64Array = np.maximum(
        blocks - (cumulative[last] - cumulative[first]) / (BLOCK_SEC * sr), 0.0
    )
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

    _run_spans(job, spans)
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

            _run_spans(job, _groups(todo))
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
    breaks = np.flatnonzero(np.diff(todo) > 2 * _CHUNK_MARGIN) + 1
    bounds = [0, *breaks.tolist(), todo.size]
    groups: list[tuple[int, int]] = []
    for first, last in itertools.pairwise(bounds):
        while first < last:
            # The longest stretch from todo[first] that fits in one chunk.
            stop = int(np.searchsorted(todo, todo[first] + _CHUNK_SAMPLES, side="left"))
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
    breaks = np.flatnonzero(np.diff(samples) > 2 * _STRICT_MARGIN) + 1
    bounds = [0, *breaks.tolist(), samples.size]
    groups: list[tuple[int, int]] = []
    for first, last in itertools.pairwise(bounds):
        while first < last:
            stop = int(np.searchsorted(samples, samples[first] + _STRICT_SPAN, side="left"))
            stop = min(max(stop, first + 1), last)
            groups.append((first, stop))
            first = stop

    def job(first: int, last: int) -> None:
        out[first:last] = _strict_stretch(x, samples[first:last])

    if len(groups) == 1 or x.shape[0] < _LONG_SAMPLES:
        for first, last in groups:
            job(first, last)
    else:
        _run_spans(job, groups)
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

    if len(blocks) == 1 or x.shape[0] < _LONG_SAMPLES:
        for first, last in blocks:
            job(first, last)
    else:
        _run_spans(job, blocks)
    return out


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
    for _ in range(_LIMITER_PASSES):
        check = first if first is not None else _envelope_of(out, sr)
        first = None
        check.where_above(ceiling * _AIM)
        if check.above(ceiling).size == 0:
            return out, check.peak
        # Aim a little under the check, so float32 rounding cannot tip it over.
        curve = _gain_curve(check, ceiling * _AIM, sr)
        if curve is not None:
            curve.apply(out)
    check = _envelope_of(out, sr)
    check.where_above(ceiling)
    peak = check.largest()
    if peak <= ceiling:
        return out, check.peak
    out *= np.float32(ceiling * _AIM / peak)
    if out.shape[0] >= _LONG_SAMPLES:
        return out, max(_abs_max(out), _scan(out, sr, _METER_OVERSAMPLE))
    return out, max(_abs_max(out), _abs_max(_oversampled(out, sr, _METER_OVERSAMPLE)))


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

    _run_spans(job, spans)
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


# --- streaming (long episodes) ----------------------------------------------------------


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
    check: _Envelope | None = first
    for _ in range(_LIMITER_PASSES):
        check = check if check is not None else _Envelope(out, sr)
        check.where_above(ceiling * _AIM)
        if check.above(ceiling).size == 0:
            return check.reach
        curve = _gain_curve(check, ceiling * _AIM, sr)
        if curve is not None:
            curve.apply(out)
        check = None
    final = _Envelope(out, sr)
    final.where_above(ceiling)
    peak = final.largest()
    if peak <= ceiling:
        return final.reach
    scale = np.float32(ceiling * _AIM / peak)
    out *= scale
    reach: FloatArray = final.reach * scale
    return reach
