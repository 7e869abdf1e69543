"""The service's bearer token and where it may listen.

The token is made on the first start (:func:`secrets.token_urlsafe`, 256 bits) and kept in
``<workspace>/.service/token`` with mode 0600 (the folder 0700), written atomically; the
command prints it once, when it is made. A token file others can read is refused, not
used. Requests are checked with :func:`secrets.compare_digest`. ``--no-auth`` is allowed
only on a loopback address, and so any other address always needs the token.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

from core.atomic import atomic_path
from core.errors import ServiceError
from core.service.errors import Unauthorized

TOKEN_PATH = Path(".service") / "token"
"""The token file, relative to the workspace."""


@dataclass(frozen=True)
class Token:
    value: str
    path: Path
    created: bool
    """Made by this call (so the command prints it, this once)."""


def service_token(root: Path) -> Token:
    """The workspace's service token, made now if it has none."""
    path = root / TOKEN_PATH
    if path.is_file():
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            raise ServiceError(
                f"{path}: readable by other users (mode {mode:o}); `chmod 600 {path}`, or "
                "remove it for a new token"
            )
        value = path.read_text(encoding="ascii").strip()
        if len(value) < 32:
            raise ServiceError(f"{path}: not a service token; remove it for a new one")
        return Token(value, path, created=False)
    path.parent.mkdir(mode=0o700, exist_ok=True)
    os.chmod(path.parent, 0o700)
    value = secrets.token_urlsafe(32)
    with atomic_path(path) as tmp:
        os.chmod(tmp, 0o600)  # before the secret is in it
        tmp.write_text(value + "\n", encoding="ascii")
    return Token(value, path, created=True)


def check_token(expected: str | None, authorization: str | None) -> None:
    """Accept ``Authorization: Bearer <token>`` with the service's token (``expected``;
    ``None``: the service runs without auth), else raise :class:`Unauthorized`."""
    if expected is None:
        return
    scheme, _, given = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not given:
        raise Unauthorized("send the service token as `Authorization: Bearer <token>`")
    if not secrets.compare_digest(given.strip().encode(), expected.encode()):
        raise Unauthorized("wrong service token; it is in <workspace>/.service/token")


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or ``localhost``) is this machine's loopback."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, *, no_auth: bool) -> None:
    """Refuse ``--no-auth`` on any address but loopback: elsewhere the token is required."""
    if no_auth and not is_loopback(host):
        raise ServiceError(
            f"--no-auth is allowed only on a loopback host (127.0.0.1, ::1, localhost), not "
            f"{host!r}: drop --no-auth, or reach the service through an SSH tunnel (SERVICE.md)"
        )
