"""Quality measurements of one speech segment, and the QC flags they raise.

Pure numpy/scipy functions on mono audio at any sample rate; no I/O, one pass per metric.
``rms_db`` and ``clipped`` describe the recording as captured (measured on ``raw``, the cut
before gain, ideally at its native rate: downmix and resampling hide flat tops); the other
metrics are measured on the conditioned segment, whose loudness and true peak are reused from
:func:`core.audio.conditioning.condition`. Metrics are chosen to need no pauses (WADA-SNR)
and to tell defects from speech (a harmonic counts no more than its fundamental, a plosive is
a spike, not an onset). This module owns the flag names and labels; a metric that was not
measured raises no flag, except the loudness.

Details: docs/DATASET.md, "How each metric is measured"; costs in docs/PERFORMANCE.md."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt
import soxr

from core.audio.conditioning import Conditioned
from core.audio.meter import integrated_lufs, mono32, true_peak_db
from core.audio.types import Float64Array, FloatArray, IntArray
from core.records import QC
from core.settings import AudioTargets, QCThresholds

__all__ = [
    "DB_FLOOR",
    "FLAG_NAMES",
    "METRIC_ROWS",
    "NO_TEXT_FLAG",
    "OTHER_SPEAKER_FLAG",
    "ClipCounter",
    "MetricRow",
    "bandwidth_hz",
    "clipped_mask",
    "clipping_ratio",
    "flags_for",
    "hum_score",
    "measure",
    "plosive_ratio",
    "rms_db",
    "snr_db",
]


DB_FLOOR: Final = -120.0
"""Levels in a :class:`~core.records.QC` never read below this (digital silence)."""

FLAG_NAMES: Final[tuple[str, ...]] = (
    "too_quiet",
    "noisy",
    "clipped",
    "hum",
    "plosives",
    "narrowband",
    "too_short",
    "too_long",
    "loudness_unmeasured",
    "true_peak",
)
"""Every flag :func:`flags_for` can raise, in the order it reports them."""

NO_TEXT_FLAG: Final = "no_text"
"""Raised by ingest on a segment without a transcript (none given, or ASR heard nothing)."""
OTHER_SPEAKER_FLAG: Final = "other_speaker"
"""Raised by ingest on a segment whose voice is far from its speaker's anchors."""


@dataclass(frozen=True)
class MetricRow:
    """One measurement shown beside a segment: where it is read, how it is labelled and
    printed, and the flag it raises."""

    field: str
    """The field of the segment's :class:`~core.records.QC`."""
    label: str
    unit: str
    digits: int
    """Decimals shown: enough to tell a value from its threshold."""
    flag: str

    def format(self, value: float | None) -> str:
        """``value`` with its unit (``"26.0 dB"``, ``"0.82 cos"``); ``"–"`` when not measured."""
        if value is None:
            return "–"
        return f"{value:.{self.digits}f} {self.unit}".rstrip()


METRIC_ROWS: Final[tuple[MetricRow, ...]] = (
    MetricRow("rms_db", "RMS", "dBFS", 1, "too_quiet"),
    MetricRow("snr_db", "SNR", "dB", 1, "noisy"),
    MetricRow("clipped", "clipped", "", 4, "clipped"),
    MetricRow("hum_score", "hum", "", 4, "hum"),
    MetricRow("plosive_ratio", "plosives", "", 4, "plosives"),
    MetricRow("lufs", "loudness", "LUFS", 1, "loudness_unmeasured"),
    MetricRow("true_peak_db", "true peak", "dBTP", 1, "true_peak"),
    MetricRow("similarity", "speaker", "cos", 2, OTHER_SPEAKER_FLAG),
)
"""The measurements shown beside a segment, in the order they are shown (the speaker's
cosine to two decimals: its threshold, ``min_speaker_similarity``, has two)."""

_TRUE_PEAK_TOLERANCE_DB: Final = 0.1
_ENERGY_FLOOR: Final = 1e-12  # -120 dB

# frame energies (plosives)
_FRAMES_PER_SEC: Final = 100  # 10 ms frames
_SPEECH_PERCENTILE: Final = 95.0

# clipping
_CLIP_TOLERANCE: Final = 5e-5  # relative to the clip level (0.0004 dB)
_CLIP_MIN_RUN: Final = 3
_CLIP_MIN_LEVEL: Final = 0.01  # -40 dBFS: quieter extremes are never called clipping

# snr_db (WADA-SNR)
_WADA_SHAPE: Final = 0.4  # gamma shape of clean speech amplitudes (Kim & Stern 2008)
_WADA_SNRS: Final = (-20.0, 100.0)
_WADA_EPS: Final = 1e-10
_WADA_NOT_SPEECH: Final = 0.05  # G this far below pure noise's: not speech + noise

# bandwidth
_BANDWIDTH_RANGE_DB: Final = 80.0
_BANDWIDTH_BAND_HZ: Final = 250.0
_BANDWIDTH_MIN_HZ: Final = 50.0
_BANDWIDTH_FRAMES: Final = 64

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
_PLOSIVE_MIN_FRAMES: Final = 4  # every burst counts at least 40 ms


def measure(
    audio: npt.ArrayLike | Conditioned,
    sr: int,
    *,
    raw: npt.ArrayLike | None = None,
) -> QC:
    """Measure one segment; see the module docstring for each metric.

    ``audio`` is the segment as stored, or the :class:`~core.audio.conditioning.Conditioned`
    that made it (its ``lufs`` and ``true_peak_db`` are then reused). ``raw`` is the
    same cut before gain, at any rate and as ``(n,)`` or ``(n, channels)``: ``rms_db``
    and ``clipped`` are measured on it. ``similarity`` is left ``None``.
    """
    if isinstance(audio, Conditioned):
        x = mono32(audio.audio)
        lufs = audio.lufs
        peak_db = audio.true_peak_db
    else:
        x = mono32(audio)
        lufs = integrated_lufs(x, sr)
        peak_db = true_peak_db(x, sr)
    before = x if raw is None else _channels32(raw)
    frames = _frame_energies(x, sr)
    low = _low_band(x, sr)
    return QC(
        rms_db=rms_db(before),
        snr_db=snr_db(x, sr),
        clipped=clipping_ratio(before),
        hum_score=_hum_from_low(low),
        plosive_ratio=_plosives(frames, low),
        lufs=lufs,
        true_peak_db=max(DB_FLOOR, peak_db),
    )


def flags_for(
    qc: QC,
    t: QCThresholds,
    duration_sec: float,
    targets: AudioTargets,
    *,
    bandwidth: float | None = None,
) -> tuple[str, ...]:
    """The names (see :data:`FLAG_NAMES`) of the checks ``qc`` fails, in a stable order.

    ``bandwidth`` is :func:`bandwidth_hz` of the segment (it has no field in
    :class:`~core.records.QC`); ``None`` raises no ``narrowband`` flag.
    """
    failed = {
        "too_quiet": qc.rms_db is not None and qc.rms_db < t.min_rms_db,
        "noisy": qc.snr_db is not None and qc.snr_db < t.min_snr_db,
        "clipped": qc.clipped is not None and qc.clipped > t.max_clipped_ratio,
        "hum": qc.hum_score is not None and qc.hum_score > t.max_hum_score,
        "plosives": qc.plosive_ratio is not None and qc.plosive_ratio > t.max_plosive_ratio,
        "narrowband": bandwidth is not None and bandwidth < t.min_bandwidth_hz,
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


def snr_db(audio: npt.ArrayLike, sr: int) -> float | None:
    """WADA-SNR (Kim & Stern 2008) of mono ``audio`` in dB, in -20..100, or ``None``.

    Speech amplitudes are modelled as gamma-distributed (shape 0.4) and the noise as
    Gaussian; the statistic ``G = log(mean|x|) - mean(log|x|)`` of the segment is looked
    up in the table of its expected value against the SNR (:func:`_wada_table`). Needs
    no pauses: continuous speech reads as clean. ``None`` (not measured) when ``G`` lies
    well below that of Gaussian noise alone, so the segment is neither speech nor noise
    (a steady tone, a square wave, DC, digital silence). ``sr`` is unused (the estimate
    does not depend on the rate) and kept for symmetry with the other metrics.
    """
    del sr
    x = mono32(audio)
    if x.size == 0:
        return None
    # One float32 temporary, worked on in place; sums in float64.
    magnitude = np.abs(x - np.float32(np.mean(x, dtype=np.float64)))
    peak = float(magnitude.max())
    if not peak > 0.0:
        return None
    np.divide(magnitude, np.float32(peak), out=magnitude)
    np.maximum(magnitude, np.float32(_WADA_EPS), out=magnitude)
    mean_magnitude = float(np.mean(magnitude, dtype=np.float64))
    np.log(magnitude, out=magnitude)
    g = math.log(mean_magnitude) - float(np.mean(magnitude, dtype=np.float64))
    snrs, table = _wada_table()
    if g < float(table[0]) - _WADA_NOT_SPEECH:
        return None
    return float(np.interp(g, table, snrs))


@functools.lru_cache(maxsize=1)
def _wada_table() -> tuple[Float64Array, Float64Array]:
    """SNRs (dB, 1 dB apart) and the expected ``G`` of gamma speech plus Gaussian noise.

    Computed once per process, deterministically, by Monte Carlo with common random
    numbers (the same draws at every SNR, so the curve is smooth): 2**17 speech samples
    of gamma-distributed magnitude (shape :data:`_WADA_SHAPE`) with a random sign and
    2**17 Gaussian noise samples, both scaled to unit power; at each SNR the speech is
    scaled and added to the noise. ``G`` rises from ~0.41 (noise alone, ``log(sqrt(2/pi))
    + (euler_gamma + log 2)/2``) towards ``log(0.4) - digamma(0.4) = 1.65`` (clean speech).
    """
    rng = np.random.default_rng(2008)
    n = 1 << 17
    speech = rng.gamma(_WADA_SHAPE, 1.0, n) * rng.choice((-1.0, 1.0), n)
    speech /= math.sqrt(float(np.mean(speech**2)))
    noise = rng.standard_normal(n)
    noise /= math.sqrt(float(np.mean(noise**2)))
    snrs = np.arange(_WADA_SNRS[0], _WADA_SNRS[1] + 0.5, 1.0)
    g = np.empty(snrs.size)
    for k, snr in enumerate(snrs):
        z = np.abs(speech * 10.0 ** (snr / 20.0) + noise)
        z = np.maximum(z / z.max(), _WADA_EPS)
        g[k] = math.log(float(np.mean(z))) - float(np.mean(np.log(z)))
    # Keep it strictly increasing where sampling noise would flatten it (near -20 dB).
    g = np.maximum.accumulate(g) + np.arange(snrs.size) * 1e-9
    snrs.setflags(write=False)
    g.setflags(write=False)
    return snrs, g


def bandwidth_hz(audio: npt.ArrayLike, sr: int) -> float | None:
    """Effective bandwidth in Hz: the top of the highest 250 Hz band whose mean power
    lies within 80 dB of the loudest band's (bands above 50 Hz; the averaged spectrum of
    non-overlapping Hann-windowed frames of about 40 ms).

    Measured on the spectrum, not taken from the sample rate: a recording made at
    8 kHz (telephone band) and resampled to 24 kHz has nothing above 4 kHz but the
    resampler's stop band, 100 dB or more below its speech, and reads ~3.75 kHz; a
    wideband recording's top bands hold at least its noise floor (room, tape, a
    microphone's hiss), at most ~65 dB below the speech. ``audio`` is ``(n,)`` or
    ``(n, channels)`` (channels are averaged). ``None`` for silence or under 50 ms.
    """
    x = _channels32(audio)
    mono = x[:, 0] if x.shape[1] == 1 else x.mean(axis=1, dtype=np.float32)
    nperseg = 1 << max(6, round(math.log2(sr / 25.0)))
    if mono.size < max(nperseg, sr // 20):
        return None
    # Averaged periodograms of non-overlapping Hann-windowed frames, 64 frames at a time
    # (a few hundred kB, whatever the length).
    count = mono.size // nperseg
    window = np.hanning(nperseg).astype(np.float32)
    dc = np.float32(np.mean(mono, dtype=np.float64))
    power = np.zeros(nperseg // 2 + 1)
    for first in range(0, count, _BANDWIDTH_FRAMES):
        frames = mono[first * nperseg : min(count, first + _BANDWIDTH_FRAMES) * nperseg]
        spectrum = np.fft.rfft((frames.reshape(-1, nperseg) - dc) * window, axis=1)
        power += np.einsum("ij,ij->j", spectrum.real, spectrum.real, dtype=np.float64)
        power += np.einsum("ij,ij->j", spectrum.imag, spectrum.imag, dtype=np.float64)
    freqs = np.fft.rfftfreq(nperseg, 1.0 / sr)
    width = max(_BANDWIDTH_BAND_HZ, 2.0 * float(freqs[1]))
    bands = np.arange(_BANDWIDTH_MIN_HZ, sr / 2.0, width)
    index = np.searchsorted(bands, freqs, side="right") - 1
    inside = (freqs >= _BANDWIDTH_MIN_HZ) & (index >= 0)
    sums = np.bincount(index[inside], weights=power[inside], minlength=bands.size)
    counts = np.bincount(index[inside], minlength=bands.size)
    level = np.where(counts > 0, sums / np.maximum(counts, 1), 0.0)
    loudest = float(level.max()) if level.size else 0.0
    if not loudest > 0.0:
        return None
    within = np.flatnonzero(level >= loudest * 10.0 ** (-_BANDWIDTH_RANGE_DB / 10.0))
    return float(min(sr / 2.0, bands[within[-1]] + width))


def clipping_ratio(
    raw: npt.ArrayLike,
    *,
    level: float | None = None,
    tolerance: float = _CLIP_TOLERANCE,
    min_run: int = _CLIP_MIN_RUN,
) -> float:
    """Fraction of samples in flat runs of ``min_run`` or more at the signal's extremes.

    A sample counts when it lies within ``tolerance`` (relative) of its channel's
    maximum, or of its minimum, in a run of at least ``min_run`` consecutive such
    samples: hard clipping makes flat tops at whatever level it happened (a converter's
    full scale, a plug-in's ceiling at -6 dBFS, or full scale scaled down afterwards),
    while an unclipped waveform passes its peak in one or two samples. ``level`` fixes
    the clip level instead (both polarities). Extremes under -40 dBFS are never called
    clipping. ``raw`` is mono ``(n,)`` or ``(n, channels)`` (the worst channel counts).
    Measure the cut before any gain, downmix or resampling: resampling turns flat tops
    into ripples and averaging a clipped channel with a clean one hides them.
    """
    x = _channels32(raw)
    n = int(x.shape[0])
    if n == 0:
        return 0.0
    mask = clipped_mask(x, level=level, tolerance=tolerance, min_run=min_run)
    return float(mask.sum(axis=0).max()) / float(n)


def clipped_mask(
    raw: npt.ArrayLike,
    *,
    level: float | None = None,
    tolerance: float = _CLIP_TOLERANCE,
    min_run: int = _CLIP_MIN_RUN,
) -> npt.NDArray[np.bool_]:
    """``(n, channels)``: True where a sample is part of a clipped run (see ``clipping_ratio``)."""
    x = _channels32(raw)
    mask = np.zeros(x.shape, dtype=bool)
    if x.shape[0] == 0:
        return mask
    for c in range(x.shape[1]):
        column = x[:, c]
        for sign in (1.0, -1.0):
            if level is not None:
                top = float(level)
            else:
                top = float(column.max()) if sign > 0 else -float(column.min())
            if top < _CLIP_MIN_LEVEL:
                continue
            # -column >= t exactly where column <= -t (float32 negation is exact).
            bound = top * (1.0 - tolerance)
            near = np.flatnonzero(column >= bound if sign > 0 else column <= -bound)
            if near.size == 0 or near.size < min_run:
                continue  # too few samples at the extreme to make a run (the usual case)
            # Runs of consecutive samples among the few ``near`` ones.
            run = np.concatenate(([0], np.cumsum(np.diff(near) > 1)))
            keep = np.bincount(run) >= min_run
            mask[near[keep[run]], c] = True
    return mask


def _runs(flags: npt.NDArray[np.bool_]) -> tuple[IntArray, IntArray]:
    """Starts and ends (exclusive) of the runs of True in ``flags``."""
    edges = np.diff(np.concatenate(([0], flags.view(np.int8), [0])))
    return np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)


def hum_score(audio: npt.ArrayLike, sr: int) -> float:
    """Share of the 20-400 Hz energy in 50 or 60 Hz mains lines (0..1)."""
    return _hum_from_low(_low_band(mono32(audio), sr))


def plosive_ratio(audio: npt.ArrayLike, sr: int) -> float:
    """Fraction of 10 ms frames with a low-frequency burst (0..1)."""
    x = mono32(audio)
    return _plosives(_frame_energies(x, sr), _low_band(x, sr))


# --- internals --------------------------------------------------------------------


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
    # A burst counts at least _PLOSIVE_MIN_FRAMES frames, so that a 20 ms pop (two
    # frames) weighs as much as the 40 ms one it sounds like.
    starts, ends = _runs(burst)
    counted = int(np.maximum(ends - starts, _PLOSIVE_MIN_FRAMES).sum())
    return min(1.0, counted / int(burst.size))


class ClipCounter:
    """Counts clipped samples of a long recording streamed block by block, per channel,
    at its native rate (before downmix and resampling blur the flat tops), so that the
    clipped share of any time span can be read afterwards.

    Clipped means what :func:`clipping_ratio` means, at the extremes of the whole
    recording: a run of ``min_run`` or more samples within ``tolerance`` of the
    recording's maximum (or minimum), per channel. While streaming, the extremes so
    far are known; a sample below them can never be at the final extreme, so only the
    runs at the running extreme are kept (start, length and lowest value; a few for a
    clean recording, one per flat top for a clipped one), and :meth:`finish` keeps
    those at the final extreme. Runs continue across block boundaries.
    """

    def __init__(
        self,
        sample_rate: int,
        channels: int,
        *,
        tolerance: float = _CLIP_TOLERANCE,
        min_run: int = _CLIP_MIN_RUN,
    ) -> None:
        self.sample_rate = sample_rate
        self.channels = channels
        self.tolerance = tolerance
        self.min_run = min_run
        self._tracks = [_RunTrack() for _ in range(2 * channels)]  # (+, -) per channel
        self._samples = 0
        self._starts: list[IntArray] | None = None
        self._cumulative: list[IntArray] = []

    def feed(self, block: npt.ArrayLike) -> None:
        if self._starts is not None:
            raise RuntimeError("ClipCounter.feed() after finish()")
        x = _channels32(block)
        if x.shape[1] != self.channels:
            raise ValueError(f"expected {self.channels} channels, got {x.shape[1]}")
        if x.shape[0] == 0:
            return
        for c in range(self.channels):
            column = x[:, c]
            for k, sign in ((0, 1.0), (1, -1.0)):
                track = self._tracks[2 * c + k]
                track.feed(column, sign, self._samples, self.tolerance, self.min_run)
        self._samples += int(x.shape[0])

    def finish(self) -> None:
        self._starts, self._cumulative = [], []
        for c in range(self.channels):
            parts = [
                t.finish(self.tolerance, self.min_run) for t in self._tracks[2 * c : 2 * c + 2]
            ]
            starts = np.concatenate([p[0] for p in parts])
            lengths = np.concatenate([p[1] for p in parts])
            order = np.argsort(starts, kind="stable")
            self._starts.append(starts[order])
            self._cumulative.append(np.concatenate(([0], np.cumsum(lengths[order]))))
        self._tracks = []

    def ratio(self, start_sec: float, end_sec: float) -> float:
        """Share of clipped samples in ``[start_sec, end_sec)`` for the worst channel."""
        if self._starts is None:
            raise RuntimeError("ClipCounter.ratio() before finish()")
        a = min(self._samples, max(0, int(start_sec * self.sample_rate)))
        b = min(self._samples, max(a, math.ceil(end_sec * self.sample_rate)))
        if b <= a:
            return 0.0
        worst = max(
            _clipped_before(starts, cumulative, b) - _clipped_before(starts, cumulative, a)
            for starts, cumulative in zip(self._starts, self._cumulative, strict=True)
        )
        return float(worst) / float(b - a)


def _clipped_before(starts: IntArray, cumulative: IntArray, t: int) -> int:
    """Clipped samples before sample ``t``, from sorted, disjoint runs."""
    k = int(np.searchsorted(starts, t, side="right")) - 1
    if k < 0:
        return 0
    length = int(cumulative[k + 1] - cumulative[k])
    return int(cumulative[k]) + min(length, t - int(starts[k]))


class _RunTrack:
    """Runs at the running maximum of one signed channel, for :class:`ClipCounter`."""

    def __init__(self) -> None:
        self.top = -math.inf
        self.starts: list[IntArray] = []
        self.lengths: list[IntArray] = []
        self.lows: list[Float64Array] = []
        self.open: tuple[int, int, float] | None = None  # start, length, lowest value

    def feed(
        self, column: FloatArray, sign: float, offset: int, tolerance: float, min_run: int
    ) -> None:
        """Runs of ``sign * column`` at the running maximum; no full-size copies but one
        boolean mask (the candidates are few)."""
        self.top = max(self.top, float(column.max() if sign > 0 else -column.min()))
        if self.top < _CLIP_MIN_LEVEL:
            self.open = None
            return
        edge = self.top * (1.0 - tolerance)
        index = np.flatnonzero(column >= edge if sign > 0 else column <= -edge)
        values = sign * column[index].astype(np.float64)
        breaks = np.flatnonzero(np.diff(index) > 1) + 1
        firsts = np.concatenate(([0], breaks)) if index.size else np.zeros(0, np.int64)
        starts = index[firsts]
        ends = index[np.concatenate((breaks, [index.size])) - 1] + 1 if index.size else starts
        lows = np.minimum.reduceat(values, firsts) if index.size else np.zeros(0)
        if self.open is not None:
            o_start, o_len, o_low = self.open
            self.open = None
            if starts.size and starts[0] == 0:
                o_len, o_low = o_len + int(ends[0]), min(o_low, float(lows[0]))
                if ends[0] == column.size:  # the whole block continues it
                    self.open = (o_start, o_len, o_low)
                    return
                starts, ends, lows = starts[1:], ends[1:], lows[1:]
            self._close(np.array([o_start]), np.array([o_len]), np.array([o_low]), min_run)
        if starts.size and ends[-1] == column.size:
            self.open = (offset + int(starts[-1]), int(ends[-1] - starts[-1]), float(lows[-1]))
            starts, ends, lows = starts[:-1], ends[:-1], lows[:-1]
        self._close(offset + starts, ends - starts, lows, min_run)

    def _close(self, starts: IntArray, lengths: IntArray, lows: Float64Array, min_run: int) -> None:
        keep = lengths >= min_run
        if keep.any():
            self.starts.append(starts[keep].astype(np.int64))
            self.lengths.append(lengths[keep].astype(np.int64))
            self.lows.append(lows[keep])

    def finish(self, tolerance: float, min_run: int) -> tuple[IntArray, IntArray]:
        if self.open is not None:
            o_start, o_len, o_low = self.open
            self._close(np.array([o_start]), np.array([o_len]), np.array([o_low]), min_run)
            self.open = None
        if not self.starts or self.top < _CLIP_MIN_LEVEL:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        starts = np.concatenate(self.starts)
        lengths = np.concatenate(self.lengths)
        at_top = np.concatenate(self.lows) >= self.top * (1.0 - tolerance)
        return starts[at_top], lengths[at_top]
