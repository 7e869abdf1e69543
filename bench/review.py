"""Review screen speed with 20,000 segments in the catalog, on a real terminal (a pty).

Measures (1) launch to the home screen's first frame, (2) `v` to the review screen's
first frame, (3) a decision key (`a`) to the screen showing it, median over 100 presses:
the time from writing the key to the pty until the updated counter has been drawn.
Targets (docs/PERFORMANCE.md): first frame <= 1.0 s; key press to next segment shown <= 30 ms.

    uv run python bench/review.py [--segments 20000] [--presses 100]
"""

from __future__ import annotations

import argparse
import fcntl
import os
import pty
import re
import select
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import time
from pathlib import Path

import numpy as np

from core.audio.io import write_wav
from core.catalog import Catalog
from core.records import QC, Recording, Segment
from core.settings import new_consent
from core.workspace import Workspace

ANSI = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]")


def build(root: Path, n: int) -> Workspace:
    ws = Workspace.create(root / "ws")
    ws.add_speaker("bench", new_consent("bench", "benchmark speaker"))
    rng = np.random.default_rng(0)
    clip = ws.segments_dir / "bench" / "template.wav"
    write_wav(clip, (rng.standard_normal(24000 * 8) * 0.05).astype(np.float32), 24000)
    with Catalog.open(ws.catalog_path) as cat:
        per_rec = 500
        for r in range(n // per_rec):
            rec = cat.add_recording(Recording(
                speaker="bench", path=f"raw/bench/{r}.wav", original_name=f"take{r}.wav",
                sha256=f"{r:064x}", sample_rate=48000, channels=1, duration_sec=3600.0,
                format="WAV"))  # fmt: skip
            segs = []
            for i in range(per_rec):
                rel = f"segments/bench/{r:03d}-{i:04d}.wav"
                os.link(clip, ws.root / rel)
                segs.append(Segment(
                    recording_id=rec, speaker="bench", audio=rel, start_sec=i * 8.0,
                    end_sec=i * 8.0 + 7.5, duration_sec=7.5, text=f"utterance {r} {i}",
                    text_source="subtitle", flags=("hum",) if i % 7 == 0 else (),
                    qc=QC(rms_db=-20, snr_db=float(30 + i % 10), lufs=-19.0)))  # fmt: skip
            cat.add_segments(segs)
    return ws


class Term:
    def __init__(self, command: list[str]) -> None:
        self.master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 36, 130, 0, 0))
        env = dict(os.environ, TERM="xterm-256color", PODFORGE_AUDIO_DEVICE="none")
        self.proc = subprocess.Popen(command, stdin=slave, stdout=slave, stderr=slave, env=env,
                                     start_new_session=True)  # fmt: skip
        os.close(slave)
        self.seen = b""

    def wait_for(self, marker: bytes, timeout: float = 30.0) -> float:
        start = time.perf_counter()
        while marker not in ANSI.sub(b"", self.seen):
            if time.perf_counter() - start > timeout:
                raise RuntimeError(f"no {marker!r}; tail {self.seen[-300:]!r}")
            ready, _, _ = select.select([self.master], [], [], 0.01)
            if ready:
                self.seen += os.read(self.master, 1 << 16)
        return time.perf_counter()

    def send(self, key: bytes) -> float:
        self.seen = b""
        os.write(self.master, key)
        return time.perf_counter()

    def close(self) -> None:
        os.killpg(self.proc.pid, signal.SIGTERM)
        self.proc.wait()
        os.close(self.master)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--segments", type=int, default=20000)
    parser.add_argument("--presses", type=int, default=100)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="podforge-review-bench-"))
    try:
        ws = build(root, args.segments)
        exe = str(Path(sys.executable).with_name("podforge"))
        term = Term([exe, "open", str(ws.root)])
        try:
            start = time.perf_counter()
            home = term.wait_for(b"Recordings") - start
            term.wait_for(b"segments %d" % args.segments)
            sent = term.send(b"v")
            review = term.wait_for(b"view pending") - sent
            time.sleep(0.5)
            latencies = []
            for n in range(1, args.presses + 1):
                sent = term.send(b"a")
                latencies.append(term.wait_for(b"accepted %d " % n) - sent)
        finally:
            term.close()
        lat = sorted(latencies)
        print(f"segments in catalog: {args.segments}")
        print(f"launch to home first frame: {home * 1000:.0f} ms (target <= 1000 ms)")
        print(f"v to review first frame: {review * 1000:.0f} ms (target <= 1000 ms)")
        print(f"decision key to screen updated: median {statistics.median(lat) * 1000:.1f} ms, "
              f"p90 {lat[int(len(lat) * 0.9)] * 1000:.1f} ms, max {lat[-1] * 1000:.1f} ms "
              f"over {len(lat)} presses (target median <= 30 ms)")  # fmt: skip
    finally:
        shutil.rmtree(root)


if __name__ == "__main__":
    main()
