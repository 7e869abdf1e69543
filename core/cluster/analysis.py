"""Ingest's analysis passes on Ray: transcription and the speaker filter on actors.

Each :class:`AnalysisActor` loads the ASR model or the speaker model once (on first use) and
runs the batches it is sent, reading the segment files from the workspace (a shared
filesystem, like every cluster path here). :func:`ray_analysers` hands the batches to the
actors through Ray's ``ActorPool`` (results come back in order) and gives
:func:`core.dataset.ingest.analyse` the same functions a local run has, so the driver still
writes every result to the catalog in order. A model that cannot load comes back as the same
one-line error as locally (the stage is skipped); a worker that dies is restarted and its
batch run again (``retries``), then it is one :class:`~core.errors.ClusterError` line.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from core.audio.types import FloatArray
from core.cluster.session import ClusterSession
from core.cluster.threads import pin_threads
from core.dataset.ingest import Analysers
from core.errors import ClusterError, PodforgeError, one_line
from core.workspace import Workspace


class AnalysisActor:
    """One Ray actor: the ASR or speaker model of the workspace at ``root``, loaded once."""

    def __init__(self, root: str, kind: str, threads: int) -> None:
        pin_threads(threads)
        self.ws = Workspace.open(root)
        self.kind = kind
        self.run: Callable[[Sequence[Sequence[Path]]], Iterator[Any]] | None = None

    def load(self) -> PodforgeError | None:
        """Load the model now; a user-caused failure comes back as the error."""
        from core.dataset.ingest import LOCAL_ANALYSERS

        try:
            if self.run is None:
                make = (
                    LOCAL_ANALYSERS.transcriber if self.kind == "asr" else LOCAL_ANALYSERS.embedder
                )
                self.run = make(self.ws)
        except PodforgeError as exc:
            return exc
        return None

    def batch(self, paths: Sequence[str]) -> list[str] | FloatArray:
        failed = self.load()
        if failed is not None:
            raise failed
        assert self.run is not None  # nosec B101  # loaded above: type narrowing only
        result: list[str] | FloatArray = next(iter(self.run([[Path(p) for p in paths]])))
        return result


def ray_analysers(session: ClusterSession) -> Analysers:
    """:class:`~core.dataset.ingest.Analysers` whose batches run on Ray actors (one per CPU,
    or per GPU share with ``actor_gpus``), ended when the pass is done."""

    def factory(kind: str) -> Any:
        def make(ws: Workspace) -> Any:
            return _pool(session, ws, kind)

        return make

    return Analysers(transcriber=factory("asr"), embedder=factory("speaker"))


def _pool(session: ClusterSession, ws: Workspace, kind: str) -> Any:
    from core.cluster.render import default_actors

    ray, options = session.ray, session.options
    actor = ray.remote(
        num_cpus=1, num_gpus=options.actor_gpus,
        max_restarts=options.retries, max_task_retries=options.retries,
    )(AnalysisActor)  # fmt: skip
    count = max(1, options.actors or default_actors(session))
    actors = [actor.remote(str(ws.root), kind, options.threads) for _ in range(count)]
    try:
        for failed in ray.get([a.load.remote() for a in actors]):
            if failed is not None:
                raise failed  # the model cannot load: the same line as a local run
    except ray.exceptions.RayError as exc:
        _end(ray, actors)
        raise ClusterError(
            f"the {kind} model's Ray actors failed to start ({one_line(exc, first_line=True)}); "
            "see the Ray logs, then run the ingest again"
        ) from exc
    except PodforgeError:
        _end(ray, actors)
        raise

    def run(batches: Sequence[Sequence[Path]]) -> Iterator[Any]:
        from ray.util import ActorPool

        pool = ActorPool(actors)
        try:
            results = pool.map(
                lambda a, paths: a.batch.remote([str(p) for p in paths]), list(batches)
            )
            yield from _guarded(ray, results, kind)
        finally:
            _end(ray, actors)

    return run


def _guarded(ray: Any, results: Iterator[Any], kind: str) -> Iterator[Any]:
    while True:
        try:
            result = next(results)
        except StopIteration:
            return
        except ray.exceptions.RayError as exc:
            raise ClusterError(
                f"a {kind} batch failed on Ray after its retries ({one_line(exc, first_line=True)})"
                "; see the Ray logs, then run the ingest again (finished segments are kept)"
            ) from exc
        yield result


def _end(ray: Any, actors: Sequence[Any]) -> None:
    for a in actors:
        ray.kill(a, no_restart=True)
