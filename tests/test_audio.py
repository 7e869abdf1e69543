"""Tests for core.audio.io: probing, streaming, reading, resampling and writing audio."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import soundfile as sf
import soxr

from core.audio import io as audio
from core.errors import AudioError
from tests.conftest import TESTDATA

JFK = TESTDATA / "jfk.flac"
REPO = Path(__file__).resolve().parents[1]


def tone(
    seconds: float, rate: int, channels: int = 1, freq: float = 440.0, amp: float = 0.5
) -> npt.NDArray[np.float32]:
    """A sine per channel (channel k at freq * (k + 1)), shape (n, channels)."""
    t = np.arange(round(seconds * rate)) / rate
    cols = [amp * np.sin(2 * np.pi * freq * (k + 1) * t) for k in range(channels)]
    return np.stack(cols, axis=1).astype(np.float32)


def assert_one_line_naming(exc: pytest.ExceptionInfo[AudioError], path: Path) -> str:
    msg = str(exc.value)
    assert "\n" not in msg
    assert msg.startswith(str(path))
    assert "Traceback" not in msg
    return msg


# ------------------------------------------------------------------ odd but valid


@pytest.mark.parametrize(
    ("name", "rate", "channels", "write_kw", "fmt", "subtype", "tol"),
    [
        ("u8.wav", 22050, 1, {"subtype": "PCM_U8"}, "WAV", "PCM_U8", 1 / 128),
        ("hi.wav", 96000, 2, {"subtype": "PCM_16"}, "WAV", "PCM_16", 1 / 32768),
        ("six.wav", 48000, 6, {"subtype": "PCM_16"}, "WAV", "PCM_16", 1 / 32768),
        ("s24.flac", 44100, 2, {"subtype": "PCM_24"}, "FLAC", "PCM_24", 1e-6),
        ("f32.wav", 16000, 1, {"subtype": "FLOAT"}, "WAV", "FLOAT", 0.0),
    ],
)
def test_lossless_odd_files_probe_and_read_exactly(
    tmp_path: Path,
    name: str,
    rate: int,
    channels: int,
    write_kw: dict[str, Any],
    fmt: str,
    subtype: str,
    tol: float,
) -> None:
    src = tone(0.5, rate, channels)
    path = tmp_path / name
    sf.write(path, src, rate, **write_kw)

    info = audio.probe(path)
    assert info.backend == "soundfile"
    assert (info.format, info.subtype) == (fmt, subtype)
    assert (info.sample_rate, info.channels, info.frames) == (rate, channels, len(src))
    assert info.duration_sec == pytest.approx(0.5)
    assert info.path == path

    multi, got_rate = audio.read(path, mono=False)
    assert got_rate == rate
    assert multi.dtype == np.float32
    assert multi.shape == (len(src), channels)
    assert np.max(np.abs(multi - src)) <= tol + 1e-7

    mono, _ = audio.read(path)
    assert mono.shape == (len(src),)
    np.testing.assert_allclose(mono, src.mean(axis=1), atol=tol + 1e-6)


@pytest.mark.parametrize(
    ("name", "rate", "write_kw", "fmt", "subtype"),
    [
        ("a.mp3", 44100, {"format": "MP3"}, "MP3", "MPEG_LAYER_III"),
        ("a.ogg", 44100, {"format": "OGG", "subtype": "VORBIS"}, "OGG", "VORBIS"),
        ("a.opus", 48000, {"format": "OGG", "subtype": "OPUS"}, "OGG", "OPUS"),
    ],
)
def test_lossy_files_decode_through_soundfile(
    tmp_path: Path, name: str, rate: int, write_kw: dict[str, Any], fmt: str, subtype: str
) -> None:
    src = tone(1.0, rate, 2)
    path = tmp_path / name
    sf.write(path, src, rate, **write_kw)

    info = audio.probe(path)
    assert info.backend == "soundfile"
    assert (info.format, info.subtype) == (fmt, subtype)
    assert (info.sample_rate, info.channels) == (rate, 2)
    assert info.duration_sec == pytest.approx(1.0, abs=0.06)

    x, got_rate = audio.read(path, target_rate=16000, mono=False)
    assert got_rate == 16000
    assert x.dtype == np.float32 and x.shape[1] == 2
    assert len(x) == pytest.approx(16000, abs=0.06 * 16000)
    # Lossy, but still the same two tones at the right loudness.
    ref = audio.resample(src, rate, 16000)
    n = min(len(ref), len(x))
    for ch in range(2):
        assert np.sqrt(np.mean(x[:n, ch] ** 2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.05)
        spectrum = np.abs(np.fft.rfft(x[:16000, ch]))
        assert np.argmax(spectrum) == pytest.approx(440 * (ch + 1), abs=2)


def _write_m4a(path: Path, src: npt.NDArray[np.float32], rate: int) -> None:
    av = pytest.importorskip("av")
    try:
        av.codec.Codec("aac", "w")
    except Exception:
        pytest.skip("PyAV on this machine has no AAC encoder, cannot create an .m4a")
    planar = np.ascontiguousarray(src.T)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=rate, layout="stereo")
        for start in range(0, planar.shape[1], 1024):
            frame = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(planar[:, start : start + 1024]),
                format="fltp",
                layout="stereo",
            )
            frame.sample_rate = rate
            frame.pts = start
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


def test_aac_m4a_goes_through_pyav(tmp_path: Path) -> None:
    rate = 44100
    src = tone(1.0, rate, 2)
    path = tmp_path / "voice.m4a"
    _write_m4a(path, src, rate)

    info = audio.probe(path)
    assert info.backend == "pyav"
    assert (info.format, info.subtype) == ("M4A", "AAC")
    assert (info.sample_rate, info.channels) == (rate, 2)
    assert info.duration_sec == pytest.approx(1.0, abs=0.05)

    x, got_rate = audio.read(path, mono=False)
    assert got_rate == rate and x.dtype == np.float32 and x.shape[1] == 2
    # AAC decoders may add up to one codec frame (1024 samples) of padding.
    assert len(src) - 10 <= len(x) <= len(src) + 2048
    for ch in range(2):
        seg = x[rate // 4 : rate // 4 + rate // 2, ch]
        assert np.sqrt(np.mean(seg**2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.05)

    blocks = list(audio.iter_blocks(path, block_sec=0.1, target_rate=16000))
    assert all(b.ndim == 1 and b.dtype == np.float32 for b in blocks)
    whole = np.concatenate(blocks)
    assert len(whole) == pytest.approx(16000, abs=16000 * 0.06)
    expected = audio.resample(audio.downmix(x), rate, 16000)
    np.testing.assert_allclose(whole, expected, atol=1e-4)


# ---------------------------------------------------------------------- real speech


def test_real_speech_jfk() -> None:
    info = audio.probe(JFK)
    assert info.backend == "soundfile"
    assert (info.format, info.subtype) == ("FLAC", "PCM_24")
    assert (info.sample_rate, info.channels) == (44100, 2)
    assert info.duration_sec == pytest.approx(11.0, abs=0.05)

    x, rate = audio.read(JFK, target_rate=24000)
    assert rate == 24000
    assert x.ndim == 1 and x.dtype == np.float32
    assert len(x) == round(info.frames * 24000 / 44100)
    rms = float(np.sqrt(np.mean(x**2)))
    assert 0.01 < rms < 0.5
    assert float(np.max(np.abs(x))) <= 1.0


# ------------------------------------------------------------------------- streaming


def test_block_streaming_equals_whole_file_resampling(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    rate = 44100
    src = (0.2 * rng.standard_normal((rate * 3 + 321, 2))).astype(np.float32)
    path = tmp_path / "noise.wav"
    sf.write(path, src, rate, subtype="FLOAT")

    blocks = list(audio.iter_blocks(path, block_sec=0.37, target_rate=24000))
    assert len(blocks) > 5
    streamed = np.concatenate(blocks)
    whole = soxr.resample(src.mean(axis=1), rate, 24000, quality="HQ")
    assert len(streamed) == len(whole) == round(len(src) * 24000 / rate)
    assert np.max(np.abs(streamed - whole)) < 1e-4

    stereo = np.concatenate(
        list(audio.iter_blocks(path, block_sec=0.37, target_rate=16000, mono=False))
    )
    whole_st = audio.resample(src, rate, 16000)
    assert stereo.shape == whole_st.shape == (round(len(src) * 16000 / rate), 2)
    assert np.max(np.abs(stereo - whole_st)) < 1e-4


def test_blocks_have_requested_size_without_resampling(tmp_path: Path) -> None:
    src = tone(2.05, 8000, 3)
    path = tmp_path / "three.wav"
    sf.write(path, src, 8000, subtype="FLOAT")
    blocks = list(audio.iter_blocks(path, block_sec=0.5, mono=False))
    assert [len(b) for b in blocks] == [4000, 4000, 4000, 4000, 400]
    assert all(b.shape[1] == 3 for b in blocks)
    np.testing.assert_array_equal(np.concatenate(blocks), src)
    same_rate = np.concatenate(list(audio.iter_blocks(path, block_sec=0.5, target_rate=8000)))
    np.testing.assert_allclose(same_rate, src.mean(axis=1), atol=1e-7)


@pytest.mark.slow
def test_ten_minute_file_streams_with_bounded_memory(tmp_path: Path) -> None:
    rate = 44100
    rng = np.random.default_rng(0)
    piece = (0.1 * rng.standard_normal((rate * 10, 2))).astype(np.float32)
    path = tmp_path / "long.wav"
    with sf.SoundFile(path, "w", samplerate=rate, channels=2, subtype="PCM_16") as f:
        for _ in range(60):  # 10 minutes, written 10 s at a time
            f.write(piece)
    frames = 60 * len(piece)
    whole_decoded_bytes = frames * 2 * 4  # float32 stereo

    total = 0
    blocks = 0
    tracemalloc.start()
    try:
        for block in audio.iter_blocks(path, target_rate=24000):
            assert block.ndim == 1 and block.dtype == np.float32
            total += len(block)
            blocks += 1
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert blocks >= 20
    assert abs(total - round(frames * 24000 / rate)) <= 2
    # One 30 s stereo block is ~10.6 MB; the whole decoded file would be ~212 MB.
    assert peak < whole_decoded_bytes / 6, f"peak {peak / 1e6:.1f} MB"


# ----------------------------------------------------------------------- bad inputs


@pytest.mark.parametrize(
    ("name", "make", "says"),
    [("nope.wav", None, "not found"), ("takes.wav", Path.mkdir, "folder")],
    ids=["missing-file", "folder-is-not-audio"],
)
def test_a_path_that_is_no_audio_file(
    tmp_path: Path, name: str, make: Callable[[Path], None] | None, says: str
) -> None:
    path = tmp_path / name
    if make is not None:
        make(path)
    for call in (audio.probe, audio.read):
        with pytest.raises(AudioError) as exc:
            call(path)
        assert says in assert_one_line_naming(exc, path)


def test_zero_byte_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.wav"
    path.touch()
    for call in (audio.probe, audio.read, lambda p: list(audio.iter_blocks(p))):
        with pytest.raises(AudioError) as exc:
            call(path)
        assert "empty (0 bytes)" in assert_one_line_naming(exc, path)


def test_text_file_renamed_wav(tmp_path: Path) -> None:
    path = tmp_path / "notes.wav"
    path.write_text("this is a shopping list, not audio\n" * 20)
    with pytest.raises(AudioError) as exc:
        audio.read(path)
    assert "not a readable audio file" in assert_one_line_naming(exc, path)


def test_unsupported_extension(tmp_path: Path) -> None:
    path = tmp_path / "take.xyz"
    sf.write(path, tone(0.1, 8000), 8000, format="WAV")  # valid audio, unsupported name
    with pytest.raises(AudioError) as exc:
        audio.probe(path)
    msg = assert_one_line_naming(exc, path)
    assert "unsupported audio format '.xyz'" in msg and ".wav" in msg


def test_no_audio_stream(tmp_path: Path) -> None:
    av = pytest.importorskip("av")
    path = tmp_path / "video_only.m4a"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width = stream.height = 16
        stream.pix_fmt = "yuv420p"
        for _ in range(3):
            frame = av.VideoFrame.from_ndarray(np.zeros((16, 16, 3), np.uint8), format="rgb24")
            for packet in stream.encode(frame.reformat(format="yuv420p")):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    with pytest.raises(AudioError) as exc:
        audio.read(path)
    assert "no audio stream" in assert_one_line_naming(exc, path)


def test_header_only_wav_has_no_samples(tmp_path: Path) -> None:
    path = tmp_path / "silent.wav"
    sf.write(path, np.zeros((0, 1), np.float32), 16000)
    with pytest.raises(AudioError) as exc:
        audio.read(path)
    assert "no audio samples" in assert_one_line_naming(exc, path)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_float_wav_with_non_finite_samples(tmp_path: Path, bad: float) -> None:
    src = tone(1.0, 8000)
    src[6000, 0] = bad
    path = tmp_path / "broken.wav"
    sf.write(path, src, 8000, subtype="FLOAT")
    assert audio.probe(path).frames == 8000  # headers are fine
    for call in (audio.read, lambda p: list(audio.iter_blocks(p, target_rate=16000))):
        with pytest.raises(AudioError) as exc:
            call(path)
        msg = assert_one_line_naming(exc, path)
        assert "not finite" in msg and "0.75 s" in msg


def test_truncated_wav_reads_what_is_there(tmp_path: Path) -> None:
    src = tone(1.0, 16000, 2)
    full = tmp_path / "full.wav"
    sf.write(full, src, 16000, subtype="PCM_16")
    data = full.read_bytes()
    path = tmp_path / "cut.wav"
    path.write_bytes(data[: 44 + 4 * 6000 + 3])  # header claims 16000 frames; 6000 and a bit remain

    info = audio.probe(path)
    assert info.frames == 6000
    x, _ = audio.read(path, mono=False)
    assert x.shape == (6000, 2)
    np.testing.assert_allclose(x, src[:6000], atol=1 / 32768)


@pytest.mark.parametrize("block_sec", [30.0, 0.1])
def test_truncated_flac_reads_what_is_there(
    tmp_path: Path, block_sec: float, caplog: pytest.LogCaptureFixture
) -> None:
    rng = np.random.default_rng(3)
    src = np.round(rng.uniform(-0.5, 0.5, (16000 * 4, 1)) * 32768) / 32768
    full = tmp_path / "full.flac"
    sf.write(full, src, 16000, subtype="PCM_16")
    data = full.read_bytes()
    path = tmp_path / "cut.flac"
    path.write_bytes(data[: len(data) * 6 // 10])

    assert audio.probe(path).frames == len(src)  # the header still claims the full length
    with caplog.at_level(logging.WARNING, logger="core.audio.io"):
        x = np.concatenate(list(audio.iter_blocks(path, block_sec=block_sec)))
    # Most of what is there decodes, bit-exact, with no seam where FFmpeg took over.
    assert len(src) * 0.45 < len(x) < len(src) * 0.65
    np.testing.assert_array_equal(x, src[: len(x), 0].astype(np.float32))
    assert any(str(path) in r.getMessage() for r in caplog.records)


def test_truncated_wav_of_header_only_bytes(tmp_path: Path) -> None:
    path = tmp_path / "stub.wav"
    sf.write(tmp_path / "full.wav", tone(0.2, 8000), 8000)
    path.write_bytes((tmp_path / "full.wav").read_bytes()[:20])
    with pytest.raises(AudioError) as exc:
        audio.read(path)
    assert_one_line_naming(exc, path)


# ----------------------------------------------------------------------- array helpers


def test_downmix() -> None:
    st = np.array([[1.0, 0.0], [0.5, -0.5], [0.2, 0.4]], dtype=np.float64)
    out = audio.downmix(st)
    assert out.dtype == np.float32 and out.shape == (3,)
    np.testing.assert_allclose(out, [0.5, 0.0, 0.3], atol=1e-7)
    mono = np.array([0.1, 0.2], dtype=np.float32)
    np.testing.assert_array_equal(audio.downmix(mono), mono)
    np.testing.assert_array_equal(audio.downmix(mono[:, None]), mono)
    with pytest.raises(ValueError):
        audio.downmix(np.zeros((2, 2, 2)))


def test_resample_keeps_pitch_and_length() -> None:
    x = tone(1.0, 48000, 2, freq=1000.0)
    y = audio.resample(x, 48000, 16000)
    assert y.dtype == np.float32 and y.shape == (16000, 2)
    assert np.argmax(np.abs(np.fft.rfft(y[:, 0]))) == 1000
    assert np.argmax(np.abs(np.fft.rfft(y[:, 1]))) == 2000
    m = audio.resample(x[:, 0].astype(np.float64), 48000, 22050)
    assert m.dtype == np.float32 and m.shape == (22050,)
    np.testing.assert_array_equal(audio.resample(x, 48000, 48000), x)


# ----------------------------------------------------------------------------- writing


def test_write_wav_round_trip_pcm16(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    src = rng.uniform(-1, 1, (5000, 2)).astype(np.float32)
    src[0] = [1.0, -1.0]
    path = tmp_path / "deep" / "er" / "out.wav"
    audio.write_wav(path, src, 22050)
    assert sorted(os.listdir(path.parent)) == ["out.wav"]  # no temp file left behind
    info = audio.probe(path)
    assert (info.subtype, info.sample_rate, info.channels, info.frames) == (
        "PCM_16",
        22050,
        2,
        5000,
    )
    back, _ = audio.read(path, mono=False)
    assert np.max(np.abs(back - src)) <= 1 / 32768


def test_write_wav_clips_and_other_subtypes(tmp_path: Path) -> None:
    src = np.array([1.7, -3.0, 0.25, -0.25], dtype=np.float32)
    audio.write_wav(tmp_path / "c.wav", src, 8000)
    ints, _ = sf.read(tmp_path / "c.wav", dtype="int16")
    np.testing.assert_array_equal(ints, [32767, -32768, 8192, -8192])

    audio.write_wav(tmp_path / "f.wav", src, 8000, subtype="FLOAT")
    floats, _ = audio.read(tmp_path / "f.wav")
    np.testing.assert_array_equal(floats, src)  # float subtypes are not clipped

    audio.write_wav(tmp_path / "p24.wav", src, 8000, subtype="PCM_24")
    assert audio.probe(tmp_path / "p24.wav").subtype == "PCM_24"
    p24, _ = audio.read(tmp_path / "p24.wav")
    np.testing.assert_allclose(p24, np.clip(src, -1, 1), atol=2**-23)


def test_write_wav_refuses_non_finite(tmp_path: Path) -> None:
    path = tmp_path / "out.wav"
    with pytest.raises(AudioError) as exc:
        audio.write_wav(path, np.array([0.0, np.nan], dtype=np.float32), 8000)
    assert "not finite" in assert_one_line_naming(exc, path)
    assert list(tmp_path.iterdir()) == []


def test_write_wav_failure_leaves_target_untouched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "take.wav"
    audio.write_wav(path, tone(0.1, 8000)[:, 0], 8000)
    before = path.read_bytes()

    real_write = sf.SoundFile.write
    calls = {"n": 0}

    def failing_write(self: sf.SoundFile, data: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(28, "No space left on device")
        real_write(self, data)

    monkeypatch.setattr(audio, "_WRITE_CHUNK", 1000)
    monkeypatch.setattr(sf.SoundFile, "write", failing_write)
    with pytest.raises(AudioError) as exc:
        audio.write_wav(path, np.zeros(5000, np.float32), 8000)
    assert "No space left" in assert_one_line_naming(exc, path)
    assert calls["n"] == 2
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["take.wav"]


# ------------------------------------------------------------------------------- misc


def test_supported_extensions() -> None:
    assert {".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".aac"} <= audio.SUPPORTED_EXTENSIONS
    assert all(e.startswith(".") and e == e.lower() for e in audio.SUPPORTED_EXTENSIONS)


def test_import_is_cheap_and_does_not_load_pyav() -> None:
    code = "import sys, core.audio.io; print('av' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False"
