"""Aligning a .txt transcript to segments through imperfect ASR words."""

from __future__ import annotations

from core.dataset.align import align_to_reference, normalise_word

REFERENCE = (
    "Welcome back to the show. Today we talk about voices, and how a voice becomes data. "
    "Nothing is thrown away, so you can always change your mind."
)


def test_exact_hypotheses_get_their_reference_words() -> None:
    hyps = [
        "welcome back to the show",
        "today we talk about voices and how a voice becomes data",
        "nothing is thrown away so you can always change your mind",
    ]
    assert align_to_reference(hyps, REFERENCE) == [
        "Welcome back to the show.",
        "Today we talk about voices, and how a voice becomes data.",
        "Nothing is thrown away, so you can always change your mind.",
    ]


def test_asr_errors_inside_segments_do_not_move_the_boundaries() -> None:
    hyps = [
        "welcome bag to the snow",
        "today we walk about voices and how the voice becomes date",
        "nothing is thrown a way so you can always change your mine",
    ]
    out = align_to_reference(hyps, REFERENCE)
    assert out[0] == "Welcome back to the show."
    assert out[1].startswith("Today") and out[1].endswith("data.")
    assert out[2].startswith("Nothing") and out[2].endswith("mind.")


def test_every_reference_word_is_used_once_in_order() -> None:
    hyps = ["garbage words", "", "more garbage here entirely unrelated"]
    out = align_to_reference(hyps, REFERENCE)
    assert len(out) == 3
    assert " ".join(w for w in out if w).split() == REFERENCE.split()


def test_normalise_word() -> None:
    assert normalise_word("Voices,") == "voices"
    assert normalise_word("don't!") == "don't"
