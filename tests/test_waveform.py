"""Waveform peaks (core.audio.waveform) and the braille Waveform widget: Pilot and snapshot."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest
from rich.style import Style
from textual.app import App, ComposeResult
from textual.pilot import Pilot

from core.audio.waveform import Peaks, column_of, compute_peaks
from tui.widgets.waveform import Waveform, braille_glyphs

RATE = 24_000
pytestmark = pytest.mark.usefixtures("no_color_unset")

# ------------------------------------------------------------------ core.audio.waveform


def _sine(amplitude: float, seconds: float, rate: int = RATE, freq: float = 220.0) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_sine_peaks_are_the_amplitude_and_rms_is_amplitude_over_root_two() -> None:
    peaks = compute_peaks(_sine(0.6, 2.0), RATE, 50)  # 960 samples (~21 periods) per column
    assert peaks.columns == 50 and peaks.duration_sec == pytest.approx(2.0)
    assert np.allclose(peaks.high, 0.6, atol=2e-3)
    assert np.allclose(peaks.low, -0.6, atol=2e-3)
    assert np.allclose(peaks.rms, 0.6 / np.sqrt(2), rtol=1e-2)
    assert peaks.high.dtype == np.float32 and not peaks.clipped().any()


def test_silence_is_all_zeros() -> None:
    peaks = compute_peaks(np.zeros(RATE, np.float32), RATE, 80)
    for arr in (peaks.low, peaks.high, peaks.rms):
        assert arr.shape == (80,) and not arr.any()


def test_empty_audio_gives_zero_columns() -> None:
    peaks = compute_peaks(np.zeros(0, np.float32), RATE, 10)
    assert peaks.columns == 10 and peaks.duration_sec == 0.0 and not peaks.high.any()
    assert column_of(1.0, peaks, 10) == 0


def test_audio_shorter_than_columns_is_stretched() -> None:
    audio = np.array([0.1, -0.2, 0.3], np.float32)
    peaks = compute_peaks(audio, RATE, 7)
    # column j shows sample floor(j * 3 / 7)
    assert peaks.low.tolist() == pytest.approx([0.1, 0.1, 0.1, -0.2, -0.2, 0.3, 0.3])
    assert peaks.high.tolist() == pytest.approx(peaks.low.tolist())
    assert peaks.rms.tolist() == pytest.approx([0.1, 0.1, 0.1, 0.2, 0.2, 0.3, 0.3])


def test_uneven_columns_cover_every_sample_once() -> None:
    audio = np.zeros(1003, np.float32)
    audio[-1] = 0.5  # the last sample lands in the last column
    audio[0] = -0.25
    peaks = compute_peaks(audio, RATE, 7)
    assert peaks.high[-1] == pytest.approx(0.5) and peaks.high[:-1].max() == 0
    assert peaks.low[0] == pytest.approx(-0.25) and peaks.low[1:].min() == 0


def test_stereo_takes_the_extremes_of_any_channel() -> None:
    left = _sine(0.5, 1.0)
    right = np.zeros_like(left)
    right[: RATE // 2] = 0.9  # a DC step in the first half of the right channel only
    peaks = compute_peaks(np.stack([left, right], axis=1), RATE, 10)
    assert np.allclose(peaks.high[:5], 0.9) and np.allclose(peaks.high[5:], 0.5, atol=2e-3)
    assert np.allclose(peaks.low, -0.5, atol=2e-3)
    # rms: the louder channel's
    assert np.allclose(peaks.rms[:5], 0.9, rtol=1e-3)
    assert np.allclose(peaks.rms[5:], 0.5 / np.sqrt(2), rtol=1e-2)
    mono = compute_peaks(left, RATE, 10)
    dual = compute_peaks(np.stack([left, left], axis=1), RATE, 10)
    for a, b in ((mono.low, dual.low), (mono.high, dual.high), (mono.rms, dual.rms)):
        assert np.array_equal(a, b)


def test_int16_is_scaled_and_out_of_range_floats_are_clamped() -> None:
    peaks = compute_peaks(np.array([-32768, 0, 16384], np.int16), RATE, 3)
    assert peaks.low.tolist() == pytest.approx([-1.0, 0.0, 0.5])
    loud = compute_peaks(np.array([1.7, -3.0], np.float32), RATE, 2)
    assert loud.high.tolist() == [1.0, -1.0] and loud.rms.tolist() == [1.0, 1.0]
    assert loud.clipped().all()


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="columns"):
        compute_peaks(np.zeros(10, np.float32), RATE, 0)
    with pytest.raises(ValueError, match="sample_rate"):
        compute_peaks(np.zeros(10, np.float32), 0, 5)
    with pytest.raises(ValueError, match="shape"):
        compute_peaks(np.zeros((2, 2, 2), np.float32), RATE, 5)


def test_column_of_edges() -> None:
    peaks = compute_peaks(np.zeros(3 * RATE, np.float32), RATE, 100)
    assert column_of(0.0, peaks, 100) == 0
    assert column_of(-1.0, peaks, 100) == 0
    assert column_of(float("nan"), peaks, 100) == 0
    assert column_of(1.5, peaks, 100) == 50
    assert column_of(0.0299, peaks, 100) == 0 and column_of(0.03, peaks, 100) == 1
    assert column_of(2.9999, peaks, 100) == 99
    assert column_of(3.0, peaks, 100) == 99  # the very end is still the last column
    assert column_of(60.0, peaks, 100) == 99
    assert column_of(1.5, peaks, 40) == 20  # in cells, for peaks drawn two per cell


def test_compute_peaks_is_deterministic() -> None:
    audio = _speech_like()
    a, b = compute_peaks(audio, RATE, 157), compute_peaks(audio.copy(), RATE, 157)
    assert all(np.array_equal(x, y) for x, y in ((a.low, b.low), (a.high, b.high), (a.rms, b.rms)))


def test_braille_glyphs_of_silence_is_a_centre_line() -> None:
    glyphs = braille_glyphs(compute_peaks(np.zeros(100, np.float32), RATE, 20), 10, 4)
    # 16 dot rows: the centre line is dot rows 7 and 8, i.e. the bottom dots of row 1
    # (⣀, dots 7+8) and the top dots of row 2 (⠉, dots 1+4).
    assert glyphs.rows == [" " * 10, "⣀" * 10, "⠉" * 10, " " * 10]


# ------------------------------------------------------------------ the widget

CLIP_START, CLIP_END = 2.1, 2.45


def _speech_like() -> npt.NDArray[np.float32]:
    """3 s at 24 kHz: voiced 'syllables' with pauses, a clipped shout, a quiet tail."""
    rng = np.random.default_rng(7)
    t = np.arange(3 * RATE) / RATE
    f0 = 140 + 25 * np.sin(2 * np.pi * 0.7 * t)  # a gently moving pitch
    phase = 2 * np.pi * np.cumsum(f0) / RATE
    voiced = sum(np.sin(k * phase) / k for k in range(1, 8)) / 1.6
    envelope = np.zeros_like(t)
    for start, end, level in [
        (0.12, 0.42, 0.45),
        (0.50, 0.78, 0.6),
        (0.95, 1.20, 0.3),
        (1.28, 1.75, 0.55),
        (CLIP_START - 0.05, CLIP_END + 0.05, 2.2),  # far too loud: clipped below
        (2.62, 2.90, 0.2),
    ]:
        inside = (t >= start) & (t < end)
        envelope[inside] = level * np.sin(np.pi * (t[inside] - start) / (end - start)) ** 0.6
    audio = voiced * envelope + 0.004 * rng.standard_normal(len(t))
    return np.clip(audio, -1.0, 1.0).astype(np.float32)


class WaveformApp(App[None]):
    """A detail pane holding just the waveform."""

    CSS = """
    Screen { padding: 0; }
    #wave { height: 1fr; border: round $primary; border-title-color: $text; }
    """

    def __init__(self, *, audio: bool = True) -> None:
        super().__init__()
        self._with_audio = audio

    def compose(self) -> ComposeResult:
        wave = Waveform(id="wave")
        wave.border_title = "segment 0042 · 3.00 s"
        yield wave

    def on_mount(self) -> None:
        if self._with_audio:
            self.query_one(Waveform).set_audio(_speech_like(), RATE)


Cells = list[list[tuple[str, Style]]]


def _cells(wave: Waveform) -> Cells:
    """The widget's rendered lines as (character, style) per cell."""
    rows: Cells = []
    for y in range(wave.size.height):
        strip = wave.render_line(y)
        rows.append([(ch, seg.style or Style()) for seg in strip for ch in seg.text])
        assert len(rows[-1]) == wave.size.width
    return rows


def _columns_styled(cells: Cells, style: Style) -> set[int]:
    return {x for row in cells for x, (_, s) in enumerate(row) if s == style}


def _expected_clip_columns(audio: np.ndarray, width: int) -> set[int]:
    """Cells whose slice of the clip has a sample at |x| >= 0.99 (computed independently)."""
    n = len(audio)
    return {
        x
        for x in range(width)
        if np.any(np.abs(audio[x * n // width : (x + 1) * n // width]) >= 0.99)
    }


async def test_widget_draws_braille_clip_and_cursor() -> None:
    app = WaveformApp()
    async with app.run_test(size=(100, 8)) as pilot:
        wave = app.query_one(Waveform)
        await pilot.pause()
        width, height = wave.size
        assert (width, height) == (98, 6)  # inside the border
        assert wave.peaks is not None and wave.peaks.columns == 2 * width
        cells = _cells(wave)
        text = "".join(ch for row in cells for ch, _ in row)
        assert sum(0x2801 <= ord(ch) <= 0x28FF for ch in text) > width  # mostly braille

        clip = wave.get_component_rich_style("waveform--clip")
        expected = _expected_clip_columns(_speech_like(), width)
        first, last = int(CLIP_START / 3 * width), int(CLIP_END / 3 * width)
        assert set(range(first + 1, last)) <= expected <= set(range(first - 1, last + 2))
        assert _columns_styled(cells, clip) == expected
        # the clipped columns reach the top and bottom rows, and they draw their top dots
        for row in (cells[0], cells[-1]):
            assert {x for x, (ch, _) in enumerate(row) if ch != " "} >= expected
        assert all(ord(cells[0][x][0]) & 0x09 for x in expected)  # dots 1 / 4: the top
        # louder speech carries the rms style somewhere, pauses are blank but for the centre
        rms = wave.get_component_rich_style("waveform--rms")
        assert _columns_styled(cells, rms) and not _columns_styled(cells, clip) & _columns_styled(
            cells, rms
        )

        cursor = wave.get_component_rich_style("waveform--cursor")
        assert _columns_styled(cells, cursor) == set()  # not playing
        wave.position_sec = 1.5
        await pilot.pause()
        assert wave.cursor_column() == width // 2
        cells = _cells(wave)
        assert _columns_styled(cells, cursor) == {width // 2}
        assert all(row[width // 2][1] == cursor for row in cells)  # the whole height
        wave.position_sec = 2.95
        await pilot.pause()
        assert _columns_styled(_cells(wave), cursor) == {int(2.95 / 3 * width)}
        # the glyphs stay the same under the cursor: it only restyles
        assert "".join(ch for row in _cells(wave) for ch, _ in row) == text
        wave.position_sec = None
        await pilot.pause()
        assert _columns_styled(_cells(wave), cursor) == set()


async def test_widget_recomputes_on_resize() -> None:
    app = WaveformApp()
    async with app.run_test(size=(80, 8)) as pilot:
        wave = app.query_one(Waveform)
        wave.position_sec = 1.0
        await pilot.pause()
        assert wave.peaks is not None and wave.peaks.columns == 2 * 78
        await pilot.resize_terminal(122, 10)
        await pilot.pause()
        width, height = wave.size
        assert (width, height) == (120, 8)
        assert wave.peaks.columns == 2 * width
        cells = _cells(wave)
        assert len(cells) == 8 and all(len(row) == 120 for row in cells)
        clip = wave.get_component_rich_style("waveform--clip")
        assert _columns_styled(cells, clip) == _expected_clip_columns(_speech_like(), width)
        cursor = wave.get_component_rich_style("waveform--cursor")
        assert _columns_styled(cells, cursor) == {width // 3}


async def test_widget_follows_a_theme_change() -> None:
    app = WaveformApp()
    async with app.run_test(size=(80, 8)) as pilot:
        wave = app.query_one(Waveform)
        await pilot.pause()
        before = wave.get_component_rich_style("waveform--clip")
        app.theme = "textual-light"
        await pilot.pause()
        after = wave.get_component_rich_style("waveform--clip")
        assert after != before
        expected = _expected_clip_columns(_speech_like(), wave.size.width)
        assert _columns_styled(_cells(wave), after) == expected


async def test_widget_without_audio_says_so() -> None:
    app = WaveformApp(audio=False)
    async with app.run_test(size=(60, 8)) as pilot:
        wave = app.query_one(Waveform)
        wave.position_sec = 1.0  # harmless without audio
        await pilot.pause()
        lines = ["".join(ch for ch, _ in row) for row in _cells(wave)]
        assert [line.strip() for line in lines] == ["", "", "", "no audio", "", ""]
        middle = _cells(wave)[3]
        dim = wave.get_component_rich_style("waveform--empty")
        assert {s for ch, s in middle if ch != " "} == {dim}
        wave.set_audio(_speech_like(), RATE)
        await pilot.pause()
        assert "no audio" not in "".join(line for line in (_line(wave, y) for y in range(6)))
        wave.clear_audio()
        await pilot.pause()
        assert _line(wave, 3).strip() == "no audio"


def _line(wave: Waveform, y: int) -> str:
    return "".join(seg.text for seg in wave.render_line(y))


# ------------------------------------------------------------------ snapshot


def test_snapshot_waveform(snap_compare) -> None:  # type: ignore[no-untyped-def]
    async def play(pilot: Pilot[None]) -> None:
        await pilot.pause()
        pilot.app.query_one(Waveform).position_sec = 1.25
        await pilot.pause()

    assert snap_compare(WaveformApp(), terminal_size=(80, 10), run_before=play)


def test_peaks_is_a_plain_frozen_record() -> None:
    peaks = Peaks(np.zeros(2, np.float32), np.zeros(2, np.float32), np.zeros(2, np.float32), 1.0)
    with pytest.raises(AttributeError):
        peaks.duration_sec = 2.0  # type: ignore[misc]
