"""Ask how a word should be said: the script editor's ``R`` on a lint hint.

The answer goes into ``pronunciations.toml`` (:func:`core.episodes.lint.add_pronunciation`)
and the editor auditions the word with it.
"""

from __future__ import annotations

from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Static

from tui import keymap
from tui.styles import STYLES

__all__ = ["RespellScreen"]


class RespellScreen(ModalScreen[str | None]):
    """Dismisses with the respelling of ``word``, or ``None``."""

    CSS_PATH = STYLES / "script.tcss"
    BINDINGS: ClassVar[list[BindingType]] = keymap.RESPELL

    def __init__(self, word: str, current: str | None = None) -> None:
        super().__init__()
        self.word = word
        self.current = current

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog") as box:
            box.border_title = "Pronunciation"
            yield Static(
                f"Say {self.word!r} as (written the way it sounds, e.g. “nay sah”):",
                classes="dialog-text",
            )
            yield Input(value=self.current or self.word, id="respelling")

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip() or None)
