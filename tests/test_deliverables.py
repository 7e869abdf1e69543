"""Platform deliverables: one render, one MP3 per `[export] targets` entry, each on target
when ffmpeg decodes it and ffmpeg's ebur128 meter measures it (the independent reference)."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import av
import numpy as np
import pytest
import tomli_w

from core.episodes.deliverables import measure_decoded, parse_target
from core.episodes.render import render_episode
from core.episodes.target import LOUDNESS_PRESETS, LOUDNESS_TOLERANCE_LU
from core.errors import WorkspaceConfigError
from core.settings import PRESET_NAMES
from core.workspace import Workspace
from tests.meters import ffmpeg_ebur128


def _ffmpeg_decode(path: Path) -> tuple[np.ndarray, int]:
    """The file as ffmpeg's own MP3 decoder gives it: ``(n, channels)`` float32."""
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        frames = [f.to_ndarray() for f in container.decode(stream)]
        rate = stream.rate
    planes = np.concatenate(frames, axis=1)  # fltp: (channels, n)
    return planes.T.astype(np.float32), int(rate)


def _set(ws: Workspace, table: str, values: dict[str, object]) -> Workspace:
    doc = tomllib.loads(ws.config_path.read_text())
    doc[table] = values
    ws.config_path.write_text(tomli_w.dumps(doc))
    return Workspace.open(ws.root)


def test_every_preset_is_a_deliverable_on_target_in_the_decoded_file(
    demo_copy: Workspace,
) -> None:
    from mutagen.id3 import ID3

    targets = ["spotify", "apple:stereo", "apple:mono", "ebu-r128", "aes-speech", "youtube"]
    ws = _set(demo_copy, "export", {"targets": targets})
    result = render_episode(ws, ws.scripts_dir / "welcome.md", backend="draft")
    manifest = json.loads(result.exported.manifest.read_text())
    entries = {d["target"]: d for d in manifest["deliverables"]}
    assert list(entries) == ["master", *(t.replace(":", "-") for t in targets)]
    for spec in ["master", *targets]:
        entry = entries[spec.replace(":", "-")]
        path = result.exported.wav.parent / entry["file"]
        audio, rate = _ffmpeg_decode(path)
        channels = audio.shape[1]
        lufs, peak = ffmpeg_ebur128(audio if channels > 1 else audio[:, 0], rate)
        if spec == "master":
            target, ceiling = manifest["target_lufs"], manifest["ceiling_dbtp"]
        else:
            preset, stereo = parse_target(spec)
            stereo_lufs, mono_lufs, ceiling = LOUDNESS_PRESETS[preset]
            target = stereo_lufs if (stereo if stereo is not None else False) else mono_lufs
            assert channels == (2 if stereo else 1), spec
            assert str(ID3(str(path))["TIT2"]) == manifest["title"]  # tagged like the master
        assert abs(lufs - target) <= LOUDNESS_TOLERANCE_LU, (spec, lufs, target)
        assert peak <= ceiling + 0.1, (spec, peak)
        # the manifest's figures are the project's meter on the decoded file: ffmpeg agrees
        assert entry["measured_on"] == "decoded file"
        assert abs(entry["lufs"] - lufs) <= 0.1 and entry["target_lufs"] == target, spec


def test_measure_decoded_agrees_with_ffmpeg(demo_copy: Workspace) -> None:
    result = render_episode(demo_copy, demo_copy.scripts_dir / "welcome.md", backend="draft")
    ours = measure_decoded(result.exported.mp3)
    audio, rate = _ffmpeg_decode(result.exported.mp3)
    theirs = ffmpeg_ebur128(audio[:, 0], rate)
    assert ours[0] is not None
    assert abs(ours[0] - theirs[0]) <= 0.05 and abs(ours[1] - theirs[1]) <= 0.2


def test_bad_targets_are_one_line(demo_copy: Workspace) -> None:
    for bad in (["tidal"], ["apple:surround"], "spotify"):
        with pytest.raises(WorkspaceConfigError, match=r"export\.targets") as info:
            _set(demo_copy, "export", {"targets": bad})
        assert "\n" not in str(info.value)


def test_the_preset_names_and_figures_are_one_list() -> None:
    assert tuple(LOUDNESS_PRESETS) == PRESET_NAMES
