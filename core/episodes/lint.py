"""Script lint: what voice models often misread, flagged before anything is rendered.

:func:`lint_lines` finds, in each speaker line of a script's text, the tokens a TTS model
tends to get wrong: numbers and amounts (with how they will be read,
:func:`core.episodes.verbalise.verbalise`), acronyms, URLs and e-mail addresses, symbols,
and — when the speaker has enough transcribed speech to tell — words that never occur in
their own recordings. Each is a :class:`Hint` at its line and column; the script editor
lists them with the problems and ``R`` adds a respelling (:func:`add_pronunciation`) and
auditions just that word. Words already in ``pronunciations.toml`` are not flagged.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import tomli_w

from core.atomic import atomic_write_text
from core.episodes.pronunciations import FILE, Lexicon, load_pronunciations
from core.episodes.script import Line
from core.episodes.verbalise import verbalise

__all__ = ["MIN_VOCABULARY", "Hint", "add_pronunciation", "lint_lines"]

HintKind = Literal["number", "acronym", "address", "symbol", "unknown"]

MIN_VOCABULARY = 1500
"""Distinct words a speaker's transcripts need before unknown words are flagged."""

_TAG = re.compile(r"<[^>]*>")
_ADDRESS = re.compile(r"https?://\S+|\bwww\.\S+|\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_NUMBER = re.compile(r"[$€£−-]?\d[\d,.:]*(?:%|\s?(?:bn|[kKmMbB])\b|st\b|nd\b|rd\b|th\b|s\b)?")
_ACRONYM = re.compile(r"\b[A-Z][A-Z0-9]*[A-Z](?:'?s)?\b")
_SYMBOL = re.compile(r"[&@#/*~^+=|\\_{}]")
_WORD = re.compile(r"\b[A-Za-z][A-Za-z'’]*[A-Za-z]\b|\b[A-Za-z]\b")


@dataclass(frozen=True)
class Hint:
    """One token worth checking: 1-based ``line`` and ``column``."""

    line: int
    column: int
    token: str
    kind: HintKind
    message: str


def lint_lines(
    lines: Sequence[Line],
    source: Sequence[str],
    lexicon: Lexicon,
    vocabularies: Mapping[str, set[str]],
) -> list[Hint]:
    """The hints of every speaker line; ``source`` is the script's text split in lines,
    ``vocabularies`` each voice's words (lower case) from its transcripts."""
    respelled = {word.lower() for word, _ in lexicon.entries}
    hints: list[Hint] = []
    for line in lines:
        if not 0 < line.source_line <= len(source):
            continue
        raw = source[line.source_line - 1]
        start = raw.find(":") + 1
        body = _TAG.sub(lambda m: " " * len(m.group(0)), raw[start:])
        vocabulary = vocabularies.get(line.voice, set())
        found = sorted(_scan(body, respelled, vocabulary, line.voice), key=lambda hit: hit[1])
        for token, offset, kind, message in found:
            hints.append(Hint(line.source_line, start + offset + 1, token, kind, message))
    return hints


def _scan(
    body: str, respelled: set[str], vocabulary: set[str], voice: str
) -> Iterable[tuple[str, int, HintKind, str]]:
    taken: list[tuple[int, int]] = []

    def free(span: tuple[int, int]) -> bool:
        return all(span[1] <= a or span[0] >= b for a, b in taken)

    for match in _ADDRESS.finditer(body):
        taken.append(match.span())
        yield (
            match.group(0),
            match.start(),
            "address",
            (f"{match.group(0)!r}: voices misread addresses; write it as it should be said"),
        )
    for match in _NUMBER.finditer(body):
        token = match.group(0).rstrip(".,:")
        if not free(match.span()) or token.lower() in respelled:
            continue
        taken.append(match.span())
        yield token, match.start(), "number", f"{token!r} is read as “{verbalise(token)}”"
    for match in _ACRONYM.finditer(body):
        token = match.group(0)
        if not free(match.span()) or token.lower() in respelled or len(token.rstrip("s'")) < 2:
            continue
        taken.append(match.span())
        yield (
            token,
            match.start(),
            "acronym",
            (f"acronym {token!r}: spelled out or said as a word? (R adds a respelling)"),
        )
    for match in _SYMBOL.finditer(body):
        if free(match.span()):
            yield (
                match.group(0),
                match.start(),
                "symbol",
                (f"symbol {match.group(0)!r} is read unpredictably: write it as words"),
            )
    if len(vocabulary) < MIN_VOCABULARY:
        return
    for match in _WORD.finditer(body):
        word = match.group(0).replace("’", "'")
        if not free(match.span()) or word.lower() in respelled:
            continue
        if word.lower().replace("'", "") not in vocabulary:
            yield (
                word,
                match.start(),
                "unknown",
                (
                    f"{word!r} is not in {voice}'s recordings: check it is said right "
                    "(R adds a respelling)"
                ),
            )


def add_pronunciation(root: Path, word: str, spelling: str) -> Lexicon:
    """Add (or replace) ``word = "spelling"`` in the workspace's ``pronunciations.toml``,
    keeping its other lines and comments; written atomically and read back."""
    word, spelling = " ".join(word.split()), " ".join(spelling.split())
    if not word or not spelling:
        raise ValueError("a respelling needs a word and how to say it")
    path = root / FILE
    entry = tomli_w.dumps({word: spelling})
    try:
        lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    except FileNotFoundError:
        lines = []
    key = entry.split("=", 1)[0].strip()
    same = re.compile(rf"^\s*(?:{re.escape(key)}|{re.escape(word)}|\"{re.escape(word)}\")\s*=")
    kept = [row for row in lines if not same.match(row)]
    if kept and not kept[-1].endswith("\n"):
        kept[-1] += "\n"
    atomic_write_text(path, "".join(kept) + entry)
    return load_pronunciations(root)
