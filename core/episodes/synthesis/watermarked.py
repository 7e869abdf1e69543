"""Every synthesised line carries the synthetic-speech mark (:mod:`core.watermark.perth`).

:class:`Watermarked` wraps any backend: each line it renders is marked before it reaches the
cache, the mix or a caller, and the mark's identity joins the line's cache key (turning the
mark on or off re-renders). :func:`~core.episodes.synthesis.backends.make_backend` wraps
every backend unless ``[watermark] enabled = false`` (with a reason) in ``workspace.toml``.
:func:`watermark_manifest` is what an episode's manifest says about it.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import metadata
from typing import TYPE_CHECKING, Any

from core.episodes.script import Line
from core.episodes.synthesis.backends import Backend, Rendered
from core.watermark.perth import METHOD

if TYPE_CHECKING:
    from core.settings import WatermarkSettings


def _version() -> str:
    try:
        return metadata.version("resemble-perth")
    except metadata.PackageNotFoundError:
        return "missing"  # rendering will fail with a one-line WatermarkError


def mark_identity() -> str:
    """``perth-implicit/<resemble-perth version>``, without loading the network."""
    return f"{METHOD}/{_version()}"


class Watermarked:
    """``inner`` with the mark applied to each line it renders (same length and rate)."""

    def __init__(self, inner: Backend) -> None:
        self.inner = inner
        self.name = inner.name
        self.version = inner.version
        self.supported_tags = inner.supported_tags
        self.batch_size = inner.batch_size

    def cache_identity(self, voice: str) -> dict[str, object]:
        return {**self.inner.cache_identity(voice), "watermark": mark_identity()}

    def render(self, line: Line, seed: int) -> Rendered:
        return self._marked(self.inner.render(line, seed))

    def render_many(self, items: Sequence[tuple[Line, int]]) -> list[Rendered]:
        return [self._marked(r) for r in self.inner.render_many(items)]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)  # the wrapped backend's own API (hotswap, voices, ...)

    @staticmethod
    def _marked(rendered: Rendered) -> Rendered:
        from core.watermark.perth import load_mark

        audio = load_mark().apply(rendered.audio, rendered.sample_rate)
        return Rendered(audio=audio, sample_rate=rendered.sample_rate)


def watermark_manifest(settings: WatermarkSettings, marked: bool = True) -> dict[str, object]:
    """The manifest's ``watermark`` entry: the method and library, or why there is none.
    ``marked``: whether the backend that rendered the lines marks them (a backend a library
    user built by hand, not through ``make_backend``, does not)."""
    if not settings.enabled:
        return {"applied": False, "reason": settings.reason.strip()}
    if not marked:
        return {"applied": False, "reason": "the backend given to render_episode marks nothing"}
    return {"applied": True, "method": METHOD, "library": f"resemble-perth {_version()}"}
