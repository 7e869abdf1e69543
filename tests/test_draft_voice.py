"""The espeak-ng draft voice: real synthesis through espeakng-loader's library."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from core.episodes.synthesis import draft
from core.episodes.synthesis.draft import DraftVoice, synthesize
from core.errors import VoiceError

pytestmark = pytest.mark.skipif(not draft.available(), reason="espeak-ng does not load here")

SENTENCE = "Hello there, this is the draft voice reading a short sentence."
REPO = Path(__file__).resolve().parents[1]


def seconds(audio: npt.NDArray[np.float32], rate: int) -> float:
    return len(audio) / rate


def longest_silence(audio: npt.NDArray[np.float32], rate: int) -> float:
    """Seconds of the longest run of samples quieter than -40 dBFS."""
    quiet = np.concatenate([[False], np.abs(audio) < 0.01, [False]])
    edges = np.flatnonzero(np.diff(quiet.astype(np.int8)))
    runs = edges[1::2] - edges[::2]
    return float(runs.max()) / rate if runs.size else 0.0


def fundamental(audio: npt.NDArray[np.float32], rate: int) -> float:
    """Median F0 in Hz over loud, clearly periodic 40 ms frames (autocorrelation)."""
    frame = int(0.04 * rate)
    shortest, longest = int(rate / 400), int(rate / 50)
    floor = 0.1 * float(np.abs(audio).max())
    estimates = []
    for start in range(0, len(audio) - frame, frame // 2):
        x = audio[start : start + frame].astype(np.float64)
        if np.sqrt(np.mean(x**2)) < floor:
            continue
        x -= x.mean()
        ac = np.correlate(x, x, "full")[frame - 1 :]
        ac /= ac[0]
        lag = shortest + int(np.argmax(ac[shortest:longest]))
        if ac[lag] > 0.5:
            estimates.append(rate / lag)
    assert len(estimates) >= 10, "too few voiced frames to measure a pitch"
    return float(np.median(estimates))


def test_speech_is_audible_float32_and_in_range() -> None:
    audio = synthesize(SENTENCE)
    assert audio.dtype == np.float32
    assert audio.ndim == 1
    assert np.isfinite(audio).all()
    assert float(np.abs(audio).max()) <= 1.0
    rms_dbfs = 20 * np.log10(np.sqrt(np.mean(audio.astype(np.float64) ** 2)))
    assert rms_dbfs > -40
    assert 2.0 < seconds(audio, 24000) < 6.0  # a dozen words at 165 wpm


def test_native_sample_rate_comes_from_espeak() -> None:
    assert isinstance(draft.NATIVE_SAMPLE_RATE, int)
    assert draft.NATIVE_SAMPLE_RATE == 22050
    native = synthesize(SENTENCE, sample_rate=draft.NATIVE_SAMPLE_RATE)
    at_24k = synthesize(SENTENCE, sample_rate=24000)
    assert len(at_24k) == pytest.approx(len(native) * 24000 / 22050, abs=2)


def test_duration_grows_with_text() -> None:
    once = synthesize(SENTENCE)
    thrice = synthesize(" ".join([SENTENCE] * 3))
    assert 2.5 < len(thrice) / len(once) < 3.5


def test_same_samples_on_every_call() -> None:
    first = synthesize(SENTENCE)
    synthesize("Something else in between, in another voice.", DraftVoice(pitch=80, rate=300))
    again = synthesize(SENTENCE)
    assert np.array_equal(first, again)


def test_same_samples_in_a_fresh_process_whose_import_loads_nothing(tmp_path: Path) -> None:
    out = tmp_path / "fresh.npy"
    script = textwrap.dedent(
        f"""
        import json, sys
        import numpy as np
        from core.episodes.synthesis import draft
        maps = open("/proc/self/maps").read() if sys.platform == "linux" else ""
        print(json.dumps({{"espeak_mapped": "libespeak-ng" in maps,
                           "soxr_imported": "soxr" in sys.modules}}))
        np.save({str(out)!r}, draft.synthesize({SENTENCE!r}))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    lazy = json.loads(done.stdout.strip().splitlines()[-1])
    assert lazy == {"espeak_mapped": False, "soxr_imported": False}
    assert np.array_equal(np.load(out), synthesize(SENTENCE))


def test_higher_pitch_measures_higher() -> None:
    rate = 16000
    low = fundamental(synthesize(SENTENCE, DraftVoice(pitch=20), sample_rate=rate), rate)
    high = fundamental(synthesize(SENTENCE, DraftVoice(pitch=80), sample_rate=rate), rate)
    assert 50 < low < high < 300
    assert high / low > 1.3


def test_sample_rate_is_honoured() -> None:
    at_24k = synthesize(SENTENCE, sample_rate=24000)
    at_16k = synthesize(SENTENCE, sample_rate=16000)
    assert len(at_16k) / len(at_24k) == pytest.approx(16000 / 24000, rel=0.001)


def test_faster_rate_is_shorter() -> None:
    slow = synthesize(SENTENCE, DraftVoice(rate=120))
    fast = synthesize(SENTENCE, DraftVoice(rate=300))
    assert len(fast) < 0.6 * len(slow)


def test_ssml_break_lengthens_by_about_the_break_time() -> None:
    rate = 16000
    plain = synthesize("Hello there how are you?", sample_rate=rate, ssml=True)
    short = synthesize(
        'Hello there <break time="300ms"/> how are you?', sample_rate=rate, ssml=True
    )
    long = synthesize(
        'Hello there <break time="1300ms"/> how are you?', sample_rate=rate, ssml=True
    )
    # A break also ends the clause, which adds a short pause of its own.
    assert 0.3 <= seconds(short, rate) - seconds(plain, rate) < 0.6
    assert seconds(long, rate) - seconds(short, rate) == pytest.approx(1.0, abs=0.05)
    # The break is silence between the words.
    assert longest_silence(long, rate) > 1.25
    assert longest_silence(plain, rate) < 0.3


def test_ssml_markup_is_read_aloud_without_the_flag_and_emphasis_works() -> None:
    text = 'Hello there <break time="300ms"/> how are you?'
    assert len(synthesize(text)) > 1.5 * len(synthesize(text, ssml=True))
    stressed = synthesize("Hello <emphasis>there</emphasis> how are you?", ssml=True)
    assert not np.array_equal(stressed, synthesize("Hello there how are you?", ssml=True))


def test_other_languages_and_variants() -> None:
    us = synthesize(SENTENCE)
    gb = synthesize(SENTENCE, DraftVoice(language="en-gb"))  # a language code, not a file
    f3 = synthesize(SENTENCE, DraftVoice(language="en-us+f3"))
    assert not np.array_equal(us, gb)
    assert not np.array_equal(us, f3)
    assert fundamental(f3, 24000) > 1.5 * fundamental(us, 24000)  # f3 is a female variant


@pytest.mark.parametrize("text", ["", "   \n\t", "\0"])
def test_empty_text_is_a_voice_error(text: str) -> None:
    with pytest.raises(VoiceError, match="text is empty"):
        synthesize(text)


@pytest.mark.parametrize(
    ("language", "message"),
    [
        ("xx-zz", "no voice 'xx-zz'"),
        ("f3", "no voice 'f3'"),  # a variant as a voice segfaults espeak-ng if passed on
        ("en-us+f9", "no voice variant 'f9'"),
    ],
)
def test_unknown_voice_is_a_voice_error(language: str, message: str) -> None:
    with pytest.raises(VoiceError, match=message):
        synthesize(SENTENCE, DraftVoice(language=language))
    assert len(synthesize("Still alive.")) > 0


@pytest.mark.parametrize(
    ("field", "value"),
    [("pitch", 101), ("pitch", -1), ("pitch_range", 120), ("rate", 79), ("volume", 201)],
)
def test_out_of_range_parameter_is_a_voice_error(field: str, value: int) -> None:
    settings: dict[str, Any] = {field: value}
    with pytest.raises(VoiceError, match=rf"{field} must be a whole number from \d+ to \d+"):
        DraftVoice(**settings)


def test_bad_sample_rate_is_a_voice_error() -> None:
    with pytest.raises(VoiceError, match="sample_rate"):
        synthesize(SENTENCE, sample_rate=0)


def test_library_that_does_not_load_is_a_voice_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import espeakng_loader

    junk = tmp_path / "libespeak-ng.so"
    junk.write_bytes(b"not a shared library")
    monkeypatch.setattr(espeakng_loader, "get_library_path", lambda: str(junk))
    monkeypatch.setattr(draft, "_runtime_found", None)
    monkeypatch.setattr(draft, "_runtime_failure", None)
    assert not draft.available()
    with pytest.raises(VoiceError) as caught:
        synthesize(SENTENCE)
    message = str(caught.value)
    assert str(junk) in message
    assert "reinstall espeakng-loader" in message
    assert "\n" not in message


def test_unreadable_data_is_a_voice_error_not_an_exit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # espeak_Initialize calls exit() when its data cannot be read, unless told not to.
    import espeakng_loader

    (tmp_path / "phontab").write_bytes(b"")
    (tmp_path / "lang").mkdir()
    monkeypatch.setattr(espeakng_loader, "get_data_path", lambda: str(tmp_path))
    monkeypatch.setattr(draft, "_runtime_found", None)
    monkeypatch.setattr(draft, "_runtime_failure", None)
    with pytest.raises(VoiceError, match="reinstall espeakng-loader"):
        synthesize(SENTENCE)


def test_concurrent_threads_match_sequential() -> None:
    jobs = [
        (SENTENCE, DraftVoice()),
        ("A second, different sentence.", DraftVoice(pitch=70, rate=220)),
        ("Numbers: one, two, three.", DraftVoice(language="en-gb+m3")),
        (SENTENCE, DraftVoice(volume=60, pitch_range=90)),
    ]
    expected = [synthesize(text, voice) for text, voice in jobs]
    results: dict[int, list[npt.NDArray[np.float32]]] = {}
    errors: list[BaseException] = []

    def work(worker: int) -> None:
        try:
            order = jobs[worker:] + jobs[:worker]  # every thread starts on a different job
            results[worker] = [synthesize(text, voice) for text, voice in order * 2]
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    assert len(results) == 4
    for worker, outs in results.items():
        assert len(outs) == 2 * len(jobs)
        for i, got in enumerate(outs):
            assert np.array_equal(got, expected[(worker + i) % len(jobs)])


def test_a_killed_process_leaves_no_temporary_files(tmp_path: Path) -> None:
    """The private copy of the library must not outlive a process killed with SIGKILL
    (no atexit runs then): nothing may be left in the system's temporary folder."""
    system_tmp = tmp_path / "tmp"
    system_tmp.mkdir()
    script = textwrap.dedent(
        f"""
        import os, signal
        import numpy as np
        from core.episodes.synthesis import draft
        np.save({str(tmp_path / "killed.npy")!r}, draft.synthesize({SENTENCE!r}))
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO,
        env={**os.environ, "TMPDIR": str(system_tmp)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == -9, done.stderr
    assert list(system_tmp.iterdir()) == []
    # And the samples are those of any other process: still a private, pristine instance.
    assert np.array_equal(np.load(tmp_path / "killed.npy"), synthesize(SENTENCE))
