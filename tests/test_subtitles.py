"""Transcript sidecars: awkward SRT/VTT/TXT files parse to exactly the expected cues."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from core.dataset.subtitles import Cue, decode_text_file, read_subtitles, read_text
from core.errors import PodforgeError, TranscriptError

SAMPLES = Path(__file__).parent / "data" / "subtitles"
"""Sample sidecars kept byte for byte (line endings, stray spaces and markup included), each
with a ``.cues`` file of the cues it must parse to."""


def _expected_cues(sample: Path) -> list[Cue]:
    """A sample's ``.cues`` file: one cue a line as ``start<TAB>end<TAB>text``; lines starting
    with ``#`` say what the sample exercises."""
    lines = sample.with_suffix(".cues").read_text(encoding="utf-8").splitlines()
    rows = [line.split("\t") for line in lines if line and not line.startswith("#")]
    return [Cue(float(start), float(end), text) for start, end, text in rows]


def _write(tmp_path: Path, name: str, text: str, encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


@pytest.mark.parametrize(
    "name",
    [
        "markup-crlf.srt",
        "no-blank-lines.srt",
        "time-range-in-text.srt",
        "out-of-order.srt",
        "overlaps.srt",
        "header-blocks.vtt",
        "minutes-only-crlf.vtt",
    ],
)
def test_sample_parses_to_exactly_its_expected_cues(name: str) -> None:
    sample = SAMPLES / name
    expected = _expected_cues(sample)
    assert expected  # the .cues file was read
    assert read_subtitles(sample) == expected


@pytest.mark.parametrize("name", ["markup-crlf.srt", "minutes-only-crlf.vtt"])
def test_crlf_samples_keep_their_line_endings(name: str) -> None:
    raw = (SAMPLES / name).read_bytes()
    assert b"\r\n" in raw and b"\n" not in raw.replace(b"\r\n", b"")


def test_cp1252_subtitles_decode_with_curly_quotes_and_accents(tmp_path: Path) -> None:
    srt = "1\r\n00:00:01,000 --> 00:00:02,000\r\n“Quoted” at the café – naïve…\r\n"
    path = _write(tmp_path, "e.srt", srt, encoding="cp1252")
    with pytest.raises(UnicodeDecodeError):
        path.read_bytes().decode("utf-8")
    assert read_subtitles(path) == [Cue(1.0, 2.0, "“Quoted” at the café – naïve…")]


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16", "utf-16-le", "utf-32"])
def test_unicode_encodings_with_and_without_bom(tmp_path: Path, encoding: str) -> None:
    text = "1\n00:00:01,000 --> 00:00:02,000\nCafé “ok” ✓\n"
    path = _write(tmp_path, "f.srt", text, encoding=encoding)
    assert decode_text_file(path) == text
    assert read_subtitles(path) == [Cue(1.0, 2.0, "Café “ok” ✓")]


def test_decode_never_fails_on_bytes(tmp_path: Path) -> None:
    path = tmp_path / "junk.txt"
    path.write_bytes(bytes(range(256)) * 3)
    assert isinstance(decode_text_file(path), str)


def test_a_malformed_block_is_skipped_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    path = SAMPLES / "malformed-block.srt"
    with caplog.at_level(logging.WARNING, logger="core.dataset.subtitles"):
        cues = read_subtitles(path)
    assert cues == [Cue(1.0, 2.0, "Good"), Cue(5.0, 6.0, "Also good")]
    assert any("line 6" in r.getMessage() and str(path) in r.getMessage() for r in caplog.records)


def test_garbage_raises_transcript_error_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "garbage.srt"
    path.write_bytes(bytes(range(7, 256)) * 4 + b"\n\x00\xff not subtitles at all\n")
    with pytest.raises(TranscriptError) as info:
        read_subtitles(path)
    message = str(info.value)
    assert str(path) in message and "\n" not in message
    assert isinstance(info.value, PodforgeError)


def test_only_malformed_timestamps_names_the_first_bad_line(tmp_path: Path) -> None:
    srt = "\n\n1\n00:00:01.000 --> 00:00:61.000\nSeconds out of range\n\n2\n1:2 --> x\nBad\n"
    path = _write(tmp_path, "j.srt", srt)
    with pytest.raises(TranscriptError, match=r"line 4: malformed|line 4 has a malformed") as info:
        read_subtitles(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("content", ["", "\n\n  \n", "WEBVTT\n\nNOTE nothing here\n"])
def test_files_without_cues_raise(tmp_path: Path, content: str) -> None:
    path = _write(tmp_path, "empty.vtt", content)
    with pytest.raises(TranscriptError, match="no subtitle cue"):
        read_subtitles(path)


def test_missing_file_raises_transcript_error(tmp_path: Path) -> None:
    with pytest.raises(TranscriptError, match="not found"):
        read_subtitles(tmp_path / "nope.srt")


def test_read_text_paragraphs(tmp_path: Path) -> None:
    text = "\ufeffFirst  paragraph\r\nwraps here.\r\n\r\n \t \r\n\r\nSecond\tone.\r\n\r\n\r\n"
    path = _write(tmp_path, "t.txt", text)
    assert read_text(path) == ["First paragraph wraps here.", "Second one."]
    cp = _write(tmp_path, "cp.txt", "Un “café” crème.\n", encoding="cp1252")
    assert read_text(cp) == ["Un “café” crème."]
    assert read_text(_write(tmp_path, "blank.txt", "\n \n")) == []
