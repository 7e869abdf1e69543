"""Plan 5-15 s training utterances: voice activity detection and segment planning.

Pure functions over numbers; no file I/O. The ingest stage streams a recording, feeds a
16 kHz mono copy to :class:`VadStream`, and turns the speech regions (or the sidecar's cues)
into :class:`TimeSpan` s with :func:`plan_adaptive` / :func:`plan_from_vad` or
:func:`plan_from_cues`. Both planners share one dynamic programme (the "merge short regions,
split long ones at their longest pauses" rule, solved exactly instead of greedily); the same
input always gives the same plan. :func:`plan_adaptive` first splits regions too long for one
segment and reports what it did in a :class:`PlanReport`.

Details: docs/DATASET.md, "Segment planning"."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt
import webrtcvad

from core.dataset.subtitles import Cue, tidy_cues

__all__ = [
    "PlanLimits",
    "PlanReport",
    "TimeSpan",
    "VadStream",
    "plan_adaptive",
    "plan_from_cues",
    "plan_from_vad",
    "speech_ratio",
]

VAD_RATES: frozenset[int] = frozenset({8000, 16000, 32000, 48000})
VAD_FRAME_MS: frozenset[int] = frozenset({10, 20, 30})

_OUT_OF_RANGE = 100.0
_PREFERRED_PAUSE = 0.5
_NOT_SENTENCE_END = 2.0
_EPS = 1e-6
# adaptive planning
_STRICT_MODE = 3
_ENERGY_FRAME_SEC = 0.01
_FLOOR_PERCENTILE = 10.0
_GATE_DB = 10.0  # quiet: within this of the recording's noise floor
_MIN_GATE_PAUSE_SEC = 0.08
_MIN_PIECE_SEC = 0.15
_CUT_SMOOTH_FRAMES = 5  # the quietest point is the quietest 50 ms
_CUT_GAP_SEC = 0.01  # a forced cut leaves one frame between the two pieces
_FLOOR_CHUNK_SEC = 30.0
_SENTENCE_END = re.compile(r"(?:[.!?…]|\.\.\.)[\"'”’»)\]]*$")


@dataclass(frozen=True)
class TimeSpan:
    """A stretch of a recording in seconds, with its text when known."""

    start_sec: float
    end_sec: float
    text: str = ""

    @property
    def duration(self) -> float:
        return self.end_sec - self.start_sec


@dataclass(frozen=True)
class PlanLimits:
    """What every planner holds a segment to: ``min_sec``-``max_sec`` long (margins
    included), up to ``margin_sec`` of the surrounding pause on each side, never across a
    pause over ``max_pause_sec``, and dropped when its speech is under ``drop_sec``."""

    min_sec: float = 5.0
    max_sec: float = 15.0
    margin_sec: float = 0.15
    max_pause_sec: float = 2.0
    drop_sec: float = 1.0

    def __post_init__(self) -> None:
        if not 0.0 < self.min_sec < self.max_sec:
            raise ValueError(
                f"need 0 < min_sec < max_sec, got {self.min_sec!r} and {self.max_sec!r}"
            )


# --------------------------------------------------------------------------- VAD


class VadStream:
    """Streaming webrtcvad over mono float32 blocks (``[-1, 1]``) of any length.

    ``feed`` converts each block to 16-bit PCM and classifies every whole frame;
    the remainder is kept for the next call. ``finish`` classifies the last
    partial frame (zero-padded) and returns the smoothed speech regions.
    """

    def __init__(
        self,
        mode: int = 2,
        frame_ms: int = 30,
        sample_rate: int = 16000,
        *,
        fill_gap_sec: float = 0.2,
        min_speech_sec: float = 0.15,
    ) -> None:
        if mode not in (0, 1, 2, 3):
            raise ValueError(f"VAD mode must be 0, 1, 2 or 3, got {mode!r}")
        if frame_ms not in VAD_FRAME_MS:
            raise ValueError(f"VAD frame_ms must be 10, 20 or 30, got {frame_ms!r}")
        if sample_rate not in VAD_RATES:
            raise ValueError(f"VAD sample_rate must be 8000/16000/32000/48000, got {sample_rate}")
        self.sample_rate = sample_rate
        self.frame_ms = frame_ms
        self.fill_gap_sec = fill_gap_sec
        self.min_speech_sec = min_speech_sec
        self._vad = webrtcvad.Vad(mode)
        self._frame = sample_rate * frame_ms // 1000
        self._rest = np.zeros(0, np.int16)
        self._decisions = bytearray()  # one 0/1 byte per frame
        self._samples = 0
        self._regions: list[TimeSpan] | None = None

    @property
    def total_sec(self) -> float:
        """Seconds of audio fed so far."""
        return self._samples / self.sample_rate

    def feed(self, block: npt.NDArray[np.floating] | npt.NDArray[np.int16]) -> None:
        """Classify the whole frames in ``rest + block``; keep the remainder."""
        if self._regions is not None:
            raise RuntimeError("VadStream.feed() called after finish()")
        a = np.asarray(block)
        if a.ndim != 1:
            raise ValueError(f"VAD input must be mono with shape (n,), got {a.shape}")
        if not len(a):
            return
        if a.dtype == np.int16:
            pcm = a
        else:
            scaled = np.multiply(a, 32767.0, dtype=np.float32)
            np.clip(scaled, -32768.0, 32767.0, out=scaled)
            pcm = scaled.astype(np.int16)
        self._samples += len(pcm)
        if len(self._rest):
            pcm = np.concatenate([self._rest, pcm])
        usable = len(pcm) - len(pcm) % self._frame
        self._rest = pcm[usable:].copy()
        if usable:
            self._classify(pcm[:usable])

    def _classify(self, pcm: npt.NDArray[np.int16]) -> None:
        data = memoryview(pcm.astype("<i2", copy=False).tobytes())
        step = self._frame * 2
        is_speech = self._vad.is_speech
        rate = self.sample_rate
        self._decisions.extend(
            is_speech(data[i : i + step], rate) for i in range(0, len(data), step)
        )

    def finish(self) -> list[TimeSpan]:
        """The smoothed speech regions, in seconds (calling it again returns the same)."""
        if self._regions is None:
            if len(self._rest):
                padded = np.zeros(self._frame, np.int16)
                padded[: len(self._rest)] = self._rest
                self._classify(padded)
                self._rest = np.zeros(0, np.int16)
            self._regions = self._smoothed()
        return list(self._regions)

    @property
    def frame_decisions(self) -> npt.NDArray[np.bool_]:
        """Raw webrtcvad decisions, one per frame classified so far."""
        return np.frombuffer(bytes(self._decisions), dtype=np.uint8).astype(bool)

    def _smoothed(self) -> list[TimeSpan]:
        d = np.frombuffer(bytes(self._decisions), dtype=np.uint8)
        if not d.any():
            return []
        edges = np.diff(np.concatenate(([0], d, [0])).astype(np.int8))
        starts = np.flatnonzero(edges == 1)
        ends = np.flatnonzero(edges == -1)
        frame_sec = self.frame_ms / 1000.0
        fill = self.fill_gap_sec / frame_sec - _EPS  # gaps of fewer frames are filled
        keep = np.concatenate((starts[1:] - ends[:-1] >= fill, [True]))
        ends = ends[keep]
        starts = np.concatenate((starts[:1], starts[1:][keep[:-1]]))
        long_enough = (ends - starts) >= self.min_speech_sec / frame_sec - _EPS
        total = self.total_sec
        return [
            TimeSpan(round(s * frame_sec, 3), round(min(e * frame_sec, total), 3))
            for s, e in zip(starts[long_enough].tolist(), ends[long_enough].tolist(), strict=True)
        ]


def speech_ratio(regions: Sequence[TimeSpan], start_sec: float, end_sec: float) -> float:
    """The fraction of ``[start_sec, end_sec]`` covered by ``regions`` (non-overlapping)."""
    length = end_sec - start_sec
    if length <= 0:
        return 0.0
    covered = sum(max(0.0, min(r.end_sec, end_sec) - max(r.start_sec, start_sec)) for r in regions)
    return min(1.0, covered / length)


# ---------------------------------------------------------------------- planning


def plan_from_vad(
    regions: Sequence[TimeSpan],
    total_sec: float,
    *,
    limits: PlanLimits = PlanLimits(),
) -> list[TimeSpan]:
    """Group speech ``regions`` into utterances within ``limits``; see the module
    docstring. Spans have no text."""
    units = _merge_regions(regions, total_sec)
    cut_costs = [_PREFERRED_PAUSE - (units[k + 1][0] - units[k][1]) for k in range(len(units) - 1)]
    plan = _plan(units, cut_costs, total_sec, limits)
    return [
        TimeSpan(start, end)
        for (i, j), (start, end) in plan
        if units[j - 1][1] - units[i][0] >= limits.drop_sec - _EPS
    ]


def plan_from_cues(
    cues: Sequence[Cue],
    total_sec: float,
    *,
    limits: PlanLimits = PlanLimits(),
) -> list[TimeSpan]:
    """Group consecutive ``cues`` into utterances within ``limits``, preferring
    cuts after sentence ends and at long pauses; each span's text is its cues' texts
    joined with spaces. The cues are tidied first (:func:`core.dataset.subtitles.tidy_cues`:
    sorted, overlaps trimmed or merged, empty ones dropped; a no-op for the output of
    :func:`core.dataset.subtitles.read_subtitles`); any part past ``total_sec`` is cut off
    and cues wholly past it are ignored."""
    ordered = [c for c in tidy_cues(list(cues)) if c.start_sec < total_sec and c.end_sec > 0.0]
    units = [(max(0.0, c.start_sec), min(c.end_sec, total_sec)) for c in ordered]
    cut_costs = [
        _PREFERRED_PAUSE
        - min(max(units[k + 1][0] - units[k][1], 0.0), limits.max_pause_sec)
        + (0.0 if _SENTENCE_END.search(ordered[k].text.rstrip()) else _NOT_SENTENCE_END)
        for k in range(len(units) - 1)
    ]
    plan = _plan(units, cut_costs, total_sec, limits)
    return [
        TimeSpan(start, end, " ".join(c.text for c in ordered[i:j]))
        for (i, j), (start, end) in plan
        if units[j - 1][1] - units[i][0] >= limits.drop_sec - _EPS
    ]


def _merge_regions(regions: Sequence[TimeSpan], total_sec: float) -> list[tuple[float, float]]:
    """Regions clamped to the file, sorted, overlapping or touching ones merged."""
    clamped = sorted(
        (max(0.0, r.start_sec), min(r.end_sec, total_sec))
        for r in regions
        if min(r.end_sec, total_sec) > max(0.0, r.start_sec)
    )
    merged: list[tuple[float, float]] = []
    for start, end in clamped:
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


Plan = list[tuple[tuple[int, int], tuple[float, float]]]


def _plan(
    units: list[tuple[float, float]],
    cut_costs: list[float],
    total_sec: float,
    limits: PlanLimits,
) -> Plan:
    """Least-cost partition of ``units`` into groups ``[i, j)`` with their padded bounds."""
    n = len(units)
    if n == 0:
        return []
    min_sec, max_sec, max_pause_sec = limits.min_sec, limits.max_sec, limits.max_pause_sec
    margin = max(0.0, limits.margin_sec)
    lead = [0.0] * n  # margin available before unit k
    tail = [0.0] * n  # margin available after unit k
    for k, (start, end) in enumerate(units):
        before = start if k == 0 else max(0.0, start - units[k - 1][1]) / 2
        after = total_sec - end if k == n - 1 else max(0.0, units[k + 1][0] - end) / 2
        lead[k] = min(margin, max(0.0, before))
        tail[k] = min(margin, max(0.0, after))

    best = [math.inf] * (n + 1)
    best[0] = 0.0
    choice = [0] * (n + 1)
    for j in range(1, n + 1):
        end = units[j - 1][1] + tail[j - 1]
        for i in range(j - 1, -1, -1):
            if i < j - 1 and units[i + 1][0] - units[i][1] > max_pause_sec:
                break  # a long pause is never inside a segment
            length = end - (units[i][0] - lead[i])
            if i < j - 1 and length > max_sec + _EPS:
                break  # several units: never longer than max_sec
            cost = best[i] + _range_cost(length, min_sec, max_sec)
            if i > 0:
                cost += cut_costs[i - 1]
            if cost < best[j] - 1e-9:
                best[j], choice[j] = cost, i
    groups: list[tuple[int, int]] = []
    j = n
    while j > 0:
        i = choice[j]
        groups.append((i, j))
        j = i
    groups.reverse()
    return [
        ((i, j), (round(units[i][0] - lead[i], 3), round(units[j - 1][1] + tail[j - 1], 3)))
        for i, j in groups
    ]


def _range_cost(length: float, min_sec: float, max_sec: float) -> float:
    if length < min_sec - _EPS:
        return _OUT_OF_RANGE + (min_sec - length)
    if length > max_sec + _EPS:
        return _OUT_OF_RANGE
    return 0.0


# ------------------------------------------------------------------ adaptive planning


@dataclass(frozen=True)
class PlanReport:
    """What :func:`plan_adaptive` did to one recording's speech regions."""

    regions: int = 0  # speech regions from the voice activity detector
    long_regions: int = 0  # of them, too long to fit one segment
    split_by_vad: int = 0  # long regions split by a re-run at VAD mode 3
    split_by_energy: int = 0  # long pieces split at pauses found by the energy gate
    forced_cuts: int = 0  # cuts at the quietest point where no pause was found
    noise_floor_db: float | None = None  # the recording's floor, when the gate was used
    segments: int = 0
    in_range: int = 0  # segments within min_sec..max_sec

    def summary(self) -> str:
        """One line for the ingest report."""
        line = f"{self.in_range} of {self.segments} segments in range"
        if not self.long_regions:
            return f"{line}; no speech region was too long"
        how = [f"{self.split_by_vad} by VAD mode {_STRICT_MODE}"] if self.split_by_vad else []
        if self.split_by_energy:
            floor = (
                "" if self.noise_floor_db is None else f" ({self.noise_floor_db:.0f} dBFS floor)"
            )
            how.append(f"{self.split_by_energy} at pauses above the noise floor{floor}")
        if self.forced_cuts:
            how.append(f"{self.forced_cuts} cut(s) at the quietest point")
        return (
            f"{line}; {self.long_regions} of {self.regions} speech regions were too long, "
            f"split: {', '.join(how) or 'none'}"
        )


def plan_adaptive(
    regions: Sequence[TimeSpan],
    audio: npt.NDArray[np.floating],
    sr: int,
    *,
    vad_mode: int = 2,
    frame_ms: int = 30,
    limits: PlanLimits = PlanLimits(),
) -> tuple[list[TimeSpan], PlanReport]:
    """:func:`plan_from_vad`, after splitting every speech region too long for one segment.

    ``audio`` is the whole recording (mono, ``sr``; a memory map is fine: only the long
    regions and, when the gate is needed, 30 s chunks are read) and ``regions`` its
    speech regions from :class:`VadStream` at ``vad_mode``. A region longer than
    ``limits.max_sec`` minus both margins is split, in this order, until every piece fits:

    1. by webrtcvad again at mode 3 (the strictest) over that region alone;
    2. at pauses found by an energy gate: 10 ms frames within 10 dB of the
       recording's noise floor (the 10th percentile of its 10 ms frame energies) for
       80 ms or more; pieces under 150 ms are dropped;
    3. at the quietest 50 ms of the piece, placed so that both sides fit when they
       can (a cut leaves 10 ms between the pieces, so they stay separate units).

    The same input gives the same plan; what was done is in the :class:`PlanReport`.
    """
    x = np.asarray(audio)
    total_sec = len(x) / sr
    units = _merge_regions(regions, total_sec)
    limit = limits.max_sec - 2.0 * max(0.0, limits.margin_sec)
    report = PlanReport(regions=len(units))
    floor: list[float] = []  # computed once, on first use

    def noise_floor() -> float:
        if not floor:
            floor.append(_noise_floor_db(x, sr))
        return floor[0]

    refined: list[tuple[float, float]] = []
    for start, end in units:
        if end - start <= limit + _EPS:
            refined.append((start, end))
            continue
        report = replace(report, long_regions=report.long_regions + 1)
        pieces = [(start, end)]
        if vad_mode < _STRICT_MODE:
            found = _revad(x, sr, start, end, frame_ms)
            if len(found) > 1:
                pieces = found
                report = replace(report, split_by_vad=report.split_by_vad + 1)
        gated: list[tuple[float, float]] = []
        for a, b in pieces:
            if b - a <= limit + _EPS:
                gated.append((a, b))
                continue
            found = _gate(x, sr, a, b, noise_floor())
            if len(found) > 1:
                report = replace(report, split_by_energy=report.split_by_energy + 1)
            gated += found or [(a, b)]
        for a, b in gated:
            cuts = _quietest_cuts(x, sr, a, b, limit, limits.min_sec)
            report = replace(report, forced_cuts=report.forced_cuts + len(cuts))
            edges = [a, *cuts, b]
            for k in range(len(edges) - 1):
                lo = edges[k] + (_CUT_GAP_SEC / 2 if k > 0 else 0.0)
                hi = edges[k + 1] - (_CUT_GAP_SEC / 2 if k < len(edges) - 2 else 0.0)
                refined.append((lo, hi))
    if floor and report.split_by_energy:
        report = replace(report, noise_floor_db=round(floor[0], 1))
    spans = plan_from_vad([TimeSpan(a, b) for a, b in refined], total_sec, limits=limits)
    in_range = sum(limits.min_sec - _EPS <= s.duration <= limits.max_sec + _EPS for s in spans)
    return spans, replace(report, segments=len(spans), in_range=in_range)


def _frame_db(x: npt.NDArray[np.floating], sr: int) -> npt.NDArray[np.float64]:
    """Energy (dBFS) of consecutive 10 ms frames of ``x`` (the last partial one dropped)."""
    hop = max(1, round(sr * _ENERGY_FRAME_SEC))
    n = len(x) // hop
    if n == 0:
        return np.zeros(0)
    frames = np.asarray(x[: n * hop], dtype=np.float64).reshape(n, hop)
    power = np.einsum("ij,ij->i", frames, frames) / hop
    db: npt.NDArray[np.float64] = 10.0 * np.log10(np.maximum(power, 1e-12))
    return db


def _noise_floor_db(x: npt.NDArray[np.floating], sr: int) -> float:
    """The 10th percentile of the 10 ms frame energies of the whole recording, read in chunks."""
    chunk = int(_FLOOR_CHUNK_SEC * sr) // max(1, round(sr * _ENERGY_FRAME_SEC))
    chunk *= max(1, round(sr * _ENERGY_FRAME_SEC))
    parts = [_frame_db(x[i : i + chunk], sr) for i in range(0, len(x), max(1, chunk))]
    energies = np.concatenate(parts) if parts else np.zeros(0)
    return float(np.percentile(energies, _FLOOR_PERCENTILE)) if energies.size else -120.0


def _revad(
    x: npt.NDArray[np.floating], sr: int, start: float, end: float, frame_ms: int
) -> list[tuple[float, float]]:
    """Speech regions of ``[start, end)`` at the strictest VAD mode, in recording time."""
    import soxr

    cut = np.asarray(x[int(start * sr) : int(end * sr)], dtype=np.float32)
    vad = VadStream(_STRICT_MODE, frame_ms)
    vad.feed(np.asarray(soxr.resample(cut, sr, vad.sample_rate, quality="HQ"), np.float32))
    return [
        (start + r.start_sec, min(end, start + r.end_sec))
        for r in vad.finish()
        if start + r.start_sec < end
    ]


def _gate(
    x: npt.NDArray[np.floating], sr: int, start: float, end: float, floor_db: float
) -> list[tuple[float, float]]:
    """``[start, end)`` split at runs of 80 ms or more within 10 dB of ``floor_db``."""
    db = _frame_db(x[int(start * sr) : int(end * sr)], sr)
    loud = np.concatenate(([True], db >= floor_db + _GATE_DB, [True]))
    edges = np.diff(loud.astype(np.int8))
    quiet_starts = np.flatnonzero(edges == -1)  # frame index where a quiet run starts
    quiet_ends = np.flatnonzero(edges == 1)
    long_enough = (quiet_ends - quiet_starts) * _ENERGY_FRAME_SEC >= _MIN_GATE_PAUSE_SEC - _EPS
    pieces: list[tuple[float, float]] = []
    t = start
    for qs, qe in zip(quiet_starts[long_enough], quiet_ends[long_enough], strict=True):
        a, b = start + qs * _ENERGY_FRAME_SEC, start + qe * _ENERGY_FRAME_SEC
        if a - t >= _MIN_PIECE_SEC - _EPS:
            pieces.append((t, a))
        t = max(t, b)
    if end - t >= _MIN_PIECE_SEC - _EPS:
        pieces.append((t, end))
    return pieces


def _quietest_cuts(
    x: npt.NDArray[np.floating],
    sr: int,
    start: float,
    end: float,
    limit: float,
    shortest: float,
) -> list[float]:
    """Times at which to cut ``[start, end)`` so that no piece is longer than ``limit``:
    into as few pieces as fit, each cut at the quietest 50 ms of the window that leaves
    the first piece and the rest able to fit (and every piece at least ``shortest`` long
    where the length allows), from left to right."""
    length = end - start
    if length <= limit + _EPS:
        return []
    db = _frame_db(x[int(start * sr) : int(end * sr)], sr)
    if db.size < 3:
        return []
    smooth = np.convolve(db, np.ones(_CUT_SMOOTH_FRAMES) / _CUT_SMOOTH_FRAMES, mode="same")
    # The first of ``pieces`` pieces: the rest must still fit in ``pieces - 1``.
    pieces = math.ceil(length / limit - _EPS)
    side = max(0.0, shortest)
    lo = max(side, length - (pieces - 1) * limit)
    hi = min(limit, length - (pieces - 1) * side)
    if lo > hi:  # too short for every piece to reach ``shortest``: just fit
        lo, hi = max(0.0, length - (pieces - 1) * limit), min(limit, length)
    a = min(db.size - 1, max(1, math.ceil(lo / _ENERGY_FRAME_SEC)))
    b = min(db.size - 1, max(a, math.floor(hi / _ENERGY_FRAME_SEC)))
    at = start + (a + int(np.argmin(smooth[a : b + 1]))) * _ENERGY_FRAME_SEC
    return [
        *_quietest_cuts(x, sr, start, at, limit, shortest),
        at,
        *_quietest_cuts(x, sr, at, end, limit, shortest),
    ]
