"""core.dataset.qc: each metric separates a clean segment from a defective one; flags name them."""

from __future__ import annotations

import dataclasses
import math
from functools import cache

import numpy as np
import numpy.typing as npt
import pytest

from core.audio.conditioning import condition
from core.dataset.qc import (
    DB_FLOOR,
    FLAG_NAMES,
    ClipCounter,
    bandwidth_hz,
    clipping_ratio,
    flags_for,
    hum_score,
    measure,
    plosive_ratio,
    rms_db,
    snr_db,
)
from core.episodes.synthesis.draft import DraftVoice, synthesize
from core.records import QC
from core.settings import AudioTargets, QCThresholds

SR = 24000
TEXT = (
    "The quick brown fox jumps over the lazy dog. She sells sea shells by the sea shore, "
    "and the shells she sells are surely seashells."
)
THRESHOLDS = QCThresholds()
TARGETS = AudioTargets()

Audio = npt.NDArray[np.float64]


@cache
def segment(pitch: int = 30, sr: int = SR, language: str = "en-gb") -> Audio:
    """A 7-8 s utterance as ingest cuts it: 150 ms margins, -60 dBFS noise floor,
    speech at about -20 dBFS RMS with peaks under full scale."""
    voice = synthesize(TEXT, DraftVoice(language=language, pitch=pitch), sample_rate=sr)
    speech = voice.astype(np.float64)
    loud = np.flatnonzero(np.abs(speech) > 1e-3)
    speech = speech[loud[0] : loud[-1] + 1]
    margin = np.zeros(int(0.15 * sr))
    audio = np.concatenate([margin, speech, margin])
    audio *= min(0.1 / math.sqrt(float(np.mean(audio**2))), 0.9 / float(np.abs(audio).max()))
    audio += np.random.default_rng(pitch).standard_normal(audio.size) * 10 ** (-60 / 20)
    audio.setflags(write=False)
    return audio


def duration(audio: npt.ArrayLike, sr: int = SR) -> float:
    return np.asarray(audio).size / sr


def qc_of(audio: Audio, sr: int = SR) -> QC:
    """QC as ingest takes it: conditioned audio, clipping and level from the raw cut."""
    return measure(condition(audio, sr), sr, raw=audio)


def flags_of(audio: Audio, sr: int = SR, thresholds: QCThresholds = THRESHOLDS) -> set[str]:
    return set(flags_for(qc_of(audio, sr), thresholds, duration(audio, sr), TARGETS))


def tone(freq: float, n: int, rms_dbfs: float, sr: int = SR, phase: float = 0.3) -> Audio:
    wave = np.sin(2 * np.pi * freq * np.arange(n) / sr + phase)
    return wave * 10 ** (rms_dbfs / 20) * math.sqrt(2)


def thumps(
    n: int, *, every: float = 0.5, seconds: float = 0.03, level: float = 0.5, freq: float = 0.0
) -> Audio:
    """Low-frequency bursts like a "p" popping the mic: half-sine pulses (freq 0) or
    Hann-windowed ``freq`` Hz bursts, every ``every`` s (+-20 %)."""
    rng = np.random.default_rng(11)
    out = np.zeros(n)
    m = int(seconds * SR)
    t = np.arange(m) / SR
    pulse = (
        np.sin(np.pi * t / seconds) if freq == 0 else np.hanning(m) * np.sin(2 * np.pi * freq * t)
    )
    pulse *= level / np.abs(pulse).max()
    start = int(0.3 * SR)
    while start + m < n:
        out[start : start + m] += pulse
        start += int(every * SR * (1 + 0.2 * rng.uniform(-1, 1)))
    return out


def pulse_train(freq: float, seconds: float = 8.0, jitter: float = 0.02) -> Audio:
    """Voiced-speech stand-in with a steady pitch: glottal pulses with period jitter."""
    from scipy import signal

    rng = np.random.default_rng(5)
    out = np.zeros(int(seconds * SR))
    t = 0.0
    while t < seconds - 0.01:
        out[int(t * SR)] = 1.0
        t += (1 / freq) * (1 + jitter * rng.standard_normal())
    b, a = signal.butter(2, 800, fs=SR)
    voiced = signal.lfilter(b, a, out)
    return np.asarray(voiced / math.sqrt(float(np.mean(voiced**2))) * 0.1)


# --- clean speech -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pitch", "language"),
    [(0, "en-gb"), (30, "en-gb"), (50, "en-us"), (70, "en-us"), (50, "en-us+f3")],
)
def test_clean_speech_has_no_flags(pitch: int, language: str) -> None:
    audio = segment(pitch, language=language)
    qc = qc_of(audio)
    assert flags_for(qc, THRESHOLDS, duration(audio), TARGETS) == ()
    assert qc.rms_db is not None and -23.0 < qc.rms_db < -19.0
    assert qc.snr_db is not None and qc.snr_db > 20.0
    assert qc.clipped == 0.0
    assert qc.hum_score is not None and qc.hum_score < 0.05
    assert qc.plosive_ratio is not None and qc.plosive_ratio < 0.005
    assert qc.lufs == pytest.approx(TARGETS.target_lufs, abs=0.5)
    assert qc.true_peak_db is not None and qc.true_peak_db <= TARGETS.true_peak_dbtp
    assert qc.similarity is None


@pytest.mark.parametrize("sr", [16000, 22050, 44100, 48000])
def test_any_sample_rate(sr: int) -> None:
    audio = segment(30, sr)
    qc = qc_of(audio, sr)
    assert flags_for(qc, THRESHOLDS, duration(audio, sr), TARGETS) == ()
    assert qc.snr_db is not None and qc.snr_db > 20.0


# --- each metric against its defect -------------------------------------------------


def test_snr_separates_noise() -> None:
    clean = segment(30)
    noisy = clean + np.random.default_rng(3).standard_normal(clean.size) * 10 ** (-25 / 20)
    assert (snr_db(clean, SR) or 0.0) > 20.0
    assert (snr_db(noisy, SR) or 99.0) < THRESHOLDS.min_snr_db - 3.0
    assert "noisy" not in flags_of(clean)
    assert "noisy" in flags_of(noisy)


def test_clipping_is_measured_on_the_raw_cut() -> None:
    clean = segment(30)
    clipped = np.clip(clean * 4.0, -1.0, 1.0)  # 12 dB too hot: flat tops
    assert clipping_ratio(clean) == 0.0
    assert clipping_ratio(clipped) > 0.01
    assert "clipped" in flags_of(clipped)
    assert "clipped" not in flags_of(clean)
    # Conditioning lowers the flat tops, but they are found at whatever level they lie.
    conditioned = condition(clipped, SR)
    assert measure(conditioned, SR).clipped == pytest.approx(clipping_ratio(clipped), rel=0.3)
    assert measure(conditioned, SR, raw=clipped).clipped == pytest.approx(clipping_ratio(clipped))


def test_clipping_needs_flat_tops() -> None:
    # Peaks touching full scale without flat tops are not clipping.
    touching = segment(30) / np.abs(segment(30)).max() * 0.9995
    assert clipping_ratio(touching) < THRESHOLDS.max_clipped_ratio
    square = np.clip(2.0 * np.sign(np.sin(2 * np.pi * 100 * np.arange(SR) / SR)), -1.0, 1.0)
    assert clipping_ratio(square) > 0.99
    # Integer full scale (+32767/32768) counts; a lower custom full scale works too.
    assert clipping_ratio(np.full(100, 32767 / 32768)) == 1.0
    assert clipping_ratio(np.full(100, 0.5), level=0.5) == 1.0
    assert clipping_ratio(np.array([1.0, 1.0, 0.0, 1.0, 1.0, 0.0])) == 0.0  # runs of 2


@pytest.mark.parametrize("mains", [50.0, 60.0])
def test_hum_is_found(mains: float) -> None:
    clean = segment(30)
    hummy = clean + tone(mains, clean.size, -26.0)
    assert hum_score(clean, SR) < 0.05
    assert hum_score(hummy, SR) > 0.4
    assert "hum" in flags_of(hummy)
    # A buzz (odd harmonics too) and hum at its peak level of -26 dBFS also count.
    t = np.arange(clean.size) / SR
    buzz = sum(a * np.sin(2 * np.pi * k * mains * t) for k, a in ((1, 1.0), (3, 0.6), (5, 0.3)))
    buzz = 10 ** (-26 / 20) * buzz / np.abs(buzz).max()
    assert hum_score(clean + buzz, SR) > THRESHOLDS.max_hum_score


@pytest.mark.parametrize("pitch", [0, 30])
def test_low_voices_are_not_hum(pitch: int) -> None:
    audio = segment(pitch)
    assert hum_score(audio, SR) < 0.05
    assert "hum" not in flags_of(audio)


@pytest.mark.parametrize("freq", [100.0, 120.0])
def test_steady_pitch_on_a_mains_harmonic_is_not_hum(freq: float) -> None:
    # Voiced speech at exactly 2x the mains frequency has lines at 100/200 Hz (or
    # 120/240 Hz) but nothing at the mains frequency itself.
    for jitter in (0.0, 0.02):
        assert hum_score(pulse_train(freq, jitter=jitter), SR) < 0.05
    # The same voice over real hum is flagged.
    voiced = pulse_train(freq)
    mains = freq / 2
    assert hum_score(voiced + tone(mains, voiced.size, -26.0), SR) > 0.4


@pytest.mark.parametrize(
    "kind",
    [
        {"seconds": 0.03, "level": 0.5},  # half-sine pressure pulses
        {"seconds": 0.04, "level": 0.5, "freq": 50.0},
        {"seconds": 0.02, "level": 0.3, "freq": 80.0},
        {"seconds": 0.03, "level": 0.2, "freq": 30.0},
    ],
)
def test_plosives_are_found(kind: dict[str, float]) -> None:
    clean = segment(30)
    popped = clean + thumps(clean.size, **kind)
    assert plosive_ratio(clean, SR) < 0.005
    assert plosive_ratio(popped, SR) > 0.015
    strict = dataclasses.replace(THRESHOLDS, max_plosive_ratio=0.01)
    assert "plosives" in flags_of(popped, thresholds=strict)
    assert "plosives" not in flags_of(clean, thresholds=strict)


def test_plosives_not_confused_with_low_voices_or_hum() -> None:
    for audio in (segment(0), segment(30) + tone(50.0, segment(30).size, -26.0)):
        assert plosive_ratio(audio, SR) < 0.005


# --- odd segments -----------------------------------------------------------------------


def test_short_segment_is_unmeasured_not_an_error() -> None:
    short = segment(30)[SR : SR + int(0.3 * SR)]
    qc = qc_of(short)
    assert qc.lufs is None
    flags = flags_for(qc, THRESHOLDS, duration(short), TARGETS)
    assert "loudness_unmeasured" in flags
    assert "too_short" in flags
    assert all_finite(qc)


def test_digital_silence() -> None:
    silence = np.zeros(6 * SR, dtype=np.float32)
    qc = qc_of(silence)
    assert qc.rms_db == DB_FLOOR
    assert qc.true_peak_db == DB_FLOOR
    assert qc.lufs is None
    assert qc.snr_db is None  # not measured: neither speech nor noise
    flags = flags_for(qc, THRESHOLDS, duration(silence), TARGETS)
    assert "too_quiet" in flags
    assert "loudness_unmeasured" in flags
    assert all_finite(qc)
    assert all_finite(measure(np.zeros(0), SR))


def test_quiet_recording_is_too_quiet() -> None:
    quiet = segment(30) * 10 ** (-25 / 20)  # about -45 dBFS RMS
    assert rms_db(quiet) < THRESHOLDS.min_rms_db
    assert "too_quiet" in flags_of(quiet)


# --- flags_for ------------------------------------------------------------------------


GOOD = QC(rms_db=-20.0, snr_db=40.0, clipped=0.0, hum_score=0.0, plosive_ratio=0.0,
          lufs=-19.0, true_peak_db=-1.0)  # fmt: skip
"""A record that passes every check at the default thresholds and targets."""


def test_flags_for_each_check() -> None:
    good = GOOD
    assert flags_for(good, THRESHOLDS, 10.0, TARGETS) == ()
    cases = {
        "too_quiet": {"rms_db": -41.0},
        "noisy": {"snr_db": 9.9},
        "clipped": {"clipped": 0.002},
        "hum": {"hum_score": 0.3},
        "plosives": {"plosive_ratio": 0.06},
        "narrowband": {},
        "loudness_unmeasured": {"lufs": None},
        "true_peak": {"true_peak_db": -0.85},
    }
    for name, change in cases.items():
        bad = dataclasses.replace(good, **change)
        narrow = 3800.0 if name == "narrowband" else None
        assert flags_for(bad, THRESHOLDS, 10.0, TARGETS, bandwidth=narrow) == (name,)
    assert flags_for(good, THRESHOLDS, 10.0, TARGETS, bandwidth=7500.0) == ()
    assert flags_for(good, THRESHOLDS, 4.9, TARGETS) == ("too_short",)
    assert flags_for(good, THRESHOLDS, 15.1, TARGETS) == ("too_long",)
    # The true peak is allowed 0.1 dB of rounding over the target.
    assert flags_for(dataclasses.replace(good, true_peak_db=-0.95), THRESHOLDS, 10.0, TARGETS) == ()


def test_flags_come_in_a_stable_order_and_unmeasured_metrics_raise_none() -> None:
    everything = QC(rms_db=-80.0, snr_db=1.0, clipped=0.5, hum_score=0.9, plosive_ratio=0.5,
                    lufs=None, true_peak_db=3.0)  # fmt: skip
    flags = flags_for(everything, THRESHOLDS, 20.0, TARGETS, bandwidth=3000.0)
    assert flags == tuple(f for f in FLAG_NAMES if f != "too_short")
    assert flags_for(QC(), THRESHOLDS, 10.0, TARGETS) == ("loudness_unmeasured",)


# --- general properties ---------------------------------------------------------------


def all_finite(qc: QC) -> bool:
    values = [qc.rms_db, qc.clipped, qc.hum_score, qc.plosive_ratio, qc.true_peak_db]
    values += [v for v in (qc.lufs, qc.snr_db) if v is not None]
    return all(v is not None and math.isfinite(v) for v in values)


def test_finite_deterministic_and_bounded() -> None:
    clean = segment(30)
    cases = [
        clean,
        np.clip(clean * 4.0, -1.0, 1.0),
        clean + tone(50.0, clean.size, -26.0),
        clean + thumps(clean.size),
        np.random.default_rng(9).standard_normal(3 * SR) * 0.3,
        np.full(2 * SR, 0.25),  # DC only
    ]
    for audio in cases:
        first = qc_of(audio)
        assert first == qc_of(audio)
        assert all_finite(first)
        for share in (first.clipped, first.hum_score, first.plosive_ratio):
            assert share is not None and 0.0 <= share <= 1.0


def test_measure_reuses_a_conditioned_result() -> None:
    audio = segment(70)
    conditioned = condition(audio, SR)
    reused = measure(conditioned, SR, raw=audio)
    fresh = measure(conditioned.audio, SR, raw=audio)
    assert reused.lufs == pytest.approx(fresh.lufs, abs=1e-6)
    assert reused.true_peak_db == pytest.approx(fresh.true_peak_db, abs=1e-3)
    assert dataclasses.replace(reused, lufs=None, true_peak_db=None) == dataclasses.replace(
        fresh, lufs=None, true_peak_db=None
    )


def test_measure_rejects_multichannel() -> None:
    with pytest.raises(ValueError, match="mono"):
        measure(np.zeros((SR, 2)), SR)


def test_clipping_in_one_channel_of_a_stereo_cut() -> None:
    clean = segment(30)
    left = np.clip(clean * 4.0, -1.0, 1.0)
    stereo = np.stack([left, clean * 0.5], axis=1)
    mono = stereo.mean(axis=1)
    assert clipping_ratio(stereo) == pytest.approx(clipping_ratio(left))
    assert clipping_ratio(mono) == 0.0  # the downmix hides the flat tops
    qc = measure(condition(mono, SR), SR, raw=stereo)
    assert "clipped" in flags_for(qc, THRESHOLDS, duration(mono), TARGETS)
    assert rms_db(np.stack([clean, clean], axis=1)) == pytest.approx(rms_db(clean), abs=1e-6)


def test_importing_qc_leaves_scipy_for_later() -> None:
    # scipy.signal takes over a second to import: the app must not pay for it at start.
    import subprocess
    import sys
    from pathlib import Path

    code = "import sys, core.dataset.qc, core.audio.conditioning; print('scipy' in sys.modules)"
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root
    )
    assert out.stdout.strip() == "False"


# --- detectors that find what they name, at any level, without false alarms ---------------


def _continuous(audio: Audio) -> Audio:
    """Speech with its pauses cut out: no frame of the result is silence."""
    envelope = np.convolve(np.abs(audio), np.ones(480) / 480, "same")
    return audio[envelope > 0.01]


def _telephone(audio: Audio, sr: int = SR) -> Audio:
    """The same audio through an 8 kHz channel and back up (soxr, as ingest resamples)."""
    import soxr

    return np.asarray(soxr.resample(soxr.resample(audio, sr, 8000), 8000, sr), np.float64)


def test_clipping_is_found_at_any_level() -> None:
    clean = segment(30)
    clipped = np.clip(clean * 4.0, -1.0, 1.0)
    for audio in (clipped * 0.9, clipped * 0.25):  # clipped, then turned down
        assert clipping_ratio(audio) == clipping_ratio(clipped) > 0.02
        assert "clipped" in flags_of(audio)
    at_half = np.clip(clean * 2.0, -0.5, 0.5)  # a -6 dBFS ceiling, 12 dB too hot
    assert clipping_ratio(at_half) == clipping_ratio(np.clip(clean * 4.0, -1.0, 1.0))
    assert "clipped" in flags_of(at_half)
    # One-sided clipping (an offset waveform clipped at +0.3 only) counts too.
    one_sided = np.minimum(clean * 3.0, 0.3)
    assert clipping_ratio(one_sided) > THRESHOLDS.max_clipped_ratio
    # Clean speech at any level is not clipped.
    for gain in (0.1, 0.5, 1.0):
        assert clipping_ratio(clean * gain) == 0.0


def test_streamed_clip_counts_match_at_any_level() -> None:
    """ClipCounter at a native 44.1 kHz rate, fed in odd blocks, counts what clipping_ratio
    counts, for a recording clipped and then scaled down, and for a clean one."""
    sr = 44100
    clean = segment(30, sr)
    for take, clipped in ((clean, False), (np.clip(clean * 4.0, -1.0, 1.0) * 0.7, True)):
        stereo = np.stack([take, clean * 0.3], axis=1).astype(np.float32)
        counter = ClipCounter(sr, 2)
        for start in range(0, len(stereo), 7001):
            counter.feed(stereo[start : start + 7001])
        counter.finish()
        total = len(stereo) / sr
        assert counter.ratio(0.0, total) == pytest.approx(clipping_ratio(stereo), abs=1e-9)
        half = len(stereo) // 2
        assert counter.ratio(half / sr, total) == pytest.approx(
            clipping_ratio(stereo[half:], level=float(np.abs(take).max())), abs=2e-4
        )
        assert (counter.ratio(0.0, total) > THRESHOLDS.max_clipped_ratio) is clipped
    with pytest.raises(RuntimeError):
        ClipCounter(sr, 1).ratio(0.0, 1.0)


def test_snr_needs_no_pauses() -> None:
    for pitch in (0, 30, 70):
        continuous = _continuous(segment(pitch))
        qc = qc_of(continuous)
        assert qc.snr_db is not None and qc.snr_db > THRESHOLDS.min_snr_db + 2.0
        assert "noisy" not in flags_for(qc, THRESHOLDS, duration(continuous), TARGETS)
        # The same continuous speech under white noise 5 dB below it is still noisy.
        noisy = continuous + np.random.default_rng(pitch).standard_normal(continuous.size) * 0.056
        assert "noisy" in flags_of(noisy)
    # A steady tone is neither speech nor noise: unknown, not noisy.
    steady = tone(440.0, 6 * SR, -20.0)
    assert snr_db(steady, SR) is None
    assert "noisy" not in flags_of(steady)
    # Noise alone reads as noise.
    assert snr_db(np.random.default_rng(1).standard_normal(6 * SR) * 0.1, SR) == -20.0


@pytest.mark.parametrize("every", [2.0, 2.5, 3.0])
def test_short_plosives_are_found(every: float) -> None:
    clean = np.concatenate([segment(p) for p in (0, 30, 50, 70)])
    for kind in ({"level": 0.3, "freq": 80.0}, {"level": 0.3, "freq": 50.0}, {"level": 0.5}):
        popped = clean + thumps(clean.size, every=every, seconds=0.02, **kind)
        assert plosive_ratio(popped, SR) > THRESHOLDS.max_plosive_ratio
        assert "plosives" in flags_of(popped)
    assert plosive_ratio(clean, SR) == 0.0


def test_telephone_band_is_narrowband() -> None:
    from tests.conftest import TESTDATA

    speech = [segment(30), segment(70, language="en-us")]
    import soundfile as sf
    import soxr

    jfk, rate = sf.read(str(TESTDATA / "jfk.flac"))
    speech.append(np.asarray(soxr.resample(jfk.mean(axis=1), rate, SR), np.float64))
    for audio in speech:
        wide = bandwidth_hz(audio, SR)
        narrow = bandwidth_hz(_telephone(audio), SR)
        assert wide is not None and wide >= 10000.0
        assert narrow is not None and narrow <= 4500.0
        assert "narrowband" not in flags_for(
            qc_of(audio), THRESHOLDS, duration(audio), TARGETS, bandwidth=wide
        )
        assert "narrowband" in flags_for(
            qc_of(audio), THRESHOLDS, duration(audio), TARGETS, bandwidth=narrow
        )
    # A 16 kHz source keeps 7.5 kHz or more and passes; an 8 kHz file read as it is fails.
    import soxr

    wideband16 = soxr.resample(soxr.resample(segment(30), SR, 16000), 16000, SR)
    assert (bandwidth_hz(wideband16, SR) or 0.0) >= THRESHOLDS.min_bandwidth_hz
    assert (bandwidth_hz(soxr.resample(segment(30), SR, 8000), 8000) or 1e9) <= 4000.0
    assert bandwidth_hz(np.zeros(SR), SR) is None
    assert bandwidth_hz(np.zeros(10), SR) is None


def _demo_clean_stretches(ws: object) -> list[tuple[Audio, int]]:
    """The demo's raw recordings (native rate and channels) between planted defects."""
    import json

    import soundfile as sf

    root = ws.root  # type: ignore[attr-defined]
    truth = json.loads((ws.assets_dir / "demo-truth.json").read_text())  # type: ignore[attr-defined]
    out = []
    for rec in truth["recordings"].values():
        audio, rate = sf.read(str(root / rec["raw"]), always_2d=True)
        bad = [(p["start_sec"] - 0.5, p["end_sec"] + 0.5) for p in rec["planted"]]
        cues = [(c["start_sec"] - 0.15, c["end_sec"] + 0.15) for c in rec["cues"]]
        for a, b in cues:
            if all(b <= x or a >= y for x, y in bad):
                out.append((audio[int(a * rate) : int(b * rate)], rate))
    return out


def test_clean_material_raises_no_false_alarms(demo_workspace: object) -> None:
    """Clipping, plosives, noise and bandwidth flag none of: the espeak voices, jfk.flac
    (a real recording, at its native 44.1 kHz stereo and at 24 kHz), continuous speech,
    and every demo sentence away from the planted defects (native rate)."""
    import soundfile as sf
    import soxr

    from tests.conftest import TESTDATA

    cases: list[tuple[Audio, int]] = []
    for pitch, language in ((0, "en-gb"), (30, "en-gb"), (50, "en-us"), (70, "en-us")):
        cases += [(segment(pitch, language=language), SR)]
        cases += [(_continuous(segment(pitch, language=language)), SR)]
    cases += [(segment(50, language="en-us+f3"), SR), (segment(30, 48000), 48000)]
    jfk, rate = sf.read(str(TESTDATA / "jfk.flac"), always_2d=True)
    cases += [(jfk, rate), (np.asarray(soxr.resample(jfk.mean(axis=1), rate, SR)), SR)]
    demo = _demo_clean_stretches(demo_workspace)
    assert len(demo) >= 10
    cases += demo
    watched = {"clipped", "plosives", "noisy", "narrowband"}
    for raw, rate in cases:
        mono = raw.mean(axis=1) if raw.ndim == 2 else raw
        qc = measure(condition(mono, rate), rate, raw=raw)
        flags = flags_for(
            qc, THRESHOLDS, duration(mono, rate), TARGETS, bandwidth=bandwidth_hz(raw, rate)
        )
        assert watched.isdisjoint(flags), (rate, raw.shape, flags, qc)
