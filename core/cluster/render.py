"""Render on Ray: batches of lines on actors that keep the model and adapters loaded.

:class:`ClusterBackend` is a :class:`~core.episodes.synthesis.backends.Backend` that
:func:`~core.episodes.render.render_episode` takes like any other: its names, tags and
cache identities are the local backend's (so the render cache is shared with local runs),
and :meth:`ClusterBackend.render_many` spreads the lines over the actors, each holding its
own :func:`~core.episodes.synthesis.backends.make_backend` (watermark included). The
driver keeps writing the cache, the mix and every episode file.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

from core.cluster.session import ClusterSession
from core.cluster.threads import pin_threads
from core.episodes.script import Line
from core.episodes.synthesis.backends import Backend, Rendered, make_backend
from core.errors import ClusterError, one_line
from core.workspace import Workspace


class RenderActor:
    """One Ray actor: a backend made once, rendering the batches it is sent."""

    def __init__(self, root: str, backend: str, threads: int) -> None:
        pin_threads(threads)
        self.backend = make_backend(Workspace.open(root), backend)

    def render_many(self, items: Sequence[tuple[Line, int]]) -> list[Rendered]:
        return self.backend.render_many(items)

    def pid(self) -> int:
        import os

        return os.getpid()


class ClusterBackend:
    """``backend`` rendered on Ray actors (see the module's notes)."""

    def __init__(self, ws: Workspace, backend: str, session: ClusterSession) -> None:
        self.local: Backend = make_backend(ws, backend)  # names and identities; renders nothing
        self.name = self.local.name
        self.version = self.local.version
        self.supported_tags = self.local.supported_tags
        self.session = session
        ray, options = session.ray, session.options
        count = options.actors or default_actors(session)
        actor = ray.remote(
            num_cpus=1, num_gpus=options.actor_gpus,
            max_restarts=options.retries, max_task_retries=options.retries,
        )(RenderActor)  # fmt: skip
        self.actors = [
            actor.remote(str(ws.root), backend, options.threads) for _ in range(max(1, count))
        ]
        self.per_actor = max(1, self.local.batch_size)
        self.batch_size = self.per_actor * len(self.actors)
        """One batch for each actor per :meth:`render_many` call."""

    def cache_identity(self, voice: str) -> dict[str, object]:
        return self.local.cache_identity(voice)

    def render(self, line: Line, seed: int) -> Rendered:
        return self.render_many([(line, seed)])[0]

    def render_many(self, items: Sequence[tuple[Line, int]]) -> list[Rendered]:
        ray = self.session.ray
        chunks = [list(items[i : i + self.per_actor]) for i in range(0, len(items), self.per_actor)]
        refs = [
            self.actors[n % len(self.actors)].render_many.remote(chunk)
            for n, chunk in enumerate(chunks)
        ]
        out: list[Rendered] = []
        for chunk, ref in zip(chunks, refs, strict=True):
            try:
                out += ray.get(ref)
            except ray.exceptions.RayError as exc:
                where = ", ".join(f"script line {line.source_line}" for line, _ in chunk)
                raise ClusterError(
                    f"{where}: rendering on Ray failed after {self.session.options.retries} "
                    f"retries ({one_line(exc, first_line=True)}); see the Ray logs, then "
                    "render again (finished lines are cached)"
                ) from exc
        return out

    def pids(self) -> list[int]:
        """The actors' process ids (their workers)."""
        ray = self.session.ray
        return [int(pid) for pid in ray.get([a.pid.remote() for a in self.actors])]

    def close(self) -> None:
        """End the actors (a cluster that outlives the run keeps no model loaded for it)."""
        for actor in self.actors:
            self.session.ray.kill(actor, no_restart=True)
        self.actors = []


def default_actors(session: ClusterSession) -> int:
    """One actor per GPU share when actors hold GPUs, else one per CPU."""
    resources = session.resources()
    gpus = session.options.actor_gpus
    if gpus > 0:
        return max(1, int(resources.get("GPU", 0) / gpus))
    return max(1, int(resources.get("CPU", 1)))


@contextlib.contextmanager
def cluster_backend(
    ws: Workspace, backend: str, session: ClusterSession
) -> Iterator[ClusterBackend]:
    """A :class:`ClusterBackend` for the ``with`` block; its actors end with it."""
    engine = ClusterBackend(ws, backend, session)
    try:
        yield engine
    finally:
        engine.close()
