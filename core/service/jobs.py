"""Episode render jobs: ``render_episode`` in the background, one at a time, with progress.

A job is accepted only for a ``.md`` script inside the workspace (symbolic links resolved
first) and only when its episode's render lock (:class:`core.episodes.lock.EpisodeLock`) is
free: the lock is taken when the job is accepted and held until it ends, so the app, a
``podforge render`` and the service never render one episode at once. Jobs run in their own
thread, one after another; their lines go through the shared synthesis queue
(:class:`~core.service.queue.QueuedBackend`), so they share the loaded model with the
synthesis requests. Each change of a job's state or progress bumps its ``version``, which
the event stream watches. At most ``Limits.max_jobs`` jobs wait or run; the newest
``Limits.kept_jobs`` finished ones are remembered.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from core.episodes.lock import EpisodeLock
from core.episodes.render import is_stage, render_episode
from core.errors import PodforgeError
from core.progress import Cancelled, now_iso
from core.service.errors import BadRequest, Busy, NotFound
from core.service.limits import Limits
from core.service.queue import QueuedBackend, SynthesisQueue
from core.service.watch import SettingsWatch
from core.service.worker import Worker
from core.workspace import Workspace

log = logging.getLogger(__name__)

JobState = Literal["queued", "running", "done", "failed", "cancelled"]
FINISHED: frozenset[str] = frozenset({"done", "failed", "cancelled"})


@dataclass
class Job:
    id: str
    script: str
    """The script, relative to the workspace."""
    episode: str
    backend: str
    seed: int
    retakes: int | None
    lock: EpisodeLock
    state: JobState = "queued"
    done: int = 0
    total: int = 0
    what: str = ""
    stage: bool = False
    error: str | None = None
    files: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    created: str = field(default_factory=now_iso)
    finished_at: str | None = None
    version: int = 0
    cancel: threading.Event = field(default_factory=threading.Event)

    @property
    def finished(self) -> bool:
        return self.state in FINISHED

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "state": self.state,
            "script": self.script,
            "episode": self.episode,
            "backend": self.backend,
            "seed": self.seed,
            "progress": {"done": self.done, "total": self.total, "what": self.what,
                         "stage": self.stage},
            "error": self.error,
            "files": self.files,
            "warnings": self.warnings,
            "created": self.created,
            "finished": self.finished_at,
            "version": self.version,
        }  # fmt: skip


def script_in_workspace(ws: Workspace, script: str) -> Path:
    """``script`` (relative to the workspace or to ``scripts/``, or absolute) as a ``.md``
    file inside the workspace, or a one-line :class:`BadRequest` / :class:`NotFound`."""
    root = ws.root.resolve()
    raw = Path(script)
    candidates = [raw] if raw.is_absolute() else [ws.root / raw, ws.scripts_dir / raw]
    for candidate in candidates:
        path = candidate.resolve()
        if not path.is_relative_to(root):
            raise BadRequest(
                f"{script}: outside the workspace; give a script inside it, like scripts/welcome.md"
            )
        if path.suffix != ".md":
            raise BadRequest(f"{script}: not an episode script (a .md file in scripts/)")
        if path.is_file():
            return path
    raise NotFound(f"{script}: no such script in the workspace; see GET /v1/scripts")


class RenderJobs:
    """The service's render jobs and the thread that runs them."""

    def __init__(
        self, watch: SettingsWatch, queue_for: Callable[[str], SynthesisQueue], limits: Limits
    ) -> None:
        self.watch = watch
        self.ws = watch.ws
        self.queue_for = queue_for
        self.limits = limits
        self._jobs: dict[str, Job] = {}
        self._pending: deque[Job] = deque()
        self._worker = Worker("render-jobs", self._run)

    def counts(self) -> dict[str, int]:
        with self._worker.cond:
            jobs = list(self._jobs.values())
        return {state: sum(1 for j in jobs if j.state == state) for state in ("queued", "running")}

    def submit(self, script: str, backend: str, seed: int, retakes: int | None) -> Job:
        """Accept a render of ``script``: checked, its episode locked, queued."""
        path = script_in_workspace(self.ws, script)
        with self._worker.cond:
            self._worker.check_open()
            active = sum(1 for job in self._jobs.values() if not job.finished)
            if active >= self.limits.max_jobs:
                raise Busy(
                    f"{active} render jobs are queued or running (the most the service "
                    "takes); try again when one has finished",
                    retry_after=30,
                )
            lock = EpisodeLock(self.ws, path).acquire()  # EpisodeBusyError: 409
            job = Job(
                id=secrets.token_hex(8),
                script=path.relative_to(self.ws.root.resolve()).as_posix(),
                episode=lock.name,
                backend=backend,
                seed=seed,
                retakes=retakes,
                lock=lock,
            )
            self._jobs[job.id] = job
            self._pending.append(job)
            self._forget_old()
            self._worker.wake()
        return job

    def get(self, job_id: str) -> Job:
        with self._worker.cond:
            job = self._jobs.get(job_id)
        if job is None:
            raise NotFound(f"no render job {job_id!r}; it never existed or was forgotten")
        return job

    def cancel(self, job_id: str) -> Job:
        """Ask ``job_id`` to stop: a queued job ends now, a running one after its line."""
        job = self.get(job_id)
        job.cancel.set()
        with self._worker.cond:
            if job in self._pending:
                self._pending.remove(job)
                self._finish(job, "cancelled")
        return job

    def close(self, timeout: float = 30.0) -> None:
        """Cancel every job (the running one stops after its line) and wait for the thread."""
        with self._worker.cond:
            self._worker.close()
            for job in self._jobs.values():
                job.cancel.set()
            while self._pending:
                self._finish(self._pending.popleft(), "cancelled")
        self._worker.join(timeout)

    # -- the job thread ---------------------------------------------------------------
    def _forget_old(self) -> None:
        finished = [job_id for job_id, job in self._jobs.items() if job.finished]
        for job_id in finished[: max(0, len(finished) - self.limits.kept_jobs)]:
            del self._jobs[job_id]

    def _finish(self, job: Job, state: JobState, error: str | None = None) -> None:
        job.state = state
        job.error = error
        job.finished_at = now_iso()
        job.lock.release()
        job.version += 1

    def _run(self) -> None:
        while True:
            with self._worker.cond:
                if not self._worker.wait_for(self._pending):
                    return
                job = self._pending.popleft()
                job.state = "running"
                job.version += 1
            state, error = self._execute(job)
            with self._worker.cond:
                self._finish(job, state, error)

    def _execute(self, job: Job) -> tuple[JobState, str | None]:
        def progress(done: int, total: int, what: str) -> None:
            job.done, job.total, job.what, job.stage = done, total, what, is_stage(what)
            job.version += 1

        try:
            self.watch.refresh()
            engine = QueuedBackend(self.queue_for(job.backend))
            result = render_episode(
                self.ws, self.ws.root / job.script, backend=engine, seed=job.seed,
                progress=progress, cancel=job.cancel.is_set, retakes=job.retakes,
            )  # fmt: skip
        except Cancelled:
            return "cancelled", None
        except PodforgeError as exc:
            return "failed", str(exc)
        except Exception:
            log.exception("render job %s (%s) failed", job.id, job.script)
            return "failed", "internal error in the service; its log has the details"
        out = result.exported
        paths = (out.wav, out.mp3, out.manifest, out.chapters, out.srt, out.vtt, out.transcript)
        job.files = [path.name for path in paths if path.is_file()]
        job.warnings = list(result.warnings)
        return "done", None
