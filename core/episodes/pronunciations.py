"""``pronunciations.toml``: respellings applied to every line before any voice says it.

The workspace's ``pronunciations.toml`` maps a word or phrase to how to spell it so the
voice says it right::

    Nguyen = "win"
    "GIF" = "jif"
    "Dr. Okafor" = "doctor oh-KAH-for"

Matching is whole words, case-insensitive, longest phrase first. :func:`spoken_text` is
what a voice is asked to say: respelled, then verbalised
(:func:`core.episodes.verbalise.verbalise`). Line QA scores against the *original* words
verbalised, never the respelling (and passes no hotwords to the ASR: they would bias the
check and hide a mispronunciation).
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from core.episodes.script import Line, Span
from core.episodes.verbalise import verbalise
from core.errors import WorkspaceConfigError, at

__all__ = ["FILE", "Lexicon", "load_pronunciations", "respell", "spoken_line", "spoken_text"]

FILE = "pronunciations.toml"


@dataclass(frozen=True)
class Lexicon:
    """Respellings, longest phrase first."""

    entries: tuple[tuple[str, str], ...] = ()

    def __bool__(self) -> bool:
        return bool(self.entries)

    @property
    def pattern(self) -> re.Pattern[str] | None:
        if not self.entries:
            return None
        words = "|".join(re.escape(word) for word, _ in self.entries)
        return re.compile(rf"(?<![\w]){words}(?![\w])", re.IGNORECASE)


def load_pronunciations(root: Path) -> Lexicon:
    """The workspace's ``pronunciations.toml`` (none: an empty lexicon). A broken file is
    one :class:`~core.errors.WorkspaceConfigError` naming it (and the line, for TOML)."""
    path = root / FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return Lexicon()
    except (OSError, UnicodeDecodeError) as exc:
        raise WorkspaceConfigError(at(path, f"cannot read it: {exc}")) from None
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise WorkspaceConfigError(at(path, f'{exc}; fix the TOML (word = "respelling")')) from None
    entries: list[tuple[str, str]] = []
    for word, spelling in doc.items():
        if not isinstance(spelling, str) or not spelling.strip() or not word.strip():
            line = next((n for n, row in enumerate(text.splitlines(), 1) if word in row), 0)
            raise WorkspaceConfigError(
                at(f"{path}:{line}" if line else path,
                   f"{word!r} needs a respelling in quotes, e.g. {word} = \"...\"")
            )  # fmt: skip
        entries.append((" ".join(word.split()), " ".join(spelling.split())))
    entries.sort(key=lambda entry: (-len(entry[0]), entry[0].lower()))
    return Lexicon(tuple(entries))


def respell(text: str, lexicon: Lexicon) -> str:
    """``text`` with each word or phrase of ``lexicon`` replaced by its respelling."""
    pattern = lexicon.pattern
    if pattern is None:
        return text
    table = {word.lower(): spelling for word, spelling in lexicon.entries}
    return pattern.sub(lambda m: table[" ".join(m.group(0).split()).lower()], text)


def spoken_text(text: str, lexicon: Lexicon) -> str:
    """What a voice is asked to say for ``text``: respelled, then verbalised."""
    return verbalise(respell(text, lexicon))


def spoken_line(line: Line, lexicon: Lexicon) -> Line:
    """``line`` with every text span as :func:`spoken_text` (tags and breaks kept)."""
    parts = tuple(
        dataclasses.replace(part, text=spoken_text(part.text, lexicon))
        if isinstance(part, Span)
        else part
        for part in line.parts
    )
    return line if parts == line.parts else dataclasses.replace(line, parts=parts)
