"""core.audio.meter, core.audio.limiter, core.audio.conditioning: BS.1770 loudness, true peak,
conditioning with a peak limiter, hum notch."""

from __future__ import annotations

import math
from functools import cache

import numpy as np
import numpy.typing as npt
import pyloudnorm
import pytest
from scipy import signal

from core.audio.conditioning import condition, hum_notch
from core.audio.meter import integrated_lufs, sample_peak_db, true_peak_db
from core.episodes.synthesis.draft import DraftVoice, synthesize

SR = 24000
CEILING = -1.0
TARGET = -19.0
TEXT = (
    "The quick brown fox jumps over the lazy dog. She sells sea shells by the sea shore, "
    "and the shells she sells are surely seashells."
)

Audio = npt.NDArray[np.float64]


@cache
def speech(pitch: int = 30, sr: int = SR, language: str = "en-gb") -> Audio:
    """About 7 s of draft-voice speech, peak 0.5."""
    audio = synthesize(TEXT, DraftVoice(language=language, pitch=pitch), sample_rate=sr)
    out = audio.astype(np.float64)
    out *= 0.5 / np.abs(out).max()
    out.setflags(write=False)
    return out


def rms_db(audio: npt.ArrayLike) -> float:
    a = np.asarray(audio, dtype=np.float64)
    return 10.0 * math.log10(float(np.mean(a * a)))


def peak_8x_db(audio: npt.ArrayLike) -> float:
    """The 8x polyphase meter (scipy's default Kaiser window): blind near Nyquist."""
    up = signal.resample_poly(np.asarray(audio, dtype=np.float64), 8, 1)
    return 20.0 * math.log10(float(np.abs(up).max()))


def pyloudnorm_lufs(audio: npt.ArrayLike, sr: int) -> float:
    return float(pyloudnorm.Meter(sr).integrated_loudness(np.asarray(audio, dtype=np.float64)))


def assert_under_ceiling(audio: npt.ArrayLike, sr: int, ceiling: float = CEILING) -> None:
    from tests.meters import ideal_true_peak_db

    assert true_peak_db(audio, sr) <= ceiling
    assert ideal_true_peak_db(audio) <= ceiling
    assert sample_peak_db(audio) <= ceiling


def tone(freq: float, seconds: float, amplitude: float, sr: int = SR, phase: float = 0.0) -> Audio:
    t = np.arange(int(seconds * sr)) / sr
    return amplitude * np.sin(2 * np.pi * freq * t + phase)


def square_wave(seconds: float = 5.0, sr: int = SR) -> Audio:
    """A 100 Hz square wave overdriven 2x and clipped at full scale: flat tops."""
    return np.clip(2.0 * np.sign(tone(100.0, seconds, 1.0, sr)), -1.0, 1.0)


def with_isp_bursts(base: Audio, freq: float, amplitude: float, sr: int = SR) -> Audio:
    """``base`` plus Hann-windowed bursts at ``freq`` whose peaks fall between samples."""
    out = base.copy()
    m = int(0.05 * sr)
    burst = np.hanning(m) * np.sin(2 * np.pi * freq * np.arange(m) / sr + np.pi / 4)
    for k in range(6):
        start = int((0.3 + 0.9 * k) * sr)
        out[start : start + m] += amplitude * burst
    return out


# --- integrated_lufs ----------------------------------------------------------------


@pytest.mark.parametrize("sr", [16000, 22050, 24000, 44100, 48000])
def test_integrated_lufs_matches_pyloudnorm(sr: int) -> None:
    rng = np.random.default_rng(sr)
    n = int(3.3 * sr)
    signals = [
        rng.standard_normal(n) * 0.1,
        tone(997.0, 0.45, 0.5, sr),
        # quiet, then loud: exercises both gates
        np.concatenate([rng.standard_normal(sr) * 1e-4, rng.standard_normal(2 * sr) * 0.2]),
        speech(40, sr) * 0.3,
    ]
    for audio in signals:
        ours = integrated_lufs(audio, sr)
        assert ours is not None
        assert ours == pytest.approx(pyloudnorm_lufs(audio, sr), abs=1e-3)


def test_integrated_lufs_none_when_too_short_or_silent() -> None:
    rng = np.random.default_rng(1)
    assert integrated_lufs(rng.standard_normal(int(0.3 * SR)) * 0.1, SR) is None
    assert integrated_lufs(rng.standard_normal(int(0.4 * SR) - 1) * 0.1, SR) is None
    assert integrated_lufs(rng.standard_normal(int(0.4 * SR)) * 0.1, SR) is not None
    assert integrated_lufs(np.zeros(2 * SR), SR) is None
    assert integrated_lufs(np.zeros(0), SR) is None
    # below the -70 LUFS absolute gate: pyloudnorm says -inf
    assert integrated_lufs(rng.standard_normal(2 * SR) * 1e-5, SR) is None


def test_integrated_lufs_of_a_sine() -> None:
    # A 997 Hz sine at full scale is about -3.0 LUFS in mono (K-weighting ~0 dB there).
    for sr in (24000, 48000):
        lufs = integrated_lufs(tone(997.0, 3.0, 1.0, sr), sr)
        assert lufs == pytest.approx(-3.01, abs=0.1)
        assert integrated_lufs(tone(997.0, 3.0, 0.1, sr), sr) == pytest.approx(lufs - 20.0)


# --- peaks ----------------------------------------------------------------------------


def test_true_peak_finds_inter_sample_peaks() -> None:
    # fs/4 at 45 degrees: every sample is at +-0.707 A, the waveform peaks at A.
    audio = tone(SR / 4, 1.0, 0.5, phase=np.pi / 4) * signal.windows.tukey(SR, 0.2)
    assert sample_peak_db(audio) == pytest.approx(20 * math.log10(0.5) - 3.01, abs=0.01)
    assert true_peak_db(audio, SR) == pytest.approx(20 * math.log10(0.5), abs=0.05)
    assert true_peak_db(audio, SR) == pytest.approx(peak_8x_db(audio), abs=0.05)


def test_true_peak_never_below_sample_peak() -> None:
    rng = np.random.default_rng(2)
    for audio in (rng.standard_normal(SR) * 0.3, square_wave(1.0), np.array([0.0, 0.9, 0.0])):
        assert true_peak_db(audio, SR) >= sample_peak_db(audio)
        assert true_peak_db(audio, SR, oversample=1) == pytest.approx(sample_peak_db(audio))


def test_peaks_of_silence_are_minus_infinity() -> None:
    assert true_peak_db(np.zeros(SR), SR) == -math.inf
    assert sample_peak_db(np.zeros(SR)) == -math.inf
    assert true_peak_db(np.zeros(0), SR) == -math.inf
    assert sample_peak_db(np.zeros(0)) == -math.inf


# --- condition ------------------------------------------------------------------------


@pytest.mark.parametrize("pitch", [30, 70])
@pytest.mark.parametrize("level", [0.03, 0.3, 1.0])
def test_condition_speech_hits_target_under_ceiling(pitch: int, level: float) -> None:
    result = condition(speech(pitch) * level, SR)
    assert result.audio.dtype == np.float32
    assert result.audio.shape == speech(pitch).shape
    measured = integrated_lufs(result.audio, SR)
    assert measured is not None
    assert abs(measured - TARGET) <= 0.5
    assert abs(pyloudnorm_lufs(result.audio, SR) - TARGET) <= 0.5
    assert result.lufs == pytest.approx(measured, abs=1e-6)
    assert result.true_peak_db == pytest.approx(true_peak_db(result.audio, SR), abs=1e-3)
    assert_under_ceiling(result.audio, SR)


def test_condition_limits_peaky_speech_and_keeps_loudness() -> None:
    # Speech with a few loud clicks: the clicks would reach +8 dBTP at -19 LUFS.
    audio = speech(30) * 0.2
    for k in range(5):
        audio[SR + k * 20000] += 0.9
    result = condition(audio, SR)
    assert result.limited
    assert result.lufs is not None
    assert abs(result.lufs - TARGET) <= 0.5
    assert_under_ceiling(result.audio, SR)


@pytest.mark.parametrize(
    ("name", "target", "reachable"),
    [
        ("square", TARGET, True),
        ("square", -2.0, False),
        ("sine", TARGET, True),
        ("sine", -2.0, False),
        ("speech_isp", TARGET, True),
        ("speech_isp", -12.0, True),
        ("near_nyquist", TARGET, True),
        ("near_nyquist", -12.0, True),
    ],
)
def test_condition_holds_the_ceiling(name: str, target: float, reachable: bool) -> None:
    audio = {
        "square": square_wave(),
        "sine": tone(997.0, 5.0, 0.999),  # a hot sine: -3 LUFS, 0 dBFS
        # fs/4 bursts at 45 degrees: true peaks 3 dB above their samples
        "speech_isp": with_isp_bursts(speech(30) * 0.5, SR / 4, 0.3),
        # 10.5 kHz bursts: a 4x grid misses their peaks by up to 0.5 dB
        "near_nyquist": with_isp_bursts(speech(30) * 0.5, 10500.0, 0.3),
    }[name]
    result = condition(audio, SR, target_lufs=target)
    assert_under_ceiling(result.audio, SR)
    assert np.all(np.isfinite(result.audio))
    if reachable:
        assert result.lufs is not None
        assert abs(result.lufs - target) <= 0.5
    else:
        # The ceiling wins where the target is out of reach (a sine peaks 3 dB above
        # its loudness): the limiter takes it as close as it can.
        assert result.limited
        assert result.lufs is not None
        assert target - 3.5 <= result.lufs < target


def test_condition_isp_bursts_are_limited_by_their_true_peak() -> None:
    audio = with_isp_bursts(speech(30) * 0.5, SR / 4, 0.3)
    result = condition(audio, SR)
    assert result.limited
    assert result.lufs is not None
    assert abs(result.lufs - TARGET) <= 0.5
    # The bursts' samples sit 3 dB under their true peaks: a sample-peak limiter would
    # have let them through, this one holds their true peaks at the ceiling.
    assert sample_peak_db(result.audio) <= CEILING - 1.0
    assert true_peak_db(result.audio, SR) == pytest.approx(CEILING, abs=0.1)
    assert_under_ceiling(result.audio, SR)


def test_condition_other_ceilings_and_rates() -> None:
    for sr in (16000, 44100, 48000):
        result = condition(speech(30, sr), sr, target_lufs=-16.0, ceiling_dbtp=-2.0)
        assert result.lufs is not None
        assert abs(result.lufs + 16.0) <= 0.5
        assert_under_ceiling(result.audio, sr, ceiling=-2.0)


def test_condition_short_segment_only_gets_the_ceiling() -> None:
    loud = speech(30)[SR : SR + int(0.3 * SR)] * 2.5  # peaks above 0 dBFS
    result = condition(loud, SR)
    assert result.lufs is None
    assert result.gain_db == 0.0
    assert result.limited
    assert_under_ceiling(result.audio, SR)

    quiet = speech(30)[SR : SR + int(0.3 * SR)] * 0.2
    untouched = condition(quiet, SR)
    assert untouched.lufs is None
    assert untouched.gain_db == 0.0
    assert not untouched.limited
    np.testing.assert_array_equal(untouched.audio, quiet.astype(np.float32))


def test_condition_silence() -> None:
    result = condition(np.zeros(3 * SR, dtype=np.float32), SR)
    assert result.lufs is None
    assert result.true_peak_db == -math.inf
    assert result.gain_db == 0.0
    assert not result.limited
    assert not result.audio.any()


def test_condition_is_deterministic_and_leaves_its_input_alone() -> None:
    audio = np.array(speech(30) * 0.7, dtype=np.float32)
    before = audio.copy()
    first = condition(audio, SR)
    second = condition(audio, SR)
    np.testing.assert_array_equal(audio, before)
    np.testing.assert_array_equal(first.audio, second.audio)
    assert (first.lufs, first.true_peak_db, first.gain_db, first.limited) == (
        second.lufs,
        second.true_peak_db,
        second.gain_db,
        second.limited,
    )
    assert math.isfinite(first.gain_db) and math.isfinite(first.true_peak_db)


def test_condition_rejects_multichannel() -> None:
    with pytest.raises(ValueError, match="mono"):
        condition(np.zeros((SR, 2)), SR)


# --- hum_notch ------------------------------------------------------------------------


def line_energy_db(audio: npt.ArrayLike, sr: int, freqs: list[float]) -> float:
    """Energy within +-1 Hz of ``freqs`` (Hann-windowed spectrum), dB."""
    a = np.asarray(audio, dtype=np.float64)
    power = np.abs(np.fft.rfft(a * np.hanning(a.size))) ** 2
    hz = np.fft.rfftfreq(a.size, 1.0 / sr)
    band = np.zeros(hz.size, dtype=bool)
    for f in freqs:
        band |= np.abs(hz - f) <= 1.0
    return 10.0 * math.log10(float(power[band].sum()))


@pytest.mark.parametrize(("mains", "sr"), [(50.0, 24000), (60.0, 24000), (60.0, 22050)])
def test_hum_notch_removes_hum_and_keeps_speech(mains: float, sr: int) -> None:
    voice = speech(30, sr)
    t = np.arange(voice.size) / sr
    hum = 0.05 * np.sin(2 * np.pi * mains * t + 0.4) + 0.02 * np.sin(2 * np.pi * 3 * mains * t)
    assert rms_db(hum) - rms_db(hum_notch(hum, sr, mains)) > 20.0
    assert abs(rms_db(hum_notch(voice, sr, mains)) - rms_db(voice)) < 1.0
    mixed = voice + hum
    cleaned = hum_notch(mixed, sr, mains)
    assert cleaned.dtype == np.float32
    lines = [mains, 3 * mains]
    assert line_energy_db(mixed, sr, lines) - line_energy_db(cleaned, sr, lines) > 20.0


def test_hum_notch_odd_inputs() -> None:
    assert hum_notch(np.zeros(0), SR, 50.0).size == 0
    short = np.ones(10, dtype=np.float32)
    np.testing.assert_array_equal(hum_notch(short, SR, 50.0), short)
    with pytest.raises(ValueError):
        hum_notch(np.zeros(SR), SR, 0.0)


# --- the ceiling up to Nyquist (adversarial signals, near-ideal and ffmpeg meters) ------


def adversarial(name: str, sr: int) -> tuple[Audio, float]:
    """Signals whose inter-sample peaks sit near the Nyquist frequency, and their target.

    ``impulses``: white noise with sparse single-sample spikes (-8 LUFS); ``clipped``:
    noise hard-clipped at full scale (-8 LUFS); ``flip``: 48-sample bursts of an
    alternating (Nyquist) sequence whose sign flips mid-burst, every 100 ms (-19 LUFS).
    """
    rng = np.random.default_rng(12)
    n = 3 * sr
    if name == "impulses":
        x = 0.1 * rng.standard_normal(n)
        spikes = rng.choice(n, size=60, replace=False)
        x[spikes] = 0.9 * rng.choice([-1.0, 1.0], size=60)
        return x, -8.0
    if name == "clipped":
        return np.clip(0.7 * rng.standard_normal(n), -1.0, 1.0), -8.0
    x = 0.002 * rng.standard_normal(n)
    burst = 0.5 * (-1.0) ** np.arange(48)
    burst[24:] *= -1.0  # the phase flip: two equal neighbours, a peak between them
    for start in range(sr // 20, n - 48, sr // 10):
        x[start : start + 48] += burst
    return x, -19.0


ADVERSARIAL = [
    (name, sr) for name in ("impulses", "clipped", "flip") for sr in (24000, 44100, 48000)
]


def test_the_independent_meter_reads_known_true_peaks() -> None:
    from tests.meters import ffmpeg_ebur128, ideal_true_peak_db, sinc_true_peak_db

    sr = 24000
    t = np.arange(sr)
    # A sine at a quarter of the rate, 45 degrees off the samples: samples at -3.01 dB,
    # true peak 0 dB (analytic).
    # Both sines fade in and out smoothly over 4000 samples (no edge ringing).
    fade = np.sin(np.pi / 2 * np.minimum(1.0, np.minimum(t, t[::-1]) / 4000.0)) ** 2
    quarter = fade * np.cos(np.pi / 2 * t + np.pi / 4)
    assert 20 * math.log10(np.abs(quarter).max()) == pytest.approx(-3.0103, abs=1e-3)
    assert ideal_true_peak_db(quarter) == pytest.approx(0.0, abs=0.01)
    # A sine at 0.98 of Nyquist: true peak 0.5 (its amplitude) = -6.02 dBTP.
    high = 0.5 * fade * np.cos(np.pi * 0.98 * t + 0.3)
    assert ideal_true_peak_db(high) == pytest.approx(-6.0206, abs=0.01)
    # The exact Whittaker-Shannon sum of a Nyquist phase-flip burst: +4 dB over its
    # samples, and the meter agrees with it; resample_poly's 8x misses most of it.
    burst = 0.5 * (-1.0) ** np.arange(48)
    burst[24:] *= -1.0
    exact = sinc_true_peak_db(burst)
    assert exact > 20 * math.log10(0.5) + 3.5
    assert ideal_true_peak_db(np.concatenate((np.zeros(100), burst, np.zeros(100)))) == (
        pytest.approx(exact, abs=0.02)
    )
    assert peak_8x_db(burst) < exact - 1.0  # the old test meter's blind spot
    # ffmpeg's meter through PyAV: a 997 Hz sine at 0.3 is -13.47 LUFS, -10.46 dBTP.
    lufs, peak = ffmpeg_ebur128(0.3 * np.sin(2 * np.pi * 997 * t / sr), sr)
    assert lufs == pytest.approx(-13.47, abs=0.05) and peak == pytest.approx(-10.46, abs=0.02)


@pytest.mark.parametrize(("name", "sr"), [("speech", 24000), ("speech", 48000), *ADVERSARIAL[::2]])
def test_the_reconstruction_is_skipped_only_where_its_bound_holds(name: str, sr: int) -> None:
    """The envelope makes the band-limited reconstruction only where a bound on it (the
    8x reading of soxr's band, widened, plus what soxr removed) may exceed the level: that
    bound is never below the reconstruction, so skipping it changes no decision."""
    from core.audio.limiter import _AIM, _Envelope, _strict_peaks
    from core.audio.meter import _oversampled

    if name == "speech":
        rng = np.random.default_rng(sr)
        x = speech(sr=sr) + 1e-3 * rng.standard_normal(speech(sr=sr).size)
        target = TARGET
    else:
        x, target = adversarial(name, sr)
    x32 = (x * 10 ** ((target - pyloudnorm_lufs(x, sr)) / 20)).astype(np.float32)
    envelope = _Envelope(x32, sr, _oversampled(x32, sr, 4))
    ceiling = 10 ** ((CEILING - 0.05) / 20)
    skipped = 0
    for level in (ceiling * _AIM, 0.8 * ceiling):  # a later, lower level, as make-up asks
        envelope.where_above(level)
        ideal = _strict_peaks(x32, envelope.known).astype(np.float64)
        waiting = envelope.known_bounds > 0.0
        assert np.all(ideal[waiting] <= envelope.known_bounds[waiting])
        assert np.all(envelope.known_bounds[waiting] <= level)
        made = ~waiting
        assert np.allclose(
            envelope.known_values[made],
            np.maximum(envelope.known_values[made], ideal[made]),
            rtol=1e-3,
        )
        skipped += int(waiting.sum())
    if name == "speech":
        assert skipped > 0  # the point of the bound: most speech peaks need no FFT


@pytest.mark.parametrize("sr", [24000, 44100, 48000])
def test_the_short_interpolator_reads_at_least_what_ffmpeg_reads(sr: int) -> None:
    """The limiter's model of ffmpeg's meter (swresample's default 32-tap Kaiser filter,
    read between the samples) is never below ffmpeg's own reading, and close to it."""
    from core.audio.limiter import _short_peaks
    from tests.meters import ffmpeg_ebur128

    rng = np.random.default_rng(sr)
    noise = 0.2 * rng.standard_normal(sr)
    for x in (noise, np.clip(3.0 * noise, -0.9, 0.9), np.where(noise > 0.55, 0.9, noise)):
        x32 = x.astype(np.float32)
        padded = np.concatenate((np.zeros(32), x32.astype(np.float64), np.zeros(32)))
        model = 20 * math.log10(float(_short_peaks(padded, np.arange(sr) + 32).max()))
        reading = ffmpeg_ebur128(x32, sr)[1]
        # ffmpeg reads 8 (24 kHz), 4 (48 kHz) or ~4.35 (44.1 kHz) points per sample; the
        # model reads 16 and the peak between them.
        assert reading - 0.005 <= model <= reading + 0.3


@pytest.mark.parametrize(("name", "sr"), ADVERSARIAL)
def test_condition_holds_the_ceiling_up_to_nyquist(name: str, sr: int) -> None:
    from tests.meters import ffmpeg_ebur128, ideal_true_peak_db

    x, target = adversarial(name, sr)
    assert ideal_true_peak_db(x * 10 ** ((target - pyloudnorm_lufs(x, sr)) / 20)) > CEILING
    out = condition(x, sr, target_lufs=target, ceiling_dbtp=CEILING)
    assert out.limited  # the limiter acted
    assert ideal_true_peak_db(out.audio) <= CEILING + 0.1
    lufs, peak = ffmpeg_ebur128(out.audio, sr)
    assert peak <= CEILING + 0.1
    # The reported figure is the BS.1770 4x one, as other meters show it.
    assert out.true_peak_db == pytest.approx(true_peak_db(out.audio, sr), abs=1e-6)
    assert out.lufs is not None and abs(lufs - out.lufs) < 0.3


@pytest.mark.parametrize("sr", [24000, 44100, 48000])
def test_episode_master_holds_the_ceiling_up_to_nyquist(sr: int) -> None:
    from core.episodes.master import mix_episode
    from core.episodes.mixing import MixSettings, TimelineLine
    from tests.meters import ffmpeg_ebur128, ideal_true_peak_db

    items = [
        TimelineLine(k, "AB"[k % 2], name, adversarial(name, sr)[0].astype(np.float32), sr)
        for k, name in enumerate(("clipped", "flip"))
    ]
    result = mix_episode(items, MixSettings(sample_rate=sr, target_lufs=-8.0))
    raw = mix_episode(items, MixSettings(sample_rate=sr, master=False))
    assert ideal_true_peak_db(raw.audio) + 11.0 > CEILING  # the master's gain tops it
    assert ideal_true_peak_db(result.audio) <= CEILING + 0.1
    assert ffmpeg_ebur128(result.audio, sr)[1] <= CEILING + 0.1
