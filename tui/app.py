"""The podforge Textual app: opens a workspace on the home screen.

Later screens (review, training dashboard, script editor) are pushed from here. The app
owns the review decisions' journal (:mod:`core.journal`): the review screen journals every
decision before writing it to the catalog, and the app retries the decisions a locked
catalog could not take in a background worker, replays the ones a previous run left, and
warns before quitting with decisions still pending.
"""

from __future__ import annotations

import time
from typing import ClassVar

from textual import work
from textual.app import App
from textual.binding import BindingType
from textual.screen import Screen

from core.catalog import Catalog
from core.errors import CatalogBusyError, PodforgeError
from core.journal import DecisionJournal, Outcome
from core.workspace import Workspace
from tui import keymap
from tui.messages import DecisionsWritten
from tui.screens.home import HomeScreen
from tui.styles import STYLES

UI_BUSY_TIMEOUT_S = 0.1
"""How long a key handler waits for the catalog's write lock before leaving the decision
pending in the journal."""
RETRY_BUSY_TIMEOUT_S = 1.0
"""How long the background retry waits for the write lock, per attempt (off the UI thread)."""
RETRY_INTERVAL_S = 1.0
"""How often pending decisions are retried."""
QUIT_CONFIRM_S = 8.0
"""With decisions pending, a second ``q`` within this many seconds quits."""


class PodforgeApp(App[None]):
    """Keyboard-driven front end for one workspace."""

    TITLE = "podforge"
    CSS_PATH = STYLES / "app.tcss"
    BINDINGS: ClassVar[list[BindingType]] = keymap.APP

    def __init__(self, workspace: Workspace) -> None:
        super().__init__()
        self.workspace = workspace
        self.decisions: DecisionJournal | None = None
        """The review decisions' journal (``None`` when it cannot be written)."""
        self.retrying = False
        """A background worker is writing pending decisions now."""
        self._quit_asked_at: float | None = None
        self._last_error: str | None = None

    def on_mount(self) -> None:
        try:
            self.set_keymap(keymap.load_user_keymap())
        except PodforgeError as exc:
            self.notify(f"{exc} (the default keys are used)", severity="error", timeout=15)
        try:
            self.decisions = DecisionJournal.open(self.workspace.root)
        except PodforgeError as exc:
            self.notify(f"review decisions cannot be kept: {exc}", severity="error", timeout=15)
        if self.decisions is not None and self.decisions.pending:
            count = len(self.decisions.pending)
            self.notify(f"writing {_decisions(count)} kept from the last session", timeout=5)
            self.retry_pending()
        self.set_interval(RETRY_INTERVAL_S, self.retry_pending)
        self.push_screen(self.initial_screen())

    def on_unmount(self) -> None:
        if self.decisions is not None:
            # Waits for a retry in flight; pending decisions stay for the next start.
            self.decisions.close()

    def initial_screen(self) -> Screen[None]:
        """The screen the app opens on (the home screen)."""
        return HomeScreen(self.workspace)

    def action_toggle_keys(self) -> None:
        """Show or hide the panel listing every key of the current screen."""
        if self.screen.query("HelpPanel"):
            self.action_hide_help_panel()
        else:
            self.action_show_help_panel()

    # -- the journal -----------------------------------------------------------------
    @property
    def pending_decisions(self) -> int:
        """Decisions in the journal not yet written to the catalog."""
        return len(self.decisions.pending) if self.decisions is not None else 0

    async def action_quit(self) -> None:
        """Quit; with decisions pending, say so first and quit on a second ``q``."""
        count = self.pending_decisions
        asked = self._quit_asked_at
        if count and (asked is None or time.monotonic() - asked > QUIT_CONFIRM_S):
            self._quit_asked_at = time.monotonic()
            where = self.decisions.path.relative_to(self.workspace.root) if self.decisions else ""
            self.notify(
                f"{_decisions(count)} not written to the catalog yet (another process holds "
                f"its lock); they are kept in {where} and written at the next start. "
                "Press q again to quit.",
                title="pending decisions",
                severity="warning",
                timeout=QUIT_CONFIRM_S,
            )
            return
        await super().action_quit()

    def retry_pending(self) -> None:
        """Write pending decisions in a worker thread (never blocks the screen)."""
        if self.decisions is None or self.retrying or not self.decisions.pending:
            return
        self.retrying = True
        self._retry(self.decisions)

    @work(thread=True, group="journal")
    def _retry(self, journal: DecisionJournal) -> None:
        try:  # this thread's own connection, closed before the worker ends
            with Catalog.open(
                self.workspace.catalog_path, busy_timeout=RETRY_BUSY_TIMEOUT_S
            ) as cat:
                outcome = journal.apply(cat, busy_timeout=RETRY_BUSY_TIMEOUT_S)
        except CatalogBusyError:
            outcome = Outcome(locked=True)
        except (PodforgeError, OSError) as exc:
            outcome = Outcome(error=str(exc))
        self.post_message(DecisionsWritten(outcome or Outcome()))  # never blocks this thread

    def on_decisions_written(self, message: DecisionsWritten) -> None:
        outcome = message.outcome
        self.retrying = False
        self.report_outcome(outcome)
        for screen in self.screen_stack:
            screen.post_message(DecisionsWritten(outcome))

    def report_outcome(self, outcome: Outcome) -> None:
        """Notify what the user must know: a catalog failure (once), dropped decisions."""
        if outcome.error is not None:
            if outcome.error != self._last_error:
                self._last_error = outcome.error
                self.notify(
                    f"{_decisions(self.pending_decisions)} kept in the journal, not yet in the "
                    f"catalog: {outcome.error}",
                    severity="error",
                    timeout=15,
                )
        elif outcome.applied:
            self._last_error = None
        for decision, reason in outcome.dropped:
            self.notify(
                f"a {decision.op} decision was dropped: {reason} (see .journal/dropped.jsonl)",
                severity="warning",
                timeout=10,
            )


def _decisions(count: int) -> str:
    return f"{count} decision" + ("" if count == 1 else "s")
