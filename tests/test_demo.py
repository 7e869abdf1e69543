"""The built-in demo workspace: complete, deterministic, defects where they are said to be."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from core.audio.io import read
from core.catalog import Catalog
from core.demo.corpus import SENTENCES
from core.demo.workspace import DEMO_SPEAKERS, build_demo
from core.workspace import Workspace
from tests.conftest import DEMO_TEST_SECONDS


def _file_hashes(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.name.startswith("catalog.sqlite")
    }


def test_demo_has_consented_speakers_recordings_music_and_script(demo_workspace: Workspace) -> None:
    ws = Workspace.open(demo_workspace.root)
    assert sorted(ws.settings.speakers) == ["alice", "bob"]
    for name in ("alice", "bob"):
        assert ws.require_consent(name).granted_by
    with Catalog.open(ws.catalog_path) as cat:
        recs = cat.recordings()
    assert len(recs) == sum(len(s.recordings) for s in DEMO_SPEAKERS) == 4
    assert {r.speaker for r in recs} == {"alice", "bob"}
    assert sum(1 for r in recs if r.transcript) == 2  # one with an .srt per speaker
    assert {(r.sample_rate, r.channels) for r in recs} >= {(44100, 1), (48000, 2)}
    for r in recs:
        assert (ws.root / r.path).is_file()
        assert r.duration_sec >= DEMO_TEST_SECONDS
    theme = sf.info(str(ws.assets_dir / "theme.wav"))
    assert theme.duration >= 30 and theme.channels == 2
    assert (ws.assets_dir / "chime.wav").is_file()
    script = (ws.scripts_dir / "welcome.md").read_text()
    assert script.startswith("+++\n") and 'HOST = "alice"' in script
    assert "[music theme.wav" in script


def test_demo_is_deterministic_from_its_seed(tmp_path: Path, demo_workspace: Workspace) -> None:
    again = build_demo(tmp_path / "again", seed=7, seconds_per_recording=DEMO_TEST_SECONDS)
    assert _file_hashes(again.root) == _file_hashes(demo_workspace.root)
    other = build_demo(tmp_path / "other", seed=8, seconds_per_recording=DEMO_TEST_SECONDS)
    a, b = _file_hashes(other.root), _file_hashes(demo_workspace.root)
    assert a.keys() != b.keys() or a != b
    audio = [k for k in b if k.startswith("raw/") and not k.endswith(".srt")]
    assert audio and not any(a.get(k) == b[k] for k in audio)


def _left(path: Path) -> tuple[np.ndarray, int]:  # type: ignore[type-arg]
    """The first channel as recorded (a downmix would soften the planted clipping)."""
    audio, sr = read(path, mono=False)
    return (audio[:, 0] if audio.ndim == 2 else audio), sr


def _truth(ws: Workspace) -> dict[str, dict]:  # type: ignore[type-arg]
    data = json.loads((ws.assets_dir / "demo-truth.json").read_text())
    return data["recordings"]  # type: ignore[no-any-return]


def test_planted_defects_are_really_there(demo_workspace: Workspace) -> None:
    truth = _truth(demo_workspace)
    kinds = [p["kind"] for rec in truth.values() for p in rec["planted"]]
    assert sorted(set(kinds)) == ["clip", "hum", "silence"]
    for rec in truth.values():
        audio, sr = _left(demo_workspace.root / rec["raw"])
        for p in rec["planted"]:
            a, b = int(p["start_sec"] * sr), int(p["end_sec"] * sr)
            inside, outside = audio[a:b], np.concatenate([audio[: max(0, a - sr)], audio[b + sr :]])
            if p["kind"] == "clip":
                assert np.mean(np.abs(inside) > 0.99) > 0.01
                assert np.mean(np.abs(outside) > 0.99) < 1e-4
            elif p["kind"] == "hum":
                assert _band_ratio(inside, sr, 50.0) > 20 * _band_ratio(outside, sr, 50.0)
            elif p["kind"] == "silence":
                assert p["end_sec"] - p["start_sec"] == pytest.approx(8.0, abs=0.01)
                level = 20 * np.log10(np.sqrt(np.mean(inside**2)) + 1e-12)
                assert -70 < level < -50  # room tone, not digital zero, not speech


def _band_ratio(x: np.ndarray, sr: int, freq: float) -> float:  # type: ignore[type-arg]
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x)))) ** 2
    freqs = np.fft.rfftfreq(len(x), 1 / sr)
    band = spectrum[(freqs > freq - 3) & (freqs < freq + 3)].sum()
    return float(band / spectrum.sum())


def test_srt_sidecars_match_the_speech(demo_workspace: Workspace) -> None:
    truth = _truth(demo_workspace)
    with_srt = [r for r in truth.values() if r["sidecar"]]
    assert len(with_srt) == 2
    for rec in with_srt:
        srt = (demo_workspace.root / rec["raw"]).with_suffix(".srt").read_text()
        cues = re.findall(r"(\d\d:\d\d:\d\d,\d\d\d) --> (\d\d:\d\d:\d\d,\d\d\d)\n(.+)\n", srt)
        assert len(cues) == len(rec["cues"]) >= 4
        for (_, _, text), cue in zip(cues, rec["cues"], strict=True):
            assert text == cue["text"] and text in SENTENCES
        audio, sr = _left(demo_workspace.root / rec["raw"])
        for cue in rec["cues"]:
            speech = audio[int(cue["start_sec"] * sr) : int(cue["end_sec"] * sr)]
            assert 20 * np.log10(np.sqrt(np.mean(speech**2))) > -35  # speech under every cue


def test_a_folder_with_other_files_is_refused_and_left_untouched(tmp_path: Path) -> None:
    from core.errors import WorkspaceError

    root = tmp_path / "mine"
    (root / "assets").mkdir(parents=True)
    (root / "assets" / "theme.wav").write_bytes(b"my own theme")
    (root / "notes.txt").write_text("keep me")
    with pytest.raises(WorkspaceError, match="not empty"):
        build_demo(root, seconds_per_recording=6.0, ingest=False)
    assert sorted(p.name for p in root.rglob("*")) == ["assets", "notes.txt", "theme.wav"]
    assert (root / "assets" / "theme.wav").read_bytes() == b"my own theme"


def test_a_failed_build_removes_what_it_made(tmp_path: Path) -> None:
    root = tmp_path / "demo"

    def stop_at_the_music(done: int, total: int, what: str) -> None:
        if what == "music bed":
            raise RuntimeError("stop here")

    with pytest.raises(RuntimeError, match="stop here"):
        build_demo(root, seconds_per_recording=6.0, ingest=False, progress=stop_at_the_music)
    assert not root.exists()
    (tmp_path / "empty").mkdir()
    with pytest.raises(RuntimeError, match="stop here"):
        build_demo(
            tmp_path / "empty", seconds_per_recording=6.0, ingest=False, progress=stop_at_the_music
        )
    assert list((tmp_path / "empty").iterdir()) == []


def test_a_killed_build_is_started_over(tmp_path: Path) -> None:
    import subprocess
    import sys

    from core.demo.workspace import BUILDING_MARKER, unfinished_demo

    root = tmp_path / "demo"
    root.mkdir()
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    (root / BUILDING_MARKER).write_text(f"{gone.pid}\n")
    (root / "workspace.toml").write_text("half written")
    (root / "raw").mkdir()
    assert unfinished_demo(root)
    ws = build_demo(root, seconds_per_recording=6.0, ingest=False)
    assert not unfinished_demo(root)
    assert not (root / BUILDING_MARKER).exists()
    assert ws.settings.name == "demo"
    assert len(list((root / "raw").rglob("*.flac")) + list((root / "raw").rglob("*.wav"))) == 4


def test_a_build_in_progress_elsewhere_is_not_touched(tmp_path: Path) -> None:
    import os

    from core.demo.workspace import BUILDING_MARKER
    from core.errors import WorkspaceError

    root = tmp_path / "demo"
    root.mkdir()
    (root / BUILDING_MARKER).write_text(f"{os.getppid()}\n")  # a live process, not ours
    (root / "raw").mkdir()
    with pytest.raises(WorkspaceError, match="being built by process"):
        build_demo(root, seconds_per_recording=6.0, ingest=False)
    assert (root / "raw").is_dir()
