"""The script editor's line QA: the outline shows each line's verdict, ``t`` re-rolls a line
with its next take (kept at every render), ``C`` lists the takes and keeps one by ear."""

from __future__ import annotations

import pytest
from textual.widgets import OptionList

from core.episodes.parser import load_script
from core.episodes.render import render_episode
from core.episodes.retakes import choice_id, load_choices
from core.workspace import Workspace
from tests.test_line_qa import PlantedScorer
from tests.test_script_screen import SIZE, EditorApp, _editor, _until
from tui.screens.dialog import Dialog
from tui.screens.takes import TakesScreen


def _assert_centred(screen: object) -> None:
    """The dialog's box stands in the middle of the screen (``Dialog`` is aligned so)."""
    assert isinstance(screen, Dialog)
    box = screen.query_one(".dialog").region
    width, height = screen.size
    assert abs(box.x - (width - box.width) // 2) <= 1, (box, screen.size)
    assert abs(box.y - (height - box.height) // 2) <= 1, (box, screen.size)


pytestmark = pytest.mark.usefixtures("no_color_unset")


def _outline(screen: object) -> list[str]:
    options = screen.query_one("#outline", OptionList)  # type: ignore[attr-defined]
    return [str(options.get_option_at_index(i).prompt) for i in range(options.option_count)]


async def test_the_outline_shows_qa_and_t_retakes_a_line_kept_at_every_render(
    demo_copy: Workspace,
) -> None:
    script = demo_copy.scripts_dir / "welcome.md"
    episode = load_script(script, demo_copy)
    wrong = episode.lines[0]
    # A planted scorer: line 1's audio scores as another speaker (its length is planted).
    from core.audio.io import resample
    from core.episodes.render import line_cache_key
    from core.episodes.synthesis.backends import make_backend
    from core.episodes.synthesis.cache import RenderCache

    render_episode(demo_copy, script, backend="draft")
    key = line_cache_key(demo_copy, make_backend(demo_copy, "draft"), wrong, 0)
    audio = RenderCache(demo_copy.episodes_dir / "welcome" / "cache").get(key)
    assert audio is not None
    scorer = PlantedScorer({len(resample(audio.audio, audio.sample_rate, 16000))})
    demo_copy.settings.qa.rate_tolerance = 0.9  # the draft voice is nobody's real rate
    demo_copy.settings.qa.min_length_ratio, demo_copy.settings.qa.max_length_ratio = 0.1, 10.0
    result = render_episode(demo_copy, script, backend="draft", retakes=1, scorer=scorer)
    assert [v.index for v in result.suspect] == [wrong.index]

    app = EditorApp(demo_copy)
    async with app.run_test(size=SIZE) as pilot:
        screen = await _editor(pilot)
        await _until(pilot, lambda: bool(screen.checks))
        labels = [label for label in _outline(screen) if "QA" in label]
        assert len(labels) == len(episode.lines)
        assert "QA ⚠ similarity 0.20 < 0.55" in labels[0]
        assert all("QA ✓" in label for label in labels[1:])
        # t on the first line: take 1, recorded and auditioned (rendered into the cache).
        screen._move_cursor(wrong.source_line, 1)
        await pilot.press("escape")  # leave the text for the outline: keys are commands
        await pilot.press("t")
        ident = choice_id(wrong.voice, wrong.text)
        await _until(pilot, lambda: load_choices(demo_copy, "welcome").get(ident) == 1)
        # C lists the takes; k keeps the highlighted one by ear.
        await pilot.press("C")
        await _until(pilot, lambda: isinstance(app.screen, TakesScreen))
        await _until(pilot, lambda: app.screen.query_one(".dialog").region.width > 0)
        _assert_centred(app.screen)
        takes = app.screen.query_one("#takes", OptionList)
        assert takes.option_count == 2  # take 0 (checked) and take 1 (not checked yet)
        takes.highlighted = 0
        await pilot.press("k")
        await _until(pilot, lambda: load_choices(demo_copy, "welcome").get(ident) == 0)
    again = render_episode(demo_copy, script, backend="draft", retakes=1, scorer=scorer)
    kept = next(v for v in again.qa or [] if v.index == wrong.index)
    assert kept.how == "by ear" and kept.kept.take == 0 and not kept.suspect


async def test_r_respells_a_hinted_word_and_the_hint_goes(demo_copy: Workspace) -> None:
    from textual.widgets import Input

    from tui.screens.respell import RespellScreen

    path = demo_copy.scripts_dir / "welcome.md"
    path.write_text(path.read_text() + "HOST: Ask NASA.\n")
    app = EditorApp(demo_copy)
    async with app.run_test(size=SIZE) as pilot:
        screen = await _editor(pilot)
        await _until(pilot, lambda: any(d.word == "NASA" for d in screen.diagnostics))
        assert screen.diagnostics[0].word == "NASA"
        # Keys only: escape leaves the text, tab enters Problems with its first row chosen.
        await pilot.press("escape", "tab")
        problems = screen.query_one("#diagnostics", OptionList)
        await _until(pilot, lambda: screen.focused is problems)
        assert problems.highlighted == 0
        await pilot.press("R")
        await _until(pilot, lambda: isinstance(app.screen, RespellScreen))
        assert getattr(app.screen, "word", None) == "NASA"
        await _until(pilot, lambda: app.screen.query_one(".dialog").region.width > 0)
        _assert_centred(app.screen)
        field = app.screen.query_one(Input)
        field.value = "nah sah"
        await pilot.press("enter")
        await _until(pilot, lambda: not any(d.word == "NASA" for d in screen.diagnostics))
    assert 'NASA = "nah sah"' in (demo_copy.root / "pronunciations.toml").read_text()


def test_the_loudness_report_plots_each_voices_similarity_along_the_episode(
    demo_copy: Workspace,
) -> None:
    """A voice that drifts shows where: each speaker's kept-take similarity in time order."""
    from core.episodes.editor import mix_report, read_manifest
    from tui.format import BARS, duration
    from tui.screens.script import format_report

    script = demo_copy.scripts_dir / "welcome.md"
    episode = load_script(script, demo_copy)

    class Drifting(PlantedScorer):
        """Similarity falls line by line: 0.95, 0.85, 0.75, ..."""

        def similarity(self, voice: str, clips: list) -> list[float | None]:  # type: ignore[override,type-arg]
            return [round(0.95 - 0.1 * i, 2) for i in range(len(clips))]

    demo_copy.settings.qa.rate_tolerance = 0.9
    demo_copy.settings.qa.min_length_ratio, demo_copy.settings.qa.max_length_ratio = 0.1, 10.0
    render_episode(demo_copy, script, backend="draft", retakes=1, scorer=Drifting(set()))
    manifest = read_manifest(demo_copy, "welcome") or {}
    report = mix_report(demo_copy, manifest, episode)
    starts = {ln["index"]: ln["start_sec"] for ln in manifest["lines"]}
    expected: dict[str, list[tuple[float, float]]] = {}
    for entry in manifest["qa"]["lines"]:
        kept = entry["candidates"][0]["scores"]["similarity"]
        expected.setdefault(entry["speaker"], []).append((starts[entry["index"]], kept))
    assert report.drift == {k: sorted(v) for k, v in expected.items()}
    assert set(report.drift) == {"HOST", "GUEST"} and len(report.drift["HOST"]) == 4
    shown = format_report(report).plain
    assert "voice similarity along the episode" in shown
    host = next(row for row in shown.splitlines() if row.startswith("HOST"))
    bars = "".join(ch for ch in host if ch in BARS)
    assert len(bars) == 4 and "lowest" in host
    low_at, lowest = min(report.drift["HOST"], key=lambda p: p[1])
    assert f"lowest {lowest:.2f} at {duration(low_at)}" in host
