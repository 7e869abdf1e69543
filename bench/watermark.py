"""The synthetic-speech mark: calibration of `podforge check`, detection through the whole
delivery chain, and what the mark costs.

1. **Unmarked corpus** (should all read unmarked): espeak-ng speech in six voices and
   languages, jfk.flac (a real recording), a music bed, 50/60 Hz hum and room noise at three
   levels, and speech under music, with hum and with noise; each as made and through a
   128 kbit/s MP3. Printed per class: speech windows, windows at or over the window
   threshold, the highest score, the verdict; then the window false-positive rate with its
   95 % upper bound (rule of three when none is found).
2. **Marked corpus** (should all read marked): the same speech marked, under a bed, through
   MP3, and with one line in four marked.
3. **Episodes**: the demo episode rendered with the draft voice, and a 30-minute two-speaker
   episode (marked lines, ducked bed, master, streamed WAV + MP3), both checked on the final
   MP3 as `podforge check` would.
4. **Cost**: marking speed against real time (CPU), the mark-to-signal ratio, the loudness
   change (the project's meter) and the level change below and above 2 kHz.

    uv run python bench/watermark.py [--minutes 30] [--speech-sentences 24]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from mix import cached_lines, timeline

from core.audio.io import read, resample
from core.audio.meter import integrated_lufs
from core.audio.mp3 import encode_mp3
from core.demo.corpus import SENTENCES
from core.demo.workspace import mains_hum, music_bed, room_noise
from core.episodes import mixing
from core.episodes.master import render_episode_files
from core.episodes.synthesis.draft import DraftVoice, synthesize
from core.watermark.detect import WINDOW_THRESHOLD, CheckResult, check_audio, check_file
from core.watermark.perth import PerthMark, load_mark

SR = 24000
VOICES = ("en-us", "en-gb-x-rp", "en+f3", "en+m7", "de", "fr")
ROOT = Path(__file__).resolve().parents[1]


def espeak(text: str, voice: str) -> np.ndarray:
    return synthesize(text, DraftVoice(language=voice), SR)


def through_mp3(audio: np.ndarray, scratch: Path) -> np.ndarray:
    path = scratch / "round-trip.mp3"
    path.write_bytes(encode_mp3(np.clip(audio, -1, 1), SR, bitrate_kbps=128))
    return read(path, target_rate=SR)[0]


def row(name: str, result: CheckResult) -> None:
    top = max(result.scores, default=float("nan"))
    print(
        f"  {name:34s} {result.speech_windows:4d} speech windows, "
        f"{result.marked_windows:4d} >= {WINDOW_THRESHOLD}, max {top:.3f} -> {result.verdict}"
    )


def band_db(audio: np.ndarray, low: float, high: float) -> float:
    spectrum = np.abs(np.fft.rfft(audio)) ** 2
    freqs = np.fft.rfftfreq(audio.size, 1 / SR)
    return float(10 * np.log10(spectrum[(freqs >= low) & (freqs < high)].sum() + 1e-20))


def corpus(
    speech: list[np.ndarray], mark: PerthMark, scratch: Path
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    talk = np.concatenate(speech)
    n = talk.size
    rng = np.random.default_rng(11)
    bed = music_bed(SR, n / SR, rng)[:n]
    bed = bed.mean(axis=1) if bed.ndim > 1 else bed
    jfk, rate = read(ROOT / "tests" / "data" / "jfk.flac")
    plain: dict[str, np.ndarray] = {
        "speech (6 voices)": talk,
        "jfk.flac (real recording)": resample(jfk, rate, SR),
        "music bed": bed,
        "speech under music (-18 dB)": talk + 0.12 * bed,
    }
    for level in (-40.0, -30.0, -20.0):
        plain[f"hum 50 Hz {level:.0f} dBFS"] = mains_hum(n, SR, 50.0, level)
        plain[f"hum 60 Hz {level:.0f} dBFS"] = mains_hum(n, SR, 60.0, level)
        plain[f"room noise {level:.0f} dBFS"] = room_noise(n, SR, rng, level)
        plain[f"speech + hum {level:.0f} dBFS"] = talk + mains_hum(n, SR, 50.0, level)
        plain[f"speech + noise {level:.0f} dBFS"] = talk + room_noise(n, SR, rng, level)
    for name in list(plain):
        plain[f"{name}, mp3"] = through_mp3(plain[name], scratch)
    marked_lines = [mark.apply(s, SR) for s in speech]
    marked_talk = np.concatenate(marked_lines)
    marked: dict[str, np.ndarray] = {
        "marked speech": marked_talk,
        "marked speech under music": 0.7 * (marked_talk + 0.12 * bed),
        "one line in four marked": np.concatenate(
            [
                m if i % 4 == 0 else s
                for i, (m, s) in enumerate(zip(marked_lines, speech, strict=True))
            ]
        ),
    }
    for name in list(marked):
        marked[f"{name}, mp3"] = through_mp3(marked[name], scratch)
    return plain, marked


def timed(what: str, fn: Callable[[], CheckResult]) -> CheckResult:
    start = time.perf_counter()
    result = fn()
    took = time.perf_counter() - start
    print(f"  {what}: {result.verdict}, {result.summary()} (checked in {took:.1f} s)")
    return result


def episodes(mark: PerthMark, minutes: float, scratch: Path) -> None:
    print("episodes, checked on the final MP3:")
    demo = scratch / "demo"
    subprocess.run(
        ["podforge", "demo", str(demo), "--no-open", "--seconds", "10"], check=True,
        capture_output=True,
    )  # fmt: skip
    subprocess.run(
        ["podforge", "render", str(demo), "scripts/welcome.md", "--draft"], check=True,
        capture_output=True,
    )  # fmt: skip
    timed(
        "demo episode (welcome.mp3)",
        lambda: check_file(demo / "episodes/welcome/welcome.mp3", mark),
    )

    lines = cached_lines(scratch / "lines")
    start = time.perf_counter()
    lines = {k: [mark.apply(a, SR) for a in v] for k, v in lines.items()}
    count, took = sum(len(v) for v in lines.values()), time.perf_counter() - start
    print(f"  marked {count} distinct lines in {took:.1f} s")
    items = timeline(lines, minutes)
    settings = mixing.MixSettings(sample_rate=48000, stereo=True)
    exported, mastered = render_episode_files(
        items, settings, scratch / "long", "long", title="Watermark bench", tmp_dir=scratch
    )
    print(f"  {minutes:.0f}-minute episode: {mastered.duration_sec / 60:.1f} min, 48 kHz stereo, "
          f"{mastered.lufs:.1f} LUFS, bed ducked")  # fmt: skip
    timed(f"{minutes:.0f}-minute episode (MP3)", lambda: check_file(exported.mp3, mark))


def cost(speech: list[np.ndarray], mark: PerthMark) -> None:
    talk = np.concatenate(speech)
    mark.apply(talk[: 5 * SR], SR)  # warm-up
    start = time.perf_counter()
    marked = np.concatenate([mark.apply(s, SR) for s in speech])
    seconds = time.perf_counter() - start
    diff = marked - talk
    print("cost of the mark (CPU):")
    length = talk.size / SR
    print(f"  marking speed: {length / seconds:.0f}x real time ({length:.0f} s of lines)")
    print(f"  mark-to-signal ratio: {10 * np.log10(np.mean(diff**2) / np.mean(talk**2)):.1f} dB")
    before, after = integrated_lufs(talk, SR), integrated_lufs(marked, SR)
    assert before is not None and after is not None
    print(f"  loudness: {before:.2f} -> {after:.2f} LUFS ({after - before:+.2f} LU)")
    for low, high in ((0, 2000), (2000, 12000)):
        change = band_db(marked, low, high) - band_db(talk, low, high)
        residual = band_db(diff, low, high) - band_db(talk, low, high)
        print(f"  {low}-{high} Hz: level {change:+.2f} dB, mark {residual:.1f} dB under the speech")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--speech-sentences", type=int, default=24)
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="podforge-watermark-bench-"))
    try:
        mark = load_mark()
        gap = np.zeros(SR // 3, np.float32)
        speech = [
            np.concatenate([espeak(SENTENCES[k % len(SENTENCES)], VOICES[k % len(VOICES)]), gap])
            for k in range(args.speech_sentences)
        ]
        plain, marked = corpus(speech, mark, scratch)
        print(f"unmarked corpus (window threshold {WINDOW_THRESHOLD}):")
        results = {name: check_audio(audio, SR, mark) for name, audio in plain.items()}
        for name, result in results.items():
            row(name, result)
        windows = sum(r.speech_windows for r in results.values())
        false = sum(r.marked_windows for r in results.values())
        bound = 3 / windows if false == 0 else (false + 2 * np.sqrt(false)) / windows
        called = sum(r.verdict == "marked" for r in results.values())
        print(
            f"  false positives: {false} of {windows} speech windows ({false / windows:.2%}, "
            f"95 % upper bound {bound:.2%}); {called} of {len(results)} files called marked"
        )
        print("marked corpus:")
        found = {name: check_audio(audio, SR, mark) for name, audio in marked.items()}
        for name, result in found.items():
            row(name, result)
        episodes(mark, args.minutes, scratch)
        cost(speech, mark)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
