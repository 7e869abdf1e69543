"""Episode scripts: the typed, frozen data a script is parsed into.

This module is the model: an :class:`Episode` (title, speakers, chapters, the items in
order, :class:`ScriptWarning` s, the :class:`ScriptMix` settings), the format's limits, and
:func:`split_text` (long lines cut between sentences for a trained voice). The grammar is
:mod:`core.episodes.parser`; its entry points :func:`parse_script`, :func:`load_script` and
:func:`check_cue_files` are importable from here too (served lazily, so that the parser can
import this module without a cycle).

Details: docs/EPISODES.md (the format, with a complete example; "In code")."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from core.episodes.target import master_target

if TYPE_CHECKING:
    from core.episodes.parser import check_cue_files, load_script, parse_script

__all__ = [
    "AUDIO_EXTENSIONS",
    "CUE_KINDS",
    "EMPHASIS_LEVELS",
    "MAX_PIECE_CHARS",
    "RATE_WORDS",
    "TAG_KINDS",
    "Break",
    "Chapter",
    "Episode",
    "GeneratedSound",
    "Item",
    "Line",
    "MixSettings",
    "MusicCue",
    "Pause",
    "ScriptMix",
    "ScriptWarning",
    "SfxCue",
    "Span",
    "check_cue_files",
    "load_script",
    "parse_script",
    "sentences",
    "split_text",
]

TAG_KINDS: frozenset[str] = frozenset({"break", "emphasis", "prosody"})
"""The SSML-lite tags a speaker line may hold."""
CUE_KINDS: tuple[str, ...] = ("music", "sfx", "pause")
EMPHASIS_LEVELS: tuple[str, ...] = ("strong", "moderate", "reduced")
RATE_WORDS: tuple[str, ...] = ("x-slow", "slow", "medium", "fast", "x-fast")
AUDIO_EXTENSIONS: frozenset[str] = frozenset(
    {".wav", ".flac", ".mp3", ".ogg", ".oga", ".opus", ".aif", ".aiff", ".m4a", ".aac"}
)
"""A ``[sfx ...]`` argument ending in one of these (or holding a ``/``) names a file."""

MAX_BREAK_S = 10.0
MAX_PIECE_CHARS = 440
"""The most characters a trained (CSM) voice is given in one generation: the backend bounds
a generation to 40 s at ~0.09 s a character. Longer text is cut by :func:`split_text`,
between sentences where it can be; a longer sentence is a parse warning."""
MAX_PAUSE_S = 60.0
MAX_FADE_S = 60.0
MIN_RATE_PERCENT = 20.0
MAX_RATE_PERCENT = 400.0
VOLUME_RANGE_DB = (-60.0, 12.0)
DUCK_RANGE_DB = (-60.0, 0.0)

_SENTENCE_END = re.compile(r"[.!?…]+[\"'”’»)\]]*(?=\s)")
_CLAUSE_END = re.compile(r"[,;:—–]+(?=\s)")


# --- the data ----------------------------------------------------------------------


@dataclass(frozen=True)
class Span:
    """A run of text with its styling (``emphasis`` level, prosody ``rate``)."""

    text: str
    emphasis: str | None = None
    rate: str | None = None


@dataclass(frozen=True)
class Break:
    """A ``<break time=".."/>`` inside a line, in seconds."""

    seconds: float


@dataclass(frozen=True)
class Line:
    """One speaker line.

    ``index`` is its position in :attr:`Episode.lines` (0-based); ``speaker`` the script name
    (``HOST``) and ``voice`` the workspace speaker it maps to (``alice``); ``source_line``
    the 1-based line of the script where it starts; ``chapter`` the 1-based
    :attr:`Chapter.index` it belongs to, 0 before the first heading.
    """

    index: int
    speaker: str
    voice: str
    parts: tuple[Span | Break, ...]
    source_line: int
    chapter: int

    @property
    def text(self) -> str:
        """The words, without tags; a break counts as a space."""
        return " ".join(
            "".join(" " if isinstance(p, Break) else p.text for p in self.parts).split()
        )

    @property
    def tag_kinds(self) -> frozenset[str]:
        """Which of ``break``, ``emphasis``, ``prosody`` this line uses."""
        kinds: set[str] = set()
        for part in self.parts:
            if isinstance(part, Break):
                kinds.add("break")
            else:
                if part.emphasis is not None:
                    kinds.add("emphasis")
                if part.rate is not None:
                    kinds.add("prosody")
        return frozenset(kinds)

    def ssml(self) -> str:
        """The line as SSML that espeak-ng (and most SSML engines) accept::

        <speak>Hi. <break time="400ms"/><emphasis level="strong">Really</emphasis></speak>
        """
        out = ["<speak>"]
        for part in self.parts:
            if isinstance(part, Break):
                out.append(f'<break time="{round(part.seconds * 1000)}ms"/>')
                continue
            text = html.escape(part.text, quote=False)
            if part.emphasis is not None:
                text = f'<emphasis level="{part.emphasis}">{text}</emphasis>'
            if part.rate is not None:
                text = f'<prosody rate="{part.rate}">{text}</prosody>'
            out.append(text)
        out.append("</speak>")
        return "".join(out)


@dataclass(frozen=True)
class GeneratedSound:
    """What a ``gen="..."`` cue asks a text-to-audio model for (``[sfx gen="door creak" 2.5s]``).

    ``seconds`` is the length generated; ``None`` fields take the sound model's default
    (``seed``: the render's seed). ``source`` (``from=FILE``, resolved inside the workspace)
    makes a variation of that file, ``strength`` (0..1) saying how far from it (1: nothing of
    it is kept). ``prompt_column`` is the 1-based column of the ``gen=`` option."""

    prompt: str
    seconds: float
    seed: int | None = None
    negative: str | None = None
    steps: int | None = None
    guidance: float | None = None
    source: Path | None = None
    strength: float | None = None
    prompt_column: int = field(default=1, compare=False)


@dataclass(frozen=True)
class MusicCue:
    """``[music FILE ...]`` (``action="start"``) or ``[music stop ...]`` (``path=None``).

    Times in seconds, levels in dB. ``duck_db`` is how far the bed is lowered under
    speech (the cue's ``duck=`` or ``[mix] duck_db``); ``volume_db`` its gain.
    """

    path: Path | None
    action: Literal["start", "stop"]
    fade_in: float
    fade_out: float
    duck_db: float
    volume_db: float
    source_line: int
    source_column: int = field(default=1, compare=False)
    """The 1-based column of the file name (of the cue for ``[music stop]``)."""
    generate: GeneratedSound | None = None
    """A generated bed (``[music gen="..." 30s]``, ``path=None``)."""


@dataclass(frozen=True)
class SfxCue:
    """``[sfx FILE]`` (``path`` resolved) or ``[sfx words]`` (``path=None``: a named
    generated effect or a description kept for later). ``description`` is the file name as
    written, or the words (the prompt of a generated effect)."""

    path: Path | None
    description: str
    volume_db: float
    source_line: int
    source_column: int = field(default=1, compare=False)
    """The 1-based column of the file name or of the first word."""
    generate: GeneratedSound | None = None
    """A generated effect (``[sfx gen="..." 2.5s]``, ``path=None``)."""


@dataclass(frozen=True)
class Pause:
    """``[pause 1.2s]``: silence between items."""

    seconds: float
    source_line: int


@dataclass(frozen=True)
class Chapter:
    """A heading. ``index`` is 1-based (the first heading is chapter 1)."""

    index: int
    title: str
    level: int
    source_line: int


Item = Line | MusicCue | SfxCue | Pause | Chapter


@dataclass(frozen=True)
class ScriptMix:
    """The front matter's optional ``[mix]`` table (every key optional), as written.

    What the master is brought to (these over the workspace's targets) is resolved in one
    place, :func:`core.episodes.target.master_target`.
    """

    gap_ms: int = 250
    """Silence between consecutive speaker lines; negative = overlap."""
    fade_ms: int = 20
    """Fade in and out at every cut."""
    duck_db: float = -12.0
    """How far a music bed is lowered under speech when its cue gives no ``duck=``."""
    duck_attack_ms: int = 150
    """Ramp down into the duck before speech starts."""
    duck_release_ms: int = 500
    """Ramp back up after speech ends."""
    stereo: bool = False
    """A stereo master (else mono)."""
    pan: dict[str, float] = field(default_factory=dict)
    """Script name -> -1.0 (left) .. 1.0 (right); used when ``stereo``."""
    target_lufs: float | None = None
    """Integrated loudness of the master; unset: the workspace's ``audio.target_lufs``
    (-19 by default) for mono, -16 for stereo."""
    true_peak_dbtp: float = -1.0
    """True-peak ceiling of the master (the workspace's ``audio.true_peak_dbtp`` when that
    is lower)."""
    sample_rate: int | None = None
    """The master's rate (24000, 44100 or 48000); unset: the workspace's ``[episode]``
    rule (48 kHz with music or effects, else the voice rate)."""
    preset: str | None = None
    """A platform's loudness (``apple``, ``spotify``, ``youtube``, ``ebu-r128``,
    ``aes-speech``: :data:`core.episodes.target.LOUDNESS_PRESETS`); ``target_lufs`` wins."""

    @property
    def loudness_lufs(self) -> float:
        """The loudness target of this ``[mix]`` over the default workspace settings.

        Deprecated: a render resolves the target against its workspace with
        :func:`core.episodes.target.master_target`; use that.
        """
        return master_target(self).lufs


MixSettings = ScriptMix
"""Deprecated alias of :class:`ScriptMix` (its name before 0.2, public as
``core.script.MixSettings``; it collided with :class:`core.episodes.mixing.MixSettings`).
Removed in the release after 0.2."""


@dataclass(frozen=True)
class ScriptWarning:
    """Something allowed but probably unintended, at a 1-based ``line`` and ``column``.

    ``str()`` is the one-line ``FILE:LINE:COL: message`` form, as
    :class:`~core.errors.ScriptError`'s.
    """

    source: str
    line: int
    column: int
    message: str

    def __str__(self) -> str:
        return f"{self.source}:{self.line}:{self.column}: {self.message}"


@dataclass(frozen=True)
class Episode:
    """A parsed script. ``items`` holds lines, cues, pauses and chapters in script order."""

    title: str
    speakers: dict[str, str]
    chapters: tuple[Chapter, ...]
    items: tuple[Item, ...]
    warnings: tuple[ScriptWarning, ...] = ()
    mix: ScriptMix = field(default_factory=ScriptMix)
    source: str = "<script>"

    @property
    def lines(self) -> tuple[Line, ...]:
        """The speaker lines in order (``lines[i].index == i``)."""
        return tuple(item for item in self.items if isinstance(item, Line))

    @property
    def voices(self) -> tuple[str, ...]:
        """The workspace speakers that speak, sorted."""
        return tuple(sorted({line.voice for line in self.lines}))

    def chapter_of(self, line: Line) -> Chapter | None:
        """The chapter ``line`` is in, or None before the first heading."""
        return self.chapters[line.chapter - 1] if line.chapter > 0 else None


# --- text ------------------------------------------------------------------------------


def split_text(text: str, max_chars: int = MAX_PIECE_CHARS) -> list[str]:
    """``text`` (white space collapsed) in pieces of at most ``max_chars`` characters, each
    as many whole sentences as fit; ``" ".join`` of the pieces gives the text back.

    A sentence longer than ``max_chars`` is cut after a comma, semicolon, colon or dash, a
    clause longer than that between words, and a single longer word (pathological) inside
    it. This is how the CSM backend fits long lines into its 40 s generations.
    """
    if max_chars < 1:
        raise ValueError(f"max_chars must be at least 1, not {max_chars}")
    text = " ".join(text.split())
    if len(text) <= max_chars:
        return [text] if text else []
    units: list[str] = []
    for sentence in _cut(text, _SENTENCE_END):
        if len(sentence) <= max_chars:
            units.append(sentence)
            continue
        for clause in _cut(sentence, _CLAUSE_END):
            units.extend([clause] if len(clause) <= max_chars else clause.split(" "))
    return _pack(units, max_chars)


def _cut(text: str, boundary: re.Pattern[str]) -> list[str]:
    """``text`` cut after each match of ``boundary`` (the white space after it dropped)."""
    pieces: list[str] = []
    start = 0
    for m in boundary.finditer(text):
        piece = text[start : m.end()].strip()
        if piece:
            pieces.append(piece)
        start = m.end()
    tail = text[start:].strip()
    if tail:
        pieces.append(tail)
    return pieces


def _pack(units: list[str], max_chars: int) -> list[str]:
    """Join consecutive ``units`` with spaces into pieces of at most ``max_chars``."""
    out: list[str] = []
    current = ""
    for unit in units:
        while len(unit) > max_chars:  # one word longer than a piece
            if current:
                out.append(current)
                current = ""
            out.append(unit[:max_chars])
            unit = unit[max_chars:]
        if not current:
            current = unit
        elif len(current) + 1 + len(unit) <= max_chars:
            current = f"{current} {unit}"
        else:
            out.append(current)
            current = unit
    if current:
        out.append(current)
    return out


def sentences(text: str) -> list[str]:
    """``text`` cut after each sentence end (``.``, ``!``, ``?``, ``…`` and closing quotes)."""
    return _cut(text, _SENTENCE_END)


_PARSER_NAMES = frozenset({"check_cue_files", "load_script", "parse_script"})


def __getattr__(name: str) -> object:
    """Serve the parser's entry points from here (imported on first use)."""
    if name in _PARSER_NAMES:
        from core.episodes import parser

        return getattr(parser, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
