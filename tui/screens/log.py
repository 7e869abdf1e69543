"""A read-only view of a worker's whole log."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import BindingType
from textual.screen import ModalScreen
from textual.widgets import Log

from tui import keymap


class LogScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = keymap.LOG
    DEFAULT_CSS = """
    LogScreen { align: center middle; }
    LogScreen Log { width: 90%; height: 90%; border: round $accent; }
    """

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path

    def compose(self) -> ComposeResult:
        yield Log(id="log", highlight=False)

    def on_mount(self) -> None:
        try:
            text = self.path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            text = f"{self.path}: no log yet"
        self.query_one(Log).write(text)
