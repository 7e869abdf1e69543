"""Atomic file writes: write a temporary file beside the target, fsync, rename.

A reader sees either the old file or the new one, never a half-written file, and
a crash or kill mid-write leaves the old file intact.

Folders are replaced whole by :func:`swap_in_folder`, which marks each folder it puts in
place (:data:`FOLDER_MARKER`) and never replaces one without that mark or outside the folder
it belongs in.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from core.errors import FolderSafetyError


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


FOLDER_MARKER = ".podforge-folder"
"""The file podforge writes into every folder it builds and swaps in (see :func:`swap_in_folder`):
its first line is the folder's kind (``export``, ``voice``). A folder without it is never
replaced."""


def folder_kind(folder: Path) -> str | None:
    """The kind in ``folder``'s marker, or ``None`` when it has none (or is not a folder)."""
    marker = folder / FOLDER_MARKER
    if folder.is_symlink() or marker.is_symlink() or not marker.is_file():
        return None
    try:
        first = marker.read_text(encoding="utf-8").splitlines()[:1]
    except (OSError, UnicodeDecodeError):
        return None
    return first[0].strip() if first else None


def check_swap_target(
    target: Path,
    *,
    kind: str,
    parent: Path,
    adopt: Callable[[Path], bool] | None = None,
) -> None:
    """Raise :class:`~core.errors.FolderSafetyError` unless :func:`swap_in_folder` may put a
    folder of ``kind`` at ``target``: a direct child of ``parent`` with a plain name, and either
    absent or a real folder podforge made (its marker names ``kind``, or ``adopt`` accepts it:
    a layout podforge wrote before it had markers). Touches nothing."""
    target = Path(target)
    name = target.name
    if (
        name in ("", ".", "..")
        or name.startswith(".")
        or os.sep in name
        or (os.altsep is not None and os.altsep in name)
        or os.path.abspath(target.parent) != os.path.abspath(parent)
        or target.parent.resolve() != Path(parent).resolve()
    ):
        raise FolderSafetyError(
            f"{target}: not a plain folder name inside {parent}; podforge only replaces its "
            f"own {kind} folders there"
        )
    if not os.path.lexists(target):
        return
    if target.is_symlink() or not target.is_dir():
        raise FolderSafetyError(
            f"{target}: exists and is not a folder podforge made (a file or link); "
            "move it away or choose another name"
        )
    found = folder_kind(target)
    if found == kind or (found is None and adopt is not None and adopt(target)):
        return
    why = f"it holds a {found} folder" if found else f"it has no {FOLDER_MARKER} marker"
    raise FolderSafetyError(
        f"{target}: exists and podforge did not make it as a {kind} folder ({why}); "
        "nothing was changed: move it away or choose another name"
    )


def swap_in_folder(
    staging: Path,
    target: Path,
    *,
    kind: str,
    parent: Path,
    adopt: Callable[[Path], bool] | None = None,
) -> None:
    """Replace folder ``target`` by ``staging`` (same file system), marking it as ``kind``.

    ``target`` must pass :func:`check_swap_target` (a plain-named child of ``parent`` that is
    absent or a folder podforge made), else :class:`~core.errors.FolderSafetyError` and
    nothing is touched. The marker file is written into ``staging`` first; the old folder is
    renamed into a fresh hidden folder beside it, the new one renamed into place, and the old
    one removed last, so a reader sees the old or the new folder, never a mix.
    """
    import shutil

    target = Path(target)
    check_swap_target(target, kind=kind, parent=parent, adopt=adopt)
    (staging / FOLDER_MARKER).write_text(f"{kind}\n{_MARKER_NOTE}", encoding="utf-8")
    aside = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
    old = aside / target.name
    try:
        if os.path.lexists(target):
            target.rename(old)
        staging.rename(target)
    except BaseException:
        if os.path.lexists(old):
            old.rename(target)  # should this fail too, the old folder stays whole in ``aside``
        aside.rmdir()
        raise
    _fsync_dir(target.parent)
    shutil.rmtree(aside, ignore_errors=True)


_MARKER_NOTE = (
    "# podforge made this folder and replaces it whole when it is rebuilt.\n"
    "# Delete this file to keep podforge from ever replacing the folder.\n"
)


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
