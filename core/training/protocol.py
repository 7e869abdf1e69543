"""The training worker's files: ``status.json`` and ``metrics.jsonl`` (docs/TRAINING.md).

The worker rewrites ``status.json`` atomically and appends one JSON object per line to
``metrics.jsonl`` (flushed after each). Readers (the dashboard, the home screen, tests)
only read files, so they can attach to a running worker at any time; a half-written last
line is skipped until it is complete. A worker that died without saying so (SIGKILL, OOM)
is recognised by its pid being gone while its state still says it runs.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from core.atomic import atomic_write_text
from core.progress import now_iso

State = Literal["starting", "running", "stopping", "finished", "failed", "stopped"]
LIVE_STATES: frozenset[str] = frozenset({"starting", "running", "stopping"})

STATUS_NAME = "status.json"
METRICS_NAME = "metrics.jsonl"
LOG_NAME = "worker.log"
CONFIG_NAME = "config.toml"


@dataclass(frozen=True)
class Status:
    """The content of ``status.json``."""

    state: State
    pid: int | None
    step: int
    max_steps: int
    started_at: str
    updated_at: str
    error: str | None = None
    speaker: str = ""

    @property
    def live(self) -> bool:
        return self.state in LIVE_STATES


def write_status(run_dir: Path, status: Status) -> None:
    atomic_write_text(run_dir / STATUS_NAME, json.dumps(asdict(status), indent=2) + "\n")


def update_status(run_dir: Path, **changes: Any) -> Status:
    """Read, change and rewrite ``status.json`` (stamping ``updated_at``)."""
    status = replace(read_status(run_dir), updated_at=now_iso(), **changes)
    write_status(run_dir, status)
    return status


def read_status(run_dir: Path) -> Status:
    """``status.json`` as it is; a missing or unreadable file reads as ``failed``."""
    try:
        data = json.loads((run_dir / STATUS_NAME).read_text(encoding="utf-8"))
        known = set(Status.__dataclass_fields__)
        return Status(**{k: v for k, v in data.items() if k in known})
    except (OSError, ValueError, TypeError) as exc:
        return Status(
            state="failed", pid=None, step=0, max_steps=0, started_at="", updated_at="",
            error=f"{run_dir / STATUS_NAME}: unreadable ({exc.__class__.__name__})",
        )  # fmt: skip


def pid_alive(pid: int | None) -> bool:
    """True when a process with ``pid`` exists (and is not a zombie)."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (exited, not yet reaped) is not alive for our purposes
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def effective_status(run_dir: Path) -> Status:
    """The status a reader should show: a live state whose worker is gone reads ``failed``."""
    status = read_status(run_dir)
    if status.live and not pid_alive(status.pid):
        return replace(
            status,
            state="failed",
            error=status.error
            or f"the worker (pid {status.pid}) stopped without saying why (killed, or out of "
            f"memory); see {run_dir / LOG_NAME}; resume with `podforge train --resume`",
        )
    return status


class MetricsWriter:
    """Appends events to ``metrics.jsonl``, one JSON object per line, flushed each time."""

    def __init__(self, run_dir: Path) -> None:
        self._fh = (run_dir / METRICS_NAME).open("a", encoding="utf-8")

    def write(self, event: str, **fields: Any) -> None:
        record = {"event": event, "time": round(time.time(), 3), **fields}
        self._fh.write(json.dumps(record, allow_nan=False, default=_jsonable) + "\n")
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()


@dataclass
class MetricsTail:
    """Incremental reader of ``metrics.jsonl``: each ``read_new`` returns complete new events.

    A last line without its newline (the worker is mid-write) is kept back until complete;
    a corrupt complete line is skipped and counted.
    """

    path: Path
    offset: int = 0
    skipped: int = 0
    _partial: bytes = field(default=b"", repr=False)

    def read_new(self) -> list[dict[str, Any]]:
        try:
            with self.path.open("rb") as fh:
                fh.seek(self.offset)
                chunk = fh.read()
        except FileNotFoundError:
            return []
        self.offset += len(chunk)
        data = self._partial + chunk
        lines = data.split(b"\n")
        self._partial = lines.pop()  # b"" when the data ended with a newline
        events = []
        for raw in lines:
            if not raw.strip():
                continue
            try:
                record = json.loads(raw)
            except ValueError:
                self.skipped += 1
                continue
            if isinstance(record, dict):
                events.append(record)
        return events


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """Every complete event of a run."""
    return MetricsTail(run_dir / METRICS_NAME).read_new()


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
