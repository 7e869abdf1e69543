"""What a line says out loud: numbers, money, years, times and signs written as words.

:func:`verbalise` rewrites the written forms a voice model misreads — ``1,250.5``, ``1.5k``,
``$5``, ``1990s``, ``-5``, ``3:00``, ``20%``, ``3rd``, ``2024`` — as the words a reader
says, with :mod:`num2words` (a well-kept library, LGPL) doing the number words. The result is
both what the voice is asked to say and the reference its back-transcription is scored
against (:func:`core.evaluation.text.normalise` verbalises too), so the two never disagree
about how a number is read. Number words come without "and", commas or hyphens ("one
thousand two hundred fifty"), the form :func:`~core.evaluation.text.normalise` compares in.

:data:`VERSION` changes whenever a reading changes: it is part of every score's cache key.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

__all__ = ["VERSION", "cardinal", "ordinal", "verbalise", "year"]

VERSION = 1

_CURRENCY = {"$": ("dollar", "dollars", "cent", "cents"), "€": ("euro", "euros", "cent", "cents"),
             "£": ("pound", "pounds", "penny", "pence")}  # fmt: skip
_SCALE = {"k": "thousand", "m": "million", "b": "billion", "bn": "billion"}
_NUMBER = r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?"


def num2words(number: int, **options: Any) -> str:
    """:func:`num2words.num2words`, imported on first use (it loads every language it has:
    about 0.1 s, kept off the editor's start)."""
    from num2words import num2words as spell

    return str(spell(number, **options))


def _clean(words: str) -> str:
    words = words.replace("-", " ").replace(",", " ")
    return " ".join(word for word in words.split() if word != "and")


def cardinal(number: str) -> str:
    """``"1,250.5"`` → ``"one thousand two hundred fifty point five"``; digits after the
    point are read one by one (``"3.05"`` → ``"three point zero five"``)."""
    whole, _, fraction = number.replace(",", "").partition(".")
    words = _clean(num2words(int(whole)))
    if fraction:
        words += " point " + " ".join(_clean(num2words(int(digit))) for digit in fraction)
    return words


def ordinal(number: int) -> str:
    """``3`` → ``"third"``, ``21`` → ``"twenty first"``."""
    return _clean(num2words(number, to="ordinal"))


def year(number: int) -> str:
    """``1990`` → ``"nineteen ninety"``, ``2005`` → ``"two thousand five"``."""
    return _clean(num2words(number, to="year"))


def _plural(words: str) -> str:
    """``"nineteen ninety"`` → ``"nineteen nineties"`` (a decade)."""
    head, _, last = words.rpartition(" ")
    last = last[:-1] + "ies" if last.endswith("y") else last + "s"
    return f"{head} {last}".strip()


def _money(match: re.Match[str]) -> str:
    one, many, cent, cents = _CURRENCY[match["symbol"]]
    amount, scale = match["amount"], (match["scale"] or "").lower()
    if scale:
        return f"{cardinal(amount)} {_SCALE[scale]} {many}"
    whole, _, fraction = amount.replace(",", "").partition(".")
    hundredths = int(fraction[:2].ljust(2, "0")) if fraction else 0
    small = f"{cardinal(str(hundredths))} {cent if hundredths == 1 else cents}"
    if int(whole) == 0 and hundredths:
        return small
    words = f"{cardinal(whole)} {one if int(whole) == 1 else many}"
    return f"{words} and {small}" if hundredths else words


def _time(match: re.Match[str]) -> str:
    hours, minutes = int(match["h"]), int(match["m"])
    if minutes == 0:
        spoken = f"{cardinal(str(hours))} o'clock"
    elif minutes < 10:
        spoken = f"{cardinal(str(hours))} oh {cardinal(str(minutes))}"
    else:
        spoken = f"{cardinal(str(hours))} {cardinal(str(minutes))}"
    suffix = (match["ampm"] or "").replace(".", "").lower()
    return f"{spoken} {' '.join(suffix)}" if suffix else spoken


def _decade(match: re.Match[str]) -> str:
    digits = match["digits"]
    if len(digits) == 2:  # '90s
        return _plural(cardinal(digits))
    return _plural(year(int(digits)))


def _scaled(match: re.Match[str]) -> str:
    return f"{cardinal(match['amount'])} {_SCALE[match['scale'].lower()]}"


def _signed(match: re.Match[str]) -> str:
    return f"minus {cardinal(match['amount'])}"


def _percent(match: re.Match[str]) -> str:
    return f"{cardinal(match['amount'])} percent"


def _ordinal(match: re.Match[str]) -> str:
    return ordinal(int(match["n"]))


def _plain(match: re.Match[str]) -> str:
    number = match[0]
    if re.fullmatch(r"1[1-9]\d\d|20\d\d", number):  # 1100-2099 alone: read as a year
        return year(int(number))
    return cardinal(number)


_TIME = r"\b(?P<h>[01]?\d|2[0-3]):(?P<m>[0-5]\d)\b(?:\s?(?P<ampm>[ap]\.?m\.?)(?!\w))?"
_MONEY = rf"(?P<symbol>[$€£])(?P<amount>{_NUMBER})(?:\s?(?P<scale>bn|[kmb])\b)?"
_RULES: tuple[tuple[re.Pattern[str], Callable[[re.Match[str]], str]], ...] = (
    (re.compile(_TIME, re.IGNORECASE), _time),
    (re.compile(_MONEY, re.IGNORECASE), _money),
    (re.compile(r"(?:\b|')(?P<digits>1[1-9]\d0|20\d0|(?<=')\d0)s\b"), _decade),
    (re.compile(rf"(?<![\w.])(?P<amount>{_NUMBER})(?P<scale>bn|[kmb])\b", re.IGNORECASE), _scaled),
    (re.compile(rf"(?<![\w)\]])[-−–](?P<amount>{_NUMBER})\b"), _signed),
    (re.compile(rf"\b(?P<amount>{_NUMBER})\s?%"), _percent),
    (re.compile(r"\b(?P<n>\d+)(?:st|nd|rd|th)\b", re.IGNORECASE), _ordinal),
    (re.compile(rf"\b(?:{_NUMBER})\b"), _plain),
)


def verbalise(text: str) -> str:
    """``text`` with every number-like written form as the words a reader says; other text
    is left as it is (letters, punctuation, spacing)."""
    for pattern, spoken in _RULES:
        text = pattern.sub(spoken, text)
    return text
