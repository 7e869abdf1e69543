"""The render cache: one file per rendered line under ``episodes/<name>/cache/``.

The key is a hash of everything that shapes a line's audio: its text and tags (SSML),
the speaker's voice (for CSM: the adapter's content hash and anchors), the backend and
its version, the seed and the synthesis settings. Editing one line changes one key, so
re-rendering synthesises only that line. Files are written atomically; a half-written
file can never be read back as a cached line.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

import soundfile as sf

from core.audio.io import write_wav
from core.episodes.mixing import AudioFile
from core.episodes.synthesis.backends import Rendered

_KEY = re.compile(r"[0-9a-f]{32}")


def cache_key(parts: dict[str, object]) -> str:
    """A stable hash of ``parts`` (JSON with sorted keys)."""
    blob = json.dumps(parts, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:32]


@dataclass
class RenderCache:
    folder: Path

    def path(self, key: str) -> Path:
        return self.folder / f"{key}.wav"

    def get(self, key: str) -> Rendered | None:
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            audio, rate = sf.read(str(path), dtype="float32")
        except (RuntimeError, sf.LibsndfileError):
            return None  # unreadable: render again (it is overwritten atomically)
        return Rendered(audio=audio, sample_rate=int(rate))

    def file(self, key: str) -> AudioFile | None:
        """The cached line as an :class:`~core.episodes.mixing.AudioFile` (its audio stays on disk
        until it is mixed); ``None`` if absent or unreadable."""
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            return AudioFile.probe(path)
        except (RuntimeError, sf.LibsndfileError):
            return None

    def put(self, key: str, rendered: Rendered) -> None:
        """Store a line losslessly (float), atomically."""
        write_wav(self.path(key), rendered.audio, rendered.sample_rate, subtype="FLOAT")

    def prune(self, keep: set[str]) -> int:
        """Remove cached lines no longer used by the script; returns how many. Only files
        named like a cache key are ever removed: anything else in the folder is left alone."""
        removed = 0
        for path in self.folder.glob("*.wav"):
            if _KEY.fullmatch(path.stem) and path.stem not in keep and not path.is_symlink():
                path.unlink(missing_ok=True)
                removed += 1
        return removed
