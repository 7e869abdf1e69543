"""Time from launching ``podforge open WORKSPACE`` to its first frame on a terminal.

Runs the real command in a pseudo-terminal (80x24 is not assumed: 120x36) and
stops the clock when the home screen's box titles have been drawn. Prints each run,
the median, and, as a baseline measured in the same run, the time of
``python -c "import textual.app"`` (the floor any Textual app pays).

    uv run python bench/startup.py [WORKSPACE] [--runs 7]
"""

from __future__ import annotations

import argparse
import fcntl
import os
import pty
import select
import signal
import statistics
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

MARKERS = (b"Dataset", b"Recordings")


def first_frame_seconds(command: list[str], timeout: float = 20.0) -> float:
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 36, 120, 0, 0))
    env = dict(os.environ, TERM="xterm-256color", COLUMNS="120", LINES="36")
    start = time.perf_counter()
    proc = subprocess.Popen(
        command, stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True
    )
    os.close(slave)
    seen = b""
    try:
        while time.perf_counter() - start < timeout:
            ready, _, _ = select.select([master], [], [], 0.05)
            if ready:
                try:
                    seen += os.read(master, 65536)
                except OSError:
                    break
                if all(m in seen for m in MARKERS):
                    return time.perf_counter() - start
            if proc.poll() is not None:
                break
        raise RuntimeError(f"no first frame within {timeout}s; output tail: {seen[-400:]!r}")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait()
        os.close(master)


def baseline_seconds() -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import textual.app"], check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workspace", nargs="?", default="workspaces/demo")
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    if not (Path(args.workspace) / "workspace.toml").exists():
        sys.exit(f"{args.workspace}: not a workspace; run `uv run podforge demo --no-open` first")
    exe = Path(sys.executable).with_name("podforge")
    command = [str(exe), "open", args.workspace]
    first_frame_seconds(command)  # warm the file cache
    runs = [first_frame_seconds(command) for _ in range(args.runs)]
    base = statistics.median(baseline_seconds() for _ in range(args.runs))
    for i, t in enumerate(runs, 1):
        print(f"run {i}: first frame {t * 1000:.0f} ms")
    med = statistics.median(runs)
    print(f"median first frame: {med * 1000:.0f} ms (target <= 1000 ms)")
    print(f"baseline `import textual.app`: {base * 1000:.0f} ms; ratio {med / base:.2f}x")


if __name__ == "__main__":
    main()
