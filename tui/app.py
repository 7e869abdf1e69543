"""The podforge Textual app: opens a workspace on the home screen.

Later screens (review, training dashboard, script editor) are pushed from here.
"""

from __future__ import annotations

from typing import ClassVar

from textual.app import App
from textual.binding import Binding, BindingType
from textual.screen import Screen

from core.workspace import Workspace
from tui.screens.home import HomeScreen
from tui.styles import STYLES


class PodforgeApp(App[None]):
    """Keyboard-driven front end for one workspace."""

    TITLE = "podforge"
    CSS_PATH = STYLES / "app.tcss"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit", "Quit", id="app.quit"),
        Binding("question_mark", "toggle_keys", "Keys", id="app.keys"),
    ]

    def __init__(self, workspace: Workspace) -> None:
        super().__init__()
        self.workspace = workspace

    def on_mount(self) -> None:
        self.push_screen(self.initial_screen())

    def initial_screen(self) -> Screen[None]:
        """The screen the app opens on (the home screen)."""
        return HomeScreen(self.workspace)

    def action_toggle_keys(self) -> None:
        """Show or hide the panel listing every key of the current screen."""
        if self.screen.query("HelpPanel"):
            self.action_hide_help_panel()
        else:
            self.action_show_help_panel()
