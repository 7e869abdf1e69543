"""docs/API.md: its example runs as written, and what it prints is checked independently."""

from __future__ import annotations

import contextlib
import io
import os
import re
from pathlib import Path

import pytest
import soundfile as sf

from core.workspace import Workspace
from tests.meters import ffmpeg_ebur128

API_DOC = Path(__file__).resolve().parents[1] / "docs" / "API.md"


def _example() -> str:
    blocks = re.findall(r"```python\n(.*?)```", API_DOC.read_text(), flags=re.S)
    assert len(blocks) == 1, "API.md has one runnable example"
    return blocks[0]


@pytest.mark.slow
def test_the_api_example_runs_and_its_master_meets_the_targets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(_example(), str(API_DOC), "exec"), {})  # nosec B102
    lines = out.getvalue().splitlines()
    ws = Workspace.open(tmp_path / "api-demo")
    wav = ws.root / "episodes" / "welcome" / "welcome.wav"
    assert wav.is_file() and (ws.root / "exports" / "jsonl").is_dir()
    # What the example printed agrees with ffmpeg's own meter on the file it wrote.
    lufs, peak = (float(x) for x in re.findall(r"(-?\d+\.\d) (?:LUFS|dBTP)", lines[-1]))
    audio, rate = sf.read(wav, dtype="float32")
    ref_lufs, ref_peak = ffmpeg_ebur128(audio, rate)
    assert abs(lufs - ref_lufs) <= 0.1
    assert peak <= ws.settings.audio.true_peak_dbtp + 0.05
    assert ref_peak <= ws.settings.audio.true_peak_dbtp + 0.1
    accepted = int(lines[0].split()[0])
    assert accepted > 0 and os.listdir(ws.root / "exports" / "jsonl")
