"""``podforge render``: an episode script to WAV, MP3, manifest and chapters, with progress on
stderr (shown only once work starts, so an early error stays one line)."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.argument("workspace", type=click.Path(path_type=Path))
@click.argument("script", type=click.Path(path_type=Path))
@click.option("--draft", is_flag=True, help="Use the espeak-ng draft voice (instant, no GPU).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the synthesis.")
def render(workspace: Path, script: Path, draft: bool, seed: int) -> None:
    """Render SCRIPT (e.g. scripts/welcome.md) into episodes/<name>/: WAV, MP3, manifest,
    chapters. Only lines that changed since the last render are synthesised."""
    from core.episodes.render import STAGE_LOADING, is_stage, render_episode
    from core.workspace import Workspace
    from tui.cli.bars import StderrBars

    ws = Workspace.open(workspace)
    if not script.is_absolute() and not script.exists():
        script = ws.root / script
    with StderrBars("rendering") as bars:
        console = bars.console

        def report(done: int, total: int, what: str) -> None:
            bars.start()
            if what == STAGE_LOADING:
                console.print(what)  # a line of its own: it may take a while, then lines follow
            if is_stage(what):  # mixing, mastering: seconds of audio done
                what = f"{what} ({done // 60}:{done % 60:02d} of {total // 60}:{total % 60:02d})"
            bars.update(done, total or None, what)

        result = render_episode(
            ws, script, backend="draft" if draft else "csm", seed=seed, progress=report
        )
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
