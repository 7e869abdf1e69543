"""The full screens' base: a screen that shows one workspace.

Its header reads ``SCREEN_TITLE`` and the workspace's name. They are set by a ``Mount``
handler of this class's own (:meth:`WorkspaceScreen._show_workspace`), not by an
``on_mount`` for subclasses to override: Textual calls the ``Mount`` handlers of every class
in the screen's MRO, the subclass's first, so a subclass's ``on_mount`` needs no ``super()``
call and the title is set once, in the same dispatch (before anything is drawn).
"""

from __future__ import annotations

from typing import ClassVar

from textual import events, on
from textual.screen import Screen

from core.workspace import Workspace

__all__ = ["WorkspaceScreen"]


class WorkspaceScreen(Screen[None]):
    """A full screen of ``workspace``, titled ``SCREEN_TITLE`` · the workspace's name."""

    SCREEN_TITLE: ClassVar[str] = "podforge"
    """The header's title while this screen shows."""

    def __init__(self, workspace: Workspace) -> None:
        super().__init__()
        self.workspace = workspace

    @on(events.Mount)
    def _show_workspace(self) -> None:
        self.title = self.SCREEN_TITLE
        self.sub_title = self.workspace.name
