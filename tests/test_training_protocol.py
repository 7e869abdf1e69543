"""The worker's status/metrics files: atomic status, tolerant incremental metrics, stale pids."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from core.training.protocol import (
    METRICS_NAME,
    MetricsTail,
    MetricsWriter,
    Status,
    effective_status,
    now_iso,
    read_metrics,
    read_status,
    update_status,
    write_status,
)


def _status(pid: int | None, state: str = "running") -> Status:
    return Status(state=state, pid=pid, step=3, max_steps=10, started_at=now_iso(),  # type: ignore[arg-type]
                  updated_at=now_iso(), speaker="alice")  # fmt: skip


def test_status_round_trip_and_update(tmp_path: Path) -> None:
    write_status(tmp_path, _status(os.getpid()))
    assert read_status(tmp_path).step == 3
    updated = update_status(tmp_path, step=4, state="stopping")
    assert read_status(tmp_path) == updated and updated.step == 4
    assert [p.name for p in tmp_path.iterdir()] == ["status.json"]


def test_missing_or_corrupt_status_reads_as_failed(tmp_path: Path) -> None:
    assert read_status(tmp_path).state == "failed"
    (tmp_path / "status.json").write_text("{ half")
    status = read_status(tmp_path)
    assert status.state == "failed" and "unreadable" in (status.error or "")


def test_a_killed_worker_is_shown_failed(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    write_status(tmp_path, _status(proc.pid))
    assert effective_status(tmp_path).state == "running"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    shown = effective_status(tmp_path)
    assert shown.state == "failed" and "stopped without saying why" in (shown.error or "")
    write_status(tmp_path, _status(proc.pid, state="finished"))
    assert effective_status(tmp_path).state == "finished"  # finished runs stay finished


def test_metrics_tail_tolerates_a_half_written_last_line(tmp_path: Path) -> None:
    path = tmp_path / METRICS_NAME
    path.write_text('{"event": "step", "step": 1}\n{"event": "step", "st')
    tail = MetricsTail(path)
    assert [e["step"] for e in tail.read_new()] == [1]
    with path.open("a") as fh:
        fh.write('ep": 2}\nnot json\n{"event": "step", "step": 3}\n')
    assert [e["step"] for e in tail.read_new()] == [2, 3]
    assert tail.skipped == 1
    assert tail.read_new() == []


_WRITER = """
import sys, time
from pathlib import Path
from core.training.protocol import MetricsWriter
w = MetricsWriter(Path(sys.argv[1]))
for step in range(200):
    w.write("step", step=step, loss=1.0 / (step + 1), vram_allocated_mb=None)
    time.sleep(0.002)
w.close()
"""


def test_live_reader_while_a_writer_process_appends(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(tmp_path)], cwd=root,
                            env={**os.environ, "PYTHONPATH": str(root)})  # fmt: skip
    tail = MetricsTail(tmp_path / METRICS_NAME)
    seen: list[int] = []
    deadline = time.monotonic() + 30
    while proc.poll() is None and time.monotonic() < deadline:
        seen += [e["step"] for e in tail.read_new()]
        time.sleep(0.003)
    seen += [e["step"] for e in tail.read_new()]
    assert seen == list(range(200)) and tail.skipped == 0


def test_writer_events_carry_time_and_nulls(tmp_path: Path) -> None:
    w = MetricsWriter(tmp_path)
    w.write("step", step=1, loss=0.5, vram_allocated_mb=None, rss_mb=120.0)
    w.write("checkpoint", path="checkpoints/step-1")
    w.close()
    events = read_metrics(tmp_path)
    assert events[0]["event"] == "step" and events[0]["vram_allocated_mb"] is None
    assert isinstance(events[0]["time"], float) and events[1]["path"] == "checkpoints/step-1"
    assert (
        json.loads((tmp_path / METRICS_NAME).read_text().splitlines()[1])["event"] == "checkpoint"
    )
