"""A virtual list of segments: draws only the visible rows, fetching them by id in pages.

The screen gives it the ordered ids of the current view (``set_ids``) and a ``fetch``
function (ids -> segments). Rows are cached by id; after a decision the screen calls
``update_row`` with the new record, so a key press never re-reads the whole list.
A 20,000-row view costs one id query and one page fetch per screenful.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import ClassVar

from rich.segment import Segment as RichSegment
from rich.style import Style
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

from core.records import Segment

PAGE = 100
STATUS_GLYPH = {"pending": "·", "accepted": "✓", "rejected": "✗"}

Fetch = Callable[[Sequence[int]], list[Segment]]


class SegmentList(ScrollView, can_focus=True):
    """Rows: status, number, speaker, length, SNR, flags, transcript."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "segment-list--cursor",
        "segment-list--accepted",
        "segment-list--rejected",
        "segment-list--pending",
        "segment-list--flags",
        "segment-list--dim",
    }
    DEFAULT_CSS = """
    SegmentList { background: $surface; overflow-x: hidden; }
    SegmentList > .segment-list--cursor { background: $accent 40%; text-style: bold; }
    SegmentList:focus > .segment-list--cursor { background: $accent 60%; }
    SegmentList > .segment-list--accepted { color: $success; }
    SegmentList > .segment-list--rejected { color: $error; }
    SegmentList > .segment-list--pending { color: $text-muted; }
    SegmentList > .segment-list--flags { color: $warning; }
    SegmentList > .segment-list--dim { color: $text-muted; }
    """

    cursor: reactive[int] = reactive(0, repaint=False)  # watch_cursor redraws two lines

    class Highlighted(Message):
        """The cursor moved to another segment (``segment_id`` None: the view is empty)."""

        def __init__(self, segment_id: int | None, index: int) -> None:
            super().__init__()
            self.segment_id = segment_id
            self.index = index

    def __init__(self, fetch: Fetch, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._fetch = fetch
        self.ids: list[int] = []
        self._rows: dict[int, Segment] = {}
        self.unsaved: set[int] = set()
        """Segments with a decision still waiting in the review journal (drawn with ``*``)."""

    # -- data --------------------------------------------------------------------
    def set_ids(self, ids: list[int], keep: int | None = None) -> None:
        """Show ``ids``; put the cursor on segment ``keep`` when it is among them."""
        self.ids = ids
        self._rows.clear()
        self.virtual_size = Size(self.size.width, len(ids))
        index = ids.index(keep) if keep is not None and keep in ids else 0
        if self.cursor == index:
            self._announce()
        self.cursor = index
        self.scroll_to_cursor()
        self.refresh()

    def row(self, index: int) -> Segment | None:
        """The segment at ``index``, fetching its page if needed."""
        if not 0 <= index < len(self.ids):
            return None
        segment_id = self.ids[index]
        if segment_id not in self._rows:
            start = index // PAGE * PAGE
            page = [i for i in self.ids[start : start + PAGE] if i not in self._rows]
            for seg in self._fetch(page):
                if seg.id is not None:
                    self._rows[seg.id] = seg
        return self._rows.get(segment_id)

    @property
    def current(self) -> Segment | None:
        return self.row(self.cursor)

    def update_row(self, segment: Segment) -> None:
        """Replace one cached row (after a decision or edit) and redraw it."""
        if segment.id is None:
            return
        self._rows[segment.id] = segment
        if segment.id in self.ids:
            self.refresh_line(self.ids.index(segment.id) - self.scroll_offset.y)

    def mark_unsaved(self, ids: set[int]) -> None:
        """Set the segments whose decision is not yet in the catalog; redraws if changed."""
        if ids != self.unsaved:
            self.unsaved = set(ids)
            self.refresh()

    # -- cursor ------------------------------------------------------------------
    def move(self, delta: int) -> None:
        if self.ids:
            self.cursor = max(0, min(len(self.ids) - 1, self.cursor + delta))

    def move_to(self, index: int) -> None:
        if self.ids:
            self.cursor = max(0, min(len(self.ids) - 1, index))

    def watch_cursor(self, old: int, new: int) -> None:
        self.scroll_to_cursor()
        for line in (old, new):
            self.refresh_line(line - self.scroll_offset.y)
        self._announce()

    def _announce(self) -> None:
        current = self.ids[self.cursor] if 0 <= self.cursor < len(self.ids) else None
        self.post_message(self.Highlighted(current, self.cursor))

    def scroll_to_cursor(self) -> None:
        height = max(1, self.scrollable_content_region.height)
        top = self.scroll_offset.y
        if self.cursor < top:
            self.scroll_to(y=self.cursor, animate=False)
        elif self.cursor >= top + height:
            self.scroll_to(y=self.cursor - height + 1, animate=False)

    def on_resize(self) -> None:
        self.virtual_size = Size(self.size.width, len(self.ids))
        self.scroll_to_cursor()

    # -- drawing -----------------------------------------------------------------
    def render_line(self, y: int) -> Strip:
        index = self.scroll_offset.y + y
        width = self.scrollable_content_region.width
        seg = self.row(index)
        if seg is None:
            return Strip.blank(width, self.rich_style)
        base = self.rich_style
        on_top = (
            self.get_component_rich_style("segment-list--cursor")
            if index == self.cursor
            else Style()
        )
        status_style = self.get_component_rich_style(f"segment-list--{seg.status}")
        dim = self.get_component_rich_style("segment-list--dim")
        flags_style = self.get_component_rich_style("segment-list--flags")
        snr = f"{seg.qc.snr_db:4.0f}" if seg.qc.snr_db is not None else "   –"
        flags = ",".join(seg.flags)
        text = seg.text.replace("\n", " ") or "(no transcript)"
        glyph = STATUS_GLYPH.get(seg.status, "?")
        lead: list[tuple[str, Style]] = (
            [("*", flags_style), (f"{glyph} ", status_style)]  # written once the lock is free
            if seg.id in self.unsaved
            else [(f" {glyph} ", status_style)]
        )
        parts: list[tuple[str, Style]] = [
            *lead,
            (f"{index + 1:>5} ", dim),
            (f"{seg.speaker[:8]:<8} ", Style()),
            (f"{seg.duration_sec:5.1f}s ", Style()),
            (f"{snr}dB ", dim),
            (f"{flags[:22]:<22} ", flags_style),
            (text, dim if not seg.text else Style()),
        ]
        # The cursor's background goes last so no column's own style can hide it.
        segments = [RichSegment(t, base + style + on_top) for t, style in parts]
        strip = Strip(segments).crop(self.scroll_offset.x, self.scroll_offset.x + width)
        return strip.extend_cell_length(width, base + on_top)
