"""Ask how a word should be said: the script editor's ``R`` on a lint hint.

The answer goes into ``pronunciations.toml`` (:func:`core.episodes.lint.add_pronunciation`)
and the editor auditions the word with it.
"""

from __future__ import annotations

from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import BindingType
from textual.widgets import Input

from tui import keymap
from tui.screens.dialog import Dialog

__all__ = ["RespellScreen"]


class RespellScreen(Dialog[str | None]):
    """Dismisses with the respelling of ``word``, or ``None``."""

    BINDINGS: ClassVar[list[BindingType]] = keymap.RESPELL

    def __init__(self, word: str, current: str | None = None) -> None:
        super().__init__(
            "Pronunciation", f"Say {word!r} as (written the way it sounds, e.g. “nay sah”):"
        )
        self.word = word
        self.current = current

    def compose_body(self) -> ComposeResult:
        yield Input(value=self.current or self.word, id="respelling")

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip() or None)
