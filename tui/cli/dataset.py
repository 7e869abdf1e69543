"""``podforge`` commands on the dataset: ``ingest`` (progress on the terminal through
:mod:`tui.cli.ingest_view`), ``accept``, ``export``, ``splits``."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from tui.cli.cluster import RunPlace, ray_options


@click.command()
@click.argument("workspace", type=click.Path(path_type=Path))
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--speaker", required=True, help="Whose recordings these are.")
@click.option(
    "--no-asr",
    is_flag=True,
    help="Skip transcription (segments without subtitles stay untranscribed).",
)
@click.option("--no-speaker-filter", is_flag=True, help="Skip the ECAPA speaker check.")
@ray_options
def ingest(
    workspace: Path,
    paths: tuple[Path, ...],
    speaker: str,
    no_asr: bool,
    no_speaker_filter: bool,
    place: RunPlace,
) -> None:
    """Turn long recordings (files or folders) into reviewed-ready 5-15 s segments.

    Originals are copied into raw/ and never changed; .srt/.vtt/.txt sidecars with the same
    name are used as transcripts. Re-running skips finished work. With --ray, recordings are
    cut on a Ray cluster, one task each, and transcribed and speaker-checked on actors that
    hold the models (docs/SCALING.md).
    """
    from tui.cli.ingest_view import run_ingest

    sys.exit(run_ingest(workspace, paths, speaker, not no_asr, not no_speaker_filter, place))


@click.command()
@click.argument("workspace", type=click.Path(path_type=Path))
@click.option("--passing", is_flag=True, required=True, help="Accept segments with no QC flag.")
@click.option("--speaker", help="Only this speaker's segments.")
def accept(workspace: Path, passing: bool, speaker: str | None) -> None:
    """Accept every pending segment that passed QC (recorded in the review history)."""
    from core.dataset.ingest import accept_passing
    from core.workspace import Workspace

    ws = Workspace.open(workspace)
    if speaker:
        ws.speaker(speaker)
    count = accept_passing(ws, speaker)
    click.echo(f"accepted {count} segment(s) with no QC flag")


@click.command()
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
def export(
    workspace: Path, fmt: str, seed: int | None, name: str | None, speaker: str | None
) -> None:
    """Export accepted segments in their stored train/val/test splits (about 80/10/10)."""
    from core.dataset.exports import export as export_dataset
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


@click.command()
@click.argument("workspace", type=click.Path(path_type=Path))
@click.option("--speaker", help="Only this speaker.")
@click.option(
    "--reassign", is_flag=True,
    help="Forget the stored splits and deal them afresh (voices trained before were trained "
    "on the old ones).",
)  # fmt: skip
@click.option("--seed", type=int, help="With --reassign: the new split seed.")
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
