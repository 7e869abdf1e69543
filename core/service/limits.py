"""What one request may ask of the service, and the ASGI middleware that holds bodies to it.

A body must say its length (``Content-Length``): a chunked upload is answered 411, one
longer than :attr:`Limits.max_body_bytes` 413, before any of it is read.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Asgi = Callable[[Scope, Receive, Send], Awaitable[None]]


@dataclass(frozen=True)
class Limits:
    max_body_bytes: int = 16 * 1024
    """A request body (JSON) at most this long."""
    max_text_chars: int = 1000
    """A synthesis request's text at most this long (the CSM backend splits it into
    generations of about 440 characters)."""
    queue_requests: int = 64
    """Synthesis requests waiting per backend before new ones are answered 429."""
    max_jobs: int = 8
    """Render jobs queued or running before new ones are answered 429."""
    kept_jobs: int = 100
    """Finished jobs remembered (status, files) before the oldest is forgotten."""


class BodyLimit:
    """ASGI middleware: refuse a body without a length (411) or over ``max_bytes`` (413)."""

    def __init__(self, app: Asgi, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in ("POST", "PUT", "PATCH"):
            headers = dict(scope["headers"])
            length = headers.get(b"content-length")
            if length is None and b"transfer-encoding" in headers:
                await _refuse(
                    send, 411, "send the body with a Content-Length header", "LengthRequired"
                )
                return
            if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
                await _refuse(
                    send,
                    413,
                    f"request body over {self.max_bytes} bytes; send less text",
                    "TooLarge",
                )
                return
        await self.app(scope, receive, send)


async def _refuse(send: Send, status: int, message: str, kind: str) -> None:
    body = json.dumps({"error": message, "type": kind}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", b"%d" % len(body)),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
