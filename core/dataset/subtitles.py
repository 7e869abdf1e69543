"""Read transcript sidecars (``.srt``, ``.vtt``, ``.txt``) robustly.

:func:`read_subtitles` parses SubRip and WebVTT with one tolerant, line-based parser and
returns clean, sorted, non-overlapping :class:`Cue` s: nothing a subtitle editor commonly
gets wrong (encodings, layout, timestamps, markup) is fatal. A malformed block is skipped
with a warning on the ``core.dataset.subtitles`` logger; a file with no usable cue raises
:class:`~core.errors.TranscriptError`. :func:`tidy_cues` drops empty cues, sorts them and
resolves overlaps (containment merges, partial overlap trims).

Details: docs/DATASET.md, "Transcript sidecars"."""

from __future__ import annotations

import codecs
import html
import logging
import re
from dataclasses import dataclass
from pathlib import Path

from core.errors import TranscriptError, at

__all__ = [
    "SUBTITLE_EXTENSIONS",
    "Cue",
    "clean_text",
    "decode_bytes",
    "decode_text_file",
    "parse_subtitles",
    "read_subtitles",
    "read_text",
    "tidy_cues",
]

log = logging.getLogger(__name__)

#: Extensions :func:`read_subtitles` is meant for (any other is parsed the same way).
SUBTITLE_EXTENSIONS: frozenset[str] = frozenset({".srt", ".vtt"})


@dataclass(frozen=True)
class Cue:
    """One subtitle cue: a time span in seconds and its plain text."""

    start_sec: float
    end_sec: float
    text: str

    @property
    def duration(self) -> float:
        return self.end_sec - self.start_sec


# ------------------------------------------------------------------------ decoding

_BOMS: tuple[tuple[bytes, str], ...] = (
    (codecs.BOM_UTF32_LE, "utf-32"),  # before UTF-16 LE: it starts with the same bytes
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


def decode_bytes(raw: bytes) -> str:
    """Decode transcript bytes; see :func:`decode_text_file`. Never raises."""
    for bom, encoding in _BOMS:
        if raw.startswith(bom):
            text = raw.decode(encoding, errors="replace")
            return text.lstrip("\ufeff")
    head = raw[:4096]
    if len(head) >= 4 and b"\x00" in head:
        # BOM-less UTF-16: real text never holds NUL bytes, UTF-16 ASCII is half NULs.
        odd, even = head[1::2].count(0), head[0::2].count(0)
        if odd > len(head) // 4 and odd > even:
            return raw.decode("utf-16-le", errors="replace").lstrip("\ufeff")
        if even > len(head) // 4:
            return raw.decode("utf-16-be", errors="replace").lstrip("\ufeff")
    for encoding in ("utf-8", "cp1252"):
        try:
            return raw.decode(encoding).lstrip("\ufeff")
        except UnicodeDecodeError:
            continue
    return raw.decode("latin-1")


def decode_text_file(path: Path | str) -> str:
    """The text of ``path``: UTF-8 / UTF-8 with BOM / UTF-16 or UTF-32 with BOM, else
    Windows-1252, else Latin-1. Never fails on the bytes themselves; a file that
    cannot be read at all raises :class:`TranscriptError`. Line endings are kept."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise TranscriptError(at(p, "transcript file not found; check the path")) from None
    except IsADirectoryError:
        raise TranscriptError(at(p, "is a folder, not a transcript file")) from None
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise TranscriptError(at(p, f"cannot be read ({reason}); check its permissions")) from exc
    return decode_bytes(raw)


def _lines(text: str) -> list[str]:
    # Only \n, \r\n and \r end lines (str.splitlines would also split on \x85, \x0c, ...).
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")


# ------------------------------------------------------------------------ plain text


def read_text(path: Path | str) -> list[str]:
    """The paragraphs of a ``.txt`` transcript (separated by blank lines), each with its
    whitespace collapsed to single spaces; empty paragraphs are left out (an empty
    file gives ``[]``)."""
    text = _lines(decode_text_file(path))
    paragraphs: list[str] = []
    current: list[str] = []
    for line in [*text, ""]:
        if line.strip():
            current.append(line)
        elif current:
            joined = _normalise_space(" ".join(current))
            if joined:
                paragraphs.append(joined)
            current = []
    return paragraphs


_INVISIBLE = re.compile(r"[\u200b\u200c\u200d\u200e\u200f\u2060\ufeff]")


def _normalise_space(text: str) -> str:
    return " ".join(_INVISIBLE.sub("", text).split())


# ------------------------------------------------------------------------ subtitles

_TS = r"(?:(\d+):)?(\d{1,2}):(\d{1,2})(?:[,.](\d{1,3}))?"
_TIMING = re.compile(rf"^\s*{_TS}\s*--?>\s*{_TS}(?:\s.*)?$")
_LOOKS_TIMED = re.compile(r"-->|^\s*\d+:\d+\S*\s*(?:-+>?|–|—)\s*\d+:\d+")
_BLOCK_KEYWORDS = re.compile(r"^(?:WEBVTT|NOTE|STYLE|REGION)(?:\s|$)")
_BARE_NUMBER = re.compile(r"^\d+$")

# Markup inside cue text.
_TAG = re.compile(r"</?[A-Za-z][^<>]*>|<\d[\d:.,]*>")
_ASS_OVERRIDE = re.compile(r"\{\\[^{}]*\}")
_ASS_BREAK = re.compile(r"\\[Nnh]")


def read_subtitles(path: Path | str) -> list[Cue]:
    """Parse an ``.srt`` or ``.vtt`` file into sorted, cleaned, non-overlapping cues.

    See the module docstring for what is tolerated and how overlaps are resolved.
    Raises :class:`TranscriptError` when the file cannot be read or holds no usable cue.
    """
    p = Path(path)
    return parse_subtitles(decode_text_file(p), p)


def parse_subtitles(text: str, source: Path | str = "<subtitles>") -> list[Cue]:
    """Parse SRT or WebVTT ``text`` (already decoded); ``source`` names it in messages."""
    raw, malformed = _parse_blocks(_lines(text))
    cues = tidy_cues(raw)
    if cues:
        if malformed is not None:
            line_no, line = malformed
            log.warning(
                "%s",
                at(source, f"line {line_no}: malformed timestamp {_snippet(line)}; cue skipped"),
            )
        return cues
    if malformed is not None:
        line_no, line = malformed
        raise TranscriptError(
            at(
                source,
                f"no usable subtitle cue; line {line_no} has a malformed timestamp "
                f"{_snippet(line)} (expected e.g. 00:00:01,000 --> 00:00:04,000)",
            )
        )
    if raw:
        raise TranscriptError(
            at(source, f"no usable subtitle cue: all {len(raw)} cues are empty or have no length")
        )
    raise TranscriptError(
        at(
            source,
            "no subtitle cue found (no 'start --> end' timing line); is it an SRT or WebVTT file?",
        )
    )


def _snippet(line: str) -> str:
    s = line.strip()
    return repr(s if len(s) <= 60 else s[:57] + "...")


def _parse_blocks(lines: list[str]) -> tuple[list[Cue], tuple[int, str] | None]:
    """Raw cues (uncleaned order, cleaned text) and the first malformed timing line."""
    cues: list[Cue] = []
    malformed: tuple[int, str] | None = None
    timing: tuple[float, float] | None = None  # of the cue being read
    text: list[str] = []
    skipping = False  # inside a header/NOTE/STYLE/REGION block or a block with bad timing
    block_start = True  # the previous line was blank (or this is the first line)

    def close() -> None:
        nonlocal timing, text
        if timing is not None:
            cues.append(Cue(timing[0], timing[1], clean_text(" ".join(text))))
        timing, text = None, []

    for number, line in enumerate(lines, 1):
        stripped = line.strip()
        if not stripped:
            close()
            skipping, block_start = False, True
            continue
        match = _TIMING.match(stripped)
        times = _timing(match) if match else None
        if times is not None:
            if timing is not None and text and _BARE_NUMBER.match(text[-1]):
                text.pop()  # SRT with no blank line: that number belongs to this cue
            close()
            timing = times
            skipping = block_start = False
            continue
        # Inside a cue's text only an arrow marks a broken timing line ("10:30 - 11:00"
        # there is text); elsewhere a line starting like a time range does too.
        if match or ("-->" in stripped if timing is not None else _LOOKS_TIMED.search(stripped)):
            if malformed is None:
                malformed = (number, line)
            close()
            skipping, block_start = True, False
            continue
        if skipping:
            continue
        if timing is None:
            # Before a timing line: a cue number/identifier, or the header/NOTE/STYLE/REGION.
            if block_start and _BLOCK_KEYWORDS.match(stripped):
                skipping = True
            block_start = False
            continue
        text.append(stripped)
    close()
    return cues, malformed


def _timing(match: re.Match[str]) -> tuple[float, float] | None:
    g = match.groups()
    start, end = _seconds(g[0:4]), _seconds(g[4:8])
    if start is None or end is None:
        return None
    return start, end


def _seconds(parts: tuple[str | None, ...]) -> float | None:
    hours, minutes, seconds, fraction = parts
    m, s = int(minutes or 0), int(seconds or 0)
    if s >= 60 or (hours is not None and m >= 60):
        return None
    frac = int(fraction) / 10 ** len(fraction) if fraction else 0.0
    return round(int(hours or 0) * 3600 + m * 60 + s + frac, 3)


def clean_text(text: str) -> str:
    """Cue text without markup: tags, ASS overrides and entities removed, spaces collapsed."""
    text = _ASS_OVERRIDE.sub("", text)
    text = _ASS_BREAK.sub(" ", text)
    text = _TAG.sub("", text)
    text = html.unescape(text).replace("\u00a0", " ")
    return _normalise_space(text)


def tidy_cues(cues: list[Cue]) -> list[Cue]:
    """Drop empty and zero/negative-length cues, sort, and resolve overlaps.

    Containment (including duplicates and equal starts) merges the two cues; a
    partial overlap trims the earlier cue's end to the later cue's start.
    """
    valid = [c for c in cues if c.end_sec > c.start_sec and c.text]
    dropped = len(cues) - len(valid)
    if dropped:
        log.debug("dropped %d cue(s) with no text or no length", dropped)
    valid.sort(key=lambda c: (c.start_sec, c.end_sec))
    out: list[Cue] = []
    for cue in valid:
        if not out or cue.start_sec >= out[-1].end_sec:
            out.append(cue)
            continue
        prev = out[-1]
        if cue.end_sec <= prev.end_sec or cue.start_sec == prev.start_sec:
            # One holds the other: merge into one cue spanning both.
            out[-1] = Cue(
                prev.start_sec, max(prev.end_sec, cue.end_sec), _join(prev.text, cue.text)
            )
        else:
            out[-1] = Cue(prev.start_sec, cue.start_sec, prev.text)
            out.append(cue)
    return out


def _join(first: str, second: str) -> str:
    if second in first:
        return first
    if first in second:
        return second
    return f"{first} {second}"
