"""Accepted minutes against the workspace's target range, as one line with a bar."""

from __future__ import annotations

from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget


class TargetBar(Widget):
    """``accepted 12.5 min ████████░░░░│░░░░ target 30–90 min``.

    The bar spans 0 to the upper target; a tick marks the lower target. It turns
    green once the lower target is reached.
    """

    DEFAULT_CSS = """
    TargetBar { height: 1; }
    """

    minutes: reactive[float] = reactive(0.0)

    def __init__(self, low: float, high: float, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.low = low
        self.high = high

    def render(self) -> Text:
        label = f"accepted {self.minutes:5.1f} min "
        tail = f" target {self.low:g}–{self.high:g} min"
        width = max(10, self.size.width - len(label) - len(tail))
        filled = min(width, round(width * self.minutes / self.high)) if self.high else 0
        tick = min(width - 1, round(width * self.low / self.high)) if self.high else 0
        reached = self.minutes >= self.low
        cells = []
        for i in range(width):
            if i < filled:
                cells.append(("█", "green" if reached else "yellow"))
            elif i == tick:
                cells.append(("│", "bold"))
            else:
                cells.append(("░", "dim"))
        text = Text(label)
        for char, style in cells:
            text.append(char, style)
        text.append(tail, "dim")
        return text
