"""Atomic writes: all or nothing, even when the writer is killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.atomic import (
    FOLDER_MARKER,
    atomic_path,
    atomic_write_bytes,
    atomic_write_text,
    folder_kind,
    swap_in_folder,
)
from core.errors import FolderSafetyError
from tests.conftest import REPO


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
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(target)],
        stdout=subprocess.PIPE,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
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


# ------------------------------------------------------------------ swap_in_folder


def _tree(root: Path) -> dict[str, bytes | None]:
    """Every path under ``root`` (folders as None, files as their bytes, links as targets)."""
    out: dict[str, bytes | None] = {}
    for path in sorted(root.rglob("*")):
        key = path.relative_to(root).as_posix()
        if path.is_symlink():
            out[key] = os.readlink(path).encode()
        else:
            out[key] = path.read_bytes() if path.is_file() else None
    return out


def _staging(parent: Path, text: str) -> Path:
    staging = parent / f".staging-{text}"
    staging.mkdir()
    (staging / "data.txt").write_text(text)
    return staging


def test_swap_marks_its_folder_and_replaces_only_its_own(tmp_path: Path) -> None:
    parent = tmp_path / "exports"
    parent.mkdir()
    swap_in_folder(_staging(parent, "one"), parent / "x", kind="export", parent=parent)
    assert folder_kind(parent / "x") == "export"
    assert (parent / FOLDER_MARKER).exists() is False
    (parent / "x" / "stale.txt").write_text("old")
    swap_in_folder(_staging(parent, "two"), parent / "x", kind="export", parent=parent)
    assert (parent / "x" / "data.txt").read_text() == "two"
    assert not (parent / "x" / "stale.txt").exists()
    assert sorted(p.name for p in parent.iterdir()) == ["x"]  # nothing left beside it


def test_swap_refuses_a_folder_it_did_not_make_and_touches_nothing(tmp_path: Path) -> None:
    parent = tmp_path / "exports"
    (parent / "mine" / "sub").mkdir(parents=True)
    (parent / "mine" / "notes.txt").write_text("precious")
    (parent / "mine" / "sub" / "more.bin").write_bytes(b"\x00\x01")
    (parent / "voice").mkdir()
    (parent / "voice" / FOLDER_MARKER).write_text("voice\n")  # ours, but another kind
    (parent / "file").write_text("a file, not a folder")
    (parent / "link").symlink_to(parent / "mine")
    staging = _staging(parent, "new")
    before = _tree(tmp_path)
    for name, why in [
        ("mine", "no .podforge-folder marker"),
        ("voice", "holds a voice folder"),
        ("file", "not a folder podforge made"),
        ("link", "not a folder podforge made"),
    ]:
        with pytest.raises(FolderSafetyError) as exc:
            swap_in_folder(staging, parent / name, kind="export", parent=parent)
        message = str(exc.value)
        assert "\n" not in message and str(parent / name) in message and why in message
        assert _tree(tmp_path) == before  # nothing touched, the staging folder included


def test_swap_adopts_what_the_caller_recognises(tmp_path: Path) -> None:
    parent = tmp_path / "exports"
    (parent / "legacy").mkdir(parents=True)
    (parent / "legacy" / "layout.txt").write_text("old export")
    swap_in_folder(
        _staging(parent, "new"), parent / "legacy", kind="export", parent=parent,
        adopt=lambda folder: (folder / "layout.txt").is_file(),
    )  # fmt: skip
    assert (parent / "legacy" / "data.txt").read_text() == "new"
    assert folder_kind(parent / "legacy") == "export"


@pytest.mark.parametrize("name", ["..", ".", "", ".hidden", "../outside", "/abs", "a/b"])
def test_swap_refuses_a_target_outside_its_parent(tmp_path: Path, name: str) -> None:
    parent = tmp_path / "ws" / "exports"
    parent.mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / FOLDER_MARKER).write_text("export\n")  # even a marked one
    (tmp_path / "outside" / "keep.txt").write_text("keep")
    staging = _staging(parent, "new")
    target = Path(name) if name.startswith("/") else parent / name
    if name == "/abs":
        target = tmp_path / "outside"
    if name == "a/b":
        (parent / "a").mkdir()
    before = _tree(tmp_path)
    with pytest.raises(FolderSafetyError, match="not a plain folder name inside"):
        swap_in_folder(staging, target, kind="export", parent=parent)
    assert _tree(tmp_path) == before


def test_swap_never_deletes_a_stray_folder_beside_the_target(tmp_path: Path) -> None:
    """The old folder goes aside into a fresh hidden folder, not a fixed ``.<name>.old``."""
    parent = tmp_path / "exports"
    parent.mkdir()
    (parent / ".x.old").mkdir()
    (parent / ".x.old" / "someone-elses.txt").write_text("keep")
    swap_in_folder(_staging(parent, "one"), parent / "x", kind="export", parent=parent)
    swap_in_folder(_staging(parent, "two"), parent / "x", kind="export", parent=parent)
    assert (parent / ".x.old" / "someone-elses.txt").read_text() == "keep"
    assert sorted(p.name for p in parent.iterdir()) == [".x.old", "x"]


def test_a_failed_swap_puts_the_old_folder_back(tmp_path: Path) -> None:
    parent = tmp_path / "exports"
    parent.mkdir()
    swap_in_folder(_staging(parent, "one"), parent / "x", kind="export", parent=parent)
    staging = parent / "x" / "sub"  # inside the old folder: gone once that is moved aside
    staging.mkdir()
    (staging / "data.txt").write_text("new")
    with pytest.raises(FileNotFoundError):
        swap_in_folder(staging, parent / "x", kind="export", parent=parent)
    assert sorted(_tree(parent)) == [  # the old folder is back in place, nothing left aside
        "x", f"x/{FOLDER_MARKER}", "x/data.txt", "x/sub", f"x/sub/{FOLDER_MARKER}", "x/sub/data.txt"
    ]  # fmt: skip
    assert (parent / "x" / "data.txt").read_text() == "one"
