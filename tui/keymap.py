"""Every key of the app, screen by screen: the one place that lists them.

Each binding has an id, ``<screen>.<action>`` (the footer, the ``?`` panel and the docs name
keys by it). A user keymap (:func:`load_user_keymap`) maps ids to other keys without touching
the code, through Textual's ``App.set_keymap``: ``$XDG_CONFIG_HOME/podforge/keymap.toml``
(default ``~/.config/podforge/keymap.toml``), e.g. ``"review.accept" = "y"``. An unknown id or
a key that is not a string is one line naming the file and the entry; the app then starts with
its own keys.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Final

from textual.binding import Binding, BindingType

from core.errors import PodforgeError, one_line

APP: Final[list[BindingType]] = [  # app.py: PodforgeApp
    Binding("q", "quit", "Quit", id="app.quit"),
    Binding("question_mark", "toggle_keys", "Keys", id="app.keys"),
]

HOME: Final[list[BindingType]] = [  # home.py: HomeScreen
    Binding("v", "review", "Review segments", id="home.review"),
    Binding("d", "training", "Training", id="home.training"),
    Binding("s", "scripts", "Scripts", id="home.scripts"),
    Binding("r", "reload", "Refresh", id="home.refresh"),
]

LOG: Final[list[BindingType]] = [  # log.py: LogScreen
    Binding("escape,q,l", "dismiss", "Close", id="log.close"),
]

NEW_RUN: Final[list[BindingType]] = [  # new_run.py: NewRunScreen
    Binding("escape", "cancel", "Cancel", id="new_run.cancel"),
]

RESPELL: Final[list[BindingType]] = [  # respell.py: RespellScreen
    Binding("escape", "dismiss(None)", "Cancel", id="script.respell.cancel"),
]

REVIEW: Final[list[BindingType]] = [  # review.py: ReviewScreen
    Binding("space", "play", "Play/stop", id="review.play"),
    Binding("a", "decide('accepted')", "Accept", id="review.accept"),
    Binding("r", "decide('rejected')", "Reject", id="review.reject"),
    Binding("e", "edit", "Edit text", id="review.edit"),
    Binding("u", "undo", "Undo", id="review.undo"),
    Binding("n", "next_pending", "Next pending", id="review.next_pending"),
    Binding("f", "cycle_view", "Filter", id="review.filter"),
    Binding("s", "cycle_order", "Sort", id="review.sort"),
    Binding("p", "toggle_autoplay", "Auto-play", id="review.autoplay"),
    Binding("j,down", "move(1)", "Down", id="review.down", show=False),
    Binding("k,up", "move(-1)", "Up", id="review.up", show=False),
    Binding("pagedown", "move(20)", "Page down", id="review.page_down", show=False),
    Binding("pageup", "move(-20)", "Page up", id="review.page_up", show=False),
    Binding("left", "seek(-1)", "Seek -1 s", id="review.seek_back", show=False),
    Binding("right", "seek(1)", "Seek +1 s", id="review.seek_forward", show=False),
    Binding("escape", "back", "Back", id="review.back"),
]

UNSAVED: Final[list[BindingType]] = [  # script.py: UnsavedChanges
    Binding("s", "dismiss('save')", "Save", id="script.unsaved.save"),
    Binding("d", "dismiss('discard')", "Discard", id="script.unsaved.discard"),
    Binding("escape", "dismiss('cancel')", "Cancel", id="script.unsaved.cancel"),
]

SCRIPT_NAME: Final[list[BindingType]] = [  # script.py: ScriptName
    Binding("escape", "dismiss(None)", "Cancel", id="script.name.cancel"),
]

LOUDNESS_REPORT: Final[list[BindingType]] = [  # script.py: LoudnessReport
    Binding("escape,enter,L", "dismiss(None)", "Close", id="script.report.close"),
]

SCRIPTS: Final[list[BindingType]] = [  # script.py: ScriptListScreen
    Binding("n", "new", "New script", id="scripts.new"),
    Binding("escape", "back", "Back", id="scripts.back"),
]

SCRIPT_EDITOR: Final[list[BindingType]] = [  # script.py: ScriptEditorScreen
    Binding("ctrl+s", "save", "Save", id="script.save", priority=True),
    Binding("ctrl+r", "render", "Render", id="script.render", priority=True),
    Binding("p", "preview('draft')", "Preview", id="script.preview"),
    Binding("P", "preview('csm')", "Preview voice", id="script.preview_voice"),
    Binding("c", "cancel_render", "Cancel render", id="script.cancel"),
    Binding("m", "mix", "Mix & play", id="script.mix"),
    Binding("L", "loudness", "Loudness", id="script.loudness"),
    Binding("t", "retake", "Retake line", id="script.retake"),
    Binding("C", "takes", "Takes", id="script.takes"),
    Binding("R", "respell", "Respell word", id="script.respell"),
    Binding("g", "play_sound", "Play sound", id="script.play_sound"),
    Binding("G", "reroll_sound", "Re-roll sound", id="script.reroll_sound"),
    Binding("e", "edit", "Edit text", id="script.edit"),
    Binding("escape", "back", "Back", id="script.back"),
    Binding("q", "quit", "Quit", id="script.quit", show=False),
    Binding("ctrl+q", "quit", "Quit", id="script.quit_now", show=False, priority=True),
]

TAKES: Final[list[BindingType]] = [  # takes.py: TakesScreen
    Binding("k", "keep", "Keep this take", id="script.takes.keep"),
    Binding("escape", "dismiss(None)", "Close", id="script.takes.close"),
]

TRAINING: Final[list[BindingType]] = [  # training.py: TrainingScreen
    Binding("t", "new_run", "New run", id="training.new"),
    Binding("x", "stop", "Stop", id="training.stop"),
    Binding("R", "resume", "Resume", id="training.resume"),
    Binding("l", "log", "Full log", id="training.log"),
    Binding("e", "export", "Export adapter", id="training.export"),
    Binding("escape", "app.pop_screen", "Back", id="training.back"),
]


def all_bindings() -> list[Binding]:
    """Every binding of every screen, in the order above."""
    return [
        b
        for table in (
            APP,
            HOME,
            REVIEW,
            TRAINING,
            NEW_RUN,
            LOG,
            SCRIPTS,
            SCRIPT_EDITOR,
            UNSAVED,
            SCRIPT_NAME,
            LOUDNESS_REPORT,
            RESPELL,
            TAKES,
        )
        for b in table
        if isinstance(b, Binding)
    ]


def user_keymap_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "podforge" / "keymap.toml"


def load_user_keymap(path: Path | None = None) -> dict[str, str]:
    """The user's ``binding id -> keys`` (empty when the file does not exist). Raises a
    one-line :class:`~core.errors.PodforgeError` for a file that is not TOML, an unknown id
    or a value that is not a key string."""
    path = path or user_keymap_path()
    if not path.is_file():
        return {}
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise PodforgeError(
            f"{path}: not a readable TOML keymap ({one_line(exc)}); fix or remove it"
        ) from None
    known = {b.id for b in all_bindings() if b.id}
    keymap: dict[str, str] = {}
    for key, value in doc.items():
        if key not in known:
            raise PodforgeError(
                f"{path}: unknown binding id {key!r}; the ids are listed in docs/KEYS.md"
            )
        if not isinstance(value, str) or not value.strip():
            raise PodforgeError(f'{path}: {key} must be a key string such as "y" or "ctrl+y"')
        keymap[key] = value.strip()
    return keymap
