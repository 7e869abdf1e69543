"""The script editor: live diagnostics, saving, previews, renders, the outline, leaving."""

from __future__ import annotations

import json
import re
from collections.abc import Callable

import pytest
from rich.text import Text
from textual.pilot import Pilot
from textual.widgets import Input, OptionList, Static

from core.audio.playback import Player
from core.episodes.editor import Diagnostic, mix_report
from core.episodes.parser import parse_script
from core.workspace import Workspace
from tests.conftest import NO_DEVICE, screen_settled
from tui.app import PodforgeApp
from tui.screens.script import (
    ScriptEditorScreen,
    ScriptListScreen,
    UnsavedChanges,
    analyse,
    format_report,
    template,
)
from tui.widgets.script_text import ScriptTextArea

SIZE = (130, 34)


pytestmark = pytest.mark.usefixtures("no_color_unset")


class EditorApp(PodforgeApp):
    """The real app, opened straight on the editor of ``scripts/welcome.md``."""

    def __init__(self, workspace: Workspace, script: str = "welcome.md") -> None:
        super().__init__(workspace)
        self.script = workspace.scripts_dir / script

    def initial_screen(self) -> ScriptEditorScreen:
        return ScriptEditorScreen(self.workspace, self.script, player=Player(device=NO_DEVICE))


class ListApp(PodforgeApp):
    def initial_screen(self) -> ScriptListScreen:
        return ScriptListScreen(self.workspace, player=Player(device=NO_DEVICE))


async def _until(pilot: Pilot[None], check: Callable[[], bool], seconds: float = 10.0) -> None:
    for _ in range(int(seconds / 0.02)):
        await pilot.pause(0.02)
        if check():
            return
    raise AssertionError("condition never became true")


async def _editor(pilot: Pilot[None]) -> ScriptEditorScreen:
    await _until(pilot, lambda: isinstance(pilot.app.screen, ScriptEditorScreen))
    screen = pilot.app.screen
    assert isinstance(screen, ScriptEditorScreen)
    await _until(pilot, lambda: screen.episode is not None)
    return screen


def _diagnostic_labels(screen: ScriptEditorScreen) -> list[str]:
    options = screen.query_one("#diagnostics", OptionList)
    return [str(options.get_option_at_index(i).prompt) for i in range(options.option_count)]


def _messages(pilot: Pilot[None]) -> list[str]:
    return [n.message for n in pilot.app._notifications]


async def _render(pilot: Pilot[None], screen: ScriptEditorScreen) -> None:
    before = screen.last_result
    await pilot.press("ctrl+r")
    await _until(pilot, lambda: screen.last_result is not before and not screen.rendering, 40)
    # A line's progress marks it cached at once; its duration comes with the re-read of the
    # cache that the finished render starts (a parse worker), so wait for that, not the marks.
    await _until(
        pilot,
        lambda: all(s.state == "cached" and s.duration_sec for s in screen.states.values()),
        seconds=5,
    )


# -- pure helpers -------------------------------------------------------------------------


def test_template_parses_with_the_workspace_speakers(demo_copy: Workspace) -> None:
    text = template("ep2", list(demo_copy.settings.speakers))
    result = analyse(demo_copy, text, demo_copy.scripts_dir / "ep2.md")
    assert result.episode is not None
    assert result.episode.speakers == {"HOST": "alice", "GUEST": "bob"}
    assert [line.speaker for line in result.episode.lines] == ["HOST", "GUEST"]
    assert len(result.episode.chapters) == 1


def test_warnings_become_diagnostics_from_their_fields(demo_copy: Workspace) -> None:
    text = template("ep2", list(demo_copy.settings.speakers)) + "[music stop]\n"
    result = analyse(demo_copy, text, demo_copy.scripts_dir / "ep2.md")
    assert result.diagnostics == (
        Diagnostic("warning", text.count("\n"), 1, "[music stop] but no music is playing"),
    )


def _manifest(lufs: float, peak: float) -> dict[str, object]:
    return {"title": "T", "lufs": lufs, "true_peak_dbtp": peak, "duration_sec": 3.0,
            "sample_rate": 24000, "channels": 1, "backend": "draft", "warnings": ["w"]}  # fmt: skip


def _style_of(text: Text, piece: str) -> str:
    at = text.plain.index(piece)
    return " ".join(str(s.style) for s in text.spans if s.start <= at < s.end)


def test_the_report_holds_the_mix_to_half_a_loudness_unit(demo_copy: Workspace) -> None:
    near = mix_report(demo_copy, _manifest(-19.4, -1.0), None)
    assert (near.target.lufs, near.target.ceiling_dbtp, near.target.tolerance_lu) == (
        -19.0, -1.0, 0.5,
    )  # fmt: skip
    assert near.loudness_ok and near.peak_ok
    far = mix_report(demo_copy, _manifest(-19.7, -0.9), None)  # within 1 LU, not 0.5
    assert not far.loudness_ok and not far.peak_ok
    shown = format_report(far)
    assert _style_of(shown, "-19.7 LUFS") == "bold red"
    assert _style_of(shown, "-0.9 dBTP") == "bold red"
    assert _style_of(format_report(near), "-19.4 LUFS") == "green"
    assert shown.plain == (
        "T\n\nloudness   -19.7 LUFS  (target -19.0)\ntrue peak  -0.9 dBTP  (ceiling -1.0)\n"
        "length     3.0 s\nformat     24000 Hz, 1 ch, draft voice\n\n⚠ w"
    )
    # The script's [mix] moves the target the report measures against, as it moves the render's.
    episode = parse_script(
        template("ep2", ["alice"]).replace("+++\n\n", "[mix]\ntarget_lufs = -19.6\n+++\n\n"),
        workspace=demo_copy,
    )
    assert mix_report(demo_copy, _manifest(-19.7, -1.0), episode).loudness_ok


# -- live diagnostics and saving ------------------------------------------------------------


async def test_bad_tag_diagnostic_appears_jumps_and_goes_away(demo_copy: Workspace) -> None:
    app = EditorApp(demo_copy)
    async with app.run_test(size=SIZE) as pilot:
        screen = await _editor(pilot)
        area = screen.query_one(ScriptTextArea)
        assert _diagnostic_labels(screen) == ["no problems"]
        end = area.document.end
        area.move_cursor(end)
        await pilot.press(*"HOST: An <emphasis>odd line")
        # A slow machine may parse a half-typed line first; wait for the whole line's verdict.
        await _until(
            pilot,
            lambda: any(
                d.severity == "error" and "emphasis" in d.message for d in screen.diagnostics
            ),
        )
        row = end[0] + 1
        labels = _diagnostic_labels(screen)
        assert len(labels) == 1 and labels[0].startswith(f"{row}:")
        assert "emphasis" in labels[0]
        assert area.error_rows == {row - 1}
        # enter on the problem moves the cursor there
        area.move_cursor((0, 0))
        problems = screen.query_one("#diagnostics", OptionList)
        problems.focus()
        problems.highlighted = 0
        await pilot.press("enter")
        assert area.cursor_location[0] == row - 1
        assert screen.focused is area
        # fix it: the diagnostic goes away
        area.move_cursor(area.document.end)
        await pilot.press(*" </emphasis>")
        await _until(pilot, lambda: not screen.diagnostics)
        assert _diagnostic_labels(screen) == ["no problems"]
        assert area.error_rows == set()
        assert screen.dirty


async def test_ctrl_s_saves_to_disk(demo_copy: Workspace) -> None:
    app = EditorApp(demo_copy)
    path = demo_copy.scripts_dir / "welcome.md"
    async with app.run_test(size=SIZE) as pilot:
        screen = await _editor(pilot)
        area = screen.query_one(ScriptTextArea)
        area.move_cursor(area.document.end)
        await pilot.press(*"HOST: Saved for good.")
        assert screen.dirty
        await pilot.press("ctrl+s")
        assert not screen.dirty
        assert path.read_text(encoding="utf-8").endswith("HOST: Saved for good.")
        assert path.read_text(encoding="utf-8") == area.text
        assert not list(path.parent.glob(".welcome.md.*"))  # no temporary left behind


async def test_leaving_with_unsaved_changes_asks(demo_copy: Workspace) -> None:
    app = EditorApp(demo_copy)
    path = demo_copy.scripts_dir / "welcome.md"
    original = path.read_text(encoding="utf-8")
    async with app.run_test(size=SIZE) as pilot:
        screen = await _editor(pilot)
        await pilot.press("x")
        await pilot.press("escape")  # leaves the text for the outline
        assert isinstance(app.screen, ScriptEditorScreen)
        await pilot.press("escape")  # leave the screen: asks
        assert isinstance(app.screen, UnsavedChanges)
        await pilot.press("escape")  # cancel: still editing, nothing written
        assert app.screen is screen and screen.dirty
        await pilot.press("q")  # quitting asks too
        assert isinstance(app.screen, UnsavedChanges)
        await pilot.press("s")  # save, then quit
        await pilot.pause()
        assert path.read_text(encoding="utf-8") != original
        assert path.read_text(encoding="utf-8").startswith("x")
    assert app.return_code == 0


async def test_discard_leaves_the_file_alone(demo_copy: Workspace) -> None:
    app = EditorApp(demo_copy)
    path = demo_copy.scripts_dir / "welcome.md"
    original = path.read_text(encoding="utf-8")
    async with app.run_test(size=SIZE) as pilot:
        await _editor(pilot)
        await pilot.press("x", "ctrl+q")
        assert isinstance(app.screen, UnsavedChanges)
        await pilot.press("d")
        await pilot.pause()
    assert path.read_text(encoding="utf-8") == original


# -- previews -------------------------------------------------------------------------------


async def test_preview_without_a_device_notifies(demo_copy: Workspace) -> None:
    app = EditorApp(demo_copy)
    async with app.run_test(size=SIZE) as pilot:
        screen = await _editor(pilot)
        area = screen.query_one(ScriptTextArea)
        area.move_cursor((9, 0))  # the first HOST line
        await pilot.press("escape", "p")
        await _until(pilot, lambda: any(NO_DEVICE in m for m in _messages(pilot)))
        await _until(pilot, lambda: screen.states[0].state == "cached")  # the preview is kept
        await pilot.press("P")  # no trained voice: a clear error
        await _until(pilot, lambda: any("no trained voice" in m for m in _messages(pilot)))
        assert isinstance(app.screen, ScriptEditorScreen)


# -- render, outline, mix --------------------------------------------------------------------


async def test_render_then_rerender_only_the_edited_line(demo_copy: Workspace) -> None:
    app = EditorApp(demo_copy)
    folder = demo_copy.episodes_dir / "welcome"
    async with app.run_test(size=SIZE) as pilot:
        screen = await _editor(pilot)
        assert {s.state for s in screen.states.values()} == {"stale"}
        await _render(pilot, screen)
        result = screen.last_result
        assert result is not None and screen.episode is not None
        count = len(screen.episode.lines)
        assert result.rendered_lines == list(range(count))
        for name in ("welcome.wav", "welcome.mp3", "manifest.json", "chapters.json"):
            assert (folder / name).is_file()
        assert all(s.duration_sec and s.duration_sec > 0 for s in screen.states.values())
        # edit line 4 (index 3): only it is stale, and only it is synthesised again
        area = screen.query_one(ScriptTextArea)
        row = next(line.source_line for line in screen.episode.lines if line.index == 3) - 1
        area.move_cursor((row, len(area.document.get_line(row))))
        await pilot.press(*" Really.")
        await _until(pilot, lambda: screen.states[3].state == "stale")
        assert [i for i, s in screen.states.items() if s.state == "stale"] == [3]
        await _render(pilot, screen)
        result = screen.last_result
        assert result is not None
        assert result.rendered_lines == [3]
        assert result.cached_lines == [i for i in range(count) if i != 3]
        assert not screen.dirty  # rendering saves first


async def test_cancel_stops_a_render(demo_copy: Workspace) -> None:
    app = EditorApp(demo_copy)
    async with app.run_test(size=SIZE) as pilot:
        screen = await _editor(pilot)
        screen.query_one("#outline", OptionList).focus()
        screen.action_render()  # not pilot.press: it waits for the worker to finish
        await pilot.press("c")
        await _until(pilot, lambda: not screen.rendering, 30)
        assert screen.last_result is None, (_messages(pilot), screen.focused)
        await _until(pilot, lambda: any("cancelled" in m for m in _messages(pilot)))
        assert not (demo_copy.episodes_dir / "welcome" / "manifest.json").exists()
        cached = [s for s in screen.states.values() if s.state == "cached"]
        assert 1 <= len(cached) < len(screen.states)  # what finished before the cancel stays cached


async def test_a_render_elsewhere_of_the_episode_stops_the_editors_render(
    demo_copy: Workspace,
) -> None:
    from core.episodes.lock import EpisodeLock

    app = EditorApp(demo_copy)
    async with app.run_test(size=SIZE) as pilot:
        screen = await _editor(pilot)
        with EpisodeLock(demo_copy, "scripts/welcome.md"):  # the service or `podforge render`
            screen.action_render()
            await _until(pilot, lambda: not screen.rendering, 30)
        assert screen.last_result is None
        # The app adds a notification when it handles its Notify message: wait for it.
        await _until(
            pilot, lambda: any("'welcome' is being rendered" in m for m in _messages(pilot))
        )
        assert not (demo_copy.episodes_dir / "welcome" / "cache").exists()  # nothing rendered


async def test_mix_plays_and_loudness_report(demo_copy: Workspace) -> None:
    app = EditorApp(demo_copy)
    async with app.run_test(size=SIZE) as pilot:
        screen = await _editor(pilot)
        await pilot.press("escape", "L")
        await _until(pilot, lambda: any("no mix yet" in m for m in _messages(pilot)))
        await pilot.press("m")
        await _until(pilot, lambda: any(NO_DEVICE in m for m in _messages(pilot)), 40)
        assert screen.last_result is not None
        manifest = json.loads((demo_copy.episodes_dir / "welcome" / "manifest.json").read_text())
        await pilot.press("L")
        report = str(app.screen.query_one(".dialog-text").render())
        assert f"{manifest['lufs']:.1f} LUFS" in report
        await pilot.press("escape")
        assert app.screen is screen


# -- the list ---------------------------------------------------------------------------------


async def test_list_opens_and_creates_scripts(demo_copy: Workspace) -> None:
    app = ListApp(demo_copy)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        options = app.screen.query_one("#scripts", OptionList)
        assert options.option_count == 2  # welcome.md, with-sound.md
        await pilot.press("n")
        await pilot.pause()
        app.screen.query_one(Input).value = "second-episode"
        await pilot.press("enter")
        screen = await _editor(pilot)
        assert screen.path == demo_copy.scripts_dir / "second-episode.md"
        assert screen.path.is_file()
        assert not screen.diagnostics
        await pilot.press("escape", "escape")
        assert isinstance(app.screen, ScriptListScreen)
        await pilot.pause()
        assert app.screen.query_one("#scripts", OptionList).option_count == 3


async def test_home_s_opens_the_scripts(demo_copy: Workspace) -> None:
    app = PodforgeApp(demo_copy)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("s")
        await _until(pilot, lambda: isinstance(app.screen, ScriptListScreen))
        await pilot.press("escape")
        assert not isinstance(app.screen, ScriptListScreen)


# -- snapshots ----------------------------------------------------------------------------------


def test_snapshot_editor_with_a_diagnostic(demo_copy: Workspace, snap_compare) -> None:  # type: ignore[no-untyped-def]
    async def settle(pilot: Pilot[None]) -> None:
        screen = await _editor(pilot)
        area = screen.query_one(ScriptTextArea)
        area.cursor_blink = False  # a blinking cursor would make the snapshot flaky
        area.move_cursor((10, len(area.document.get_line(10))))
        await pilot.press(*" <emphasis>oops")
        # The check of the whole text, not one of a half-typed tag (the 300 ms debounce can
        # fire between keys on a loaded machine).
        await _until(pilot, lambda: any("never closed" in d.message for d in screen.diagnostics))
        await screen_settled(pilot)

    assert snap_compare(EditorApp(demo_copy), terminal_size=SIZE, run_before=settle)


def test_snapshot_outline_after_render(demo_copy: Workspace, snap_compare) -> None:  # type: ignore[no-untyped-def]
    async def settle(pilot: Pilot[None]) -> None:
        screen = await _editor(pilot)
        await _render(pilot, screen)
        pilot.app.clear_notifications()
        # The mix's loudness figures belong to core.episodes.mixing (tested there); keep them out.
        screen.query_one("#render-status", Static).update("rendered")
        await pilot.press("escape")
        await screen_settled(pilot)

    assert snap_compare(EditorApp(demo_copy), terminal_size=SIZE, run_before=settle)


# -- consent -------------------------------------------------------------------------------


@pytest.mark.slow  # loads PyTorch and the tiny CSM
async def test_a_voice_without_consent_is_refused_with_a_notification(
    workspace: Workspace,
) -> None:
    from tests.conftest import make_tiny_voice

    workspace.settings.models.tts = "tiny"
    workspace.save()
    make_tiny_voice(workspace, "carol", seed=5)  # trained, but carol never consented
    (workspace.scripts_dir / "carol.md").write_text(
        '+++\ntitle = "Carol"\n[speakers]\nC = "carol"\n+++\n\nC: Hello from Carol.\n'
    )
    app = EditorApp(workspace, "carol.md")
    async with app.run_test(size=SIZE) as pilot:
        screen = await _editor(pilot)
        assert screen.backend_name == "csm"

        def refusals(title: str) -> list[str]:
            return [
                n.message
                for n in app._notifications
                if n.title == title and "speaker 'carol'" in n.message
            ]

        screen.query_one(ScriptTextArea).move_cursor((6, 0))
        await pilot.press("escape", "P")
        await _until(pilot, lambda: bool(refusals("no consent")))
        await pilot.press("ctrl+r")
        await _until(pilot, lambda: bool(refusals("render failed")))
        for message in refusals("no consent") + refusals("render failed"):
            assert "\n" not in message and "podforge speaker add" in message
        assert isinstance(app.screen, ScriptEditorScreen)
        assert not (workspace.episodes_dir / "carol" / "cache").exists()  # nothing synthesised


# -- generated sound cues ------------------------------------------------------------------


@pytest.mark.slow
async def test_g_plays_a_generated_cue_and_shift_g_rerolls_its_seed(demo_copy: Workspace) -> None:
    """The sound-design script (tiny sound model): `g` on a cue generates it into the sound
    cache (no sound device: a clear notice, the sound kept) and marks it cached; `G` writes a
    new `seed=` into the cue's line, which makes it stale again."""
    from core.episodes.sound.cues import sound_cache

    app = EditorApp(demo_copy, "with-sound.md")
    cache = sound_cache(demo_copy.episodes_dir / "with-sound")
    async with app.run_test(size=SIZE) as pilot:
        screen = await _editor(pilot)
        area = screen.query_one(ScriptTextArea)
        row = next(i for i, t in enumerate(area.text.splitlines()) if t.startswith("[sfx gen="))
        area.move_cursor((row, 0))
        await pilot.press("escape", "g")
        await _until(pilot, lambda: screen.cue_states.get(row + 1) == "cached", seconds=60)
        await _until(pilot, lambda: any(NO_DEVICE in m for m in _messages(pilot)))
        files = sorted(cache.folder.glob("*.wav"))
        assert len(files) == 1  # that cue alone was generated
        before = area.document.get_line(row)
        await pilot.press("G")
        await _until(pilot, lambda: area.document.get_line(row) != before)
        after = area.document.get_line(row)
        assert after.startswith('[sfx gen="a heavy wooden door')
        old_seeds, new_seeds = re.findall(r"seed=(\d+)", before), re.findall(r"seed=(\d+)", after)
        assert len(new_seeds) == 1 and new_seeds != old_seeds
        await _until(pilot, lambda: screen.cue_states.get(row + 1) == "stale")
