"""Conditioning: a segment's gain to the loudness target under a true-peak ceiling; hum notch.

:func:`condition` applies a static gain to the loudness target; where the true peak then
exceeds the ceiling, the look-ahead limiter (:mod:`core.audio.limiter`) lowers the gain
around the peaks only, and make-up gain brings the loudness back within 0.1 LU. Where both
cannot hold, the ceiling wins; near-silence is not blown up (``max_gain_db``). Mono only
unless ``multichannel=True`` (a linked limiter). :func:`hum_notch` removes mains hum with
zero-phase notches that ring up outside the segment.

Details: docs/AUDIO.md, "Conditioning"; costs in docs/PERFORMANCE.md."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from core.audio.limiter import (
    _AIM,
    _GRID_SLACK,
    _LIMITER_MARGIN_DB,
    _Curve,
    _Envelope,
    _gain_curve,
    _shaped_envelope,
    _unseen_factor,
    _verified,
)
from core.audio.meter import (
    _LONG_SAMPLES,
    _METER_OVERSAMPLE,
    BLOCK_SEC,
    _abs_max,
    _audio32,
    _block_edges,
    _block_energies,
    _db,
    _gated_lufs,
    _k_power,
    _oversampled,
    integrated_lufs,
    mono32,
)
from core.audio.types import Float64Array, FloatArray

__all__ = [
    "MAKEUP_MAX_DB",
    "MAKEUP_TOLERANCE_LU",
    "Conditioned",
    "condition",
    "hum_notch",
]


_MAKEUP_ROUNDS: Final = 8
MAKEUP_MAX_DB: Final = 12.0
"""The most make-up gain a master adds to win back what limiting took (here and the
streamed episode master)."""
MAKEUP_TOLERANCE_LU: Final = 0.1
"""How close to its target a limited master's loudness must come before make-up stops."""


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
    x = _audio32(audio) if multichannel else mono32(audio)
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
            or abs(estimate - goal) > MAKEUP_TOLERANCE_LU  # capped: nothing to gain
            or abs(lufs - target_lufs) <= MAKEUP_TOLERANCE_LU
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
        if estimate is None or abs(estimate - target_lufs) <= MAKEUP_TOLERANCE_LU:
            break
        if round_ == _MAKEUP_ROUNDS - 1:
            break
        slope = 1.0  # loudness rises by at most 1 LU per dB of make-up
        if previous is not None and makeup_db != previous[0]:
            slope = (estimate - previous[1]) / (makeup_db - previous[0])
            slope = min(1.0, max(0.05, slope))
        previous = (makeup_db, estimate)
        wanted = min(MAKEUP_MAX_DB, max(0.0, makeup_db + (target_lufs - estimate) / slope))
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


def _mono64(audio: npt.ArrayLike) -> Float64Array:
    x = np.asarray(audio, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"expected mono audio of shape (n,), got shape {x.shape}")
    return x


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


def _gained(x: FloatArray, gain: float, blocks: Float64Array | None, peak: float) -> Conditioned:
    """The static-gain result: loudness and peak follow from the input's by linearity."""
    return Conditioned(
        audio=x * np.float32(gain),
        lufs=None if blocks is None else _gated_lufs(blocks * (gain * gain)),
        true_peak_db=_db(peak * gain),
        gain_db=_db(gain),
        limited=False,
    )
