"""Platform loudness presets: the target each names, where it comes from, and a render
measured by ffmpeg's ebur128 against it."""

from __future__ import annotations

import json

import pytest
import soundfile as sf

from core.episodes.parser import parse_script
from core.episodes.render import render_episode
from core.episodes.script import ScriptMix
from core.episodes.target import LOUDNESS_PRESETS, master_target
from core.errors import ScriptError, WorkspaceConfigError
from core.settings import Settings, parse_settings
from core.workspace import Workspace
from tests.meters import ffmpeg_ebur128


@pytest.mark.parametrize(
    ("preset", "stereo", "lufs"),
    [("apple", True, -16.0), ("apple", False, -19.0), ("spotify", False, -14.0),
     ("youtube", True, -14.0), ("ebu-r128", False, -23.0), ("aes-speech", True, -18.0)],
)  # fmt: skip
def test_each_preset_names_its_platforms_target(preset: str, stereo: bool, lufs: float) -> None:
    target = master_target(ScriptMix(preset=preset, stereo=stereo), Settings())
    assert (target.lufs, target.ceiling_dbtp) == (lufs, -1.0)


def test_where_the_preset_comes_from() -> None:
    settings = Settings()
    settings.episode.preset = "ebu-r128"
    assert master_target(None, settings).lufs == -23.0  # the workspace's, for every episode
    assert master_target(ScriptMix(preset="spotify"), settings).lufs == -14.0  # the script's
    assert master_target(ScriptMix(preset="spotify", target_lufs=-20.0), settings).lufs == -20.0
    settings.audio.true_peak_dbtp = -2.0  # the lower ceiling holds
    assert master_target(ScriptMix(preset="spotify"), settings).ceiling_dbtp == -2.0


def test_an_unknown_preset_is_one_line_at_its_key() -> None:
    with pytest.raises(ScriptError) as info:
        parse_script('+++\ntitle = "T"\n[mix]\npreset = "tiktok"\n+++\n')
    assert info.value.line == 4 and "expected one of apple, spotify" in str(info.value)
    with pytest.raises(WorkspaceConfigError, match=r"'episode\.preset'"):
        parse_settings({"schema": 1, "episode": {"preset": "tiktok"}})
    for name in LOUDNESS_PRESETS:  # the settings accept exactly the presets
        assert parse_settings({"schema": 1, "episode": {"preset": name}}).episode.preset == name


def test_a_spotify_render_measures_at_minus_14(demo_copy: Workspace) -> None:
    script = demo_copy.scripts_dir / "welcome.md"
    script.write_text(
        script.read_text().replace("+++\n\n", '[mix]\npreset = "spotify"\n+++\n\n', 1)
    )
    result = render_episode(demo_copy, script, backend="draft")
    manifest = json.loads(result.exported.manifest.read_text())
    assert manifest["target_lufs"] == -14.0 and manifest["ceiling_dbtp"] == -1.0
    audio, sr = sf.read(str(result.exported.wav), dtype="float32")
    lufs, peak = ffmpeg_ebur128(audio, sr)  # the independent meter
    assert lufs == pytest.approx(-14.0, abs=0.5)
    assert peak <= -1.0 + 0.1
