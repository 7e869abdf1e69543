"""ID3 provenance and chapters in the episode MP3, read back by mutagen and by ffprobe."""

from __future__ import annotations

import json
import subprocess

import pytest

from core.episodes.render import render_episode
from core.episodes.tags import SYNTHETIC_FRAME
from core.workspace import Workspace


def _render(ws: Workspace):  # type: ignore[no-untyped-def]
    return render_episode(ws, ws.scripts_dir / "welcome.md", backend="draft")


def test_the_mp3_says_what_it_is_and_where_its_chapters_are(demo_copy: Workspace) -> None:
    from mutagen.id3 import ID3

    cover = bytes.fromhex("89504e470d0a1a0a") + b"a tiny stand-in for a png"
    (demo_copy.root / "assets" / "cover.png").write_bytes(cover)
    result = _render(demo_copy)
    manifest = json.loads(result.exported.manifest.read_text())
    tags = ID3(str(result.exported.mp3))
    assert tags.version == (2, 4, 0)
    assert str(tags["TIT2"]) == manifest["title"] and str(tags["TALB"]) == demo_copy.settings.name
    statement = str(tags[f"TXXX:{SYNTHETIC_FRAME}"])
    assert statement.startswith("synthetic speech:") and "HOST (alice)" in statement
    assert "podforge" in statement
    apic = tags.getall("APIC")
    assert len(apic) == 1 and apic[0].data == cover and apic[0].mime == "image/png"
    chapters = sorted(tags.getall("CHAP"), key=lambda c: c.start_time)
    expected = manifest["chapters"]
    assert [str(c.sub_frames["TIT2"]) for c in chapters] == [c["title"] for c in expected]
    assert [c.start_time for c in chapters] == [round(c["start_sec"] * 1000) for c in expected]
    assert chapters[-1].end_time == round(manifest["duration_sec"] * 1000)
    toc = tags.getall("CTOC")
    assert len(toc) == 1 and toc[0].child_element_ids == [c.element_id for c in chapters]


def test_ffprobe_sees_the_chapters(demo_copy: Workspace) -> None:
    result = _render(demo_copy)
    probe = subprocess.run(
        ["ffprobe", "-v", "error", "-print_format", "json", "-show_chapters",
         "-show_format", str(result.exported.mp3)],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    data = json.loads(probe.stdout)
    manifest = json.loads(result.exported.manifest.read_text())
    # ffprobe 5 lists CHAP frames in no particular order; players follow the CTOC's.
    found = sorted(data["chapters"], key=lambda c: float(c["start_time"]))
    titles = [c["tags"]["title"] for c in found]
    assert titles == [c["title"] for c in manifest["chapters"]]
    starts = [float(c["start_time"]) for c in found]
    assert starts == pytest.approx([c["start_sec"] for c in manifest["chapters"]], abs=0.002)
    assert data["format"]["tags"]["title"] == manifest["title"]


def test_the_wav_carries_the_same_facts_in_its_info_chunk(demo_copy: Workspace) -> None:
    import soundfile as sf

    result = _render(demo_copy)
    with sf.SoundFile(str(result.exported.wav)) as wav:
        assert wav.title == json.loads(result.exported.manifest.read_text())["title"]
        assert wav.album == demo_copy.settings.name
        assert wav.comment.startswith("synthetic speech:") and "podforge" in wav.software
    raw = result.exported.wav.read_bytes()
    assert b"LIST" in raw and b"INFO" in raw and b"ICMT" in raw  # the chunk, not a sidecar
