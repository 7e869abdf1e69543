"""Episode transcripts from the script's own line timings: SRT, WebVTT and Podcasting 2.0 JSON.

No ASR is needed: every line's text, speaker and place in the mix are known
(:class:`~core.episodes.mixing.PlacedLine`). The three files are what the Podcasting 2.0
``<podcast:transcript>`` tag points to (``application/x-subrip``, ``text/vtt``,
``application/json``), written next to the MP3 by :mod:`core.episodes.export`:

- ``<name>.srt`` — one numbered cue a line, the speaker first (``HOST: Welcome…``);
- ``<name>.vtt`` — WebVTT, the speaker as a voice tag (``<v HOST>Welcome…``);
- ``<name>.transcript.json`` — ``{"version": "1.0.0", "segments": [{"speaker",
  "startTime", "endTime", "body"}]}``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from core.episodes.mixing import PlacedLine

__all__ = ["TRANSCRIPT_JSON_VERSION", "srt", "transcript_json", "vtt"]

TRANSCRIPT_JSON_VERSION: Final = "1.0.0"


def _clock(seconds: float, separator: str) -> str:
    millis = max(0, round(seconds * 1000))
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"


def _text(line: PlacedLine) -> str:
    return " ".join(line.text.split())


def srt(lines: Sequence[PlacedLine]) -> str:
    """SubRip: ``1\\n00:00:01,000 --> 00:00:03,500\\nHOST: Welcome…\\n\\n`` a line."""
    blocks = [
        f"{n}\n{_clock(line.start_sec, ',')} --> {_clock(line.end_sec, ',')}\n"
        f"{line.speaker}: {_text(line)}\n"
        for n, line in enumerate(lines, 1)
    ]
    return "\n".join(blocks)


def vtt(lines: Sequence[PlacedLine]) -> str:
    """WebVTT with each speaker as a voice span (``<v HOST>``)."""
    cues = [
        f"{_clock(line.start_sec, '.')} --> {_clock(line.end_sec, '.')}\n"
        f"<v {line.speaker}>{_escape(_text(line))}\n"
        for line in lines
    ]
    return "WEBVTT\n\n" + "\n".join(cues)


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def transcript_json(lines: Sequence[PlacedLine]) -> dict[str, Any]:
    """The Podcasting 2.0 JSON transcript."""
    return {
        "version": TRANSCRIPT_JSON_VERSION,
        "segments": [
            {
                "speaker": line.speaker,
                "startTime": round(line.start_sec, 3),
                "endTime": round(line.end_sec, 3),
                "body": _text(line),
            }
            for line in lines
        ],
    }
