"""core.episodes.mixing: timeline placement, fades, beds and ducking, master, exports, MP3
encoding."""

from __future__ import annotations

import io
import itertools
import json
import math
from functools import cache
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pyloudnorm
import pytest
import soundfile as sf
from scipy import signal

from core.audio import mp3
from core.audio.meter import true_peak_db
from core.audio.mp3 import encode_mp3
from core.episodes import master, mixing
from core.episodes.export import export_episode
from core.episodes.master import MixResult, mix_episode
from core.episodes.mixing import (
    MixSettings,
    TimelineBed,
    TimelineItem,
    TimelineLine,
    TimelinePause,
)
from core.episodes.synthesis.draft import DraftVoice, synthesize

SR = 24000
FADE = round(0.020 * SR)
Audio = npt.NDArray[np.float32]


@cache
def speech(text: str, pitch: int = 40, language: str = "en-us") -> Audio:
    audio = synthesize(text, DraftVoice(language=language, pitch=pitch), sample_rate=SR)
    audio.setflags(write=False)
    return audio


def tone(freq: float, seconds: float, amplitude: float = 0.3, sr: int = SR) -> Audio:
    t = np.arange(round(seconds * sr)) / sr
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def noise(seconds: float, level: float = 0.1, seed: int = 0) -> Audio:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(round(seconds * SR)) * level).astype(np.float32)


def line(index: int, speaker: str, audio: Audio, sr: int = SR) -> TimelineLine:
    return TimelineLine(
        index=index,
        speaker=speaker,
        text=f"line {index}",
        audio=audio,
        sample_rate=sr,
        seed=100 + index,
        backend="test",
    )


def starts(result: MixResult) -> list[int]:
    return [round(p.start_sec * result.sample_rate) for p in result.lines]


def ends(result: MixResult) -> list[int]:
    return [round(p.end_sec * result.sample_rate) for p in result.lines]


def peak_8x_db(audio: npt.NDArray[np.floating]) -> float:
    """An independent true-peak meter: near-ideal reconstruction (tests.meters), all channels."""
    from tests.meters import ideal_true_peak_db

    return ideal_true_peak_db(audio)


def pyloudnorm_lufs(audio: npt.NDArray[np.floating], sr: int) -> float:
    return float(pyloudnorm.Meter(sr).integrated_loudness(np.asarray(audio, dtype=np.float64)))


def amplitude_at(audio: Audio, freq: float, start_sec: float, seconds: float = 0.2) -> float:
    """Amplitude of the ``freq`` component in a window (lock-in: whole cycles)."""
    a, n = round(start_sec * SR), round(seconds * SR)
    t = np.arange(a, a + n) / SR
    x = np.asarray(audio[a : a + n], dtype=np.float64)
    i = 2.0 * np.mean(x * np.sin(2 * np.pi * freq * t))
    q = 2.0 * np.mean(x * np.cos(2 * np.pi * freq * t))
    return math.hypot(i, q)


# --- timeline -------------------------------------------------------------------------


def test_gaps_between_speakers_and_same_speaker() -> None:
    a, b, c = noise(1.0, seed=1), noise(0.5, seed=2), noise(0.7, seed=3)
    result = mix_episode([line(0, "HOST", a), line(1, "GUEST", b), line(2, "GUEST", c)])
    first = 0
    second = a.size + round(0.250 * SR)
    third = second + b.size + round(0.150 * SR)
    assert starts(result) == [first, second, third]
    assert ends(result) == [a.size, second + b.size, third + c.size]
    assert result.audio.shape == (third + c.size,)
    # The audio is where the timeline says: silence in the gaps, sound in the lines.
    out = result.audio
    assert out[0] == 0.0 and out[1] != 0.0
    assert np.all(out[a.size : second + 1] == 0.0)
    assert out[second + 1] != 0.0
    assert out[third] == 0.0 and out[third + 1] != 0.0


def test_custom_gaps_overlap_and_clamping() -> None:
    a, b, c = noise(1.0, seed=1), noise(0.5, seed=2), noise(0.2, seed=3)
    settings = MixSettings(gap_ms=-300, same_speaker_gap_ms=40)
    result = mix_episode([line(0, "HOST", a), line(1, "GUEST", b), line(2, "GUEST", c)], settings)
    second = a.size - round(0.300 * SR)  # overlaps the first line's tail
    third = second + b.size + round(0.040 * SR)
    assert starts(result) == [0, second, third]
    # An overlap longer than the previous line starts with it, never before it.
    settings = MixSettings(gap_ms=-5000)
    result = mix_episode([line(0, "HOST", a), line(1, "GUEST", b)], settings)
    assert starts(result) == [0, 0]
    assert result.audio.shape == (a.size,)


def test_overlapping_line_mixes_over_the_tail() -> None:
    a, b = tone(300.0, 2.0), tone(2000.0, 1.0)
    result = mix_episode([line(0, "HOST", a), line(1, "GUEST", b)], MixSettings(gap_ms=-500))
    second = a.size - SR // 2
    assert starts(result)[1] == second
    # Both tones sound in the overlap.
    assert amplitude_at(result.audio, 300.0, 1.7) > 0.05
    assert amplitude_at(result.audio, 2000.0, 1.7) > 0.05


def test_pauses_add_silence() -> None:
    a, b = noise(1.0, seed=1), noise(0.5, seed=2)
    items: list[TimelineItem] = [
        TimelinePause(0.5),
        line(0, "HOST", a),
        TimelinePause(1.2),
        TimelinePause(0.3),
        line(1, "GUEST", b),
        TimelinePause(2.0),
    ]
    result = mix_episode(items)
    first = round(0.5 * SR)
    second = first + a.size + round(0.250 * SR) + round(1.2 * SR) + round(0.3 * SR)
    assert starts(result) == [first, second]
    assert result.audio.shape == (second + b.size + 2 * SR,)
    # A negative gap does not reach across a pause.
    result = mix_episode(items, MixSettings(gap_ms=-200))
    assert starts(result)[1] == first + a.size + round(1.5 * SR)


def test_sound_effect_is_placed_like_a_line_and_advances_the_timeline() -> None:
    a, fx, b = noise(1.0, seed=1), tone(1000.0, 0.6), noise(0.5, seed=2)
    result = mix_episode(
        [line(0, "HOST", a), mixing.TimelineSfx(fx, SR, volume_db=-6.0), line(1, "HOST", b)]
    )
    gap = round(0.250 * SR)
    fx_start = a.size + gap
    assert starts(result) == [0, fx_start + fx.size + gap]  # the effect breaks same-speaker
    assert amplitude_at(result.audio, 1000.0, fx_start / SR + 0.2) > 0.01


def test_lines_at_other_rates_are_resampled() -> None:
    a = tone(300.0, 1.0, sr=22050)
    result = mix_episode([line(0, "HOST", a, sr=22050)])
    assert result.audio.shape == (SR,)
    assert result.lines[0].end_sec == pytest.approx(1.0)


def test_fades_at_every_cut() -> None:
    a = noise(1.0, level=0.05, seed=4)
    result = mix_episode([TimelinePause(0.5), line(0, "HOST", a)])
    start = SR // 2
    out = result.audio[start : start + a.size].astype(np.float64)
    gain = np.median(out[FADE:-FADE] / a[FADE:-FADE])
    assert np.allclose(out[FADE:-FADE], gain * a[FADE:-FADE], rtol=1e-4, atol=1e-7)
    ramp = out[:FADE] / (gain * a[:FADE].astype(np.float64))
    assert ramp[0] == 0.0
    assert np.all(np.diff(ramp) > 0.0) and 0.99 < ramp[-1] < 1.0
    expected = np.sin(0.5 * np.pi * np.arange(FADE) / FADE) ** 2
    assert np.allclose(ramp, expected, atol=1e-4)
    tail = out[-FADE:] / (gain * a[-FADE:].astype(np.float64))
    assert np.allclose(tail, expected[::-1], atol=1e-4)
    assert out[-1] == 0.0


# --- chapters ---------------------------------------------------------------------------


def test_chapters_start_at_the_next_line() -> None:
    a, b = noise(1.0, seed=1), noise(0.5, seed=2)
    result = mix_episode(
        [
            TimelinePause(0.4),
            mixing.TimelineChapter("Intro"),
            line(0, "HOST", a),
            mixing.TimelineChapter("Main"),
            TimelinePause(1.0),
            mixing.TimelineSfx(tone(800.0, 0.3), SR),
            line(1, "GUEST", b),
            mixing.TimelineChapter("Outro"),
        ]
    )
    fx_start = round(0.4 * SR) + a.size + round(0.25 * SR) + SR
    assert result.chapters == (
        ("Intro", 0.0),  # the first chapter covers the start of the episode
        ("Main", fx_start / SR),
        ("Outro", result.lines[-1].end_sec),
    )


# --- beds -------------------------------------------------------------------------------


def test_bed_is_ducked_under_speech_by_the_cue() -> None:
    bed = tone(2000.0, 3.0, amplitude=0.1)
    talk = tone(300.0, 4.0, amplitude=0.3)
    items: list[TimelineItem] = [
        TimelineBed("start", bed, SR, fade_in=0.5, duck_db=-14.0),
        TimelinePause(2.0),
        line(0, "HOST", talk),
        TimelinePause(2.0),
        line(1, "GUEST", talk),
    ]
    result = mix_episode(items)
    in_gap = amplitude_at(result.audio, 2000.0, 1.2)  # after the fade-in, before the attack
    under = amplitude_at(result.audio, 2000.0, 2.25 + 1.8)  # middle of the first line
    after = amplitude_at(result.audio, 2000.0, 6.25 + 1.0)  # in the 2 s pause, released
    assert 20 * math.log10(under / in_gap) == pytest.approx(-14.0, abs=1.0)
    assert 20 * math.log10(after / in_gap) == pytest.approx(0.0, abs=1.0)
    # The attack is over before the line starts; the release ramps up after it ends.
    before = amplitude_at(result.audio, 2000.0, 2.0 + 0.25 - 0.05, 0.05)
    assert 20 * math.log10(before / in_gap) == pytest.approx(-14.0, abs=1.5)


def test_bed_stays_down_through_short_gaps() -> None:
    bed = tone(2000.0, 2.0, amplitude=0.1)
    talk = tone(300.0, 1.5, amplitude=0.3)
    items: list[TimelineItem] = [
        TimelineBed("start", bed, SR, duck_db=12.0),
        TimelinePause(1.0),
        line(0, "HOST", talk),
        line(1, "GUEST", talk),  # 250 ms later: merged, the bed stays down
    ]
    result = mix_episode(items)
    reference = amplitude_at(result.audio, 2000.0, 0.4)
    gap = amplitude_at(result.audio, 2000.0, 1.0 + 0.25 + 1.5 + 0.025, 0.2)
    assert 20 * math.log10(gap / reference) == pytest.approx(-12.0, abs=1.0)


def test_bed_loops_and_fades_out_at_the_end() -> None:
    bed = noise(0.7, level=0.1, seed=9)
    result = mix_episode(
        [TimelineBed("start", bed, SR, fade_in=0.1, fade_out=2.0), TimelinePause(5.0)]
    )
    out = result.audio
    assert out.shape == (7 * SR,)  # the bed's fade-out runs past the end of the timeline
    window = SR // 5
    levels = [
        20 * math.log10(float(np.sqrt(np.mean(out[k : k + window] ** 2))))
        for k in range(SR // 2, 5 * SR - window, window)
    ]
    assert max(levels) - min(levels) < 2.0  # looped: as loud at 4.5 s as at 0.5 s
    tail = [
        float(np.sqrt(np.mean(out[k : k + window] ** 2))) for k in range(5 * SR, 7 * SR, window)
    ]
    assert all(later < earlier for earlier, later in itertools.pairwise(tail))
    assert out[-1] == 0.0 and out[0] == 0.0


def test_bed_stop_cue_fades_out_and_beds_are_resampled() -> None:
    bed = np.stack([tone(500.0, 2.0, sr=44100), tone(500.0, 2.0, sr=44100)], axis=1)
    result = mix_episode(
        [
            TimelineBed("start", bed, 44100, fade_out=0.5),
            TimelinePause(3.0),
            TimelineBed("stop", fade_out=1.0),
            TimelinePause(4.0),
        ]
    )
    out = result.audio
    assert out.shape == (7 * SR,)
    assert amplitude_at(out, 500.0, 2.0) > 0.01
    assert amplitude_at(out, 500.0, 3.0 + 1.0 + 0.1) < 1e-6  # stopped after its 1 s fade
    assert 0.0 < amplitude_at(out, 500.0, 3.4) < amplitude_at(out, 500.0, 2.5)


def test_many_channels_are_taken_as_mono_and_rates_are_kept_apart() -> None:
    six = np.stack([tone(500.0, 1.0, amplitude=0.1)] * 6, axis=1)
    result = mix_episode([TimelineBed("start", six, SR), TimelinePause(1.0)])
    assert result.audio.shape == (SR + FADE,)
    assert amplitude_at(result.audio, 500.0, 0.4) > 0.01
    # The same array at two rates is resampled for each.
    a = tone(300.0, 1.0)
    result = mix_episode([line(0, "HOST", a), line(1, "GUEST", a, sr=12000)])
    assert [p.end_sec - p.start_sec for p in result.lines] == pytest.approx([1.0, 2.0])


# --- stereo -----------------------------------------------------------------------------


def channel_rms(result: MixResult, p: int, channel: int) -> float:
    placed = result.lines[p]
    a, b = round(placed.start_sec * SR), round(placed.end_sec * SR)
    return float(np.sqrt(np.mean(result.audio[a:b, channel].astype(np.float64) ** 2)))


def test_stereo_pans_speakers_left_and_right() -> None:
    host, guest = speech("Hello and welcome."), speech("Thanks for having me.", pitch=70)
    items: list[TimelineItem] = [line(0, "HOST", host), line(1, "GUEST", guest)]
    result = mix_episode(items, MixSettings(stereo=True))  # small default pans
    assert result.audio.shape[1] == 2
    assert channel_rms(result, 0, 0) > 1.3 * channel_rms(result, 0, 1)  # HOST left
    assert channel_rms(result, 1, 1) > 1.3 * channel_rms(result, 1, 0)  # GUEST right
    hard = mix_episode(items, MixSettings(stereo=True, pan={"HOST": -1.0, "GUEST": 1.0}))
    assert channel_rms(hard, 0, 1) == 0.0 and channel_rms(hard, 0, 0) > 0.0
    assert channel_rms(hard, 1, 0) == 0.0 and channel_rms(hard, 1, 1) > 0.0
    # Constant power: panning keeps a line's total level.
    centre = mix_episode(items, MixSettings(stereo=True, pan={"HOST": 0.0, "GUEST": 0.0}))
    for mixed in (hard, centre):
        total = math.hypot(channel_rms(mixed, 0, 0), channel_rms(mixed, 0, 1))
        other = math.hypot(channel_rms(result, 0, 0), channel_rms(result, 0, 1))
        assert 20 * math.log10(total / other) == pytest.approx(0.0, abs=0.5)


# --- master -----------------------------------------------------------------------------


def dialogue() -> list[TimelineItem]:
    host = speech("Welcome back to the show. Today we talk about synthetic voices.")
    guest = speech("Thanks. It is a pleasure to be here, really.", pitch=70, language="en-gb")
    return [
        line(0, "HOST", host),
        line(1, "GUEST", guest),
        TimelinePause(0.5),
        line(2, "HOST", host * np.float32(0.3)),
    ]


def assert_mastered(result: MixResult, target: float) -> None:
    assert np.all(np.isfinite(result.audio))
    measured = pyloudnorm_lufs(result.audio, result.sample_rate)
    assert abs(measured - target) <= 0.5
    assert result.lufs is not None and abs(result.lufs - measured) < 0.01
    assert true_peak_db(result.audio, result.sample_rate) <= -1.0
    assert peak_8x_db(result.audio) <= -1.0


def test_master_speech_mono_and_stereo() -> None:
    assert_mastered(mix_episode(dialogue()), -19.0)
    assert_mastered(mix_episode(dialogue(), MixSettings(stereo=True)), -16.0)
    assert_mastered(mix_episode(dialogue(), MixSettings(target_lufs=-14.0)), -14.0)


def test_master_loud_square_wave() -> None:
    square = np.clip(2.0 * np.sign(tone(100.0, 5.0, 1.0)), -1.0, 1.0).astype(np.float32)
    result = mix_episode([line(0, "HOST", square)])
    assert_mastered(result, -19.0)
    assert_mastered(mix_episode([line(0, "HOST", square)], MixSettings(stereo=True)), -16.0)


def test_master_near_silence_is_not_blown_up() -> None:
    host = speech("Welcome back to the show. Today we talk about synthetic voices.")
    quiet = host * np.float32(0.01 / np.abs(host).max())  # peak -40 dBFS
    raw = pyloudnorm_lufs(quiet, SR)
    result = mix_episode([line(0, "HOST", quiet)])
    assert result.lufs is not None
    assert result.lufs == pytest.approx(raw + 24.0, abs=0.2)  # capped at +24 dB
    assert result.lufs < -19.0
    assert np.all(np.isfinite(result.audio))
    assert peak_8x_db(result.audio) <= -1.0
    # Under the -70 LUFS gate: nothing to measure, no gain at all.
    silent = host * np.float32(1e-5)
    result = mix_episode([line(0, "HOST", silent)])
    assert result.lufs is None
    assert float(np.abs(result.audio).max()) <= float(np.abs(silent).max()) * 1.0001
    # Digital silence.
    result = mix_episode([line(0, "HOST", np.zeros(SR, np.float32))])
    assert result.lufs is None and result.true_peak_db == -math.inf
    assert not np.any(result.audio)


def test_room_tone_under_everything() -> None:
    items = [*dialogue(), TimelinePause(2.0)]
    result = mix_episode(items, MixSettings(room_tone_db=-60.0))
    tail = result.audio[-SR:]
    level = 10 * math.log10(float(np.mean(tail.astype(np.float64) ** 2)))
    assert level == pytest.approx(-60.0, abs=1.5)
    again = mix_episode(items, MixSettings(room_tone_db=-60.0))
    assert np.array_equal(result.audio, again.audio)


def test_bad_input_is_refused() -> None:
    bad = noise(1.0)
    bad[10] = np.nan
    with pytest.raises(ValueError, match="line 3"):
        mix_episode([line(3, "HOST", bad)])
    with pytest.raises(ValueError):
        TimelinePause(-1.0)
    with pytest.raises(ValueError):
        TimelineBed("start")
    with pytest.raises(ValueError):
        MixSettings(pan={"HOST": 2.0})
    with pytest.raises(TypeError):
        mix_episode(["HOST: hello"])  # type: ignore[list-item]


# --- exports ----------------------------------------------------------------------------


def episode() -> MixResult:
    bed = tone(440.0, 1.3, amplitude=0.2)
    items: list[TimelineItem] = [
        mixing.TimelineChapter("Cold open"),
        TimelineBed("start", bed, SR, fade_in=0.5, fade_out=1.0, duck_db=-14.0),
        TimelinePause(0.5),
        *dialogue(),
        mixing.TimelineChapter("Ünïcode chapter"),
        line(3, "GUEST", speech("One more thing.", pitch=70, language="en-gb")),
    ]
    return mix_episode(items)


def test_export_files_manifest_and_chapters(tmp_path: Path) -> None:
    result = episode()
    files = export_episode(
        result, tmp_path / "ep", "ep1", title="Episode 1: Voices", extra_manifest={"script": "x.md"}
    )
    assert sorted(p.name for p in (tmp_path / "ep").iterdir()) == [
        "chapters.json",
        "ep1.mp3",
        "ep1.srt",
        "ep1.transcript.json",
        "ep1.vtt",
        "ep1.wav",
        "manifest.json",
    ]
    info = sf.info(str(files.wav))
    assert (info.subtype, info.samplerate, info.channels) == ("PCM_16", SR, 1)
    assert info.frames == result.audio.shape[0]

    chapters = json.loads(files.chapters.read_text(encoding="utf-8"))
    assert chapters["version"] == "1.2.0"
    assert [c["title"] for c in chapters["chapters"]] == ["Cold open", "Ünïcode chapter"]
    assert chapters["chapters"][0]["startTime"] == 0.0
    second_start = chapters["chapters"][1]["startTime"]
    assert second_start == pytest.approx(result.lines[3].start_sec, abs=1e-3)

    manifest = json.loads(files.manifest.read_text(encoding="utf-8"))
    assert manifest["title"] == "Episode 1: Voices"
    assert manifest["duration_sec"] == pytest.approx(result.duration_sec)
    assert manifest["sample_rate"] == SR and manifest["channels"] == 1
    assert manifest["lufs"] == pytest.approx(-19.0, abs=0.5)
    assert manifest["true_peak_dbtp"] <= -1.0
    assert manifest["script"] == "x.md"
    assert manifest["files"] == {
        "wav": "ep1.wav", "mp3": "ep1.mp3", "chapters": "chapters.json",
        "transcripts": {"srt": "ep1.srt", "vtt": "ep1.vtt", "json": "ep1.transcript.json"},
    }  # fmt: skip
    assert [entry["index"] for entry in manifest["lines"]] == [0, 1, 2, 3]
    first = manifest["lines"][1]
    assert first == {
        "index": 1,
        "speaker": "GUEST",
        "text": "line 1",
        "start_sec": pytest.approx(result.lines[1].start_sec),
        "end_sec": pytest.approx(result.lines[1].end_sec),
        "backend": "test",
        "seed": 101,
    }
    assert manifest["chapters"][1]["title"] == "Ünïcode chapter"

    with pytest.raises(ValueError, match="title"):
        export_episode(result, tmp_path / "x", "x", title="t", extra_manifest={"title": "no"})
    with pytest.raises(ValueError):
        export_episode(result, tmp_path / "x", "../escape", title="t")


def test_exports_are_byte_identical(tmp_path: Path) -> None:
    first = export_episode(episode(), tmp_path / "a", "ep", title="Same")
    second = export_episode(episode(), tmp_path / "b", "ep", title="Same")
    for name in ("wav", "mp3", "manifest", "chapters"):
        assert getattr(first, name).read_bytes() == getattr(second, name).read_bytes(), name


@pytest.mark.parametrize(("stereo", "bitrate"), [(False, 128), (False, 64), (True, 128)])
def test_mp3_reads_back_with_duration_and_bitrate(
    tmp_path: Path, stereo: bool, bitrate: int
) -> None:
    result = mix_episode([*dialogue(), TimelinePause(3.0)], MixSettings(stereo=stereo))
    files = export_episode(result, tmp_path, "ep", title="T", mp3_bitrate_kbps=bitrate)
    decoded, rate = sf.read(str(files.mp3), dtype="float32")
    assert rate == SR
    assert decoded.shape[0] / rate == pytest.approx(result.duration_sec, abs=0.05)
    assert (decoded.ndim == 2) == stereo
    kbps = files.mp3.stat().st_size * 8 / result.duration_sec / 1000
    assert bitrate * 0.97 <= kbps <= bitrate * 1.06
    # The MP3 is the master: aligned, and close to it.
    error = decoded[: result.audio.shape[0]] - result.audio
    assert float(np.sqrt(np.mean(error**2))) < 0.1 * float(np.sqrt(np.mean(result.audio**2)))


def test_mp3_settings_are_checked() -> None:
    audio = noise(1.0)
    with pytest.raises(ValueError, match="kbps"):
        encode_mp3(audio, SR, bitrate_kbps=192)  # MPEG-2 (24 kHz) stops at 160
    with pytest.raises(ValueError, match="Hz"):
        encode_mp3(audio, 96000)
    assert len(encode_mp3(audio, 48000, bitrate_kbps=192)) > 0


# --- chunked MP3 encoding ---------------------------------------------------------------


def crc16_slow(data: bytes) -> int:
    crc = 0
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def program(seconds: float, sr: int, stereo: bool) -> Audio:
    """Speech over a quiet chord: varied material, so the encoders' state differs."""
    talk = speech("The quick brown fox jumps over the lazy dog, and then it rests.")
    talk = signal.resample_poly(talk, sr // 1000, SR // 1000).astype(np.float32)
    n = round(seconds * sr)
    out = np.resize(talk, n) * np.float32(0.5)
    t = np.arange(n) / sr
    out += (0.05 * (np.sin(2 * np.pi * 220 * t) + np.sin(2 * np.pi * 277 * t))).astype(np.float32)
    if stereo:
        return np.stack([out, np.roll(out, 37) * np.float32(0.8)], axis=1)
    return out


@pytest.mark.parametrize(("sr", "stereo"), [(24000, False), (44100, True), (16000, False)])
def test_chunked_mp3_decodes_like_one_encode(
    monkeypatch: pytest.MonkeyPatch, sr: int, stereo: bool
) -> None:
    audio = program(23.3, sr, stereo)
    single = encode_mp3(audio, sr)
    monkeypatch.setattr(mp3, "_MP3_CHUNK_SEC", 4.0)  # 6 chunks, 5 joins
    joins: list[int | None] = []
    find = mp3._find_join

    def spy(*args: object) -> int | None:
        joins.append(find(*args))  # type: ignore[arg-type]
        return joins[-1]

    monkeypatch.setattr(mp3, "_find_join", spy)
    chunked = encode_mp3(audio, sr)
    assert len(joins) == 5 and None not in joins
    assert chunked == encode_mp3(audio, sr)  # deterministic
    assert chunked != single

    one, rate = sf.read(io.BytesIO(single), dtype="float32")
    many, _ = sf.read(io.BytesIO(chunked), dtype="float32")
    assert rate == sr
    assert many.shape == one.shape == audio.shape  # gapless: delay and padding are right
    # As good as one encode everywhere, the joins included (20 ms windows).
    window = sr // 50
    count = audio.shape[0] // window

    def worst(decoded: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
        err = np.abs(decoded - audio).reshape(count * window, -1)[: count * window]
        return np.asarray(err.max(axis=1).reshape(count, window).max(axis=1), dtype=np.float64)

    single_err, chunked_err = worst(one), worst(many)
    assert chunked_err.max() <= 1.5 * single_err.max()
    frame = 1152 if sr >= 32000 else 576
    for join in joins:
        assert join is not None
        k = join * frame // window
        around = slice(max(0, k - 3), k + 4)
        assert chunked_err[around].max() <= 1.5 * single_err.max()

    # The Info/LAME tag describes the joined stream and its CRCs are right.
    frames = mp3._frames(chunked)
    info = chunked[frames[0].pos : frames[0].pos + frames[0].size]
    tag = info.find(b"Info")
    assert int.from_bytes(info[tag + 8 : tag + 12], "big") == len(frames) - 1
    lame = tag + 8 + 4 + 4 + 100 + 4
    assert info[lame : lame + 4] == b"LAME"
    music = chunked[frames[1].pos : frames[-1].pos + frames[-1].size]
    assert int.from_bytes(info[lame + 32 : lame + 34], "big") == crc16_slow(music)
    assert int.from_bytes(info[lame + 34 : lame + 36], "big") == crc16_slow(info[: lame + 34])


def test_crc16_matches_the_bytewise_one() -> None:
    rng = np.random.default_rng(3)
    for size in (0, 1, 2047, 2048, 2049, 10000):
        data = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
        assert mp3._crc16(data) == crc16_slow(data)


def strict_mp3_decode(data: bytes) -> tuple[int, str | None, list[str]]:
    """Decode an MP3 with ffmpeg's decoder (PyAV) and strict error detection.

    Returns the decoded sample count, the title tag and every problem reported: the
    decoder's error-level log lines (what ``ffmpeg -v error`` prints) and the packets it
    refused (``err_detect`` with ``explode`` turns even minor damage into an error).
    """
    import av
    import av.logging

    problems: list[str] = []
    samples = 0
    av.logging.set_level(av.logging.ERROR)
    try:
        with av.logging.Capture() as logs, av.open(io.BytesIO(data), format="mp3") as container:
            title = container.metadata.get("title")
            stream = container.streams.audio[0]
            decoder = av.CodecContext.create(stream.codec_context.name, "r")
            decoder.options = {"err_detect": "crccheck+bitstream+buffer+explode"}
            for packet in container.demux(stream):
                try:
                    samples += sum(frame.samples for frame in decoder.decode(packet))
                except av.error.FFmpegError as error:
                    problems.append(str(error))
    finally:
        av.logging.set_level(None)
    problems += [
        f"{name}: {message.strip()}" for level, name, message in logs if level <= av.logging.ERROR
    ]
    return samples, title, problems


def test_chunked_mp3_is_clean_for_ffmpeg(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mp3, "_MP3_CHUNK_SEC", 4.0)
    data = encode_mp3(program(13.0, SR, False), SR, title="Tëst")
    samples, title, problems = strict_mp3_decode(data)
    assert problems == []
    assert title == "Tëst"
    assert abs(samples - 13 * SR) < 1152  # within one MP3 frame
    # The check can fail: damaged frames (flipped bits, a cut) are reported.
    damaged = bytearray(data)
    for k in range(5000, len(damaged), 7919):
        damaged[k] ^= 0x55
    assert strict_mp3_decode(bytes(damaged))[2]
    assert strict_mp3_decode(data[: len(data) // 2] + data[len(data) // 2 + 100 :])[2]


# --- core.audio meter/conditioning extensions the master uses ----------------------------
# (multichannel loudness, true peak and linked limiting; the capped gain; the chunked
# path that long audio takes, which never holds the whole 4x signal)


def stereo_speech() -> npt.NDArray[np.float64]:
    host = speech("Welcome back to the show. Today we talk about synthetic voices.")
    left = host.astype(np.float64) * 0.9 / float(np.abs(host).max())
    return np.stack([left, 0.5 * np.roll(left, 240)], axis=1)


def test_loudness_of_stereo_matches_pyloudnorm() -> None:
    from core.audio.meter import integrated_lufs

    audio = stereo_speech()
    assert integrated_lufs(audio, SR) == pytest.approx(pyloudnorm_lufs(audio, SR), abs=1e-4)
    assert true_peak_db(audio, SR) == pytest.approx(true_peak_db(audio[:, 0], SR))


def test_linked_stereo_limiter() -> None:
    from core.audio.conditioning import condition

    audio = stereo_speech()
    with pytest.raises(ValueError, match="mono"):
        condition(audio, SR)
    result = condition(audio, SR, target_lufs=-14.0, multichannel=True)
    assert result.limited and result.audio.shape == audio.shape
    assert pyloudnorm_lufs(result.audio, SR) == pytest.approx(-14.0, abs=0.5)
    assert peak_8x_db(result.audio) <= -1.0
    # One gain for both channels: the image does not move.
    loud = np.abs(audio[:, 1]) > 0.05
    ratio = result.audio[loud, 1] / result.audio[loud, 0]
    expected = audio[loud, 1] / audio[loud, 0]
    assert np.allclose(ratio, expected, rtol=1e-3)


def test_condition_caps_the_gain() -> None:
    from core.audio.conditioning import condition

    quiet = speech("Welcome back to the show.").astype(np.float64) * 0.03
    raw = pyloudnorm_lufs(quiet, SR)
    result = condition(quiet, SR, target_lufs=-19.0, max_gain_db=20.0)
    assert result.gain_db == pytest.approx(20.0, abs=0.01)
    assert result.lufs == pytest.approx(raw + 20.0, abs=0.01)


@pytest.mark.parametrize("stereo", [False, True])
def test_long_audio_path_matches_the_whole_signal_path(
    monkeypatch: pytest.MonkeyPatch, stereo: bool
) -> None:
    from core.audio import conditioning, limiter, meter
    from core.audio.conditioning import condition

    host = speech("Welcome back to the show. Today we talk about synthetic voices.")
    mono = np.resize(host, 25 * SR).astype(np.float64) * 0.9 / float(np.abs(host).max())
    audio = np.stack([mono, 0.7 * np.roll(mono, 100)], axis=1) if stereo else mono
    whole = condition(audio, SR, target_lufs=-12.0, multichannel=True)
    whole_peak = true_peak_db(audio, SR)
    # Make 25 s "long": chunks of 8192 samples, resampled on threads.
    for module in (meter, limiter, conditioning):  # each holds its own binding of the names
        for name, value in (("_LONG_SAMPLES", 1 << 14), ("_CHUNK_SAMPLES", 1 << 13)):
            if hasattr(module, name):
                monkeypatch.setattr(module, name, value)
    chunked = condition(audio, SR, target_lufs=-12.0, multichannel=True)
    assert chunked.limited
    assert float(np.abs(chunked.audio - whole.audio).max()) < 1e-5
    assert chunked.lufs == pytest.approx(whole.lufs, abs=1e-3)
    assert chunked.true_peak_db == pytest.approx(whole.true_peak_db, abs=1e-3)
    assert true_peak_db(audio, SR) == pytest.approx(whole_peak, abs=1e-4)
    assert peak_8x_db(chunked.audio) <= -1.0
    again = condition(audio, SR, target_lufs=-12.0, multichannel=True)
    assert np.array_equal(again.audio, chunked.audio)


def test_streamed_loudness_meter_equals_integrated_lufs() -> None:
    from core.audio.meter import LoudnessMeter, integrated_lufs

    rng = np.random.default_rng(3)
    sr = 24000
    n = sr * 30 + 123
    mono = (rng.standard_normal(n) * np.sin(np.arange(n) / sr) * 0.1).astype(np.float32)
    stereo = np.column_stack([mono, mono[::-1] * 0.5])
    for audio in (mono, stereo):
        meter = LoudnessMeter(sr, n, 1 if audio.ndim == 1 else 2)
        for start in range(0, n, 77_777):
            meter.add(audio[start : start + 77_777])
        whole = integrated_lufs(audio, sr)
        assert whole is not None and meter.lufs() == pytest.approx(whole, abs=0.01)


def test_streamed_mp3_writer_is_byte_identical_to_encode_mp3(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(mp3, "_MP3_CHUNK_SEC", 4.0)  # many chunks in a short signal
    sr = 24000
    n = sr * 21 + 77
    t = np.arange(n) / sr
    audio = (0.3 * np.sin(2 * np.pi * 330 * t) * np.sin(t)).astype(np.float32)
    path = tmp_path / "s.mp3"
    writer = mp3.Mp3Writer(path, n, sr, 1, title="T")
    for start in range(0, n, 50_000):
        writer.feed(audio[start : start + 50_000])
    writer.close()
    assert path.read_bytes() == mp3.encode_mp3(audio, sr, title="T")


@pytest.mark.slow
def test_streamed_render_equals_the_in_memory_mix(tmp_path: Path) -> None:
    from core.episodes.master import render_episode_files

    sr = 24000
    rng = np.random.default_rng(9)
    bed = (0.2 * rng.standard_normal(sr * 3)).astype(np.float32)
    items: list[mixing.TimelineItem] = [
        mixing.TimelineChapter("One"),
        TimelineBed("start", bed, sr, fade_in=1.0, fade_out=1.0, duck_db=-12.0),
    ]
    for k in range(12):
        line = (0.5 * np.sin(2 * np.pi * (150 + 20 * k) * np.arange(sr * 2) / sr)).astype(
            np.float32
        )
        path = tmp_path / f"line{k}.wav"
        sf.write(str(path), line, sr, subtype="FLOAT")
        items.append(TimelineLine(k, "AB"[k % 2], "x", mixing.AudioFile.probe(path), sr))
    settings = MixSettings(stereo=True)
    reference = mix_episode(
        [
            TimelineLine(i.index, i.speaker, i.text, mixing.AudioFile.load_at(i.audio, sr, "x"), sr)
            if isinstance(i, TimelineLine) and isinstance(i.audio, mixing.AudioFile)
            else i
            for i in items
        ],
        settings,
    )
    stages: list[str] = []
    files, mastered = render_episode_files(
        items, settings, tmp_path / "ep", "ep", title="T", tmp_dir=tmp_path / "tmp",
        window_sec=3.7, progress=lambda stage, done, total: stages.append(stage),
    )  # fmt: skip
    assert mastered.lufs == pytest.approx(reference.lufs, abs=0.01)
    ours, _ = sf.read(str(files.wav), dtype="float32")
    whole = np.clip(reference.audio, -1, 1)
    assert ours.shape == whole.shape and np.abs(ours - whole).max() < 2e-4
    assert master.STAGE_MIX in stages and master.STAGE_MASTER in stages
    assert not list((tmp_path / "tmp").iterdir())  # the intermediate is gone
    manifest = json.loads(files.manifest.read_text())
    assert manifest["sample_rate"] == sr and manifest["channels"] == 2
    assert manifest["target_lufs"] == -16.0 and manifest["ceiling_dbtp"] == -1.0
