"""Small text formatters shared by the screens and the CLI."""

from __future__ import annotations


def duration(seconds: float) -> str:
    """``83.4`` -> ``1:23``; ``3723`` -> ``1:02:03``."""
    total = round(seconds)
    hours, rest = divmod(total, 3600)
    mins, secs = divmod(rest, 60)
    return f"{hours}:{mins:02d}:{secs:02d}" if hours else f"{mins}:{secs:02d}"


def minutes(seconds: float) -> str:
    """``750`` -> ``12.5 min``."""
    return f"{seconds / 60:.1f} min"


BARS = "▁▂▃▄▅▆▇█"


def sparkline(values: list[float], low: float = 0.0, high: float = 1.0) -> str:
    """``values`` as one bar character each, ``low`` the lowest bar and ``high`` the top."""
    span = high - low if high > low else 1.0
    steps = len(BARS) - 1
    return "".join(BARS[round(min(max((v - low) / span, 0.0), 1.0) * steps)] for v in values)
