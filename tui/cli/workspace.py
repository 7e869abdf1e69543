"""``podforge`` commands on a workspace as a whole: ``open`` (also ``podforge DIR``), ``init``,
``demo``, ``speaker add/list``, ``repair``, ``doctor``.

``open`` and ``demo`` start the Textual app, imported only then; an app that ended on an
unhandled exception exits with its return code.
"""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import click

DEFAULT_DEMO_DIR = Path("workspaces") / "demo"


@click.command("open")
@click.argument("directory", type=click.Path(path_type=Path), default=Path("."))
def open_cmd(directory: Path) -> None:
    """Open the workspace in DIRECTORY (default: the one holding the current folder)."""
    from core.workspace import Workspace, find_workspace

    _run_app(Workspace.open(find_workspace(directory) or directory))


@click.command()
@click.argument("directory", type=click.Path(path_type=Path))
@click.option("--name", help="Workspace name (default: the folder's name).")
def init(directory: Path, name: str | None) -> None:
    """Create an empty workspace in DIRECTORY."""
    from core.workspace import Workspace

    ws = Workspace.create(directory, name=name)
    click.echo(f"created workspace {ws.name!r} in {ws.root}")
    click.echo(
        f'next: podforge speaker add {directory} NAME --consent "who agreed, how, when" '
        '--granted-by "their name"'
    )


@click.command()
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


@click.group()
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
    "--consent-audio",
    type=click.Path(path_type=Path),
    help="The speaker saying the consent statement (copied into the workspace; checked "
    "against their accepted segments before training).",
)
@click.option(
    "--date",
    "granted_at",
    type=click.DateTime(formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S"]),
    help="When consent was granted (default: now).",
)
def speaker_add(
    workspace: Path,
    name: str,
    statement: str,
    granted_by: str | None,
    scope: str | None,
    evidence: str,
    display_name: str,
    consent_audio: Path | None,
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
    if consent_audio is not None:
        from core.voices.spoken import store_consent_audio

        consent.audio, consent.audio_sha256 = store_consent_audio(ws, name, consent_audio)
    ws.add_speaker(name, consent, display_name=shown)
    click.echo(
        f"speaker {name!r}: consent recorded "
        f"(granted by {consent.granted_by}, {consent.granted_at:%Y-%m-%d}"
        + (f", spoken: {consent.audio}" if consent.audio else "")
        + ")"
    )
    for use in ("training", "synthesis"):
        if not consent.covers(use):
            click.echo(
                f"note: the scope {consent.scope!r} does not cover {use}: podforge will "
                f"refuse {use} with {name}'s voice"
            )


@speaker.command("list")
@click.argument("workspace", type=click.Path(path_type=Path))
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
            line += ", spoken" if c.audio else ""
        else:
            line = "NO CONSENT RECORD (cannot be trained or synthesised)"
        click.echo(f"{name:<16} {sp.display_name:<20} {line}")


@click.command()
@click.argument("workspace", type=click.Path(path_type=Path))
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


@click.command()
@click.argument("workspace", type=click.Path(path_type=Path), default=Path("."))
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


def _run_app(ws: Any) -> None:
    from tui.app import PodforgeApp

    app = PodforgeApp(ws)
    app.run()
    if app.return_code:  # the app ended on an unhandled exception (Textual printed it)
        sys.exit(app.return_code)
