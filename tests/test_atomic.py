"""Atomic writes: all or nothing, even when the writer is killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.atomic import atomic_path, atomic_write_bytes, atomic_write_text


def test_replaces_content(tmp_path: Path) -> None:
    target = tmp_path / "a.txt"
    atomic_write_text(target, "one")
    atomic_write_text(target, "two")
    assert target.read_text() == "two"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_failure_leaves_the_old_file_and_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "a.bin"
    atomic_write_bytes(target, b"old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("boom")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.bin"]


def test_temp_keeps_the_suffix(tmp_path: Path) -> None:
    with atomic_path(tmp_path / "x.wav") as tmp:
        assert tmp.suffix == ".wav"
        assert tmp.parent == tmp_path
        tmp.write_bytes(b"RIFF")


def test_kill_mid_write_never_leaves_a_partial_file(tmp_path: Path) -> None:
    """A writer killed with SIGKILL while writing leaves the previous content whole."""
    target = tmp_path / "data.bin"
    atomic_write_bytes(target, b"A" * 1000)
    code = (
        "import sys, time\n"
        "from core.atomic import atomic_open\n"
        "with atomic_open(sys.argv[1], 'wb') as fh:\n"
        "    for _ in range(10_000):\n"
        "        fh.write(b'B' * 4096); fh.flush()\n"
        "        print('writing', flush=True)\n"
        "        time.sleep(0.001)\n"
    )
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(target)],
        stdout=subprocess.PIPE,
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
    )
    assert proc.stdout is not None
    proc.stdout.readline()
    time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert target.read_bytes() == b"A" * 1000


def test_permissions_follow_the_umask_like_open(tmp_path: Path) -> None:
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    atomic_write_text(tmp_path / "atomic.txt", "x")
    assert (tmp_path / "atomic.txt").stat().st_mode == plain.stat().st_mode
