"""The training dashboard: runs, and the selected run live (loss curve, speed, memory, log).

It reads the run folders only (``status.json``, ``metrics.jsonl``, ``worker.log``), so it
attaches to workers that outlive the app: quit, reopen, and the running worker is there.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import BindingType
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, Footer, Header, Static
from textual_plotext import PlotextPlot

from core.errors import PodforgeError
from core.training.progress import RunView, curve, memory_line
from core.training.protocol import LOG_NAME, METRICS_NAME, MetricsTail, Status
from core.workspace import Workspace
from tui import keymap
from tui.format import duration
from tui.messages import Notice, RunsRefreshed, RunStarted
from tui.screens.base import WorkspaceScreen
from tui.styles import STYLES

REFRESH_SECONDS = 1.0
LOG_LINES = 8


class TrainingScreen(WorkspaceScreen):
    """Start, watch, stop and resume training runs."""

    CSS_PATH = STYLES / "training.tcss"
    BINDINGS: ClassVar[list[BindingType]] = keymap.TRAINING
    SCREEN_TITLE = "podforge — training"

    def __init__(self, workspace: Workspace) -> None:
        super().__init__(workspace)
        self.views: dict[str, RunView] = {}
        self.tails: dict[str, MetricsTail] = {}
        self.statuses: dict[str, Status] = {}
        self.selected: str | None = None
        self._shown_rows: list[tuple[str, ...]] = []

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal():
            with Vertical(id="runs-pane"):
                yield DataTable(id="runs", cursor_type="row", zebra_stripes=True)
                yield Static("", id="runs-empty", classes="empty")
            with Vertical(id="run-pane"):
                yield Static("", id="run-state")
                yield PlotextPlot(id="loss-plot")
                yield PlotextPlot(id="quality-plot")
                yield Static("", id="run-stats")
                yield Static("", id="run-log")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#runs", DataTable)
        table.add_columns("Run", "Speaker", "State", "Step", "Loss")
        self.action_reload()
        self._timer = self.set_interval(REFRESH_SECONDS, self.action_reload)

    def action_reload(self) -> None:
        self._read()

    @work(thread=True, exclusive=True, group="training-read")
    def _read(self) -> None:
        from core.training.runs import list_runs

        runs = list_runs(self.workspace)
        fresh: dict[str, list[dict]] = {}  # type: ignore[type-arg]
        for run_id, _ in runs:
            tail = self.tails.setdefault(
                run_id, MetricsTail(self.workspace.runs_dir / run_id / METRICS_NAME)
            )
            fresh[run_id] = tail.read_new()
        self.post_message(RunsRefreshed(runs, fresh))

    @on(RunsRefreshed)
    def _refreshed(self, message: RunsRefreshed) -> None:
        for run_id, events in message.fresh.items():
            self.views.setdefault(run_id, RunView()).add(events)
        self.statuses = dict(message.runs)
        table = self.query_one("#runs", DataTable)
        selected = self.selected
        rows: list[tuple[str, ...]] = []
        for run_id, status in message.runs:
            view = self.views.get(run_id, RunView())
            loss = f"{view.losses[-1]:.4f}" if view.losses else "–"
            rows.append(
                (run_id, status.speaker, status.state, f"{status.step}/{status.max_steps}", loss)
            )
        if rows != self._shown_rows:  # unchanged: no rebuild, no flicker
            self._shown_rows = rows
            table.clear()
            for run_id, speaker, _state, step, loss in rows:
                status = self.statuses[run_id]
                table.add_row(run_id, speaker, _state_text(status), step, loss, key=run_id)
        self.query_one("#runs-empty", Static).update(
            "" if message.runs else "No runs yet. Press t to train a voice."
        )
        if message.runs:
            ids = [r for r, _ in message.runs]
            self.selected = selected if selected in ids else ids[0]
            table.move_cursor(row=ids.index(self.selected))
        else:
            self.selected = None
        self._show_selected()

    @on(DataTable.RowHighlighted, "#runs")
    def _row(self, event: DataTable.RowHighlighted) -> None:
        if event.row_key.value and event.row_key.value != self.selected:
            self.selected = str(event.row_key.value)
            self._show_selected()

    def _show_selected(self) -> None:
        state, stats, log = (
            self.query_one(f"#{n}", Static) for n in ("run-state", "run-stats", "run-log")
        )
        plot = self.query_one("#loss-plot", PlotextPlot)
        quality = self.query_one("#quality-plot", PlotextPlot)
        if self.selected is None or self.selected not in self.statuses:
            state.update("")
            stats.update("")
            log.update("")
            plot.plt.clear_data()
            plot.refresh()
            quality.display = False
            return
        status = self.statuses[self.selected]
        view = self.views.get(self.selected, RunView())
        line = Text.assemble((f"{self.selected}  ", "bold"), _state_text(status))
        if status.error:
            line.append(f"\n{status.error}", "red")
        state.update(line)
        self._plot(plot, view)
        self._plot_quality(quality, view)
        last = view.last
        eta = view.eta_seconds(status.max_steps) if status.live else None
        parts = [
            f"step {status.step}/{status.max_steps}",
            f"lr {last['lr']:.2e}" if isinstance(last.get("lr"), int | float) else "lr –",
            f"{last['samples_per_s']:.1f} samples/s"
            if isinstance(last.get("samples_per_s"), int | float)
            else "– samples/s",
            f"ETA {duration(eta)}" if eta is not None else "ETA –",
        ]
        if view.quality_steps:
            parts.append(f"WER {view.wers[-1]:.0%} · sim {view.similarities[-1]:.2f}")
        stats.update("   ".join(parts) + "\n" + memory_line(last))
        log.update(Text(_log_tail(self.workspace.runs_dir / self.selected / LOG_NAME), "dim"))

    @staticmethod
    def _plot(plot: PlotextPlot, view: RunView) -> None:
        plt = plot.plt
        plt.clear_data()
        plt.clear_figure()
        plt.title("loss")
        if view.steps:
            xs, ys = curve(view.steps, view.losses)
            plt.plot(xs, ys, label="train", marker="braille")
        if view.eval_steps:
            xs, ys = curve(view.eval_steps, view.eval_losses)
            plt.plot(xs, ys, label="eval", marker="braille")
        plot.refresh()

    @staticmethod
    def _plot_quality(plot: PlotextPlot, view: RunView) -> None:
        """WER and speaker similarity of the quality evals (shown only when there are some)."""
        plot.display = bool(view.quality_steps)
        if not view.quality_steps:
            return
        plt = plot.plt
        plt.clear_data()
        plt.clear_figure()
        plt.title("quality (eval)")
        plt.ylim(0, 1)
        plt.plot(
            view.quality_steps, [min(w, 1.0) for w in view.wers], label="WER", marker="braille"
        )
        plt.plot(view.quality_steps, view.similarities, label="similarity", marker="braille")
        plot.refresh()

    # -- actions ---------------------------------------------------------------------
    def action_new_run(self) -> None:
        from tui.screens.new_run import NewRunScreen

        speakers = sorted(self.workspace.settings.speakers)
        self.app.push_screen(
            NewRunScreen(speakers, self.workspace.settings.training), self._start_run
        )

    def _start_run(self, choice: dict[str, object] | None) -> None:
        if choice is None:
            return
        self.notify(f"checking {choice['speaker']}'s data, model and device …")
        self._launch(
            str(choice["speaker"]),
            int(choice["steps"]),  # type: ignore[call-overload]
            int(choice["rank"]),  # type: ignore[call-overload]
            float(choice["lr"]),  # type: ignore[arg-type]
        )

    @work(thread=True, exclusive=True, group="launch")
    def _launch(self, speaker: str, steps: int, rank: int, lr: float) -> None:
        """The same pre-flight checks as `podforge train`, then a detached worker (in a
        thread: the checks may import torch)."""
        from core.training.runs import create_run, launch_worker, preflight, run_settings

        ws = self.workspace
        try:
            training = run_settings(ws, steps=steps, rank=rank, learning_rate=lr)
            warnings = preflight(ws, speaker, training, ws.settings.models.tts,
                                 ws.settings.models.device)  # fmt: skip
            run_dir = create_run(ws, speaker, steps=steps, rank=rank, learning_rate=lr)
            pid = launch_worker(ws, run_dir)
        except PodforgeError as exc:
            self.post_message(Notice(str(exc), "error", 10))
            return
        for warning in warnings:
            self.post_message(Notice(warning, "warning", 10))
        self.post_message(RunStarted(run_dir.name, pid))

    @on(Notice)
    def _notice(self, message: Notice) -> None:
        self.notify(message.text, severity=message.severity, timeout=message.timeout)

    @on(RunStarted)
    def _started(self, message: RunStarted) -> None:
        self.selected = message.run_id
        self.notify(f"started {message.run_id} (worker pid {message.pid})")
        self.action_reload()

    def action_stop(self) -> None:
        from core.training.runs import stop_run

        if self.selected is None:
            return
        try:
            stop_run(self.workspace.runs_dir / self.selected)
        except PodforgeError as exc:
            self.notify(str(exc), severity="warning")
            return
        self.notify(f"stopping {self.selected}: saving a checkpoint")

    def action_resume(self) -> None:
        from core.training.runs import launch_worker, resume_run

        if self.selected is None:
            return
        try:
            run_dir = resume_run(self.workspace, self.selected)
            launch_worker(self.workspace, run_dir)
        except PodforgeError as exc:
            self.notify(str(exc), severity="warning", timeout=10)
            return
        self.notify(f"resuming {self.selected} from its newest checkpoint")

    def action_log(self) -> None:
        from tui.screens.log import LogScreen

        if self.selected is not None:
            self.app.push_screen(LogScreen(self.workspace.runs_dir / self.selected / LOG_NAME))

    def action_export(self) -> None:
        if self.selected is not None:
            self._export(self.selected)

    @work(thread=True, exclusive=True, group="export")
    def _export(self, run_id: str) -> None:
        from core.training.export import export_adapter

        try:
            voice = export_adapter(self.workspace, self.workspace.runs_dir / run_id)
        except PodforgeError as exc:
            self.post_message(Notice(str(exc), "error", 10))
            return
        self.post_message(Notice(f"voice exported to {voice}"))


def _state_text(status: Status) -> Text:
    style = {"running": "green", "starting": "yellow", "stopping": "yellow",
             "finished": "bold green", "failed": "bold red", "stopped": "cyan"}  # fmt: skip
    return Text(status.state, style.get(status.state, ""))


def _log_tail(path: Path, lines: int = LOG_LINES) -> str:
    try:
        with path.open("rb") as fh:
            fh.seek(0, 2)
            fh.seek(max(0, fh.tell() - 8192))
            text = fh.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])
