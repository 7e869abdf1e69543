"""Does a file carry the synthetic-speech mark? A verdict from its speech windows.

Perth's detector gives one score per clip, and it cries wolf: unmarked hum, tonal music and
noise score near 1 (it reads a quiet, regular low band as its mark). So a file is cut into
3 s windows and only windows that are speech are scored: webrtcvad must call at least half
of the window speech **and** the speech band's level must move as syllables do (the 20 ms
level in 300-3400 Hz varies by at least 6 dB: hum, noise and held chords do not; webrtcvad
alone calls a 50 Hz hum speech). A speech window is marked when its score reaches
:data:`WINDOW_THRESHOLD`; a file is marked when at least :data:`FILE_MIN_WINDOWS` windows
and :data:`FILE_MIN_FRACTION` of its speech windows are (an episode where one line in four
is synthetic still reads marked).

The thresholds are calibrated by ``bench/watermark.py`` on a corpus of unmarked audio
(speech in several voices and languages, a real recording, music, hum, noise, speech under
music, hum and noise, each also through MP3); docs/TRUST.md states the false-positive rate
measured there. The file is decoded in blocks at the detector's rate, so memory is bounded
for an episode of any length.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt

from core.audio.io import iter_blocks, probe, resample
from core.audio.types import FloatArray
from core.watermark.perth import PerthMark, load_mark

WINDOW_SEC = 3.0
MIN_SPEECH_RATIO = 0.5
"""Share of a window webrtcvad (mode 2) must call speech."""
MIN_MODULATION_DB = 6.0
"""Standard deviation of the 20 ms speech-band level a window needs to count as speech."""
WINDOW_THRESHOLD = 0.99
"""A speech window scoring at least this is marked."""
FILE_MIN_FRACTION = 0.2
FILE_MIN_WINDOWS = 2

_VAD_RATE = 16000
_BLOCK_WINDOWS = 20  # windows decoded at a time (60 s)

Verdict = Literal["marked", "unmarked"]


@dataclass(frozen=True)
class CheckResult:
    """What :func:`check_audio` found: the scores of the speech windows and a verdict."""

    seconds: float
    windows: int
    """Windows of the file (speech or not)."""
    scores: tuple[float, ...]
    """The detector's score of each speech window, in order."""

    @property
    def speech_windows(self) -> int:
        return len(self.scores)

    @property
    def marked_windows(self) -> int:
        return sum(s >= WINDOW_THRESHOLD for s in self.scores)

    @property
    def fraction(self) -> float:
        """Share of the speech windows that are marked (0 with no speech)."""
        return self.marked_windows / len(self.scores) if self.scores else 0.0

    @property
    def verdict(self) -> Verdict:
        marked = self.marked_windows >= FILE_MIN_WINDOWS and self.fraction >= FILE_MIN_FRACTION
        return "marked" if marked else "unmarked"

    def summary(self) -> str:
        """One line of figures: marked windows, speech windows, median score."""
        if not self.scores:
            return f"no speech found in {self.seconds:.1f} s ({self.windows} windows)"
        median = float(np.median(self.scores))
        return (
            f"{self.marked_windows}/{self.speech_windows} speech windows marked "
            f"({self.fraction:.0%}), median score {median:.3f}, {self.seconds:.1f} s"
        )


def modulation_db(window: npt.ArrayLike, sample_rate: int) -> float:
    """Standard deviation (dB) of the 20 ms level of ``window`` in the 300-3400 Hz band."""
    from scipy.signal import butter, sosfilt

    x = np.asarray(window, dtype=np.float64).reshape(-1)
    sos = butter(4, [300.0, 3400.0], btype="bandpass", fs=sample_rate, output="sos")
    band = sosfilt(sos, x)
    hop = max(1, int(0.02 * sample_rate))
    frames = band.size // hop
    if frames < 2:
        return 0.0
    power = np.mean(band[: frames * hop].reshape(frames, hop) ** 2, axis=1)
    return float(np.std(10.0 * np.log10(power + 1e-10)))


def _speech_ratios(block: FloatArray, sample_rate: int, size: int) -> list[float]:
    """The share of each ``size``-sample window of ``block`` that webrtcvad calls speech."""
    from core.dataset.segment import VadStream

    vad = VadStream(mode=2, frame_ms=30, sample_rate=_VAD_RATE)
    vad.feed(resample(block, sample_rate, _VAD_RATE))
    decisions = vad.frame_decisions
    per_window = size * _VAD_RATE // sample_rate // (_VAD_RATE * 30 // 1000)
    ratios = []
    for k in range(block.size // size):
        frames = decisions[k * per_window : (k + 1) * per_window]
        ratios.append(float(frames.mean()) if frames.size else 0.0)
    return ratios


def _block_scores(block: FloatArray, rate: int, mark: PerthMark) -> tuple[int, list[float]]:
    size = int(WINDOW_SEC * rate)
    ratios = _speech_ratios(block, rate, size)
    scores = []
    for k, ratio in enumerate(ratios):
        window = block[k * size : (k + 1) * size]
        if ratio >= MIN_SPEECH_RATIO and modulation_db(window, rate) >= MIN_MODULATION_DB:
            scores.append(mark.score(window, rate))
    return len(ratios), scores


def check_audio(
    audio: npt.ArrayLike, sample_rate: int, mark: PerthMark | None = None
) -> CheckResult:
    """Score the speech windows of mono ``audio`` (a trailing part window is left out)."""
    mark = mark or load_mark()
    x = np.asarray(audio, dtype=np.float32).reshape(-1)
    y = resample(x, sample_rate, mark.rate) if sample_rate != mark.rate else x
    windows, scores = _block_scores(y, mark.rate, mark)
    return CheckResult(seconds=x.size / sample_rate, windows=windows, scores=tuple(scores))


def check_file(path: Path | str, mark: PerthMark | None = None) -> CheckResult:
    """:func:`check_audio` over any file podforge can decode, read in 60 s blocks at the
    detector's rate (bounded memory). Raises :class:`~core.errors.AudioError` (one line)
    for a missing or undecodable file."""
    mark = mark or load_mark()
    info = probe(path)
    block_len = int(WINDOW_SEC * mark.rate) * _BLOCK_WINDOWS
    pending = np.zeros(0, np.float32)
    windows, scores, total = 0, [], 0
    for piece in iter_blocks(info.path, target_rate=mark.rate, mono=True):
        total += piece.size
        pending = np.concatenate([pending, piece]) if pending.size else piece
        while pending.size >= block_len:
            n, found = _block_scores(pending[:block_len], mark.rate, mark)
            windows, pending = windows + n, pending[block_len:]
            scores.extend(found)
    if pending.size:
        n, found = _block_scores(pending, mark.rate, mark)
        windows += n
        scores.extend(found)
    return CheckResult(seconds=total / mark.rate, windows=windows, scores=tuple(scores))
