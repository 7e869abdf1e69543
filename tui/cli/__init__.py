"""The ``podforge`` command line.

``podforge DIR`` opens the app on a workspace; subcommands do the same work for
scripts. Every user mistake ends as one ``podforge: error: ...`` line and exit
status 1, never a traceback: the group catches :class:`~core.errors.PodforgeError`
for every command, so commands raise and never print errors themselves. The
commands live by family (:mod:`.workspace`, :mod:`.dataset`, :mod:`.training`,
:mod:`.episodes`, :mod:`.service`) and are registered here in the order ``podforge --help`` has
always had. Only click and ``core.errors`` are imported at start; heavy modules
are imported inside the commands.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from core.errors import PodforgeError
from tui.cli.dataset import accept, export, ingest, splits
from tui.cli.episodes import render
from tui.cli.service import serve
from tui.cli.training import eval_cmd, train
from tui.cli.trust import check
from tui.cli.workspace import demo, doctor, init, open_cmd, repair, speaker

__all__ = ["main"]


class _PodforgeGroup(click.Group):
    """``podforge DIR`` means ``podforge open DIR``; a ``PodforgeError`` from any command
    is one ``podforge: error: ...`` line on stderr and exit status 1."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and not args[0].startswith("-") and args[0] not in self.commands:
            args = ["open", *args]
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except PodforgeError as exc:
            click.echo(f"podforge: error: {exc}", err=True)
            sys.exit(1)


@click.group(cls=_PodforgeGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="podforge")
def main() -> None:
    """Clone your own voice and produce podcast episodes with it.

    \b
    podforge demo              build the demo workspace and open it
    podforge DIR               open a workspace in the app
    podforge init DIR          create an empty workspace
    """


for _command in (
    open_cmd, init, demo, speaker, ingest, accept, repair, export, splits, render, train,
    doctor, eval_cmd, check, serve,
):  # fmt: skip
    main.add_command(_command)
