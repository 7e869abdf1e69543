"""Text normalisation for WER/CER: the form both a reference and a transcript are compared in.

:func:`normalise` verbalises numbers, money, years, times and signs exactly as the voice was
asked to say them (:func:`core.episodes.verbalise.verbalise`, num2words underneath), then
lower-cases, drops apostrophes inside words and turns every other punctuation mark into a
space. :data:`NORMALISER` names this form (with the verbaliser's version) in reports and
score caches. :func:`whisper_normalise` is the other convention, Whisper's English
normaliser (``whisper-normalizer``), which ASR leaderboards report WER in.
"""

from __future__ import annotations

import re
import unicodedata
from functools import cache
from typing import Any

from core.episodes.verbalise import VERSION, cardinal, verbalise

__all__ = ["NORMALISER", "WHISPER_NORMALISER", "normalise", "number_to_words", "whisper_normalise"]

NORMALISER = f"podforge-verbalise-{VERSION}"
"""The name of :func:`normalise`'s form, recorded beside every figure computed in it."""

WHISPER_NORMALISER = "whisper-english"
"""The name of :func:`whisper_normalise`'s form."""

_APOSTROPHE = re.compile(r"(?<=\w)['’](?=\w)")
_NOT_WORD = re.compile(r"[^\w\s]|_")


def number_to_words(n: int) -> str:
    """A cardinal in English words without "and" or hyphens: 342 -> "three hundred forty two"."""
    return f"minus {cardinal(str(-n))}" if n < 0 else cardinal(str(n))


def normalise(text: str) -> str:
    """The form both sides of WER/CER are compared in.

    Unicode NFKC; numbers and the like verbalised (``1,250.5`` -> ``one thousand two hundred
    fifty point five``, ``$5`` -> ``five dollars``, ``1990s`` -> ``nineteen nineties``,
    ``-5`` -> ``minus five``, ``3:00`` -> ``three oclock``, ``1.5k`` -> ``one point five
    thousand``, ``21st`` -> ``twenty first``, four-digit numbers in 1100..2099 read as years);
    lower case; ``&`` read as "and"; apostrophes inside words removed (``don't`` -> ``dont``);
    every other punctuation mark (hyphens too) made a space; whitespace collapsed.
    """
    s = verbalise(unicodedata.normalize("NFKC", text)).lower()
    s = s.replace("&", " and ")
    s = _APOSTROPHE.sub("", s)
    s = _NOT_WORD.sub(" ", s)
    return " ".join(s.split())


@cache
def _whisper() -> Any:
    from whisper_normalizer.english import EnglishTextNormalizer

    return EnglishTextNormalizer()


def whisper_normalise(text: str) -> str:
    """Whisper's English normaliser (the ASR leaderboards' convention): numbers become digits
    (``one thousand`` -> ``1000``), spellings standardised, fillers and punctuation dropped."""
    return " ".join(str(_whisper()(text)).split())
