"""The synthesis queue: one backend, one worker thread, requests batched into ``render_many``.

Each :class:`SynthesisQueue` owns one backend from
:func:`core.episodes.synthesis.backends.make_backend` (the ``csm`` one holds the model: one
model in memory for every request) and runs every call on it in its own worker thread, so
the event loop never blocks and the backend is never used from two threads. Requests wait
in order; the worker takes the first and the ones behind it, up to the backend's
``batch_size`` lines, and renders them in one ``render_many`` (one batched generation for
CSM; the draft voice's batch size is 1). Under load requests pile up while a batch
generates and go together into the next one, so no request waits for a timer.

Before each batch the workspace settings are refreshed (:class:`~core.service.watch.
SettingsWatch`), the backend is made again when the settings it was made from changed, and
each voice in the batch passes ``cache_identity`` -- the consent gate and the voice check
``render_episode`` runs before synthesis -- so a refused voice fails its own requests
only. A voice whose files changed (exported again) makes the backend load it afresh. A
batch that fails is retried request by request, so each request gets its own answer.

A full queue raises :class:`~core.service.errors.Busy` (429 with ``Retry-After``); render
jobs hand ``render_episode`` a :class:`QueuedBackend`, whose calls go through the same
queue (and are never refused for being full: the job list is bounded instead).
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, TypeVar

from core.episodes.script import Line
from core.episodes.synthesis.backends import Backend, Rendered, make_backend
from core.errors import PodforgeError
from core.service.errors import Busy, Closing
from core.service.watch import SettingsWatch
from core.service.worker import Worker

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass
class _Task:
    items: list[tuple[Line, int]]
    """Lines to render (empty for a call)."""
    call: Callable[[Backend], Any] | None
    future: Future[Any] = field(default_factory=Future)


@dataclass
class QueueStats:
    batches: int = 0
    lines: int = 0
    largest_batch: int = 0
    busy_s: float = 0.0
    """Seconds spent rendering."""

    @property
    def seconds_per_line(self) -> float:
        return self.busy_s / self.lines if self.lines else 0.0


class SynthesisQueue:
    """One backend's queue and worker thread (started on the first request)."""

    def __init__(self, watch: SettingsWatch, backend: str, capacity: int) -> None:
        self.watch = watch
        self.backend_name = backend
        self.capacity = capacity
        self.stats = QueueStats()
        self._tasks: deque[_Task] = deque()
        self._worker = Worker(f"synthesis-{backend}", self._run)
        self._backend: Backend | None = None
        self._made_from: object = None
        self._identities: dict[str, dict[str, object]] = {}
        self._running = 0  # lines in the batch being rendered

    # -- the callers' side ----------------------------------------------------------
    @property
    def depth(self) -> int:
        """Requests waiting, not counting the batch being rendered."""
        with self._worker.cond:
            return len(self._tasks)

    @property
    def rendering(self) -> int:
        """Lines in the batch being rendered now."""
        return self._running

    @property
    def loaded(self) -> bool:
        """Whether the backend has rendered (for CSM: the model is in memory)."""
        return self._backend is not None and self.stats.batches > 0

    def submit(self, items: Sequence[tuple[Line, int]], *, internal: bool = False) -> Future[Any]:
        """Queue ``items`` for rendering; the future's result is their ``Rendered`` s. A full
        queue raises :class:`Busy` (``internal`` calls, a render job's, are never refused)."""
        return self._put(_Task(list(items), None), internal=internal)

    def call(self, fn: Callable[[Backend], T]) -> Future[T]:
        """Run ``fn(backend)`` on the worker thread, in turn with the renders."""
        return self._put(_Task([], fn), internal=True)

    def _put(self, task: _Task, *, internal: bool) -> Future[Any]:
        with self._worker.cond:
            self._worker.check_open()
            if not internal and len(self._tasks) >= self.capacity:
                raise Busy(
                    f"the {self.backend_name} synthesis queue is full ({self.capacity} "
                    "requests waiting); try again shortly",
                    retry_after=self.retry_after(),
                )
            self._tasks.append(task)
            self._worker.wake()
        return task.future

    def retry_after(self) -> int:
        """Seconds until the queue has likely drained by one batch's worth (at least 1)."""
        per_line = self.stats.seconds_per_line or 1.0
        return max(1, math.ceil(per_line * (len(self._tasks) + 1) / self._batch_size()))

    def close(self, timeout: float = 30.0) -> None:
        """Stop taking requests, fail the waiting ones, and let the batch in hand finish."""
        with self._worker.cond:
            self._worker.close()
            waiting = list(self._tasks)
            self._tasks.clear()
        for task in waiting:
            task.future.set_exception(Closing("the service shut down before this request ran"))
        self._worker.join(timeout)

    # -- the worker -----------------------------------------------------------------
    def _batch_size(self) -> int:
        return max(1, getattr(self._backend, "batch_size", 1))

    def _run(self) -> None:
        while True:
            with self._worker.cond:
                if not self._worker.wait_for(self._tasks):
                    return
            try:
                backend = self._ensure()
            except Exception as exc:  # every waiting request gets the reason
                with self._worker.cond:
                    failed = list(self._tasks)
                    self._tasks.clear()
                for task in failed:
                    task.future.set_exception(exc)
                continue
            with self._worker.cond:
                batch = self._take()
            self._serve(backend, batch)

    def _ensure(self) -> Backend:
        """The backend for the workspace's current settings (made again when they changed)."""
        settings = self.watch.refresh()
        made_from = settings.speakers if self.backend_name == "draft" else settings.models
        if self._backend is None or made_from != self._made_from:
            self._drop()
            self._backend = make_backend(self.watch.ws, self.backend_name)
            self._made_from = made_from
        return self._backend

    def _drop(self) -> None:
        if self._backend is not None:
            log.info("%s backend made again: its settings or a voice changed", self.backend_name)
        self._backend = None
        self._identities.clear()

    def _take(self) -> list[_Task]:
        """The first task and the line tasks behind it, up to ``batch_size`` lines."""
        first = self._tasks.popleft()
        batch = [first]
        if first.call is not None:
            return batch
        lines = len(first.items)
        size = self._batch_size()
        while self._tasks and self._tasks[0].call is None:
            nxt = self._tasks[0]
            if lines + len(nxt.items) > size:
                break
            batch.append(self._tasks.popleft())
            lines += len(nxt.items)
        return batch

    def _serve(self, backend: Backend, batch: list[_Task]) -> None:
        call = batch[0].call
        if call is not None:
            _settle(batch[0], lambda: call(backend))
            return
        refused = self._check_voices(backend, {ln.voice for task in batch for ln, _ in task.items})
        if self._backend is not backend:  # a voice changed on disk: load afresh
            backend = self._ensure()
        ready = []
        for task in batch:
            reason = next((refused[ln.voice] for ln, _ in task.items if ln.voice in refused), None)
            if reason is not None:
                task.future.set_exception(reason)
            else:
                ready.append(task)
        if ready:
            self._render(backend, ready)

    def _check_voices(self, backend: Backend, voices: set[str]) -> dict[str, BaseException]:
        """Each voice through ``cache_identity`` (consent, voice folder); the refusals."""
        refused: dict[str, BaseException] = {}
        for voice in sorted(voices):
            try:
                identity = backend.cache_identity(voice)
            except PodforgeError as exc:
                refused[voice] = exc
                continue
            if self._identities.setdefault(voice, identity) != identity:
                self._drop()
        return refused

    def _render(self, backend: Backend, tasks: list[_Task]) -> None:
        items = [item for task in tasks for item in task.items]
        started = time.perf_counter()
        self._running = len(items)
        try:
            rendered = backend.render_many(items)
        except Exception as exc:
            if len(tasks) > 1:  # one request's problem must not fail the others
                for task in tasks:
                    self._render(backend, [task])
                return
            tasks[0].future.set_exception(exc)
            return
        finally:
            self._running = 0
        self.stats.batches += 1
        self.stats.lines += len(items)
        self.stats.largest_batch = max(self.stats.largest_batch, len(items))
        self.stats.busy_s += time.perf_counter() - started
        start = 0
        for task in tasks:
            task.future.set_result(rendered[start : start + len(task.items)])
            start += len(task.items)


def _settle(task: _Task, fn: Callable[[], Any]) -> None:
    try:
        task.future.set_result(fn())
    except Exception as exc:  # the caller's to handle, on its own thread
        task.future.set_exception(exc)


class QueuedBackend:
    """A :class:`~core.episodes.synthesis.backends.Backend` whose every call runs on a
    :class:`SynthesisQueue`'s worker: what a render job hands ``render_episode``, so its
    lines share the loaded model (and its batches) with the synthesis requests."""

    def __init__(self, queue: SynthesisQueue) -> None:
        self._queue = queue
        self.name, self.version, self.supported_tags, self.batch_size = queue.call(
            lambda b: (b.name, b.version, b.supported_tags, b.batch_size)
        ).result()

    def cache_identity(self, voice: str) -> dict[str, object]:
        identity: dict[str, object] = self._queue.call(lambda b: b.cache_identity(voice)).result()
        return identity

    def render(self, line: Line, seed: int) -> Rendered:
        return self.render_many([(line, seed)])[0]

    def render_many(self, items: Sequence[tuple[Line, int]]) -> list[Rendered]:
        rendered: list[Rendered] = self._queue.submit(items, internal=True).result()
        return rendered
