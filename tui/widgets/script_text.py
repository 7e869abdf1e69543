"""A TextArea for episode scripts: speaker names, ``<tags>``, ``[cues]`` and headings coloured.

Highlighting is a few regular expressions run per line (no tree-sitter grammar): it
replaces :meth:`TextArea._build_highlight_map`, which the TextArea calls after every edit.
Lines holding a parse error or warning (``error_rows`` / ``warning_rows``, 0-based) are
marked with a background and a ``▶`` in the line-number gutter.
"""

from __future__ import annotations

import dataclasses
import re

from rich.segment import Segment
from rich.style import Style
from textual.strip import Strip
from textual.widgets import TextArea
from textual.widgets.text_area import TextAreaTheme

THEME_NAME = "podforge-script"

_SPEAKER = re.compile(r"^([A-Za-z][\w-]*)(:)")
_TAG = re.compile(r"</?[A-Za-z][^<>]*>|<!--.*?-->")
_CUE = re.compile(r"^\s*(\[[^\]]*\]?)\s*$")
_HEADING = re.compile(r"^#{1,6} .*$")
_FENCE = re.compile(r"^\+\+\+\s*$")


def _theme() -> TextAreaTheme:
    base = TextAreaTheme.get_builtin_theme("css")
    styles = {
        "speaker": Style(color="#56b6c2", bold=True),
        "punctuation": Style(color="#7f848e"),
        "tag": Style(color="#c678dd"),
        "comment": Style(color="#7f848e", italic=True),
        "cue": Style(color="#e5c07b"),
        "heading": Style(color="#61afef", bold=True),
        "front_matter": Style(color="#98c379"),
        "diagnostic.error": Style(bgcolor="#5c1f24"),
        "diagnostic.warning": Style(bgcolor="#4d4216"),
    }
    if base is None:
        return TextAreaTheme(name=THEME_NAME, syntax_styles=styles)
    return dataclasses.replace(base, name=THEME_NAME, syntax_styles=styles)


class ScriptTextArea(TextArea):
    """The script editor's text: regex highlighting plus diagnostic line marks."""

    def __init__(self, text: str = "", *, id: str | None = None) -> None:
        self.error_rows: set[int] = set()
        self.warning_rows: set[int] = set()
        super().__init__(
            text,
            id=id,
            show_line_numbers=True,
            tab_behavior="focus",
            soft_wrap=True,
        )
        self.register_theme(_theme())
        self.theme = THEME_NAME

    def set_diagnostic_rows(self, errors: set[int], warnings: set[int]) -> None:
        """Mark these 0-based rows and redraw."""
        if errors == self.error_rows and warnings == self.warning_rows:
            return
        self.error_rows = set(errors)
        self.warning_rows = set(warnings)
        self._build_highlight_map()
        self.refresh()

    def _build_highlight_map(self) -> None:
        self._line_cache.clear()
        highlights = self._highlights
        highlights.clear()
        in_front = False
        for row in range(self.document.line_count):
            line = self.document.get_line(row)
            marks = highlights[row]
            if row in self.error_rows:
                marks.append((0, None, "diagnostic.error"))
            elif row in self.warning_rows:
                marks.append((0, None, "diagnostic.warning"))
            if _FENCE.match(line):
                marks.append((0, _bytes(line, len(line)), "punctuation"))
                in_front = row == 0  # the opening fence; the next one closes
                continue
            if in_front:
                marks.append((0, None, "front_matter"))
                continue
            if _HEADING.match(line):
                marks.append((0, None, "heading"))
                continue
            cue = _CUE.match(line)
            if cue:
                marks.append((_bytes(line, cue.start(1)), _bytes(line, cue.end(1)), "cue"))
                continue
            speaker = _SPEAKER.match(line)
            if speaker:
                marks.append((0, _bytes(line, speaker.end(1)), "speaker"))
                marks.append(
                    (_bytes(line, speaker.start(2)), _bytes(line, speaker.end(2)), "punctuation")
                )
            for tag in _TAG.finditer(line):
                name = "comment" if tag.group().startswith("<!--") else "tag"
                marks.append((_bytes(line, tag.start()), _bytes(line, tag.end()), name))

    def render_line(self, y: int) -> Strip:
        strip = super().render_line(y)
        if not self.show_line_numbers or not (self.error_rows or self.warning_rows):
            return strip
        row_info = self._row_at(y + self.scroll_offset[1])
        if row_info is None:
            return strip
        row, first = row_info
        if not first or (row not in self.error_rows and row not in self.warning_rows):
            return strip
        colour = "#e06c75" if row in self.error_rows else "#e5c07b"
        at = max(self.gutter_width - 2, 0)  # the space right after the line number
        marker = Strip([Segment("▶", Style(color=colour, bold=True))], 1)
        return Strip.join([strip.crop(0, at), marker, strip.crop(at + 1, strip.cell_length)])

    def _row_at(self, y: int) -> tuple[int, bool] | None:
        """The document row shown at visual line ``y`` and whether it is its first section."""
        info = self.wrapped_document._offset_to_line_info
        if y < 0 or y >= len(info):
            return None
        row, section = info[y]
        return row, section == 0


def _bytes(line: str, column: int) -> int:
    """The UTF-8 byte offset of character ``column`` (highlights are in bytes)."""
    return len(line[:column].encode("utf-8"))
