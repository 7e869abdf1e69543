"""``podforge serve``: the workspace's voices over HTTP (FastAPI under uvicorn, SERVICE.md).

The bearer token is made on the first start and printed that once; later starts say where
it is kept. ``--no-auth`` is refused on any host but loopback. FastAPI, uvicorn and the
models are imported only once the command runs.
"""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.argument("workspace", type=click.Path(path_type=Path))
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on. Keep loopback and reach it through an SSH tunnel.",
)
@click.option(
    "--port", type=click.IntRange(0, 65535), default=8750, show_default=True,
    help="Port to listen on (0: any free one, printed).",
)  # fmt: skip
@click.option(
    "--no-auth", is_flag=True, help="Accept calls without the token (loopback hosts only)."
)
def serve(workspace: Path, host: str, port: int, no_auth: bool) -> None:
    """Serve WORKSPACE's voices over HTTP: synthesis with a trained or the draft voice,
    episode render jobs with progress, downloads. Every call but /health and the API page
    (/docs) needs `Authorization: Bearer <token>`."""
    from core.service.auth import check_bind, service_token
    from core.service.server import serve as run
    from core.workspace import Workspace

    ws = Workspace.open(workspace)
    check_bind(host, no_auth=no_auth)
    token = None
    if no_auth:
        click.echo("warning: no token is asked for (--no-auth); anyone on this machine may call")
    else:
        found = service_token(ws.root)
        token = found.value
        if found.created:
            click.echo(f"service token (kept in {found.path}, shown only this once):")
            click.echo(f"  {found.value}")
        else:
            click.echo(f"service token: in {found.path}")

    def ready(bound_host: str, bound_port: int) -> None:
        where = f"[{bound_host}]" if ":" in bound_host else bound_host
        click.echo(f"podforge serve: listening on http://{where}:{bound_port} (API: /docs)")
        if not no_auth and bound_host not in ("127.0.0.1", "::1", "localhost"):
            click.echo(
                "warning: plain HTTP on a non-loopback address; prefer an SSH tunnel or a TLS "
                "reverse proxy (docs/SERVICE.md)"
            )

    try:
        run(ws, host=host, port=port, token=token, ready=ready)
    except KeyboardInterrupt:  # uvicorn shut down cleanly, then passes Ctrl-C on
        click.echo("podforge serve: stopped")
