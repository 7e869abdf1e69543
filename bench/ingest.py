"""Ingest speed: 1 hour of 44.1 kHz stereo speech to segments + QC, without ASR and speaker filter.

Prints the ingest time, the time of `sox in.wav -r 24000 -c 1 -b 16 out.wav` on the same
file (the floor: decode + downmix + resample + write), the real-time factor and the ratio.
Targets (docs/PERFORMANCE.md): >= 120x real time, <= 3x the sox time, on the 2-core machine.

    uv run python bench/ingest.py [--minutes 60] [--keep DIR]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from core.dataset.ingest import IngestOptions, ingest
from core.demo.corpus import SENTENCES
from core.episodes.synthesis.draft import DraftVoice, synthesize
from core.settings import new_consent
from core.workspace import Workspace

SR = 44100


def make_long_recording(path: Path, minutes: float, seed: int = 1) -> None:
    """Speech from the draft voice with pauses and room noise, written in chunks."""
    rng = np.random.default_rng(seed)
    voice = DraftVoice(language="en-us", pitch=45)
    pool = [synthesize(s, voice, sample_rate=SR) * 0.3 for s in SENTENCES]
    total = int(minutes * 60 * SR)
    written = 0
    with sf.SoundFile(path, "w", SR, 2, subtype="PCM_16") as out:
        while written < total:
            parts = []
            for _ in range(int(rng.integers(2, 4))):
                parts.append(pool[int(rng.integers(len(pool)))])
                parts.append(np.zeros(int(rng.uniform(0.2, 0.4) * SR), np.float32))
            parts.append(np.zeros(int(rng.uniform(0.7, 1.5) * SR), np.float32))
            chunk = np.concatenate(parts)[: total - written]
            chunk = chunk + rng.standard_normal(len(chunk)).astype(np.float32) * 0.001
            out.write(np.stack([chunk, chunk * 0.9], axis=1))
            written += len(chunk)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--keep", type=Path, help="Keep the generated file and workspace here.")
    args = parser.parse_args()
    if shutil.which("sox") is None:
        sys.exit("sox is needed for the baseline: apt-get install sox")
    root = args.keep or Path(tempfile.mkdtemp(prefix="podforge-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    source = root / "long.wav"
    if not source.exists():
        print(f"generating {args.minutes:g} min of 44.1 kHz stereo speech ...", flush=True)
        make_long_recording(source, args.minutes)
    audio_sec = sf.info(str(source)).duration

    start = time.perf_counter()
    sox = ["sox", str(source), "-r", "24000", "-c", "1", "-b", "16", str(root / "sox.wav")]
    subprocess.run(sox, check=True)
    sox_sec = time.perf_counter() - start

    ws_dir = root / "ws"
    if ws_dir.exists():
        shutil.rmtree(ws_dir)
    ws = Workspace.create(ws_dir)
    ws.add_speaker("bench", new_consent("bench", "benchmark speaker"))
    start = time.perf_counter()
    summary = ingest(ws, [source], "bench", IngestOptions(transcribe=False, speaker_filter=False))
    ingest_sec = time.perf_counter() - start
    segments = summary.files[0].segments

    print(f"audio: {audio_sec / 60:.1f} min, 44.1 kHz stereo PCM_16")
    print(f"sox baseline (decode+downmix+resample+write): {sox_sec:.2f} s")
    print(f"ingest (no ASR, no speaker filter): {ingest_sec:.2f} s, {segments} segments")
    print(f"real-time factor: {audio_sec / ingest_sec:.0f}x (target >= 120x)")
    print(f"ingest / sox: {ingest_sec / sox_sec:.2f}x (target <= 3x)")
    if not args.keep:
        shutil.rmtree(root)


if __name__ == "__main__":
    main()
