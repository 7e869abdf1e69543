"""One render of an episode at a time, across processes and threads.

A render writes ``episodes/<name>/`` (its line cache, the master, the manifest); two renders
of one episode at once would race on those files. Every caller of
:func:`core.episodes.render.render_episode` (``podforge render``, the script editor, the
service's render jobs) takes :class:`EpisodeLock` first: an exclusive ``flock`` on
``episodes/<name>/.render.lock``, whose text is the holder's pid (for the message, not for
the check). The kernel drops the lock when its holder dies, however it dies, so a stale lock
file never blocks anything; a released lock's file is removed. ``flock`` locks belong to an
open file, so two locks of one episode conflict inside one process as well as between
processes. Taking the lock never waits: a busy episode is one
:class:`~core.errors.EpisodeBusyError` line.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from core.errors import EpisodeBusyError, FolderSafetyError
from core.tempfiles import flock_exclusive
from core.workspace import Workspace

LOCK_NAME = ".render.lock"
"""The lock file inside each episode folder."""


def episode_name(script: Path | str) -> str:
    """The episode a script renders into: its file name without ``.md`` (as
    :func:`~core.episodes.render.render_episode` names ``episodes/<name>/``)."""
    name = Path(script).stem
    if name in ("", ".", ".."):
        raise FolderSafetyError(
            f"{script}: its name gives no usable episode folder ({name!r}); rename the script"
        )
    return name


class EpisodeLock:
    """The render lock of the episode ``script`` renders into; a context manager, or
    :meth:`acquire` and :meth:`release` (from any thread of the process)."""

    def __init__(self, ws: Workspace, script: Path | str) -> None:
        self.name = episode_name(script)
        self.path = ws.episodes_dir / self.name / LOCK_NAME
        self._fd = -1

    @property
    def held(self) -> bool:
        return self._fd >= 0

    def acquire(self) -> EpisodeLock:
        """Take the lock now, or raise :class:`~core.errors.EpisodeBusyError`."""
        if self.held:
            raise RuntimeError("this EpisodeLock is already held")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            if not flock_exclusive(fd, blocking=False):
                holder = os.read(fd, 32).decode("ascii", "replace").strip()
                os.close(fd)
                who = f"process {holder}" if holder.isdigit() else "another render"
                raise EpisodeBusyError(
                    f"episode {self.name!r} is being rendered by {who} (the app, `podforge "
                    "render` or the service); wait until it finishes, then render again"
                )
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)  # its holder removed the file on release: lock the new one
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        """Drop the lock: the file is removed while still held (a process that opened it
        meanwhile sees it gone and starts over), then closed, which drops the ``flock``. An
        episode folder left empty (a render that failed before writing) is removed too."""
        if self.held:
            fd, self._fd = self._fd, -1
            with contextlib.suppress(OSError):
                self.path.unlink()
            os.close(fd)
            with contextlib.suppress(OSError):
                self.path.parent.rmdir()  # only when empty

    def __enter__(self) -> EpisodeLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
