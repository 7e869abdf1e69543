"""Generated sound (``gen=`` cues): the tiny Stable Audio pipeline for real, end to end."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from core.audio.io import write_wav
from core.episodes.parser import parse_script
from core.episodes.render import render_episode
from core.episodes.sound.backend import STAGE_SOUND
from core.episodes.sound.stable_audio import load_stable_audio
from core.errors import ModelError, ScriptError
from core.workspace import Workspace

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("cache_home")]

SCRIPT = """\
+++
title = "Sound"
[speakers]
HOST = "alice"
+++

[music gen="warm lo-fi bed, no vocals, 80 bpm" 3s fade_in=1s duck=-12dB volume=-6dB]
HOST: Welcome back.
[sfx gen="a heavy wooden door creaks open, close mic" 1.5s seed=4]
HOST: That was the door.
"""


def _sound_workspace(ws: Workspace) -> Workspace:
    ws.settings.models.sound = "tiny"
    ws.save()
    return Workspace.open(ws.root)


def _write(ws: Workspace, text: str, name: str = "ep.md") -> Path:
    path = ws.scripts_dir / name
    path.write_text(text, encoding="utf-8")
    return path


def test_generated_cues_render_are_cached_and_an_edit_regenerates_only_that_cue(
    workspace: Workspace,
) -> None:
    ws = _sound_workspace(workspace)
    path = _write(ws, SCRIPT)
    reports: list[tuple[int, int, str]] = []
    first = render_episode(
        ws, path, backend="draft", progress=lambda d, t, w: reports.append((d, t, w))
    )
    assert first.generated_sounds == [7, 9] and first.cached_sounds == []
    steps = [r for r in reports if r[2].startswith(STAGE_SOUND) and r[1]]
    assert [d for d, t, w in steps if "line 9" in w] == list(range(1, 7))  # every step shown
    manifest = json.loads(first.exported.manifest.read_text())
    sfx = manifest["sounds"][1]
    assert sfx["prompt"].startswith("a heavy wooden door") and sfx["seed"] == 4
    assert sfx["model"] == "tiny" and manifest["sounds"][0]["kind"] == "music"
    assert manifest["sample_rate"] == 48000  # mixed at the master rate, not the voice's
    sounds = ws.episodes_dir / "ep" / "sounds"
    audio, rate = sf.read(str(sounds / f"{sfx['key']}.wav"))
    assert rate == 44100 and audio.shape == (int(1.5 * 44100), 2)

    again = render_episode(ws, path, backend="draft")
    assert again.generated_sounds == [] and again.cached_sounds == [7, 9]
    assert again.exported.wav.read_bytes() == first.exported.wav.read_bytes()

    _write(ws, SCRIPT.replace("heavy wooden door", "light glass door"))
    edited = render_episode(ws, path, backend="draft")
    assert edited.generated_sounds == [9] and edited.cached_sounds == [7]
    assert len(list(sounds.glob("*.wav"))) == 2  # the old door pruned


def test_audio_to_audio_reads_its_source_and_depends_on_it_and_strength(
    workspace: Workspace,
) -> None:
    ws = _sound_workspace(workspace)
    t = np.arange(int(44100 * 1.0)) / 44100
    write_wav(ws.root / "assets" / "door.wav", 0.5 * np.sin(2 * np.pi * 220 * t), 44100)
    text = SCRIPT.replace("seed=4]", "seed=4 from=door.wav strength=0.5]")
    path = _write(ws, text)
    first = render_episode(ws, path, backend="draft")
    sfx = json.loads(first.exported.manifest.read_text())["sounds"][1]
    assert sfx["source"] == "assets/door.wav" and sfx["strength"] == 0.5
    write_wav(ws.root / "assets" / "door.wav", 0.5 * np.sin(2 * np.pi * 330 * t), 44100)
    changed_source = render_episode(ws, path, backend="draft")
    assert changed_source.generated_sounds == [9]  # the source's hash is in the key

    pipe = load_stable_audio("tiny", "cpu")
    rng = np.random.default_rng(0)
    a = (0.3 * rng.standard_normal((44100, 2))).astype(np.float32)
    b = (0.3 * np.sin(2 * np.pi * 110 * t)[:, None].repeat(2, 1)).astype(np.float32)

    def make(source: np.ndarray, strength: float) -> np.ndarray:
        from core.episodes.sound.sdedit import denoise

        return denoise(
            pipe, prompt="door", negative=None, seconds=1.0, seed=3, steps=6, guidance=7.0,
            source=source, strength=strength,
        )  # fmt: skip

    from_a = make(a, 0.3)
    assert np.array_equal(from_a, make(a, 0.3))  # reproducible to the bit, so any
    # difference far above float rounding is the source's or the strength's doing
    assert float(np.std(from_a - make(b, 0.3))) > 1e-3  # depends on the source
    assert float(np.std(from_a - make(a, 0.6))) > 1e-3  # and on the strength


def test_text_to_audio_matches_the_stock_pipeline(cache_home: Path) -> None:
    import torch

    from core.episodes.sound.sdedit import denoise

    pipe = load_stable_audio("tiny", "cpu")
    ours = denoise(
        pipe, prompt="rain on a window", negative=None, seconds=1.0, seed=11, steps=4,
        guidance=7.0,
    )  # fmt: skip
    stock = pipe(
        "rain on a window", audio_end_in_s=1.0, num_inference_steps=4, guidance_scale=7.0,
        generator=torch.Generator("cpu").manual_seed(11),
    ).audios[0]  # fmt: skip
    assert np.allclose(ours, stock.numpy().T, atol=1e-5)


@pytest.mark.parametrize(
    ("cue", "column", "says"),
    [
        ('[sfx gen="" 2s]', 6, "the prompt is empty"),
        ('[sfx gen="a door"]', 6, "has no length"),
        ('[sfx gen="a door" 8s]', 19, "over the sound model's limit"),
        ('[music gen="a bed" 2s from=missing.wav]', 28, "not found"),
        ('[sfx gen="a door" 2s from=../../outside.wav]', 27, "outside the workspace"),
        ('[sfx gen="a door" 2s strength=0.5]', 22, "strength= without from="),
        ('[sfx gen="a door" 2s seed=x]', 27, "seed=x is not a whole number"),
    ],
)
def test_bad_generated_cues_name_file_line_and_column(
    workspace: Workspace, cue: str, column: int, says: str
) -> None:
    ws = _sound_workspace(workspace)
    text = SCRIPT.replace('[sfx gen="a heavy wooden door creaks open, close mic" 1.5s seed=4]', cue)
    with pytest.raises(ScriptError) as caught:
        parse_script(text, source="ep.md", workspace=ws)
    assert str(caught.value).startswith(f"ep.md:9:{column}: ") and says in str(caught.value)


def test_a_real_sound_model_on_the_cpu_is_refused_without_the_flag(workspace: Workspace) -> None:
    ws = workspace
    ws.settings.models.sound = "stabilityai/stable-audio-open-1.0"
    ws.settings.models.device = "cpu"
    ws.save()
    ws = Workspace.open(ws.root)
    path = _write(ws, SCRIPT)
    with pytest.raises(ModelError, match="--allow-cpu-sound"):
        render_episode(ws, path, backend="draft")
    assert not (ws.episodes_dir / "ep" / "sounds").exists() or not any(
        (ws.episodes_dir / "ep" / "sounds").iterdir()
    )
    shutil.rmtree(ws.episodes_dir / "ep", ignore_errors=True)


def test_the_demo_sound_script_renders_with_the_tiny_model(demo_copy: Workspace) -> None:
    result = render_episode(demo_copy, "scripts/with-sound.md", backend="draft")
    assert result.generated_sounds == [11, 13, 15]
    manifest = json.loads(result.exported.manifest.read_text())
    assert [s["source"] for s in manifest["sounds"]] == [None, None, "assets/chime.wav"]
