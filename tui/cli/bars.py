"""One rich progress line on stderr for a long command (``render``, ``eval``).

It appears only once work starts, so a command that fails early prints its one error line
and nothing else, and it is gone (transient) when the work ends, even on an error. Import
it inside a command: it imports rich.
"""

from __future__ import annotations

from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn


class StderrBars:
    """``label``, a bar, done/total and what is being done; a context manager."""

    def __init__(self, label: str) -> None:
        self.console = Console(stderr=True)
        self._bars = Progress(
            TextColumn(label), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.description}"), console=self.console, transient=True,
        )  # fmt: skip
        self._task = self._bars.add_task("", total=None)

    def start(self) -> None:
        """Show the line (once; later calls do nothing)."""
        if not self._bars.live.is_started:
            self._bars.start()

    def update(self, done: int, total: int | None, what: str) -> None:
        """A progress callback: show the line if hidden, then ``done`` of ``total``."""
        self.start()
        self._bars.update(self._task, completed=done, total=total, description=what)

    def __enter__(self) -> StderrBars:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._bars.live.is_started:
            self._bars.stop()
