"""Publishing a tiny model build atomically into its folder (shared by the tiny builders).

The model is written into a temporary folder beside the target and renamed into place, so a
concurrent reader never sees half a model; when two processes race, the first rename wins.
An older or half-copied build of ours is moved aside and dropped; a folder holding anything
else is refused with :class:`ModelError`, never deleted.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from core.atomic import current_umask
from core.errors import ModelError


def cache_folder(name: str) -> Path:
    """``$XDG_CACHE_HOME/podforge/<name>`` (``~/.cache`` when the variable is unset)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "podforge" / name


def publish_build(
    folder: Path,
    write: Callable[[Path], None],
    is_complete: Callable[[Path], bool],
    is_replaceable: Callable[[Path], bool],
    what: str,
) -> Path:
    """Make ``folder`` hold a complete build written by ``write``; returns ``folder``."""
    if is_complete(folder):
        return folder
    if folder.exists() and not is_replaceable(folder):
        raise ModelError(
            f"{folder}: exists and is not a {what} build; "
            "remove it or choose another folder for the tiny model"
        )
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        tmp.chmod(0o777 & ~current_umask())  # mkdtemp makes it 0700; a model folder is not secret
        write(tmp)
        if is_complete(folder):  # another process finished first: keep its build
            return folder
        if folder.exists():
            aside = Path(tempfile.mkdtemp(prefix=f".{folder.name}-old-", dir=folder.parent))
            with contextlib.suppress(FileNotFoundError):
                folder.rename(aside / folder.name)
            shutil.rmtree(aside, ignore_errors=True)
        try:
            tmp.rename(folder)
        except OSError:
            if not is_complete(folder):  # another process won the race with a good build
                raise
    except OSError as exc:
        raise ModelError(f"{folder}: cannot write the {what} model: {exc}") from exc
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return folder


def is_replaceable_build(folder: Path, stamp_file: str, model: str) -> bool:
    """An empty folder, or one of our builds of ``model`` (another version, or missing
    files): the only folders a tiny-model build may replace."""
    if not folder.is_dir():
        return False
    if (folder / stamp_file).is_file():
        try:
            stamp = json.loads((folder / stamp_file).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        return isinstance(stamp, dict) and stamp.get("model") == model
    return not any(folder.iterdir())
