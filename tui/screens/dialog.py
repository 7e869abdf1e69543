"""The modal dialogs' base: a titled box with a line of text, then what the dialog asks with.

A dialog states only what differs: its result type, its keys, its title and text (given to
``Dialog.__init__``) and the widgets below the text (:meth:`Dialog.compose_body`). The box's
look (``.dialog``, ``.dialog-text``, ``.dialog.report``) is in ``script.tcss``::

    class ScriptName(Dialog[str | None]):
        BINDINGS: ClassVar[list[BindingType]] = keymap.SCRIPT_NAME

        def __init__(self) -> None:
            super().__init__("New script", "Name (letters, digits, - and _):")

        def compose_body(self) -> ComposeResult:
            yield Input(id="script-name")
"""

from __future__ import annotations

from typing import ClassVar, TypeVar

from rich.console import RenderableType
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Static

from tui.styles import STYLES

__all__ = ["Dialog"]

ResultT = TypeVar("ResultT")


class Dialog(ModalScreen[ResultT]):
    """A modal screen that dismisses with a ``ResultT``, drawn as a dialog box: ``title`` on
    its border, ``text`` as its first line, then :meth:`compose_body`."""

    CSS_PATH = STYLES / "script.tcss"
    BOX_CLASSES: ClassVar[str] = "dialog"
    """The box's classes: ``"dialog report"`` makes it wider, for text to read."""

    def __init__(self, title: str, text: RenderableType) -> None:
        super().__init__()
        self.dialog_title = title
        self.dialog_text = text

    def compose(self) -> ComposeResult:
        with Vertical(classes=self.BOX_CLASSES) as box:
            box.border_title = self.dialog_title
            yield Static(self.dialog_text, classes="dialog-text")
            yield from self.compose_body()

    def compose_body(self) -> ComposeResult:
        """The widgets below the text (none: the text is all there is to read)."""
        return ()
