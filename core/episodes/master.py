"""The episode master: the mix brought to its loudness target under a true-peak ceiling.

Two paths with the same maths: :func:`mix_episode` (the whole episode in memory: the
reference, for previews and tests) and :func:`render_episode_files` (mix, master and
export streamed in windows through a float32 intermediate on disk, for episodes of any
length; its limiter is :func:`core.audio.limiter.limit_window`). Both report a
:class:`MixResult` / :class:`MasteredEpisode`, whose shared part
(:class:`~core.episodes.export.EpisodeFacts`) is what the manifest and chapters are written
from. Near-silence is not blown up; the optional room tone is seeded, so mixes are
deterministic.

Details: docs/EPISODES.md, "Master format and long episodes"."""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np

from core.atomic import atomic_path
from core.audio.conditioning import MAKEUP_MAX_DB, MAKEUP_TOLERANCE_LU, condition
from core.audio.meter import integrated_lufs, true_peak_db
from core.audio.mp3 import Mp3Unjoinable, Mp3Writer
from core.audio.types import FloatArray
from core.episodes.deliverables import Delivered, Delivery
from core.episodes.export import (
    EpisodeFacts,
    ExportedEpisode,
    episode_paths,
    manifest_for,
    write_chapters_and_manifest,
)
from core.episodes.mixing import (
    _DEFAULTS,
    MixSettings,
    PlacedLine,
    TimelineItem,
    _gain,
    _mix_window,
    _plan,
    _ramp,
    _samples,
)
from core.episodes.tags import Mp3Tags, write_id3
from core.episodes.target import PEAK_TOLERANCE_DB
from core.progress import CancelCheck, StageProgress, check_cancel

__all__ = [
    "STAGE_MASTER",
    "STAGE_MIX",
    "MasteredEpisode",
    "MixResult",
    "mix_episode",
    "render_episode_files",
]

log = logging.getLogger(__name__)


_ROOM_TONE_SEED: Final = 0x5EED


@dataclass(frozen=True, eq=False)
class MixResult(EpisodeFacts):
    """A mastered episode in memory: ``(n,)`` or ``(n, 2)`` float32 audio and its facts
    (:class:`~core.episodes.export.EpisodeFacts`: timeline, loudness, true peak)."""

    audio: FloatArray

    @property
    def duration_sec(self) -> float:
        return float(self.audio.shape[0] / self.sample_rate)

    @property
    def channels(self) -> int:
        return 1 if self.audio.ndim == 1 else int(self.audio.shape[1])


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
        return MixResult(
            audio, sample_rate=sr, lines=plan.lines, chapters=plan.chapters, lufs=None,
            true_peak_db=-math.inf,
        )  # fmt: skip
    if not settings.master:
        return MixResult(
            audio, sample_rate=sr, lines=plan.lines, chapters=plan.chapters,
            lufs=integrated_lufs(audio, sr), true_peak_db=true_peak_db(audio, sr),
        )  # fmt: skip
    return _master(audio, sr, settings, plan.lines, plan.chapters)


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


STAGE_MIX: Final = "mixing + loudness"
STAGE_MASTER: Final = "limiter + WAV + MP3"

_WINDOW_SEC: Final = 60.0
_MAKEUP_ROUNDS: Final = 3


@dataclass(frozen=True)
class MasteredEpisode(EpisodeFacts):
    """What :func:`render_episode_files` made: the facts of a master whose audio is in the
    files (:class:`~core.episodes.export.EpisodeFacts`), its channels and length."""

    channels: int
    samples: int

    @property
    def duration_sec(self) -> float:
        return self.samples / self.sample_rate


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
    cancel: CancelCheck | None = None,
    window_sec: float = _WINDOW_SEC,
    tags: Mp3Tags | None = None,
    deliveries: Sequence[Delivery] = (),
) -> tuple[ExportedEpisode, MasteredEpisode]:
    """Mix, master and export an episode of any length in bounded memory.

    The same timeline, mix and master as :func:`mix_episode` + :func:`export_episode`,
    streamed: the mix is made in
    ``window_sec`` windows into a float32 file in ``tmp_dir`` while its loudness is
    measured (:class:`core.audio.meter.LoudnessMeter`); then each window is read back with
    :data:`core.audio.limiter.LIMIT_CONTEXT` samples of context, gained and limited
    (:func:`core.audio.limiter.limit_window`), measured again and fed to the WAV writer and
    the MP3 encoder (:class:`Mp3Writer`). If limiting took the loudness more than 0.1 LU
    off the target, the second pass is made again with the gain corrected (at most 3
    rounds). Lines given as :class:`AudioFile` are read only while their span is mixed.
    ``progress(stage, done_sec, total_sec)`` follows each window, and ``cancel()`` is polled
    there: once true the render stops with :class:`~core.progress.Cancelled` before the
    episode's files are replaced. The intermediate file is removed at the end, also on
    errors. Room tone is not offered here. ``tags``: ID3 provenance and chapters written into
    the MP3 before it is moved into place (:func:`core.episodes.tags.write_id3`), and the
    same facts in the WAV's ``LIST/INFO`` chunk.
    """
    if settings.room_tone_db is not None:
        raise ValueError("room tone is not offered by the streamed render; use mix_episode")
    paths = episode_paths(folder, name)
    from core.audio.meter import LoudnessMeter

    def report(stage: str, done: int, total: int) -> None:
        if progress is not None:
            progress(stage, done, total)
        check_cancel(cancel)

    plan = _plan(items, settings)
    sr, channels, n = settings.sample_rate, plan.channels, plan.length
    window = max(1, round(window_sec * sr))
    total_sec = math.ceil(n / sr)
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
                assert meter is not None  # nosec B101  # type narrowing only
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

        source = _MixFile(mix_path, n, sr, channels, window)
        ceiling_nominal = settings.ceiling_dbtp if settings.master else None

        def main_pass(ceiling: float, trim: float, again: bool) -> tuple[float | None, float]:
            # The first pass writes the master WAV and its MP3; a pass made again for the
            # MP3's sake (its decoded peak or loudness missed) rewrites the MP3 only.
            with contextlib.ExitStack() as stack:
                wav_tmp = None if again else stack.enter_context(atomic_path(paths.wav))
                mp3_tmp = stack.enter_context(atomic_path(paths.mp3))
                outputs = _Outputs(mp3_tmp, mp3_bitrate_kbps, title, wav_tmp, tags, mp3_trim=trim)
                return _master_rounds(
                    source, gain, target, ceiling, outputs,
                    lambda label, done: report(label, done, total_sec),
                )  # fmt: skip

        encoded = _encode_measured(main_pass, paths.mp3, target, ceiling_nominal, n > 0)
        lufs, peak = encoded.first_lufs, encoded.first_peak  # the WAV's: the first pass
        if tags is not None:
            write_id3(paths.mp3, tags, plan.chapters, n / sr if sr else 0.0)
        main = encoded.delivered("master", paths.mp3, target, ceiling_nominal, channels)
        delivered = [
            _deliver(source, d, measured, paths.mp3.parent, name, mp3_bitrate_kbps, title,
                     lambda label, done: report(label, done, total_sec))
            for d in deliveries
        ]  # fmt: skip
        if tags is not None:
            for d in delivered:
                write_id3(d.path, tags, plan.chapters, n / sr if sr else 0.0)
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
        extra = {
            **(extra_manifest or {}),
            "deliverables": [d.manifest() for d in (main, *delivered)],
        }
        manifest = manifest_for(mastered, name, title, mp3_bitrate_kbps, extra)
        write_chapters_and_manifest(paths, mastered, manifest)
        return paths, mastered
    finally:
        mix_path.unlink(missing_ok=True)


@dataclass(frozen=True)
class _MixFile:
    """The float32 mix intermediate of :func:`render_episode_files`: ``n`` samples of
    ``channels`` at ``sr``, read back in ``window``-sample windows."""

    path: Path
    n: int
    sr: int
    channels: int
    window: int


@dataclass(frozen=True)
class _Outputs:
    """Where one master pass writes: an MP3 and, for the main master, the WAV."""

    mp3: Path
    bitrate_kbps: int
    title: str
    wav: Path | None = None
    tags: Mp3Tags | None = None
    channels: int | None = None
    """Output channels (``None``: the mix's own): mono is the mean, stereo doubles mono."""
    mp3_trim: float = 1.0
    """Gain on the MP3's feed only (after the limiter): what the encoder takes, given back."""


def _layout(block: FloatArray, channels: int) -> FloatArray:
    if channels == 1 and block.ndim == 2:
        return np.ascontiguousarray(block.mean(axis=1, dtype=np.float32))
    if channels == 2 and block.ndim == 1:
        return np.column_stack([block, block])
    return block


def _master_pass(
    mix: _MixFile,
    out: _Outputs,
    gain: float,
    ceiling_dbtp: float,
    one_piece: bool,
    report: Callable[[int], None],
) -> tuple[float | None, float]:
    """One pass over the mix: gain, true-peak limiting, the outputs; returns the output's
    loudness and sample-domain peak (the limiter's reading)."""
    import soundfile as sf

    from core.audio.limiter import LIMIT_CONTEXT, limit_window
    from core.audio.meter import LoudnessMeter

    n, sr, window = mix.n, mix.sr, mix.window
    channels = out.channels or mix.channels
    out_meter = LoudnessMeter(sr, n, channels) if n else None
    peak = 0.0
    mp3 = Mp3Writer(out.mp3, n, sr, channels, bitrate_kbps=out.bitrate_kbps, title=out.title,
                    one_piece=one_piece)  # fmt: skip
    try:
        with contextlib.ExitStack() as stack:
            wav = None
            if out.wav is not None:
                wav = stack.enter_context(
                    sf.SoundFile(
                        str(out.wav),
                        "w",
                        samplerate=sr,
                        channels=channels,
                        format="WAV",
                        subtype="PCM_16",
                    )
                )
                if out.tags is not None:  # LIST/INFO: INAM, IPRD, ICMT, ISFT
                    wav.title, wav.album = out.tags.title, out.tags.show
                    wav.comment, wav.software = out.tags.provenance, out.tags.software
            f = stack.enter_context(open(mix.path, "rb"))
            report(0)
            for a in range(0, n, window):
                b = min(n, a + window)
                lo, hi = max(0, a - LIMIT_CONTEXT), min(n, b + LIMIT_CONTEXT)
                f.seek(lo * mix.channels * 4)
                context = np.fromfile(f, dtype=np.float32, count=(hi - lo) * mix.channels)
                if mix.channels > 1:
                    context = context.reshape(hi - lo, mix.channels)
                limited = limit_window(
                    _layout(context, channels), sr, gain=gain, ceiling_dbtp=ceiling_dbtp,
                    keep=(a - lo, b - lo),
                )  # fmt: skip
                del context
                block = limited.audio
                assert out_meter is not None  # nosec B101  # type narrowing only
                out_meter.add(block)
                peak = max(peak, limited.peak)
                if wav is not None:
                    wav.write(np.clip(block, -1.0, 1.0))
                mp3.feed(block if out.mp3_trim == 1.0 else block * np.float32(out.mp3_trim))
                report(math.ceil(b / sr))
        mp3.close()
    except BaseException:
        mp3.abort()
        raise
    return (None if out_meter is None else out_meter.lufs()), peak


def _master_rounds(
    mix: _MixFile,
    gain: float,
    target: float | None,
    ceiling_dbtp: float,
    out: _Outputs,
    report: Callable[[str, int], None],
    label: str = STAGE_MASTER,
) -> tuple[float | None, float]:
    """Master passes until the output's loudness is within 0.1 LU of ``target`` (make-up
    after limiting, at most 3 passes and +12 dB); an MP3 that cannot be joined from chunks
    is encoded again in one piece."""
    first_gain, one_piece, rounds, stage = gain, False, 0, label
    while True:
        try:
            lufs, peak = _master_pass(
                mix, out, gain, ceiling_dbtp, one_piece, functools.partial(report, stage)
            )
        except Mp3Unjoinable:
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
            or abs(lufs - target) <= MAKEUP_TOLERANCE_LU
        ):
            return lufs, peak
        # Limiting took loudness away: raise the gain (at most +12 dB of make-up).
        wanted = min(gain * _gain(target - lufs), first_gain * _gain(MAKEUP_MAX_DB))
        if abs(wanted / gain - 1.0) < 1e-4:
            return lufs, peak
        gain = wanted
        stage = f"{label} (loudness round {rounds + 1})"


def _deliver(
    mix: _MixFile,
    delivery: Delivery,
    measured: float | None,
    folder: Path,
    name: str,
    bitrate_kbps: int,
    title: str,
    report: Callable[[str, int], None],
) -> Delivered:
    """One platform MP3 from the mix: mastered to the delivery's target, decoded and
    measured, made again while its decoded peak or loudness misses (:func:`_encode_measured`)."""
    path = folder / f"{name}.{delivery.label}.mp3"
    # A mono mix doubled into stereo reads 3.01 dB louder (two equal channels); a stereo mix
    # folded to mono is estimated the same way down, and make-up corrects what is left.
    doubled = 10.0 * math.log10(2.0)
    change = {(1, 2): doubled, (2, 1): -doubled}.get((mix.channels, delivery.channels), 0.0)
    gain = 1.0 if measured is None else _gain(delivery.lufs - (measured + change))
    label = f"{STAGE_MASTER} ({delivery.label})"

    def one_pass(ceiling: float, trim: float, again: bool) -> tuple[float | None, float]:
        with atomic_path(path) as tmp:
            out = _Outputs(tmp, bitrate_kbps, title, channels=delivery.channels, mp3_trim=trim)
            return _master_rounds(mix, gain, delivery.lufs, ceiling, out, report, label)

    encoded = _encode_measured(one_pass, path, delivery.lufs, delivery.ceiling_dbtp, True)
    return encoded.delivered(
        delivery.label, path, delivery.lufs, delivery.ceiling_dbtp, delivery.channels
    )


@dataclass(frozen=True)
class _Encoded:
    first_lufs: float | None
    first_peak: float
    """The first pass's loudness and peak before encoding (the master WAV's)."""
    decoded_lufs: float | None
    decoded_peak: float
    encodes: int

    def delivered(
        self, label: str, path: Path, target: float | None, ceiling: float | None, channels: int
    ) -> Delivered:
        return Delivered(label, path, target, ceiling, channels, self.decoded_lufs,
                         self.decoded_peak, self.encodes)  # fmt: skip


def _encode_measured(
    run: Callable[[float, float, bool], tuple[float | None, float]],
    mp3: Path,
    target: float | None,
    ceiling: float | None,
    audible: bool,
) -> _Encoded:
    """``run(ceiling, mp3_trim, again)`` (a master pass writing ``mp3``; ``again`` for the
    passes after the first), then ``mp3`` decoded and
    measured; again while the decoded true peak is over ``ceiling`` (the limiter's ceiling
    lowered by the overshoot) or the decoded loudness is off ``target`` by more than
    :data:`~core.episodes.deliverables.DECODED_TOLERANCE_LU` (the MP3's feed trimmed: at
    128 kbit/s LAME's quantiser takes ~0.45 dB evenly from every band), at most
    :data:`~core.episodes.deliverables.ENCODE_ROUNDS` passes. ``None`` target and ceiling:
    no master (measured only)."""
    from core.episodes.deliverables import DECODED_TOLERANCE_LU, ENCODE_ROUNDS, measure_decoded

    limit, trim = (1000.0 if ceiling is None else ceiling), 1.0
    first: tuple[float | None, float] | None = None
    for encodes in range(1, ENCODE_ROUNDS + 1):
        lufs, peak = run(limit, trim, first is not None)
        first = first or (lufs, peak)
        decoded_lufs, decoded_peak = measure_decoded(mp3) if audible else (None, -math.inf)
        over = 0.0 if ceiling is None else decoded_peak - ceiling
        off = 0.0 if target is None or decoded_lufs is None else target - decoded_lufs
        if (over <= PEAK_TOLERANCE_DB and abs(off) <= DECODED_TOLERANCE_LU) or (
            encodes == ENCODE_ROUNDS
        ):
            break
        if over > PEAK_TOLERANCE_DB:
            limit -= over + 0.1  # the encoder overshot: leave it that much more room
        if abs(off) > DECODED_TOLERANCE_LU:
            trim *= _gain(off)
    assert first is not None  # nosec B101  # ENCODE_ROUNDS >= 1: type narrowing only
    return _Encoded(first[0], first[1], decoded_lufs, decoded_peak, encodes)


def _db(amplitude: float) -> float:
    return 20.0 * math.log10(amplitude) if amplitude > 0.0 else -math.inf
