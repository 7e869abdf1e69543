"""Audio I/O for the whole product: probe, stream, read, resample and write audio.

Samples are ``float32`` in ``[-1, 1]``, mono ``(n,)`` or ``(n, channels)``; downmixing is the
plain mean; resampling is soxr "HQ", streamed so that blocks equal the whole-file result.
libsndfile is tried first, PyAV (imported lazily) for MP4-family files and as the fallback.
Damaged files decode what is there; every failure a user can cause is a one-line
:class:`~core.errors.AudioError` naming the file, never a raw library traceback.

Details: docs/AUDIO.md, "Reading and writing"."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import soundfile as sf
import soxr

from core.atomic import atomic_path
from core.audio.types import FloatArray
from core.errors import AudioError, at, one_line

if TYPE_CHECKING:
    import av.audio.stream
    import av.container

__all__ = [
    "SUPPORTED_EXTENSIONS",
    "AudioInfo",
    "downmix",
    "iter_blocks",
    "probe",
    "read",
    "resample",
    "write_wav",
]

log = logging.getLogger(__name__)


#: Extensions podforge accepts as audio input (lower case, with the dot).
SUPPORTED_EXTENSIONS: frozenset[str] = frozenset(
    {
        ".wav",
        ".flac",
        ".mp3",
        ".ogg",
        ".oga",
        ".opus",
        ".m4a",
        ".aac",
        ".aif",
        ".aiff",
        ".mp4",
        ".webm",
    }
)

#: Containers libsndfile cannot read; these go straight to PyAV.
_PYAV_ONLY: frozenset[str] = frozenset({".m4a", ".aac", ".mp4", ".webm"})

_RESAMPLE_QUALITY = "HQ"

#: Frames per write call in :func:`write_wav` (bounds the temporary conversion copy).
_WRITE_CHUNK = 1 << 20

#: FFmpeg decoder names mapped to soundfile-style subtype names.
_CODEC_SUBTYPES: dict[str, str] = {
    "mp3": "MPEG_LAYER_III",
    "mp3float": "MPEG_LAYER_III",
    "mp2": "MPEG_LAYER_II",
    "mp2float": "MPEG_LAYER_II",
    "vorbis": "VORBIS",
    "libvorbis": "VORBIS",
    "opus": "OPUS",
    "libopus": "OPUS",
    "aac": "AAC",
    "aac_fixed": "AAC",
    "alac": "ALAC",
    "flac": "FLAC",
    "pcm_u8": "PCM_U8",
    "pcm_s16le": "PCM_16",
    "pcm_s16be": "PCM_16",
    "pcm_s24le": "PCM_24",
    "pcm_s24be": "PCM_24",
    "pcm_s32le": "PCM_32",
    "pcm_s32be": "PCM_32",
    "pcm_f32le": "FLOAT",
    "pcm_f32be": "FLOAT",
    "pcm_f64le": "DOUBLE",
    "pcm_f64be": "DOUBLE",
}

_PYAV_FORMAT_BY_EXT: dict[str, str] = {
    ".m4a": "M4A",
    ".aac": "AAC",
    ".mp4": "MP4",
    ".webm": "WEBM",
}


@dataclass(frozen=True)
class AudioInfo:
    """What :func:`probe` learns about an audio file without decoding it all.

    ``frames`` comes from the file's headers. It is exact for PCM WAV/AIFF and FLAC
    (libsndfile clamps a truncated WAV to the data actually present), but an
    estimate for compressed streams: MP3 lengths come from the Xing/LAME header or
    the file size, and for files read through PyAV (``backend == "pyav"``) from the
    container's duration, which may differ from the decoded length by a codec frame
    or so (e.g. AAC padding). A truncated FLAC/MP3 still reports the header length.
    ``duration_sec`` is ``frames / sample_rate``.
    """

    path: Path
    sample_rate: int
    channels: int
    frames: int
    duration_sec: float
    format: str
    subtype: str | None
    backend: str


# --------------------------------------------------------------------------- probe


def probe(path: Path | str) -> AudioInfo:
    """Describe ``path`` (rate, channels, length, format) from its headers.

    Raises :class:`AudioError` for a missing, empty, unreadable, unsupported or
    unrecognisable file, one without an audio stream, or one that holds no samples.
    Samples are not decoded, so non-finite values are only caught by
    :func:`iter_blocks` / :func:`read`.
    """
    p = _check_path(path)
    info: AudioInfo | None = None
    if p.suffix.lower() not in _PYAV_ONLY:
        info = _probe_soundfile(p)
    if info is None:
        info = _probe_pyav(p)
    if info.frames <= 0:
        raise AudioError(at(p, "contains no audio samples; record or export it again"))
    return info


def _check_path(path: Path | str) -> Path:
    p = Path(path)
    if not p.exists():
        raise AudioError(at(p, "audio file not found; check the path"))
    if p.is_dir():
        raise AudioError(at(p, "is a folder, not an audio file; choose a file inside it"))
    ext = p.suffix.lower()
    if ext not in SUPPORTED_EXTENSIONS:
        shown = f"'{ext}'" if ext else "a file without an extension"
        supported = ", ".join(sorted(SUPPORTED_EXTENSIONS))
        raise AudioError(
            at(p, f"unsupported audio format {shown}; convert it to WAV or FLAC ({supported})")
        )
    try:
        with open(p, "rb") as fh:
            head = fh.read(1)
    except OSError as exc:
        raise AudioError(
            at(p, f"cannot be opened ({one_line(exc)}); check its permissions")
        ) from exc
    if not head:
        raise AudioError(at(p, "file is empty (0 bytes); record or export it again"))
    return p


def _probe_soundfile(p: Path) -> AudioInfo | None:
    """Header info via libsndfile, or ``None`` when libsndfile does not know the file."""
    try:
        with sf.SoundFile(str(p)) as f:
            return AudioInfo(
                path=p,
                sample_rate=int(f.samplerate),
                channels=int(f.channels),
                frames=int(f.frames),
                duration_sec=float(f.frames) / float(f.samplerate),
                format=str(f.format),
                subtype=str(f.subtype) if f.subtype else None,
                backend="soundfile",
            )
    except (sf.SoundFileError, RuntimeError, TypeError, ValueError) as exc:
        log.debug("libsndfile refused %s (%s); trying PyAV", p, one_line(exc))
        return None


def _probe_pyav(p: Path) -> AudioInfo:
    import av

    with _open_container(p) as container:
        stream = _audio_stream(p, container)
        rate = int(stream.rate or stream.codec_context.sample_rate or 0)
        channels = int(stream.codec_context.layout.nb_channels)
        if rate <= 0 or channels <= 0:
            raise AudioError(at(p, "audio stream has no sample rate or channels; re-export it"))
        seconds: float | None = None
        if stream.duration is not None and stream.time_base is not None:
            seconds = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            seconds = float(container.duration) / float(av.time_base)
        frames = round(seconds * rate) if seconds is not None and seconds > 0 else 0
        fmt = _PYAV_FORMAT_BY_EXT.get(p.suffix.lower()) or container.format.name.split(",")[0]
        codec = stream.codec_context.name
    if frames <= 0:
        # No usable duration in the headers (e.g. some raw streams): count by decoding,
        # block by block, so memory stays bounded.
        frames = sum(len(b) for b in _pyav_frames(p, 1 << 16))
    subtype = _CODEC_SUBTYPES.get(codec, codec.upper() if codec else None)
    return AudioInfo(
        path=p,
        sample_rate=rate,
        channels=channels,
        frames=frames,
        duration_sec=frames / rate,
        format=fmt.upper(),
        subtype=subtype,
        backend="pyav",
    )


# ----------------------------------------------------------------------- decoding


def iter_blocks(
    path: Path | str,
    *,
    block_sec: float = 30.0,
    target_rate: int | None = None,
    mono: bool = True,
) -> Iterator[FloatArray]:
    """Stream ``path`` as float32 blocks of about ``block_sec`` seconds.

    Blocks have shape ``(n,)`` when ``mono`` (mean of the channels) else
    ``(n, channels)``. With ``target_rate`` set and different from the file's rate,
    blocks are resampled by one streaming soxr HQ resampler that is flushed at the
    end, so the concatenation equals resampling the whole file at once and has
    ``round(frames * target_rate / rate)`` samples. Block lengths after resampling
    vary slightly. Memory is bounded by the block size whatever the file's length.

    Raises :class:`AudioError` for unusable files (see :func:`probe`), for samples
    that are NaN or Inf, and for a file that decodes to no samples at all.
    """
    if not block_sec > 0:
        raise ValueError(f"block_sec must be positive, got {block_sec!r}")
    if target_rate is not None and int(target_rate) <= 0:
        raise ValueError(f"target_rate must be a positive integer, got {target_rate!r}")
    info = probe(path)
    p = info.path
    rate = info.sample_rate
    block_frames = max(1, round(block_sec * rate))
    stream: Any = None  # soxr.ResampleStream, created on the first block
    stream_nch = 0
    resampling = target_rate is not None and int(target_rate) != rate
    position = 0
    for chunk in _native_frames(info, block_frames):
        if not np.isfinite(chunk).all():
            bad = int(np.argmin(np.isfinite(chunk).all(axis=1)))
            when = (position + bad) / rate
            raise AudioError(
                at(p, f"samples are not finite (NaN or Inf) at {when:.2f} s; re-export the audio")
            )
        position += len(chunk)
        block = downmix(chunk) if mono else chunk
        if resampling:
            if stream is None:
                stream_nch = 1 if block.ndim == 1 else block.shape[1]
                stream = soxr.ResampleStream(
                    rate,
                    int(target_rate or rate),
                    stream_nch,
                    dtype="float32",
                    quality=_RESAMPLE_QUALITY,
                )
            block = np.asarray(stream.resample_chunk(np.ascontiguousarray(block)), np.float32)
        if len(block):
            yield block
    if position == 0:
        raise AudioError(at(p, "contains no audio samples; record or export it again"))
    if stream is not None:
        empty = np.zeros((0,) if mono else (0, stream_nch), np.float32)
        tail = np.asarray(stream.resample_chunk(empty, last=True), np.float32)
        if len(tail):
            yield tail


def read(
    path: Path | str, *, target_rate: int | None = None, mono: bool = True
) -> tuple[FloatArray, int]:
    """Decode the whole of ``path`` (for short files): ``(audio, sample_rate)``.

    Same conventions and errors as :func:`iter_blocks`; ``sample_rate`` is
    ``target_rate`` when given, else the file's own rate.
    """
    info = probe(path)
    blocks = list(iter_blocks(info.path, target_rate=target_rate, mono=mono))
    audio = np.concatenate(blocks) if len(blocks) > 1 else blocks[0]
    return audio, int(target_rate) if target_rate is not None else info.sample_rate


def _native_frames(info: AudioInfo, block_frames: int) -> Iterator[FloatArray]:
    """``(n, channels)`` float32 chunks at the file's own rate, at most ``block_frames`` each."""
    if info.backend == "soundfile":
        yield from _soundfile_frames(info.path, block_frames)
    else:
        yield from _pyav_frames(info.path, block_frames)


def _soundfile_frames(p: Path, block_frames: int) -> Iterator[FloatArray]:
    emitted = 0
    try:
        f = sf.SoundFile(str(p))
    except (sf.SoundFileError, RuntimeError, TypeError, ValueError) as exc:
        raise AudioError(at(p, f"cannot be decoded ({one_line(exc)}); re-export it")) from exc
    with f:
        while True:
            try:
                chunk = f.read(block_frames, dtype="float32", always_2d=True)
            except (sf.SoundFileError, RuntimeError) as exc:
                # libsndfile gives up on a damaged or truncated stream (e.g. "flac decoder
                # lost sync") and drops the whole failing read; let FFmpeg decode the rest,
                # from the first frame not yet delivered, keeping what decodes.
                log.warning(
                    "%s",
                    at(
                        p,
                        f"decoding failed after {emitted / f.samplerate:.2f} s "
                        f"({one_line(exc)}); reading the rest with FFmpeg",
                    ),
                )
                yield from _pyav_frames(p, block_frames, skip=emitted, after_error=emitted > 0)
                return
            if not len(chunk):
                return
            emitted += len(chunk)
            yield chunk


def _pyav_frames(
    p: Path, block_frames: int, *, skip: int = 0, after_error: bool = False
) -> Iterator[FloatArray]:
    """Decode with PyAV into ``(n, channels)`` float32 chunks of ``block_frames``.

    The first ``skip`` frames are dropped (used to continue after libsndfile failed).
    Undecodable packets are skipped with a warning; a demuxer error ends the stream
    (a truncated file) with a warning, unless nothing was decoded, which raises.
    """
    import av

    pending: list[FloatArray] = []
    pending_frames = 0
    emitted = 0
    bad_packets = 0
    to_skip = skip

    try:
        container_cm = _open_container(p)
    except AudioError:
        if after_error:
            log.warning("%s", at(p, "FFmpeg cannot open it either; keeping what was decoded"))
            return
        raise
    with container_cm as container:
        stream = _audio_stream(p, container)
        converter = av.AudioResampler(format="flt")  # packed float32, native layout and rate

        def convert(frames: list[av.AudioFrame]) -> Iterator[FloatArray]:
            for out in frames:
                nch = out.layout.nb_channels
                yield np.asarray(out.to_ndarray(), dtype=np.float32).reshape(-1, nch)

        def decoded() -> Iterator[FloatArray]:
            nonlocal bad_packets
            produced = 0
            last_error = ""
            try:
                for packet in container.demux(stream):
                    try:
                        frames = packet.decode()
                    except av.error.FFmpegError as exc:
                        bad_packets += 1
                        last_error = one_line(exc)
                        continue
                    for frame in frames:
                        for arr in convert(converter.resample(frame)):
                            produced += len(arr)
                            yield arr
            except (av.error.FFmpegError, OSError) as exc:
                # The demuxer hit the end of a truncated file or garbage.
                if produced == 0 and not after_error:
                    raise AudioError(
                        at(p, f"audio data cannot be decoded ({one_line(exc)}); re-export it")
                    ) from exc
                log.warning(
                    "%s", at(p, f"stream ends early ({one_line(exc)}); keeping what decoded")
                )
            if produced == 0 and bad_packets and not after_error:
                raise AudioError(
                    at(p, f"audio data cannot be decoded ({last_error}); re-export it")
                )
            yield from convert(converter.resample(None))

        for arr in decoded():
            if to_skip:
                if len(arr) <= to_skip:
                    to_skip -= len(arr)
                    continue
                arr = arr[to_skip:]
                to_skip = 0
            pending.append(arr)
            pending_frames += len(arr)
            while pending_frames >= block_frames:
                joined = np.concatenate(pending) if len(pending) > 1 else pending[0]
                out, rest = joined[:block_frames], joined[block_frames:]
                pending = [rest] if len(rest) else []
                pending_frames = len(rest)
                emitted += len(out)
                yield out
        if pending_frames:
            emitted += pending_frames
            yield np.concatenate(pending) if len(pending) > 1 else pending[0]
    if bad_packets:
        log.warning(
            "%s", at(p, f"skipped {bad_packets} undecodable packet(s); the file is damaged")
        )


def _open_container(p: Path) -> av.container.InputContainer:
    import av

    try:
        return av.open(str(p), mode="r")
    except (av.error.FFmpegError, OSError, EOFError) as exc:
        raise AudioError(
            at(
                p,
                "not a readable audio file (unrecognised or damaged data: "
                f"{one_line(exc)}); convert it to WAV or FLAC",
            )
        ) from exc


def _audio_stream(p: Path, container: av.container.InputContainer) -> av.audio.stream.AudioStream:
    if not container.streams.audio:
        raise AudioError(at(p, "contains no audio stream; export its audio track to WAV or FLAC"))
    return container.streams.audio[0]


# ---------------------------------------------------------------- array helpers


def downmix(audio: npt.NDArray[Any]) -> FloatArray:
    """Mean of the channels as float32: ``(n, ch) -> (n,)``; ``(n,)`` passes through."""
    a = np.asarray(audio)
    if a.ndim == 1:
        return a.astype(np.float32, copy=False)
    if a.ndim != 2:
        raise ValueError(f"audio must have shape (n,) or (n, channels), got {a.shape}")
    if a.shape[1] == 1:
        return np.ascontiguousarray(a[:, 0], dtype=np.float32)
    # Column by column: several times faster than a strided mean(axis=1) on (n, ch).
    out = np.array(a[:, 0], dtype=np.float32)
    for c in range(1, a.shape[1]):
        out += a[:, c]
    out *= np.float32(1.0 / a.shape[1])
    return out


def resample(audio: npt.NDArray[Any], from_rate: int, to_rate: int) -> FloatArray:
    """Resample mono ``(n,)`` or ``(n, ch)`` audio with soxr HQ; returns float32."""
    if from_rate <= 0 or to_rate <= 0:
        raise ValueError(f"sample rates must be positive, got {from_rate} -> {to_rate}")
    a = np.asarray(audio, dtype=np.float32)
    if a.ndim not in (1, 2):
        raise ValueError(f"audio must have shape (n,) or (n, channels), got {a.shape}")
    if from_rate == to_rate:
        return a
    if len(a) == 0:
        return np.zeros((0, *a.shape[1:]), np.float32)
    out = soxr.resample(np.ascontiguousarray(a), from_rate, to_rate, quality=_RESAMPLE_QUALITY)
    return np.asarray(out, dtype=np.float32)


# ------------------------------------------------------------------------ writing


def write_wav(
    path: Path | str, audio: npt.NDArray[Any], sample_rate: int, *, subtype: str = "PCM_16"
) -> None:
    """Write ``audio`` (``(n,)`` or ``(n, ch)``, float in [-1, 1]) to a WAV file atomically.

    The file appears complete or not at all (temporary file + rename); parent
    folders are created. Float audio containing NaN or Inf is refused with
    :class:`AudioError`; for integer subtypes float samples are clipped to
    ``[-1, 1]`` before conversion. ``subtype`` is any libsndfile WAV subtype
    (``PCM_16``, ``PCM_24``, ``PCM_32``, ``PCM_U8``, ``FLOAT``, ``DOUBLE``).
    """
    p = Path(path)
    a = np.asarray(audio)
    if a.ndim not in (1, 2) or (a.ndim == 2 and a.shape[1] < 1):
        raise ValueError(f"audio must have shape (n,) or (n, channels), got {a.shape}")
    if a.dtype.kind != "f" and a.dtype not in (np.int16, np.int32):
        raise ValueError(f"audio must be float, int16 or int32, got dtype {a.dtype}")
    if int(sample_rate) <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate!r}")
    subtype = subtype.upper()
    if not sf.check_format("WAV", subtype):
        raise ValueError(f"WAV cannot hold subtype {subtype!r}")
    is_float = a.dtype.kind == "f"
    if is_float and not np.isfinite(a).all():
        raise AudioError(
            at(p, "refusing to write: the samples are not finite (NaN or Inf); fix the audio first")
        )
    clip = is_float and subtype not in ("FLOAT", "DOUBLE")
    if is_float and a.dtype not in (np.float32, np.float64):
        a = a.astype(np.float32)
    channels = 1 if a.ndim == 1 else a.shape[1]
    try:
        with (
            atomic_path(p) as tmp,
            sf.SoundFile(
                str(tmp),
                "w",
                samplerate=int(sample_rate),
                channels=channels,
                format="WAV",
                subtype=subtype,
            ) as f,
        ):
            for start in range(0, len(a), _WRITE_CHUNK):
                part = a[start : start + _WRITE_CHUNK]
                if clip:
                    part = np.clip(part, -1.0, 1.0)
                f.write(part)
    except (sf.SoundFileError, RuntimeError, OSError) as exc:
        raise AudioError(
            at(p, f"cannot write WAV ({one_line(exc)}); check the folder and free space")
        ) from exc
