"""``podforge check``: does a file carry the synthetic-speech mark? One line per file."""

from __future__ import annotations

import sys
from pathlib import Path

import click


@click.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
def check(files: tuple[Path, ...]) -> None:
    """Read FILES (WAV, MP3, FLAC, ...) for the Perth synthetic-speech mark.

    Only speech windows are scored (hum, music and noise fool the detector); each file gets
    one line: its name, the verdict (marked / unmarked) and the figures. The mark is shared by
    every Perth user: "marked" means synthetic, not "made by podforge". Exit status 1 if a
    file cannot be read."""
    from core.errors import AudioError
    from core.watermark.detect import check_file
    from core.watermark.perth import load_mark

    mark = load_mark()
    failed = False
    for path in files:
        try:
            result = check_file(path, mark)
        except AudioError as exc:
            click.echo(f"podforge: error: {exc}", err=True)  # names the file
            failed = True
            continue
        click.echo(f"{path}: {result.verdict} ({result.summary()})")
    if failed:
        sys.exit(1)
