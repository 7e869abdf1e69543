"""The training dashboard on recorded and live run folders (files only, no model)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.widgets import DataTable, Static

from core.training.progress import RunView, curve, memory_line
from core.training.protocol import read_status, write_status
from core.training.runs import create_run
from core.workspace import Workspace
from tests.conftest import notified, tables_settled
from tui.app import PodforgeApp
from tui.screens.training import TrainingScreen

ROOT = Path(__file__).resolve().parents[1]
SIZE = (130, 36)


pytestmark = pytest.mark.usefixtures("no_color_unset")


class TrainingApp(PodforgeApp):
    def initial_screen(self) -> TrainingScreen:
        return TrainingScreen(self.workspace)


RUN_ID = "20261121-120000-alice"


def _recorded_run(ws: Workspace, state: str = "stopped") -> Path:
    """A run folder as a worker leaves it: 40 steps, 2 evals, a checkpoint, a log."""
    run_dir = create_run(ws, "alice", steps=100, run_id=RUN_ID)
    status = replace(
        read_status(run_dir), state=state, step=40,  # type: ignore[arg-type]
        started_at="2026-11-21T12:00:00+00:00", updated_at="2026-11-21T12:05:00+00:00",
    )  # fmt: skip
    write_status(run_dir, status)
    lines = []
    for step in range(1, 41):
        loss, when = 6.0 * 0.97**step, 1000 + step * 2.5
        lines.append(
            f'{{"event": "step", "time": {when}, "step": {step}, "epoch": 0, '
            f'"loss": {loss:.4f}, "lr": 0.0001, "grad_norm": 1.0, "samples_per_s": 6.4, '
            '"vram_allocated_mb": null, "vram_reserved_mb": null, "vram_peak_mb": null, '
            '"gpu_total_mb": null, "rss_mb": 1843.0}'
        )
        if step % 20 == 0:
            lines.append(
                f'{{"event": "eval", "time": {when}, "step": {step}, '
                f'"eval_loss": {loss + 0.3:.4f}}}'
            )
    lines.append('{"event": "checkpoint", "time": 1100.0, "step": 40, "path": "checkpoints/s"}')
    half = '{"event": "step", "ti'  # the worker is mid-write
    (run_dir / "metrics.jsonl").write_text("\n".join(lines) + "\n" + half)
    log = "".join(f"12:00:{i:02d} INFO step {i} loss ...\n" for i in range(40))
    (run_dir / "worker.log").write_text(log)
    return run_dir


async def _loaded(pilot: Pilot[None], rows: int) -> TrainingScreen:
    for _ in range(200):
        await pilot.pause(0.02)
        screen = pilot.app.screen
        if not isinstance(screen, TrainingScreen):
            continue
        if screen.query_one("#runs", DataTable).row_count == rows and (rows == 0 or screen.views):
            return screen
    raise AssertionError("training screen never showed the runs")


async def test_recorded_run_is_shown(workspace: Workspace) -> None:
    _recorded_run(workspace)
    app = TrainingApp(workspace)
    async with app.run_test(size=SIZE) as pilot:
        screen = await _loaded(pilot, 1)
        row = [str(c) for c in screen.query_one("#runs", DataTable).get_row_at(0)]
        assert row[:4] == [RUN_ID, "alice", "stopped", "40/100"]
        assert row[4] == f"{6.0 * 0.97**40:.4f}"
        stats = str(screen.query_one("#run-stats", Static).render())
        assert "step 40/100" in stats and "6.4 samples/s" in stats and "RSS 1.80 GB" in stats
        assert "step 39 loss" in str(screen.query_one("#run-log", Static).render())
        view = screen.views[RUN_ID]
        assert len(view.steps) == 40 and view.eval_steps == [20, 40]


async def test_live_updates_while_a_writer_appends(workspace: Workspace) -> None:
    run_dir = _recorded_run(workspace, state="running")
    writer = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time\n"
         "from pathlib import Path\n"
         "from core.training.protocol import MetricsWriter, update_status\n"
         "d = Path(sys.argv[1]); update_status(d, pid=__import__('os').getpid())\n"
         "w = MetricsWriter(d)\n"
         "with open(d / 'metrics.jsonl', 'a') as fh: fh.write('me\": 1, \"bad\": 1}\\n')\n"
         "for s in range(41, 61):\n"
         "    w.write('step', step=s, loss=0.5, lr=1e-4, samples_per_s=7.0, rss_mb=1900.0)\n"
         "    update_status(d, step=s); time.sleep(0.05)\n"
         "time.sleep(30)\n", str(run_dir)],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    try:
        app = TrainingApp(workspace)
        async with app.run_test(size=SIZE) as pilot:
            screen = await _loaded(pilot, 1)
            for _ in range(300):
                await pilot.pause(0.05)
                row = [str(c) for c in screen.query_one("#runs", DataTable).get_row_at(0)]
                if row[3] == "60/100":
                    break
            assert row[2] == "running" and row[3] == "60/100" and row[4] == "0.5000"
            writer.send_signal(signal.SIGKILL)
            writer.wait()
            for _ in range(100):
                await pilot.pause(0.05)
                row = [str(c) for c in screen.query_one("#runs", DataTable).get_row_at(0)]
                if row[2] == "failed":
                    break
            assert row[2] == "failed"
            assert "stopped without saying why" in str(
                screen.query_one("#run-state", Static).render()
            )
    finally:
        if writer.poll() is None:
            writer.kill()


async def test_keys_without_a_model(workspace: Workspace) -> None:
    _recorded_run(workspace)
    app = TrainingApp(workspace)
    async with app.run_test(size=SIZE) as pilot:
        await _loaded(pilot, 1)
        await pilot.press("x")  # stopped run: not running
        messages = await notified(pilot, lambda ms: any("not running" in m for m in ms))
        assert any("not running" in m for m in messages)
        await pilot.press("l")
        await pilot.pause(0.1)
        assert app.screen.__class__.__name__ == "LogScreen"
        await pilot.press("escape")
        await pilot.press("t")
        await pilot.pause(0.1)
        assert app.screen.__class__.__name__ == "NewRunScreen"
        await pilot.press("escape")
        await pilot.pause(0.1)
        assert isinstance(app.screen, TrainingScreen)
        assert len(list(workspace.runs_dir.iterdir())) == 1  # cancelled: no run created


async def test_empty_workspace_says_how_to_start(workspace: Workspace) -> None:
    app = TrainingApp(workspace)
    async with app.run_test(size=SIZE) as pilot:
        screen = await _loaded(pilot, 0)
        await pilot.pause(0.1)
        assert "Press t" in str(screen.query_one("#runs-empty", Static).render())


def test_snapshot_training_dashboard(workspace: Workspace, snap_compare) -> None:  # type: ignore[no-untyped-def]
    _recorded_run(workspace)

    async def settle(pilot: Pilot[None]) -> None:
        await _loaded(pilot, 1)
        await tables_settled(pilot)

    assert snap_compare(TrainingApp(workspace), terminal_size=SIZE, run_before=settle)


def test_run_view_and_curve() -> None:
    view = RunView()
    view.add(
        [{"event": "step", "step": s, "loss": 1.0 / s, "time": 10.0 + s} for s in range(1, 11)]
    )
    assert view.seconds_per_step() == pytest.approx(1.0)
    assert view.eta_seconds(20) == pytest.approx(10.0)
    xs, ys = curve(list(range(1000)), [float(i) for i in range(1000)], max_points=100)
    assert len(xs) == 100 and xs[-1] == 999 and ys[0] == pytest.approx(4.5)
    assert memory_line({"vram_allocated_mb": 2048, "vram_reserved_mb": 3072, "vram_peak_mb": 4096,
                        "gpu_total_mb": 24576}) == (
        "VRAM 2.0 GB allocated, 3.0 GB reserved, peak 4.0 GB of 24.0 GB")  # fmt: skip
    assert memory_line({"rss_mb": 1024}).startswith("RSS 1.00 GB")


async def test_quality_evals_are_plotted(workspace: Workspace) -> None:
    run_dir = _recorded_run(workspace)
    with (run_dir / "metrics.jsonl").open("a") as fh:
        fh.write('ep": 41}\n')  # completes the half line (a step without loss)
        fh.write('{"event": "eval", "step": 40, "eval_loss": 2.0, "wer": 0.4, "similarity": 0.6}\n')
    app = TrainingApp(workspace)
    async with app.run_test(size=SIZE) as pilot:
        screen = await _loaded(pilot, 1)
        await pilot.pause(0.2)
        assert screen.query_one("#quality-plot").display
        assert "WER 40% · sim 0.60" in str(screen.query_one("#run-stats", Static).render())


async def test_a_new_run_without_data_is_refused_before_any_worker_starts(
    workspace: Workspace,
) -> None:
    """`t` runs the same pre-flight checks as `podforge train`: alice has consent but no
    accepted segments, so the form ends in one error notification and no run folder."""
    app = TrainingApp(workspace)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("t")
        await pilot.pause()
        await pilot.click("#start")
        for _ in range(200):  # the checks run in a thread worker
            await pilot.pause(0.05)
            if any(n.severity == "error" for n in app._notifications):
                break
        errors = [n.message for n in app._notifications if n.severity == "error"]
        assert len(errors) == 1 and "accepted" in errors[0], errors
        assert not workspace.runs_dir.exists() or not any(workspace.runs_dir.iterdir())
