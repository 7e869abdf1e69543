"""The synthetic-speech mark: every rendered line carries it, `podforge check` finds it in the
final files and does not find it in unmarked speech, music, hum or noise.

The independent reference for the marking is the library's own detector API
(``PerthImplicitWatermarker.get_watermark``, librosa's resampler), not ours."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import tomli_w

from core.audio.io import read, resample
from core.demo.workspace import mains_hum, music_bed, room_noise
from core.episodes.render import render_episode
from core.episodes.synthesis.draft import DraftVoice, synthesize
from core.errors import WatermarkError, WorkspaceConfigError
from core.watermark import perth
from core.watermark.detect import WINDOW_THRESHOLD, check_audio, check_file
from core.workspace import Workspace

SR = 24000
TEXTS = (
    "Welcome back to the show, where we talk about sound, speech and the machines that "
    "make them, one story at a time.",
    "In nineteen sixty two a computer sang a song on stage, and nobody who heard it has "
    "forgotten it since that night.",
)


def _espeak(text: str, voice: str) -> np.ndarray:
    return synthesize(text, DraftVoice(language=voice), SR)


@pytest.fixture(scope="module")
def speech() -> list[np.ndarray]:
    gap = np.zeros(SR // 3, np.float32)
    return [np.concatenate([_espeak(t, v), gap]) for v in ("en-us", "en+f3", "de") for t in TEXTS]


@pytest.fixture(scope="module")
def mark() -> perth.PerthMark:
    return perth.load_mark()


def _library_score(audio: np.ndarray, rate: int) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from perth.perth_net.perth_net_implicit.perth_watermarker import (
            PerthImplicitWatermarker,
        )
    reference = PerthImplicitWatermarker(perth_net=perth.load_mark().net, run_name=None)
    return float(reference.get_watermark(audio, rate, round=False))


def test_a_marked_line_keeps_its_length_and_the_library_reads_the_mark(
    speech: list[np.ndarray], mark: perth.PerthMark
) -> None:
    line = speech[0]
    marked = mark.apply(line, SR)
    assert marked.shape == line.shape and marked.dtype == np.float32
    assert _library_score(marked, SR) >= WINDOW_THRESHOLD
    assert _library_score(line, SR) < 0.5
    # imperceptible by design, but not nothing: the change is the mark, not a copy
    change = 10 * np.log10(np.mean((marked - line) ** 2) / np.mean(line**2))
    assert -40.0 < change < -6.0
    assert np.array_equal(mark.apply(line, SR), marked)  # deterministic: same line, same audio


def test_check_calls_unmarked_speech_music_hum_and_noise_unmarked(
    speech: list[np.ndarray], mark: perth.PerthMark
) -> None:
    talk = np.concatenate(speech)
    n = talk.size
    rng = np.random.default_rng(3)
    bed = music_bed(SR, n / SR, rng)[:n]
    bed = bed.mean(axis=1) if bed.ndim > 1 else bed
    hum, noise = mains_hum(n, SR, 50.0, -30.0), room_noise(n, SR, rng, -30.0)
    jfk, jfk_rate = read(Path(__file__).parent / "data" / "jfk.flac")
    corpus = {
        "speech": talk,
        "jfk": resample(jfk, jfk_rate, SR),
        "music": bed,
        "hum": hum,
        "noise": noise,
        "speech under music": talk + 0.12 * bed,
        "speech with hum": talk + hum,  # the raw detector scores these windows up to 0.95
    }
    for name, audio in corpus.items():
        result = check_audio(audio.astype(np.float32), SR, mark)
        assert result.verdict == "unmarked", (name, result.summary())
        assert result.marked_windows == 0, (name, result.scores)
    # without the speech gate the detector would call hum and music marked
    assert mark.score(hum[: 3 * SR], SR) > 0.9 and mark.score(bed[: 3 * SR], SR) > 0.9


def test_check_finds_the_mark_under_a_bed_and_when_one_line_in_four_is_marked(
    speech: list[np.ndarray], mark: perth.PerthMark
) -> None:
    marked = [mark.apply(s, SR) for s in speech]
    talk = np.concatenate(marked)
    bed = music_bed(SR, talk.size / SR, np.random.default_rng(5))[: talk.size]
    bed = bed.mean(axis=1) if bed.ndim > 1 else bed
    under_bed = check_audio(0.7 * (talk + 0.12 * bed), SR, mark)
    assert under_bed.verdict == "marked" and under_bed.fraction > 0.9
    one_in_four = np.concatenate(
        [m if i % 4 == 0 else s for i, (m, s) in enumerate(zip(marked, speech, strict=True))]
    )
    mixed = check_audio(one_in_four, SR, mark)
    assert mixed.verdict == "marked" and 0.1 < mixed.fraction < 0.6, mixed.summary()


def test_the_rendered_episode_is_marked_in_its_mp3_and_says_so(demo_copy: Workspace) -> None:
    result = render_episode(demo_copy, demo_copy.scripts_dir / "welcome.md", backend="draft")
    manifest = json.loads(result.exported.manifest.read_text())
    assert manifest["watermark"]["applied"] is True
    assert manifest["watermark"]["library"].startswith("resemble-perth ")
    found = check_file(result.exported.mp3)
    assert found.verdict == "marked" and found.fraction >= 0.8, found.summary()


def test_turning_the_mark_off_needs_a_reason_and_is_recorded(demo_copy: Workspace) -> None:
    config = demo_copy.config_path
    doc = tomllib.loads(config.read_text())
    assert doc["watermark"] == {"enabled": True, "reason": ""}  # written out, on by default
    doc["watermark"] = {"enabled": False}
    config.write_text(tomli_w.dumps(doc))
    with pytest.raises(WorkspaceConfigError, match=r"watermark\.reason") as info:
        Workspace.open(demo_copy.root)
    assert "\n" not in str(info.value)
    doc["watermark"] = {"enabled": False, "reason": "internal test render"}
    config.write_text(tomli_w.dumps(doc))
    ws = Workspace.open(demo_copy.root)
    result = render_episode(ws, ws.scripts_dir / "welcome.md", backend="draft")
    manifest = json.loads(result.exported.manifest.read_text())
    assert manifest["watermark"] == {"applied": False, "reason": "internal test render"}
    assert check_file(result.exported.mp3).verdict == "unmarked"


def test_a_broken_watermark_install_is_one_line_not_an_unmarked_episode(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "perth.perth_net.perth_net_implicit.perth_watermarker", None)
    perth.load_mark.cache_clear()
    try:
        with pytest.raises(WatermarkError, match=r"cannot load.*uv sync") as info:
            perth.load_mark()
        assert "\n" not in str(info.value)
    finally:
        perth.load_mark.cache_clear()


def test_podforge_check_prints_one_line_per_file(tmp_path: Path, speech: list[np.ndarray]) -> None:
    marked = perth.load_mark().apply(np.concatenate(speech), SR)
    sf.write(tmp_path / "marked.wav", marked, SR)
    sf.write(tmp_path / "plain.flac", np.concatenate(speech), SR)
    run = subprocess.run(
        [sys.executable, "-m", "tui.cli", "check", str(tmp_path / "marked.wav"),
         str(tmp_path / "plain.flac"), str(tmp_path / "missing.mp3")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert run.returncode == 1
    lines = run.stdout.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(f"{tmp_path / 'marked.wav'}: marked (")
    assert lines[1].startswith(f"{tmp_path / 'plain.flac'}: unmarked (0/")
    assert run.stderr.strip().count("\n") == 0 and "missing.mp3" in run.stderr
    assert "Traceback" not in run.stderr


def test_a_hand_made_unmarked_backend_is_not_reported_as_marked(demo_copy: Workspace) -> None:
    from core.episodes.synthesis.backends import DraftBackend

    engine = DraftBackend(demo_copy.settings.speakers)  # not through make_backend: no mark
    result = render_episode(demo_copy, demo_copy.scripts_dir / "welcome.md", backend=engine)
    manifest = json.loads(result.exported.manifest.read_text())
    assert manifest["watermark"]["applied"] is False
    assert check_file(result.exported.mp3).verdict == "unmarked"
