"""A small form for a new training run: speaker, steps, LoRA rank, learning rate."""

from __future__ import annotations

from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import BindingType
from textual.containers import Grid, Horizontal
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Select

from core.settings import Training
from tui import keymap
from tui.styles import STYLES


class NewRunScreen(ModalScreen[dict[str, object] | None]):
    """Returns the chosen settings, or ``None`` when cancelled."""

    CSS_PATH = STYLES / "training.tcss"
    BINDINGS: ClassVar[list[BindingType]] = keymap.NEW_RUN

    def __init__(self, speakers: list[str], defaults: Training) -> None:
        super().__init__()
        self.speakers = speakers
        self.defaults = defaults

    def compose(self) -> ComposeResult:
        with Grid(id="new-run"):
            yield Label("Speaker")
            yield Select([(s, s) for s in self.speakers], id="speaker", allow_blank=False)
            yield Label("Steps")
            yield Input(str(self.defaults.max_steps), id="steps", type="integer")
            yield Label("LoRA rank")
            yield Input(str(self.defaults.lora_rank), id="rank", type="integer")
            yield Label("Learning rate")
            yield Input(f"{self.defaults.learning_rate:g}", id="lr", type="number")
            with Horizontal(id="new-run-buttons"):
                yield Button("Start", variant="primary", id="start")
                yield Button("Cancel", id="cancel")

    @on(Button.Pressed, "#start")
    @on(Input.Submitted)
    def _start(self) -> None:
        try:
            choice = {
                "speaker": self.query_one("#speaker", Select).value,
                "steps": int(self.query_one("#steps", Input).value),
                "rank": int(self.query_one("#rank", Input).value),
                "lr": float(self.query_one("#lr", Input).value),
            }
        except ValueError:
            self.notify(
                "steps and rank are whole numbers; the learning rate a number", severity="error"
            )
            return
        self.dismiss(choice)

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)
