"""Ingest on Ray: one task per recording (decode, VAD, plan, conditioning, QC).

Each task reads its recording from the workspace (which every node sees at the same path,
a shared filesystem), decodes into its own temporary folder in ``<workspace>/.tmp/`` and
returns the segments with their conditioned samples; the driver writes the WAVs and commits
each recording's catalog transaction in file order (:func:`core.dataset.ingest.ingest` with
the cutter made here). The analysis passes (transcription, speaker filter) then run on
actors (:mod:`core.cluster.analysis`), over segments still lacking results.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Sequence
from typing import Any

from core.cluster.session import ClusterSession
from core.cluster.threads import pin_threads
from core.dataset.ingest import CutRecording, Cutter, cut_recording
from core.errors import ClusterError, PodforgeError, one_line
from core.records import Recording
from core.workspace import Workspace


def cut_task(root: str, rec: Recording, threads: int) -> CutRecording | PodforgeError:
    """What one Ray task runs: :func:`cut_recording` without writing; a user-caused failure
    comes back as the error (to be recorded for the file), not raised."""
    pin_threads(threads)
    try:
        return cut_recording(Workspace.open(root), rec, lambda _p: None, write=False)
    except PodforgeError as exc:
        return exc


def ray_cutter(session: ClusterSession) -> Cutter:
    """A :data:`~core.dataset.ingest.Cutter` that cuts each recording in a Ray task (one CPU,
    ``options.retries`` retries when its worker dies), a few per CPU in flight at a time."""
    ray = session.ray
    options = session.options
    task = ray.remote(num_cpus=1, max_retries=options.retries, retry_exceptions=False)(cut_task)
    window = max(2, 2 * int(session.resources().get("CPU", 1)))

    def cutter(ws: Workspace, recs: Sequence[Recording]) -> Iterator[CutRecording | PodforgeError]:
        pending: deque[tuple[Recording, Any]] = deque()
        queue = iter(recs)
        try:
            while True:
                while len(pending) < window and (rec := next(queue, None)) is not None:
                    pending.append((rec, task.remote(str(ws.root), rec, options.threads)))
                if not pending:
                    return
                rec, ref = pending.popleft()
                yield _result(ray, rec, ref, options.retries)
        finally:
            for _, ref in pending:  # stopped early (an error, Ctrl-C): no work left behind
                ray.cancel(ref, force=True)

    return cutter


def _result(ray: Any, rec: Recording, ref: Any, retries: int) -> CutRecording | PodforgeError:
    try:
        out: CutRecording | PodforgeError = ray.get(ref)
    except ray.exceptions.RayError as exc:
        return ClusterError(
            f"{rec.original_name}: its Ray task failed after {retries} retries "
            f"({one_line(exc, first_line=True)}); see the Ray logs, then run the ingest again"
        )
    return out
