"""The home screen: speakers and consent, recordings, dataset progress, runs, episodes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import BindingType
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, Footer, Header, Static

from core.catalog import Catalog
from core.errors import PodforgeError
from core.overview import Overview, VoiceSummary, load_overview
from core.workspace import Workspace
from tui import keymap
from tui.format import duration, minutes
from tui.messages import OverviewFailed, OverviewLoaded
from tui.screens.base import WorkspaceScreen
from tui.styles import STYLES
from tui.widgets.target_bar import TargetBar

REFRESH_SECONDS = 2.0


class HomeScreen(WorkspaceScreen):
    """What is in the workspace, kept current while other processes change it."""

    CSS_PATH = STYLES / "home.tcss"
    BINDINGS: ClassVar[list[BindingType]] = keymap.HOME

    def __init__(self, workspace: Workspace) -> None:
        super().__init__(workspace)
        self._last_error: str | None = None
        self._loads = 0  # loads started
        self._shown_load = 0  # the latest load whose result is shown
        self._shown: dict[str, list[tuple[str, ...]]] = {}

    def compose(self) -> ComposeResult:
        audio = self.workspace.settings.audio
        yield Header()
        with Vertical(id="dataset-box", classes="box") as box:
            box.border_title = "Dataset"
            yield TargetBar(audio.target_minutes_min, audio.target_minutes_max, id="target")
            yield Static("", id="counts")
        with Vertical(id="speakers-box", classes="box") as box:
            box.border_title = "Speakers"
            yield DataTable(id="speakers", cursor_type="row", zebra_stripes=True)
            yield Static("", id="speakers-empty", classes="empty")
        with Vertical(id="recordings-box", classes="box") as box:
            box.border_title = "Recordings"
            yield DataTable(id="recordings", cursor_type="row", zebra_stripes=True)
            yield Static("", id="recordings-empty", classes="empty")
        with Horizontal(id="bottom"):
            with Vertical(id="runs-box", classes="box") as box:
                box.border_title = "Training runs"
                yield DataTable(id="runs", cursor_type="row")
                yield Static("", id="runs-empty", classes="empty")
            with Vertical(id="episodes-box", classes="box") as box:
                box.border_title = "Episodes"
                yield DataTable(id="episodes", cursor_type="row")
                yield Static("", id="episodes-empty", classes="empty")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#speakers", DataTable).add_columns(
            "Speaker",
            "Consent",
            "Recs",
            "Recorded",
            "Pending",
            "Accepted",
            "Rejected",
            "Flagged",
            "Voice",
        )
        self.query_one("#recordings", DataTable).add_columns(
            "Speaker", "File", "Length", "Format", "Rate", "Ch", "Transcript", "State"
        )
        self.query_one("#runs", DataTable).add_columns("Run", "Speaker", "State", "Step")
        self.query_one("#episodes", DataTable).add_columns("Episode", "Script", "Mix")
        # The first read starts on ScreenResume, which follows Mount when the screen is shown.
        self._timer = self.set_interval(REFRESH_SECONDS, self.action_reload)

    def on_screen_suspend(self) -> None:
        self._timer.pause()  # nothing to refresh while another screen covers this one

    def action_review(self) -> None:
        """Open the segment review screen."""
        from tui.screens.review import ReviewScreen

        try:
            screen = ReviewScreen(self.workspace)  # opens the catalog
        except PodforgeError as exc:
            self.notify(f"cannot open review: {exc}", severity="error", timeout=10)
            return
        self.app.push_screen(screen)

    def action_training(self) -> None:
        """Open the training dashboard."""
        from tui.screens.training import TrainingScreen

        self.app.push_screen(TrainingScreen(self.workspace))

    def action_scripts(self) -> None:
        """Open the episode scripts (list and editor)."""
        from tui.screens.script import ScriptListScreen

        self.app.push_screen(ScriptListScreen(self.workspace))

    def on_screen_resume(self) -> None:
        self._timer.resume()
        self.action_reload()  # decisions made in review show at once

    def action_reload(self) -> None:
        """Re-read the workspace in a worker thread (never blocks the screen)."""
        self._loads += 1
        self._load(self._loads)

    @work(thread=True, exclusive=True, group="overview")
    def _load(self, seq: int) -> None:
        try:
            # Re-read workspace.toml too: `podforge speaker add` may run in another terminal.
            workspace = Workspace.open(self.workspace.root)
            with Catalog.open(workspace.catalog_path) as catalog:
                overview = load_overview(workspace, catalog)
        except PodforgeError as exc:
            self.post_message(OverviewFailed(str(exc), seq))
            return
        self.post_message(OverviewLoaded(overview, seq))

    def _is_stale(self, seq: int) -> bool:
        """Whether load ``seq`` started before the one shown (it finished late: its result
        is older); if not, it becomes the one shown. A thread worker cannot be stopped:
        without this, a slow earlier read could show an older workspace, or clear an error
        and so have it notified twice."""
        if seq < self._shown_load:
            return True
        self._shown_load = seq
        return False

    @on(OverviewFailed)
    def _report(self, message: OverviewFailed) -> None:
        """Notify once per distinct problem, not on every refresh."""
        if self._is_stale(message.seq):
            return
        if message.error != self._last_error:
            self._last_error = message.error
            self.notify(message.error, severity="error", timeout=10)

    @on(OverviewLoaded)
    def _show(self, message: OverviewLoaded) -> None:
        if self._is_stale(message.seq):
            return
        ov = message.overview
        self._last_error = None
        self.sub_title = ov.name
        self._fill_speakers(ov)
        self._fill_recordings(ov)
        self._fill_runs(ov)
        self._fill_episodes(ov)
        self.query_one(TargetBar).minutes = ov.accepted_minutes
        c = ov.counts
        self.query_one("#counts", Static).update(
            f"segments {c.total} ({minutes(c.total_seconds)})   pending {c.pending}   "
            f"accepted {c.accepted}   rejected {c.rejected}   flagged by QC {c.flagged}"
        )

    def _fill_speakers(self, ov: Overview) -> None:
        rows = [
            (
                s.name,
                f"✓ {s.consent_by} · {s.consent_at}" if s.consent_by else "✗ none recorded",
                str(s.recordings),
                duration(s.recorded_seconds),
                str(s.counts.pending),
                str(s.counts.accepted),
                str(s.counts.rejected),
                str(s.counts.flagged),
                _voice_text(s.voice),
            )
            for s in ov.speakers
        ]
        hint = (
            "No speakers yet: podforge speaker add WORKSPACE NAME "
            '--consent "..." --granted-by "..."'
            if not rows
            else ""
        )
        self._replace_rows("speakers", rows, hint)

    def _fill_recordings(self, ov: Overview) -> None:
        rows = [
            (
                r.speaker,
                r.original_name,
                duration(r.duration_sec),
                r.format + (f" {r.subtype}" if r.subtype else ""),
                f"{r.sample_rate / 1000:g} kHz",
                str(r.channels),
                "sidecar" if r.transcript else "–",
                r.state if not r.error else f"{r.state}: {r.error}",
            )
            for r in ov.recordings
        ]
        self._replace_rows("recordings", rows, "No recordings imported yet." if not rows else "")

    def _fill_runs(self, ov: Overview) -> None:
        rows = [
            (
                r.id,
                r.speaker,
                r.state,
                f"{r.step}/{r.max_steps}" if r.step is not None and r.max_steps else "–",
            )
            for r in ov.runs
        ]
        self._replace_rows("runs", rows, "No training runs yet." if not rows else "")

    def _fill_episodes(self, ov: Overview) -> None:
        rows = [
            (e.name, e.script or "–", "mixed" if e.mixed else "not rendered") for e in ov.episodes
        ]
        self._replace_rows("episodes", rows, "No scripts or episodes yet." if not rows else "")

    def _replace_rows(self, table_id: str, rows: Sequence[tuple[str, ...]], hint: str) -> None:
        if self._shown.get(table_id) == rows:
            return  # unchanged: no rebuild, no flicker, the cursor stays where it is
        self._shown[table_id] = list(rows)
        table = self.query_one(f"#{table_id}", DataTable)
        cursor = table.cursor_row
        table.clear()
        for row in rows:
            table.add_row(*row)
        if rows:
            table.move_cursor(row=min(cursor, len(rows) - 1))
        table.display = bool(rows)
        empty = self.query_one(f"#{table_id}-empty", Static)
        empty.update(hint)
        empty.display = bool(hint)


def _voice_text(voice: VoiceSummary | None) -> str:
    """``step 800 · eval ✓ WER 3.1% sim 0.82`` / ``step 800 · eval ✗ wer, cer`` / ``–``."""
    if voice is None:
        return "–"
    text = f"step {voice.step}" if voice.step is not None else "trained"
    if voice.eval_passed is None:
        return text + " · not evaluated"
    if voice.eval_passed:
        wer = f" WER {voice.wer:.1%}" if voice.wer is not None else ""
        sim = f" sim {voice.similarity:.2f}" if voice.similarity is not None else ""
        return f"{text} · eval ✓{wer}{sim}"
    return f"{text} · eval ✗ {', '.join(voice.failed_gates)}"
