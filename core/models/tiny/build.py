"""Publishing a tiny model build atomically into its folder (shared by the tiny builders).

:class:`TinyBuild` is one tiny model's identity: its stamp (``podforge-tiny.json``, written
last, so its presence means the build is complete), the files a finished build holds, and its
folder in the user's cache. The model is written into a temporary folder beside the target
and renamed into place, so a concurrent reader never sees half a model; when two processes
race, the first rename wins.
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.atomic import current_umask
from core.errors import ModelError

STAMP_FILE = "podforge-tiny.json"
"""The stamp every tiny build writes last: ``{"model": ..., "version": ..., "seed": ...}``."""


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


def write_json(path: Path, value: object) -> None:
    """``value`` as sorted, indented JSON (a deterministic file)."""
    path.write_text(json.dumps(value, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def token_id(tokenizer: Any, token: str, what: str) -> int:
    """The id of ``token`` in a tiny model's ``tokenizers.Tokenizer``, which holds it."""
    index: int | None = tokenizer.token_to_id(token)
    if index is None:  # pragma: no cover - the tiny tokenizers hold every special token
        raise AssertionError(f"{what} tokenizer lacks {token}")
    return index


@dataclass(frozen=True)
class TinyBuild:
    """One tiny model: what its stamp says, which files a finished build holds, where it lives,
    and the function that writes it."""

    model: str
    """The stamp's ``model`` (``"tiny-csm"``); also names its cache folder."""
    version: int
    """Bumped whenever the files built change, so that caches of older builds are ignored."""
    seed: int
    files: tuple[str, ...]
    """The files (besides the stamp) a complete build holds."""
    what: str
    """The model in messages (``"tiny CSM"``)."""
    writer: Callable[[Path], None] = field(compare=False, repr=False)
    """Writes every file of the model into the (empty) folder it is given; :meth:`build`
    writes the stamp after it."""

    def stamp(self) -> dict[str, object]:
        return {"model": self.model, "version": self.version, "seed": self.seed}

    def is_complete(self, folder: Path) -> bool:
        """True when ``folder`` holds this version's finished build."""
        try:
            stamp = json.loads((folder / STAMP_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        return stamp == self.stamp() and all((folder / name).is_file() for name in self.files)

    def is_replaceable(self, folder: Path) -> bool:
        return is_replaceable_build(folder, STAMP_FILE, self.model)

    def build(self, folder: Path) -> Path:
        """Write this model into ``folder`` and return ``folder`` (:func:`publish_build`).

        Idempotent: a folder already holding this version's complete build is reused as it
        is. The model is built in a temporary folder beside ``folder``, the stamp last, and
        renamed into place, so a concurrent reader never sees half a model; when two
        processes race, the first rename wins. A ``folder`` holding anything but an empty
        folder or one of our builds is refused with :class:`ModelError`, never deleted.
        """
        return publish_build(
            Path(folder), self._write, self.is_complete, self.is_replaceable, self.what
        )

    def path(self) -> Path:
        """This model's folder in the user's cache (:meth:`cache_path`), built there
        (:meth:`build`) on first use."""
        return self.build(self.cache_path())

    def cache_path(self) -> Path:
        """``$XDG_CACHE_HOME/podforge/<model>-v<version>`` (``~/.cache`` when the variable is
        unset): the version in the name keeps builds of different podforge versions apart."""
        return cache_folder(f"{self.model}-v{self.version}")

    def _write(self, folder: Path) -> None:
        self.writer(folder)
        # The stamp is written last: its presence means the build is complete.
        write_json(folder / STAMP_FILE, self.stamp())
