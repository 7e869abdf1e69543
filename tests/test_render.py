"""Rendering episodes: draft and CSM backends, the render cache, loudness, exports."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyloudnorm
import pytest
import soundfile as sf

from core.episodes.render import render_episode
from core.errors import VoiceError
from core.workspace import Workspace
from tests.conftest import make_tiny_voice
from tests.meters import ideal_true_peak_db

ROOT = Path(__file__).resolve().parents[1]


def _measure(path: Path) -> tuple[float, float]:
    audio, sr = sf.read(str(path))
    lufs = pyloudnorm.Meter(sr).integrated_loudness(audio)
    return float(lufs), ideal_true_peak_db(audio)


def test_draft_render_of_the_demo_episode(demo_copy: Workspace) -> None:
    result = render_episode(demo_copy, "scripts/welcome.md", backend="draft")
    out = result.exported
    for path in (out.wav, out.mp3, out.manifest, out.chapters):
        assert path.is_file() and path.parent == demo_copy.episodes_dir / "welcome"
    lufs, true_peak = _measure(out.wav)
    assert lufs == pytest.approx(-19.0, abs=0.5) and true_peak <= -1.0 + 0.05
    mp3 = sf.info(str(out.mp3))
    assert abs(mp3.duration - sf.info(str(out.wav)).duration) < 0.1
    manifest = json.loads(out.manifest.read_text())
    assert manifest["backend"] == "draft" and manifest["script"] == "scripts/welcome.md"
    assert [ln["speaker"] for ln in manifest["lines"]][:2] == ["HOST", "GUEST"]
    starts = [ln["start_sec"] for ln in manifest["lines"]]
    assert starts == sorted(starts)
    chapters = json.loads(out.chapters.read_text())
    assert [c["title"] for c in chapters["chapters"]] == [
        "Cold open",
        "Making a dataset",
        "Wrap-up",
    ]
    assert len(result.rendered_lines) == len(result.episode.lines) and not result.cached_lines


def test_an_edit_re_renders_exactly_the_changed_line(demo_copy: Workspace) -> None:
    render_episode(demo_copy, "scripts/welcome.md", backend="draft")
    again = render_episode(demo_copy, "scripts/welcome.md", backend="draft")
    assert again.rendered_lines == [] and len(again.cached_lines) == len(again.episode.lines)
    script = demo_copy.scripts_dir / "welcome.md"
    script.write_text(script.read_text().replace("See you next week!", "See you soon!"))
    edited = render_episode(demo_copy, "scripts/welcome.md", backend="draft")
    changed = [ln.index for ln in edited.episode.lines if ln.text == "See you soon!"]
    assert edited.rendered_lines == changed
    cache = list((demo_copy.episodes_dir / "welcome" / "cache").glob("*.wav"))
    assert len(cache) == len(edited.episode.lines)  # the stale line's file was pruned


def test_same_inputs_give_byte_identical_outputs(demo_copy: Workspace) -> None:
    first = render_episode(demo_copy, "scripts/welcome.md", backend="draft").exported
    wav, manifest = first.wav.read_bytes(), first.manifest.read_bytes()
    shutil.rmtree(demo_copy.episodes_dir / "welcome")
    second = render_episode(demo_copy, "scripts/welcome.md", backend="draft").exported
    assert second.wav.read_bytes() == wav and second.manifest.read_bytes() == manifest


@pytest.fixture
def duo(demo_copy: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Workspace:
    """The demo with tiny trained voices for alice and bob (tiny models in a private cache)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    make_tiny_voice(demo_copy, "alice", seed=1)
    make_tiny_voice(demo_copy, "bob", seed=2)
    return demo_copy


def test_csm_backend_with_two_tiny_adapters_renders_a_two_speaker_script(
    duo: Workspace,
) -> None:
    demo_copy = duo
    script = demo_copy.scripts_dir / "duet.md"
    script.write_text(
        '+++\ntitle = "Duet"\n[speakers]\nA = "alice"\nB = "bob"\n+++\n\n# One\n'
        'A: Hello and welcome. <break time="300ms"/> Short one.\n'
        "B: Thanks, <emphasis>glad</emphasis> to be here.\n"
        "A: Bye.\n"
    )
    result = render_episode(demo_copy, script, backend="csm", seed=3)
    manifest = json.loads(result.exported.manifest.read_text())
    assert manifest["backend"] == "csm" and len(manifest["lines"]) == 3
    assert [ln["speaker"] for ln in manifest["lines"]] == ["A", "B", "A"]
    assert sum("<emphasis>" in w for w in result.warnings) == 1  # once per tag kind
    assert not any("<break>" in w for w in result.warnings)  # breaks are honoured
    again = render_episode(demo_copy, script, backend="csm", seed=3)
    assert (
        again.rendered_lines == []
        and again.exported.wav.read_bytes() == result.exported.wav.read_bytes()
    )
    mixed, _ = sf.read(result.exported.wav)
    assert len(mixed) > 0 and float(np.sqrt(np.mean(np.square(mixed)))) > 1e-4
    assert all(ln["end_sec"] > ln["start_sec"] for ln in manifest["lines"])

    # Each speaker's adapter really shapes the audio: the same text, seed and context give
    # other audio through the other speaker's adapter and through the base model (peft's
    # own disable_adapter()).
    import dataclasses

    from core.episodes.script import load_script
    from core.episodes.synthesis.csm_backend import CsmBackend

    backend = CsmBackend(demo_copy)
    line = load_script(script, demo_copy).lines[1]  # B: bob
    as_bob = backend.render(line, seed=11).audio
    assert len(as_bob) > 0 and float(np.abs(as_bob).max()) > 0.0
    as_alice = backend.render(dataclasses.replace(line, voice="alice"), seed=11).audio
    backend.render(line, seed=11)  # selects bob's adapter (and loads nothing new)
    with backend._model.disable_adapter():
        as_base = backend.render(line, seed=11).audio
    again_bob = backend.render(line, seed=11).audio
    assert np.array_equal(again_bob, as_bob)  # deterministic, so differences are the voices'

    def differs(a: np.ndarray, b: np.ndarray) -> bool:  # type: ignore[type-arg]
        n = min(len(a), len(b))
        return len(a) != len(b) or not np.allclose(a[:n], b[:n], atol=1e-4)

    assert differs(as_bob, as_alice) and differs(as_bob, as_base)


def test_a_speaker_without_a_trained_voice(demo_copy: Workspace) -> None:
    with pytest.raises(VoiceError, match=r"no trained voice.*--draft"):
        render_episode(demo_copy, "scripts/welcome.md", backend="csm")
    out = subprocess.run(
        [str(Path(sys.executable).with_name("podforge")), "render", str(demo_copy.root),
         "scripts/welcome.md"], capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 1 and out.stderr.startswith("podforge: error: ")
    assert "--draft" in out.stderr and "Traceback" not in out.stderr


def test_render_command_line(demo_copy: Workspace) -> None:
    out = subprocess.run(
        [str(Path(sys.executable).with_name("podforge")), "render", str(demo_copy.root),
         "scripts/welcome.md", "--draft"], capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "welcome.mp3" in out.stdout and "LUFS" in out.stdout


# -- consent gates a trained voice -----------------------------------------------------

CAROL_SCRIPT = '+++\ntitle = "Carol"\n[speakers]\nC = "carol"\n+++\n\nC: Hello from Carol.\n'


def _carol_with_a_voice(ws: Workspace) -> Path:
    """``carol`` (no consent record in the fixture) with a trained tiny voice and a script."""
    ws.settings.models.tts = "tiny"
    ws.save()
    make_tiny_voice(ws, "carol", seed=5)
    script = ws.scripts_dir / "carol.md"
    script.write_text(CAROL_SCRIPT)
    return script


@pytest.mark.slow  # loads PyTorch and the tiny CSM
def test_a_trained_voice_without_consent_is_not_synthesised(workspace: Workspace) -> None:
    from core.errors import ConsentError

    script = _carol_with_a_voice(workspace)
    with pytest.raises(ConsentError) as info:
        render_episode(workspace, script, backend="csm")
    message = str(info.value)
    assert "\n" not in message and "'carol'" in message and "synthesis" in message
    assert f"podforge speaker add {workspace.root} carol --consent" in message
    assert not (workspace.episodes_dir / "carol").exists()  # refused before any synthesis
    # The espeak-ng draft voice is nobody's clone: it is not gated.
    draft = render_episode(workspace, script, backend="draft")
    assert draft.exported.wav.is_file()

    out = subprocess.run(
        [str(Path(sys.executable).with_name("podforge")), "render", str(workspace.root),
         "scripts/carol.md"], capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 1 and out.stderr.startswith("podforge: error: speaker 'carol'")
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr
    assert "podforge speaker add" in out.stderr


def test_a_consent_scope_without_synthesis_refuses_the_trained_voice(
    workspace: Workspace,
) -> None:
    from core.episodes.synthesis.csm_backend import CsmBackend
    from core.errors import ConsentError
    from core.evaluation.evaluate import evaluate_voice
    from core.settings import new_consent
    from core.voices.consent import bind_consent
    from core.voices.folder import VoiceFolder

    script = _carol_with_a_voice(workspace)
    workspace.add_speaker("carol", new_consent("Carol C", "form 3", scope="training only"))
    with pytest.raises(ConsentError, match=r"'carol'.*'training only', not synthesis"):
        render_episode(workspace, script, backend="csm")
    with pytest.raises(ConsentError, match="'carol'"):
        evaluate_voice(workspace, "carol", texts=["Hello there."])
    workspace.add_speaker("carol", new_consent("Carol C", "form 4"))  # the default scope
    # The voice was exported before any consent: it must be exported (bound) again.
    with pytest.raises(ConsentError, match="carries no consent record"):
        CsmBackend(workspace).voice_folder("carol")
    bind_consent(workspace, "carol", VoiceFolder.for_speaker(workspace, "carol"))
    assert CsmBackend(workspace).voice_folder("carol") == workspace.voices_dir / "carol"


def _high_band_share(path: Path, above_hz: float = 12500.0) -> float:
    audio, sr = sf.read(str(path), dtype="float32")
    mono = audio if audio.ndim == 1 else audio.mean(axis=1)
    spectrum = np.abs(np.fft.rfft(mono)) ** 2
    freqs = np.fft.rfftfreq(mono.size, 1 / sr)
    return float(spectrum[freqs > above_hz].sum() / spectrum.sum())


def test_episode_with_music_is_mastered_at_48k_and_keeps_the_top_octave(
    demo_copy: Workspace,
) -> None:
    noise = np.random.default_rng(1).standard_normal(44100 * 20).astype(np.float32) * 0.1
    sf.write(str(demo_copy.assets_dir / "theme.wav"), noise, 44100)  # a bed with a top octave
    result = render_episode(demo_copy, "scripts/welcome.md", backend="draft")
    manifest = json.loads(result.exported.manifest.read_text())
    assert (
        manifest["sample_rate"] == 48000 and sf.info(str(result.exported.wav)).samplerate == 48000
    )
    assert manifest["target_lufs"] == -19.0 and manifest["ceiling_dbtp"] == -1.0
    assert manifest["channels"] == 1
    assert _high_band_share(result.exported.wav) > 1e-3  # the bed's content above 12 kHz
    lufs, true_peak = _measure(result.exported.wav)
    assert lufs == pytest.approx(-19.0, abs=0.5) and true_peak <= -1.0 + 0.05


def test_master_rate_and_stereo_follow_the_script(demo_copy: Workspace) -> None:
    script = demo_copy.scripts_dir / "welcome.md"
    text = script.read_text()
    head, rest = text.split("+++\n", 2)[1:]
    script.write_text(f"+++\n{head}\n[mix]\nsample_rate = 24000\nstereo = true\n+++\n{rest}"
                      if "[mix]" not in head else text)  # fmt: skip
    result = render_episode(demo_copy, "scripts/welcome.md", backend="draft")
    manifest = json.loads(result.exported.manifest.read_text())
    assert manifest["sample_rate"] == 24000 and manifest["channels"] == 2
    assert sf.info(str(result.exported.wav)).channels == 2
    assert manifest["target_lufs"] == -16.0


# -- long lines, cue files --------------------------------------------------------------


@pytest.mark.slow  # loads PyTorch and the tiny CSM, three generations
def test_a_line_too_long_for_one_generation_is_split_between_sentences(
    workspace: Workspace,
) -> None:
    from core.episodes.script import parse_script, split_text
    from core.episodes.synthesis.csm_backend import MIN_SECONDS, SENTENCE_GAP_S, CsmBackend

    workspace.settings.models.tts = "tiny"
    workspace.save()
    make_tiny_voice(workspace, "alice", seed=4)
    text = "One two. Three four. Five six."
    episode = parse_script(
        f'+++\ntitle = "Long"\n[speakers]\nA = "alice"\n+++\nA: {text}\n', workspace=workspace
    )
    backend = CsmBackend(workspace, max_chars=12)  # a 12-character generation limit
    rendered = backend.render(episode.lines[0], seed=1)
    assert backend.last_pieces == ["One two.", "Three four.", "Five six."]
    assert backend.last_pieces == split_text(text, 12)
    # Three generations of (at least) MIN_SECONDS each, joined by short silences: longer
    # than the one generation the whole line used to get (its bound, 2.7 s, cut it).
    seconds = len(rendered.audio) / rendered.sample_rate
    assert seconds > 2 * MIN_SECONDS + SENTENCE_GAP_S > len(text) * 0.09
    gap = round(SENTENCE_GAP_S * rendered.sample_rate)
    first_end = round(MIN_SECONDS * rendered.sample_rate)
    assert not rendered.audio[first_end : first_end + gap].any()  # the join is silence
    assert rendered.audio[:first_end].any()


def test_cue_file_problems_stop_a_render_at_the_cue(workspace: Workspace) -> None:
    from core.errors import ScriptError

    script = workspace.scripts_dir / "cues.md"
    head = '+++\ntitle = "Cues"\n[speakers]\nA = "alice"\n+++\nA: Hi.\n'
    script.write_text(head + "[sfx ../workspace.toml]\n")
    with pytest.raises(ScriptError, match=r"cues\.md:7:6: '\.\./workspace\.toml' is not an audio"):
        render_episode(workspace, script, backend="draft")
    (workspace.assets_dir / "fake.wav").write_text("not audio at all")
    script.write_text(head + "[music fake.wav fade_in=1s]\n")
    with pytest.raises(ScriptError, match=r"cues\.md:7:8: cue file 'fake\.wav'"):
        render_episode(workspace, script, backend="draft")
    assert not (workspace.episodes_dir / "cues").exists()


def test_a_sound_effect_by_words_is_skipped_with_one_warning_naming_its_line(
    workspace: Workspace,
) -> None:
    script = workspace.scripts_dir / "words.md"
    script.write_text(
        '+++\ntitle = "Words"\n[speakers]\nA = "alice"\n+++\nA: Hi.\n[sfx door creaks open]\n'
    )
    result = render_episode(workspace, script, backend="draft")
    about = [w for w in result.warnings if "door creaks open" in w]
    assert about == [
        f"{script}:7:6: sound effect 'door creaks open' names no file and is skipped; "
        'expected [sfx FILE] with a file in assets/, or [sfx gen="the words" 2s] to generate it'
    ]
    manifest = json.loads(result.exported.manifest.read_text())
    assert manifest["warnings"] == result.warnings


# -- the master's target and ceiling, cancelling --------------------------------------------


def test_master_target_mono_stereo_script_override_and_the_lower_ceiling() -> None:
    from core.episodes.script import ScriptMix
    from core.episodes.target import master_target
    from core.settings import Settings

    ws = Settings()
    ws.audio.target_lufs, ws.audio.true_peak_dbtp = -20.0, -1.5
    mono = master_target(ScriptMix(), ws)
    assert (mono.lufs, mono.ceiling_dbtp, mono.tolerance_lu) == (-20.0, -1.5, 0.5)
    assert master_target(ScriptMix(stereo=True), ws).lufs == -16.0  # not the workspace's
    ws.episode.stereo = True  # a stereo workspace: the same stereo default
    assert master_target(ScriptMix(), ws).lufs == -16.0
    override = master_target(ScriptMix(stereo=True, target_lufs=-23.0, true_peak_dbtp=-2.0), ws)
    assert (override.lufs, override.ceiling_dbtp) == (-23.0, -2.0)  # the script wins
    assert master_target(ScriptMix(true_peak_dbtp=-0.5), ws).ceiling_dbtp == -1.5  # the lower
    assert master_target(None, Settings()).lufs == -19.0  # no script: the workspace target
    assert ScriptMix(stereo=True).loudness_lufs == -16.0  # the deprecated property agrees


def test_the_manifest_records_the_target_and_ceiling_the_script_asked_for(
    demo_copy: Workspace,
) -> None:
    script = demo_copy.scripts_dir / "welcome.md"
    text = script.read_text()
    assert "[mix]" not in text
    head, rest = text.split("+++\n", 2)[1:]
    script.write_text(f"+++\n{head}[mix]\ntarget_lufs = -21.0\ntrue_peak_dbtp = -3.0\n+++\n{rest}")
    result = render_episode(demo_copy, "scripts/welcome.md", backend="draft")
    manifest = json.loads(result.exported.manifest.read_text())
    assert (manifest["target_lufs"], manifest["ceiling_dbtp"]) == (-21.0, -3.0)
    for key in ("lufs", "true_peak_dbtp", "sample_rate", "channels", "lines", "warnings"):
        assert key in manifest  # the keys it always had
    lufs, true_peak = _measure(result.exported.wav)
    assert lufs == pytest.approx(-21.0, abs=0.5) and true_peak <= -3.0 + 0.05


def test_a_cancelled_render_keeps_its_finished_lines_and_writes_no_episode(
    demo_copy: Workspace,
) -> None:
    from core.episodes.editor import line_states
    from core.episodes.parser import load_script
    from core.progress import Cancelled

    reports: list[str] = []

    def progress(done: int, total: int, what: str) -> None:
        reports.append(what)

    with pytest.raises(Cancelled):
        render_episode(
            demo_copy, "scripts/welcome.md", backend="draft", progress=progress,
            cancel=lambda: len(reports) >= 2,
        )  # fmt: skip
    assert len(reports) == 2  # it stopped at the first poll that said so
    folder = demo_copy.episodes_dir / "welcome"
    assert not (folder / "manifest.json").exists() and not (folder / "welcome.wav").exists()
    # The editor reads the states with the render's own cache key: two lines are cached.
    episode = load_script(demo_copy.scripts_dir / "welcome.md", demo_copy)
    states = line_states(demo_copy, "welcome", episode)
    assert [i for i, s in states.items() if s.state == "cached"] == [0, 1]
    again = render_episode(demo_copy, "scripts/welcome.md", backend="draft")
    assert again.cached_lines[:2] == [0, 1] and 0 not in again.rendered_lines


def test_a_render_cancelled_while_mastering_leaves_no_episode_and_no_temporary(
    demo_copy: Workspace,
) -> None:
    from core.episodes.master import STAGE_MIX
    from core.progress import Cancelled

    stages: list[str] = []
    with pytest.raises(Cancelled):
        render_episode(
            demo_copy, "scripts/welcome.md", backend="draft",
            progress=lambda done, total, what: stages.append(what),
            cancel=lambda: STAGE_MIX in stages,
        )  # fmt: skip
    assert stages.count(STAGE_MIX) == 1  # the master's own poll stopped it, at its first window
    folder = demo_copy.episodes_dir / "welcome"
    assert not (folder / "welcome.wav").exists() and not (folder / "manifest.json").exists()
    assert not list((demo_copy.root / ".tmp").glob("*.mix.f32"))


def test_csm_lines_sound_the_same_alone_in_mixed_batches_and_as_before(
    duo: Workspace,
) -> None:
    demo_copy = duo
    """The batched engine changes speed only: a line's audio is the same rendered alone, in a
    batch with the other speaker's lines, and through the stock one-line path of 0.1
    (``csm.synthesize`` with the speaker's adapter set)."""
    from core.episodes.parser import load_script
    from core.episodes.synthesis.csm_backend import CsmBackend
    from core.models import csm

    script = demo_copy.scripts_dir / "duet.md"
    script.write_text(
        '+++\ntitle = "Duet"\n[speakers]\nA = "alice"\nB = "bob"\n+++\n\n'
        'A: Hello and welcome. <break time="300ms"/> Short one.\n'
        "B: Thanks for having me.\nA: Bye.\n"
    )
    lines = load_script(script, demo_copy).lines
    items = [(line, 20 + line.index) for line in lines]
    batched = CsmBackend(demo_copy, batch_size=4).render_many(items)
    alone = CsmBackend(demo_copy, batch_size=1)
    for (line, seed), together in zip(items, batched, strict=True):
        assert np.array_equal(together.audio, alone.render(line, seed).audio), line.text
    # The stock path, one generation: B's line with bob's adapter set, bob's anchors.
    voice = alone._load("bob")
    alone._model.set_adapter("bob")
    stock = csm.synthesize(
        alone._bundle, "Thanks for having me.", 0, voice.anchors, seed=21,
        max_seconds=max(2.0, len("Thanks for having me.") * 0.09),
    )  # fmt: skip
    assert np.array_equal(batched[1].audio, stock)


def test_a_render_batches_its_missing_lines_and_caches_each(
    duo: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    demo_copy = duo
    from core.episodes.synthesis import csm_backend

    calls: list[int] = []
    original = csm_backend.CsmBackend._generate

    def counting(self: csm_backend.CsmBackend, jobs: list[object]) -> None:
        calls.append(len(jobs))
        original(self, jobs)  # type: ignore[arg-type]

    monkeypatch.setattr(csm_backend.CsmBackend, "_generate", counting)
    script = demo_copy.scripts_dir / "trio.md"
    script.write_text(
        '+++\ntitle = "Trio"\n[speakers]\nA = "alice"\nB = "bob"\n+++\n\n'
        "A: One.\nB: Two.\nA: Three.\nB: Four.\nA: Five.\n"
    )
    demo_copy.settings.models.tts_batch = 2
    result = render_episode(demo_copy, script, backend="csm", seed=5)
    assert calls == [2, 2, 1] and result.rendered_lines == [0, 1, 2, 3, 4]
    calls.clear()
    again = render_episode(demo_copy, script, backend="csm", seed=5)
    assert calls == [] and again.cached_lines == [0, 1, 2, 3, 4]
    assert again.exported.wav.read_bytes() == result.exported.wav.read_bytes()
