"""One exception hierarchy for every failure a user can cause.

Each error's ``str()`` is a single line that names the thing at fault (a file,
a line, a speaker) and says what to do. The CLI and the app print that line and
nothing else; a traceback means a bug in podforge, not a user mistake.
"""

from __future__ import annotations

import re
from pathlib import Path


class PodforgeError(Exception):
    """Base of every error podforge reports to a user as one line."""


class WorkspaceError(PodforgeError):
    """The workspace folder or its ``workspace.toml`` cannot be used."""


class NotAWorkspaceError(WorkspaceError):
    """The folder has no ``workspace.toml``."""


class WorkspaceConfigError(WorkspaceError):
    """``workspace.toml`` is unreadable, malformed or holds invalid values."""


class SchemaTooNewError(WorkspaceError):
    """A file was written by a newer podforge than this one."""


class CatalogError(PodforgeError):
    """The SQLite catalog cannot be opened or used."""


class CatalogBusyError(CatalogError):
    """Another process held the catalog's write lock for longer than the wait allowed."""


class AudioError(PodforgeError):
    """An audio file cannot be read, decoded or written."""


class TranscriptError(PodforgeError):
    """A transcript sidecar (.srt, .vtt, .txt) cannot be read or holds no usable cue."""


class ExportError(PodforgeError):
    """Nothing to export, or an export cannot be written."""


class FolderSafetyError(PodforgeError):
    """A folder podforge would replace is not one it made, or lies outside where it belongs."""


class TrainingError(PodforgeError):
    """A training run cannot be started, stopped or resumed."""


class EvaluationError(PodforgeError):
    """A voice cannot be evaluated (no texts, no held-out segments, no voice)."""


class ConsentError(PodforgeError):
    """A speaker has no consent record for the requested use."""


class SpeakerError(PodforgeError):
    """A speaker name is unknown or invalid."""


class ModelError(PodforgeError):
    """A model cannot be found or loaded."""


class PlaybackError(PodforgeError):
    """Audio cannot be played (no PortAudio, no output device)."""


class VoiceError(PodforgeError):
    """A voice (draft or trained) cannot synthesise speech."""


class EpisodeBusyError(PodforgeError):
    """Another render of the same episode (the app, ``podforge render``, a service job) holds
    the episode's render lock."""


class ServiceError(PodforgeError):
    """The inference service cannot start, or refuses a request (``core.service``)."""


class ClusterError(PodforgeError):
    """Ray is missing, the cluster cannot be reached, or a task failed after its retries
    (``core.cluster``)."""


class ScriptError(PodforgeError):
    """An episode script cannot be parsed or refers to something that is not there.

    ``str()`` is one line, ``FILE:LINE:COL: what is wrong; what is expected``; the parts
    are kept as ``source``, ``line``, ``column`` (both 1-based) and ``message`` so that an
    editor can jump to the place.
    """

    def __init__(self, source: str, line: int, column: int, message: str) -> None:
        self.source = str(source)
        self.line = line
        self.column = column
        self.message = " ".join(message.split())
        super().__init__(f"{self.source}:{line}:{column}: {self.message}")

    def __reduce__(self) -> tuple[type[ScriptError], tuple[str, int, int, str]]:
        return (type(self), (self.source, self.line, self.column, self.message))


def at(path: Path | str, message: str) -> str:
    """Format ``message`` so that it names ``path`` first, the one-line convention."""
    return f"{path}: {message}"


def one_line(exc: BaseException, limit: int = 200, *, first_line: bool = False) -> str:
    """A library's reason for ``exc`` on one line: its error string (or ``str``), whitespace
    collapsed, at most ``limit`` characters; the exception's type name when it says nothing.

    ``first_line=True`` keeps only the first non-blank line, for libraries (transformers,
    CTranslate2) whose later lines are advice or a listing rather than the reason."""
    reason = getattr(exc, "error_string", None) or getattr(exc, "strerror", None) or str(exc)
    if first_line:
        reason = next((line for line in str(reason).splitlines() if line.strip()), "")
    text = re.sub(r"\s+", " ", str(reason)).strip() or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


class WatermarkError(PodforgeError):
    """The watermark cannot be applied or read (library missing or broken, unreadable file)."""
