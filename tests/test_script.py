"""Episode scripts: every construct parses to the expected structure, every bad input is
one ScriptError line naming FILE:LINE:COL and what is expected."""

from __future__ import annotations

import dataclasses
import os
import pickle
import random
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import core.episodes.script as model
from core.demo.workspace import DEMO_SCRIPT
from core.episodes.script import (
    Break,
    Chapter,
    Episode,
    MusicCue,
    Pause,
    ScriptMix,
    SfxCue,
    Span,
    load_script,
    parse_script,
)
from core.errors import PodforgeError, ScriptError
from core.settings import new_consent
from core.workspace import Workspace

HEAD = '+++\ntitle = "T"\n[speakers]\nHOST = "alice"\nGUEST = "bob"\n+++\n'
"""Front matter of six lines: the body starts on line 7."""
BODY = 7


def write_wav(path: Path, seconds: float = 0.5) -> None:
    t = np.arange(int(24000 * seconds)) / 24000
    sf.write(path, (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 24000)


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    """A workspace with alice and bob and the demo's two asset files."""
    ws = Workspace.create(tmp_path / "show", name="show")
    for name in ("alice", "bob"):
        ws.add_speaker(name, new_consent(name.capitalize(), statement="test"))
    write_wav(ws.assets_dir / "theme.wav", 2.0)
    write_wav(ws.assets_dir / "chime.wav")
    return ws


def _texts(warnings: tuple[model.ScriptWarning, ...]) -> tuple[str, ...]:
    """The warnings' one-line ``FILE:LINE:COL: message`` texts."""
    return tuple(str(w) for w in warnings)


def parse(body: str, ws: Workspace | None = None, head: str = HEAD) -> Episode:
    return parse_script(head + body, source="ep.md", workspace=ws)


def error(body: str, ws: Workspace | None = None, head: str = HEAD) -> ScriptError:
    with pytest.raises(ScriptError) as info:
        parse(body, ws, head)
    return info.value


# --- structure ----------------------------------------------------------------------


def test_demo_script_parses_to_the_expected_episode(ws: Workspace) -> None:
    ep = parse_script(DEMO_SCRIPT, source="welcome.md", workspace=ws)
    assert ep.title == "Episode 1: Hello, podforge"
    assert ep.speakers == {"HOST": "alice", "GUEST": "bob"}
    assert ep.warnings == ()
    assert ep.mix == ScriptMix()
    assert ep.source == "welcome.md"
    assert [(c.index, c.title, c.level) for c in ep.chapters] == [
        (1, "Cold open", 1),
        (2, "Making a dataset", 1),
        (3, "Wrap-up", 1),
    ]
    assert [type(item).__name__ for item in ep.items] == [
        "Chapter", "MusicCue", "Line", "Line", "MusicCue",
        "Chapter", "Line", "Line", "Line", "Line", "Pause", "SfxCue",
        "Chapter", "Line", "Line",
    ]  # fmt: skip
    theme = ws.assets_dir / "theme.wav"
    assert ep.items[1] == MusicCue(theme, "start", 2.0, 0.0, -14.0, 0.0, 9)
    assert ep.items[4] == MusicCue(None, "stop", 0.0, 3.0, 0.0, 0.0, 12)
    assert ep.items[10] == Pause(1.2, 19)
    assert ep.items[11] == SfxCue(ws.assets_dir / "chime.wav", "chime.wav", 0.0, 20)
    lines = ep.lines
    assert [line.index for line in lines] == list(range(8))
    assert [line.speaker for line in lines] == ["HOST", "GUEST"] * 4
    assert [line.voice for line in lines] == ["alice", "bob"] * 4
    assert [line.chapter for line in lines] == [1, 1, 2, 2, 2, 2, 3, 3]
    assert ep.voices == ("alice", "bob")
    assert lines[0] == model.Line(
        0,
        "HOST",
        "alice",
        (
            Span("Welcome to the podforge demo. "),
            Break(0.4),
            Span("Today we talk about voices."),
        ),
        10,
        1,
    )
    assert lines[1].parts == (
        Span("Thanks for having me! I am "),
        Span("really", emphasis="moderate"),
        Span(" glad to be here."),
    )
    assert lines[6].parts == (
        Span("That is all for today.", rate="slow"),
        Span(" Thanks for listening."),
    )
    assert lines[1].text == "Thanks for having me! I am really glad to be here."
    assert [sorted(line.tag_kinds) for line in lines] == [
        ["break"], ["emphasis"], [], [], [], [], ["prosody"], [],
    ]  # fmt: skip
    assert ep.chapter_of(lines[3]) == ep.chapters[1]


def test_demo_script_parses_without_a_workspace() -> None:
    ep = parse_script(DEMO_SCRIPT)
    music = ep.items[1]
    assert isinstance(music, MusicCue) and music.path == Path("theme.wav")
    assert len(ep.lines) == 8 and ep.source == "<script>"


def test_front_matter_and_mix_table() -> None:
    head = (
        "+++\n"
        'title = "  Episode 2  "   # trailing comment\n'
        "[speakers]\n"
        'HOST = "alice"\n'
        '"DR SMITH" = "bob"\n'
        "[mix]\n"
        "gap_ms = -120\n"
        "fade_ms = 10\n"
        "duck_db = -18\n"
        "duck_attack_ms = 80\n"
        "duck_release_ms = 900\n"
        "stereo = true\n"
        'pan = { HOST = -0.25, "DR SMITH" = 0.3 }\n'
        "true_peak_dbtp = -1.5\n"
        "+++\n"
    )
    ep = parse("HOST: Hi.\nDR SMITH: Hello.\n[music theme.wav]\n", head=head)
    assert ep.title == "Episode 2"
    assert ep.speakers == {"HOST": "alice", "DR SMITH": "bob"}
    assert ep.mix == ScriptMix(
        gap_ms=-120,
        fade_ms=10,
        duck_db=-18.0,
        duck_attack_ms=80,
        duck_release_ms=900,
        stereo=True,
        pan={"HOST": -0.25, "DR SMITH": 0.3},
        target_lufs=None,
        true_peak_dbtp=-1.5,
    )
    assert ep.mix.loudness_lufs == -16.0
    assert ScriptMix().loudness_lufs == -19.0
    assert ScriptMix(target_lufs=-23.0).loudness_lufs == -23.0
    assert isinstance(ep.mix.duck_db, float)
    music = ep.items[2]
    assert isinstance(music, MusicCue) and music.duck_db == -18.0  # the [mix] default
    assert [line.speaker for line in ep.lines] == ["HOST", "DR SMITH"]
    assert ep.warnings == ()


def test_headings_start_chapters_and_lines_before_the_first_have_none() -> None:
    ep = parse(
        "HOST: Before any heading.\n"
        "# One\n"
        "HOST: In one.\n"
        "## One, part b ##\n"
        "GUEST: In part b.\n"
        "###### Deep\n"
        "HOST: Deep.\n"
        "#   C# and F#\n"
        "HOST: Sharp.\n"
    )
    assert ep.chapters == (
        Chapter(1, "One", 1, BODY + 1),
        Chapter(2, "One, part b", 2, BODY + 3),
        Chapter(3, "Deep", 6, BODY + 5),
        Chapter(4, "C# and F#", 1, BODY + 7),
    )
    assert [line.chapter for line in ep.lines] == [0, 1, 2, 3, 4]
    assert ep.chapter_of(ep.lines[0]) is None
    assert ep.chapter_of(ep.lines[2]) == ep.chapters[1]
    assert isinstance(ep.items[1], Chapter)


def test_continuation_lines_join_with_one_space_and_carry_tags() -> None:
    ep = parse(
        "HOST: This line is long\n"
        '  and goes on <emphasis level="strong">across\n'
        "\tthree</emphasis> lines.\n"
        "GUEST:\n"
        "    Text only on the next line.\n"
        "\n"
        "HOST: Separate.\n"
    )
    first, second, third = ep.lines
    assert first.source_line == BODY
    assert first.parts == (
        Span("This line is long and goes on "),
        Span("across three", emphasis="strong"),
        Span(" lines."),
    )
    assert second.text == "Text only on the next line." and second.source_line == BODY + 3
    assert third.text == "Separate." and third.source_line == BODY + 6


def test_comments_are_ignored_anywhere_in_the_body() -> None:
    ep = parse(
        "<!-- a note for the editor -->\n"
        "HOST: One <!-- inline --> two.\n"
        "<!-- a comment line does not end\n"
        "     the speaker line above -->\n"
        "  three.\n"
        "<!-- x --> GUEST: After a comment.\n"
        "[pause <!-- how long? --> 2s]\n"
    )
    assert [line.text for line in ep.lines] == ["One two. three.", "After a comment."]
    assert ep.items[-1] == Pause(2.0, BODY + 6)


def test_cues_with_every_option(ws: Workspace) -> None:
    (ws.assets_dir / "sfx").mkdir()
    write_wav(ws.assets_dir / "sfx" / "door creak.wav")
    write_wav(ws.root / "bed.flac")
    ep = parse(
        "[music theme.wav fade_in=2s fade_out=1500ms duck=-14dB volume=-6dB]\n"
        "HOST: Hi.\n"
        "[music bed.flac duck=0dB volume=+3db]\n"
        "[music stop fade_out=3s]\n"
        "[music stop]\n"
        '[sfx "sfx/door creak.wav" volume=-3.5dB]\n'
        "[sfx door creaks open]\n"
        "[sfx applause volume=-10dB]\n"
        "[sfx chime.wav]\n"
        "[pause 1.2s]\n"
        "[pause 400ms]\n"
        "[pause .5s]\n",
        ws,
    )
    a = ws.assets_dir
    assert ep.items[0] == MusicCue(a / "theme.wav", "start", 2.0, 1.5, -14.0, -6.0, BODY)
    assert ep.items[2] == MusicCue(ws.root / "bed.flac", "start", 0.0, 0.0, 0.0, 3.0, BODY + 2)
    assert ep.items[3] == MusicCue(None, "stop", 0.0, 3.0, 0.0, 0.0, BODY + 3)
    assert ep.items[4] == MusicCue(None, "stop", 0.0, 0.0, 0.0, 0.0, BODY + 4)
    assert ep.items[5:9] == (
        SfxCue(a / "sfx" / "door creak.wav", "sfx/door creak.wav", -3.5, BODY + 5),
        SfxCue(None, "door creaks open", 0.0, BODY + 6),
        SfxCue(None, "applause", -10.0, BODY + 7),
        SfxCue(a / "chime.wav", "chime.wav", 0.0, BODY + 8),
    )
    assert ep.items[9:] == (Pause(1.2, BODY + 9), Pause(0.4, BODY + 10), Pause(0.5, BODY + 11))
    # [music stop] with no bed playing is allowed, with a warning; so is an effect by words.
    skipped = (
        "names no file and is skipped; expected [sfx FILE] with a file in assets/, "
        'or [sfx gen="the words" 2s] to generate it'
    )
    assert _texts(ep.warnings) == (
        f"ep.md:{BODY + 4}:1: [music stop] but no music is playing",
        f"ep.md:{BODY + 6}:6: sound effect 'door creaks open' {skipped}",
        f"ep.md:{BODY + 7}:6: sound effect 'applause' {skipped}",
        "ep.md:5:1: speaker 'GUEST' is declared but never speaks",
    )
    assert [item.source_column for item in ep.items[5:9]] == [6, 6, 6, 6]


def test_cue_files_look_in_assets_first_then_the_root(ws: Workspace) -> None:
    write_wav(ws.root / "theme.wav")  # a second theme.wav at the root: assets/ wins
    write_wav(ws.root / "only-root.wav")
    ep = parse("[music theme.wav]\n[sfx only-root.wav]\n[sfx assets/chime.wav]\nHOST: Hi.\n", ws)
    assert [getattr(item, "path", None) for item in ep.items[:3]] == [
        ws.assets_dir / "theme.wav",
        ws.root / "only-root.wav",
        ws.assets_dir / "chime.wav",
    ]
    absolute = parse(f'[music "{ws.assets_dir / "theme.wav"}"]\nHOST: Hi.\n', ws)
    assert absolute.items[0] == MusicCue(ws.assets_dir / "theme.wav", "start", 0, 0, -12, 0, BODY)
    # A symlink that stays inside the workspace is fine and resolved to its target.
    os.symlink(ws.assets_dir / "chime.wav", ws.assets_dir / "bell.wav")
    linked = parse("[sfx bell.wav]\nHOST: Hi.\n", ws)
    assert linked.items[0] == SfxCue(ws.assets_dir / "chime.wav", "bell.wav", 0.0, BODY)


def test_tags_inside_lines() -> None:
    ep = parse(
        'HOST: A <break time="1.2s"/> B <break time=\'250ms\'> C<break time="1s" />D\n'
        'HOST: <emphasis level="reduced">soft</emphasis> <emphasis>plain</emphasis>\n'
        'HOST: <prosody rate="x-slow">slow <emphasis level="strong">and strong</emphasis>'
        '</prosody> <prosody rate="80%">eighty</prosody> <prosody rate="150.0%">fast</prosody>\n'
        "HOST: Fish &amp; chips &lt;3, and a < b > c.\n"
    )
    one, two, three, four = ep.lines
    assert one.parts == (
        Span("A "), Break(1.2), Span("B "), Break(0.25), Span("C"), Break(1.0), Span("D"),
    )  # fmt: skip
    assert one.text == "A B C D"
    assert two.parts == (
        Span("soft", emphasis="reduced"),
        Span(" "),
        Span("plain", emphasis="moderate"),
    )
    assert two.text == "soft plain"
    assert three.parts == (
        Span("slow ", rate="x-slow"),
        Span("and strong", emphasis="strong", rate="x-slow"),
        Span(" "),
        Span("eighty", rate="80%"),
        Span(" "),
        Span("fast", rate="150%"),
    )
    assert three.tag_kinds == {"emphasis", "prosody"}
    assert four.parts == (Span("Fish & chips <3, and a < b > c."),)
    assert four.tag_kinds == frozenset()


def test_ssml_output() -> None:
    ep = parse(
        'HOST: Hello, <break time="400ms"/> <emphasis level="strong">really</emphasis>\n'
        '  <prosody rate="slow">nice &amp; slow <emphasis>here</emphasis></prosody>; 1 &lt; 2.\n'
    )
    line = ep.lines[0]
    assert line.ssml() == (
        '<speak>Hello, <break time="400ms"/>'
        '<emphasis level="strong">really</emphasis> '
        '<prosody rate="slow">nice &amp; slow </prosody>'
        '<prosody rate="slow"><emphasis level="moderate">here</emphasis></prosody>'
        "; 1 &lt; 2.</speak>"
    )
    assert line.text == "Hello, really nice & slow here; 1 < 2."
    assert line.tag_kinds == {"break", "emphasis", "prosody"}
    assert parse("HOST: Plain.\n").lines[0].ssml() == "<speak>Plain.</speak>"


def test_ssml_is_spoken_by_espeak() -> None:
    from core.episodes.synthesis import draft

    if not draft.available():
        pytest.skip("espeak-ng does not load here")
    ep = parse(
        "HOST: Hello there how are you?\n"
        'HOST: Hello there <break time="1200ms"/> how are you?\n'
        'HOST: <prosody rate="x-slow">Hello there how are you?</prosody>\n'
    )
    plain, pause, slow = (draft.synthesize(line.ssml(), ssml=True) for line in ep.lines)
    assert 0.9 * 24000 < len(pause) - len(plain) < 1.5 * 24000  # the break, not read aloud
    assert len(slow) > 1.2 * len(plain)


def test_warnings_for_things_allowed_but_suspicious() -> None:
    head = HEAD.replace('GUEST = "bob"\n', 'GUEST = "bob"\n[mix]\npan = { HOST = 0.2 }\n')
    line = (
        'HOST: <break time="1s" strength="x-strong"/> Hi '
        '<emphasis foo="1">x</emphasis> <prosody pitch="high">y</prosody>.'
    )
    ep = parse(f"# Empty\n# Full\n{line}\n[music stop]\n", head=head)
    body = 9

    def col(piece: str) -> int:
        return line.index(piece) + 1

    assert _texts(ep.warnings) == (
        "ep.md:7:1: [mix] pan has no effect on a mono master; set stereo = true",
        f"ep.md:{body}:1: chapter 'Empty' has no lines",
        f"ep.md:{body + 2}:{col('strength')}: attribute 'strength' of <break> is not supported "
        "and is ignored (supported: time)",
        f"ep.md:{body + 2}:{col('foo')}: attribute 'foo' of <emphasis> is not supported and is "
        "ignored (supported: level)",
        f"ep.md:{body + 2}:{col('<prosody')}: <prosody> without rate changes nothing",
        f"ep.md:{body + 2}:{col('pitch')}: attribute 'pitch' of <prosody> is not supported and "
        "is ignored (supported: rate)",
        f"ep.md:{body + 3}:1: [music stop] but no music is playing",
        "ep.md:5:1: speaker 'GUEST' is declared but never speaks",
    )
    assert ep.lines[0].text == "Hi x y."


def test_warnings_are_structured_with_their_place() -> None:
    ep = parse("HOST: Hi.\n[music stop]\n")
    stop, unused = ep.warnings
    assert stop == model.ScriptWarning("ep.md", BODY + 1, 1, "[music stop] but no music is playing")
    assert (unused.line, unused.column) == (5, 1)
    assert unused.message == "speaker 'GUEST' is declared but never speaks"
    assert str(unused) == "ep.md:5:1: speaker 'GUEST' is declared but never speaks"
    with pytest.raises(dataclasses.FrozenInstanceError):
        stop.line = 2  # type: ignore[misc]
    assert pickle.loads(pickle.dumps(stop)) == stop


def test_the_parser_entry_points_and_the_old_mix_name_are_served_by_the_model() -> None:
    from core.episodes import parser

    assert model.parse_script is parser.parse_script
    assert model.load_script is parser.load_script
    assert model.check_cue_files is parser.check_cue_files
    assert model.MixSettings is ScriptMix  # the deprecated name of the script's [mix]
    with pytest.raises(AttributeError, match="no_such_name"):
        _ = model.no_such_name  # type: ignore[attr-defined]


def test_parse_is_pure_and_deterministic(ws: Workspace) -> None:
    def snapshot() -> list[tuple[str, int, int]]:
        return sorted(
            (str(p.relative_to(ws.root)), p.stat().st_size, p.stat().st_mtime_ns)
            for p in ws.root.rglob("*")
        )

    before = snapshot()
    first = parse_script(DEMO_SCRIPT, source="welcome.md", workspace=ws)
    second = parse_script(DEMO_SCRIPT, source="welcome.md", workspace=ws)
    assert first == second and first is not second
    assert repr(first) == repr(second)
    assert snapshot() == before
    with pytest.raises(dataclasses.FrozenInstanceError):
        first.title = "changed"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        first.lines[0].speaker = "X"  # type: ignore[misc]


def test_a_2000_line_script_parses_fast(ws: Workspace) -> None:
    body = []
    for i in range(250):
        body += [
            f"# Chapter {i}",
            "[music theme.wav fade_in=2s duck=-14dB]",
            f'HOST: Line {i} with a <break time="300ms"/> break and <emphasis>stress</emphasis>.',
            "GUEST: A reply that goes on",
            '  over a continuation line with <prosody rate="slow">a slow part</prosody>.',
            "[pause 0.5s]",
            "[sfx chime.wav volume=-6dB]",
            "[music stop fade_out=1s]",
        ]
    text = HEAD + "\n".join(body) + "\n"
    assert text.count("\n") >= 2000
    ep = parse_script(text, workspace=ws)  # speed: docs/PERFORMANCE.md (no timed tests)
    assert len(ep.lines) == 500 and len(ep.chapters) == 250


def test_load_script(ws: Workspace) -> None:
    path = ws.scripts_dir / "welcome.md"
    path.write_text(DEMO_SCRIPT, encoding="utf-8")
    ep = load_script(path, ws)
    assert ep.source == str(path) and len(ep.lines) == 8
    assert load_script(Path("welcome"), ws) == ep  # found in scripts/, .md added
    assert load_script(Path("welcome.md"), ws) == ep
    with pytest.raises(ScriptError, match=r"^nope\.md:1:1: no such script; expected"):
        load_script(Path("nope.md"), ws)
    bad = ws.scripts_dir / "latin1.md"
    bad.write_bytes(HEAD.encode() + "HOST: caf\xe9\n".encode("latin-1"))
    with pytest.raises(ScriptError) as info:
        load_script(bad, ws)
    assert str(info.value) == f"{bad}:7:10: not UTF-8 text; expected the script saved as UTF-8"


def test_script_error_is_one_line_and_survives_pickling() -> None:
    err = ScriptError("ep.md", 3, 5, "bad\nthing; expected good")
    assert isinstance(err, PodforgeError)
    assert str(err) == "ep.md:3:5: bad thing; expected good"
    copy = pickle.loads(pickle.dumps(err))
    assert (copy.source, copy.line, copy.column, str(copy)) == ("ep.md", 3, 5, str(err))


def test_crlf_line_endings_and_a_bom() -> None:
    text = "\ufeff" + (HEAD + "HOST: Hi.\n  there.\n[pause 1s]\n").replace("\n", "\r\n")
    ep = parse_script(text)
    assert ep.lines[0].text == "Hi. there." and ep.items[-1] == Pause(1.0, BODY + 2)


# --- bad input -------------------------------------------------------------------------

# (body after HEAD, line within the body from 0, column, a piece of the message)
BAD_BODIES = [
    ("NARRATOR: Hi.\n", 0, 1, "unknown speaker 'NARRATOR'; expected one of [speakers]: HOST"),
    ("Host: Hi.\n", 0, 1, "unknown speaker 'Host' (did you mean HOST?)"),
    ("HOST: I am <emphasis>so glad.\n", 0, 12, "<emphasis> is never closed; expected"),
    ("HOST: one\n  two <prosody rate='slow'>three\n", 1, 7, "<prosody> is never closed"),
    ("HOST: x</emphasis>\n", 0, 8, "</emphasis> closes nothing"),
    ("HOST: <b>bold</b>\n", 0, 7, "unknown tag <b>; expected break, emphasis or prosody"),
    ("HOST: wait <break/> now\n", 0, 12, "<break> needs a time"),
    ('HOST: wait <break time="soon"/>\n', 0, 25, "is not a duration; expected ms or s"),
    ('HOST: wait <break time="20s"/>\n', 0, 25, "out of range"),
    ("HOST: wait <break time=400ms/>\n", 0, 12, "is malformed; expected"),
    ("HOST: wait <break time='1s'\n", 0, 12, "is not closed with >"),
    ("HOST: </break>\n", 0, 7, "</break> closes nothing"),
    ("HOST: <emphasis/>\n", 0, 7, "<emphasis/> is empty"),
    ('HOST: <emphasis level="loud">x</emphasis>\n', 0, 24, "emphasis level 'loud' is not known"),
    ('HOST: <prosody rate="1.5">x</prosody>\n', 0, 22, "prosody rate '1.5' is not known"),
    ('HOST: <prosody rate="900%">x</prosody>\n', 0, 22, "prosody rate '900%' is not known"),
    ('HOST: <break time="1s" time="2s"/>\n', 0, 24, "attribute 'time' given twice"),
    ("HOST:   \n", 0, 1, "speaker line has no words; expected HOST: some text"),
    ("HOST: <break time='1s'/>\n", 0, 1, "speaker line has no words"),
    ("just some words\n", 0, 1, "cannot read this line; expected a speaker line NAME: text"),
    ("HOST: Hi.\n\n   and more\n", 2, 4, "an indented line continues a speaker line"),
    ("HOST: Hi.\n  [pause 1s]\n", 1, 3, "an indented cue would be read as words"),
    ("HOST: Hi. <!-- never closed\n\nGUEST: x\n", 0, 11, "comment <!-- is never closed"),
    ("#\nHOST: Hi.\n", 0, 1, "heading has no text; expected # Chapter title"),
    ("##   ##\nHOST: Hi.\n", 0, 1, "heading has no text; expected ## Chapter title"),
    ("#Title\nHOST: Hi.\n", 0, 2, "a heading needs a space after #"),
    ("####### Seven\n", 0, 1, "is not a heading"),
    ("[jingle theme.wav]\n", 0, 2, "unknown cue kind 'jingle'; expected music, sfx or pause"),
    ("[musik theme.wav]\n", 0, 2, "(did you mean music?)"),
    ("[]\n", 0, 1, "empty cue; expected"),
    ("[music theme.wav fade_in=2s\n", 0, 28, "cue is not closed; expected ]"),
    ("[pause 1s] HOST: hi\n", 0, 11, "unexpected text after the cue's ]"),
    ("[pause 1s]]\n", 0, 11, "unexpected text after the cue's ]"),
    ("[music stop fade_in=1s]\n", 0, 13, "unknown option 'fade_in' for [music stop]"),
    ("[music theme.wav fade_in=2s fade_in=3s]\n", 0, 29, "option 'fade_in' given twice"),
    ("[music theme.wav fade_in=fast]\n", 0, 26, "fade_in=fast is not a duration"),
    ("[music theme.wav fade_in=-1s]\n", 0, 26, "fade_in=-1s is not a duration"),
    ("[music theme.wav duck=-14]\n", 0, 23, "duck=-14 has no unit; expected dB such as -14dB"),
    ("[music theme.wav duck=14dB]\n", 0, 23, "duck=14dB is out of range; expected -60dB to 0dB"),
    ("[music theme.wav volume=loud]\n", 0, 25, "volume=loud is not a level; expected dB"),
    ("[music]\n", 0, 7, "music cue names no file; expected [music FILE"),
    ("[music theme.wav chime.wav]\n", 0, 18, "unexpected 'chime.wav'; expected one file name"),
    ("[music fade_in = 2s]\n", 0, 16, "option '=' is incomplete; expected key=value"),
    ("[music theme.wav fade_in= 2s]\n", 0, 18, "option 'fade_in=' is incomplete"),
    ('[music "theme.wav]\n', 0, 8, 'a quoted name is not closed; expected "name"'),
    ("[sfx]\n", 0, 5, "sfx cue is empty"),
    ("[sfx door creak.wav]\n", 0, 6, "unexpected 'door' next to the file 'creak.wav'"),
    ("[pause]\n", 0, 7, "pause has no length; expected [pause 1.2s]"),
    ("[pause 1.2]\n", 0, 8, "pause 1.2 has no unit; expected [pause 1.2s]"),
    ("[pause 0s]\n", 0, 8, "pause 0s is out of range"),
    ("[pause 1s 2s]\n", 0, 11, "unexpected '2s'"),
    ("[music ../outside.wav]\n", 0, 8, "'../outside.wav' may lie outside the workspace"),
    ("[sfx /etc/passwd.wav]\n", 0, 6, "may lie outside the workspace"),
    ("[pause 1s fade_in=2s]\n", 0, 11, "unknown option 'fade_in' for [pause]; expected no options"),
    ("[music theme.wav fade_in=90s]\n", 0, 26, "fade_in=90s is out of range; expected 0s to 60s"),
    # Rows too long for one line.
    (
        "HOST: <emphasis><prosody rate='slow'>x</emphasis></prosody>\n",
        0,
        39,
        "</emphasis> does not match <prosody> opened at 7:17; expected </prosody> first",
    ),
    (
        'HOST: wait <break time="400"/> now\n',
        0,
        25,
        'break time="400" has no unit; expected ms or s',
    ),
    (
        "[music theme.wav loop=yes]\n",
        0,
        18,
        "unknown option 'loop' for [music]; expected one of fade_in",
    ),
    (
        "[sfx chime.wav duck=-3dB]\n",
        0,
        16,
        "unknown option 'duck' for [sfx]; expected one of volume",
    ),
    (
        "[music theme.wav fade_in=2]\n",
        0,
        26,
        "fade_in=2 has no unit; expected a duration such as 2s",
    ),
]


@pytest.mark.parametrize(("body", "offset", "col", "piece"), BAD_BODIES)
def test_bad_bodies_without_a_workspace(body: str, offset: int, col: int, piece: str) -> None:
    line = BODY + offset
    err = error(body)
    message = str(err)
    assert "\n" not in message
    assert message.startswith(f"ep.md:{line}:{col}: "), message
    assert piece in message, message
    assert "expected" in message
    assert (err.source, err.line, err.column) == ("ep.md", line, col)


def check(err: ScriptError, line: int, col: int, *pieces: str) -> None:
    message = str(err)
    assert "\n" not in message and "expected" in message, message
    assert message.startswith(f"ep.md:{line}:{col}: "), message
    for piece in pieces:
        assert piece in message, message


def test_cue_naming_a_missing_file_says_where_it_looked(ws: Workspace) -> None:
    err = error("[music themes.wav]\nHOST: Hi.\n", ws)
    check(
        err,
        BODY,
        8,
        "file 'themes.wav' not found (looked in "
        f"{ws.assets_dir / 'themes.wav'} and {ws.root / 'themes.wav'}); "
        f"expected the file in {ws.assets_dir}",
    )
    (ws.assets_dir / "folder.wav").mkdir()
    check(error("[sfx folder.wav]\n", ws), BODY, 6, "file 'folder.wav' not found")


def test_paths_outside_the_workspace_are_refused(ws: Workspace, tmp_path: Path) -> None:
    outside = tmp_path / "outside.wav"
    write_wav(outside)
    for name in ("../../etc/passwd", "../../outside.wav", str(outside), "/etc/passwd"):
        err = error(f'[music "{name}"]\nHOST: Hi.\n', ws)
        check(err, BODY, 8, f"{name!r} is outside the workspace {ws.root}; expected a path inside")
    # One level up from assets/ is still inside the workspace: the root.
    write_wav(ws.root / "up.wav")
    ep = parse("[sfx ../up.wav]\nHOST: Hi.\n", ws)
    assert ep.items[0] == SfxCue(ws.root / "up.wav", "../up.wav", 0.0, BODY)


def test_symlinks_resolving_outside_are_refused(ws: Workspace, tmp_path: Path) -> None:
    outside = tmp_path / "secret.wav"
    write_wav(outside)
    os.symlink(outside, ws.assets_dir / "link.wav")
    os.symlink(tmp_path, ws.assets_dir / "dir")
    check(
        error("[sfx link.wav]\nHOST: Hi.\n", ws),
        BODY,
        6,
        f"'link.wav' leads through a symlink to {outside}, outside the workspace",
    )
    check(error("[music dir/secret.wav]\nHOST: Hi.\n", ws), BODY, 8, "through a symlink")
    os.symlink(tmp_path / "missing.wav", ws.assets_dir / "dangling.wav")
    check(error("[sfx dangling.wav]\nHOST: Hi.\n", ws), BODY, 6, "through a symlink")


def test_unknown_workspace_speaker_says_how_to_add_it(ws: Workspace) -> None:
    head = HEAD.replace('GUEST = "bob"', 'GUEST = "carol"')
    err = error("HOST: Hi.\n", ws, head)
    check(
        err,
        5,
        1,
        f"speaker GUEST is mapped to 'carol', which is not a speaker of the workspace {ws.root} "
        "(known: alice, bob)",
        f"`podforge speaker add {ws.root} carol --consent",
    )
    # Without a workspace the mapping is taken as written.
    assert parse("GUEST: Hi.\n", head=head).lines[0].voice == "carol"


def test_speaker_line_before_any_speaker_is_declared() -> None:
    head = '+++\ntitle = "T"\n+++\n'
    check(
        error("HOST: Hi.\n", head=head),
        4,
        1,
        "speaker line before any speaker is declared (HOST); expected a [speakers] table",
    )


@pytest.mark.parametrize(
    ("text", "line", "col", "piece"),
    [
        # Rows too long for one line.
        (
            '+++\ntitle = "T"\n[speakers]\nHOST = 3\n+++\n',
            4,
            1,
            "HOST = 3 is not a workspace speaker",
        ),
        (
            '+++\ntitle = "T"\n[speakers]\nHOST = "alice"\n[mix]\npan = { GUEST = 0.1 }\n+++\n',
            6,
            1,
            "[mix] pan names 'GUEST', which is not in [speakers] (HOST)",
        ),
        (
            '+++\ntitle = "T"\n[speakers]\nHOST = "alice"\n[mix]\npan = { HOST = 2 }\n+++\n',
            6,
            1,
            "pan.HOST = 2 is out of range",
        ),
        ("", 1, 1, "nothing to render: the script is empty"),
        ("\n\n  \n", 1, 1, "nothing to render"),
        (HEAD, 7, 1, "nothing to render: the script has no speaker lines"),
        (HEAD + "# Intro\n[pause 1s]\n<!-- HOST: hi -->\n", 7, 1, "nothing to render"),
        ("HOST: Hi.\n", 1, 1, "missing front matter; expected the script to start with a +++"),
        ("\n---\ntitle: x\n---\n", 2, 1, "(YAML --- front matter is not supported)"),
        ('+++\ntitle = "T"\nHOST: Hi.\n', 1, 1, "front matter is not closed; expected a +++"),
        ('+++\ntitle = "T"\n[speakers]\nHOST = alice\n+++\n', 4, 8, "not valid TOML (Invalid"),
        ('+++\ntitle = "T\n+++\nHOST: hi\n', 2, 11, "not valid TOML (Illegal character"),
        ("+++\n[speakers]\nHOST = 'alice'\n+++\nHOST: hi\n", 1, 1, "the front matter has no title"),
        ("+++\ntitle = 3\n+++\n", 2, 1, "title must be a non-empty string"),
        ('+++\ntitle = "  "\n+++\n', 2, 1, "title must be a non-empty string"),
        ('+++\ntitle = "T"\nauthor = "me"\n+++\n', 3, 1, "unknown front matter key 'author'"),
        ('+++\ntitle = "T"\n[music]\nx = 1\n+++\n', 3, 1, "unknown front matter key 'music'"),
        ('+++\ntitle = "T"\nspeakers = 3\n+++\n', 3, 1, "speakers must be a table"),
        ('+++\ntitle = "T"\n[speakers]\nHOST = "Alice"\n+++\n', 4, 1, "not a workspace speaker"),
        ('+++\ntitle = "T"\n[speakers]\n"A:B" = "alice"\n+++\n', 4, 1, "script name 'A:B'"),
        ('+++\ntitle = "T"\nmix = 1\n+++\n', 3, 1, "mix must be a table"),
        ('+++\ntitle = "T"\n[mix]\ngap = 1\n+++\n', 4, 1, "unknown [mix] key 'gap'; expected"),
        ('+++\ntitle = "T"\n[mix]\n  gap_ms = 1.5\n+++\n', 4, 3, "gap_ms = 1.5; expected a whole"),
        ('+++\ntitle = "T"\n[mix]\nstereo = 1\n+++\n', 4, 1, "expected true or false"),
        ('+++\ntitle = "T"\n[mix]\nduck_db = true\n+++\n', 4, 1, "expected a number"),
        ('+++\ntitle = "T"\n[mix]\nduck_db = 6\n+++\n', 4, 1, "duck_db = 6 is out of range"),
        ('+++\ntitle = "T"\n[mix]\ntarget_lufs = -5\n+++\n', 4, 1, "out of range; expected -40"),
        ('+++\ntitle = "T"\n[mix]\npan = 1\n+++\n', 4, 1, "pan must be a table"),
    ],
)
def test_bad_front_matter_and_empty_scripts(text: str, line: int, col: int, piece: str) -> None:
    with pytest.raises(ScriptError) as info:
        parse_script(text, source="ep.md")
    check(info.value, line, col, piece)


def test_mangled_scripts_fail_only_with_a_script_error_inside_the_file() -> None:
    """2,000 random edits of the demo script: each parses or raises one ScriptError line
    whose line and column lie inside the text; nothing else is ever raised."""
    rng = random.Random(7)
    pieces = [*"<>/[]=\"'#:+ \n\t&;-!%.sm0123456789aXZ", "<!--", "-->", "<break", "</emphasis>"]
    pieces += ["<prosody rate=", "+++", "[music ", "[sfx ", "[pause ", "HOST:", "  "]
    outcomes = {"parsed": 0, "refused": 0}
    for _ in range(2000):
        chars = list(DEMO_SCRIPT)
        for _ in range(rng.randint(1, 6)):
            at = rng.randrange(len(chars) + 1)
            roll = rng.random()
            if roll < 0.4:
                chars.insert(at, rng.choice(pieces))
            elif at < len(chars):
                if roll < 0.8:
                    del chars[at]
                else:
                    chars[at] = rng.choice(pieces)
        text = "".join(chars)
        try:
            parse_script(text, source="f.md").lines[0].ssml()
            outcomes["parsed"] += 1
        except ScriptError as exc:
            outcomes["refused"] += 1
            lines = re.split(r"\r\n|\r|\n", text)
            assert "\n" not in str(exc) and str(exc).startswith(f"f.md:{exc.line}:{exc.column}: ")
            assert 1 <= exc.line <= len(lines)
            assert 1 <= exc.column <= len(lines[exc.line - 1]) + 1
    assert outcomes["parsed"] > 100 and outcomes["refused"] > 100


# --- cue files are audio, checked with their place -------------------------------------


def test_a_cue_file_that_is_not_audio_is_refused_at_its_place(ws: Workspace) -> None:
    check(
        error("[sfx ../workspace.toml]\nHOST: Hi.\n", ws),
        BODY,
        6,
        "'../workspace.toml' is not an audio file ('.toml')",
    )
    check(error("[music catalog.sqlite]\nHOST: Hi.\n", ws), BODY, 8, "not an audio file")
    # Without a workspace nothing is looked up, so nothing is refused for its extension.
    assert parse("[sfx notes/a.toml]\nHOST: Hi.\n").items[0].path == Path("notes/a.toml")


def test_load_script_probes_cue_files_and_names_the_cue(ws: Workspace) -> None:
    (ws.assets_dir / "fake.wav").write_text("this is not a WAV file")
    (ws.assets_dir / "empty.flac").write_bytes(b"")
    path = ws.scripts_dir / "ep.md"
    # The parser only looks at names; load_script (what a render reads) opens the files.
    path.write_text(HEAD + "HOST: Hi.\n\n[sfx fake.wav volume=-3dB]\n")
    assert parse("HOST: Hi.\n[sfx fake.wav]\n", ws).items[1].path == ws.assets_dir / "fake.wav"
    with pytest.raises(ScriptError) as info:
        load_script(path, ws)
    err = info.value
    assert (err.source, err.line, err.column) == (str(path), BODY + 2, 6)
    assert "'fake.wav'" in err.message and "\n" not in str(err)
    path.write_text(HEAD + "HOST: Hi.\n[music empty.flac fade_in=1s]\n")
    with pytest.raises(ScriptError, match=rf":{BODY + 1}:8: .*'empty.flac'.*empty"):
        load_script(path, ws)


def test_a_sound_effect_without_a_file_is_skipped_with_a_warning_at_its_place(
    ws: Workspace,
) -> None:
    ep = parse("HOST: Hi.\n[sfx door creaks open]\n", ws)
    assert ep.items[1] == SfxCue(None, "door creaks open", 0.0, BODY + 1)
    assert str(ep.warnings[0]) == (
        f"ep.md:{BODY + 1}:6: sound effect 'door creaks open' names no file and is skipped; "
        'expected [sfx FILE] with a file in assets/, or [sfx gen="the words" 2s] to generate it'
    )


# --- long lines ------------------------------------------------------------------------


def test_split_text_cuts_between_sentences_and_keeps_every_word() -> None:
    from core.episodes.script import MAX_PIECE_CHARS, split_text

    sentences = [
        f"Sentence number {i} says a few more words than the one before." for i in range(20)
    ]
    text = " ".join(sentences)
    assert len(text) > 2 * MAX_PIECE_CHARS
    pieces = split_text(text)
    assert len(pieces) >= 3 and all(len(p) <= MAX_PIECE_CHARS for p in pieces)
    assert " ".join(pieces) == text
    for piece in pieces:  # whole sentences only
        assert piece.endswith(".") and piece[0] == "S"
    assert split_text("Short. Text!") == ["Short. Text!"]
    # One sentence longer than a piece: cut at commas, then between words; nothing is lost.
    long_one = ", ".join(["a clause of some words"] * 30) + "."
    pieces = split_text(long_one, 100)
    assert all(len(p) <= 100 for p in pieces) and " ".join(pieces) == long_one
    assert all(p.endswith((",", ".")) for p in pieces)
    words = " ".join(["word"] * 60)
    assert " ".join(split_text(words, 50)) == words


def test_a_sentence_too_long_for_one_generation_is_a_warning_at_its_line() -> None:
    from core.episodes.script import MAX_PIECE_CHARS

    fine = " ".join(["This sentence is short enough."] * 40)  # long line, short sentences
    long_sentence = " and ".join(["the sentence goes on"] * 30) + "."
    assert len(long_sentence) > MAX_PIECE_CHARS
    ep = parse(f"HOST: {fine}\n\nGUEST: Well,\n  {long_sentence}\n")
    assert _texts(ep.warnings) == (
        f"ep.md:{BODY + 2}:8: a sentence of {len('Well, ' + long_sentence)} characters is "
        "longer than "
        f"a trained voice speaks in one go ({MAX_PIECE_CHARS}); it will be cut at commas or "
        "between words; expected shorter sentences",
    )
