"""Temporary folders in the workspace: removed after use, stale ones cleaned, live ones kept."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.tempfiles import (
    LOCK_NAME,
    UNLOCKED_GRACE_S,
    clean_stale,
    tmp_root,
    workspace_tempdir,
)

ROOT = Path(__file__).resolve().parents[1]

# A process that takes a temporary folder, prints its path, then either waits for a line
# on stdin (and leaves the block normally) or kills itself with SIGKILL.
_HOLDER = (
    "import os, signal, sys\n"
    "from core.tempfiles import workspace_tempdir\n"
    "with workspace_tempdir(sys.argv[1], 'holder') as folder:\n"
    "    (folder / 'spill.bin').write_bytes(b'x' * 4096)\n"
    "    print(folder, flush=True)\n"
    "    if sys.argv[2] == 'die':\n"
    "        os.kill(os.getpid(), signal.SIGKILL)\n"
    "    sys.stdin.readline()\n"
)


def _holder(root: Path, mode: str) -> tuple[subprocess.Popen[str], Path]:
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(root), mode],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    folder = Path(proc.stdout.readline().strip())
    return proc, folder


def test_the_folder_is_in_the_workspace_and_removed_after(tmp_path: Path) -> None:
    with workspace_tempdir(tmp_path, "ingest") as folder:
        assert folder.parent == tmp_path / ".tmp" == tmp_root(tmp_path)
        assert folder.name.startswith(f"ingest-{os.getpid()}-")
        assert (folder / LOCK_NAME).read_text().strip() == str(os.getpid())
        (folder / "audio.f32").write_bytes(b"\0" * 64)
    assert not folder.exists()


def test_the_folder_is_removed_after_an_exception(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), workspace_tempdir(tmp_path, "ingest") as folder:
        raise RuntimeError("boom")
    assert not folder.exists()


def test_a_killed_owners_folder_is_stale_and_removed(tmp_path: Path) -> None:
    proc, folder = _holder(tmp_path, "die")
    assert proc.wait(timeout=30) == -signal.SIGKILL
    assert (folder / "spill.bin").is_file()  # the kill left it behind
    assert clean_stale(tmp_path) == [folder]
    assert not folder.exists()
    assert list(tmp_root(tmp_path).iterdir()) == []


def test_a_live_owners_folder_is_kept(tmp_path: Path) -> None:
    proc, folder = _holder(tmp_path, "wait")
    try:
        assert clean_stale(tmp_path) == []
        assert (folder / "spill.bin").is_file()
        # Our own folder is live too (a second descriptor cannot take its lock).
        with workspace_tempdir(tmp_path, "mine") as mine:
            assert clean_stale(tmp_path) == []
            assert mine.is_dir()
    finally:
        assert proc.stdin is not None
        proc.stdin.write("done\n")
        proc.stdin.close()
        proc.wait(timeout=30)
    assert not folder.exists()  # the owner removed it on its way out


def test_a_folder_without_a_lock_is_kept_while_young(tmp_path: Path) -> None:
    young = tmp_root(tmp_path) / "ingest-1-young"
    old = tmp_root(tmp_path) / "ingest-2-old"
    for folder in (young, old):
        folder.mkdir(parents=True)
        (folder / "audio.f32").write_bytes(b"\0")
    past = time.time() - UNLOCKED_GRACE_S - 10
    os.utime(old, (past, past))
    assert clean_stale(tmp_path) == [old]
    assert young.is_dir() and not old.exists()


def test_no_tmp_folder_is_nothing_to_clean(tmp_path: Path) -> None:
    assert clean_stale(tmp_path) == []
    assert not tmp_root(tmp_path).exists()


@pytest.mark.slow
def test_the_demo_builds_its_sources_inside_the_workspace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While the demo writes its "recordings" before importing them, they sit in the new
    workspace's .tmp/, never in the system's temporary folder."""
    import tempfile

    from core.demo.workspace import build_demo

    system_tmp = tmp_path / "system-tmp"
    system_tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(system_tmp))
    root = tmp_path / "demo"
    seen: list[tuple[list[str], list[str]]] = []

    def progress(done: int, total: int, what: str) -> None:
        in_ws = sorted(p.name for p in tmp_root(root).glob("*/*")) if root.exists() else []
        seen.append((sorted(os.listdir(system_tmp)), in_ws))

    build_demo(root, seconds_per_recording=6.0, ingest=False, progress=progress)
    assert all(system == [] for system, _ in seen), seen
    assert any(any(name.endswith(".flac") for name in in_ws) for _, in_ws in seen), seen
    assert list(tmp_root(root).iterdir()) == []  # removed once imported
