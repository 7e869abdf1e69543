"""Temporary folders inside a workspace (``<workspace>/.tmp/``) that a kill cannot leak.

Work that needs scratch space on disk (the ingest's decoded-audio spill file, the demo's
generated sources) takes a folder with :func:`workspace_tempdir`. The folder lives in the
workspace, so it is on the same disk as the data, counts against the workspace and never
litters the system temp folder. It is removed when the ``with`` block ends, however it
ends; a process killed outright (SIGKILL, power loss) cannot remove it, so the next run
calls :func:`clean_stale`, which removes the folders whose owner is gone.

Ownership is an advisory lock: each folder holds a file ``owner.lock`` that its process
keeps locked (``fcntl.flock``, exclusive) for as long as the folder is in use, and whose
text is the owner's pid (for people, not for the check). The kernel drops the lock when the
process dies, however it dies, so a folder whose lock can be taken is stale, and one whose
lock is held belongs to a live process, an ingest running in another terminal say, and is
left alone. A folder without a lock file is only removed once it is older than
:data:`UNLOCKED_GRACE_S` (its owner may be between creating it and locking it). Where
``fcntl`` does not exist (Windows), only folders untouched for a day are removed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

__all__ = [
    "LOCK_NAME",
    "TMP_DIRNAME",
    "clean_stale",
    "flock_exclusive",
    "tmp_root",
    "workspace_tempdir",
]

log = logging.getLogger(__name__)

TMP_DIRNAME = ".tmp"
"""The workspace's folder for temporary files."""

LOCK_NAME = "owner.lock"
"""The lock file inside each temporary folder; its text is the owner's pid."""

UNLOCKED_GRACE_S = 300.0
"""A temporary folder without a lock file is left alone this long after its last change."""

NO_LOCKS_GRACE_S = 86400.0
"""Without ``fcntl``, a temporary folder is taken for abandoned after this long untouched."""


def tmp_root(root: Path | str) -> Path:
    """``<root>/.tmp``: where the workspace at ``root`` keeps its temporary folders."""
    return Path(root) / TMP_DIRNAME


@contextlib.contextmanager
def workspace_tempdir(root: Path | str, purpose: str) -> Iterator[Path]:
    """A fresh folder ``<root>/.tmp/<purpose>-<pid>-XXXX`` owned by this process.

    ``root`` is the workspace folder. The folder is locked for the life of the ``with``
    block (see the module's notes) and removed with everything in it when the block ends.
    """
    base = tmp_root(root)
    base.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=f"{purpose}-{os.getpid()}-", dir=base))
    fd = -1
    try:
        fd = os.open(folder / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
        flock_exclusive(fd, blocking=True)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        if fd >= 0:
            os.close(fd)  # drops the lock; after the removal, so no cleaner sees it unlocked


def clean_stale(root: Path | str) -> list[Path]:
    """Remove the temporary folders under ``<root>/.tmp`` whose owner process is gone.

    Folders of live processes (their lock is held) are kept. Returns the folders removed.
    Never raises for a folder it cannot inspect or remove; it is logged and kept.
    """
    base = tmp_root(root)
    try:
        entries = sorted(p for p in base.iterdir() if p.is_dir() and not p.is_symlink())
    except OSError:
        return []
    removed: list[Path] = []
    for folder in entries:
        try:
            if _remove_if_stale(folder):
                removed.append(folder)
        except OSError as exc:
            log.warning("%s: cannot remove a stale temporary folder (%s)", folder, exc)
    return removed


def _remove_if_stale(folder: Path) -> bool:
    lock_path = folder / LOCK_NAME
    try:
        fd = os.open(lock_path, os.O_RDWR)  # never O_CREAT: a cleaner does not make locks
    except FileNotFoundError:
        age = time.time() - folder.stat().st_mtime
        if age < UNLOCKED_GRACE_S:
            return False
        shutil.rmtree(folder)
        return True
    try:
        if not _try_lock(fd, folder):
            return False
        # Ours now: the owner is gone, and any other cleaner fails to take the lock.
        shutil.rmtree(folder)
        return True
    finally:
        os.close(fd)


def flock_exclusive(fd: int, *, blocking: bool) -> bool:
    """Take an exclusive ``flock`` on the open file ``fd`` (waiting when ``blocking``); False
    when another open file holds it, also in this process. Always True without ``fcntl``."""
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks; see _try_lock
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
    except BlockingIOError:
        return False
    return True


def _try_lock(fd: int, folder: Path) -> bool:
    """Take the lock of a folder found on disk; False when its owner holds it."""
    try:
        import fcntl  # noqa: F401
    except ImportError:
        # No flock (Windows): only a folder untouched for a day counts as abandoned.
        return time.time() - folder.stat().st_mtime > NO_LOCKS_GRACE_S
    return flock_exclusive(fd, blocking=False)
