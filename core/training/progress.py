"""What a dashboard shows about a run, computed from its metrics events (pure functions).

Kept out of the screen so it is testable and cheap: ``RunView.add`` folds new events in,
``curve`` downsamples a series so a redraw stays cheap however long the run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

MAX_POINTS = 300


@dataclass
class RunView:
    """Running summary of one run's ``metrics.jsonl``."""

    steps: list[int] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    eval_steps: list[int] = field(default_factory=list)
    eval_losses: list[float] = field(default_factory=list)
    evals: list[dict[str, Any]] = field(default_factory=list)
    last: dict[str, Any] = field(default_factory=dict)
    checkpoints: list[str] = field(default_factory=list)
    quality_steps: list[int] = field(default_factory=list)
    wers: list[float] = field(default_factory=list)
    similarities: list[float] = field(default_factory=list)
    step_times: list[tuple[int, float]] = field(default_factory=list)

    def add(self, events: list[dict[str, Any]]) -> None:
        for e in events:
            kind = e.get("event")
            if kind == "step" and isinstance(e.get("step"), int):
                loss = e.get("loss")
                if isinstance(loss, int | float):
                    self.steps.append(e["step"])
                    self.losses.append(float(loss))
                self.last = e
                if isinstance(e.get("time"), int | float):
                    self.step_times.append((e["step"], float(e["time"])))
                    del self.step_times[:-50]
            elif kind == "eval" and isinstance(e.get("step"), int):
                self.evals.append(e)
                if isinstance(e.get("eval_loss"), int | float):
                    self.eval_steps.append(e["step"])
                    self.eval_losses.append(float(e["eval_loss"]))
                if isinstance(e.get("wer"), int | float) and isinstance(
                    e.get("similarity"), int | float
                ):
                    self.quality_steps.append(e["step"])
                    self.wers.append(float(e["wer"]))
                    self.similarities.append(float(e["similarity"]))
            elif kind == "checkpoint" and isinstance(e.get("path"), str):
                self.checkpoints.append(e["path"])

    def seconds_per_step(self) -> float | None:
        """Mean wall time per step over the last (up to 50) steps."""
        if len(self.step_times) < 2:
            return None
        (s0, t0), (s1, t1) = self.step_times[0], self.step_times[-1]
        return (t1 - t0) / (s1 - s0) if s1 > s0 else None

    def eta_seconds(self, max_steps: int) -> float | None:
        per = self.seconds_per_step()
        step = self.last.get("step")
        if per is None or not isinstance(step, int):
            return None
        return max(0.0, (max_steps - step) * per)


def curve(
    xs: list[int], ys: list[float], max_points: int = MAX_POINTS
) -> tuple[list[int], list[float]]:
    """At most ``max_points`` points: means of equal buckets (keeps the shape, drops the noise)."""
    n = len(xs)
    if n <= max_points:
        return list(xs), list(ys)
    out_x, out_y = [], []
    for b in range(max_points):
        lo, hi = b * n // max_points, (b + 1) * n // max_points
        out_x.append(xs[hi - 1])
        out_y.append(sum(ys[lo:hi]) / (hi - lo))
    return out_x, out_y


def memory_line(last: dict[str, Any]) -> str:
    """``VRAM 5.1 / 7.9 GB reserved, peak 9.2 of 24.0 GB`` on GPU, ``RSS 1.2 GB (CPU)`` else."""
    gb = 1024.0
    alloc, reserved = last.get("vram_allocated_mb"), last.get("vram_reserved_mb")
    peak, total = last.get("vram_peak_mb"), last.get("gpu_total_mb")
    if isinstance(alloc, int | float):
        text = f"VRAM {alloc / gb:.1f} GB allocated"
        if isinstance(reserved, int | float):
            text += f", {reserved / gb:.1f} GB reserved"
        if isinstance(peak, int | float):
            text += f", peak {peak / gb:.1f} GB"
        if isinstance(total, int | float):
            text += f" of {total / gb:.1f} GB"
        return text
    rss = last.get("rss_mb")
    return f"RSS {rss / gb:.2f} GB (CPU, no GPU)" if isinstance(rss, int | float) else "memory –"
