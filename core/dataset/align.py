"""Align plain-text transcripts (``.txt`` sidecars) to segments through their ASR words.

A ``.txt`` sidecar has the right words but no times. Each segment is transcribed by ASR;
the concatenated ASR words are aligned to the reference words (``difflib``, on
normalised words) and every segment receives the reference words that fall between its
boundaries. ASR mistakes inside a segment do not matter; only the boundaries are mapped.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence

_NON_WORD = re.compile(r"[^\w']+")


def normalise_word(word: str) -> str:
    """Lower-case, punctuation stripped (apostrophes kept)."""
    return _NON_WORD.sub("", word.lower())


def align_to_reference(hypotheses: Sequence[str], reference: str) -> list[str]:
    """For each hypothesis (in order), the span of ``reference`` it corresponds to."""
    ref_words = reference.split()
    ref_norm = [normalise_word(w) for w in ref_words]
    hyp_norm: list[str] = []
    bounds = [0]
    for hyp in hypotheses:
        hyp_norm += [normalise_word(w) for w in hyp.split()]
        bounds.append(len(hyp_norm))
    opcodes = difflib.SequenceMatcher(a=hyp_norm, b=ref_norm, autojunk=False).get_opcodes()

    def to_ref(i: int) -> int:
        """The reference position of hypothesis position ``i`` (linear inside an opcode)."""
        for _tag, i1, i2, j1, j2 in opcodes:
            if i1 == i2 == i:  # reference words the ASR missed go to the later segment
                return j1
            if i1 <= i < i2:
                return j1 + round((i - i1) * (j2 - j1) / (i2 - i1))
        return len(ref_words)

    cuts = [0] + [to_ref(b) for b in bounds[1:-1]] + [len(ref_words)]
    for k in range(1, len(cuts)):
        cuts[k] = max(cuts[k], cuts[k - 1])
    return [" ".join(ref_words[cuts[k] : cuts[k + 1]]) for k in range(len(hypotheses))]
