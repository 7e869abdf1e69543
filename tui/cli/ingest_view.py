"""``podforge ingest`` on a terminal: rich progress bars per file and overall, then a summary."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeRemainingColumn
from rich.table import Table

from core.dataset.ingest import FileResult, IngestOptions, IngestProgress, IngestSummary, ingest
from core.workspace import Workspace
from tui.cli.cluster import RunPlace, session
from tui.format import duration

_STAGES = {
    "decode": "decoding",
    "segment": "segmenting",
    "transcribe": "transcribing",
    "speaker": "speaker check",
}


def run_ingest(
    workspace: Path,
    paths: tuple[Path, ...],
    speaker: str,
    asr: bool,
    speaker_filter: bool,
    place: RunPlace | None = None,
) -> int:
    """Run an ingest with progress (on Ray when ``place`` says so); returns the exit status
    (1 when any file failed)."""
    ws = Workspace.open(workspace)
    console = Console(stderr=True)
    options = IngestOptions(transcribe=asr, speaker_filter=speaker_filter)
    with (
        session(place or RunPlace(None, None)) as ray,
        Progress(
            TextColumn("{task.description:<14}"),
            TextColumn("{task.fields[file]}", style="cyan"),
            BarColumn(),
            TextColumn("{task.percentage:>3.0f}%"),
            TimeRemainingColumn(),
            console=console,
            transient=True,
        ) as bars,
    ):
        overall: TaskID = bars.add_task("files", total=None, file="overall")
        current: TaskID = bars.add_task("starting", total=None, file="")

        def report(p: IngestProgress) -> None:
            if p.stage == "done":
                return
            if p.stage == "files":
                bars.update(overall, completed=p.done, total=p.total or None)
                return
            bars.update(
                current,
                description=_STAGES.get(p.stage, p.stage),
                file=p.file,
                completed=p.done,
                total=p.total or None,
            )

        if ray is None:
            summary = ingest(ws, paths, speaker, options, report)
        else:
            from core.cluster.analysis import ray_analysers
            from core.cluster.ingest import ray_cutter

            summary = ingest(ws, paths, speaker, options, report, cutter=ray_cutter(ray),
                             analysers=ray_analysers(ray))  # fmt: skip
    _print_summary(console, summary)
    return 1 if summary.failed else 0


def _result(f: FileResult) -> str:
    """The "result" cell: the error, else what happened with any note (truncated, owner)."""
    if f.error:
        return f.error
    what = "already ingested" if f.skipped else "ok"
    if f.note and f.note.startswith("already ingested"):
        return f.note
    return f"{what}; {f.note}" if f.note else what


def _print_summary(console: Console, summary: IngestSummary) -> None:
    table = Table(title=f"ingest for {summary.speaker}", title_justify="left", show_edge=False)
    for column in ("file", "length", "segments", "flagged", "result"):
        table.add_column(
            column, justify="right" if column in ("length", "segments", "flagged") else "left"
        )
    for f in summary.files:
        table.add_row(
            escape(Path(f.source).name),
            duration(f.duration_sec),
            str(f.segments),
            str(f.flagged),
            escape(_result(f)),
            style="red" if f.error else ("yellow" if f.note else None),
        )
    console.print(table)
    for f in summary.files:
        if f.segmentation:
            console.print(f"{escape(Path(f.source).name)}: {escape(f.segmentation)}")
    parts = [f"{len(summary.files) - len(summary.failed)} file(s) ok"]
    if summary.failed:
        parts.append(f"{len(summary.failed)} failed")
    truncated = sum(1 for f in summary.files if f.truncated)
    if truncated:
        parts.append(f"{truncated} truncated")
    if summary.transcribed:
        parts.append(f"{summary.transcribed} transcribed")
    if summary.speaker_checked:
        parts.append(f"{summary.speaker_checked} speaker-checked")
    parts.append(f"{summary.seconds:.1f} s")
    console.print(", ".join(parts))
    for stage in summary.skipped_stages:
        console.print(f"[yellow]skipped:[/] {escape(stage.line())}", highlight=False)
    for warning in summary.warnings:
        console.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False)
