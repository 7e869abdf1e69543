"""A braille waveform of a short clip with the play position, for the segment review pane.

Each cell is a braille character (U+2800 block): 2 dots wide and 4 tall, so a pane
``W x H`` cells draws ``2W`` peak columns at ``4H`` dots of vertical resolution. The
min/max envelope is centred on the middle of the widget; dots inside the RMS band are
all lit while the rest of the envelope (peaks only) is drawn as a sparser stipple with
its outline, and cells holding RMS dots get the brighter ``waveform--rms`` style, so the
body of the sound reads even without colour. Columns that reach full scale
(``|x| >= 0.99``) take the ``waveform--clip`` style; the play position is a one-cell
``waveform--cursor`` column through the whole height.

Redraws are cheap: glyphs and styled lines are computed once per size (and per set of
styles) and cached; moving the cursor only splices one restyled cell into each cached
line, and only repaints when the cursor changes column.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import groupby
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt
from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.geometry import Region
from textual.reactive import reactive
from textual.strip import Strip
from textual.widget import Widget

from core.audio.waveform import CLIP_LEVEL, Peaks, column_of, compute_peaks

BLANK, PEAK, RMS, CLIP = 0, 1, 2, 3
"""Cell kinds in :attr:`Glyphs.kinds`."""

EMPTY_TEXT = "no audio"

# The bit of each dot in a braille cell, by [dot row][dot column] (Unicode's dot order).
_DOT_BITS = np.array([[0x01, 0x08], [0x02, 0x10], [0x04, 0x20], [0x40, 0x80]], np.int32)
_BRAILLE_BLANK = 0x2800


@dataclass(frozen=True, eq=False)
class Glyphs:
    """A ``width x height`` grid of braille characters and the kind of each cell."""

    rows: list[str]
    """One string of ``width`` characters per row; blank cells are spaces."""
    kinds: npt.NDArray[np.int8]
    """``(height, width)`` of :data:`BLANK`, :data:`PEAK`, :data:`RMS` or :data:`CLIP`."""

    @property
    def width(self) -> int:
        return int(self.kinds.shape[1])

    @property
    def height(self) -> int:
        return int(self.kinds.shape[0])


def braille_glyphs(peaks: Peaks, width: int, height: int) -> Glyphs:
    """Draw ``peaks`` (``2 * width`` columns, one per dot column) into braille cells.

    Vectorised: one boolean dot grid of ``4 * height`` by ``2 * width``, packed into
    cells. Every column that crosses zero lights at least the two dots either side of
    the centre, so silence shows as a thin centre line.
    """
    if peaks.columns != 2 * width:
        raise ValueError(f"need {2 * width} peak columns for width {width}, got {peaks.columns}")
    dots_high = 4 * height
    centre = dots_high / 2
    rows = np.arange(dots_high, dtype=np.float64)[:, None]
    high = peaks.high.astype(np.float64)
    low = peaks.low.astype(np.float64)
    top = np.clip(np.floor(centre * (1 - high)), 0, dots_high - 1)
    bottom = np.clip(np.ceil(centre * (1 - low)) - 1, 0, dots_high - 1)
    crosses = (low <= 0) & (high >= 0)
    top = np.where(crosses, np.minimum(top, centre - 1), top)
    bottom = np.where(crosses, np.maximum(bottom, centre), np.maximum(bottom, top))
    lit = (rows >= top) & (rows <= bottom)
    rms = peaks.rms.astype(np.float64)
    inner = lit & (rows >= np.floor(centre * (1 - rms))) & (rows <= np.ceil(centre * (1 + rms)) - 1)
    # Peaks outside the RMS band: every other dot row, plus the outline itself.
    stipple = (rows % 2 == 0) | (rows == top) | (rows == bottom)
    dots = inner | (lit & stipple)

    def cells(grid: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
        return grid.reshape(height, 4, width, 2)  # [row, dot row, column, dot column]

    bits = (cells(dots) * _DOT_BITS[None, :, None, :]).sum(axis=(1, 3))
    any_lit = cells(lit).any(axis=(1, 3))
    any_inner = cells(inner).any(axis=(1, 3))
    clipped = np.any(peaks.clipped(CLIP_LEVEL).reshape(1, width, 2), axis=2)
    kinds = np.where(
        any_lit & clipped, CLIP, np.where(any_inner, RMS, np.where(any_lit, PEAK, BLANK))
    ).astype(np.int8)
    codes = np.where(bits == 0, ord(" "), _BRAILLE_BLANK + bits).astype("<u4")
    text = codes.tobytes().decode("utf-32-le")
    return Glyphs([text[y * width : (y + 1) * width] for y in range(height)], kinds)


class Waveform(Widget):
    """The waveform of one clip and, while it plays, a cursor at ``position_sec``.

    Call :meth:`set_audio` with the clip; set ``position_sec`` (``None`` when not
    playing) as often as playback reports it. Restyle through the component classes
    ``waveform--peak``, ``waveform--rms``, ``waveform--clip``, ``waveform--cursor`` and
    ``waveform--empty`` (the dim "no audio" line shown before any audio is set).
    """

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "waveform--peak",
        "waveform--rms",
        "waveform--clip",
        "waveform--cursor",
        "waveform--empty",
    }

    DEFAULT_CSS = """
    Waveform {
        height: 6;
        min-height: 1;
    }
    Waveform > .waveform--peak {
        color: $primary 60%;
    }
    Waveform > .waveform--rms {
        color: $primary-lighten-2;
    }
    Waveform > .waveform--clip {
        color: $error;
    }
    Waveform > .waveform--cursor {
        background: $accent;
        color: $background;
    }
    Waveform > .waveform--empty {
        color: $text-muted;
        text-style: italic;
    }
    """

    position_sec: reactive[float | None] = reactive(None, repaint=False)
    """Seconds into the clip of the play position, or ``None`` when not playing."""

    def __init__(
        self,
        *,
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self._audio: npt.NDArray[Any] | None = None
        self._sample_rate = 0
        self._peaks: Peaks | None = None
        self._glyphs: Glyphs | None = None
        self._strips: list[Strip] = []
        self._strip_styles: tuple[Style, ...] | None = None
        self._cursor_style = Style()

    # ------------------------------------------------------------------ public API

    def set_audio(self, audio: npt.NDArray[Any], sample_rate: int) -> None:
        """Show ``audio`` (``(n,)`` or ``(n, channels)``, float in [-1, 1])."""
        a = np.asarray(audio)
        if a.ndim not in (1, 2):
            raise ValueError(f"audio must have shape (n,) or (n, channels), got {a.shape}")
        if sample_rate <= 0:
            raise ValueError(f"sample_rate must be positive, got {sample_rate!r}")
        self._audio = a
        self._sample_rate = int(sample_rate)
        self._invalidate()
        self._ensure_glyphs()
        self.refresh()

    def clear_audio(self) -> None:
        """Back to the empty state."""
        self._audio = None
        self._invalidate()
        self.refresh()

    @property
    def peaks(self) -> Peaks | None:
        """The peaks drawn now (two columns per cell), or ``None`` before layout/audio."""
        return self._peaks

    @property
    def duration_sec(self) -> float:
        if self._audio is None or not self._sample_rate:
            return 0.0
        return len(self._audio) / self._sample_rate

    def cursor_column(self) -> int | None:
        """The cell column the play cursor is drawn in, or ``None``."""
        return self._column_for(self.position_sec)

    # ------------------------------------------------------------ Textual hooks

    def watch_position_sec(self, old: float | None, new: float | None) -> None:
        before, after = self._column_for(old), self._column_for(new)
        if before == after:
            return  # ~10 updates a second, but most stay in the same column
        height = self.size.height
        self.refresh(*(Region(x, 0, 1, height) for x in (before, after) if x is not None))

    def on_resize(self, event: events.Resize) -> None:
        self._ensure_glyphs()
        self.refresh()

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._strip_styles = None

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        glyphs = self._ensure_glyphs()
        if glyphs is None:
            return self._empty_line(y, width)
        strips = self._styled_strips(glyphs)
        if y >= len(strips):
            return Strip.blank(width, self.rich_style)
        line = strips[y]
        x = self._column_for(self.position_sec)
        if x is None:
            return line
        cursor = Strip([Segment(glyphs.rows[y][x], self._cursor_style)], 1)
        return Strip.join([line.crop(0, x), cursor, line.crop(x + 1, width)])

    # ----------------------------------------------------------------- internals

    def _invalidate(self) -> None:
        self._peaks = None
        self._glyphs = None
        self._strips = []
        self._strip_styles = None

    def _ensure_glyphs(self) -> Glyphs | None:
        """Peaks and glyphs for the current size, recomputed only when it changed."""
        width, height = self.size
        if self._audio is None or width <= 0 or height <= 0:
            return None
        if self._peaks is None or self._peaks.columns != 2 * width:
            self._peaks = compute_peaks(self._audio, self._sample_rate, 2 * width)
            self._glyphs = None
        glyphs = self._glyphs
        if glyphs is None or glyphs.width != width or glyphs.height != height:
            glyphs = self._glyphs = braille_glyphs(self._peaks, width, height)
            self._strip_styles = None
        return glyphs

    def _styled_strips(self, glyphs: Glyphs) -> list[Strip]:
        """One cached Strip per row: runs of equally styled cells as single segments."""
        styles = (
            self.rich_style,
            self.get_component_rich_style("waveform--peak"),
            self.get_component_rich_style("waveform--rms"),
            self.get_component_rich_style("waveform--clip"),
            self.get_component_rich_style("waveform--cursor"),
        )
        if styles == self._strip_styles:
            return self._strips
        self._cursor_style = styles[4]
        strips = []
        for text, kinds in zip(glyphs.rows, glyphs.kinds.tolist(), strict=True):
            segments = []
            x = 0
            for kind, run in groupby(kinds):
                n = sum(1 for _ in run)
                segments.append(Segment(text[x : x + n], styles[kind]))
                x += n
            strips.append(Strip(segments, glyphs.width))
        self._strips = strips
        self._strip_styles = styles
        return strips

    def _column_for(self, position: float | None) -> int | None:
        if position is None or self._peaks is None or self.size.width <= 0:
            return None
        return column_of(position, self._peaks, self.size.width)

    def _empty_line(self, y: int, width: int) -> Strip:
        base = self.rich_style
        if y != self.size.height // 2 or width <= 0:
            return Strip.blank(width, base)
        label = EMPTY_TEXT[:width]
        left = (width - len(label)) // 2
        style = self.get_component_rich_style("waveform--empty")
        return Strip(
            [
                Segment(" " * left, base),
                Segment(label, style),
                Segment(" " * (width - left - len(label)), base),
            ],
            width,
        )
