"""Episode mixing: rendered lines placed on a timeline, fades, music beds with ducking, effects.

The timeline items (:class:`TimelineLine`, :class:`TimelinePause`, :class:`TimelineBed`,
:class:`TimelineSfx`, :class:`TimelineChapter`), :class:`MixSettings`, the plan (where
everything goes) and the mix of any window of it. Pure functions on numpy arrays; every
position is a whole sample at the mix rate, so a line's start is exact. The master (loudness,
limiter) is :mod:`core.episodes.master`, which also holds
:func:`~core.episodes.master.mix_episode`; the delivered files are
:mod:`core.episodes.export`.

Details: docs/EPISODES.md, "The timeline" (placement, ducking, stereo)."""

from __future__ import annotations

import bisect
import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

import numpy as np
import numpy.typing as npt

from core.audio.io import downmix, resample
from core.audio.types import FloatArray
from core.errors import AudioError

__all__ = [
    "AudioFile",
    "MixSettings",
    "PlacedLine",
    "TimelineBed",
    "TimelineChapter",
    "TimelineItem",
    "TimelineLine",
    "TimelinePause",
    "TimelineSfx",
    "plan_has_music_or_effects",
]


_DEFAULT_PANS: Final = (-0.3, 0.3, -0.15, 0.15)
_HALF_POWER: Final = math.sqrt(0.5)


@dataclass(frozen=True)
class AudioFile:
    """Audio left on disk (a render-cache file): read only while its span is mixed.

    ``frames`` and ``sample_rate`` are the file's own (:meth:`probe` reads them from its
    header); the audio is taken as mono.
    """

    path: Path
    frames: int
    sample_rate: int

    @classmethod
    def probe(cls, path: Path) -> AudioFile:
        import soundfile as sf

        info = sf.info(str(path))
        return cls(Path(path), int(info.frames), int(info.samplerate))

    def length_at(self, sr: int) -> int:
        """The number of samples at ``sr`` (what soxr's one-piece resampling returns)."""
        if sr == self.sample_rate:
            return self.frames
        return (2 * self.frames * sr + self.sample_rate) // (2 * self.sample_rate)

    def load_at(self, sr: int, what: str) -> FloatArray:
        """The audio as mono float32 at ``sr``; :class:`AudioError` if it cannot be read."""
        import soundfile as sf

        try:
            audio, rate = sf.read(str(self.path), dtype="float32", always_2d=False)
        except (sf.SoundFileError, RuntimeError) as exc:
            raise AudioError(f"{self.path}: cannot read {what} ({exc}); render it again") from exc
        a = _checked(audio, what)
        if a.ndim == 2:
            a = downmix(a)
        a = a.astype(np.float32, copy=False)
        return resample(a, int(rate), sr) if int(rate) != sr else a


@dataclass(frozen=True, eq=False)
class TimelineLine:
    """One rendered line: mono float audio at ``sample_rate`` and what it says.

    ``audio`` may be an :class:`AudioFile`: the line stays on disk until it is mixed.
    """

    index: int
    speaker: str
    text: str
    audio: npt.NDArray[Any] | AudioFile
    sample_rate: int
    seed: int | None = None
    backend: str = ""
    chapter: int = 0


@dataclass(frozen=True)
class TimelinePause:
    """Silence added to the timeline (on top of the gap before the next line)."""

    seconds: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.seconds) and self.seconds >= 0):
            raise ValueError(f"a pause must be 0 seconds or more, got {self.seconds!r}")


@dataclass(frozen=True, eq=False)
class TimelineBed:
    """A music bed cue: ``start`` (with its audio, mono or ``(n, 2)``) or ``stop``.

    ``fade_in``/``fade_out`` are seconds (at least ``fade_ms`` is used), ``duck_db`` how
    far the bed goes down under speech (its magnitude: -14 and 14 both lower it by 14
    dB) and ``volume_db`` the bed's gain.
    """

    action: Literal["start", "stop"]
    audio: npt.NDArray[Any] | None = None
    sample_rate: int = 0
    fade_in: float = 0.0
    fade_out: float = 0.0
    duck_db: float = 0.0
    volume_db: float = 0.0

    def __post_init__(self) -> None:
        if self.action not in ("start", "stop"):
            raise ValueError(f"a bed cue's action is 'start' or 'stop', got {self.action!r}")
        for name in ("fade_in", "fade_out", "duck_db", "volume_db"):
            value = getattr(self, name)
            if not math.isfinite(value) or (name.startswith("fade") and value < 0):
                raise ValueError(f"bed cue: {name} must be a finite number >= 0, got {value!r}")
        if self.action == "start":
            if self.audio is None or np.asarray(self.audio).size == 0:
                raise ValueError("a bed 'start' cue needs audio")
            if self.sample_rate <= 0:
                raise ValueError(f"bed cue: sample_rate must be positive, got {self.sample_rate}")


@dataclass(frozen=True, eq=False)
class TimelineSfx:
    """A sound effect (mono or ``(n, 2)``), placed like a line of its own."""

    audio: npt.NDArray[Any]
    sample_rate: int
    volume_db: float = 0.0

    def __post_init__(self) -> None:
        if self.sample_rate <= 0:
            raise ValueError(f"sound effect: sample_rate must be positive, got {self.sample_rate}")
        if not math.isfinite(self.volume_db):
            raise ValueError(f"sound effect: volume_db must be finite, got {self.volume_db!r}")


@dataclass(frozen=True)
class TimelineChapter:
    """A chapter mark: it starts at the next line or effect."""

    title: str


TimelineItem = TimelineLine | TimelinePause | TimelineBed | TimelineSfx | TimelineChapter


@dataclass(frozen=True)
class MixSettings:
    """How an episode is mixed and mastered (see the module docstring).

    ``master=False`` skips the master (no loudness gain, no limiter, no room tone): the
    raw mix, for previews and for comparing masters.
    """

    sample_rate: int = 24000
    stereo: bool = False
    gap_ms: float = 250.0
    same_speaker_gap_ms: float = 150.0
    fade_ms: float = 20.0
    duck_attack_ms: float = 80.0
    duck_release_ms: float = 350.0
    target_lufs: float | None = None
    ceiling_dbtp: float = -1.0
    pan: Mapping[str, float] = field(default_factory=dict)
    room_tone_db: float | None = None
    max_gain_db: float = 24.0
    master: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.sample_rate, bool) or not 8000 <= self.sample_rate <= 192000:
            raise ValueError(f"sample_rate must be 8000..192000 Hz, got {self.sample_rate!r}")
        for name in ("gap_ms", "same_speaker_gap_ms", "ceiling_dbtp"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"{name} must be finite, got {getattr(self, name)!r}")
        for name in ("fade_ms", "duck_attack_ms", "duck_release_ms", "max_gain_db"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        for name in ("target_lufs", "room_tone_db"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value < 0):
                raise ValueError(f"{name} must be a negative number of dB, got {value!r}")
        for speaker, pan in self.pan.items():
            if not (math.isfinite(pan) and -1.0 <= pan <= 1.0):
                raise ValueError(f"pan for {speaker!r} must be in -1..1, got {pan!r}")

    @property
    def target(self) -> float:
        """The loudness target: ``target_lufs``, else -19 LUFS mono / -16 LUFS stereo."""
        if self.target_lufs is not None:
            return self.target_lufs
        return -16.0 if self.stereo else -19.0


@dataclass(frozen=True)
class PlacedLine:
    """Where a line landed in the mix, in seconds."""

    index: int
    speaker: str
    text: str
    start_sec: float
    end_sec: float
    seed: int | None
    backend: str


_DEFAULTS: Final = MixSettings()


@dataclass
class _Source:
    """Audio to add to the mix: each signal goes to every channel with its gain."""

    parts: list[tuple[FloatArray, tuple[float, ...]]]

    @property
    def length(self) -> int:
        return self.parts[0][0].size if self.parts else 0


@dataclass
class _Placed:
    start: int
    source: _Source | None  # None: a line left on disk (``line.audio``), read when mixed
    fade: int
    line: TimelineLine | None
    length: int = 0
    gains: tuple[float, ...] = ()


@dataclass
class _Bed:
    start: int
    cue: TimelineBed
    stop: int = 0
    fade_out: float = 0.0
    fade_out_samples: int = 0
    cycles: list[tuple[FloatArray, FloatArray, tuple[float, ...]]] = field(default_factory=list)
    """Per source signal: the signal, one loop cycle (see :func:`_looped`) and its gains."""


@dataclass
class _Plan:
    """Where everything goes: the timeline laid out, before any audio is mixed."""

    settings: MixSettings
    channels: int
    length: int
    placed: list[_Placed]
    beds: list[_Bed]
    speech: list[tuple[int, int]]
    lines: tuple[PlacedLine, ...]
    chapters: tuple[tuple[str, float], ...]
    resampled: _Prepared

    @property
    def has_music_or_effects(self) -> bool:
        return bool(self.beds) or any(p.line is None for p in self.placed)


def _plan(items: Sequence[TimelineItem], settings: MixSettings) -> _Plan:
    """Lay ``items`` out on the timeline (see the module docstring); no audio is mixed."""
    sr = settings.sample_rate
    channels = 2 if settings.stereo else 1
    fade = _samples(settings.fade_ms / 1000.0, sr)
    gap = _samples(settings.gap_ms / 1000.0, sr)
    same_gap = _samples(settings.same_speaker_gap_ms / 1000.0, sr)
    pans = _pans(items, settings)
    resampled: _Prepared = {}

    placed: list[_Placed] = []
    beds: list[_Bed] = []
    chapters: list[tuple[str, int]] = []
    pending_chapters: list[str] = []
    playing: _Bed | None = None
    end = 0  # the latest end of anything placed
    last_start = 0
    previous: tuple[str, str] | None = None  # ("line", speaker) or ("sfx", "")
    pause = 0  # samples of pause since the last line or effect

    for item in items:
        if isinstance(item, TimelinePause):
            pause += _samples(item.seconds, sr)
        elif isinstance(item, TimelineChapter):
            pending_chapters.append(item.title)
        elif isinstance(item, TimelineBed):
            here = end + pause
            if playing is not None:
                playing.stop = here
                playing.fade_out = playing.cue.fade_out
                if item.action == "stop" and item.fade_out > 0:
                    playing.fade_out = item.fade_out
                beds.append(playing)
                playing = None
            if item.action == "start":
                playing = _Bed(start=here, cue=item)
        elif isinstance(item, TimelineLine | TimelineSfx):
            kind = ("line", item.speaker) if isinstance(item, TimelineLine) else ("sfx", "")
            if previous is None:
                start = pause
            else:
                step = same_gap if kind[0] == "line" and kind == previous else gap
                if pause:
                    step = max(step, 0)
                start = max(last_start, end + step + pause)
            start = max(start, 0)
            if isinstance(item, TimelineLine):
                gains = _pan_gains(pans.get(item.speaker, 0.0), channels)
                if isinstance(item.audio, AudioFile):
                    p = _Placed(start, None, fade, item, item.audio.length_at(sr), gains)
                else:
                    what = f"line {item.index} ({item.speaker})"
                    audio = _prepared(item.audio, item.sample_rate, sr, True, resampled, what)
                    p = _Placed(start, _Source([(audio, gains)]), fade, item, audio.size, gains)
            else:
                source = _source(item.audio, item.sample_rate, sr, channels, resampled, "effect")
                _scale(source, _gain(item.volume_db))
                p = _Placed(start, source, fade, None, source.length)
            placed.append(p)
            for title in pending_chapters:
                chapters.append((title, 0 if not chapters else start))
            pending_chapters.clear()
            previous = kind
            last_start = start
            end = max(end, start + p.length)
            pause = 0
        else:
            raise TypeError(f"not a timeline item: {type(item).__name__}")

    speech_end = end + pause
    for title in pending_chapters:
        chapters.append((title, 0 if not chapters else speech_end))
    if playing is not None:
        playing.stop = speech_end
        playing.fade_out = playing.cue.fade_out
        beds.append(playing)

    for bed in beds:
        bed.fade_out_samples = max(_samples(bed.fade_out, sr), fade)
        cue = bed.cue
        assert cue.audio is not None  # nosec B101  # checked when the cue was made
        source = _source(cue.audio, cue.sample_rate, sr, channels, resampled, "music bed")
        bed.cycles = [(s, _cycle(s, fade), gains) for s, gains in source.parts]
    length = max([speech_end] + [bed.stop + bed.fade_out_samples for bed in beds])
    speech = _merged(
        [(p.start, p.start + p.length) for p in placed if p.line is not None],
        _samples((settings.duck_attack_ms + settings.duck_release_ms) / 1000.0, sr),
    )
    lines = tuple(
        PlacedLine(
            index=p.line.index,
            speaker=p.line.speaker,
            text=p.line.text,
            start_sec=p.start / sr,
            end_sec=(p.start + p.length) / sr,
            seed=p.line.seed,
            backend=p.line.backend,
        )
        for p in placed
        if p.line is not None
    )
    chapter_marks = tuple((title, start / sr) for title, start in chapters)
    return _Plan(settings, channels, length, placed, beds, speech, lines, chapter_marks, resampled)


def _mix_window(plan: _Plan, a: int, b: int, loaded: dict[int, FloatArray]) -> list[FloatArray]:
    """Samples ``a .. b - 1`` of the mix, one float32 array per channel.

    Lines left on disk are read (and resampled) when a window first reaches them and
    kept in ``loaded`` (by position in the plan) until a window starts after their end.
    Every sample gets the same operations in the same order whatever the windows, so a
    mix made in windows equals the mix made in one piece.
    """
    sr = plan.settings.sample_rate
    buffers = [np.zeros(b - a, dtype=np.float32) for _ in range(plan.channels)]
    for k in [k for k in loaded if plan.placed[k].start + plan.placed[k].length <= a]:
        del loaded[k]
    for k, p in enumerate(plan.placed):
        if p.start >= b or p.start + p.length <= a:
            continue
        source = p.source
        if source is None:
            signal = loaded.get(k)
            if signal is None:
                assert p.line is not None and isinstance(p.line.audio, AudioFile)  # nosec B101
                signal = p.line.audio.load_at(sr, f"line {p.line.index} ({p.line.speaker})")
                if signal.size != p.length:  # a file changed under us: keep the layout
                    signal = np.resize(signal, p.length).astype(np.float32, copy=False)
                loaded[k] = signal
            source = _Source([(signal, p.gains)])
        for signal, gains in source.parts:
            for buffer, channel_gain in zip(buffers, gains, strict=True):
                _add_faded(buffer, a, p.start, signal, channel_gain, p.fade)
    for bed in plan.beds:
        _add_bed(buffers, a, bed, plan.speech, plan.settings)
    return buffers


def _samples(seconds: float, sr: int) -> int:
    return round(seconds * sr)


def _gain(db: float) -> float:
    return float(10.0 ** (db / 20.0))


def _pans(items: Sequence[TimelineItem], settings: MixSettings) -> dict[str, float]:
    """Each speaker's pan: the settings' own, else small defaults in order of appearance."""
    if not settings.stereo:
        return {}
    pans = dict(settings.pan)
    defaults = iter(_DEFAULT_PANS)
    for item in items:
        if isinstance(item, TimelineLine) and item.speaker not in pans:
            pans[item.speaker] = next(defaults, 0.0)
    return pans


def _pan_gains(pan: float, channels: int) -> tuple[float, ...]:
    """Constant-power pan: ``(cos, sin)`` of ``(pan + 1) * pi / 4``; mono: unity."""
    if channels == 1:
        return (1.0,)
    angle = (pan + 1.0) * math.pi / 4.0
    # Exact zeros at the extremes (cos(pi / 2) is 6e-17): a hard pan is silent opposite.
    return tuple(0.0 if abs(g) < 1e-12 else g for g in (math.cos(angle), math.sin(angle)))


def _checked(audio: npt.NDArray[Any], what: str) -> npt.NDArray[Any]:
    a = np.asarray(audio)
    if a.ndim not in (1, 2) or (a.ndim == 2 and a.shape[1] < 1):
        raise ValueError(f"{what}: audio must be (n,) or (n, channels), got shape {a.shape}")
    if a.dtype.kind != "f":
        raise ValueError(f"{what}: audio must be float, got {a.dtype}")
    if not np.isfinite(a).all():
        raise ValueError(f"{what}: audio holds NaN or Inf")
    return a


_Prepared = dict[tuple[int, int, bool], tuple[npt.NDArray[Any], FloatArray]]
"""Audio already checked and resampled in this mix, by (id of the input, its rate, mono)."""


def _prepared(
    audio: npt.NDArray[Any], rate: int, sr: int, mono: bool, cache: _Prepared, what: str
) -> FloatArray:
    """``audio`` checked, as float32 at ``sr`` (mono, or 1-2 channels), once per array.

    The cache holds the input array itself, so its id cannot be reused while it lives.
    """
    key = (id(audio), rate, mono)
    hit = cache.get(key)
    if hit is not None and hit[0] is audio:
        return hit[1]
    if rate <= 0:
        raise ValueError(f"{what}: sample_rate must be positive, got {rate}")
    a = _checked(audio, what)
    if a.ndim == 2 and (mono or a.shape[1] != 2):  # more than stereo is taken as mono
        a = downmix(a)
    a = a.astype(np.float32, copy=False)
    out = resample(a, rate, sr) if rate != sr else a
    cache[key] = (audio, out)
    return out


def _source(
    audio: npt.NDArray[Any],
    rate: int,
    sr: int,
    channels: int,
    cache: _Prepared,
    what: str,
) -> _Source:
    """A bed or effect as signals and channel gains (see "Stereo" in the module doc)."""
    a = _prepared(audio, rate, sr, channels == 1, cache, what)
    if a.ndim == 1:
        return _Source([(a, _pan_gains(0.0, channels))])
    left = np.ascontiguousarray(a[:, 0])
    right = np.ascontiguousarray(a[:, 1])
    return _Source([(left, (_HALF_POWER, 0.0)), (right, (0.0, _HALF_POWER))])


def _scale(source: _Source, gain: float) -> None:
    source.parts = [(s, tuple(g * gain for g in gains)) for s, gains in source.parts]


@functools.lru_cache(maxsize=32)
def _ramp(n: int) -> FloatArray:
    """A raised-cosine fade-in of ``n`` samples: exactly 0 first, rising towards 1."""
    k = np.arange(n, dtype=np.float64)
    ramp = np.sin(0.5 * np.pi * k / max(n, 1)) ** 2
    out = ramp.astype(np.float32)
    out.setflags(write=False)
    return out


def _add_faded(
    buffer: FloatArray, a: int, start: int, signal: FloatArray, gain: float, fade: int
) -> None:
    """Add ``signal * gain``, placed at ``start``, to ``buffer`` (which holds samples from
    ``a``), with a ``fade``-sample ramp at both ends; only the part inside the buffer."""
    if gain == 0.0 or signal.size == 0:
        return
    n = signal.size
    f = min(fade, n // 2)
    lo, hi = max(0, a - start), min(n, a + buffer.size - start)
    if hi <= lo:
        return
    g = np.float32(gain)
    m0, m1 = max(lo, f), min(hi, n - f)
    if m1 > m0:
        middle = signal[m0:m1]
        buffer[start + m0 - a : start + m1 - a] += middle if gain == 1.0 else middle * g
    if f:
        ramp = _ramp(f) * g
        h0, h1 = lo, min(hi, f)
        if h1 > h0:
            buffer[start + h0 - a : start + h1 - a] += signal[h0:h1] * ramp[h0:h1]
        t0, t1 = max(lo, n - f), hi
        if t1 > t0:
            down = ramp[::-1]
            buffer[start + t0 - a : start + t1 - a] += (
                signal[t0:t1] * down[t0 - (n - f) : t1 - (n - f)]
            )


def _merged(intervals: list[tuple[int, int]], bridge: int) -> list[tuple[int, int]]:
    """Sorted intervals with those less than ``bridge`` samples apart joined."""
    merged: list[tuple[int, int]] = []
    for start, end in sorted(i for i in intervals if i[1] > i[0]):
        if merged and start - merged[-1][1] < bridge:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def _cycle(signal: FloatArray, crossfade: int) -> FloatArray:
    """One period of ``signal`` looped with a ``crossfade`` at each seam (see :func:`_looped`)."""
    n = signal.size
    xf = min(crossfade, n // 2)
    period = n - xf
    cycle = signal[:period].copy()
    if xf:
        ramp = _ramp(xf)
        # The tail of one repetition fades out while the head of the next fades in.
        cycle[:xf] = signal[:xf] * ramp + signal[period:] * ramp[::-1]
    return cycle


def _looped_part(
    signal: FloatArray, cycle: FloatArray, length: int, k0: int, k1: int
) -> FloatArray:
    """Samples ``k0 .. k1 - 1`` of :func:`_looped` (``signal`` to ``length``), a new array."""
    n = signal.size
    if length <= n:
        return signal[k0:k1].copy()
    xf = n - cycle.size
    out = np.empty(k1 - k0, dtype=np.float32)
    period = cycle.size
    k = k0
    while k < k1:
        phase = k % period
        take = min(period - phase, k1 - k)
        out[k - k0 : k - k0 + take] = cycle[phase : phase + take]
        k += take
    if k0 < xf:  # the first repetition has nothing before it
        out[: min(xf, k1) - k0] = signal[k0 : min(xf, k1)]
    return out


def _looped(signal: FloatArray, length: int, crossfade: int) -> FloatArray:
    """``signal`` repeated to ``length`` samples, each seam crossfaded over ``crossfade``."""
    return _looped_part(signal, _cycle(signal, crossfade), length, 0, length)


def _add_bed(
    buffers: list[FloatArray],
    a: int,
    bed: _Bed,
    speech: list[tuple[int, int]],
    settings: MixSettings,
) -> None:
    """Add the part of ``bed`` that falls in ``buffers`` (samples from ``a``)."""
    sr = settings.sample_rate
    cue = bed.cue
    fade_out = bed.fade_out_samples
    length = bed.stop - bed.start + fade_out
    if length <= 0:
        return
    k0 = max(0, a - bed.start)
    k1 = min(length, a + buffers[0].size - bed.start)
    if k1 <= k0:
        return
    fade = _samples(settings.fade_ms / 1000.0, sr)
    envelope = np.full(k1 - k0, _gain(cue.volume_db), dtype=np.float32)
    fade_in = min(max(_samples(cue.fade_in, sr), fade), length)
    if k0 < fade_in:
        envelope[: min(fade_in, k1) - k0] *= _ramp(fade_in)[k0 : min(fade_in, k1)]
    hold = bed.stop - bed.start
    if k1 > hold:
        h = max(k0, hold)
        envelope[h - k0 :] *= _ramp(fade_out)[::-1][h - hold : k1 - hold]
    if cue.duck_db:
        _duck(envelope, bed.start + k0, speech, -abs(cue.duck_db), settings)
    for signal, cycle, gains in bed.cycles:
        shaped = _looped_part(signal, cycle, length, k0, k1)
        shaped *= envelope
        for buffer, gain in zip(buffers, gains, strict=True):
            if gain:
                target = buffer[bed.start + k0 - a : bed.start + k1 - a]
                target += shaped if gain == 1.0 else shaped * np.float32(gain)


def _duck(
    envelope: FloatArray,
    offset: int,
    speech: list[tuple[int, int]],
    duck_db: float,
    settings: MixSettings,
) -> None:
    """Lower ``envelope`` (a bed's gain from sample ``offset``) by ``duck_db`` under speech."""
    sr = settings.sample_rate
    attack = _samples(settings.duck_attack_ms / 1000.0, sr)
    release = _samples(settings.duck_release_ms / 1000.0, sr)
    down = _gain(duck_db)
    # Depth 0 -> 1 along a raised cosine; gain = down ** depth, a smooth ramp in dB.
    attack_gain = (down ** _ramp(attack).astype(np.float64)).astype(np.float32)
    release_gain = (down ** (1.0 - _ramp(release).astype(np.float64))).astype(np.float32)
    n = envelope.size
    # ``speech`` is sorted and disjoint (its ends are sorted too): visit the reachable ones.
    first = bisect.bisect_right([e for _, e in speech], offset - release) if len(speech) > 64 else 0
    for start, end in speech[first:]:
        if start - attack >= offset + n:
            break
        lo, hi = start - offset, end - offset
        if hi + release <= 0 or lo - attack >= n:
            continue
        _apply(envelope, lo - attack, attack_gain)
        envelope[max(lo, 0) : max(min(hi, n), 0)] *= np.float32(down)
        _apply(envelope, hi, release_gain)


def _apply(envelope: FloatArray, at_sample: int, gains: FloatArray) -> None:
    """``envelope[at_sample : at_sample + len(gains)] *= gains``, clipped to the envelope."""
    lo = max(at_sample, 0)
    hi = min(at_sample + gains.size, envelope.size)
    if hi > lo:
        envelope[lo:hi] *= gains[lo - at_sample : hi - at_sample]


def plan_has_music_or_effects(items: Sequence[TimelineItem]) -> bool:
    """Whether ``items`` hold a music bed or a sound effect (the master's rate follows)."""
    return any(
        isinstance(i, TimelineSfx) or (isinstance(i, TimelineBed) and i.action == "start")
        for i in items
    )
