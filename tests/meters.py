"""Independent true-peak and loudness meters for the tests (not podforge's own code).

* :func:`ideal_true_peak_db`: near-ideal band-limited reconstruction. The signal (zeros
  outside it) is cut into blocks of 16,384 samples, each taken with 8,192 samples of
  real context on both sides, oversampled 16x by FFT zero-padding (the Nyquist bin
  split evenly between +-Nyquist) and read in its centre only, so the periodic wrap of
  each FFT never reaches the part read. Each 16x extremum is refined by a parabola.
* :func:`sinc_true_peak_db`: the Whittaker-Shannon sum evaluated directly (exact for a
  finite signal; slow, for short signals only): the reference that proves the meter.
* :func:`ffmpeg_ebur128`: ffmpeg's ``ebur128=peak=true`` filter run through PyAV's
  filter graph (PyAV bundles ffmpeg's libavfilter: no system ffmpeg needed).
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

_BLOCK = 16384
_CONTEXT = 8192
_UP = 16


def _db(x: float) -> float:
    return 20.0 * math.log10(x) if x > 0 else -math.inf


def _peak_16x(segment: npt.NDArray[np.float64], first: int, count: int) -> float:
    """The peak of ``segment``'s reconstruction over samples first .. first + count."""
    n = segment.size
    spec = np.fft.rfft(segment)
    if n % 2 == 0:
        spec[-1] *= 0.5  # the Nyquist bin, split between +- Nyquist
    up = np.fft.irfft(spec, n * _UP) * _UP
    part = up[first * _UP : (first + count) * _UP + 1]
    peak = float(np.abs(part).max())
    before, here, after = part[:-2], part[1:-1], part[2:]
    curve = before - 2 * here + after
    ext = ((here - before) * (here - after) > 0) & (curve != 0)
    if ext.any():
        vertex = here[ext] - (after[ext] - before[ext]) ** 2 / (8 * curve[ext])
        peak = max(peak, float(np.abs(vertex).max()))
    return peak


def ideal_true_peak_db(audio: npt.ArrayLike) -> float:
    """Near-ideal true peak in dBTP of ``(n,)`` or ``(n, channels)`` audio."""
    x = np.asarray(audio, dtype=np.float64)
    columns = [x] if x.ndim == 1 else [x[:, c] for c in range(x.shape[1])]
    peak = 0.0
    for column in columns:
        padded = np.concatenate((np.zeros(_CONTEXT), column, np.zeros(_CONTEXT)))
        for start in range(0, column.size, _BLOCK):
            count = min(_BLOCK, column.size - start)
            segment = padded[start : start + count + 2 * _CONTEXT]
            peak = max(peak, _peak_16x(segment, _CONTEXT, count))
    return _db(peak)


def sinc_true_peak_db(audio: npt.ArrayLike, points_per_sample: int = 64) -> float:
    """Exact band-limited (sinc) reconstruction of a short finite mono signal, in dBTP."""
    x = np.asarray(audio, dtype=np.float64)
    n = np.arange(x.size)
    t = np.arange(-8 * points_per_sample, (x.size + 8) * points_per_sample) / points_per_sample
    peak = 0.0
    for chunk in np.array_split(t, max(1, t.size // 2048)):
        values = np.sinc(chunk[:, None] - n[None, :]) @ x
        peak = max(peak, float(np.abs(values).max()))
    return _db(peak)


def ffmpeg_ebur128(audio: npt.ArrayLike, sr: int) -> tuple[float, float]:
    """ffmpeg's ``ebur128=peak=true``: integrated loudness (LUFS) and true peak (dBTP).

    Mono or stereo float audio. The loudness is read from a run on the audio as it is;
    the true peak from a run with 0.25 s of silence appended, so that the resampler
    inside the filter flushes the last samples into it.
    """
    x = np.asarray(audio, dtype=np.float32)
    planes = x[None, :] if x.ndim == 1 else np.ascontiguousarray(x.T)
    lufs = float(_ebur128_metadata(planes, sr)["lavfi.r128.I"])
    padded = np.concatenate((planes, np.zeros((planes.shape[0], sr // 4), np.float32)), axis=1)
    peak = float(_ebur128_metadata(padded, sr)["lavfi.r128.true_peak"])
    return lufs, _db(peak)


def _ebur128_metadata(planes: npt.NDArray[np.float32], sr: int) -> dict[str, str]:
    """The ``lavfi.r128.*`` metadata of the last frame out of abuffer -> ebur128 -> sink."""
    import av
    import av.filter

    layout = "mono" if planes.shape[0] == 1 else "stereo"
    graph = av.filter.Graph()
    source = graph.add_abuffer(format="fltp", sample_rate=sr, layout=layout)
    meter = graph.add("ebur128", "peak=true:metadata=1")
    sink = graph.add("abuffersink")
    source.link_to(meter)
    meter.link_to(sink)
    graph.configure()
    last: dict[str, str] = {}

    def drain() -> None:
        nonlocal last
        while True:
            try:
                frame = graph.pull()
            except (av.BlockingIOError, BlockingIOError, EOFError):
                return
            if frame.metadata:
                last = dict(frame.metadata)

    step = 4096
    for start in range(0, planes.shape[1], step):
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(planes[:, start : start + step]), format="fltp", layout=layout
        )
        frame.sample_rate = sr
        frame.pts = start
        graph.push(frame)
        drain()
    graph.push(None)
    drain()
    return last
