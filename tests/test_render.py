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
from scipy.signal import resample_poly

from core.errors import VoiceError
from core.synthesis.render import render_episode
from core.workspace import Workspace
from tests.conftest import make_tiny_voice

ROOT = Path(__file__).resolve().parents[1]


def _measure(path: Path) -> tuple[float, float]:
    audio, sr = sf.read(str(path))
    lufs = pyloudnorm.Meter(sr).integrated_loudness(audio)
    true_peak = 20 * np.log10(np.max(np.abs(resample_poly(audio, 8, 1))))
    return float(lufs), float(true_peak)


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


def test_csm_backend_with_two_tiny_adapters_renders_a_two_speaker_script(
    demo_copy: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    make_tiny_voice(demo_copy, "alice", seed=1)
    make_tiny_voice(demo_copy, "bob", seed=2)
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
