"""``podforge`` commands on voices: ``train`` (a detached worker, or ``--foreground``) and
``eval`` (the quality gates; exit status 1 when a gate fails)."""

from __future__ import annotations

import sys
from pathlib import Path

import click


@click.command()
@click.argument("workspace", type=click.Path(path_type=Path))
@click.option("--speaker", help="Whose voice to train (needs a consent record).")
@click.option("--steps", type=click.IntRange(1), help="Optimizer steps (default: [training]).")
@click.option("--rank", type=click.IntRange(1, 256), help="LoRA rank (alpha = 2 x rank).")
@click.option("--lr", type=float, help="Learning rate.")
@click.option("--resume", "resume_id", help="Resume run RUN-ID from its newest checkpoint.")
@click.option("--foreground", is_flag=True, help="Train in this terminal instead of detached.")
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
        from core.voices.folder import VoiceFolder

        code = run_foreground(ws.root, run_dir)
        status = read_status(run_dir)
        if status.state == "finished":
            name = status.speaker or RunConfig.load(run_dir).speaker
            voice = VoiceFolder.for_speaker(ws, name).root
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


@click.command("eval")
@click.argument("workspace", type=click.Path(path_type=Path))
@click.option("--voice", required=True, help="Whose voice to evaluate (voices/NAME/).")
@click.option(
    "--texts", "texts_file", type=click.Path(path_type=Path),
    help="Render these texts (one per line) instead of the held-out test segments.",
)  # fmt: skip
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the synthesis.")
@click.option("--draft", is_flag=True, help="Evaluate the espeak-ng draft voice (a baseline).")
def eval_cmd(workspace: Path, voice: str, texts_file: Path | None, seed: int, draft: bool) -> None:
    """Render held-out texts with VOICE and gate it on WER, CER, speaker similarity and RTF.

    Saves voices/VOICE/eval/<UTC time>.json; exit status 1 when a gate fails.
    """
    from rich.console import Console
    from rich.table import Table

    from core.evaluation.evaluate import evaluate_voice, read_texts
    from core.evaluation.gates import bound
    from core.workspace import Workspace
    from tui.cli.bars import StderrBars
    from tui.format import sparkline

    ws = Workspace.open(workspace)
    texts = read_texts(texts_file) if texts_file is not None else None
    with StderrBars("evaluating") as bars:
        report = evaluate_voice(
            ws, voice, texts=texts, seed=seed, backend="draft" if draft else "csm",
            progress=bars.update,
        )  # fmt: skip
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
        table.add_row(
            name,
            "–" if value is None else f"{value:.3f}",
            f"{bound(name)} {threshold:g}",
            "[green]PASS[/]" if passed else "[red]FAIL[/]",
        )
    out.print(table)
    if report.wer_whisper is not None:
        out.print(
            f"WER in Whisper's English form (for published figures): {report.wer_whisper:.3f}"
        )
    scored = [(i, item.similarity) for i, item in enumerate(report.items, 1)]
    values = [sim for _, sim in scored if sim is not None]
    if values:
        at, lowest = min(((i, sim) for i, sim in scored if sim is not None), key=lambda p: p[1])
        out.print(
            f"similarity text by text, in render order: {sparkline(values)}  "
            f"lowest {lowest:.2f} (text {at})"
        )
    click.echo(f"report: {report.path}")
    if not report.passed:
        click.echo(f"failed gate(s): {', '.join(report.failed_gates)}")
        sys.exit(1)
