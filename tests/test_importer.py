"""Importing recordings into raw/: copies, dedupe by content, sidecars, refusals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from core.catalog import Catalog
from core.dataset.importer import file_sha256, import_recording
from core.errors import AudioError, SpeakerError
from core.workspace import Workspace


def _tone(path: Path, seconds: float = 2.0, sr: int = 44100, channels: int = 2) -> Path:
    t = np.arange(int(seconds * sr)) / sr
    x = 0.3 * np.sin(2 * np.pi * 220 * t)
    sf.write(path, np.stack([x] * channels, axis=1) if channels > 1 else x, sr)
    return path


def test_import_copies_the_original_and_registers_it(workspace: Workspace, tmp_path: Path) -> None:
    src = _tone(tmp_path / "Talk One.wav")
    (tmp_path / "Talk One.srt").write_text("1\n00:00:00,000 --> 00:00:01,000\nHi.\n")
    with Catalog.open(workspace.catalog_path) as cat:
        result = import_recording(workspace, cat, src, "alice")
        assert result.created
        rec = result.recording
        copied = workspace.root / rec.path
        assert copied.parent == workspace.raw_dir / "alice"
        assert copied.read_bytes() == src.read_bytes()
        assert rec.sha256 == file_sha256(src)
        assert (rec.sample_rate, rec.channels, rec.format) == (44100, 2, "WAV")
        assert rec.duration_sec == pytest.approx(2.0)
        assert rec.transcript is not None
        assert (workspace.root / rec.transcript).read_text().endswith("Hi.\n")
        assert [r.original_name for r in cat.recordings()] == ["Talk One.wav"]


def test_same_content_is_imported_once(workspace: Workspace, tmp_path: Path) -> None:
    a = _tone(tmp_path / "a.wav")
    b = tmp_path / "renamed-copy.wav"
    b.write_bytes(a.read_bytes())
    with Catalog.open(workspace.catalog_path) as cat:
        first = import_recording(workspace, cat, a, "alice")
        second = import_recording(workspace, cat, b, "alice")
        assert not second.created
        assert second.recording.id == first.recording.id
        assert len(cat.recordings()) == 1
    assert len(list((workspace.raw_dir / "alice").iterdir())) == 1


def test_the_original_is_not_modified(workspace: Workspace, tmp_path: Path) -> None:
    src = _tone(tmp_path / "keep.flac", channels=1)
    before = (src.read_bytes(), src.stat().st_mtime_ns)
    with Catalog.open(workspace.catalog_path) as cat:
        import_recording(workspace, cat, src, "alice")
    assert (src.read_bytes(), src.stat().st_mtime_ns) == before


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("empty.wav", b"", "empty"),
        ("notes.wav", b"these are my notes, not audio\n" * 20, ""),
        ("clip.xyz", b"whatever", "unsupported"),
    ],
)
def test_bad_files_are_refused_and_nothing_is_copied(
    workspace: Workspace, tmp_path: Path, name: str, content: bytes, expected: str
) -> None:
    bad = tmp_path / name
    bad.write_bytes(content)
    with Catalog.open(workspace.catalog_path) as cat:
        with pytest.raises(AudioError) as info:
            import_recording(workspace, cat, bad, "alice")
        assert cat.recordings() == []
    message = str(info.value)
    assert str(bad) in message and expected in message.lower() and "\n" not in message
    assert not (workspace.raw_dir / "alice").exists()


def test_unknown_speaker_is_refused_before_copying(workspace: Workspace, tmp_path: Path) -> None:
    src = _tone(tmp_path / "a.wav")
    with Catalog.open(workspace.catalog_path) as cat, pytest.raises(SpeakerError):
        import_recording(workspace, cat, src, "zed")
    assert list(workspace.raw_dir.iterdir()) == []
