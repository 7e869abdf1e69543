"""Mix speed: a 30-minute two-speaker episode from cached lines, with a bed, master and MP3.

About 40 distinct draft-voice lines are synthesised once (cached in --cache) and reused,
alternating two speakers, to fill 30 minutes, with a looped, ducked music bed and a
few pauses and chapters. Timed: the in-memory mix with its master (loudness + true-peak
limiter, ``mix_episode``) and the export (WAV + MP3 + JSON, ``export_episode``); the
CPU time and peak memory are printed too. Then the same episode through the streamed
path a render takes (``render_episode_files``: the lines as ``AudioFile`` references to
the cached files, windowed mix through a disk intermediate, windowed limiter, streamed
WAV + MP3), and the ratio of the two; then each in-memory stage on its own. Target:
<= 15 s on the 2-core machine. Other work on the machine slows it down: the load average
before the run is printed. (The streamed path's peak memory: ``bench/render_memory.py``.)

Where ffmpeg is installed, ffmpeg's two-pass ``loudnorm`` (I=-19:TP=-1:LRA=11) is timed
on the same unmastered mix, and both masters are measured independently with ffmpeg's
``ebur128=peak=true`` filter.

    uv run python bench/mix.py [--minutes 30] [--cache DIR] [--keep DIR] [--no-ffmpeg]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from core.audio.conditioning import condition
from core.audio.io import write_wav
from core.audio.mp3 import encode_mp3
from core.demo.corpus import SENTENCES
from core.demo.workspace import music_bed
from core.episodes import mixing
from core.episodes.export import export_episode
from core.episodes.master import mix_episode, render_episode_files
from core.episodes.synthesis.draft import DraftVoice, synthesize

SR = 24000
LINES = 40
VOICES = {"HOST": DraftVoice(language="en-us", pitch=40), "GUEST": DraftVoice("en-gb", pitch=65)}


def cached_lines(cache: Path) -> dict[str, list[np.ndarray]]:
    """~40 distinct lines per speaker: synthesised once, then read from ``cache``."""
    out: dict[str, list[np.ndarray]] = {}
    for speaker, voice in VOICES.items():
        out[speaker] = []
        for k in range(LINES // 2):
            path = cache / f"{speaker}-{k:02d}.wav"
            if not path.exists():
                text = " ".join(SENTENCES[(2 * k + j) % len(SENTENCES)] for j in range(2))
                write_wav(path, synthesize(text, voice, sample_rate=SR), SR, subtype="FLOAT")
            audio, _ = sf.read(str(path), dtype="float32")
            out[speaker].append(audio)
    return out


def line_files(cache: Path) -> dict[str, list[mixing.AudioFile]]:
    """The same lines as :func:`cached_lines`, left on disk (what a render's cache gives)."""
    return {
        speaker: [
            mixing.AudioFile.probe(cache / f"{speaker}-{k:02d}.wav") for k in range(LINES // 2)
        ]
        for speaker in VOICES
    }


def timeline(
    lines: dict[str, list[np.ndarray]] | dict[str, list[mixing.AudioFile]], minutes: float
) -> list[mixing.TimelineItem]:
    rng = np.random.default_rng(5)
    bed = music_bed(SR, 16.0, np.random.default_rng(1))
    items: list[mixing.TimelineItem] = [
        mixing.TimelineChapter("Cold open"),
        mixing.TimelineBed(
            "start", bed, SR, fade_in=2.0, fade_out=3.0, duck_db=-14.0, volume_db=-6.0
        ),
        mixing.TimelinePause(2.0),
    ]
    total = 0.0
    index = 0
    while total < minutes * 60:
        speaker = ("HOST", "GUEST")[index % 2]
        audio = lines[speaker][int(rng.integers(len(lines[speaker])))]
        if index and index % 60 == 0:
            items.append(mixing.TimelineChapter(f"Part {index // 60 + 1}"))
            items.append(mixing.TimelinePause(1.5))
            total += 1.5
        items.append(
            mixing.TimelineLine(
                index, speaker, f"line {index}", audio, SR, seed=index, backend="draft"
            )
        )
        total += (audio.frames if isinstance(audio, mixing.AudioFile) else audio.size) / SR + 0.25
        index += 1
    return items


def ffmpeg_ebur128(path: Path) -> tuple[float, float]:
    """Integrated loudness (LUFS) and true peak (dBTP) by ffmpeg's ebur128 filter."""
    run = subprocess.run(
        ["ffmpeg", "-hide_banner", "-nostats", "-i", str(path), "-af", "ebur128=peak=true",
         "-f", "null", "-"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    summary = run.stderr[run.stderr.rfind("Summary:") :]
    lufs = re.search(r"I:\s+(-?[\d.]+) LUFS", summary)
    peak = re.search(r"True peak:\s+Peak:\s+(-?[\d.inf]+) dBFS", summary)
    if lufs is None or peak is None:
        raise RuntimeError(f"cannot read ebur128's summary:\n{summary}")
    return float(lufs.group(1)), float(peak.group(1))


def ffmpeg_loudnorm(source: Path, target: Path) -> tuple[float, float]:
    """ffmpeg's two-pass loudnorm (I=-19:TP=-1:LRA=11); returns both passes' seconds."""
    base = "loudnorm=I=-19:TP=-1:LRA=11"
    start = time.perf_counter()
    first = subprocess.run(
        ["ffmpeg", "-hide_banner", "-nostats", "-i", str(source), "-af",
         f"{base}:print_format=json", "-f", "null", "-"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    first_sec = time.perf_counter() - start
    measured = json.loads(first.stderr[first.stderr.rfind("{") :])
    second_filter = (
        f"{base}:measured_I={measured['input_i']}:measured_TP={measured['input_tp']}"
        f":measured_LRA={measured['input_lra']}:measured_thresh={measured['input_thresh']}"
        f":offset={measured['target_offset']}:linear=true:print_format=summary"
    )
    start = time.perf_counter()
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-nostats", "-y", "-i", str(source), "-af", second_filter,
         "-ar", str(SR), "-c:a", "pcm_s16le", str(target)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return first_sec, time.perf_counter() - start


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--cache", type=Path, help="Keep the synthesised lines here.")
    parser.add_argument("--keep", type=Path, help="Keep the exported episode here.")
    parser.add_argument("--no-ffmpeg", action="store_true", help="Skip the ffmpeg comparison.")
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="podforge-mix-bench-"))
    try:
        run(args, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def run(args: argparse.Namespace, scratch: Path) -> None:
    cache = args.cache or scratch / "lines"
    lines = cached_lines(cache)
    items = timeline(lines, args.minutes)
    settings = mixing.MixSettings()
    print(f"cpus: {cpu_count()}, load average before: {os.getloadavg()[0]:.2f}")

    # Warm-up on a short episode (imports, filter designs), not timed.
    export_episode(mix_episode(items[:12], settings), scratch / "warm", "warm", title="warm")

    cpu0, wall0 = time.process_time(), time.perf_counter()
    result = mix_episode(items, settings)
    mix_sec = time.perf_counter() - wall0
    folder = args.keep or scratch / "episode"
    wall1 = time.perf_counter()
    files = export_episode(result, folder, "episode", title="Bench episode")
    export_sec = time.perf_counter() - wall1
    total_sec = time.perf_counter() - wall0
    cpu_sec = time.process_time() - cpu0

    minutes = result.duration_sec / 60
    print(f"episode: {minutes:.1f} min, {len(result.lines)} lines from {LINES} cached, "
          f"{len(result.chapters)} chapters, mono {SR} Hz, bed ducked -14 dB")  # fmt: skip
    print(f"mix + master (mix_episode): {mix_sec:.2f} s")
    print(f"export WAV + MP3 + JSON (export_episode): {export_sec:.2f} s")
    print(f"total: {total_sec:.2f} s wall, {cpu_sec:.2f} s CPU (target <= 15 s on 2 cores)")
    print(f"master: {result.lufs:.2f} LUFS, true peak {result.true_peak_db:.2f} dBTP (4x)")
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak memory (whole process so far): {peak_mb:.0f} MB")

    # The streamed path of a render: the same timeline with the lines left on disk.
    streamed_items = timeline(line_files(cache), args.minutes)
    render_episode_files(streamed_items[:12], settings, scratch / "warm2", "warm", title="warm",
                         tmp_dir=scratch / ".tmp")  # fmt: skip
    cpu0, wall0 = time.process_time(), time.perf_counter()
    _, streamed = render_episode_files(
        streamed_items, settings, scratch / "streamed", "episode", title="Bench episode",
        tmp_dir=scratch / ".tmp",
    )  # fmt: skip
    streamed_sec = time.perf_counter() - wall0
    streamed_cpu = time.process_time() - cpu0
    print(f"streamed mix + master + WAV + MP3 + JSON (render_episode_files): {streamed_sec:.2f} s "
          f"wall, {streamed_cpu:.2f} s CPU; {fmt(streamed.lufs)} LUFS, true peak "
          f"{streamed.true_peak_db:.2f} dBTP")  # fmt: skip
    print(f"  streamed / in-memory: {streamed_sec / total_sec:.2f}x wall, "
          f"{streamed_cpu / cpu_sec:.2f}x CPU")  # fmt: skip

    # Where the time goes, stage by stage (separate runs of each stage).
    start = time.perf_counter()
    raw = mix_episode(items, mixing.MixSettings(master=False))
    render_sec = time.perf_counter() - start
    start = time.perf_counter()
    condition(raw.audio, SR, target_lufs=-19.0, ceiling_dbtp=-1.0)
    master_sec = time.perf_counter() - start
    start = time.perf_counter()
    write_wav(scratch / "stage.wav", result.audio, SR)
    wav_sec = time.perf_counter() - start
    start = time.perf_counter()
    mp3 = encode_mp3(result.audio, SR, bitrate_kbps=128)
    mp3_sec = time.perf_counter() - start
    print(f"  stages: render + measure {render_sec:.2f} s, loudness + limiter {master_sec:.2f} s, "
          f"WAV {wav_sec:.2f} s, MP3 {mp3_sec:.2f} s "
          f"({len(mp3) * 8 / result.duration_sec / 1000:.1f} kbps)")  # fmt: skip
    print(f"  raw mix: {fmt(raw.lufs)} LUFS, true peak {raw.true_peak_db:.2f} dBTP")

    if args.no_ffmpeg or shutil.which("ffmpeg") is None:
        print("ffmpeg: skipped")
        return
    raw_path = scratch / "raw.wav"
    write_wav(raw_path, raw.audio, SR, subtype="FLOAT")
    ffmpeg_out = scratch / "ffmpeg_loudnorm.wav"
    first_sec, second_sec = ffmpeg_loudnorm(raw_path, ffmpeg_out)
    print(f"ffmpeg loudnorm two-pass on the raw mix: pass 1 {first_sec:.2f} s, "
          f"pass 2 {second_sec:.2f} s, total {first_sec + second_sec:.2f} s")  # fmt: skip
    ours = ffmpeg_ebur128(files.wav)
    theirs = ffmpeg_ebur128(ffmpeg_out)
    print(f"ffmpeg ebur128 of our WAV: I = {ours[0]:.1f} LUFS, true peak = {ours[1]:.1f} dBTP")
    print(f"ffmpeg ebur128 of loudnorm's WAV: I = {theirs[0]:.1f} LUFS, "
          f"true peak = {theirs[1]:.1f} dBTP")  # fmt: skip


def fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


if __name__ == "__main__":
    main()
