"""Run the service under uvicorn on a socket bound here, so that a taken port is one line.

The socket is bound before uvicorn starts (port 0: any free port, reported through
``ready``), then handed to uvicorn, which serves the application until SIGINT or SIGTERM
and then shuts it down: waiting requests are answered 503, the running batch finishes, a
running render job stops after its line.
"""

from __future__ import annotations

import socket
from collections.abc import Callable

from core.errors import ServiceError
from core.service.limits import Limits
from core.service.service import Service
from core.workspace import Workspace

MAX_CONNECTIONS = 512
"""Connections and requests at once before uvicorn answers 503 itself."""


def bind(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` (not yet listening), or one line saying why not."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host.strip("[]"), port, type=socket.SOCK_STREAM
        )[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise ServiceError(f"cannot listen on {host}: {exc}; give another --host") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise ServiceError(
            f"cannot listen on {host}:{port} ({exc.strerror or exc}); pick another --port or "
            "stop what uses it"
        ) from None
    return sock


def serve(
    ws: Workspace,
    *,
    host: str,
    port: int,
    token: str | None,
    limits: Limits | None = None,
    ready: Callable[[str, int], None] | None = None,
) -> None:
    """Serve ``ws`` until interrupted; ``ready(host, port)`` once the socket listens."""
    import uvicorn

    from core.service.app import create_app

    sock = bind(host, port)
    app = create_app(Service(ws, token, limits or Limits()))
    config = uvicorn.Config(
        app,
        log_level="info",
        limit_concurrency=MAX_CONNECTIONS,
        timeout_graceful_shutdown=10,
        server_header=False,
    )
    # Listening before "ready" is said: a client that connects at once waits in the backlog
    # until uvicorn accepts, instead of being refused.
    sock.listen(MAX_CONNECTIONS)
    if ready is not None:
        ready(host, sock.getsockname()[1])
    uvicorn.Server(config).run(sockets=[sock])
