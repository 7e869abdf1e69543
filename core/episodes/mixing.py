"""Episode mixing: rendered lines on a timeline, music beds, sound effects, a master, exports.

Pure functions on numpy arrays; files are written only by :func:`export_episode`.

>>> result = mix_episode([line_a, TimelinePause(0.5), line_b], MixSettings())
>>> export_episode(result, Path("episodes/ep1"), "ep1", title="Episode 1")

Timeline rules
--------------
Every position is a whole sample at the mix rate (``MixSettings.sample_rate``); gaps
and pauses are rounded to samples, so a line's start is exact.

* Lines are placed in order. The first starts at the current position (0, or after
  leading pauses). Each later line starts ``gap_ms`` (250 ms) after the end of the
  timeline so far (the latest end of anything placed), or ``same_speaker_gap_ms``
  (150 ms) when the previous line or effect was a line by the same speaker. A negative
  gap is an overlap: the later line mixes over the earlier one's tail. A line never
  starts before the previous line's start, nor before 0.
* :class:`TimelinePause` adds its seconds of silence on top of the gap; a negative
  (overlapping) gap does not reach across a pause (it counts as 0 there).
* :class:`TimelineSfx` is placed exactly like a line by a speaker of its own (the
  between-speakers gap before and after it, overlapping when that gap is negative) and
  advances the timeline by its length. Effects do not duck the music.
* :class:`TimelineChapter` starts at the start of the next line or effect; the first
  chapter always starts at 0 (so the chapters cover the whole episode); a chapter with
  nothing after it starts at the end of the speech.
* Audio with more than two channels is taken as mono (the mean of its channels).
* :class:`TimelineBed` ``start`` starts a music bed at the current position (the end
  of the timeline so far plus any pauses since, so a bed cued between two lines fades in
  during the gap). The bed is resampled to the mix rate, looped (with a ``fade_ms``
  crossfade at each seam) for as long as needed, faded in over ``fade_in`` and ducked
  under speech. A ``stop`` cue (or a new ``start``, or the end of the episode) begins its
  fade-out over the stop cue's ``fade_out`` (else the start cue's) at the current
  position; the episode lasts until the last fade-out has finished. One bed plays at a
  time; a stop with no bed playing does nothing.
* Every cut is faded over ``fade_ms`` (20 ms, a raised-cosine ramp that is exactly 0 at
  the cut): each line's and effect's first and last samples, and bed starts and stops
  (a bed's fades are at least that long); items shorter than two fades get half each.

Ducking
-------
A bed is lowered by ``|duck_db|`` wherever speech plays. The speech intervals are the
placed lines; intervals closer than ``duck_attack_ms + duck_release_ms`` (430 ms) are
merged, so the music stays down through ordinary gaps between lines and comes back up
only in real pauses. Around each merged interval the bed's gain ramps down over
``duck_attack_ms`` before speech starts (it is fully down when the first word starts)
and back up over ``duck_release_ms`` after it ends; the ramps are raised-cosine in dB.

Stereo
------
With ``stereo=True`` each speaker is panned with a constant-power law (``pan`` in
-1..1; speakers without an entry get small default pans in order of appearance:
-0.3, +0.3, -0.15, +0.15, then 0). Mono beds, effects and room tone are centred the same
way; a stereo source keeps its channels at -3 dB each, so every source has the same
power in a mono and a stereo mix. A mono mix takes the mean of a stereo source's
channels.

Master
------
The mix is brought to the target loudness (``target_lufs``, default -19 LUFS mono /
-16 LUFS stereo) and its true peak held at or under ``ceiling_dbtp`` (-1 dBTP) by
:func:`core.audio.loudness.condition` (BS.1770 loudness, a look-ahead limiter checked on a
4x-oversampled signal; stereo: channel-weighted loudness, one linked gain curve). The
loudness gain is capped at ``max_gain_db`` (+24 dB): near-silence is not blown up into
loud noise, it stays quiet and the result reports its real loudness. Audio with no
measurable loudness (under the -70 LUFS gate) gets no gain at all.

The optional room tone (``room_tone_db``) is pink noise added under everything, set
so that it reads ``room_tone_db`` dBFS RMS per channel in the master (the master gain
is predicted from the mix before the tone is added). Its noise is seeded: mixes are
deterministic.

Exports
-------
:func:`export_episode` writes ``<name>.wav`` (PCM_16), ``<name>.mp3`` (constant
bitrate, through soundfile/libsndfile and LAME), ``chapters.json`` (Podcasting 2.0
JSON chapters, version 1.2.0) and ``manifest.json``, each atomically (``manifest.json``
last). The same result gives byte-identical files.

MP3: libsndfile chooses LAME's bitrate from ``compression_level`` (``bitrate =
max - level * (max - min)`` for the MPEG version the sample rate implies; left unset it
gives LAME's ~32-48 kbps), so the level is computed from the bitrate asked for
(128 kbps CBR by default; at 24 kHz that is MPEG-2 layer III, whose rates go up to
160). libsndfile offers no other LAME setting (its algorithm quality stays at LAME's
default). LAME encodes about 120x real time on one core (30 minutes of 24 kHz mono:
~15 s of CPU), so audio longer than 3 minutes is encoded in fixed 3-minute chunks on
as many threads as the process may use, and the chunks' frames are joined into one
stream (see :func:`encode_mp3` and the notes above ``_MPEG1_BITRATES``). The result
decodes like a single encode (the same coding error, none added at the joins), is
gapless (its LAME/Info tag holds the joined stream's frame count, seek table, delay,
padding and both CRCs) and depends only on the audio: LAME is deterministic and the
chunks are fixed by the length, not by the thread count, so exports are byte-identical
run to run (for a given libsndfile/LAME build). A 30-minute mono episode: mix and
master ~4.6 s, WAV + MP3 + JSON ~9.2 s, ~13.8 s in all on 2 cores (bench/mix.py).
"""

from __future__ import annotations

import bisect
import contextlib
import functools
import io
import json
import logging
import math
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

import numpy as np
import numpy.typing as npt

from core.atomic import atomic_path, atomic_write_bytes, atomic_write_text
from core.audio.io import downmix, resample, write_wav
from core.audio.loudness import condition, integrated_lufs, true_peak_db
from core.errors import AudioError

__all__ = [
    "CHAPTERS_VERSION",
    "AudioFile",
    "ExportedEpisode",
    "MixResult",
    "MixSettings",
    "PlacedLine",
    "TimelineBed",
    "TimelineChapter",
    "TimelineItem",
    "TimelineLine",
    "TimelinePause",
    "TimelineSfx",
    "chapters_json",
    "encode_mp3",
    "export_episode",
    "mix_episode",
]

log = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float32]

CHAPTERS_VERSION: Final = "1.2.0"
"""Podcasting 2.0 JSON chapters version written to ``chapters.json``."""

MANIFEST_SCHEMA: Final = 1

_DEFAULT_PANS: Final = (-0.3, 0.3, -0.15, 0.15)
_HALF_POWER: Final = math.sqrt(0.5)
_ROOM_TONE_SEED: Final = 0x5EED


# ------------------------------------------------------------------------- timeline


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


@dataclass(frozen=True, eq=False)
class MixResult:
    """A mastered episode: ``(n,)`` or ``(n, 2)`` float32 audio and its timeline.

    ``lufs`` is the master's integrated loudness (``None`` if it cannot be measured:
    silence, or shorter than 400 ms) and ``true_peak_db`` its 4x true peak (``-inf`` for
    silence).
    """

    audio: FloatArray
    sample_rate: int
    lines: tuple[PlacedLine, ...]
    chapters: tuple[tuple[str, float], ...]
    lufs: float | None
    true_peak_db: float
    target_lufs: float | None = None
    """The loudness the master aimed at (``None``: not mastered)."""
    ceiling_dbtp: float | None = None
    """The true-peak ceiling the master held (``None``: not mastered)."""

    @property
    def duration_sec(self) -> float:
        return float(self.audio.shape[0] / self.sample_rate)

    @property
    def channels(self) -> int:
        return 1 if self.audio.ndim == 1 else int(self.audio.shape[1])


@dataclass(frozen=True)
class ExportedEpisode:
    """The files :func:`export_episode` wrote."""

    wav: Path
    mp3: Path
    manifest: Path
    chapters: Path


# --------------------------------------------------------------------------- mixing


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


def mix_episode(items: Sequence[TimelineItem], settings: MixSettings = _DEFAULTS) -> MixResult:
    """Place ``items`` on a timeline, mix them and master the result.

    See the module docstring for the rules. Raises :class:`ValueError` for audio that is
    not finite or has the wrong shape, naming the line. The whole episode is held in
    memory (previews, tests); :func:`render_episode_files` streams long episodes.
    """
    plan = _plan(items, settings)
    sr = settings.sample_rate
    buffers = _mix_window(plan, 0, plan.length, {})
    audio = buffers[0] if plan.channels == 1 else np.column_stack(buffers)
    del buffers
    if plan.length == 0:
        return MixResult(audio, sr, plan.lines, plan.chapters, None, -math.inf)
    if not settings.master:
        lufs = integrated_lufs(audio, sr)
        return MixResult(audio, sr, plan.lines, plan.chapters, lufs, true_peak_db(audio, sr))
    return _master(audio, sr, settings, plan.lines, plan.chapters)


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
        assert cue.audio is not None  # checked when the cue was made
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
                assert p.line is not None and isinstance(p.line.audio, AudioFile)
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


def _master(
    audio: FloatArray,
    sr: int,
    settings: MixSettings,
    lines: tuple[PlacedLine, ...],
    chapters: tuple[tuple[str, float], ...],
) -> MixResult:
    target = settings.target
    if settings.room_tone_db is not None:
        # The tone is set for the master: predict the master's gain from the mix.
        measured = integrated_lufs(audio, sr)
        gain_db = 0.0 if measured is None else min(target - measured, settings.max_gain_db)
        _add_room_tone(audio, sr, settings.room_tone_db - gain_db)
    result = condition(
        audio,
        sr,
        target_lufs=target,
        ceiling_dbtp=settings.ceiling_dbtp,
        multichannel=True,
        max_gain_db=settings.max_gain_db,
    )
    return MixResult(
        audio=result.audio,
        sample_rate=sr,
        lines=lines,
        chapters=chapters,
        lufs=result.lufs,
        true_peak_db=result.true_peak_db,
        target_lufs=target,
        ceiling_dbtp=settings.ceiling_dbtp,
    )


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


def _add_room_tone(audio: FloatArray, sr: int, level_db: float) -> None:
    """Add seeded pink noise at ``level_db`` dBFS RMS to every channel (in place)."""
    from scipy import signal  # type: ignore[import-untyped, unused-ignore]

    rng = np.random.default_rng(_ROOM_TONE_SEED)
    n = audio.shape[0]
    fade = min(_samples(0.02, sr), n // 2)
    columns = [audio] if audio.ndim == 1 else [audio[:, c] for c in range(audio.shape[1])]
    # A 3-pole/3-zero approximation of a -3 dB/octave (pink) filter.
    b = [0.049922035, -0.095993537, 0.050612699, -0.004408786]
    a = [1.0, -2.494956002, 2.017265875, -0.522189400]
    for column in columns:
        pink = signal.lfilter(b, a, rng.standard_normal(size=(n,), dtype=np.float32))
        rms = float(np.sqrt(np.mean(np.square(pink, dtype=np.float64))))
        tone = np.asarray(pink * (_gain(level_db) / max(rms, 1e-12)), dtype=np.float32)
        if fade:
            tone[:fade] *= _ramp(fade)
            tone[n - fade :] *= _ramp(fade)[::-1]
        column += tone


# --------------------------------------------------------------------------- export


_NAME = re.compile(r"^[^/\\\x00]+$")


def export_episode(
    result: MixResult,
    folder: Path,
    name: str,
    *,
    title: str,
    mp3_bitrate_kbps: int = 128,
    extra_manifest: Mapping[str, Any] | None = None,
) -> ExportedEpisode:
    """Write ``<name>.wav`` (PCM_16), ``<name>.mp3``, ``chapters.json`` and ``manifest.json``.

    Each file is written atomically; ``manifest.json`` comes last, so its presence means
    the export is complete. ``extra_manifest`` keys are added to the manifest's top level
    (they may not replace its own keys). The same inputs give byte-identical files.
    """
    if not _NAME.match(name) or name in (".", ".."):
        raise ValueError(f"not a usable file name: {name!r}")
    folder = Path(folder)
    manifest = _manifest(result, name, title, mp3_bitrate_kbps, extra_manifest or {})
    paths = ExportedEpisode(
        wav=folder / f"{name}.wav",
        mp3=folder / f"{name}.mp3",
        manifest=folder / "manifest.json",
        chapters=folder / "chapters.json",
    )
    mp3 = encode_mp3(result.audio, result.sample_rate, bitrate_kbps=mp3_bitrate_kbps, title=title)
    write_wav(paths.wav, result.audio, result.sample_rate, subtype="PCM_16")
    atomic_write_bytes(paths.mp3, mp3)
    atomic_write_text(paths.chapters, _json(chapters_json(result)))
    atomic_write_text(paths.manifest, _json(manifest))
    return paths


def chapters_json(result: MixResult | MasteredEpisode) -> dict[str, Any]:
    """Podcasting 2.0 JSON chapters for ``result``."""
    return {
        "version": CHAPTERS_VERSION,
        "chapters": [
            {"startTime": round(start, 3), "title": title} for title, start in result.chapters
        ],
    }


def _manifest(
    result: MixResult | MasteredEpisode,
    name: str,
    title: str,
    bitrate: int,
    extra: Mapping[str, Any],
) -> dict[str, Any]:
    manifest: dict[str, Any] = {
        "schema": MANIFEST_SCHEMA,
        "title": title,
        "duration_sec": round(result.duration_sec, 6),
        "sample_rate": result.sample_rate,
        "channels": result.channels,
        "lufs": _finite(result.lufs, 2),
        "true_peak_dbtp": _finite(result.true_peak_db, 2),
        "target_lufs": result.target_lufs,
        "ceiling_dbtp": result.ceiling_dbtp,
        "files": {
            "wav": f"{name}.wav",
            "mp3": f"{name}.mp3",
            "chapters": "chapters.json",
        },
        "mp3": {"bitrate_kbps": bitrate, "mode": "CBR"},
        "lines": [
            {
                "index": line.index,
                "speaker": line.speaker,
                "text": line.text,
                "start_sec": round(line.start_sec, 6),
                "end_sec": round(line.end_sec, 6),
                "backend": line.backend,
                "seed": line.seed,
            }
            for line in result.lines
        ],
        "chapters": [
            {"title": title, "start_sec": round(start, 6)} for title, start in result.chapters
        ],
    }
    clash = sorted(set(extra) & set(manifest))
    if clash:
        raise ValueError(f"extra_manifest may not replace the manifest's own keys: {clash}")
    manifest.update(extra)
    return manifest


def _finite(value: float | None, digits: int) -> float | None:
    return None if value is None or not math.isfinite(value) else round(value, digits)


def _json(data: Mapping[str, Any]) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False, allow_nan=False) + "\n"


# ------------------------------------------------------------------------------ MP3
#
# MPEG audio layer III facts used here (ISO 11172-3, 13818-3): a frame is a 4-byte
# header, a 16-bit CRC if the protection bit is 0, the side information (17/32 bytes
# for MPEG-1 mono/stereo, 9/17 for MPEG-2 and 2.5) and main data. A frame's audio data
# starts ``main_data_begin`` bytes *before* its own main data, in the previous frames'
# main data areas (the bit reservoir). LAME writes a first, silent "Info" frame that
# holds the frame count, byte count, seek table, encoder delay and padding (gapless
# playback) and two CRC-16s (polynomial 0x8005, reflected, initial 0).
#
# Chunked encoding: chunk k covers frames [b_k, b_k+1) of the whole stream. Its encoder
# starts 16 frames early (the input is cut on a frame boundary, so its frames line up
# with the whole stream's) and runs 56 frames past the end, so that around a join both
# encoders are coding the same audio with warmed-up state. The join is made at the
# first frame J at or after b_k+1 where (1) the next chunk's frame J takes no more
# reservoir bytes than this chunk's frame J does (those bytes are frame J's own, so
# they can be overwritten with the next chunk's), and (2) the block types meet (the
# window half that ends frame J-1 in this chunk matches the one that starts frame J in
# the next). Frame J's reservoir bytes are copied into the end of this chunk's frames
# and the rest of the next chunk follows. If no join is found in the window, the
# whole stream is encoded in one piece.

_MPEG1_BITRATES: Final = (32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320)
_MPEG2_BITRATES: Final = (8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160)
_MP3_RATES: Final = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)
_BITRATE_INDEX: Final = {
    3: (0, *_MPEG1_BITRATES),  # MPEG-1
    2: (0, *_MPEG2_BITRATES),  # MPEG-2
    0: (0, *_MPEG2_BITRATES),  # MPEG-2.5
}
_RATE_INDEX: Final = (44100, 48000, 32000)
_MP3_CHUNK_SEC: Final = 180.0
_MP3_PREROLL: Final = 16
_MP3_WINDOW: Final = 48
_MP3_TAIL: Final = 8
_MP3_MAX_THREADS: Final = 8
_LAME_TAG_SIZE: Final = 36


def encode_mp3(
    audio: npt.NDArray[Any],
    sample_rate: int,
    *,
    bitrate_kbps: int = 128,
    title: str | None = None,
) -> bytes:
    """Encode mono or stereo float audio as a constant-bitrate MP3 (LAME via libsndfile).

    ``sample_rate`` must be an MP3 rate (8 to 48 kHz) and ``bitrate_kbps`` one of the
    rates its MPEG version allows (MPEG-1, 32-48 kHz: 32..320; MPEG-2/2.5, 8-24 kHz:
    8..160, libsndfile allows at most 64 below 16 kHz). Audio longer than 3 minutes is
    encoded in 3-minute chunks on several threads and joined (see the module
    docstring); the result depends only on the input. ``title`` adds an ID3v2.4 tag.
    """
    a = np.asarray(audio, dtype=np.float32)
    if a.ndim == 2 and a.shape[1] == 1:
        a = a[:, 0]
    if a.ndim not in (1, 2) or (a.ndim == 2 and a.shape[1] != 2):
        raise ValueError(f"MP3 audio must be (n,) or (n, 2), got shape {a.shape}")
    if sample_rate not in _MP3_RATES:
        raise ValueError(f"MP3 cannot hold {sample_rate} Hz; use one of {list(_MP3_RATES)}")
    level = _compression_level(sample_rate, bitrate_kbps)
    frame = 1152 if sample_rate >= 32000 else 576
    n = a.shape[0]
    chunks = max(1, math.ceil(n / (_MP3_CHUNK_SEC * sample_rate)))
    data: bytes | None = None
    if chunks > 1:
        data = _encode_chunked(a, sample_rate, level, frame, chunks)
        if data is None:
            log.warning("MP3: no clean join between chunks; encoding in one piece")
    if data is None:
        data = _lame(a, sample_rate, level)
    return (_id3(title) if title else b"") + data


def _compression_level(sample_rate: int, bitrate: int) -> float:
    """libsndfile's ``compression_level`` that makes LAME use ``bitrate`` kbps (CBR)."""
    allowed: tuple[int, ...]
    if sample_rate >= 32000:
        allowed, high, low = _MPEG1_BITRATES, 320.0, 32.0
    elif sample_rate >= 16000:
        allowed, high, low = _MPEG2_BITRATES, 160.0, 8.0
    else:
        allowed, high, low = _MPEG2_BITRATES[:8], 64.0, 8.0
    if bitrate not in allowed:
        raise ValueError(
            f"MP3 at {sample_rate} Hz cannot be {bitrate!r} kbps; use one of {list(allowed)}"
        )
    # libsndfile computes int(high - level * (high - low)): aim half a kbps above.
    return min(1.0, max(0.0, (high - bitrate - 0.5) / (high - low)))


def _lame(audio: FloatArray, sample_rate: int, level: float) -> bytes:
    import soundfile as sf

    buffer = io.BytesIO()
    try:
        with sf.SoundFile(
            buffer,
            "w",
            samplerate=sample_rate,
            channels=1 if audio.ndim == 1 else 2,
            format="MP3",
            subtype="MPEG_LAYER_III",
            compression_level=level,
            bitrate_mode="CONSTANT",
        ) as f:
            f.write(audio)
    except (sf.SoundFileError, RuntimeError, TypeError) as exc:
        raise AudioError(f"cannot encode MP3 ({exc}); libsndfile needs MP3 support (1.1+)") from exc
    return buffer.getvalue()


@dataclass(frozen=True)
class _Frame:
    pos: int
    size: int
    head: int  # header + CRC + side information: main data starts here


@dataclass(frozen=True)
class _Side:
    reservoir: int  # main_data_begin
    first: tuple[int, ...]  # block type of the first granule, per channel
    last: tuple[int, ...]  # block type of the last granule, per channel


def _frames(data: bytes) -> list[_Frame]:
    """The MPEG frames of ``data`` (after any ID3v2 tag), up to the first non-frame."""
    pos = 0
    if data[:3] == b"ID3" and len(data) >= 10:
        pos = 10 + ((data[6] << 21) | (data[7] << 14) | (data[8] << 7) | data[9])
    frames: list[_Frame] = []
    end = len(data)
    while pos + 4 <= end:
        h = int.from_bytes(data[pos : pos + 4], "big")
        version = (h >> 19) & 3
        bitrate_index = (h >> 12) & 15
        rate_index = (h >> 10) & 3
        if (h >> 21) != 0x7FF or version == 1 or ((h >> 17) & 3) != 1:
            break
        if bitrate_index in (0, 15) or rate_index == 3:
            break
        mpeg1 = version == 3
        rate = _RATE_INDEX[rate_index] >> (0 if mpeg1 else 1 if version == 2 else 2)
        kbps = _BITRATE_INDEX[version][bitrate_index]
        size = (144000 if mpeg1 else 72000) * kbps // rate + ((h >> 9) & 1)
        channels = 1 if ((h >> 6) & 3) == 3 else 2
        head = 4 + (0 if (h >> 16) & 1 else 2) + _side_size(mpeg1, channels)
        if pos + size > end:
            break
        frames.append(_Frame(pos, size, head))
        pos += size
    return frames


def _side_size(mpeg1: bool, channels: int) -> int:
    if mpeg1:
        return 17 if channels == 1 else 32
    return 9 if channels == 1 else 17


def _side(data: bytes, frame: _Frame) -> _Side:
    """``main_data_begin`` and the granules' block types from a frame's side information."""
    h = int.from_bytes(data[frame.pos : frame.pos + 4], "big")
    mpeg1 = ((h >> 19) & 3) == 3
    channels = 1 if ((h >> 6) & 3) == 3 else 2
    size = _side_size(mpeg1, channels)
    bits = int.from_bytes(data[frame.pos + frame.head - size : frame.pos + frame.head], "big")
    total = size * 8
    read = 0

    def take(count: int) -> int:
        nonlocal read
        read += count
        return (bits >> (total - read)) & ((1 << count) - 1)

    reservoir = take(9 if mpeg1 else 8)
    take((5 if channels == 1 else 3) if mpeg1 else channels)  # private bits
    if mpeg1:
        take(4 * channels)  # scfsi
    granules: list[tuple[int, ...]] = []
    for _ in range(2 if mpeg1 else 1):
        types = []
        for _ in range(channels):
            take(12 + 9 + 8 + (4 if mpeg1 else 9))  # part2_3, big_values, gain, sf_compress
            if take(1):  # window switching
                types.append(take(2))
                take(1 + 10 + 9)  # mixed block, 2 table selects, 3 subblock gains
            else:
                types.append(0)
                take(15 + 4 + 3)  # 3 table selects, region counts
            take(3 if mpeg1 else 2)  # (preflag,) scalefac_scale, count1table
        granules.append(tuple(types))
    return _Side(reservoir, granules[0], granules[-1])


def _meets(before: tuple[int, ...], after: tuple[int, ...]) -> bool:
    """Whether a granule ending with ``before`` block types may precede ``after``'s."""
    # Types: 0 normal (long/long), 1 start (long/short), 2 short, 3 stop (short/long).
    return all((b in (0, 3)) == (a in (0, 1)) for b, a in zip(before, after, strict=True))


def _threads() -> int:
    try:
        count = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        count = os.cpu_count() or 1
    return max(1, min(_MP3_MAX_THREADS, count))


def _encode_chunked(
    audio: FloatArray, sample_rate: int, level: float, frame: int, chunks: int
) -> bytes | None:
    """Encode ``chunks`` pieces on threads and join their frames; None if no clean join."""
    n = audio.shape[0]
    total_frames = math.ceil(n / frame)
    bounds = [round(k * total_frames / chunks) for k in range(chunks + 1)]
    spans = []
    for k in range(chunks):
        first = 0 if k == 0 else (bounds[k] - _MP3_PREROLL) * frame
        last = n if k == chunks - 1 else (bounds[k + 1] + _MP3_WINDOW + _MP3_TAIL) * frame
        spans.append((max(0, first), min(n, last)))
    with ThreadPoolExecutor(max_workers=min(_threads(), chunks)) as pool:
        encoded = list(pool.map(lambda s: _lame(audio[s[0] : s[1]], sample_rate, level), spans))
    parsed = [_frames(d) for d in encoded]
    # Frame g of the whole stream is frame g - offset of a chunk, + 1 for its Info frame.
    offsets = [s[0] // frame for s in spans]
    joins = []
    for k in range(chunks - 1):
        join = _find_join(encoded[k], parsed[k], offsets[k], encoded[k + 1], parsed[k + 1],
                          offsets[k + 1], bounds[k + 1])  # fmt: skip
        if join is None:
            return None
        joins.append(join)
    last_frames = offsets[-1] + len(parsed[-1]) - 1
    edges = [0, *joins, last_frames]

    info = parsed[0][0]
    out = bytearray(encoded[0][info.pos : info.pos + info.size])
    main_areas: list[tuple[int, int]] = []  # main data [start, end) of each output frame
    positions: list[int] = []  # where each output frame (after the Info frame) starts
    for k in range(chunks):
        data, frames, offset = encoded[k], parsed[k], offsets[k]
        first, last = edges[k] + 1 - offset, edges[k + 1] + 1 - offset
        if first < 1 or last > len(frames):
            return None
        if k > 0 and not _carry_reservoir(out, main_areas, data, frames, first):
            return None
        base = len(out) - frames[first].pos
        for f in frames[first:last]:
            positions.append(base + f.pos)
            main_areas.append((base + f.pos + f.head, base + f.pos + f.size))
        out += data[frames[first].pos : frames[last - 1].pos + frames[last - 1].size]
    return _retag(out, info.size, positions, n, frame)


def _find_join(
    data: bytes,
    frames: list[_Frame],
    offset: int,
    next_data: bytes,
    next_frames: list[_Frame],
    next_offset: int,
    bound: int,
) -> int | None:
    for join in range(bound, bound + _MP3_WINDOW):
        here = join + 1 - offset
        there = join + 1 - next_offset
        if here + 1 > len(frames) or there >= len(next_frames) or there < 2:
            return None
        ending = _side(data, frames[here - 1]).last
        mine = _side(data, frames[here]).reservoir
        theirs = _side(next_data, next_frames[there])
        if theirs.reservoir <= mine and _meets(ending, theirs.first):
            return join
    return None


def _carry_reservoir(
    out: bytearray,
    main_areas: list[tuple[int, int]],
    data: bytes,
    frames: list[_Frame],
    first: int,
) -> bool:
    """Copy the reservoir bytes ``frames[first]`` reads into the end of ``out``'s frames."""
    need = _side(data, frames[first]).reservoir
    if need == 0:
        return True
    carried = b""
    index = first - 1
    while len(carried) < need and index >= 1:
        f = frames[index]
        carried = data[f.pos + f.head : f.pos + f.size] + carried
        index -= 1
    if len(carried) < need:
        return False
    carried = carried[len(carried) - need :]
    left = need
    for start, end in reversed(main_areas):
        take = min(left, end - start)
        out[end - take : end] = carried[left - take : left]
        left -= take
        if left == 0:
            return True
    return False


def _retag(
    stream: bytearray, info_size: int, positions: list[int], samples: int, frame: int
) -> bytes | None:
    """Rewrite the Info frame (``stream[:info_size]``) for the joined stream.

    ``positions`` are where the stream's audio frames start.
    """
    music = _crc16(bytes(stream[info_size:]))
    info = _retagged_info(
        stream[:info_size], len(positions), len(stream), positions, samples, frame, music
    )
    if info is None:
        return None
    stream[:info_size] = info
    return bytes(stream)


def _retagged_info(
    info: bytearray,
    count: int,
    size: int,
    positions: Sequence[int],
    samples: int,
    frame: int,
    music_crc: int,
) -> bytearray | None:
    """The Info frame ``info`` rewritten for a stream of ``count`` frames and ``size`` bytes.

    ``positions`` are where the frames start (only the seek table's 99 are read);
    ``music_crc`` is the CRC-16 of everything after the Info frame.
    """
    info_size = len(info)
    tag_at = info.find(b"Info")
    if tag_at < 0:
        tag_at = info.find(b"Xing")
    if tag_at < 0:
        return None
    flags = int.from_bytes(info[tag_at + 4 : tag_at + 8], "big")
    if flags & 7 != 7:
        return None
    fields = tag_at + 8
    info[fields : fields + 4] = count.to_bytes(4, "big")
    info[fields + 4 : fields + 8] = size.to_bytes(4, "big")
    toc = fields + 8
    info[toc] = 0
    for i in range(1, 100):  # where i percent of the frames lie, in 1/256ths of the bytes
        info[toc + i] = min(255, 256 * positions[(i * count) // 100] // size)
    lame = toc + 100 + (4 if flags & 8 else 0)
    if info[lame : lame + 4] != b"LAME" or lame + _LAME_TAG_SIZE > info_size:
        return None
    delay = int.from_bytes(info[lame + 21 : lame + 24], "big") >> 12
    padding = count * frame - delay - samples
    if not 0 <= padding < 4096:
        return None
    info[lame + 21 : lame + 24] = ((delay << 12) | padding).to_bytes(3, "big")
    info[lame + 28 : lame + 32] = size.to_bytes(4, "big")
    info[lame + 32 : lame + 34] = music_crc.to_bytes(2, "big")
    tag_crc = _crc16(bytes(info[: lame + 34]))
    info[lame + 34 : lame + 36] = tag_crc.to_bytes(2, "big")
    return info


@functools.lru_cache(maxsize=1)
def _crc_table() -> npt.NDArray[np.uint16]:
    table = np.zeros(256, dtype=np.uint16)
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0xA001 if c & 1 else c >> 1
        table[i] = c
    return table


@functools.lru_cache(maxsize=4)
def _crc_shift(block: int) -> tuple[list[int], list[int]]:
    """Tables that advance a CRC register over ``block`` zero bytes (low, high byte)."""
    table = _crc_table()
    low = np.arange(256, dtype=np.uint16)
    high = (np.arange(256, dtype=np.uint32) << 8).astype(np.uint16)
    for _ in range(block):
        low = (low >> 8) ^ table[low & 0xFF]
        high = (high >> 8) ^ table[high & 0xFF]
    return [int(v) for v in low], [int(v) for v in high]


def _crc16(data: bytes, block: int = 2048) -> int:
    """CRC-16 (0x8005 reflected, initial 0: LAME's) of ``data``, vectorised over blocks.

    Leading zero bytes leave this CRC at 0, so the data is zero-padded in front to whole
    blocks; the blocks' CRCs are computed side by side and then chained (the CRC is
    linear: the running value is advanced over a block of zeros and the block's CRC
    added).
    """
    table = _crc_table()
    raw = np.frombuffer(data, dtype=np.uint8)
    count = -(-raw.size // block)
    padded = np.zeros(count * block, dtype=np.uint8)
    padded[padded.size - raw.size :] = raw
    rows = padded.reshape(count, block)
    crc = np.zeros(count, dtype=np.uint16)
    for j in range(block):
        crc = (crc >> 8) ^ table[(crc ^ rows[:, j]) & 0xFF]
    low, high = _crc_shift(block)
    value = 0
    for part in crc.tolist():
        value = low[value & 0xFF] ^ high[value >> 8] ^ part
    return value


def _id3(title: str) -> bytes:
    """An ID3v2.4 tag holding ``title`` (TIT2, UTF-8)."""
    text = b"\x03" + title.encode("utf-8")
    frame = b"TIT2" + _synchsafe(len(text)) + b"\x00\x00" + text
    return b"ID3\x04\x00\x00" + _synchsafe(len(frame)) + frame


def _synchsafe(value: int) -> bytes:
    return bytes(((value >> shift) & 0x7F) for shift in (21, 14, 7, 0))


class _Crc16Stream:
    """:func:`_crc16` of bytes fed a piece at a time (the same value for the same bytes)."""

    def __init__(self, block: int = 2048) -> None:
        self.block = block
        self.value = 0
        self.pending = b""

    def feed(self, data: bytes) -> None:
        data = self.pending + data
        whole = len(data) - len(data) % self.block
        self.pending = data[whole:]
        if not whole:
            return
        table = _crc_table()
        rows = np.frombuffer(data[:whole], dtype=np.uint8).reshape(-1, self.block)
        crc = np.zeros(rows.shape[0], dtype=np.uint16)
        for j in range(self.block):
            crc = (crc >> 8) ^ table[(crc ^ rows[:, j]) & 0xFF]
        low, high = _crc_shift(self.block)
        value = self.value
        for part in crc.tolist():
            value = low[value & 0xFF] ^ high[value >> 8] ^ part
        self.value = value

    def finish(self) -> int:
        table = _crc_table().tolist()
        value = self.value
        for byte in self.pending:
            value = (value >> 8) ^ table[(value ^ byte) & 0xFF]
        return value


class _Mp3Unjoinable(Exception):
    """No clean join between two chunks: the stream must be encoded in one piece."""


_MP3_STREAM_BATCH: Final = 4
"""Chunks a streamed MP3 encodes at once (memory: 4 x 3 minutes of audio, held twice)."""
_MP3_KEEP_FRAMES: Final = 32
"""Frames kept in memory at the end of a streamed MP3: a join may write reservoir bytes
(at most 511) into the main data of the frames before it."""


class Mp3Writer:
    """Writes an MP3 of ``samples`` samples fed in order, a block at a time, to ``path``.

    The stream is the one :func:`encode_mp3` makes of the same audio (the same 3-minute
    chunks, encoded on threads a batch at a time, joined the same way; byte-identical),
    written as it goes: memory holds one batch of chunks, not the episode. ``one_piece``
    encodes in one LAME stream instead (the fallback when chunks cannot be joined;
    :meth:`feed` raises :class:`_Mp3Unjoinable` then, and the caller starts again).
    """

    def __init__(
        self,
        path: Path,
        samples: int,
        sample_rate: int,
        channels: int,
        *,
        bitrate_kbps: int = 128,
        title: str | None = None,
        one_piece: bool = False,
    ) -> None:
        import soundfile as sf

        if sample_rate not in _MP3_RATES:
            raise ValueError(f"MP3 cannot hold {sample_rate} Hz; use one of {list(_MP3_RATES)}")
        self.path = path
        self.n = samples
        self.sr = sample_rate
        self.channels = channels
        self.level = _compression_level(sample_rate, bitrate_kbps)
        self.frame = 1152 if sample_rate >= 32000 else 576
        self.tag = _id3(title) if title else b""
        self.fed = 0
        chunks = max(1, math.ceil(samples / (_MP3_CHUNK_SEC * sample_rate)))
        self.one_piece = one_piece or chunks == 1
        self.file = open(path, "wb")  # noqa: SIM115 (closed by close())
        self.file.write(self.tag)
        self.lame: Any = None
        self.lame_path = path.with_name(path.name + ".lame")
        if self.one_piece:
            # LAME rewrites its Info frame at the start of its file: a file of its own.
            self.lame = sf.SoundFile(
                str(self.lame_path), "w", samplerate=sample_rate, channels=channels,
                format="MP3", subtype="MPEG_LAYER_III", compression_level=self.level,
                bitrate_mode="CONSTANT",
            )  # fmt: skip
            return
        total_frames = math.ceil(samples / self.frame)
        self.bounds = [round(k * total_frames / chunks) for k in range(chunks + 1)]
        self.spans: list[tuple[int, int]] = []
        for k in range(chunks):
            first = 0 if k == 0 else (self.bounds[k] - _MP3_PREROLL) * self.frame
            last = (
                samples
                if k == chunks - 1
                else (self.bounds[k + 1] + _MP3_WINDOW + _MP3_TAIL) * self.frame
            )
            self.spans.append((max(0, first), min(samples, last)))
        self.buffer: list[FloatArray] = []
        self.buffer_start = 0  # the sample buffer[0] starts at
        self.next_chunk = 0  # the next chunk to encode
        self.held: tuple[int, bytes, list[_Frame], int] | None = None  # encoded, not emitted
        self.edge = 0  # the stream frame the next emitted chunk starts after
        self.info: bytearray | None = None
        self.out = bytearray()  # frames not yet written (the last few)
        self.out_at = 0  # the stream offset of out[0]
        self.length = 0  # stream bytes so far (Info frame included)
        self.positions: list[int] = []
        self.areas: list[tuple[int, int]] = []  # main data of the last frames (stream offsets)
        self.crc = _Crc16Stream()

    def feed(self, block: npt.NDArray[Any]) -> None:
        a = np.asarray(block, dtype=np.float32)
        if self.fed + a.shape[0] > self.n:
            raise ValueError(f"fed {self.fed + a.shape[0]} samples to an MP3 of {self.n}")
        self.fed += a.shape[0]
        if self.one_piece:
            self.lame.write(a)
            return
        self.buffer.append(a)
        batch = min(_threads(), _MP3_STREAM_BATCH)
        while self.next_chunk < len(self.spans):
            last = min(self.next_chunk + batch, len(self.spans)) - 1
            if self.fed < self.spans[last][1]:
                break
            self._encode(range(self.next_chunk, last + 1))

    def close(self) -> None:
        """Finish the stream (every sample must have been fed)."""
        try:
            if self.fed != self.n:
                raise ValueError(f"an MP3 of {self.n} samples was fed {self.fed}")
            if self.one_piece:
                self.lame.close()
                with open(self.lame_path, "rb") as lame:
                    shutil.copyfileobj(lame, self.file, 1 << 20)
                return
            assert self.held is not None and self.info is not None
            k, data, frames, offset = self.held
            self._emit(k, data, frames, offset, offset + len(frames) - 1)
            self._flush(len(self.out))
            count = len(self.positions)
            info = _retagged_info(
                self.info, count, self.length, self.positions, self.n, self.frame,
                self.crc.finish(),
            )  # fmt: skip
            if info is None:
                raise _Mp3Unjoinable
            self.file.seek(len(self.tag))
            self.file.write(info)
        finally:
            self.file.close()
            self.lame_path.unlink(missing_ok=True)

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            if self.lame is not None:
                self.lame.close()
        self.file.close()
        self.lame_path.unlink(missing_ok=True)

    def _audio(self, start: int, end: int) -> FloatArray:
        if len(self.buffer) > 1:
            whole = np.concatenate(self.buffer)
            self.buffer = [whole]
        return self.buffer[0][start - self.buffer_start : end - self.buffer_start]

    def _encode(self, chunks: range) -> None:
        parts = [self._audio(*self.spans[k]) for k in chunks]
        with ThreadPoolExecutor(max_workers=max(1, len(parts))) as pool:
            encoded = list(pool.map(lambda p: _lame(p, self.sr, self.level), parts))
        del parts
        for k, data in zip(chunks, encoded, strict=True):
            frames = _frames(data)
            offset = self.spans[k][0] // self.frame
            if self.held is None:
                info = frames[0]
                self.info = bytearray(data[info.pos : info.pos + info.size])
                self.length = self.out_at = info.size
                self.file.write(self.info)  # rewritten by close()
            else:
                pk, pdata, pframes, poffset = self.held
                join = _find_join(pdata, pframes, poffset, data, frames, offset,
                                  self.bounds[k])  # fmt: skip
                if join is None:
                    raise _Mp3Unjoinable
                self._emit(pk, pdata, pframes, poffset, join)
            self.held = (k, data, frames, offset)
        self.next_chunk = chunks[-1] + 1
        if self.next_chunk < len(self.spans):  # drop audio no later chunk reads
            keep = self.spans[self.next_chunk][0]
            whole = self._audio(self.buffer_start, self.fed)
            self.buffer = [whole[keep - self.buffer_start :].copy()]
            self.buffer_start = keep

    def _emit(self, k: int, data: bytes, frames: list[_Frame], offset: int, edge: int) -> None:
        """Append chunk ``k``'s frames up to stream frame ``edge`` (after the last edge)."""
        first, last = self.edge + 1 - offset, edge + 1 - offset
        if first < 1 or last > len(frames):
            raise _Mp3Unjoinable
        if k > 0:
            need = _side(data, frames[first]).reservoir
            if need:
                local = [(s - self.out_at, e - self.out_at) for s, e in self.areas]
                local = [(s, e) for s, e in local if s >= 0]
                if not _carry_reservoir(self.out, local, data, frames, first):
                    raise _Mp3Unjoinable
        base = self.length - frames[first].pos
        for f in frames[first:last]:
            self.positions.append(base + f.pos)
            self.areas.append((base + f.pos + f.head, base + f.pos + f.size))
        piece = data[frames[first].pos : frames[last - 1].pos + frames[last - 1].size]
        self.out += piece
        self.length += len(piece)
        self.edge = edge
        del self.areas[:-_MP3_KEEP_FRAMES]
        self._flush(self.areas[0][0] - self.out_at if self.areas else len(self.out))

    def _flush(self, upto: int) -> None:
        """Write ``out[:upto]`` (bytes no join will change any more)."""
        upto = max(0, min(upto, len(self.out)))
        if upto:
            head = bytes(self.out[:upto])
            self.file.write(head)
            self.crc.feed(head)
            del self.out[:upto]
            self.out_at += upto


# ------------------------------------------------------------------ streamed render


StageProgress = Callable[[str, int, int], None]
"""``progress(stage, done, total)``: ``done`` of ``total`` seconds of audio through ``stage``."""

STAGE_MIX: Final = "mixing + loudness"
STAGE_MASTER: Final = "limiter + WAV + MP3"

_WINDOW_SEC: Final = 60.0
_MAKEUP_TOLERANCE_LU: Final = 0.1
_MAKEUP_ROUNDS: Final = 3


@dataclass(frozen=True)
class MasteredEpisode:
    """What :func:`render_episode_files` made (the audio itself is in the files)."""

    sample_rate: int
    channels: int
    samples: int
    lines: tuple[PlacedLine, ...]
    chapters: tuple[tuple[str, float], ...]
    lufs: float | None
    true_peak_db: float
    target_lufs: float | None = None
    ceiling_dbtp: float | None = None

    @property
    def duration_sec(self) -> float:
        return self.samples / self.sample_rate


def plan_has_music_or_effects(items: Sequence[TimelineItem]) -> bool:
    """Whether ``items`` hold a music bed or a sound effect (the master's rate follows)."""
    return any(
        isinstance(i, TimelineSfx) or (isinstance(i, TimelineBed) and i.action == "start")
        for i in items
    )


def render_episode_files(
    items: Sequence[TimelineItem],
    settings: MixSettings,
    folder: Path,
    name: str,
    *,
    title: str,
    tmp_dir: Path,
    mp3_bitrate_kbps: int = 128,
    extra_manifest: Mapping[str, Any] | None = None,
    progress: StageProgress | None = None,
    window_sec: float = _WINDOW_SEC,
) -> tuple[ExportedEpisode, MasteredEpisode]:
    """Mix, master and export an episode of any length in bounded memory.

    The same timeline, mix and master as :func:`mix_episode` + :func:`export_episode`,
    streamed (see "Long episodes" in the module docstring): the mix is made in
    ``window_sec`` windows into a float32 file in ``tmp_dir`` while its loudness is
    measured (:class:`core.audio.loudness.LoudnessMeter`); then each window is read back with
    :data:`core.audio.loudness.LIMIT_CONTEXT` samples of context, gained and limited
    (:func:`core.audio.loudness.limit_window`), measured again and fed to the WAV writer and
    the MP3 encoder (:class:`Mp3Writer`). If limiting took the loudness more than 0.1 LU
    off the target, the second pass is made again with the gain corrected (at most 3
    rounds). Lines given as :class:`AudioFile` are read only while their span is mixed.
    ``progress(stage, done_sec, total_sec)`` follows each window. The intermediate file
    is removed at the end, also on errors. Room tone is not offered here.
    """
    if settings.room_tone_db is not None:
        raise ValueError("room tone is not offered by the streamed render; use mix_episode")
    if not _NAME.match(name) or name in (".", ".."):
        raise ValueError(f"not a usable file name: {name!r}")
    import soundfile as sf

    from core.audio.loudness import LIMIT_CONTEXT, LoudnessMeter, limit_window

    report: StageProgress = progress or (lambda stage, done, total: None)
    plan = _plan(items, settings)
    sr, channels, n = settings.sample_rate, plan.channels, plan.length
    window = max(1, round(window_sec * sr))
    total_sec = math.ceil(n / sr)
    folder = Path(folder)
    paths = ExportedEpisode(
        wav=folder / f"{name}.wav",
        mp3=folder / f"{name}.mp3",
        manifest=folder / "manifest.json",
        chapters=folder / "chapters.json",
    )
    tmp_dir.mkdir(parents=True, exist_ok=True)
    fd, mix_name = tempfile.mkstemp(prefix=f"{name}.", suffix=".mix.f32", dir=tmp_dir)
    os.close(fd)
    mix_path = Path(mix_name)
    try:
        meter = LoudnessMeter(sr, n, channels) if n else None
        loaded: dict[int, FloatArray] = {}
        report(STAGE_MIX, 0, total_sec)
        with open(mix_path, "wb") as f:
            for a in range(0, n, window):
                b = min(n, a + window)
                buffers = _mix_window(plan, a, b, loaded)
                block = buffers[0] if channels == 1 else np.column_stack(buffers)
                del buffers
                assert meter is not None
                meter.add(block)
                f.write(block.tobytes())
                report(STAGE_MIX, math.ceil(b / sr), total_sec)
        loaded.clear()
        measured = None if meter is None else meter.lufs()
        target: float | None = None
        gain = 1.0
        if settings.master and measured is not None:
            target = min(settings.target, measured + settings.max_gain_db)
            gain = _gain(target - measured)

        first_gain = gain

        def master_pass(gain: float, one_piece: bool, label: str) -> tuple[float | None, float]:
            out_meter = LoudnessMeter(sr, n, channels) if n else None
            peak = 0.0
            mp3 = Mp3Writer(mp3_tmp, n, sr, channels, bitrate_kbps=mp3_bitrate_kbps,
                            title=title, one_piece=one_piece)  # fmt: skip
            try:
                with (
                    sf.SoundFile(
                        str(wav_tmp),
                        "w",
                        samplerate=sr,
                        channels=channels,
                        format="WAV",
                        subtype="PCM_16",
                    ) as wav,  # fmt: skip
                    open(mix_path, "rb") as f,
                ):
                    report(label, 0, total_sec)
                    for a in range(0, n, window):
                        b = min(n, a + window)
                        lo, hi = max(0, a - LIMIT_CONTEXT), min(n, b + LIMIT_CONTEXT)
                        f.seek(lo * channels * 4)
                        context = np.fromfile(f, dtype=np.float32, count=(hi - lo) * channels)
                        if channels > 1:
                            context = context.reshape(hi - lo, channels)
                        limited = limit_window(
                            context, sr, gain=gain,
                            ceiling_dbtp=settings.ceiling_dbtp if settings.master else 1000.0,
                            keep=(a - lo, b - lo),
                        )  # fmt: skip
                        del context
                        block = limited.audio
                        assert out_meter is not None
                        out_meter.add(block)
                        peak = max(peak, limited.peak)
                        wav.write(np.clip(block, -1.0, 1.0))
                        mp3.feed(block)
                        report(label, math.ceil(b / sr), total_sec)
                mp3.close()
            except BaseException:
                mp3.abort()
                raise
            return (None if out_meter is None else out_meter.lufs()), peak

        with atomic_path(paths.wav) as wav_tmp, atomic_path(paths.mp3) as mp3_tmp:
            one_piece = False
            rounds = 0
            label = STAGE_MASTER
            while True:
                try:
                    lufs, peak = master_pass(gain, one_piece, label)
                except _Mp3Unjoinable:
                    if one_piece:
                        raise
                    log.warning("MP3: no clean join between chunks; encoding in one piece")
                    one_piece = True
                    continue
                rounds += 1
                if (
                    target is None
                    or lufs is None
                    or rounds >= _MAKEUP_ROUNDS
                    or abs(lufs - target) <= _MAKEUP_TOLERANCE_LU
                ):
                    break
                # Limiting took loudness away: raise the gain (at most +12 dB of make-up).
                wanted = min(gain * _gain(target - lufs), first_gain * _gain(_MAKEUP_MAX_DB))
                if abs(wanted / gain - 1.0) < 1e-4:
                    break
                gain = wanted
                label = f"{STAGE_MASTER} (loudness round {rounds + 1})"
        mastered = MasteredEpisode(
            sample_rate=sr,
            channels=channels,
            samples=n,
            lines=plan.lines,
            chapters=plan.chapters,
            lufs=lufs,
            true_peak_db=_db(peak),
            target_lufs=settings.target if settings.master else None,
            ceiling_dbtp=settings.ceiling_dbtp if settings.master else None,
        )
        manifest = _manifest(mastered, name, title, mp3_bitrate_kbps, extra_manifest or {})
        atomic_write_text(paths.chapters, _json(chapters_json(mastered)))
        atomic_write_text(paths.manifest, _json(manifest))
        return paths, mastered
    finally:
        mix_path.unlink(missing_ok=True)


_MAKEUP_MAX_DB: Final = 12.0


def _db(amplitude: float) -> float:
    return 20.0 * math.log10(amplitude) if amplitude > 0.0 else -math.inf
