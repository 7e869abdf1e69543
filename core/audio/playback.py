"""Play audio through the sound card without blocking: play, stop, seek, position.

The review screen plays segments and the script editor whole mixes. :class:`Player` holds one
buffer and a ``sounddevice.OutputStream`` whose callback reads it at a lock-guarded index;
nothing waits for the audio. ``on_finished`` is called **from a playback thread**: the caller
must marshal it to its UI thread. Failures a user can cause are one-line
:class:`~core.errors.PlaybackError` s; constructing a :class:`Player` never fails, and
:func:`check_output` gives the reason up front. ``sounddevice`` is imported inside the
functions that need it (it initialises PortAudio at import).

Details: docs/PLAYBACK.md, "How it works"."""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import numpy.typing as npt

from core.audio.types import FloatArray
from core.errors import PlaybackError, one_line

__all__ = [
    "DEVICE_ENV",
    "Player",
    "check_output",
    "list_output_devices",
]

log = logging.getLogger(__name__)


#: Environment variable naming the default output device (index or name substring).
DEVICE_ENV = "PODFORGE_AUDIO_DEVICE"

_DOCS = "see docs/PLAYBACK.md"
_NO_PORTAUDIO = (
    "audio playback needs the PortAudio library: install it "
    f"(Debian/Ubuntu: sudo apt install libportaudio2) — {_DOCS}"
)
_NO_DEVICE_HINT = f"{_DOCS} (over SSH: forward PulseAudio/PipeWire)"

Device = int | str | None

#: Lower bound on the output latency asked of PortAudio (seconds): the callback is
#: Python, so a roomy buffer keeps playback smooth while the UI thread holds the GIL.
_MIN_LATENCY = 0.1

#: PortAudio opens, starts and closes streams one at a time (its list of open streams
#: is not locked). Held only around those calls; audio threads never take it, so
#: holding it while a close waits for an audio thread cannot deadlock.
_PORTAUDIO_LOCK = threading.Lock()

#: Every open stream and its player. PortAudio calls a stream's callback through a cffi
#: handle the stream object owns: a player dropped while playing must not let that be
#: garbage-collected under the audio thread (a crash). Entries go when a stream is closed.
#: Guarded by _PORTAUDIO_LOCK.
_LIVE: dict[Any, Player] = {}
_atexit_registered = False


def _register(stream: Any, player: Player) -> None:
    global _atexit_registered
    with _PORTAUDIO_LOCK:
        _LIVE[stream] = player
        if not _atexit_registered:
            # Registered after sounddevice's own handler, so it runs first: streams are
            # stopped while PortAudio is still up, and no callback runs during teardown.
            atexit.register(_stop_all)
            _atexit_registered = True


def _close_stream(stream: Any) -> None:
    with _PORTAUDIO_LOCK:
        try:
            stream.close(ignore_errors=True)
        finally:
            _LIVE.pop(stream, None)


def _stop_all() -> None:
    with _PORTAUDIO_LOCK:
        players = set(_LIVE.values())
    for player in players:
        player.stop()


# ------------------------------------------------------------------ sounddevice


def _sounddevice() -> ModuleType:
    """Import ``sounddevice``, turning a missing or broken PortAudio into PlaybackError."""
    try:
        import sounddevice
    except OSError as exc:  # "PortAudio library not found", or dlopen failed
        raise PlaybackError(_NO_PORTAUDIO) from exc
    except ImportError as exc:  # the package itself (or its cffi part) is missing
        raise PlaybackError(
            "audio playback needs the sounddevice package: reinstall podforge (uv sync) — " + _DOCS
        ) from exc
    except Exception as exc:  # sd.PortAudioError from Pa_Initialize at import
        raise PlaybackError(f"no audio output device: {one_line(exc)}; {_NO_DEVICE_HINT}") from exc
    module: ModuleType = sounddevice
    return module


def _env_device() -> Device:
    raw = os.environ.get(DEVICE_ENV, "").strip()
    if not raw:
        return None
    return int(raw) if raw.isdigit() else raw


def _device_error(sd: ModuleType, device: Device, exc: BaseException) -> PlaybackError:
    """The one-line error for an unusable output device."""
    detail = one_line(exc)
    busy = "Device unavailable" in detail or "Device or resource busy" in detail
    if device is not None:
        # A device chosen by index or name (argument or $PODFORGE_AUDIO_DEVICE).
        if "Multiple" in detail:
            detail = f"several output devices match {device!r}; use its index or a longer name"
        elif "Not an output device" in detail:
            detail = f"device {device!r} has no output channels"
        elif "No output device matching" in detail or "Error querying device" in detail:
            detail = f"no output device matches {device!r}"
        elif busy:
            detail = f"device {device!r} is busy (another program holds it; pick a shared one)"
        else:
            detail = f"device {device!r} cannot be used ({detail})"
        return PlaybackError(
            f"no audio output device: {detail}; list devices with `python -m sounddevice` "
            f"and set {DEVICE_ENV} — {_NO_DEVICE_HINT}"
        )
    if isinstance(exc, sd.PortAudioError):
        try:
            none_at_all = not any(d["max_output_channels"] > 0 for d in sd.query_devices())
        except Exception:
            none_at_all = False
        if none_at_all:
            detail = "PortAudio finds no sound card or sound server"
        elif busy:
            detail = f"the output device is busy, another program holds it ({detail})"
    return PlaybackError(f"no audio output device: {detail}; {_NO_DEVICE_HINT}")


def _output_info(sd: ModuleType, device: Device) -> dict[str, Any]:
    """``sd.query_devices(device, 'output')``, or PlaybackError."""
    try:
        info: dict[str, Any] = sd.query_devices(device, "output")
    except (ValueError, sd.PortAudioError) as exc:
        raise _device_error(sd, device, exc) from exc
    return info


def _candidates(info: dict[str, Any], rate: int, channels: int) -> list[tuple[int, int]]:
    """``(sample_rate, channels)`` pairs to try, best first.

    Rates: the audio's own, then the device's default rate (the audio is then
    resampled with soxr). Channels: the audio's count if the device has that many,
    else stereo, else mono.
    """
    max_out = int(info.get("max_output_channels") or 0)
    if max_out < 1:
        raise PlaybackError(
            f"no audio output device: {info.get('name')!r} has no output channels; "
            + _NO_DEVICE_HINT
        )
    rates = [rate]
    default_rate = round(float(info.get("default_samplerate") or 0))
    if default_rate > 0 and default_rate != rate:
        rates.append(default_rate)
    chans = [c for c in dict.fromkeys((channels, 2, 1)) if c <= max_out]
    return [(r, c) for r in rates for c in chans]


def _fit(audio: FloatArray, rate: int, out_rate: int, out_channels: int) -> FloatArray:
    """Resample and remap ``(n, ch)`` audio to what the stream was opened with."""
    if out_rate != rate:
        from core.audio.io import resample

        audio = resample(audio, rate, out_rate)
    ch = audio.shape[1]
    if ch != out_channels:
        mono = audio.mean(axis=1, keepdims=True, dtype=np.float32) if ch > 1 else audio
        audio = np.repeat(mono, out_channels, axis=1) if out_channels > 1 else mono
    return np.ascontiguousarray(audio, dtype=np.float32)


def _as_frames(audio: npt.NDArray[Any]) -> FloatArray:
    """A private float32 ``(n, ch)`` copy of ``audio``, finite and clipped to [-1, 1]."""
    a = np.array(audio, dtype=np.float32, copy=True)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2 or a.shape[1] < 1:
        raise ValueError(f"audio must have shape (n,) or (n, channels), got {audio.shape}")
    np.nan_to_num(a, copy=False, nan=0.0, posinf=1.0, neginf=-1.0)
    np.clip(a, -1.0, 1.0, out=a)
    return a


# ----------------------------------------------------------------------- Player


class Player:
    """One output stream at a time; thread-safe; non-blocking.

    ``device`` is a PortAudio device index or a name substring (as ``python -m
    sounddevice`` lists them); ``None`` means ``$PODFORGE_AUDIO_DEVICE`` if set (read
    now), else the system's default output. Construction never fails, even without
    PortAudio or a sound card: :meth:`play` raises :class:`PlaybackError` then.

    ``position_sec`` and ``seek`` count the frames handed to the device by the stream
    callback, which lead what is heard by the output latency (about 0.1 s; more when
    the audio is forwarded over the network).
    """

    def __init__(self, device: int | str | None = None) -> None:
        self._device: Device = device if device is not None else _env_device()
        # _control serialises play/stop/close (PortAudio opens and closes streams one at
        # a time); _lock guards the state shared with the audio thread. _control is never
        # held while waiting for an audio thread that could want it.
        self._control = threading.RLock()
        self._lock = threading.Lock()
        self._stream: Any = None  # the sd.OutputStream while playing
        self._buffer: FloatArray = np.zeros((0, 1), np.float32)
        self._rate = 0  # the stream's (= buffer's) sample rate
        self._frame = 0  # next frame the callback copies
        self._generation = 0  # bumped by every play/stop/end; stale callbacks compare it
        self._playing = False
        self._duration = 0.0
        self._on_finished: Callable[[], None] | None = None
        self._closed = False

    # -- properties

    @property
    def device(self) -> int | str | None:
        """The device this player opens (``None``: the system default output)."""
        return self._device

    @property
    def playing(self) -> bool:
        """True from :meth:`play` until the audio ends or is stopped."""
        with self._lock:
            return self._playing

    @property
    def position_sec(self) -> float:
        """Seconds into the audio being played (0.0 when idle)."""
        with self._lock:
            if not self._playing or self._rate <= 0:
                return 0.0
            return self._frame / self._rate

    @property
    def duration_sec(self) -> float:
        """Length of the audio last given to :meth:`play` (0.0 before any)."""
        with self._lock:
            return self._duration

    # -- control

    def play(
        self,
        audio: npt.NDArray[Any],
        sample_rate: int,
        *,
        start_sec: float = 0.0,
        on_finished: Callable[[], None] | None = None,
    ) -> None:
        """Stop what is playing and start ``audio`` (``(n,)`` or ``(n, ch)``) from ``start_sec``.

        Returns as soon as the stream runs (opening the device takes milliseconds;
        resampling a long mix, if needed, a little more). The audio is copied. It is
        played at ``sample_rate`` if the device opens at that rate, else resampled
        (soxr) to the device's default rate; channels are kept, or mixed to what the
        device has. ``on_finished`` is called from a playback thread when the audio ends
        by itself (see the module docstring). Raises :class:`PlaybackError` when
        nothing can be played, ``ValueError`` for a bad shape or rate, ``RuntimeError``
        after :meth:`close`.
        """
        if sample_rate <= 0:
            raise ValueError(f"sample_rate must be positive, got {sample_rate}")
        rate = int(sample_rate)
        frames = _as_frames(audio)
        with self._control:
            if self._closed:
                raise RuntimeError("Player is closed")
            self.stop()
            sd = _sounddevice()
            info = _output_info(sd, self._device)
            with self._lock:
                self._generation += 1
                generation = self._generation
            stream, out_rate, out_channels = self._open(sd, info, rate, frames.shape[1], generation)
            try:
                frames = _fit(frames, rate, out_rate, out_channels)
                duration = len(frames) / out_rate
                with self._lock:
                    self._buffer = frames
                    self._rate = out_rate
                    self._frame = round(min(max(float(start_sec), 0.0), duration) * out_rate)
                    self._duration = duration
                    self._on_finished = on_finished
                    self._playing = True
                    self._stream = stream
                with _PORTAUDIO_LOCK:
                    stream.start()
            except BaseException as exc:
                with self._lock:
                    self._generation += 1
                    self._playing = False
                    self._stream = None
                _close_stream(stream)
                if isinstance(exc, sd.PortAudioError):
                    raise _device_error(sd, self._device, exc) from exc
                raise

    def _open(
        self, sd: ModuleType, info: dict[str, Any], rate: int, channels: int, generation: int
    ) -> tuple[Any, int, int]:
        """Open (not start) an output stream: ``(stream, sample_rate, channels)``."""
        latency = max(float(info.get("default_high_output_latency") or 0.0), _MIN_LATENCY)
        last: BaseException | None = None
        for out_rate, out_channels in _candidates(info, rate, channels):
            try:
                with _PORTAUDIO_LOCK:
                    stream = sd.OutputStream(
                        samplerate=out_rate,
                        channels=out_channels,
                        dtype="float32",
                        device=self._device,
                        latency=latency,
                        callback=self._make_callback(sd, generation),
                        finished_callback=self._make_finished(generation),
                    )
            except (ValueError, sd.PortAudioError) as exc:
                last = exc
                continue
            _register(stream, self)
            return stream, out_rate, out_channels
        assert last is not None  # nosec B101  # narrowing: every attempt above failed
        raise _device_error(sd, self._device, last) from last

    def play_file(
        self,
        path: Path | str,
        *,
        start_sec: float = 0.0,
        on_finished: Callable[[], None] | None = None,
    ) -> None:
        """Decode ``path`` with :func:`core.audio.io.read` (all channels) and :meth:`play` it.

        Decoding happens on the calling thread (use a worker for long files); a bad
        file raises :class:`~core.errors.AudioError`.
        """
        from core.audio.io import read

        audio, rate = read(path, mono=False)
        self.play(audio, rate, start_sec=start_sec, on_finished=on_finished)

    def stop(self) -> None:
        """Stop at once (buffered audio is dropped). ``on_finished`` is not called."""
        with self._control:
            with self._lock:
                self._generation += 1
                self._playing = False
                self._frame = 0
                stream, self._stream = self._stream, None
            if stream is not None:
                # Outside _lock: closing waits for the callback, which takes _lock.
                _close_stream(stream)

    def seek(self, delta_sec: float) -> None:
        """Move the play position by ``delta_sec``, clamped to ``[0, duration]``.

        Works while playing; seeking to the end finishes the audio. Does nothing when idle.
        """
        with self._lock:
            if not self._playing:
                return
            target = self._frame + round(float(delta_sec) * self._rate)
            self._frame = min(max(target, 0), len(self._buffer))

    def close(self) -> None:
        """Stop and release the device; the player cannot be used afterwards."""
        with self._control:
            self.stop()
            self._closed = True
            with self._lock:
                self._buffer = np.zeros((0, 1), np.float32)

    def __enter__(self) -> Player:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- audio thread

    def _make_callback(self, sd: ModuleType, generation: int) -> Callable[..., None]:
        callback_stop = sd.CallbackStop

        def callback(outdata: FloatArray, frames: int, _time: Any, _status: Any) -> None:
            with self._lock:
                if self._generation != generation:
                    outdata.fill(0)
                    raise callback_stop
                start = self._frame
                chunk = self._buffer[start : start + frames]
                n = len(chunk)
                outdata[:n] = chunk
                self._frame = start + n
                done = self._frame >= len(self._buffer)
            if n < frames:
                outdata[n:] = 0
            if done:
                raise callback_stop  # PortAudio plays what is buffered, then finishes

        return callback

    def _make_finished(self, generation: int) -> Callable[[], None]:
        def finished() -> None:  # PortAudio's thread, once the stream has stopped
            with self._lock:
                if self._generation != generation:
                    return  # stopped or replaced by the caller
                self._generation += 1
                ended = self._generation
                self._playing = False
                self._frame = 0
                stream, self._stream = self._stream, None
                on_finished = self._on_finished
            # A stream cannot be closed from its own thread, and user code must not run
            # on it (it would block PortAudio): close and notify from a helper thread
            # (non-daemon, so the device is released before PortAudio terminates).
            # RuntimeError: the interpreter is shutting down; PortAudio cleans up.
            with contextlib.suppress(RuntimeError):
                threading.Thread(
                    target=self._after_end,
                    args=(stream, ended, on_finished),
                    name="podforge-playback-end",
                ).start()

        return finished

    def _after_end(self, stream: Any, ended: int, on_finished: Callable[[], None] | None) -> None:
        if stream is not None:
            _close_stream(stream)
        with self._lock:
            superseded = self._generation != ended  # play()/stop() came in meanwhile
        if on_finished is not None and not superseded:
            try:
                on_finished()
            except Exception:
                log.exception("on_finished raised")


# --------------------------------------------------------------------- helpers


def check_output(device: int | str | None = None) -> str | None:
    """``None`` if audio can be played on ``device``, else the one-line reason.

    ``device`` defaults like :class:`Player`'s (``$PODFORGE_AUDIO_DEVICE``, then the
    system default). Imports sounddevice (which initialises PortAudio) and asks the
    device whether it takes float32 at its default rate; it plays nothing.
    """
    dev = device if device is not None else _env_device()
    try:
        sd = _sounddevice()
        info = _output_info(sd, dev)
        rate = round(float(info.get("default_samplerate") or 48000))
        last: BaseException | None = None
        for r, c in _candidates(info, rate, 1):
            try:
                sd.check_output_settings(device=dev, channels=c, dtype="float32", samplerate=r)
            except (ValueError, sd.PortAudioError) as exc:
                last = exc
                continue
            return None
        assert last is not None  # nosec B101  # narrowing: every attempt above failed
        raise _device_error(sd, dev, last) from last
    except PlaybackError as exc:
        return str(exc)


def list_output_devices() -> list[tuple[int, str]]:
    """``(index, name)`` of every device with output channels (empty if none).

    Raises :class:`PlaybackError` when the PortAudio library is missing.
    """
    sd = _sounddevice()
    try:
        devices = sd.query_devices()
    except sd.PortAudioError as exc:
        raise _device_error(sd, None, exc) from exc
    return [(int(d["index"]), str(d["name"])) for d in devices if d["max_output_channels"] > 0]
