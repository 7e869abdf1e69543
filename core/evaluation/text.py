"""Text normalisation for WER/CER: the form both a reference and a transcript are compared in.

:func:`normalise` lower-cases, writes numbers as words (years read as years, decimals,
ordinals, thousands separators, ``%``), drops apostrophes inside words and turns every other
punctuation mark into a space. Written by hand: a small fixed set of English rules, so a
metric never changes with a library's release.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["normalise", "number_to_words"]

_ONES = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
]
_TENS = ["_", "_", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_SCALES = ((10**9, "billion"), (10**6, "million"), (1000, "thousand"))
_ORDINAL_IRREGULAR = {
    "one": "first",
    "two": "second",
    "three": "third",
    "five": "fifth",
    "eight": "eighth",
    "nine": "ninth",
    "twelve": "twelfth",
}
_DIGITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]

_THOUSANDS = re.compile(r"\b\d{1,3}(?:,\d{3})+\b")
_DECIMAL = re.compile(r"\b(\d+)\.(\d+)\b")
_ORDINAL = re.compile(r"\b(\d+)(st|nd|rd|th)\b", re.IGNORECASE)
_NUMBER = re.compile(r"\d+")
_APOSTROPHE = re.compile(r"(?<=\w)['’](?=\w)")
_NOT_WORD = re.compile(r"[^\w\s]|_")


def number_to_words(n: int) -> str:
    """A cardinal in English words without "and" or hyphens: 342 -> "three hundred forty two".

    Covers 0 up to 999,999,999,999; larger numbers are read digit by digit.
    """
    if n < 0:
        return "minus " + number_to_words(-n)
    if n >= 10**12:
        return " ".join(_DIGITS[int(d)] for d in str(n))
    if n < 20:
        return _ONES[n]
    if n < 100:
        tens, ones = divmod(n, 10)
        return _TENS[tens] + (f" {_ONES[ones]}" if ones else "")
    if n < 1000:
        hundreds, rest = divmod(n, 100)
        return f"{_ONES[hundreds]} hundred" + (f" {number_to_words(rest)}" if rest else "")
    for scale, name in _SCALES:
        if n >= scale:
            high, rest = divmod(n, scale)
            return f"{number_to_words(high)} {name}" + (f" {number_to_words(rest)}" if rest else "")
    raise AssertionError(n)  # pragma: no cover - every n < 10**12 is handled above


def _year_to_words(n: int) -> str:
    """1100..1999 and 2010..2099 the way years are said: 1999 -> "nineteen ninety nine"."""
    high, low = divmod(n, 100)
    if low == 0:
        return f"{number_to_words(high)} hundred"
    if low < 10:
        return f"{number_to_words(high)} oh {_ONES[low]}"
    return f"{number_to_words(high)} {number_to_words(low)}"


def _integer_words(digits: str) -> str:
    n = int(digits)
    if len(digits) == 4 and (1100 <= n <= 1999 or 2010 <= n <= 2099):
        return _year_to_words(n)
    if len(digits) > 1 and digits.startswith("0"):  # "007": read digit by digit
        return " ".join(_DIGITS[int(d)] for d in digits)
    return number_to_words(n)


def _ordinal_words(n: int) -> str:
    words = number_to_words(n).split()
    last = words[-1]
    if last in _ORDINAL_IRREGULAR:
        words[-1] = _ORDINAL_IRREGULAR[last]
    elif last.endswith("y"):
        words[-1] = last[:-1] + "ieth"
    else:
        words[-1] = last + "th"
    return " ".join(words)


def normalise(text: str) -> str:
    """The form both sides of WER/CER are compared in.

    Unicode NFKC, lower case; numbers with thousands separators (``1,250``) written out,
    decimals read as ``three point one four``, ordinals (``21st``) and ``%`` spelled out,
    other numbers written as words (four-digit numbers in 1100..1999 and 2010..2099 read as
    years, ``1999`` -> ``nineteen ninety nine``); apostrophes inside words removed
    (``don't`` -> ``dont``); every other punctuation mark (hyphens too) made a space;
    whitespace collapsed.
    """
    s = unicodedata.normalize("NFKC", text).lower()
    # "1,250" is a quantity, never a year: written out before the year rule can see it.
    s = _THOUSANDS.sub(lambda m: f" {number_to_words(int(m.group(0).replace(',', '')))} ", s)
    s = _DECIMAL.sub(
        lambda m: (
            f"{_integer_words(m.group(1))} point " + " ".join(_DIGITS[int(d)] for d in m.group(2))
        ),
        s,
    )
    s = _ORDINAL.sub(lambda m: " " + _ordinal_words(int(m.group(1))) + " ", s)
    s = _NUMBER.sub(lambda m: f" {_integer_words(m.group(0))} ", s)
    s = s.replace("%", " percent ").replace("&", " and ")
    s = _APOSTROPHE.sub("", s)
    s = _NOT_WORD.sub(" ", s)
    return " ".join(s.split())
