"""A line's retake candidates: listen to each, keep one by ear.

Opened by the script editor's ``C`` on a line with line QA. Each take shows whether it
passed and why not, with its WER and similarity; ``enter`` plays it (through the editor's
preview, from the render cache), ``k`` keeps it (recorded in ``choices.json``: every later
render keeps it), ``escape`` closes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import BindingType
from textual.widgets import OptionList
from textual.widgets.option_list import Option

from tui import keymap
from tui.screens.dialog import Dialog

__all__ = ["TakesScreen", "take_label"]


def take_label(take: dict[str, Any], kept: int) -> Text:
    """One candidate: ``take 2  ✓  WER 0%  sim 0.81  (kept)`` or its reasons."""
    scores = take.get("scores") or {}
    passed = bool(take.get("passed"))
    text = Text.assemble(
        (f"take {take['take']:<3}", "bold"),
        ("✓ " if passed else "⚠ ", "green" if passed else "yellow"),
    )
    if scores.get("wer") is not None:
        text.append(f"WER {scores['wer']:.0%}  ")
    if scores.get("similarity") is not None:
        text.append(f"sim {scores['similarity']:.2f}  ")
    if not passed:
        text.append("; ".join(take.get("reasons") or ()), "yellow")
    if take["take"] == kept:
        text.append("  (kept)", "bold green")
    return text


class TakesScreen(Dialog[int | None]):
    """Pick a take of one line by ear; dismisses with the take to keep, or ``None``."""

    BINDINGS: ClassVar[list[BindingType]] = keymap.TAKES
    BOX_CLASSES = "dialog report"

    def __init__(
        self, title: str, takes: Sequence[dict[str, Any]], kept: int, play: Callable[[int], object]
    ) -> None:
        super().__init__(title, "enter plays a take · k keeps it · escape closes")
        self.takes = list(takes)
        self.kept = kept
        self.play = play

    def compose_body(self) -> ComposeResult:
        yield OptionList(
            *(Option(take_label(t, self.kept), id=f"take-{t['take']}") for t in self.takes),
            id="takes",
        )

    def on_mount(self) -> None:
        options = self.query_one("#takes", OptionList)
        options.focus()
        kept = [i for i, t in enumerate(self.takes) if t["take"] == self.kept]
        options.highlighted = kept[0] if kept else 0

    @on(OptionList.OptionSelected, "#takes")
    def _play(self, event: OptionList.OptionSelected) -> None:
        self.play(int((event.option.id or "take-0").removeprefix("take-")))

    def action_keep(self) -> None:
        options = self.query_one("#takes", OptionList)
        if options.highlighted is None:
            return
        self.dismiss(int(self.takes[options.highlighted]["take"]))
