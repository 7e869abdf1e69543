"""Quality measurements of one speech segment, and the QC flags they raise.

Pure numpy/scipy functions on mono audio at any sample rate; no I/O. A 10 s segment
at 24 kHz is measured in about 3 ms on one core when its loudness and true peak come
from :func:`core.loudness.condition`, about 8 ms when they are measured here too (one
pass per metric, no per-sample Python loops).

Which audio is measured
-----------------------
``measure(audio, sr, raw=cut)`` takes the segment as it is stored (after
:func:`core.loudness.condition`; passing the :class:`~core.loudness.Conditioned`
result itself reuses its loudness and true peak instead of measuring them again)
and, optionally, ``raw``: the same cut before any gain or limiting, at any sample
rate and as ``(n,)`` or ``(n, channels)``, ideally as read from the recording (before
downmix and resampling, which hide flat tops). ``rms_db`` and ``clipped`` describe
the recording as captured and are measured on ``raw`` (on ``audio`` when no ``raw``
is given); every other metric is measured on ``audio`` (``snr_db``, ``hum_score``
and ``plosive_ratio`` are ratios and do not depend on the gain).

Metrics
-------
Typical values below are for draft-voice speech at -20 dBFS RMS over a -60 dBFS
noise floor, cut with 150 ms margins (7 voices x 4 texts).

``rms_db``
    RMS level of the whole segment in dBFS: ``10 log10(mean(x**2))`` (over all
    channels of ``raw``), floored at -120 dBFS: digital silence reads -120, not -inf.
``snr_db``
    Signal-to-noise ratio from 10 ms frame energies (DC removed): the speech level is
    the 95th percentile of the frame energies, the noise level their 5th percentile
    (the margins and the pauses between words), ``snr_db`` the difference in dB (0 for
    silence). The 5th rather than the 10th percentile because in continuous speech a
    tenth of the frames is not always silence (the 10th percentile read as low as
    31 dB on clean speech). Clean speech reads 39-45 dB; with white noise at -35 dBFS
    22 dB, at -25 dBFS 12 dB.
``clipped``
    Fraction of the samples of ``raw`` that lie within 0.1 % of full scale
    (``|x| >= 0.999``) in runs of 3 or more consecutive samples, in the worst channel:
    hard clipping makes flat tops, an unclipped waveform crosses its peak in one or
    two samples. Clean speech reads 0; speech overdriven by 3 dB 0.0011, by 6 dB
    0.0064, by 12 dB 0.033. Also available as :func:`clipping_ratio`.
``hum_score``
    Share of the 20-400 Hz energy that sits in narrow lines (+-1 Hz) at the mains
    frequency and its harmonics, 0..1. The audio is reduced to a 1 kHz rate,
    Hann-windowed and transformed in one FFT. For 50 Hz and for 60 Hz and their
    harmonics k = 1..4, a line's energy is the energy in its band minus the local
    floor (the median power within +-10 Hz around it, outside the band, divided by
    ln 2: the mean of an exponentially distributed periodogram). A harmonic counts at
    most as much as the fundamental: voiced speech at a steady 100 Hz (or 120 Hz)
    pitch has lines at 100 and 200 Hz but nothing at 50 Hz, so it does not read as
    hum. The stronger of the two families is the score. Clean speech reads at most
    0.002 (voices of median pitch 70-125 Hz), 100 and 120 Hz pulse trains 0.0; speech with a
    50 or 60 Hz hum at -26 dBFS RMS 0.52, at -26 dBFS peak 0.36, at -36 dBFS RMS
    0.10; a buzz (harmonics 1, 3, 5) at -30 dBFS RMS 0.30. Hum on a harmonic without
    its fundamental (a 100 Hz rectifier buzz with no 50 Hz) is not counted.
``plosive_ratio``
    Fraction of 10 ms frames holding a low-frequency burst, like a "p" popping the
    microphone. The energy below 150 Hz (4th-order Butterworth low pass, zero phase,
    at a 1 kHz rate) of a frame must be (1) at least 10 dB above the median of the
    frames within +-150 ms, (2) no more than 20 dB below the segment's speech level
    (95th percentile of the full-band frame energies) and (3) at least half the
    frame's full-band energy. Voiced onsets are steps, not spikes, and fail (1); a low
    voice's fundamental shares its frames with higher harmonics and fails (3). Clean
    speech reads 0; three 30 ms pops in 7 s 0.018; a 20-40 ms thump every 0.5 s
    0.02-0.06 (the ratio can never exceed the share of time the bursts take).
``lufs``, ``true_peak_db``
    From :mod:`core.loudness`: BS.1770 integrated loudness (``None`` when the segment
    is shorter than 0.4 s or silent) and the 4x oversampled true peak in dBTP
    (floored at -120).

Flags
-----
:func:`flags_for` names each failed check, in this order: ``too_quiet``
(``rms_db < min_rms_db``), ``noisy`` (``snr_db < min_snr_db``), ``clipped``
(``clipped > max_clipped_ratio``), ``hum`` (``hum_score > max_hum_score``),
``plosives`` (``plosive_ratio > max_plosive_ratio``), ``too_short`` / ``too_long``
(duration outside ``min_segment_sec .. max_segment_sec``), ``loudness_unmeasured``
(``lufs`` is ``None``) and ``true_peak`` (``true_peak_db > true_peak_dbtp + 0.1``).
A metric that was not measured (``None``) raises no flag, except the loudness.

With the numbers above, ``max_hum_score = 0.1`` (hum within ~16 dB of the speech
level) and ``max_plosive_ratio = 0.01`` (about one pop every 3 s) separate the clean
and the defective cases with a wide margin; the other defaults (-40 dBFS, 20 dB,
0.001) fit as they are.
"""

from __future__ import annotations

import functools
import math
from typing import Final

import numpy as np
import numpy.typing as npt
import soxr

from core.loudness import Conditioned, integrated_lufs, true_peak_db
from core.records import QC
from core.settings import AudioTargets, QCThresholds

__all__ = [
    "DB_FLOOR",
    "FLAG_NAMES",
    "clipping_ratio",
    "flags_for",
    "hum_score",
    "measure",
    "plosive_ratio",
    "rms_db",
    "snr_db",
]

FloatArray = npt.NDArray[np.float32]
Float64Array = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

DB_FLOOR: Final = -120.0
"""Levels in a :class:`~core.records.QC` never read below this (digital silence)."""

FLAG_NAMES: Final[tuple[str, ...]] = (
    "too_quiet",
    "noisy",
    "clipped",
    "hum",
    "plosives",
    "too_short",
    "too_long",
    "loudness_unmeasured",
    "true_peak",
)
"""Every flag :func:`flags_for` can raise, in the order it reports them."""

_TRUE_PEAK_TOLERANCE_DB: Final = 0.1
_ENERGY_FLOOR: Final = 1e-12  # -120 dB

# snr_db
_FRAMES_PER_SEC: Final = 100  # 10 ms frames
_SPEECH_PERCENTILE: Final = 95.0
_NOISE_PERCENTILE: Final = 5.0

# clipping
_CLIP_TOLERANCE: Final = 1e-3
_CLIP_MIN_RUN: Final = 3

# the low band shared by hum and plosives
_LOW_RATE: Final = 1000

# hum
_MAINS_HZ: Final = (50.0, 60.0)
_HUM_HARMONICS: Final = 4
_HUM_LINE_HZ: Final = 1.0
_HUM_RING_HZ: Final = 10.0
_HUM_REF_BAND: Final = (20.0, 400.0)

# plosives
_PLOSIVE_CUTOFF_HZ: Final = 150.0
_PLOSIVE_JUMP_DB: Final = 10.0
_PLOSIVE_LEVEL_DB: Final = -20.0
_PLOSIVE_SHARE: Final = 0.5
_PLOSIVE_HALF_WINDOW: Final = 15  # frames either side: +-150 ms


def measure(
    audio: npt.ArrayLike | Conditioned,
    sr: int,
    *,
    raw: npt.ArrayLike | None = None,
) -> QC:
    """Measure one segment; see the module docstring for each metric.

    ``audio`` is the segment as stored, or the :class:`~core.loudness.Conditioned`
    that made it (its ``lufs`` and ``true_peak_db`` are then reused). ``raw`` is the
    same cut before gain, at any rate and as ``(n,)`` or ``(n, channels)``: ``rms_db``
    and ``clipped`` are measured on it. ``similarity`` is left ``None``.
    """
    if isinstance(audio, Conditioned):
        x = _mono32(audio.audio)
        lufs = audio.lufs
        peak_db = audio.true_peak_db
    else:
        x = _mono32(audio)
        lufs = integrated_lufs(x, sr)
        peak_db = true_peak_db(x, sr)
    before = x if raw is None else _channels32(raw)
    frames = _frame_energies(x, sr)
    low = _low_band(x, sr)
    return QC(
        rms_db=rms_db(before),
        snr_db=_snr_from_frames(frames),
        clipped=clipping_ratio(before),
        hum_score=_hum_from_low(low),
        plosive_ratio=_plosives(frames, low),
        lufs=lufs,
        true_peak_db=max(DB_FLOOR, peak_db),
    )


def flags_for(
    qc: QC, t: QCThresholds, duration_sec: float, targets: AudioTargets
) -> tuple[str, ...]:
    """The names (see :data:`FLAG_NAMES`) of the checks ``qc`` fails, in a stable order."""
    failed = {
        "too_quiet": qc.rms_db is not None and qc.rms_db < t.min_rms_db,
        "noisy": qc.snr_db is not None and qc.snr_db < t.min_snr_db,
        "clipped": qc.clipped is not None and qc.clipped > t.max_clipped_ratio,
        "hum": qc.hum_score is not None and qc.hum_score > t.max_hum_score,
        "plosives": qc.plosive_ratio is not None and qc.plosive_ratio > t.max_plosive_ratio,
        "too_short": duration_sec < targets.min_segment_sec,
        "too_long": duration_sec > targets.max_segment_sec,
        "loudness_unmeasured": qc.lufs is None,
        "true_peak": qc.true_peak_db is not None
        and qc.true_peak_db > targets.true_peak_dbtp + _TRUE_PEAK_TOLERANCE_DB,
    }
    return tuple(name for name in FLAG_NAMES if failed[name])


def rms_db(audio: npt.ArrayLike) -> float:
    """RMS level in dBFS, floored at :data:`DB_FLOOR`.

    ``audio`` is mono ``(n,)`` or ``(n, channels)``; for several channels it is the
    mean power of all their samples.
    """
    x = _channels32(audio)
    if x.size == 0:
        return DB_FLOOR
    flat = x.reshape(-1)
    return _energy_db(float(np.einsum("i,i->", flat, flat, dtype=np.float64)) / flat.size)


def snr_db(audio: npt.ArrayLike, sr: int) -> float:
    """Speech level (95th percentile) over noise level (5th) of 10 ms frame energies, dB."""
    return _snr_from_frames(_frame_energies(_mono32(audio), sr))


def clipping_ratio(
    raw: npt.ArrayLike,
    *,
    full_scale: float = 1.0,
    tolerance: float = _CLIP_TOLERANCE,
    min_run: int = _CLIP_MIN_RUN,
) -> float:
    """Fraction of samples within ``tolerance`` of full scale in runs of ``min_run`` or more.

    ``raw`` is mono ``(n,)`` or ``(n, channels)`` (the worst channel counts). Measure
    the cut before any gain, downmix or resampling: resampling a clipped recording
    from 44.1 kHz to 24 kHz turns its flat tops into ripples (a 3 dB overdrive then
    reads 0.0002 instead of 0.0012) and averaging a clipped channel with a clean one
    hides them altogether.
    """
    x = _channels32(raw)
    n = int(x.shape[0])
    if n == 0:
        return 0.0
    mask = clipped_mask(x, full_scale=full_scale, tolerance=tolerance, min_run=min_run)
    return float(mask.sum(axis=0).max()) / float(n)


def clipped_mask(
    raw: npt.ArrayLike,
    *,
    full_scale: float = 1.0,
    tolerance: float = _CLIP_TOLERANCE,
    min_run: int = _CLIP_MIN_RUN,
) -> npt.NDArray[np.bool_]:
    """``(n, channels)``: True where a sample is part of a clipped run (see ``clipping_ratio``)."""
    x = _channels32(raw)
    top = full_scale * (1.0 - tolerance)
    at_top = (x >= top) | (x <= -top)
    mask = np.zeros(x.shape, dtype=bool)
    for c in np.flatnonzero(at_top.any(axis=0)):
        edges = np.diff(np.concatenate(([0], at_top[:, c].view(np.int8), [0])))
        starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
        keep = (ends - starts) >= min_run
        marks = np.zeros(len(x) + 1, dtype=np.int32)
        np.add.at(marks, starts[keep], 1)
        np.add.at(marks, ends[keep], -1)
        mask[:, c] = np.cumsum(marks[:-1]) > 0
    return mask


def hum_score(audio: npt.ArrayLike, sr: int) -> float:
    """Share of the 20-400 Hz energy in 50 or 60 Hz mains lines (0..1)."""
    return _hum_from_low(_low_band(_mono32(audio), sr))


def plosive_ratio(audio: npt.ArrayLike, sr: int) -> float:
    """Fraction of 10 ms frames with a low-frequency burst (0..1)."""
    x = _mono32(audio)
    return _plosives(_frame_energies(x, sr), _low_band(x, sr))


# --- internals --------------------------------------------------------------------


def _mono32(audio: npt.ArrayLike) -> FloatArray:
    x = np.ascontiguousarray(audio, dtype=np.float32)
    if x.ndim != 1:
        raise ValueError(f"expected mono audio of shape (n,), got shape {x.shape}")
    return x


def _channels32(audio: npt.ArrayLike) -> FloatArray:
    """``audio`` as float32, shape ``(n, channels)``: mono ``(n,)`` becomes ``(n, 1)``."""
    x = np.asarray(audio, dtype=np.float32)
    if x.ndim == 1:
        return x.reshape(-1, 1)
    if x.ndim != 2:
        raise ValueError(f"expected audio of shape (n,) or (n, channels), got {x.shape}")
    return x


def _energy_db(energy: float) -> float:
    return 10.0 * math.log10(max(energy, _ENERGY_FLOOR))


@functools.lru_cache(maxsize=64)
def _frame_edges(n: int, sr: int) -> IntArray:
    """Edges of consecutive 10 ms frames of ``n`` samples (at least one frame)."""
    num = max(1, n * _FRAMES_PER_SEC // sr)
    edges = np.minimum(np.arange(num + 1) * sr // _FRAMES_PER_SEC, n)
    edges[-1] = max(int(edges[-1]), min(n, 1))
    edges.setflags(write=False)
    return edges


def _frame_energies(x: FloatArray, sr: int) -> Float64Array:
    """Mean square of consecutive 10 ms frames of ``x`` with its DC removed."""
    if x.size == 0:
        return np.full(1, _ENERGY_FLOOR)
    edges = _frame_edges(x.size, sr)
    used = x[: edges[-1]]
    lengths = np.maximum(np.diff(edges), 1)
    squares = np.add.reduceat(np.square(used), edges[:-1], dtype=np.float64) / lengths
    sums = np.add.reduceat(used, edges[:-1], dtype=np.float64) / lengths
    dc = float(np.mean(x, dtype=np.float64))
    # mean((x - dc)**2) over a frame, from its mean square and its mean.
    energies: Float64Array = squares - 2.0 * dc * sums + dc * dc
    return np.maximum(energies, _ENERGY_FLOOR)


def _snr_from_frames(energies: Float64Array) -> float:
    speech, noise = np.percentile(energies, [_SPEECH_PERCENTILE, _NOISE_PERCENTILE])
    return max(0.0, 10.0 * math.log10(float(speech) / float(noise)))


def _low_band(x: FloatArray, sr: int) -> tuple[Float64Array, int]:
    """``x`` at a 1 kHz rate (soxr "HQ", keeping what is below ~450 Hz), and that rate."""
    if x.size == 0 or sr <= _LOW_RATE:
        return x.astype(np.float64), sr
    y = np.asarray(soxr.resample(x, sr, _LOW_RATE, quality="HQ"), dtype=np.float64)
    return y, _LOW_RATE


def _hum_from_low(low: tuple[Float64Array, int]) -> float:
    import scipy.fft  # type: ignore[import-untyped, unused-ignore]

    y, rate = low
    n = y.size
    duration = n / rate
    if duration <= 0.0:
        return 0.0
    # Lines are as wide as the window's main lobe (+-2 bins of 1/duration Hz).
    line = max(_HUM_LINE_HZ, 4.0 / duration)
    nfft = scipy.fft.next_fast_len(2 * n, real=True)
    power = np.abs(scipy.fft.rfft(y * np.hanning(n), nfft)) ** 2
    bin_hz = rate / nfft
    lo, hi = (round(f / bin_hz) for f in _HUM_REF_BAND)
    reference = float(power[lo : hi + 1].sum())
    if not reference > 0.0:
        return 0.0
    best = 0.0
    for mains in _MAINS_HZ:
        ring = min(max(_HUM_RING_HZ, 10.0 * line), 0.45 * mains)
        if ring <= 1.5 * line:
            return 0.0  # too short to tell a line from its surroundings
        lines = [
            _line_energy(power, k * mains / bin_hz, line / bin_hz, ring / bin_hz)
            for k in range(1, _HUM_HARMONICS + 1)
        ]
        fundamental = lines[0]
        family = fundamental + sum(min(e, fundamental) for e in lines[1:])
        best = max(best, family)
    return min(1.0, best / reference)


def _line_energy(power: Float64Array, centre: float, half: float, ring: float) -> float:
    """Energy in ``centre +- half`` bins above the local floor of ``centre +- ring``."""
    lo = max(0, math.floor(centre - ring))
    hi = min(power.size, math.ceil(centre + ring) + 1)
    if hi - lo < 3:
        return 0.0
    distance = np.abs(np.arange(lo, hi) - centre)
    near = power[lo:hi]
    in_line = distance <= half
    around = near[~in_line]
    if not in_line.any() or around.size == 0:
        return 0.0
    floor = float(np.median(around)) / math.log(2.0)
    return max(0.0, float(near[in_line].sum()) - floor * int(in_line.sum()))


@functools.lru_cache(maxsize=8)
def _plosive_filter(rate: int) -> Float64Array:
    from scipy import signal  # type: ignore[import-untyped, unused-ignore]

    sos: Float64Array = signal.butter(4, _PLOSIVE_CUTOFF_HZ, fs=rate, output="sos")
    return sos


def _plosives(full_energy: Float64Array, low: tuple[Float64Array, int]) -> float:
    from scipy import ndimage, signal  # type: ignore[import-untyped, unused-ignore]

    y, rate = low
    if y.size < 16 or rate <= 2 * _PLOSIVE_CUTOFF_HZ:
        return 0.0
    lf = signal.sosfiltfilt(_plosive_filter(rate), y, padlen=min(y.size - 1, 60))
    lf_energy = _frame_energies(np.asarray(lf, dtype=np.float32), rate)
    num = min(lf_energy.size, full_energy.size)
    lf_energy, full_energy = lf_energy[:num], full_energy[:num]
    neighbourhood = ndimage.median_filter(
        lf_energy, size=2 * _PLOSIVE_HALF_WINDOW + 1, mode="nearest"
    )
    speech_level = float(np.percentile(full_energy, _SPEECH_PERCENTILE))
    burst = (
        (lf_energy >= 10.0 ** (_PLOSIVE_JUMP_DB / 10.0) * neighbourhood)
        & (lf_energy >= 10.0 ** (_PLOSIVE_LEVEL_DB / 10.0) * speech_level)
        & (lf_energy >= _PLOSIVE_SHARE * full_energy)
        & (lf_energy > _ENERGY_FLOOR)
    )
    return float(burst.mean())


class ClipCounter:
    """Counts clipped samples of a long recording streamed block by block, per channel,
    at its native rate (before downmix and resampling blur the flat tops), so that the
    clipped ratio of any time span can be read afterwards. Counts are kept per ``hop``
    (10 ms) and so use a few MB for hours of audio. A clipped run split across two blocks
    is judged by each part's length (30 s blocks make that negligible).
    """

    def __init__(self, sample_rate: int, channels: int, hop_sec: float = 0.01) -> None:
        self.sample_rate = sample_rate
        self.channels = channels
        self.hop = max(1, round(sample_rate * hop_sec))
        self._rest = np.zeros((0, channels), dtype=bool)
        self._chunks: list[npt.NDArray[np.int32]] = []
        self._cumulative: npt.NDArray[np.int64] | None = None

    def feed(self, block: npt.ArrayLike) -> None:
        x = _channels32(block)
        top = 1.0 - _CLIP_TOLERANCE
        if len(x) and x.max() < top and x.min() > -top:  # the usual case: nothing near full scale
            mask = np.concatenate([self._rest, np.zeros(x.shape, dtype=bool)])
        else:
            mask = np.concatenate([self._rest, clipped_mask(x)])
        whole = len(mask) // self.hop * self.hop
        counts = mask[:whole].reshape(-1, self.hop, self.channels).sum(axis=1, dtype=np.int32)
        self._chunks.append(counts)
        self._rest = mask[whole:]

    def finish(self) -> None:
        self._chunks.append(self._rest.sum(axis=0, dtype=np.int32)[None, :])
        counts = np.concatenate(self._chunks).astype(np.int64)
        self._cumulative = np.vstack([np.zeros((1, self.channels), np.int64), counts.cumsum(0)])
        self._chunks = []

    def ratio(self, start_sec: float, end_sec: float) -> float:
        """Share of clipped samples in ``[start_sec, end_sec)`` for the worst channel."""
        if self._cumulative is None:
            raise RuntimeError("ClipCounter.ratio() before finish()")
        last = len(self._cumulative) - 1
        a = min(last, max(0, int(start_sec * self.sample_rate) // self.hop))
        b = min(last, max(a + 1, -(-int(end_sec * self.sample_rate) // self.hop)))
        clipped = (self._cumulative[b] - self._cumulative[a]).max()
        return float(clipped) / float((b - a) * self.hop)
