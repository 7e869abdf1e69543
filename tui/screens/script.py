"""Episode scripts: a list of ``scripts/*.md`` and an editor with live diagnostics.

The editor parses the text as you type (debounced, in a thread worker), lists errors and
warnings (enter jumps to the place) and marks the offending lines beside the text. The
outline shows each chapter and line with its render state, read from the render cache
(``episodes/<name>/cache/``): *cached* (with its length), *stale* (edited or never
rendered), *rendering* or *error*. Previews, renders and mixes run in thread workers;
typing never waits for them. See ``docs/SCRIPT_EDITOR.md`` for the keys.

The screen only presents: parsing, line states, previews and the mix report are
:mod:`core.episodes.editor`'s. Workers talk to the screen by posting messages. Cancelling a
render (``c``) sets the flag the render's ``cancel`` hook reads; every line finished before
that is already in the cache, so the next render continues where this one stopped.
"""

from __future__ import annotations

import re
import secrets
import threading
from pathlib import Path
from typing import Any, ClassVar

from rich.text import Text
from textual import events, on, work
from textual.app import ComposeResult
from textual.binding import BindingsMap, BindingType
from textual.containers import Horizontal, Vertical
from textual.dom import DOMNode
from textual.timer import Timer
from textual.widgets import (
    Button,
    Footer,
    Header,
    Input,
    OptionList,
    ProgressBar,
    Static,
    TextArea,
)
from textual.widgets.option_list import Option, OptionDoesNotExist
from textual.worker import Worker, WorkerState

from core.atomic import atomic_write_text
from core.audio.playback import Player
from core.episodes.editor import (
    SEED,
    Diagnostic,
    LineCheck,
    LineState,
    MixReport,
    analyse,
    audition,
    backend_for,
    line_start_sec,
    mix_report,
    preview_line,
    read_manifest,
    template,
)
from core.episodes.lint import add_pronunciation
from core.episodes.lock import EpisodeLock
from core.episodes.render import RenderResult, is_stage, render_episode
from core.episodes.retakes import choice_id, load_choices, save_choice
from core.episodes.script import Episode, Line, MusicCue, SfxCue
from core.episodes.sound.backend import STAGE_SOUND
from core.episodes.sound.cues import preview_sound, with_seed
from core.episodes.synthesis.backends import Rendered
from core.errors import ConsentError, PlaybackError, PodforgeError, VoiceError
from core.progress import Cancelled
from core.workspace import Workspace
from tui import keymap
from tui.format import duration, sparkline
from tui.messages import (
    Analysed,
    LineCached,
    Notice,
    PlaybackFailed,
    RenderFinished,
    RenderProgress,
)
from tui.screens.base import WorkspaceScreen
from tui.screens.dialog import Dialog
from tui.screens.respell import RespellScreen
from tui.screens.takes import TakesScreen
from tui.styles import STYLES
from tui.widgets.script_text import ScriptTextArea

__all__ = [
    "SEED",
    "LoudnessReport",
    "ScriptEditorScreen",
    "ScriptListScreen",
    "ScriptName",
    "UnsavedChanges",
    "analyse",
    "format_report",
    "template",
]

PARSE_DELAY_S = 0.3
NAME_RULE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,39}")
STATE_STYLE: dict[str, tuple[str, str]] = {
    "cached": ("●", "green"),
    "stale": ("○", "yellow"),
    "rendering": ("◌", "cyan"),
    "error": ("✗", "bold red"),
}


# -- modals -----------------------------------------------------------------------------


class UnsavedChanges(Dialog[str]):
    """Save / discard / cancel; dismisses with ``"save"``, ``"discard"`` or ``"cancel"``."""

    BINDINGS: ClassVar[list[BindingType]] = keymap.UNSAVED

    def __init__(self, name: str) -> None:
        super().__init__("Unsaved changes", f"{name} has unsaved changes.")

    def compose_body(self) -> ComposeResult:
        with Horizontal(classes="dialog-buttons"):
            yield Button("Save (s)", id="save", variant="primary")
            yield Button("Discard (d)", id="discard", variant="error")
            yield Button("Cancel (esc)", id="cancel")

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id or "cancel")


class ScriptName(Dialog[str | None]):
    """Ask for a new script's name."""

    BINDINGS: ClassVar[list[BindingType]] = keymap.SCRIPT_NAME

    def __init__(self) -> None:
        super().__init__("New script", "Name (letters, digits, - and _):")

    def compose_body(self) -> ComposeResult:
        yield Input(id="script-name", placeholder="episode-2")

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip() or None)


class LoudnessReport(Dialog[None]):
    """The last mix's loudness and true peak, from ``manifest.json``."""

    BINDINGS: ClassVar[list[BindingType]] = keymap.LOUDNESS_REPORT
    BOX_CLASSES = "dialog report"

    def __init__(self, report: Text) -> None:
        super().__init__("Last mix", report)


def format_report(report: MixReport) -> Text:
    """The report shown by ``L``."""
    target = report.target
    text = Text()
    text.append(f"{report.title}\n\n", "bold")
    text.append("loudness   ", "dim")
    if report.lufs is not None:
        text.append(f"{report.lufs:.1f} LUFS", "green" if report.loudness_ok else "bold red")
    else:
        text.append("unmeasured", "yellow")
    text.append(f"  (target {target.lufs:.1f})\n")
    text.append("true peak  ", "dim")
    if report.true_peak_dbtp is not None:
        text.append(f"{report.true_peak_dbtp:.1f} dBTP", "green" if report.peak_ok else "bold red")
    else:
        text.append("–")
    text.append(f"  (ceiling {target.ceiling_dbtp:.1f})\n")
    if report.duration_sec is not None:
        text.append("length     ", "dim")
        text.append(f"{report.duration_sec:.1f} s\n")
    text.append("format     ", "dim")
    text.append(f"{report.sample_rate} Hz, {report.channels} ch, {report.backend} voice\n")
    if report.drift:
        text.append("\nvoice similarity along the episode (line QA)\n", "dim")
        for speaker, points in sorted(report.drift.items()):
            values = [similarity for _, similarity in points]
            low_at, lowest = min(points, key=lambda point: point[1])
            weak = report.min_similarity is not None and lowest < report.min_similarity
            text.append(f"{speaker:<10} ", "bold")
            text.append(sparkline(values), "yellow" if weak else "green")
            where = f"  lowest {lowest:.2f} at {duration(low_at)}\n"
            text.append(where, "bold yellow" if weak else "")
    for warning in report.warnings:
        text.append(f"\n⚠ {warning}", "yellow")
    return text


# -- the list of scripts ------------------------------------------------------------------


class ScriptListScreen(WorkspaceScreen):
    """``scripts/*.md``: enter opens one in the editor, ``n`` makes a new one."""

    CSS_PATH = STYLES / "script.tcss"
    BINDINGS: ClassVar[list[BindingType]] = keymap.SCRIPTS
    SCREEN_TITLE = "podforge — scripts"

    def __init__(self, workspace: Workspace, player: Player | None = None) -> None:
        super().__init__(workspace)
        self.player = player

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="scripts-box", classes="box") as box:
            box.border_title = "Scripts"
            yield OptionList(id="scripts")
            yield Static("", id="scripts-empty", classes="empty")
        yield Footer()

    def on_mount(self) -> None:
        self._fill()
        self.query_one("#scripts", OptionList).focus()

    def on_screen_resume(self) -> None:
        self._fill()

    def _paths(self) -> list[Path]:
        return sorted(self.workspace.scripts_dir.glob("*.md"))

    def _fill(self) -> None:
        options = self.query_one("#scripts", OptionList)
        keep = options.highlighted
        options.clear_options()
        paths = self._paths()
        for path in paths:
            options.add_option(Option(path.name, id=path.name))
        if paths:
            options.highlighted = min(keep or 0, len(paths) - 1)
        empty = self.query_one("#scripts-empty", Static)
        empty.update("" if paths else "No scripts yet: n makes one.")
        empty.display = not paths
        options.display = bool(paths)

    @on(OptionList.OptionSelected, "#scripts")
    def _open(self, event: OptionList.OptionSelected) -> None:
        if event.option.id:
            self.open_script(self.workspace.scripts_dir / event.option.id)

    def open_script(self, path: Path) -> None:
        self.app.push_screen(ScriptEditorScreen(self.workspace, path, player=self.player))

    def action_new(self) -> None:
        self.app.push_screen(ScriptName(), self._create)

    def _create(self, name: str | None) -> None:
        if not name:
            return
        name = name.removesuffix(".md")
        if not NAME_RULE.fullmatch(name):
            self.notify(
                f"{name!r} is not a script name: use letters, digits, - and _ (up to 40)",
                severity="error",
            )
            return
        path = self.workspace.scripts_dir / f"{name}.md"
        if path.exists():
            self.notify(f"{path.name} already exists; opening it", severity="warning")
        else:
            try:
                atomic_write_text(path, template(name, list(self.workspace.settings.speakers)))
            except OSError as exc:
                self.notify(f"{path}: cannot write ({exc})", severity="error")
                return
        self._fill()
        self.open_script(path)

    def action_back(self) -> None:
        self.app.pop_screen()


# -- the editor ---------------------------------------------------------------------------


class ScriptEditorScreen(WorkspaceScreen):
    """Edit one script with live diagnostics, an outline, previews, renders and mixes."""

    CSS_PATH = STYLES / "script.tcss"
    BINDINGS: ClassVar[list[BindingType]] = keymap.SCRIPT_EDITOR
    SCREEN_TITLE = "podforge — script"

    def __init__(self, workspace: Workspace, path: Path, player: Player | None = None) -> None:
        super().__init__(workspace)
        self.path = path
        self.player = player if player is not None else Player()
        self.saved_text = path.read_text(encoding="utf-8") if path.exists() else ""
        self.episode: Episode | None = None
        self.diagnostics: tuple[Diagnostic, ...] = ()
        self.states: dict[int, LineState] = {}
        self.checks: dict[int, LineCheck] = {}
        self.cue_states: dict[int, str] = {}
        self._generating: set[int] = set()
        self.backend_name = "draft"
        self.last_result: RenderResult | None = None
        self._generation = 0
        self._parse_timer: Timer | None = None
        self._render_worker: Worker[None] | None = None
        self._render_open = False  # from the start of a render until its end is shown
        self._cancel = threading.Event()
        self._rendering: set[int] = set()
        self._failed: dict[int, str] = {}
        self._playback_errors: set[str] = set()

    @property
    def _binding_chain(self) -> list[tuple[DOMNode, BindingsMap]]:
        """Textual's own ``ctrl+q`` (an app priority binding, checked before any screen's)
        is taken out while this screen shows, so that this screen's ``quit`` asks about
        unsaved changes first."""
        chain = super()._binding_chain
        for namespace, bindings in chain:
            if namespace is self.app:
                bindings.key_to_bindings.pop("ctrl+q", None)
        return chain

    @property
    def name_stem(self) -> str:
        return self.path.stem

    @property
    def text_area(self) -> ScriptTextArea:
        return self.query_one("#script-text", ScriptTextArea)

    @property
    def dirty(self) -> bool:
        return self.text_area.text != self.saved_text

    @property
    def rendering(self) -> bool:
        """A render is running, or its end has not been shown yet."""
        worker = self._render_worker
        if worker is None or worker.state in (WorkerState.ERROR, WorkerState.CANCELLED):
            return False
        return self._render_open

    # -- layout --------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="editor-body"):
            with Vertical(id="text-box", classes="box") as box:
                box.border_title = self.path.name
                yield ScriptTextArea(self.saved_text, id="script-text")
            with Vertical(id="side"):
                with Vertical(id="outline-box", classes="box") as box:
                    box.border_title = "Outline"
                    yield OptionList(id="outline")
                with Vertical(id="diagnostics-box", classes="box") as box:
                    box.border_title = "Problems"
                    yield OptionList(id="diagnostics")
        with Horizontal(id="render-line"):
            yield ProgressBar(id="render-progress", show_eta=False)
            yield Static("", id="render-status")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#render-progress", ProgressBar).display = False
        self.text_area.focus()
        self._parse_now()

    def on_unmount(self) -> None:
        self._cancel.set()
        self.player.stop()

    # -- live diagnostics ----------------------------------------------------------
    @on(TextArea.Changed, "#script-text")
    def _changed(self) -> None:
        self._show_title()
        if self._parse_timer is not None:
            self._parse_timer.stop()
        self._parse_timer = self.set_timer(PARSE_DELAY_S, self._parse_now)

    def _show_title(self) -> None:
        box = self.query_one("#text-box")
        box.border_title = f"{self.path.name}{' ●' if self.dirty else ''}"

    def _parse_now(self) -> None:
        self._parse_timer = None
        self._generation += 1
        self._analyse(self.text_area.text, self._generation)

    @work(thread=True, exclusive=True, group="parse")
    def _analyse(self, text: str, generation: int) -> None:
        self.post_message(Analysed(analyse(self.workspace, text, self.path), generation))

    @on(Analysed)
    def _show_analysis(self, message: Analysed) -> None:
        result, generation = message.result, message.generation
        if generation != self._generation or not self.is_mounted:
            return  # the text changed again since; a newer parse is on its way
        self.diagnostics = result.diagnostics
        self._fill_diagnostics()
        errors = {d.line - 1 for d in result.diagnostics if d.severity == "error"}
        warnings = {d.line - 1 for d in result.diagnostics if d.severity == "warning"}
        self.text_area.set_diagnostic_rows(errors, warnings)
        if result.episode is not None:
            self.episode = result.episode
            self.backend_name = backend_for(self.workspace, result.episode)
            self.states = result.states
            self.checks = result.checks
            self.cue_states = result.cue_states
            self._fill_outline()
        else:
            self.query_one("#outline-box").border_subtitle = "last valid parse"

    def _fill_diagnostics(self) -> None:
        options = self.query_one("#diagnostics", OptionList)
        keep = options.highlighted
        options.clear_options()
        box = self.query_one("#diagnostics-box")
        if not self.diagnostics:
            options.add_option(Option(Text("no problems", "dim italic"), disabled=True))
            box.border_subtitle = ""
            return
        for i, diag in enumerate(self.diagnostics):
            style = {"error": "bold red", "warning": "yellow"}.get(diag.severity, "cyan")
            label = Text.assemble((f"{diag.line}:{diag.column} ", style), diag.message)
            options.add_option(Option(label, id=f"diag-{i}"))
        box.border_subtitle = f"{len(self.diagnostics)}"
        if keep is not None or self.focused is options:  # a re-parse keeps the chosen row
            options.highlighted = min(keep or 0, options.option_count - 1)

    @on(events.DescendantFocus, "#diagnostics")
    def _problems_focused(self) -> None:
        """Entering Problems chooses its first row, so its keys (enter, R) act at once."""
        options = self.query_one("#diagnostics", OptionList)
        if options.highlighted is None and self.diagnostics:
            options.highlighted = 0

    def _fill_outline(self) -> None:
        episode = self.episode
        if episode is None:
            return
        options = self.query_one("#outline", OptionList)
        keep = options.highlighted
        options.clear_options()
        box = self.query_one("#outline-box")
        box.border_subtitle = f"{self.backend_name} voice"
        chapters = {c.index: c for c in episode.chapters}
        shown = 0
        for item in episode.items:
            if isinstance(item, SfxCue | MusicCue) and item.generate is not None:
                options.add_option(Option(self._cue_label(item), id=f"cue-{item.source_line}"))
                continue
            if not isinstance(item, Line):
                continue
            line = item
            if line.chapter in chapters and line.chapter != shown:
                chapter = chapters[line.chapter]
                options.add_option(
                    Option(Text(f"§ {chapter.title}", "bold"), id=f"chapter-{chapter.index}")
                )
                shown = line.chapter
            options.add_option(Option(self._line_label(line), id=f"line-{line.index}"))
        if keep is not None and options.option_count:
            options.highlighted = min(keep, options.option_count - 1)

    def _state(self, index: int) -> LineState:
        if index in self._failed:
            return LineState("error")
        if index in self._rendering:
            return LineState("rendering")
        return self.states.get(index, LineState("stale"))

    def _line_label(self, line: Line) -> Text:
        state = self._state(line.index)
        glyph, style = STATE_STYLE[state.state]
        length = f"{state.duration_sec:5.1f}s" if state.duration_sec is not None else "     –"
        words = line.text if len(line.text) <= 48 else line.text[:47] + "…"
        label = Text.assemble(
            (f"{line.index + 1:>3} ", "dim"), (f"{glyph} {state.state:<9}", style),
            (f"{length} ", "dim"), (f"{line.speaker}: ", "bold"), words,
        )  # fmt: skip
        check = self.checks.get(line.index)
        if check is not None and state.state == "cached":
            label.append(f"  {check.summary()}", "green" if check.passed else "bold yellow")
        return label

    def _cue_label(self, cue: SfxCue | MusicCue) -> Text:
        """A generated cue in the outline: its state (as a line's), kind, length and prompt."""
        state = self.cue_states.get(cue.source_line, "stale")
        if cue.source_line in self._generating:
            state = "rendering"
        glyph, style = STATE_STYLE[state]
        request = cue.generate
        prompt = "" if request is None else request.prompt
        seconds = 0.0 if request is None else request.seconds
        kind = "sfx" if isinstance(cue, SfxCue) else "music"
        words = prompt if len(prompt) <= 44 else prompt[:43] + "…"
        return Text.assemble(
            ("  ♪ ", "dim"), (f"{glyph} {state:<9}", style), (f"{seconds:5.1f}s ", "dim"),
            (f"[{kind}] ", "bold"), (words, "italic"),
        )  # fmt: skip

    def cue_at_cursor(self) -> SfxCue | MusicCue | None:
        """The generated cue on the cursor's line (or the nearest one above it)."""
        if self.episode is None:
            return None
        row = self.text_area.cursor_location[0] + 1
        found: SfxCue | MusicCue | None = None
        for item in self.episode.items:
            generated = isinstance(item, SfxCue | MusicCue) and item.generate is not None
            if generated and item.source_line <= row:
                found = item  # type: ignore[assignment]
        return found

    # -- generated sound -----------------------------------------------------------------
    def _cue_or_warn(self) -> SfxCue | MusicCue | None:
        cue = self.cue_at_cursor()
        if cue is None:
            self.notify(
                'no generated cue above the cursor ([sfx gen="..." 2s])', severity="warning"
            )
        return cue

    def action_play_sound(self) -> None:
        cue = self._cue_or_warn()
        if cue is None:
            return
        if self.dirty and not self.save():
            return
        self._generating.add(cue.source_line)
        self._fill_outline()
        self._play_sound(cue.source_line)

    @work(thread=True, exclusive=True, group="sound")
    def _play_sound(self, source_line: int) -> None:
        def progress(done: int, total: int, what: str) -> None:
            self.post_message(RenderProgress(done, total, what))

        try:
            path = preview_sound(self.workspace, self.path, source_line, seed=SEED, report=progress)
        except (PodforgeError, OSError, ValueError) as exc:
            self.post_message(Notice(str(exc), "error", title="sound failed"))
            self.post_message(LineCached())
            return
        self.post_message(LineCached())
        try:
            self.player.play_file(path)
        except PlaybackError as exc:
            self.post_message(PlaybackFailed(str(exc)))
        except PodforgeError as exc:
            self.post_message(Notice(str(exc), "error", title="playback failed"))

    def action_reroll_sound(self) -> None:
        cue = self._cue_or_warn()
        if cue is None:
            return
        row = cue.source_line - 1
        area = self.text_area
        old = area.document.get_line(row)
        seed = secrets.randbelow(2**31)
        area.replace(with_seed(old, seed), (row, 0), (row, len(old)))
        self.notify(f"line {cue.source_line}: seed={seed}; g plays the new sound")

    def _refresh_outline_line(self, index: int) -> None:
        if self.episode is None or index >= len(self.episode.lines):
            return
        options = self.query_one("#outline", OptionList)
        try:
            options.replace_option_prompt(
                f"line-{index}", self._line_label(self.episode.lines[index])
            )
        except OptionDoesNotExist:  # the outline was rebuilt meanwhile
            self._fill_outline()

    @on(OptionList.OptionSelected, "#diagnostics")
    def _jump_to_problem(self, event: OptionList.OptionSelected) -> None:
        if event.option.id and event.option.id.startswith("diag-"):
            diag = self.diagnostics[int(event.option.id.removeprefix("diag-"))]
            self._move_cursor(diag.line, diag.column)

    @on(OptionList.OptionSelected, "#outline")
    def _jump_to_line(self, event: OptionList.OptionSelected) -> None:
        option_id = event.option.id or ""
        if self.episode is None:
            return
        if option_id.startswith("line-"):
            line = self.episode.lines[int(option_id.removeprefix("line-"))]
            self._move_cursor(line.source_line, 1)
        elif option_id.startswith("chapter-"):
            chapter = self.episode.chapters[int(option_id.removeprefix("chapter-")) - 1]
            self._move_cursor(chapter.source_line, 1)

    def _move_cursor(self, line: int, column: int) -> None:
        area = self.text_area
        row = min(max(line - 1, 0), max(area.document.line_count - 1, 0))
        col = min(max(column - 1, 0), len(area.document.get_line(row)))
        area.move_cursor((row, col), center=True)
        area.focus()

    def line_at_cursor(self) -> Line | None:
        """The speaker line the cursor is on (or the nearest one above it)."""
        if self.episode is None:
            return None
        row = self.text_area.cursor_location[0] + 1
        found: Line | None = None
        for line in self.episode.lines:
            if line.source_line <= row:
                found = line
        return found or (self.episode.lines[0] if self.episode.lines else None)

    # -- saving and leaving ----------------------------------------------------------
    def action_save(self) -> None:
        if self.save():
            self.notify(f"saved {self.path.name}", timeout=2)

    def save(self) -> bool:
        """Write the text atomically; False (and a notification) when it cannot be written."""
        text = self.text_area.text
        try:
            atomic_write_text(self.path, text)
        except OSError as exc:
            self.notify(f"{self.path}: cannot save ({exc})", severity="error", timeout=10)
            return False
        self.saved_text = text
        self._show_title()
        return True

    def action_edit(self) -> None:
        self.text_area.focus()

    def action_back(self) -> None:
        if self.focused is self.text_area:
            self.query_one("#outline", OptionList).focus()  # escape leaves the text first
            return
        self._leave(self.app.pop_screen)

    def action_quit(self) -> None:
        self._leave(self.app.exit)

    def _leave(self, then: Any) -> None:
        if not self.dirty:
            then()
            return

        def decided(choice: str | None) -> None:
            if choice == "discard" or (choice == "save" and self.save()):
                then()

        self.app.push_screen(UnsavedChanges(self.path.name), decided)

    # -- previews ----------------------------------------------------------------------
    def action_preview(self, backend: str) -> None:
        line = self.line_at_cursor()
        if line is None:
            self.notify("no speaker line to preview (fix the script first)", severity="warning")
            return
        self._preview(line, backend)

    @work(thread=True, exclusive=True, group="preview")
    def _preview(self, line: Line, backend: str, take: int = 0) -> None:
        try:
            rendered: Rendered
            rendered, new = preview_line(self.workspace, self.name_stem, line, backend, take)
        except VoiceError as exc:
            self.post_message(Notice(str(exc), "error", title="no trained voice"))
            return
        except ConsentError as exc:  # a trained voice is used only with consent to synthesis
            self.post_message(Notice(str(exc), "error", title="no consent"))
            return
        except (PodforgeError, OSError) as exc:
            self.post_message(Notice(str(exc), "error", title="preview failed"))
            return
        if new:
            self.post_message(LineCached())
        try:
            self.player.play(rendered.audio, rendered.sample_rate)
        except PlaybackError as exc:
            self.post_message(PlaybackFailed(str(exc)))

    @on(LineCached)
    def _line_cached(self) -> None:
        self._generating.clear()
        self._parse_now()  # re-read the line states

    @on(Notice)
    def _notice(self, message: Notice) -> None:
        self.notify(message.text, title=message.title, severity=message.severity, timeout=10)

    @on(PlaybackFailed)
    def _playback_failed(self, message: PlaybackFailed) -> None:
        if message.reason not in self._playback_errors:  # say it once, then stay quiet
            self._playback_errors.add(message.reason)
            self.notify(message.reason, title="no playback", severity="warning", timeout=10)

    # -- retakes -------------------------------------------------------------------------
    def action_retake(self) -> None:
        """Re-roll the line at the cursor with its next take, play it and keep it."""
        line = self.line_at_cursor()
        if line is None:
            self.notify("no speaker line to retake (fix the script first)", severity="warning")
            return
        check = self.checks.get(line.index)
        chosen = load_choices(self.workspace, self.name_stem).get(choice_id(line.voice, line.text))
        take = max(check.kept_take if check else 0, chosen if chosen is not None else 0) + 1
        save_choice(self.workspace, self.name_stem, line.voice, line.text, take)
        self.notify(
            f"line {line.index + 1}: take {take}, kept at every render (C lists the takes)",
            timeout=6,
        )
        self._preview(line, self.backend_name, take)

    def action_takes(self) -> None:
        """List the takes of the line at the cursor: play each, keep one by ear."""
        line = self.line_at_cursor()
        check = self.checks.get(line.index) if line is not None else None
        if line is None or check is None:
            self.notify(
                "no takes yet: render with line QA (render.retakes, or t to retake a line)",
                severity="warning",
            )
            return
        takes = list(check.takes)
        chosen = load_choices(self.workspace, self.name_stem).get(choice_id(line.voice, line.text))
        if chosen is not None and all(t["take"] != chosen for t in takes):
            takes.append({"take": chosen, "passed": False, "reasons": ["not checked yet"]})
        kept = chosen if chosen is not None else check.kept_take
        backend = self.backend_name

        def keep(take: int | None) -> None:
            if take is not None:
                save_choice(self.workspace, self.name_stem, line.voice, line.text, take)
                self.notify(f"line {line.index + 1}: take {take} kept (by ear)", timeout=5)

        self.app.push_screen(
            TakesScreen(f"Takes of line {line.index + 1}", takes, kept,
                        lambda take: self._preview(line, backend, take)),
            keep,
        )  # fmt: skip

    # -- pronunciations -------------------------------------------------------------------
    def _hint_for_respelling(self) -> Diagnostic | None:
        """The hint highlighted in Problems, else the first on the cursor's line."""
        problems = self.query_one("#diagnostics", OptionList)
        index = problems.highlighted
        if self.focused is problems and index is not None and index < len(self.diagnostics):
            chosen = self.diagnostics[index]
            if chosen.word:
                return chosen
        row = self.text_area.cursor_location[0] + 1
        return next((d for d in self.diagnostics if d.word and d.line == row), None)

    def action_respell(self) -> None:
        """Add a respelling for the hinted word, then audition the word with it."""
        hint = self._hint_for_respelling()
        line = None
        if hint is not None and self.episode is not None:
            line = next((ln for ln in self.episode.lines if ln.source_line == hint.line), None)
        if hint is None or hint.word is None or line is None:
            self.notify("no hinted word here: R works on a hint in Problems", severity="warning")
            return
        word, voice, backend = hint.word, line.voice, self.backend_name

        def respelled(spelling: str | None) -> None:
            if spelling is None:
                return
            try:
                add_pronunciation(self.workspace.root, word, spelling)
            except (PodforgeError, OSError, ValueError) as exc:
                self.notify(str(exc), title="not saved", severity="error", timeout=10)
                return
            self.notify(f"{word!r} is said {spelling!r} (pronunciations.toml)", timeout=5)
            self._parse_now()  # the hint goes; lines with the word turn stale
            self._audition(voice, word, backend)

        self.app.push_screen(RespellScreen(word), respelled)

    @work(thread=True, exclusive=True, group="preview")
    def _audition(self, voice: str, word: str, backend: str) -> None:
        try:
            rendered = audition(self.workspace, voice, word, backend)
        except (PodforgeError, OSError) as exc:
            self.post_message(Notice(str(exc), "error", title="audition failed"))
            return
        try:
            self.player.play(rendered.audio, rendered.sample_rate)
        except PlaybackError as exc:
            self.post_message(PlaybackFailed(str(exc)))

    # -- rendering -----------------------------------------------------------------------
    def action_render(self) -> None:
        self._start_render(play_from=None)

    def action_mix(self) -> None:
        line = self.line_at_cursor()
        self._start_render(play_from=line.index if line is not None else 0)

    def _start_render(self, play_from: int | None) -> None:
        if self.rendering:
            self.notify("already rendering (c cancels)", severity="warning")
            return
        if self.dirty and not self.save():
            return  # render_episode reads the file: it is saved first
        if self.episode is None or any(d.severity == "error" for d in self.diagnostics):
            self.notify("fix the script's errors before rendering", severity="error")
            return
        self._cancel = threading.Event()
        self._failed.clear()
        self._rendering = {
            i for i in range(len(self.episode.lines)) if self._state(i).state != "cached"
        }
        self._fill_outline()
        bar = self.query_one("#render-progress", ProgressBar)
        bar.update(total=len(self.episode.lines), progress=0)
        bar.display = True
        self.query_one("#render-status", Static).update(
            f"rendering {len(self._rendering)} of {len(self.episode.lines)} lines…"
        )
        self._render_open = True
        self._render_worker = self._run_render(self._cancel, self.backend_name, play_from)

    def action_cancel_render(self) -> None:
        if not self.rendering:
            self.notify("nothing is rendering")
            return
        self._cancel.set()
        self.query_one("#render-status", Static).update("cancelling…")

    @work(thread=True, exclusive=True, group="render")
    def _run_render(self, cancel: threading.Event, backend: str, play_from: int | None) -> None:
        done_lines = 0

        def progress(done: int, total: int, what: str) -> None:
            nonlocal done_lines
            if not is_stage(what):
                done_lines = done
            self.post_message(RenderProgress(done, total, what))

        try:
            with EpisodeLock(self.workspace, self.path):  # not while the CLI or service renders it
                result = render_episode(
                    self.workspace,
                    self.path,
                    backend=backend,
                    seed=SEED,
                    progress=progress,
                    cancel=cancel.is_set,
                )
        except Cancelled:
            self.post_message(RenderFinished(None, "render cancelled", None))
            return
        except (PodforgeError, OSError, ValueError) as exc:
            self.post_message(RenderFinished(None, str(exc), done_lines))
            return
        self.post_message(RenderFinished(result, None, None))
        if play_from is None or cancel.is_set():
            return
        start = line_start_sec(read_manifest(self.workspace, self.name_stem) or {}, play_from)
        try:
            self.player.play_file(result.exported.wav, start_sec=start)
        except PlaybackError as exc:
            self.post_message(PlaybackFailed(str(exc)))
        except PodforgeError as exc:
            self.post_message(Notice(str(exc), "error", title="playback failed"))

    @on(RenderProgress)
    def _show_render_progress(self, message: RenderProgress) -> None:
        if is_stage(message.what):  # loading the model, mixing, mastering: no line to mark
            self._stage_progress(message.done, message.total, message.what)
        else:
            self._render_progress(message.done, message.total)

    def _stage_progress(self, done: int, total: int, what: str) -> None:
        """A stage after the lines (or the model loading): ``done``/``total`` seconds."""
        self.query_one("#render-progress", ProgressBar).update(total=total or None, progress=done)
        where = f" {done // 60}:{done % 60:02d} of {total // 60}:{total % 60:02d}" if total else ""
        if what.startswith(STAGE_SOUND):  # a generated sound: denoising steps
            where = f" step {done} of {total}" if total else ""
        self.query_one("#render-status", Static).update(f"{what}{where}")

    def _render_progress(self, done: int, total: int) -> None:
        self.query_one("#render-progress", ProgressBar).update(total=total, progress=done)
        self._rendering.discard(done - 1)
        if self.states.get(done - 1, LineState("stale")).state != "cached":
            self.states[done - 1] = LineState("cached")
        self._refresh_outline_line(done - 1)

    @on(RenderFinished)
    def _render_finished(self, message: RenderFinished) -> None:
        result, error, failed_line = message.result, message.error, message.failed_line
        self._render_open = False
        self._rendering.clear()
        self.query_one("#render-progress", ProgressBar).display = False
        status = self.query_one("#render-status", Static)
        if result is not None:
            self.last_result = result
            lufs = f"{result.lufs:.1f} LUFS" if result.lufs is not None else "loudness –"
            status.update(
                f"rendered {len(result.rendered_lines)} line(s), "
                f"{len(result.cached_lines)} from cache · {lufs} · "
                f"{result.true_peak_db:.1f} dBTP · {result.duration_sec:.1f} s"
            )
            for warning in result.warnings:
                if "cannot honour" in warning:
                    self.notify(warning, severity="warning", timeout=6)
        else:
            status.update(error or "")
            if failed_line is not None and error is not None:
                self._failed[failed_line] = error
                self.notify(error, title="render failed", severity="error", timeout=10)
            elif error is not None:
                self.notify(error, severity="warning", timeout=4)
        self._parse_now()  # re-read the cache: states and durations

    # -- the last mix ----------------------------------------------------------------------
    def action_loudness(self) -> None:
        manifest = read_manifest(self.workspace, self.name_stem)
        if manifest is None:
            self.notify("no mix yet: ctrl+r renders the episode", severity="warning")
            return
        report = mix_report(self.workspace, manifest, self.episode)
        self.app.push_screen(LoudnessReport(format_report(report)))
