"""Transcript sidecars: awkward SRT/VTT/TXT files parse to exactly the expected cues."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from core.dataset.subtitles import Cue, decode_text_file, read_subtitles, read_text
from core.errors import PodforgeError, TranscriptError


def _write(tmp_path: Path, name: str, text: str, encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def test_plain_srt_with_crlf_numbering_gaps_multiline_and_markup(tmp_path: Path) -> None:
    srt = (
        "1\r\n00:00:01,000 --> 00:00:03,500\r\nHello <i>there</i>,\r\n"
        "  how are you?  \r\n\r\n"
        '7\r\n00:00:04,250 --> 00:00:06,000\r\n{\\an8}<font color="#ffff00">Fish</font>'
        " &amp; chips &lt;3\r\n\r\n"
        "42\r\n00:00:06,5 --> 00:00:07,25 X1:100 X2:200 Y1:10 Y2:20\r\n<b>Short</b> fractions\r\n"
    )
    cues = read_subtitles(_write(tmp_path, "a.srt", srt))
    assert cues == [
        Cue(1.0, 3.5, "Hello there, how are you?"),
        Cue(4.25, 6.0, "Fish & chips <3"),
        Cue(6.5, 7.25, "Short fractions"),
    ]


def test_srt_without_blank_lines_between_blocks(tmp_path: Path) -> None:
    srt = (
        "1\n00:00:01,000 --> 00:00:02,000\nFirst line\nsecond line\n"
        "2\n00:00:02,500 --> 00:00:03,000\nNext cue\n"
        "00:00:03,500 --> 00:00:04,000\nNo number at all\n\n\n\n"
        "4\n00:00:05,000 --> 00:00:06,000\nLast\n"
    )
    assert read_subtitles(_write(tmp_path, "b.srt", srt)) == [
        Cue(1.0, 2.0, "First line second line"),
        Cue(2.5, 3.0, "Next cue"),
        Cue(3.5, 4.0, "No number at all"),
        Cue(5.0, 6.0, "Last"),
    ]


def test_time_ranges_inside_cue_text_stay_text(tmp_path: Path) -> None:
    srt = "1\n00:00:01,000 --> 00:00:02,000\nThe show runs\n10:30 - 11:00 on Sundays\n"
    assert read_subtitles(_write(tmp_path, "r.srt", srt)) == [
        Cue(1.0, 2.0, "The show runs 10:30 - 11:00 on Sundays")
    ]


def test_out_of_order_duplicate_zero_and_negative_cues(tmp_path: Path) -> None:
    srt = (
        "1\n00:00:05,000 --> 00:00:06,000\nThird\n\n"
        "2\n00:00:01,000 --> 00:00:02,000\nFirst\n\n"
        "3\n00:00:03,000 --> 00:00:04,000\nSecond\n\n"
        "4\n00:00:03,000 --> 00:00:04,000\nSecond\n\n"  # exact duplicate
        "5\n00:00:07,000 --> 00:00:07,000\nZero length\n\n"
        "6\n00:00:09,000 --> 00:00:08,000\nNegative\n\n"
        "7\n00:00:10,000 --> 00:00:11,000\n<i></i>\n\n"  # no text once markup is gone
    )
    assert read_subtitles(_write(tmp_path, "c.srt", srt)) == [
        Cue(1.0, 2.0, "First"),
        Cue(3.0, 4.0, "Second"),
        Cue(5.0, 6.0, "Third"),
    ]


def test_overlaps_trim_the_earlier_cue_or_merge_when_contained(tmp_path: Path) -> None:
    srt = (
        "1\n00:00:01,000 --> 00:00:04,000\nOne\n\n"
        "2\n00:00:03,000 --> 00:00:05,000\nTwo\n\n"  # partial overlap: One ends at 3
        "3\n00:00:10,000 --> 00:00:15,000\nOuter\n\n"
        "4\n00:00:11,000 --> 00:00:12,000\nInner\n\n"  # contained: merged into Outer
        "5\n00:00:20,000 --> 00:00:21,000\nSame start\n\n"
        "6\n00:00:20,000 --> 00:00:22,000\nSame start, longer\n\n"  # shares a start: merged
        "7\n00:00:30,000 --> 00:00:32,000\nRepeated\n\n"
        "8\n00:00:30,500 --> 00:00:31,000\nRepeated\n"  # duplicate text inside: collapsed
    )
    assert read_subtitles(_write(tmp_path, "d.srt", srt)) == [
        Cue(1.0, 3.0, "One"),
        Cue(3.0, 5.0, "Two"),
        Cue(10.0, 15.0, "Outer Inner"),
        Cue(20.0, 22.0, "Same start, longer"),
        Cue(30.0, 32.0, "Repeated"),
    ]


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


def test_webvtt_with_header_blocks_settings_ids_and_styling(tmp_path: Path) -> None:
    vtt = (
        "WEBVTT - an interview\n"
        "Kind: captions\n"
        "Language: en\n\n"
        "STYLE\n::cue(.yellow) { color: yellow }\n\n"
        "REGION\nid:fred width:40% lines:3\n\n"
        "NOTE this is a comment\nthat spans two lines\n\n"
        "intro-1\n"
        "00:01.000 --> 00:03.500 align:start position:10%\n"
        "<v Alice>Hello <c.yellow>there</c></v>,\n"
        "<i>welcome</i> <b>back</b>!\n\n"
        "NOTE\nanother note\n\n"
        "2\n"
        "00:00:03.500 --> 00:00:05.000 line:0\n"
        "Words <00:00:04.000>with <00:00:04.500>karaoke timing.\n\n"
        "01:02:03.250 --> 01:02:04.000\n"
        "<lang fr>Très</lang> bien &amp; merci\n"
    )
    assert read_subtitles(_write(tmp_path, "g.vtt", vtt)) == [
        Cue(1.0, 3.5, "Hello there, welcome back!"),
        Cue(3.5, 5.0, "Words with karaoke timing."),
        Cue(3723.25, 3724.0, "Très bien & merci"),
    ]


def test_vtt_minutes_only_timestamps_and_crlf(tmp_path: Path) -> None:
    vtt = "WEBVTT\r\n\r\n01:02.500 --> 01:04.000\r\nSixty-two and a half\r\n"
    assert read_subtitles(_write(tmp_path, "h.vtt", vtt)) == [
        Cue(62.5, 64.0, "Sixty-two and a half")
    ]


def test_a_malformed_block_is_skipped_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    srt = (
        "1\n00:00:01,000 --> 00:00:02,000\nGood\n\n"
        "2\n00:00:03,000 -> 00:0x:04,000\nBad timing\n\n"
        "3\n00:00:05,000 --> 00:00:06,000\nAlso good\n"
    )
    path = _write(tmp_path, "i.srt", srt)
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
