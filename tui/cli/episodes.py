"""``podforge render``: an episode script to WAV, MP3, manifest and chapters, with progress on
stderr (shown only once work starts, so an early error stays one line)."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING

import click

from tui.cli.cluster import RunPlace, ray_options, session

if TYPE_CHECKING:
    from core.episodes.render import RenderResult
    from core.episodes.synthesis.backends import Backend

STRICT_EXIT = 3
"""``podforge render --strict``'s exit status when a line is still suspect after QA."""


@click.command()
@click.argument("workspace", type=click.Path(path_type=Path))
@click.argument("script", type=click.Path(path_type=Path))
@click.option("--draft", is_flag=True, help="Use the espeak-ng draft voice (instant, no GPU).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the synthesis.")
@click.option(
    "--retakes",
    type=click.IntRange(0, 10),
    default=None,
    help="Line QA: up to N candidates a line, the first that passes kept (0: off; "
    "default: render.retakes in workspace.toml).",
)
@click.option(
    "--allow-cpu-sound",
    is_flag=True,
    help="Let a real sound model generate gen= cues on the CPU (hours a sound; the tiny one "
    "always may).",
)
@click.option(
    "--strict", is_flag=True, help=f"Exit with status {STRICT_EXIT} if a line is still suspect."
)
@ray_options
def render(
    workspace: Path,
    script: Path,
    draft: bool,
    seed: int,
    retakes: int | None,
    allow_cpu_sound: bool,
    strict: bool,
    place: RunPlace,
) -> None:
    """Render SCRIPT (e.g. scripts/welcome.md) into episodes/<name>/: WAV, MP3, manifest,
    chapters. Only lines that changed since the last render are synthesised; with line QA
    (--retakes) each line is back-transcribed and checked, and suspect lines retaken. With
    --ray, batches of lines are rendered on Ray actors (docs/SCALING.md)."""
    from core.episodes.lock import EpisodeLock
    from core.episodes.render import STAGE_LOADING, is_stage, render_episode
    from core.episodes.sound.backend import STAGE_SOUND
    from core.workspace import Workspace
    from tui.cli.bars import StderrBars

    ws = Workspace.open(workspace)
    if not script.is_absolute() and not script.exists():
        script = ws.root / script
    # One render of an episode at a time (the app, another `podforge render`, the service).
    with (
        EpisodeLock(ws, script),
        session(place) as ray,
        contextlib.ExitStack() as stack,
        StderrBars("rendering") as bars,
    ):
        console = bars.console

        def report(done: int, total: int, what: str) -> None:
            bars.start()
            if what == STAGE_LOADING:
                console.print(what)  # a line of its own: it may take a while, then lines follow
            if what.startswith(STAGE_SOUND):  # a generated sound: denoising steps done
                bars.update(done, total or None, f"{what} (step {done} of {total})")
                return
            if is_stage(what):  # mixing, mastering: seconds of audio done
                what = f"{what} ({done // 60}:{done % 60:02d} of {total // 60}:{total % 60:02d})"
            bars.update(done, total or None, what)

        backend: str | Backend = "draft" if draft else "csm"
        if ray is not None:
            from core.cluster.render import cluster_backend

            backend = stack.enter_context(cluster_backend(ws, str(backend), ray))
        result = render_episode(
            ws, script, backend=backend, seed=seed, progress=report,
            retakes=retakes, allow_cpu_sound=allow_cpu_sound or None,
        )  # fmt: skip
    out = result.exported
    console.print(
        f"{len(result.rendered_lines)} line(s) synthesised, {len(result.cached_lines)} from "
        f"the cache, {result.seconds:.1f} s"
    )
    if result.generated_sounds or result.cached_sounds:
        console.print(
            f"{len(result.generated_sounds)} sound(s) generated, {len(result.cached_sounds)} "
            "from the cache"
        )
    for warning in result.warnings:
        console.print(f"[yellow]warning:[/] {warning}")
    click.echo(f"{out.wav}\n{out.mp3}\n{out.manifest}\n{out.chapters}")
    lufs = "–" if result.lufs is None else f"{result.lufs:.1f}"
    click.echo(
        f"loudness {lufs} LUFS, true peak {result.true_peak_db:.1f} dBTP, "
        f"{result.duration_sec / 60:.1f} min"
    )
    if result.qa is not None:
        for line in qa_summary(result):
            console.print(line)
        if strict and result.suspect:
            raise click.exceptions.Exit(STRICT_EXIT)


def qa_summary(result: RenderResult) -> list[str]:
    """The QA lines ``podforge render`` ends with: counts, then each suspect line."""
    verdicts = result.qa or []
    passed = [v for v in verdicts if not v.suspect]
    retaken = sum(1 for v in passed if v.kept.take > 0)
    by_ear = sum(1 for v in verdicts if v.how == "by ear")
    out = [
        f"QA: {len(passed)} of {len(verdicts)} line(s) passed ({retaken} after a retake"
        + (f", {by_ear} chosen by ear" if by_ear else "")
        + f"), {len(result.suspect)} still suspect"
    ]
    for verdict in result.suspect:
        kept = verdict.kept
        out.append(
            f"[yellow]suspect:[/] script line {verdict.source_line} ({verdict.speaker}), "
            f"best of {len(verdict.candidates)}: {'; '.join(kept.reasons)}"
        )
    return out
