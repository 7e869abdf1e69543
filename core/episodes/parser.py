"""The episode script's grammar: text to an :class:`~core.episodes.script.Episode`.

:func:`parse_script` turns the text into an ``Episode``. It reads nothing but the cue files'
status (existence, symlinks) and writes nothing: the same text and workspace give an equal
``Episode``. Every problem raises :class:`~core.errors.ScriptError`, one line
``FILE:LINE:COL: what is wrong; what is expected``; the first problem found is raised.
Things allowed but probably unintended become ``Episode.warnings``. :func:`load_script`
reads a file and also checks its cue files' headers (:func:`check_cue_files`); the editor
parses on every keystroke without opening them.

Details: docs/EPISODES.md ("The file" onwards, "Errors and warnings")."""

from __future__ import annotations

import difflib
import html
import math
import os
import re
import tomllib
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from core.episodes.script import (
    AUDIO_EXTENSIONS,
    CUE_KINDS,
    DUCK_RANGE_DB,
    EMPHASIS_LEVELS,
    MAX_BREAK_S,
    MAX_FADE_S,
    MAX_PAUSE_S,
    MAX_PIECE_CHARS,
    MAX_RATE_PERCENT,
    MIN_RATE_PERCENT,
    RATE_WORDS,
    TAG_KINDS,
    VOLUME_RANGE_DB,
    Break,
    Chapter,
    Episode,
    GeneratedSound,
    Item,
    Line,
    MusicCue,
    Pause,
    ScriptMix,
    ScriptWarning,
    SfxCue,
    Span,
    sentences,
)
from core.episodes.target import LOUDNESS_PRESETS
from core.errors import ScriptError
from core.settings import SPEAKER_NAME

if TYPE_CHECKING:
    from core.workspace import Workspace

__all__ = ["check_cue_files", "load_script", "parse_script"]

_SCRIPT_NAME = re.compile(r"\w[\w.'-]*(?: [\w.'-]+)*")
_MAX_SCRIPT_NAME = 40
_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ms|s)?", re.IGNORECASE)
_DB = re.compile(r"([+-]?(?:\d+(?:\.\d*)?|\.\d+))(db)?", re.IGNORECASE)
_PERCENT = re.compile(r"(\d+(?:\.\d*)?|\.\d+)%")
_TAG = re.compile(
    r"<(/?)([A-Za-z][\w:-]*)"
    r"((?:\s+[A-Za-z_:][\w:.-]*\s*=\s*(?:\"[^\"<>]*\"|'[^'<>]*'))*)"
    r"\s*(/?)>"
)
_ATTR = re.compile(r"([A-Za-z_:][\w:.-]*)\s*=\s*(?:\"([^\"<>]*)\"|'([^'<>]*)')")
_TOML_POS = re.compile(r"\s*\(at line (\d+), column (\d+)\)")
_TOML_TABLE = re.compile(r"\s*\[\s*(?:\"([^\"]*)\"|([A-Za-z0-9_.-]+))\s*\]")
_TOML_KEY = re.compile(r"\s*(?:\"([^\"]*)\"|'([^']*)'|([A-Za-z0-9_-]+))\s*=")
_NEWLINE = re.compile(r"\r\n|\r|\n")

_BREAK_EXAMPLE = '<break time="400ms"/>'
_CUE_EXAMPLES = (
    '[music FILE ...], [music stop], [sfx FILE or words], [sfx gen="a door creaks" 2s] '
    "or [pause 1.2s]"
)
_LINE_EXPECTED = (
    "expected a speaker line NAME: text, a cue such as [pause 1s], a # heading or a blank line"
)

_GEN_OPTIONS = ("gen", "seed", "steps", "guidance", "negative", "from", "strength")
"""The options of a generated cue (``[sfx gen="..." 2s]``, ``[music gen="..." 30s]``)."""
_DEFAULT_STRENGTH = 0.6
_Where = Callable[[int], tuple[int, int]]
_FailAt = Callable[[int, str], NoReturn]

_MIX_RULES: dict[str, tuple[type, float, float]] = {
    "gap_ms": (int, -5000, 10000),
    "fade_ms": (int, 0, 1000),
    "duck_db": (float, -60.0, 0.0),
    "duck_attack_ms": (int, 0, 5000),
    "duck_release_ms": (int, 0, 5000),
    "stereo": (bool, 0, 1),
    "pan": (dict, -1.0, 1.0),
    "target_lufs": (float, -40.0, -10.0),
    "true_peak_dbtp": (float, -12.0, 0.0),
    "sample_rate": (int, 24000, 48000),
    "preset": (str, 0, 0),
}


# --- entry points ------------------------------------------------------------------


def parse_script(
    text: str, *, source: str | Path = "<script>", workspace: Workspace | None = None
) -> Episode:
    """Parse an episode script; raise :class:`ScriptError` naming ``source:line:col``.

    With a ``workspace``, speakers must be the workspace's and cue files must exist
    inside it (looked up in ``assets/`` first, then the workspace root). Without one,
    speakers are taken as written and cue paths are kept relative, unchecked, but still
    refused when absolute or climbing out with ``..``.
    """
    return _Parser(text, str(source), workspace).parse()


def load_script(path: Path, workspace: Workspace) -> Episode:
    """Read and parse a script file (UTF-8). A relative ``path`` that does not exist is
    also looked for in the workspace's ``scripts/`` folder, with and without ``.md``."""
    path = Path(path)
    found = path
    if not path.exists() and not path.is_absolute():
        for candidate in (workspace.scripts_dir / path, workspace.scripts_dir / f"{path}.md"):
            if candidate.is_file():
                found = candidate
                break
    try:
        data = found.read_bytes()
    except FileNotFoundError:
        raise ScriptError(
            str(path),
            1,
            1,
            f"no such script; expected a file here or in {workspace.scripts_dir}",
        ) from None
    except OSError as exc:
        raise ScriptError(
            str(path), 1, 1, f"cannot read ({exc.strerror}); expected a readable file"
        ) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise ScriptError(
            str(found), line, column, "not UTF-8 text; expected the script saved as UTF-8"
        ) from None
    episode = parse_script(text, source=found, workspace=workspace)
    check_cue_files(episode)
    return episode


def check_cue_files(episode: Episode) -> None:
    """Open every music and sound-effect file of ``episode`` far enough to know it is audio
    podforge can decode (its headers, :func:`core.audio.io.probe`); a file that is not is a
    :class:`ScriptError` at the cue's ``FILE:LINE:COL``, before anything is synthesised.
    :func:`load_script` (what a render reads) calls it; :func:`parse_script` does not open
    files, so the editor stays fast on every keystroke."""
    from core.audio.io import probe
    from core.errors import AudioError

    checked: set[Path] = set()
    for item in episode.items:
        if not isinstance(item, MusicCue | SfxCue):
            continue
        path = item.path if item.generate is None else item.generate.source
        if path is None or path in checked:
            continue
        try:
            probe(path)
        except AudioError as exc:
            reason = str(exc).removeprefix(f"{path}: ")
            name = item.description if isinstance(item, SfxCue) else path.name
            raise ScriptError(
                episode.source,
                item.source_line,
                item.source_column,
                f"cue file {name if item.generate is None else path.name!r} ({path}) cannot be "
                f"used: {reason}",
            ) from None
        checked.add(path)


# --- the parser --------------------------------------------------------------------


@dataclass
class _Pending:
    """A speaker line being collected (its first line and its continuations)."""

    name: str
    line: int
    column: int
    text_col: int
    pieces: list[tuple[int, int, str]]  # (line, column of the text's first char, text)


@dataclass
class _Open:
    """An open tag inside a line."""

    name: str
    offset: int
    emphasis: str | None
    rate: str | None


class _Parser:
    def __init__(self, text: str, source: str, workspace: Workspace | None) -> None:
        self.source = source
        self.workspace = workspace
        self.root = workspace.root.resolve() if workspace is not None else None
        self.lines = _NEWLINE.split(text.removeprefix("\ufeff"))
        self.warnings: list[ScriptWarning] = []
        self.items: list[Item] = []
        self.chapters: list[Chapter] = []
        self.n_lines = 0
        self.speakers: dict[str, str] = {}
        self.used: set[str] = set()
        self.resolved: dict[str, Path] = {}
        self.fm_start = 0  # 0-based index of the opening +++
        self.fm_end = 0  # 0-based index of the closing +++
        self.mix = ScriptMix()

    # -- reporting -----------------------------------------------------------------
    def fail(self, line: int, column: int, message: str) -> NoReturn:
        raise ScriptError(self.source, line, column, message)

    def warn(self, line: int, column: int, message: str) -> None:
        self.warnings.append(ScriptWarning(self.source, line, column, message))

    # -- whole script ----------------------------------------------------------------
    def parse(self) -> Episode:
        title = self.front_matter()
        self.body()
        if self.n_lines == 0:
            line = min(self.fm_end + 2, len(self.lines))
            self.fail(
                line,
                1,
                "nothing to render: the script has no speaker lines; "
                "expected lines such as HOST: Hello and welcome.",
            )
        for name in self.speakers:
            if name not in self.used:
                line, col = self.key_position("speakers", name)
                self.warn(line, col, f"speaker {name!r} is declared but never speaks")
        return Episode(
            title=title,
            speakers=dict(self.speakers),
            chapters=tuple(self.chapters),
            items=tuple(self.items),
            warnings=tuple(self.warnings),
            mix=self.mix,
            source=self.source,
        )

    # -- front matter ------------------------------------------------------------------
    def front_matter(self) -> str:
        first = next((i for i, raw in enumerate(self.lines) if raw.strip()), None)
        if first is None:
            self.fail(
                1,
                1,
                "nothing to render: the script is empty; expected front matter between "
                "+++ lines, then speaker lines such as HOST: Hello.",
            )
        opener = self.lines[first].strip()
        if opener != "+++":
            hint = " (YAML --- front matter is not supported)" if opener == "---" else ""
            self.fail(
                first + 1,
                1,
                f"missing front matter{hint}; expected the script to start with a +++ line, "
                'TOML such as title = "..." and [speakers], and a closing +++ line',
            )
        end = next(
            (i for i in range(first + 1, len(self.lines)) if self.lines[i].strip() == "+++"),
            None,
        )
        if end is None:
            self.fail(
                first + 1, 1, "front matter is not closed; expected a +++ line after its TOML"
            )
        self.fm_start, self.fm_end = first, end
        try:
            doc = tomllib.loads("\n".join(self.lines[first + 1 : end]) + "\n")
        except tomllib.TOMLDecodeError as exc:
            message = str(exc)
            pos = _TOML_POS.search(message)
            if pos is not None:
                line, col = first + 1 + int(pos[1]), int(pos[2])
                message = message[: pos.start()] + message[pos.end() :]
            else:
                line, col = end + 1, 1
            self.fail(
                line,
                col,
                f"front matter is not valid TOML ({message.strip()}); "
                'expected key = value lines such as title = "Episode 1"',
            )
        return self.check_front_matter(doc)

    def key_position(self, table: str | None, key: str | None) -> tuple[int, int]:
        """Where ``key`` (or, with ``key=None``, the table header) is in the front matter."""
        current: str | None = None
        fallback = (self.fm_start + 1, 1)
        for i in range(self.fm_start + 1, self.fm_end):
            raw = self.lines[i]
            header = _TOML_TABLE.match(raw)
            if header is not None:
                current = header[1] if header[1] is not None else header[2]
                if current == table:
                    fallback = (i + 1, header.start() + len(raw) - len(raw.lstrip()) + 1)
                    if key is None:
                        return fallback
                continue
            found = _TOML_KEY.match(raw)
            if found is None:
                continue
            name = next(g for g in found.groups() if g is not None)
            col = len(raw) - len(raw.lstrip()) + 1
            if current == table and name == key:
                return i + 1, col
            if current is None and table is not None and name == table:
                fallback = (i + 1, col)
        return fallback

    def check_front_matter(self, doc: dict[str, Any]) -> str:
        for key in doc:
            if key not in ("title", "speakers", "mix"):
                line, col = self.key_position(None, key)
                if (line, col) == (self.fm_start + 1, 1):  # not a key: look for a [table]
                    line, col = self.key_position(key, None)
                self.fail(
                    line,
                    col,
                    f"unknown front matter key {key!r}; expected title, [speakers] or [mix]",
                )
        title = doc.get("title")
        if title is None:
            self.fail(
                self.fm_start + 1,
                1,
                'the front matter has no title; expected title = "Episode 1: ..."',
            )
        if not isinstance(title, str) or not title.strip():
            line, col = self.key_position(None, "title")
            self.fail(line, col, 'title must be a non-empty string; expected title = "..."')
        speakers = doc.get("speakers", {})
        if not isinstance(speakers, dict):
            line, col = self.key_position(None, "speakers")
            self.fail(line, col, 'speakers must be a table; expected [speakers] HOST = "alice"')
        for name, voice in speakers.items():
            self.check_speaker(name, voice)
        mix = doc.get("mix", {})
        if not isinstance(mix, dict):
            line, col = self.key_position(None, "mix")
            self.fail(line, col, "mix must be a table; expected [mix] with gap_ms = 250 etc.")
        self.mix = self.check_mix(mix)
        return title.strip()

    def check_speaker(self, name: str, voice: Any) -> None:
        line, col = self.key_position("speakers", name)
        if len(name) > _MAX_SCRIPT_NAME or not _SCRIPT_NAME.fullmatch(name):
            self.fail(
                line,
                col,
                f"script name {name!r} cannot be used in NAME: text; expected letters, digits, "
                "'_', '-', '.' or single spaces (up to 40, starting with a letter or digit)",
            )
        if not isinstance(voice, str) or not SPEAKER_NAME.match(voice):
            self.fail(
                line,
                col,
                f"{name} = {voice!r} is not a workspace speaker name; expected "
                f'{name} = "alice" (lower-case letters, digits, - or _)',
            )
        ws = self.workspace
        if ws is not None and voice not in ws.settings.speakers:
            known = ", ".join(sorted(ws.settings.speakers)) or "none yet"
            self.fail(
                line,
                col,
                f"speaker {name} is mapped to {voice!r}, which is not a speaker of the "
                f"workspace {ws.root} (known: {known}); expected a known speaker, or add "
                f'{voice} with `podforge speaker add {ws.root} {voice} --consent "..." '
                '--granted-by "..."`',
            )
        self.speakers[name] = voice

    def check_mix(self, table: dict[str, Any]) -> ScriptMix:
        values: dict[str, Any] = {}
        for key, value in table.items():
            line, col = self.key_position("mix", key)
            rule = _MIX_RULES.get(key)
            if rule is None:
                self.fail(
                    line,
                    col,
                    f"unknown [mix] key {key!r}; expected one of {', '.join(_MIX_RULES)}",
                )
            kind, low, high = rule
            if kind is str:  # preset: one of the named platform targets
                if value not in LOUDNESS_PRESETS:
                    names = ", ".join(LOUDNESS_PRESETS)
                    self.fail(line, col, f"[mix] {key} = {value!r}; expected one of {names}")
                values[key] = value
                continue
            if kind is dict:
                values[key] = self.check_pan(value, line, col, low, high)
                continue
            ok = isinstance(value, kind) if kind is not float else isinstance(value, int | float)
            if kind is not bool and isinstance(value, bool):
                ok = False
            if not ok:
                what = {int: "a whole number", float: "a number", bool: "true or false"}[kind]
                self.fail(line, col, f"[mix] {key} = {value!r}; expected {what}")
            if kind is not bool and not low <= value <= high:
                self.fail(
                    line, col, f"[mix] {key} = {value!r} is out of range; expected {low}..{high}"
                )
            values[key] = float(value) if kind is float else value
        mix = ScriptMix(**values)
        if mix.pan and not mix.stereo:
            line, col = self.key_position("mix", "pan")
            self.warn(line, col, "[mix] pan has no effect on a mono master; set stereo = true")
        return mix

    def check_pan(
        self, value: Any, line: int, col: int, low: float, high: float
    ) -> dict[str, float]:
        if not isinstance(value, dict):
            self.fail(line, col, "[mix] pan must be a table; expected pan = { HOST = -0.2 }")
        pan: dict[str, float] = {}
        for name, amount in value.items():
            if name not in self.speakers:
                known = ", ".join(self.speakers) or "none"
                self.fail(
                    line,
                    col,
                    f"[mix] pan names {name!r}, which is not in [speakers] ({known}); "
                    "expected script names",
                )
            if isinstance(amount, bool) or not isinstance(amount, int | float):
                self.fail(line, col, f"[mix] pan.{name} = {amount!r}; expected a number")
            if not low <= amount <= high:
                self.fail(
                    line,
                    col,
                    f"[mix] pan.{name} = {amount!r} is out of range; expected -1.0 (left) .. "
                    "1.0 (right)",
                )
            pan[name] = float(amount)
        return pan

    # -- body ---------------------------------------------------------------------------
    def body(self) -> None:
        pending: _Pending | None = None
        bed_playing = False
        chapter_lines = 0
        for lineno, raw, comment_only, indented in self.body_lines():
            if comment_only:
                continue
            if not raw.strip():
                self.flush(pending)
                pending = None
                continue
            if indented:
                stripped = raw.lstrip()
                col = len(raw) - len(stripped) + 1
                if pending is None:
                    self.fail(
                        lineno,
                        col,
                        "an indented line continues a speaker line, and there is none above "
                        "(a blank line, cue or heading ends one); expected it unindented",
                    )
                if stripped.startswith("[") and stripped.rstrip().endswith("]"):
                    self.fail(
                        lineno,
                        col,
                        "an indented cue would be read as words of the speaker line above; "
                        "expected the cue unindented on its own line",
                    )
                pending.pieces.append((lineno, col, stripped.rstrip()))
                continue
            self.flush(pending)
            pending = None
            text = raw.strip()
            offset = len(raw) - len(raw.lstrip())  # a comment blanked out before the text
            if text.startswith("#"):
                if self.chapters and chapter_lines == 0:
                    last = self.chapters[-1]
                    self.warn(last.source_line, 1, f"chapter {last.title!r} has no lines")
                self.heading(lineno, text, offset)
                chapter_lines = 0
            elif text.startswith("["):
                cue = self.cue(lineno, text, offset)
                if isinstance(cue, MusicCue):
                    if cue.action == "stop" and not bed_playing:
                        self.warn(lineno, 1, "[music stop] but no music is playing")
                    bed_playing = cue.action == "start"
                self.items.append(cue)
            else:
                pending = self.speaker_start(lineno, text, offset)
                chapter_lines += 1
        self.flush(pending)
        if self.chapters and chapter_lines == 0:
            last = self.chapters[-1]
            self.warn(last.source_line, 1, f"chapter {last.title!r} has no lines")

    def body_lines(self) -> list[tuple[int, str, bool, bool]]:
        """(1-based line, text with comments blanked out, the line held only a comment,
        the line starts with a space or tab)."""
        out: list[tuple[int, str, bool, bool]] = []
        opened: tuple[int, int] | None = None
        for index in range(self.fm_end + 1, len(self.lines)):
            raw = self.lines[index]
            lineno = index + 1
            indented = raw[:1] in (" ", "\t")
            if opened is None and "<!--" not in raw:
                out.append((lineno, raw, False, indented))
                continue
            pieces: list[str] = []
            i = 0
            while i < len(raw):
                if opened is not None:
                    j = raw.find("-->", i)
                    if j < 0:
                        pieces.append(" " * (len(raw) - i))
                        i = len(raw)
                    else:
                        pieces.append(" " * (j + 3 - i))
                        i = j + 3
                        opened = None
                else:
                    j = raw.find("<!--", i)
                    if j < 0:
                        pieces.append(raw[i:])
                        i = len(raw)
                    else:
                        pieces.append(raw[i:j] + "    ")
                        opened = (lineno, j + 1)
                        i = j + 4
            cleaned = "".join(pieces)
            out.append((lineno, cleaned, not cleaned.strip() and bool(raw.strip()), indented))
        if opened is not None:
            self.fail(opened[0], opened[1], "comment <!-- is never closed; expected --> to end it")
        return out

    def heading(self, lineno: int, text: str, offset: int) -> None:
        hashes = len(text) - len(text.lstrip("#"))
        rest = text[hashes:]
        if hashes > 6:
            self.fail(
                lineno, offset + 1, f"{'#' * hashes} is not a heading; expected # to ###### Title"
            )
        if rest and not rest[0].isspace():
            self.fail(
                lineno,
                offset + hashes + 1,
                f"a heading needs a space after {'#' * hashes}; expected {'#' * hashes} Title",
            )
        title = rest.strip()
        closing = re.search(r"(?:^|\s)#+$", title)  # an ATX closing sequence: "# Title #"
        if closing is not None:
            title = title[: closing.start()].strip()
        if not title:
            self.fail(
                lineno, offset + 1, f"heading has no text; expected {'#' * hashes} Chapter title"
            )
        chapter = Chapter(
            index=len(self.chapters) + 1, title=title, level=hashes, source_line=lineno
        )
        self.chapters.append(chapter)
        self.items.append(chapter)

    # -- speaker lines --------------------------------------------------------------------
    def speaker_start(self, lineno: int, text: str, offset: int) -> _Pending:
        colon = text.find(":")
        name = text[:colon].rstrip() if colon > 0 else ""
        if not name or len(name) > _MAX_SCRIPT_NAME or not _SCRIPT_NAME.fullmatch(name):
            self.fail(lineno, offset + 1, f"cannot read this line; {_LINE_EXPECTED}")
        if not self.speakers:
            self.fail(
                lineno,
                offset + 1,
                f"speaker line before any speaker is declared ({name}); expected a "
                f'[speakers] table in the front matter, e.g. {name} = "alice"',
            )
        if name not in self.speakers:
            declared = ", ".join(self.speakers)
            close = [s for s in self.speakers if s.casefold() == name.casefold()]
            close = close or difflib.get_close_matches(name, list(self.speakers), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            self.fail(
                lineno,
                offset + 1,
                f"unknown speaker {name!r}{hint}; expected one of [speakers]: {declared}, "
                f'or add {name} = "<workspace speaker>" under [speakers] in the front matter',
            )
        rest = text[colon + 1 :]
        words = rest.lstrip()
        col = offset + colon + 2 + len(rest) - len(words)
        return _Pending(name, lineno, offset + 1, col, [(lineno, col, words)] if words else [])

    def flush(self, pending: _Pending | None) -> None:
        if pending is None:
            return
        starts: list[int] = []  # offset in the joined text where each piece starts
        places: list[tuple[int, int]] = []
        chunks: list[str] = []
        offset = 0
        for lineno, col, text in pending.pieces:
            starts.append(offset)
            places.append((lineno, col))
            chunks.append(text)
            offset += len(text) + 1
        joined = " ".join(chunks)
        if not places:
            starts, places = [0], [(pending.line, pending.text_col)]

        def where(at: int) -> tuple[int, int]:
            k = max(bisect_right(starts, at) - 1, 0)
            lineno, col = places[k]
            return lineno, col + at - starts[k]

        parts = self.inline(joined, where)
        if not any(isinstance(p, Span) and p.text.strip() for p in parts):
            self.fail(
                pending.line,
                pending.column,
                f"speaker line has no words; expected {pending.name}: some text "
                "(use [pause 1.2s] for silence)",
            )
        self.used.add(pending.name)
        self.check_sentences(parts, pending)
        self.items.append(
            Line(
                index=self.n_lines,
                speaker=pending.name,
                voice=self.speakers[pending.name],
                parts=parts,
                source_line=pending.line,
                chapter=len(self.chapters),
            )
        )
        self.n_lines += 1

    def check_sentences(self, parts: tuple[Span | Break, ...], pending: _Pending) -> None:
        """Warn (once per line) when a sentence is longer than one generation of a trained
        voice: :func:`split_text` then has to cut inside it."""
        longest = max((len(s) for run in _runs(parts) for s in sentences(run)), default=0)
        if longest > MAX_PIECE_CHARS:
            self.warn(
                pending.line,
                pending.text_col,
                f"a sentence of {longest} characters is longer than a trained voice speaks in "
                f"one go ({MAX_PIECE_CHARS}); it will be cut at commas or between words; "
                "expected shorter sentences",
            )

    def inline(self, text: str, where: _Where) -> tuple[Span | Break, ...]:
        """Split a line's text into spans and breaks; ``where(offset) -> (line, col)``."""
        raw: list[Span | Break] = []
        stack: list[_Open] = []

        def style() -> tuple[str | None, str | None]:
            emphasis = next((o.emphasis for o in reversed(stack) if o.emphasis), None)
            rate = next((o.rate for o in reversed(stack) if o.rate), None)
            return emphasis, rate

        def add(words: str) -> None:
            if words:
                emphasis, rate = style()
                raw.append(Span(html.unescape(words), emphasis, rate))

        def fail_at(at: int, message: str) -> NoReturn:
            self.fail(*where(at), message)

        pos = 0
        while True:
            j = text.find("<", pos)
            if j < 0:
                add(text[pos:])
                break
            after = text[j + 1 : j + 2]
            if not (after.isalpha() or after == "/"):
                add(text[pos : j + 1])  # a literal "<", as in "a < b"
                pos = j + 1
                continue
            add(text[pos:j])
            m = _TAG.match(text, j)
            if m is None:
                end = text.find(">", j)
                snippet = text[j : end + 1] if end >= 0 else text[j : j + 20]
                reason = "is not closed with >" if end < 0 else "is malformed"
                fail_at(
                    j,
                    f"tag {snippet!r} {reason}; expected {_BREAK_EXAMPLE}, "
                    '<emphasis>...</emphasis> or <prosody rate="slow">...</prosody> '
                    "(attribute values in quotes; write &lt; for a literal <)",
                )
            pos = m.end()
            closing, name, self_closing = bool(m[1]), m[2], bool(m[4])
            if name not in TAG_KINDS:
                fail_at(
                    j,
                    f"unknown tag <{m[1]}{name}>; expected break, emphasis or prosody "
                    "(write &lt; for a literal <)",
                )
            if closing:
                if name == "break":
                    fail_at(j, f"</break> closes nothing; expected {_BREAK_EXAMPLE}")
                if not stack:
                    fail_at(j, f"</{name}> closes nothing; expected an opening <{name}> before it")
                top = stack[-1]
                if top.name != name:
                    opened = "{}:{}".format(*where(top.offset))
                    fail_at(
                        j,
                        f"</{name}> does not match <{top.name}> opened at {opened}; "
                        f"expected </{top.name}> first (close tags in reverse order)",
                    )
                stack.pop()
                continue
            attrs: dict[str, tuple[str, int, int]] = {}  # name -> (value, value at, name at)
            for a in _ATTR.finditer(m[3]):
                group = 2 if a[2] is not None else 3
                name_at = m.start(3) + a.start(1)
                if a[1] in attrs:
                    fail_at(
                        name_at, f"attribute {a[1]!r} given twice in <{name}>; expected it once"
                    )
                attrs[a[1]] = (a[group], m.start(3) + a.start(group), name_at)
            if name == "break":
                raw.append(Break(self.break_time(attrs, j, fail_at)))
                self.unknown_attributes(name, attrs, ("time",), where)
                continue
            if self_closing:
                fail_at(j, f"<{name}/> is empty; expected <{name}>words</{name}>")
            if name == "emphasis":
                level, at, _ = attrs.get("level", ("moderate", j, j))
                if level not in EMPHASIS_LEVELS:
                    fail_at(
                        at,
                        f"emphasis level {level!r} is not known; expected "
                        f"{', '.join(EMPHASIS_LEVELS)}",
                    )
                self.unknown_attributes(name, attrs, ("level",), where)
                stack.append(_Open(name, j, level, None))
            else:
                rate: str | None = None
                if "rate" in attrs:
                    rate = self.rate(*attrs["rate"][:2], fail_at)
                else:
                    self.warn(*where(j), "<prosody> without rate changes nothing")
                self.unknown_attributes(name, attrs, ("rate",), where)
                stack.append(_Open(name, j, None, rate))
        if stack:
            first = stack[0]
            fail_at(
                first.offset,
                f"<{first.name}> is never closed; expected </{first.name}> later in the "
                "same speaker line",
            )
        return _normalise(raw)

    def unknown_attributes(
        self,
        tag: str,
        attrs: dict[str, tuple[str, int, int]],
        known: tuple[str, ...],
        where: _Where,
    ) -> None:
        for attr, (_, _, at) in attrs.items():
            if attr not in known:
                line, col = where(at)
                self.warn(
                    line,
                    col,
                    f"attribute {attr!r} of <{tag}> is not supported and is ignored "
                    f"(supported: {', '.join(known)})",
                )

    def break_time(
        self, attrs: dict[str, tuple[str, int, int]], at: int, fail_at: _FailAt
    ) -> float:
        if "time" not in attrs:
            fail_at(at, f'<break> needs a time; expected {_BREAK_EXAMPLE} or time="1.2s"')
        value, value_at, _ = attrs["time"]
        seconds = _duration(value)
        if isinstance(seconds, str):
            fail_at(value_at, f'break time="{value}" {seconds}; expected ms or s, e.g. 400ms')
        if not 0 < seconds <= MAX_BREAK_S:
            fail_at(
                value_at,
                f'break time="{value}" is out of range; expected more than 0 and at most '
                f"{MAX_BREAK_S:g}s (use [pause ...] between lines for longer silence)",
            )
        return seconds

    def rate(self, value: str, at: int, fail_at: _FailAt) -> str:
        if value in RATE_WORDS:
            return value
        m = _PERCENT.fullmatch(value)
        if m is not None and MIN_RATE_PERCENT <= float(m[1]) <= MAX_RATE_PERCENT:
            return f"{float(m[1]):g}%"
        fail_at(
            at,
            f"prosody rate {value!r} is not known; expected {', '.join(RATE_WORDS)} or a "
            f"percentage from {MIN_RATE_PERCENT:g}% to {MAX_RATE_PERCENT:g}% such as 80%",
        )

    # -- cues ---------------------------------------------------------------------------
    def cue(self, lineno: int, text: str, offset: int) -> MusicCue | SfxCue | Pause:
        if not text.endswith("]"):
            close = text.find("]")
            if close >= 0:
                self.fail(
                    lineno,
                    offset + close + 2,
                    "unexpected text after the cue's ]; expected the cue alone on its line",
                )
            self.fail(
                lineno,
                offset + len(text) + 1,
                "cue is not closed; expected ] at the end of the line",
            )
        tokens = self.tokens(lineno, text[1:-1], offset + 2)
        if not tokens:
            self.fail(lineno, offset + 1, f"empty cue; expected {_CUE_EXAMPLES}")
        end = offset + len(text)  # the column of the closing ]
        kind, kind_col, quoted = tokens[0]
        if quoted or kind not in CUE_KINDS:
            close_kind = difflib.get_close_matches(kind.lower(), CUE_KINDS, n=1)
            hint = f" (did you mean {close_kind[0]}?)" if close_kind else ""
            self.fail(
                lineno,
                kind_col,
                f"unknown cue kind {kind!r}{hint}; expected music, sfx or pause, as in "
                f"{_CUE_EXAMPLES}",
            )
        words: list[tuple[str, int, bool]] = []
        options: dict[str, tuple[str, int, int]] = {}  # key -> (value, key col, value col)
        for token, col, was_quoted in tokens[1:]:
            key, eq, value = token.partition("=")
            if was_quoted or not eq:
                words.append((token, col, was_quoted))
                continue
            if key == "gen" and not value.strip():
                self.fail(
                    lineno,
                    col,
                    f'the prompt is empty; expected [{kind} gen="what it sounds like" 2s]',
                )
            if not key or not value:
                self.fail(
                    lineno,
                    col,
                    f"option {token!r} is incomplete; expected key=value with no spaces around =",
                )
            if key in options:
                self.fail(lineno, col, f"option {key!r} given twice; expected it once")
            options[key] = (value, col, col + len(key) + 1)
        if kind == "music":
            return self.music(lineno, end, words, options)
        if kind == "sfx":
            return self.sfx(lineno, end, words, options)
        return self.pause(lineno, end, words, options)

    def tokens(self, lineno: int, inner: str, first_col: int) -> list[tuple[str, int, bool]]:
        """Words of a cue with their 1-based columns; "double quotes" group a name."""
        out: list[tuple[str, int, bool]] = []
        i = 0
        while i < len(inner):
            if inner[i].isspace():
                i += 1
                continue
            if inner[i] == '"':
                end = inner.find('"', i + 1)
                if end < 0:
                    self.fail(lineno, first_col + i, 'a quoted name is not closed; expected "name"')
                out.append((inner[i + 1 : end], first_col + i, True))
                i = end + 1
                continue
            j = i
            while j < len(inner) and not inner[j].isspace() and inner[j] != '"':
                if inner[j] == "]":
                    self.fail(
                        lineno,
                        first_col + j + 1,
                        "unexpected text after the cue's ]; expected one cue alone on its line",
                    )
                j += 1
            if j < len(inner) and inner[j] == '"' and inner[i:j].endswith("="):
                end = inner.find('"', j + 1)  # key="a quoted value"
                if end < 0:
                    self.fail(
                        lineno, first_col + j, 'a quoted value is not closed; expected "text"'
                    )
                out.append((inner[i:j] + inner[j + 1 : end], first_col + i, False))
                i = end + 1
                continue
            out.append((inner[i:j], first_col + i, False))
            i = j
        return out

    def check_options(
        self,
        lineno: int,
        cue: str,
        options: dict[str, tuple[str, int, int]],
        allowed: tuple[str, ...],
    ) -> None:
        for key, (_, col, _) in options.items():
            if key not in allowed:
                expected = (
                    f"one of {', '.join(allowed)}" if allowed else "no options (none are allowed)"
                )
                self.fail(
                    lineno,
                    col,
                    f"unknown option {key!r} for [{cue}]; expected {expected}, "
                    "written key=value with no spaces",
                )

    def option_seconds(
        self, lineno: int, options: dict[str, tuple[str, int, int]], key: str, default: float
    ) -> float:
        if key not in options:
            return default
        value, _, col = options[key]
        seconds = _duration(value)
        if isinstance(seconds, str):
            self.fail(
                lineno, col, f"{key}={value} {seconds}; expected a duration such as 2s or 400ms"
            )
        if not 0 <= seconds <= MAX_FADE_S:
            self.fail(
                lineno,
                col,
                f"{key}={value} is out of range; expected 0s to {MAX_FADE_S:g}s",
            )
        return seconds

    def option_db(
        self,
        lineno: int,
        options: dict[str, tuple[str, int, int]],
        key: str,
        default: float,
        limits: tuple[float, float],
    ) -> float:
        if key not in options:
            return default
        value, _, col = options[key]
        m = _DB.fullmatch(value)
        if m is None:
            self.fail(lineno, col, f"{key}={value} is not a level; expected dB such as -14dB")
        if m[2] is None:
            self.fail(lineno, col, f"{key}={value} has no unit; expected dB such as {value}dB")
        db = float(m[1])
        low, high = limits
        if not low <= db <= high:
            self.fail(
                lineno, col, f"{key}={value} is out of range; expected {low:g}dB to {high:g}dB"
            )
        return db

    def music(
        self,
        lineno: int,
        end: int,
        words: list[tuple[str, int, bool]],
        options: dict[str, tuple[str, int, int]],
    ) -> MusicCue:
        if "gen" in options:
            self.check_options(
                lineno, "music gen", options,
                ("fade_in", "fade_out", "duck", "volume", *_GEN_OPTIONS),
            )  # fmt: skip
            return MusicCue(
                path=None,
                action="start",
                fade_in=self.option_seconds(lineno, options, "fade_in", 0.0),
                fade_out=self.option_seconds(lineno, options, "fade_out", 0.0),
                duck_db=self.option_db(lineno, options, "duck", self.mix.duck_db, DUCK_RANGE_DB),
                volume_db=self.option_db(lineno, options, "volume", 0.0, VOLUME_RANGE_DB),
                source_line=lineno,
                source_column=options["gen"][1],
                generate=self.generated(lineno, "music", words, options),
            )
        if not words:
            self.fail(
                lineno,
                end,
                "music cue names no file; expected [music FILE fade_in=2s] or [music stop]",
            )
        if len(words) > 1:
            self.fail(
                lineno,
                words[1][1],
                f"unexpected {words[1][0]!r}; expected one file name followed by key=value "
                'options (quote a name with spaces: "my theme.wav")',
            )
        name, col, quoted = words[0]
        if name == "stop" and not quoted:
            self.check_options(lineno, "music stop", options, ("fade_out",))
            return MusicCue(
                path=None,
                action="stop",
                fade_in=0.0,
                fade_out=self.option_seconds(lineno, options, "fade_out", 0.0),
                duck_db=0.0,
                volume_db=0.0,
                source_line=lineno,
                source_column=col,
            )
        self.check_options(lineno, "music", options, ("fade_in", "fade_out", "duck", "volume"))
        fade_in = self.option_seconds(lineno, options, "fade_in", 0.0)
        fade_out = self.option_seconds(lineno, options, "fade_out", 0.0)
        duck = self.option_db(lineno, options, "duck", self.mix.duck_db, DUCK_RANGE_DB)
        volume = self.option_db(lineno, options, "volume", 0.0, VOLUME_RANGE_DB)
        return MusicCue(
            path=self.resolve(name, lineno, col),
            action="start",
            fade_in=fade_in,
            fade_out=fade_out,
            duck_db=duck,
            volume_db=volume,
            source_line=lineno,
            source_column=col,
        )

    def sfx(
        self,
        lineno: int,
        end: int,
        words: list[tuple[str, int, bool]],
        options: dict[str, tuple[str, int, int]],
    ) -> SfxCue:
        if "gen" in options:
            self.check_options(lineno, "sfx gen", options, ("volume", *_GEN_OPTIONS))
            request = self.generated(lineno, "sfx", words, options)
            return SfxCue(
                path=None,
                description=request.prompt,
                volume_db=self.option_db(lineno, options, "volume", 0.0, VOLUME_RANGE_DB),
                source_line=lineno,
                source_column=options["gen"][1],
                generate=request,
            )
        self.check_options(lineno, "sfx", options, ("volume",))
        volume = self.option_db(lineno, options, "volume", 0.0, VOLUME_RANGE_DB)
        if not words:
            self.fail(
                lineno,
                end,
                "sfx cue is empty; expected [sfx FILE] or [sfx words describing the sound]",
            )
        files = [w for w in words if w[2] or _looks_like_file(w[0])]
        if files:
            if len(words) > 1:
                extra = words[1] if files[0] is words[0] else words[0]
                self.fail(
                    lineno,
                    extra[1],
                    f"unexpected {extra[0]!r} next to the file {files[0][0]!r}; expected one "
                    'file (quote a name with spaces: "door creak.wav") or only words',
                )
            name, col, _ = files[0]
            path = self.resolve(name, lineno, col)
            return SfxCue(
                path=path, description=name, volume_db=volume, source_line=lineno, source_column=col
            )
        description = " ".join(w[0] for w in words)
        col = words[0][1]
        self.warn(
            lineno,
            col,
            f"sound effect {description!r} names no file and is skipped; expected [sfx FILE] "
            'with a file in assets/, or [sfx gen="the words" 2s] to generate it',
        )
        return SfxCue(
            path=None, description=description, volume_db=volume, source_line=lineno,
            source_column=col,
        )  # fmt: skip

    def pause(
        self,
        lineno: int,
        end: int,
        words: list[tuple[str, int, bool]],
        options: dict[str, tuple[str, int, int]],
    ) -> Pause:
        self.check_options(lineno, "pause", options, ())
        if not words:
            self.fail(lineno, end, "pause has no length; expected [pause 1.2s]")
        if len(words) > 1:
            self.fail(lineno, words[1][1], f"unexpected {words[1][0]!r}; expected [pause 1.2s]")
        value, col, _ = words[0]
        seconds = _duration(value)
        if isinstance(seconds, str):
            self.fail(lineno, col, f"pause {value} {seconds}; expected [pause 1.2s] or 400ms")
        if not 0 < seconds <= MAX_PAUSE_S:
            self.fail(
                lineno,
                col,
                f"pause {value} is out of range; expected more than 0 and at most {MAX_PAUSE_S:g}s",
            )
        return Pause(seconds=seconds, source_line=lineno)

    def generated(
        self,
        lineno: int,
        kind: str,
        words: list[tuple[str, int, bool]],
        options: dict[str, tuple[str, int, int]],
    ) -> GeneratedSound:
        """The ``gen="prompt" 2.5s seed=4 ...`` part of a generated cue."""
        prompt, gen_col, prompt_col = options["gen"]
        prompt = " ".join(prompt.split())
        if not prompt:
            self.fail(
                lineno,
                prompt_col,
                f'the prompt is empty; expected [{kind} gen="what it sounds like" 2s]',
            )
        if not words:
            self.fail(
                lineno,
                gen_col,
                f'generated {kind} has no length; expected [{kind} gen="{prompt}" 2.5s]',
            )
        if len(words) > 1:
            self.fail(
                lineno, words[1][1], f"unexpected {words[1][0]!r}; expected one length such "
                'as 2.5s and key=value options (quote the prompt: gen="two words")',
            )  # fmt: skip
        value, col, _ = words[0]
        seconds = _duration(value)
        if isinstance(seconds, str):
            self.fail(lineno, col, f"length {value} {seconds}; expected a length such as 2.5s")
        limit = self.sound_limit()
        if not 0 < seconds <= limit + 1e-9:
            self.fail(
                lineno, col, f"length {value} is over the sound model's limit; expected more "
                f"than 0 and at most {limit:.2f}s (longer beds loop: [music gen=... 30s])",
            )  # fmt: skip
        seed = self.option_int(lineno, options, "seed", 0, 2**31 - 1)
        steps = self.option_int(lineno, options, "steps", 1, 1000)
        guidance = self.option_float(lineno, options, "guidance", 0.0, 30.0)
        strength = self.option_float(lineno, options, "strength", 0.01, 1.0)
        negative = options["negative"][0] if "negative" in options else None
        source: Path | None = None
        if "from" in options:
            name, _, from_col = options["from"]
            source = self.resolve(name, lineno, from_col)
        elif strength is not None:
            self.fail(
                lineno, options["strength"][1], "strength= without from=; expected "
                "from=assets/FILE.wav strength=0.6, or no strength",
            )  # fmt: skip
        return GeneratedSound(
            prompt=prompt, seconds=seconds, seed=seed, negative=negative, steps=steps,
            guidance=guidance, source=source,
            strength=(_DEFAULT_STRENGTH if strength is None else strength) if source else None,
            prompt_column=gen_col,
        )  # fmt: skip

    def sound_limit(self) -> float:
        """The longest sound the workspace's sound model makes (no model is loaded)."""
        from core.episodes.sound.backend import max_seconds_for

        if self.workspace is None:
            return max_seconds_for("")
        return max_seconds_for(self.workspace.settings.models.sound, self.workspace.root)

    def option_int(
        self, lineno: int, options: dict[str, tuple[str, int, int]], key: str, low: int, high: int
    ) -> int | None:
        if key not in options:
            return None
        value, _, col = options[key]
        if not re.fullmatch(r"\d+", value) or not low <= int(value) <= high:
            self.fail(lineno, col, f"{key}={value} is not a whole number from {low} to {high}")
        return int(value)

    def option_float(
        self,
        lineno: int,
        options: dict[str, tuple[str, int, int]],
        key: str,
        low: float,
        high: float,
    ) -> float | None:
        if key not in options:
            return None
        value, _, col = options[key]
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if not low <= number <= high:
            self.fail(lineno, col, f"{key}={value} is not a number from {low:g} to {high:g}")
        return number

    # -- cue files ------------------------------------------------------------------------
    def resolve(self, name: str, lineno: int, col: int) -> Path:
        cached = self.resolved.get(name)
        if cached is not None:
            return cached
        path = Path(name)
        if self.root is None:
            if path.is_absolute() or ".." in path.parts or not name.strip():
                self.fail(
                    lineno,
                    col,
                    f"{name!r} may lie outside the workspace; expected a path relative to the "
                    "workspace's assets/ folder, without ..",
                )
            self.resolved[name] = path
            return path
        root = self.root
        candidates = [path] if path.is_absolute() else [root / "assets" / path, root / path]
        looked: list[Path] = []
        for candidate in candidates:
            lexical = Path(os.path.normpath(candidate))
            if not lexical.is_relative_to(root):
                continue
            looked.append(lexical)
            try:
                real = candidate.resolve()
            except (OSError, RuntimeError):  # a symlink loop
                continue
            if not real.is_relative_to(root):
                self.fail(
                    lineno,
                    col,
                    f"{name!r} leads through a symlink to {real}, outside the workspace "
                    f"{root}; expected a file inside the workspace (copy it into assets/)",
                )
            if real.is_file():
                self.check_audio_name(name, real, lineno, col)
                self.resolved[name] = real
                return real
        if not looked:
            self.fail(
                lineno,
                col,
                f"{name!r} is outside the workspace {root}; expected a path inside it, "
                f"such as a file in {root / 'assets'}",
            )
        places = " and ".join(str(p) for p in looked)
        self.fail(
            lineno,
            col,
            f"file {name!r} not found (looked in {places}); expected the file in {root / 'assets'}",
        )

    def check_audio_name(self, name: str, real: Path, lineno: int, col: int) -> None:
        """Refuse a cue file podforge cannot decode by its name (``[sfx ../workspace.toml]``)
        here, with its place, rather than when the render reads it."""
        from core.audio.io import SUPPORTED_EXTENSIONS

        ext = real.suffix.lower()
        if ext not in SUPPORTED_EXTENSIONS:
            shown = f"{ext!r}" if ext else "no extension"
            self.fail(
                lineno,
                col,
                f"{name!r} is not an audio file ({shown}); expected a sound file "
                f"({', '.join(sorted(SUPPORTED_EXTENSIONS))}), such as a WAV in assets/",
            )


# --- helpers -----------------------------------------------------------------------------


def _duration(value: str) -> float | str:
    """Seconds from ``400ms`` / ``1.2s``, or why not (a phrase to put in a message)."""
    m = _DURATION.fullmatch(value.strip())
    if m is None:
        return "is not a duration"
    if m[2] is None:
        return "has no unit"
    number = float(m[1])
    return number / 1000.0 if m[2].lower() == "ms" else number


def _runs(parts: tuple[Span | Break, ...]) -> list[str]:
    """The text between breaks (each generated separately by the CSM backend)."""
    runs: list[str] = []
    text = ""
    for part in (*parts, Break(0.0)):
        if isinstance(part, Span):
            text += part.text
        else:
            if text.strip():
                runs.append(" ".join(text.split()))
            text = ""
    return runs


def _looks_like_file(word: str) -> bool:
    return "/" in word or "\\" in word or Path(word).suffix.lower() in AUDIO_EXTENSIONS


def _normalise(raw: list[Span | Break]) -> tuple[Span | Break, ...]:
    """Collapse white space (breaks are transparent to it), trim the ends, merge spans
    of the same style and drop empty ones."""
    merged: list[Span | Break] = []
    for part in raw:
        last = merged[-1] if merged else None
        if (
            isinstance(part, Span)
            and isinstance(last, Span)
            and (last.emphasis, last.rate) == (part.emphasis, part.rate)
        ):
            merged[-1] = Span(last.text + part.text, part.emphasis, part.rate)
        else:
            merged.append(part)
    out: list[Span | Break] = []
    space_before = True  # at the start of the line, leading space is dropped
    for part in merged:
        if isinstance(part, Break):
            out.append(part)
            continue
        text = re.sub(r"\s+", " ", part.text)
        if space_before:
            text = text.lstrip(" ")
        if text:
            space_before = text.endswith(" ")
            out.append(Span(text, part.emphasis, part.rate))
    # Trim the trailing space of the last span (breaks may follow it).
    for k in range(len(out) - 1, -1, -1):
        part = out[k]
        if isinstance(part, Span):
            trimmed = part.text.rstrip(" ")
            if trimmed:
                out[k] = Span(trimmed, part.emphasis, part.rate)
                break
            del out[k]
    return tuple(out)
