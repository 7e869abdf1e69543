"""The ``podforge`` command line.

``podforge DIR`` opens the app on a workspace; subcommands do the same work for
scripts. Every user mistake ends as one ``podforge: error: ...`` line and exit
status 1, never a traceback. Heavy modules are imported inside the commands.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import datetime
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import click

from core.errors import PodforgeError

F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_DEMO_DIR = Path("workspaces") / "demo"


class _OpenByDefault(click.Group):
    """``podforge DIR`` means ``podforge open DIR``."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and not args[0].startswith("-") and args[0] not in self.commands:
            args = ["open", *args]
        return super().parse_args(ctx, args)


def _user_errors(func: F) -> F:
    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except PodforgeError as exc:
            click.echo(f"podforge: error: {exc}", err=True)
            sys.exit(1)

    return wrapper  # type: ignore[return-value]


@click.group(cls=_OpenByDefault, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="podforge")
def main() -> None:
    """Clone your own voice and produce podcast episodes with it.

    \b
    podforge demo              build the demo workspace and open it
    podforge DIR               open a workspace in the app
    podforge init DIR          create an empty workspace
    """


@main.command("open")
@click.argument("directory", type=click.Path(path_type=Path), default=Path("."))
@_user_errors
def open_cmd(directory: Path) -> None:
    """Open the workspace in DIRECTORY (default: the one holding the current folder)."""
    from core.workspace import Workspace, find_workspace

    _run_app(Workspace.open(find_workspace(directory) or directory))


@main.command()
@click.argument("directory", type=click.Path(path_type=Path))
@click.option("--name", help="Workspace name (default: the folder's name).")
@_user_errors
def init(directory: Path, name: str | None) -> None:
    """Create an empty workspace in DIRECTORY."""
    from core.workspace import Workspace

    ws = Workspace.create(directory, name=name)
    click.echo(f"created workspace {ws.name!r} in {ws.root}")
    click.echo(
        f'next: podforge speaker add {directory} NAME --consent "who agreed, how, when" '
        '--granted-by "their name"'
    )


@main.command()
@click.argument("directory", type=click.Path(path_type=Path), default=DEFAULT_DEMO_DIR)
@click.option("--no-open", is_flag=True, help="Build the workspace but do not open the app.")
@click.option("--seed", type=int, default=7, show_default=True, help="Seed of the generated audio.")
@click.option(
    "--seconds",
    type=click.FloatRange(10.0, 3600.0),
    default=150.0,
    show_default=True,
    help="Length of each generated recording (four recordings in all).",
)
@_user_errors
def demo(directory: Path, no_open: bool, seed: int, seconds: float) -> None:
    """Build the demo workspace in DIRECTORY if missing, then open it.

    Two consented speakers with generated long recordings (draft voice, room noise,
    planted defects), a music bed and an episode script; no download, no GPU.
    """
    from core.demo.workspace import unfinished_demo
    from core.workspace import CONFIG_NAME, Workspace

    if not (directory / CONFIG_NAME).exists() or unfinished_demo(directory):
        from rich.progress import Progress

        from core.demo.workspace import build_demo

        with Progress(transient=True) as progress:
            task = progress.add_task("building demo workspace", total=None)

            def report(done: int, total: int, what: str) -> None:
                progress.update(task, completed=done, total=total, description=what)

            ws = build_demo(directory, seed=seed, seconds_per_recording=seconds, progress=report)
        click.echo(f"built demo workspace in {ws.root}")
    ws = Workspace.open(directory)
    if no_open:
        click.echo(f"open it with: podforge open {directory}")
        return
    _run_app(ws)


@main.group()
def speaker() -> None:
    """Add and list speakers and their consent records."""


@speaker.command("add")
@click.argument("workspace", type=click.Path(path_type=Path))
@click.argument("name")
@click.option(
    "--consent",
    "statement",
    required=True,
    help="The consent statement: who agreed to what, how and when it was given.",
)
@click.option(
    "--granted-by", help="Who granted consent, as they gave their name (required: never guessed)."
)
@click.option("--scope", help="What the consent covers (default: training and synthesis here).")
@click.option("--evidence", default="", help="Where the evidence is kept (a file, a form id).")
@click.option("--display-name", default="", help="Human-readable name (default: NAME).")
@click.option(
    "--date",
    "granted_at",
    type=click.DateTime(formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S"]),
    help="When consent was granted (default: now).",
)
@_user_errors
def speaker_add(
    workspace: Path,
    name: str,
    statement: str,
    granted_by: str | None,
    scope: str | None,
    evidence: str,
    display_name: str,
    granted_at: datetime | None,
) -> None:
    """Add speaker NAME to WORKSPACE with a consent record (or update its consent).

    The record holds exactly what is given: the statement (--consent) and who granted it
    (--granted-by) are required and never filled in.
    """
    from datetime import UTC

    from core.errors import SpeakerError
    from core.settings import new_consent, validate_speaker_name
    from core.workspace import Workspace

    ws = Workspace.open(workspace)
    validate_speaker_name(name)
    if granted_by is None:
        raise SpeakerError(
            f'speaker {name!r}: say who granted consent with --granted-by "<their name>" '
            "(podforge records only what you give)"
        )
    shown = display_name or (
        ws.settings.speakers[name].display_name
        if name in ws.settings.speakers
        else name.capitalize()
    )
    try:
        consent = new_consent(
            granted_by=granted_by,
            statement=statement,
            scope=scope,
            evidence=evidence,
            granted_at=granted_at.replace(tzinfo=UTC) if granted_at else None,
        )
    except SpeakerError as exc:
        raise SpeakerError(f"speaker {name!r}: {exc}") from None
    ws.add_speaker(name, consent, display_name=shown)
    click.echo(
        f"speaker {name!r}: consent recorded "
        f"(granted by {consent.granted_by}, {consent.granted_at:%Y-%m-%d})"
    )
    for use in ("training", "synthesis"):
        if not consent.covers(use):
            click.echo(
                f"note: the scope {consent.scope!r} does not cover {use}: podforge will "
                f"refuse {use} with {name}'s voice"
            )


@speaker.command("list")
@click.argument("workspace", type=click.Path(path_type=Path))
@_user_errors
def speaker_list(workspace: Path) -> None:
    """List WORKSPACE's speakers and their consent."""
    from core.workspace import Workspace

    ws = Workspace.open(workspace)
    if not ws.settings.speakers:
        click.echo("no speakers yet")
    for name, sp in sorted(ws.settings.speakers.items()):
        if sp.consent:
            c = sp.consent
            line = f"consent: {c.granted_by}, {c.granted_at:%Y-%m-%d}, {c.scope}"
        else:
            line = "NO CONSENT RECORD (cannot be trained or synthesised)"
        click.echo(f"{name:<16} {sp.display_name:<20} {line}")


@main.command()
@click.argument("workspace", type=click.Path(path_type=Path))
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--speaker", required=True, help="Whose recordings these are.")
@click.option(
    "--no-asr",
    is_flag=True,
    help="Skip transcription (segments without subtitles stay untranscribed).",
)
@click.option("--no-speaker-filter", is_flag=True, help="Skip the ECAPA speaker check.")
@_user_errors
def ingest(
    workspace: Path, paths: tuple[Path, ...], speaker: str, no_asr: bool, no_speaker_filter: bool
) -> None:
    """Turn long recordings (files or folders) into reviewed-ready 5-15 s segments.

    Originals are copied into raw/ and never changed; .srt/.vtt/.txt sidecars with the same
    name are used as transcripts. Re-running skips finished work.
    """
    from tui.ingest_view import run_ingest

    sys.exit(run_ingest(workspace, paths, speaker, not no_asr, not no_speaker_filter))


@main.command()
@click.argument("workspace", type=click.Path(path_type=Path))
@click.option("--passing", is_flag=True, required=True, help="Accept segments with no QC flag.")
@click.option("--speaker", help="Only this speaker's segments.")
@_user_errors
def accept(workspace: Path, passing: bool, speaker: str | None) -> None:
    """Accept every pending segment that passed QC (recorded in the review history)."""
    from core.dataset.ingest import accept_passing
    from core.workspace import Workspace

    ws = Workspace.open(workspace)
    if speaker:
        ws.speaker(speaker)
    count = accept_passing(ws, speaker)
    click.echo(f"accepted {count} segment(s) with no QC flag")


@main.command()
@click.argument("workspace", type=click.Path(path_type=Path))
@_user_errors
def repair(workspace: Path) -> None:
    """Rebuild WORKSPACE's catalog from raw/, segments/, runs/ and the newest good backup.

    Use it when catalog.sqlite is missing or damaged. The old catalog is moved to
    .backups/replaced-<time>/ (kept); no recording or segment file is changed. Prints what
    was restored and what could not be. Stop the app and any ingest or training first.
    """
    from core.repair import repair as repair_catalog
    from core.workspace import Workspace

    ws = Workspace.open(workspace)
    report = repair_catalog(ws)
    for line in report.lines(ws.root):
        click.echo(line)


@main.command()
@click.argument("workspace", type=click.Path(path_type=Path))
@click.option(
    "--format", "fmt", type=click.Choice(["jsonl", "ljspeech", "audiofolder"]), default="jsonl",
    show_default=True, help="Export layout.",
)  # fmt: skip
@click.option(
    "--seed", type=int,
    help="Seed of the split when the workspace has none yet (default 42); stored splits are "
    "kept (see `podforge splits --reassign`).",
)  # fmt: skip
@click.option(
    "--name",
    help="Folder name inside exports/: letters, digits, _ - . (default: the format's name); "
    "an existing one is replaced only when podforge made it.",
)
@click.option("--speaker", help="Only this speaker's segments.")
@_user_errors
def export(
    workspace: Path, fmt: str, seed: int | None, name: str | None, speaker: str | None
) -> None:
    """Export accepted segments in their stored train/val/test splits (about 80/10/10)."""
    from core.dataset.splits import export as export_dataset
    from core.workspace import Workspace
    from tui.format import minutes

    ws = Workspace.open(workspace)
    result = export_dataset(ws, fmt, seed=seed, name=name, speaker=speaker)
    click.echo(f"exported to {result.folder}")
    for split in ("train", "val", "test"):
        n = result.counts.get(split, 0)
        click.echo(f"  {split:<5} {n:>6} segments  {minutes(result.seconds.get(split, 0.0))}")
    if result.skipped_no_text:
        click.echo(f"  skipped {result.skipped_no_text} accepted segment(s) without a transcript")
    if result.split_note:
        click.echo(f"  note: {result.split_note}")
    for warning in result.warnings:
        click.echo(f"podforge: warning: {warning}", err=True)


@main.command()
@click.argument("workspace", type=click.Path(path_type=Path))
@click.option("--speaker", help="Only this speaker.")
@click.option(
    "--reassign", is_flag=True,
    help="Forget the stored splits and deal them afresh (voices trained before were trained "
    "on the old ones).",
)  # fmt: skip
@click.option("--seed", type=int, help="With --reassign: the new split seed.")
@_user_errors
def splits(workspace: Path, speaker: str | None, reassign: bool, seed: int | None) -> None:
    """Show each speaker's stored train/val/test splits (assigning new segments first).

    A segment keeps its split once it has one: new seeds or recordings never move it. Use
    --reassign (optionally with --seed) to deal every split again.
    """
    from core.catalog import Catalog
    from core.dataset.splits import SPLITS, ensure_splits, reassign_splits
    from core.errors import ExportError
    from core.workspace import Workspace
    from tui.format import minutes

    ws = Workspace.open(workspace)
    if speaker is not None:
        ws.speaker(speaker)  # an unknown speaker is one line
    if seed is not None and not reassign:
        raise ExportError("--seed changes nothing without --reassign (stored splits are kept)")
    with Catalog.open(ws.catalog_path) as catalog:
        if reassign:
            moved, state = reassign_splits(catalog, speaker=speaker, seed=seed)
        else:
            state = ensure_splits(catalog, speaker=speaker)
    click.echo(f"split seed {state.seed}")
    for summary in state.summaries:
        click.echo(f"{summary.speaker}  ({summary.groups} group(s))")
        for split in SPLITS:
            click.echo(
                f"  {split:<5} {summary.counts[split]:>6} segments  "
                f"{minutes(summary.seconds[split])}  {summary.share(split):>4.0%}"
            )
    if not state.summaries:
        click.echo("no accepted segment with a transcript yet")
    if state.assigned and not reassign:
        click.echo(f"assigned a split to {state.assigned} new segment(s)")
    for note in state.notes:
        click.echo(f"  note: {note}")
    if reassign:
        click.echo(
            f"podforge: warning: splits reassigned: {moved} segment(s) changed split; voices "
            "trained and evaluations made before used the old splits (their held-out results "
            "may include segments they trained on)",
            err=True,
        )
    for warning in state.warnings:
        click.echo(f"podforge: warning: {warning}", err=True)


@main.command()
@click.argument("workspace", type=click.Path(path_type=Path))
@click.argument("script", type=click.Path(path_type=Path))
@click.option("--draft", is_flag=True, help="Use the espeak-ng draft voice (instant, no GPU).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the synthesis.")
@_user_errors
def render(workspace: Path, script: Path, draft: bool, seed: int) -> None:
    """Render SCRIPT (e.g. scripts/welcome.md) into episodes/<name>/: WAV, MP3, manifest,
    chapters. Only lines that changed since the last render are synthesised."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from core.episodes.render import STAGE_LOADING, is_stage, render_episode
    from core.workspace import Workspace

    ws = Workspace.open(workspace)
    if not script.is_absolute() and not script.exists():
        script = ws.root / script
    console = Console(stderr=True)
    bars = Progress(
        TextColumn("rendering"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.description}"), console=console, transient=True,
    )  # fmt: skip
    task = bars.add_task("", total=None)

    def report(done: int, total: int, what: str) -> None:
        if not bars.live.is_started:  # only once work starts: an early error stays one line
            bars.start()
        if what == STAGE_LOADING:
            console.print(what)  # a line of its own: it may take a while, then lines follow
        if is_stage(what):  # mixing, mastering: seconds of audio done
            what = f"{what} ({done // 60}:{done % 60:02d} of {total // 60}:{total % 60:02d})"
        bars.update(task, completed=done, total=total or None, description=what)

    try:
        result = render_episode(
            ws, script, backend="draft" if draft else "csm", seed=seed, progress=report
        )
    finally:
        if bars.live.is_started:
            bars.stop()
    out = result.exported
    console.print(
        f"{len(result.rendered_lines)} line(s) synthesised, {len(result.cached_lines)} from "
        f"the cache, {result.seconds:.1f} s"
    )
    for warning in result.warnings:
        console.print(f"[yellow]warning:[/] {warning}")
    click.echo(f"{out.wav}\n{out.mp3}\n{out.manifest}\n{out.chapters}")
    lufs = "–" if result.lufs is None else f"{result.lufs:.1f}"
    click.echo(
        f"loudness {lufs} LUFS, true peak {result.true_peak_db:.1f} dBTP, "
        f"{result.duration_sec / 60:.1f} min"
    )


@main.command()
@click.argument("workspace", type=click.Path(path_type=Path))
@click.option("--speaker", help="Whose voice to train (needs a consent record).")
@click.option("--steps", type=click.IntRange(1), help="Optimizer steps (default: [training]).")
@click.option("--rank", type=click.IntRange(1, 256), help="LoRA rank (alpha = 2 x rank).")
@click.option("--lr", type=float, help="Learning rate.")
@click.option("--resume", "resume_id", help="Resume run RUN-ID from its newest checkpoint.")
@click.option("--foreground", is_flag=True, help="Train in this terminal instead of detached.")
@_user_errors
def train(
    workspace: Path,
    speaker: str | None,
    steps: int | None,
    rank: int | None,
    lr: float | None,
    resume_id: str | None,
    foreground: bool,
) -> None:
    """Fine-tune a LoRA adapter of the base model on SPEAKER's accepted segments.

    The worker runs detached (closing the terminal or SSH does not stop it) and writes
    runs/<id>/{status.json,metrics.jsonl,worker.log}; watch it in the app (d). Consent, the
    speaker's accepted segments, the model and the device are checked before it starts.
    """
    from core.errors import TrainingError
    from core.training.runs import (
        RunConfig,
        create_run,
        launch_worker,
        preflight,
        resume_run,
        run_settings,
    )
    from core.workspace import Workspace

    ws = Workspace.open(workspace)
    warnings: list[str] = []
    if resume_id:
        if (ws.runs_dir / resume_id).is_dir():
            config = RunConfig.load(ws.runs_dir / resume_id)
            warnings = preflight(ws, config.speaker, config.training, config.base_model,
                                 config.device)  # fmt: skip
        run_dir = resume_run(ws, resume_id)  # says when there is no such run
    elif speaker:
        training = run_settings(ws, steps=steps, rank=rank, learning_rate=lr)
        models = ws.settings.models
        warnings = preflight(ws, speaker, training, models.tts, models.device)
        run_dir = create_run(ws, speaker, steps=steps, rank=rank, learning_rate=lr)
    else:
        raise TrainingError("say whose voice to train (--speaker NAME) or which run to --resume")
    for warning in warnings:
        click.echo(f"podforge: warning: {warning}", err=True)
    if foreground:
        from core.training.protocol import read_status
        from core.training.worker import run_foreground

        code = run_foreground(ws.root, run_dir)
        status = read_status(run_dir)
        if status.state == "finished":
            voice = ws.voices_dir / (status.speaker or RunConfig.load(run_dir).speaker)
            click.echo(f"finished {run_dir.name} at step {status.step}; voice exported to {voice}")
        elif status.state == "stopped":
            click.echo(f"stopped at step {status.step}; continue with: podforge train "
                       f"{workspace} --resume {run_dir.name}")  # fmt: skip
        else:
            raise TrainingError(f"{run_dir.name}: {status.error or status.state} (log: "
                                f"{run_dir / 'worker.log'})")  # fmt: skip
        sys.exit(code)
    pid = launch_worker(ws, run_dir)
    click.echo(run_dir.name)
    click.echo(f"worker pid {pid}; log: {run_dir / 'worker.log'}", err=True)


@main.command()
@click.argument("workspace", type=click.Path(path_type=Path), default=Path("."))
@_user_errors
def doctor(workspace: Path) -> None:
    """Check this machine for WORKSPACE: its models, the GPU and driver, audio, espeak-ng.

    Looks only at local files (never downloads); exit status 1 when a required item is
    missing, with the command that fixes it.
    """
    from core.doctor import failures, run_checks, summary
    from core.workspace import Workspace, find_workspace

    ws = Workspace.open(find_workspace(workspace) or workspace)
    checks = run_checks(ws)
    colours = {"ok": "green", "warn": "yellow", "fail": "red"}
    labels = {"ok": "OK", "warn": "WARN", "fail": "MISSING"}
    for check in checks:
        status = click.style(f"{labels[check.level]:<8}", fg=colours[check.level], bold=True)
        click.echo(f"{status}{check.item}: {check.detail}")
        if check.fix and check.level != "ok":
            click.echo(f"{'':<8}  -> {check.fix}")
    line = summary(checks)
    if failures(checks):
        click.echo(f"podforge: error: {line}", err=True)
        sys.exit(1)
    click.echo(line)


@main.command("eval")
@click.argument("workspace", type=click.Path(path_type=Path))
@click.option("--voice", required=True, help="Whose voice to evaluate (voices/NAME/).")
@click.option(
    "--texts", "texts_file", type=click.Path(path_type=Path),
    help="Render these texts (one per line) instead of the held-out test segments.",
)  # fmt: skip
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the synthesis.")
@click.option("--draft", is_flag=True, help="Evaluate the espeak-ng draft voice (a baseline).")
@_user_errors
def eval_cmd(workspace: Path, voice: str, texts_file: Path | None, seed: int, draft: bool) -> None:
    """Render held-out texts with VOICE and gate it on WER, CER, speaker similarity and RTF.

    Saves voices/VOICE/eval/<UTC time>.json; exit status 1 when a gate fails.
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
    from rich.table import Table

    from core.evaluation.evaluate import evaluate_voice, read_texts
    from core.workspace import Workspace

    ws = Workspace.open(workspace)
    texts = read_texts(texts_file) if texts_file is not None else None
    console = Console(stderr=True)
    bars = Progress(
        TextColumn("evaluating"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.description}"), console=console, transient=True,
    )  # fmt: skip
    task = bars.add_task("", total=None)

    def report_progress(done: int, total: int, what: str) -> None:
        if not bars.live.is_started:  # only once work starts: an early error stays one line
            bars.start()
        bars.update(task, completed=done, total=total, description=what)

    try:
        report = evaluate_voice(
            ws, voice, texts=texts, seed=seed, backend="draft" if draft else "csm",
            progress=report_progress,
        )  # fmt: skip
    finally:
        if bars.live.is_started:
            bars.stop()
    out = Console()
    for note in report.notes:
        out.print(f"[yellow]note:[/] {note}")
    ref = report.reference_similarity
    out.print(
        f"{voice} ({report.backend}): {len(report.items)} text(s) from {report.texts_source}, "
        f"{report.audio_seconds:.1f} s of audio in {report.render_seconds:.1f} s; reference "
        f"similarity of the real recordings {'–' if ref is None else f'{ref:.3f}'}"
    )
    table = Table("gate", "value", "threshold", "result")
    for name, (value, threshold, passed) in report.gates.items():
        bound = ">=" if name == "similarity" else "<="
        table.add_row(
            name,
            "–" if value is None else f"{value:.3f}",
            f"{bound} {threshold:g}",
            "[green]PASS[/]" if passed else "[red]FAIL[/]",
        )
    out.print(table)
    click.echo(f"report: {report.path}")
    if not report.passed:
        click.echo(f"failed gate(s): {', '.join(report.failed_gates)}")
        sys.exit(1)


def _run_app(ws: Any) -> None:
    from tui.app import PodforgeApp

    app = PodforgeApp(ws)
    app.run()
    if app.return_code:  # the app ended on an unhandled exception (Textual printed it)
        sys.exit(app.return_code)


if __name__ == "__main__":
    main()
