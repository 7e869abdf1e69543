"""Transcripts from the script's line timings: SRT, WebVTT and Podcasting 2.0 JSON, read back
by the project's subtitle parser and by ffmpeg, their cues at the manifest's times."""

from __future__ import annotations

import json
import subprocess

import pytest

from core.dataset.subtitles import parse_subtitles
from core.episodes.mixing import PlacedLine
from core.episodes.render import render_episode
from core.episodes.transcripts import srt, transcript_json, vtt
from core.workspace import Workspace


def test_the_demo_episode_has_transcripts_at_its_line_times(demo_copy: Workspace) -> None:
    result = render_episode(demo_copy, demo_copy.scripts_dir / "welcome.md", backend="draft")
    out = result.exported
    manifest = json.loads(out.manifest.read_text())
    assert manifest["files"]["transcripts"] == {
        "srt": out.srt.name, "vtt": out.vtt.name, "json": out.transcript.name,
    }  # fmt: skip
    lines = manifest["lines"]
    for path in (out.srt, out.vtt):
        cues = parse_subtitles(path.read_text(encoding="utf-8"), path)
        assert len(cues) == len(lines)
        for cue, line in zip(cues, lines, strict=True):
            assert cue.start_sec == pytest.approx(line["start_sec"], abs=0.0015)
            assert cue.end_sec == pytest.approx(line["end_sec"], abs=0.0015)
            assert line["text"] in cue.text and line["speaker"] in path.read_text()
    segments = json.loads(out.transcript.read_text())["segments"]
    assert [(s["speaker"], s["body"]) for s in segments] == [
        (ln["speaker"], ln["text"]) for ln in lines
    ]
    assert [s["startTime"] for s in segments] == [round(ln["start_sec"], 3) for ln in lines]


def test_ffmpeg_reads_both_subtitle_files(demo_copy: Workspace, tmp_path) -> None:  # type: ignore[no-untyped-def]
    result = render_episode(demo_copy, demo_copy.scripts_dir / "welcome.md", backend="draft")
    for path in (result.exported.srt, result.exported.vtt):
        ass = tmp_path / f"{path.suffix[1:]}.ass"
        done = subprocess.run(
            ["ffmpeg", "-v", "error", "-i", str(path), str(ass)],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        dialogue = [row for row in ass.read_text().splitlines() if row.startswith("Dialogue:")]
        assert len(dialogue) == len(json.loads(result.exported.manifest.read_text())["lines"])


def test_formats_by_hand() -> None:
    lines = [
        PlacedLine(0, "HOST", "Hi  <there> & all", 0.0, 1.25, 1, "draft"),
        PlacedLine(1, "GUEST", "One hour in.", 3600.5, 3601.0, 2, "draft"),
    ]
    assert srt(lines) == (
        "1\n00:00:00,000 --> 00:00:01,250\nHOST: Hi <there> & all\n\n"
        "2\n01:00:00,500 --> 01:00:01,000\nGUEST: One hour in.\n"
    )
    assert vtt(lines).startswith(
        "WEBVTT\n\n00:00:00.000 --> 00:00:01.250\n<v HOST>Hi &lt;there&gt; &amp; all\n"
    )
    assert transcript_json(lines)["segments"][1] == {
        "speaker": "GUEST", "startTime": 3600.5, "endTime": 3601.0, "body": "One hour in.",
    }  # fmt: skip
