"""Atomic file writes: write a temporary file beside the target, fsync, rename.

A reader sees either the old file or the new one, never a half-written file, and
a crash or kill mid-write leaves the old file intact.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any


@contextlib.contextmanager
def atomic_path(target: Path | str, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on success rename it over ``target``.

    The temporary file keeps ``target``'s suffix (or ``suffix``) so that libraries
    which pick a format from the extension (soundfile) still do the right thing.
    On an exception the temporary file is removed and ``target`` is untouched.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    keep = target.suffix if suffix is None else suffix
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{target.name}.", suffix=f".tmp{keep}", dir=target.parent
    )
    os.close(fd)
    tmp = Path(tmp_name)
    os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp makes 0600; be like open()
    try:
        yield tmp
        _fsync_file(tmp)
        os.replace(tmp, target)
        _fsync_dir(target.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


@contextlib.contextmanager
def atomic_open(
    target: Path | str, mode: str = "w", encoding: str | None = "utf-8"
) -> Iterator[IO[Any]]:
    """Open a temporary file for writing that replaces ``target`` when closed cleanly."""
    if "b" in mode:
        encoding = None
    with atomic_path(target) as tmp, open(tmp, mode, encoding=encoding) as fh:
        yield fh
        fh.flush()


def atomic_write_bytes(target: Path | str, data: bytes) -> None:
    """Replace ``target`` with ``data`` atomically."""
    with atomic_open(target, "wb") as fh:
        fh.write(data)


def atomic_write_text(target: Path | str, text: str) -> None:
    """Replace ``target`` with ``text`` (UTF-8) atomically."""
    with atomic_open(target, "w") as fh:
        fh.write(text)


def swap_in_folder(staging: Path, target: Path) -> None:
    """Replace folder ``target`` by ``staging`` with two renames (same file system); the old
    folder is removed last, so a reader sees the old or the new folder, never a mix."""
    import shutil

    old = target.with_name(f".{target.name}.old")
    if old.exists():
        shutil.rmtree(old)
    if target.exists():
        target.rename(old)
    staging.rename(target)
    if old.exists():
        shutil.rmtree(old)


def current_umask() -> int:
    """The process umask (``os.umask`` can only be read by setting it)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
