"""MP3 encoding: constant-bitrate MP3 through libsndfile and LAME, in memory or streamed.

:func:`encode_mp3` encodes a whole signal; :class:`Mp3Writer` writes the same bytes
from audio fed a block at a time (bounded memory).

MP3: libsndfile chooses LAME's bitrate from ``compression_level`` (``bitrate =
max - level * (max - min)`` for the MPEG version the sample rate implies; left unset it
gives LAME's ~32-48 kbps), so the level is computed from the bitrate asked for
(128 kbps CBR by default; at 24 kHz that is MPEG-2 layer III, whose rates go up to
160). libsndfile offers no other LAME setting (its algorithm quality stays at LAME's
default). LAME runs on one core, so audio longer than 3 minutes is encoded in fixed
3-minute chunks on
as many threads as the process may use, and the chunks' frames are joined into one
stream (see :func:`encode_mp3` and the notes above ``_MPEG1_BITRATES``). The result
decodes like a single encode (the same coding error, none added at the joins), is
gapless (its LAME/Info tag holds the joined stream's frame count, seek table, delay,
padding and both CRCs) and depends only on the audio: LAME is deterministic and the
chunks are fixed by the length, not by the thread count, so exports are byte-identical
run to run (for a given build of the encoder).
"""

from __future__ import annotations

import contextlib
import functools
import io
import logging
import math
import shutil
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from core.audio.parallel import threads
from core.audio.types import FloatArray
from core.errors import AudioError

__all__ = [
    "Mp3Unjoinable",
    "Mp3Writer",
    "encode_mp3",
]

log = logging.getLogger(__name__)


# MPEG audio layer III facts used here (ISO 11172-3, 13818-3): a frame is a 4-byte
# header, a 16-bit CRC if the protection bit is 0, the side information (17/32 bytes
# for MPEG-1 mono/stereo, 9/17 for MPEG-2 and 2.5) and main data. A frame's audio data
# starts ``main_data_begin`` bytes *before* its own main data, in the previous frames'
# main data areas (the bit reservoir). LAME writes a first, silent "Info" frame that
# holds the frame count, byte count, seek table, encoder delay and padding (gapless
# playback) and two CRC-16s (polynomial 0x8005, reflected, initial 0).
#
# Chunked encoding: chunk k covers frames [b_k, b_k+1) of the whole stream. Its encoder
# starts 16 frames early (the input is cut on a frame boundary, so its frames line up
# with the whole stream's) and runs 56 frames past the end, so that around a join both
# encoders are coding the same audio with warmed-up state. The join is made at the
# first frame J at or after b_k+1 where (1) the next chunk's frame J takes no more
# reservoir bytes than this chunk's frame J does (those bytes are frame J's own, so
# they can be overwritten with the next chunk's), and (2) the block types meet (the
# window half that ends frame J-1 in this chunk matches the one that starts frame J in
# the next). Frame J's reservoir bytes are copied into the end of this chunk's frames
# and the rest of the next chunk follows. If no join is found in the window, the
# whole stream is encoded in one piece.


_MPEG1_BITRATES: Final = (32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320)
_MPEG2_BITRATES: Final = (8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160)
_MP3_RATES: Final = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)
_BITRATE_INDEX: Final = {
    3: (0, *_MPEG1_BITRATES),  # MPEG-1
    2: (0, *_MPEG2_BITRATES),  # MPEG-2
    0: (0, *_MPEG2_BITRATES),  # MPEG-2.5
}
_RATE_INDEX: Final = (44100, 48000, 32000)
_MP3_CHUNK_SEC: Final = 180.0
_MP3_PREROLL: Final = 16
_MP3_WINDOW: Final = 48
_MP3_TAIL: Final = 8
_LAME_TAG_SIZE: Final = 36


def encode_mp3(
    audio: npt.NDArray[Any],
    sample_rate: int,
    *,
    bitrate_kbps: int = 128,
    title: str | None = None,
) -> bytes:
    """Encode mono or stereo float audio as a constant-bitrate MP3 (LAME via libsndfile).

    ``sample_rate`` must be an MP3 rate (8 to 48 kHz) and ``bitrate_kbps`` one of the
    rates its MPEG version allows (MPEG-1, 32-48 kHz: 32..320; MPEG-2/2.5, 8-24 kHz:
    8..160, libsndfile allows at most 64 below 16 kHz). Audio longer than 3 minutes is
    encoded in 3-minute chunks on several threads and joined (see the module
    docstring); the result depends only on the input. ``title`` adds an ID3v2.4 tag.
    """
    a = np.asarray(audio, dtype=np.float32)
    if a.ndim == 2 and a.shape[1] == 1:
        a = a[:, 0]
    if a.ndim not in (1, 2) or (a.ndim == 2 and a.shape[1] != 2):
        raise ValueError(f"MP3 audio must be (n,) or (n, 2), got shape {a.shape}")
    if sample_rate not in _MP3_RATES:
        raise ValueError(f"MP3 cannot hold {sample_rate} Hz; use one of {list(_MP3_RATES)}")
    level = _compression_level(sample_rate, bitrate_kbps)
    frame = 1152 if sample_rate >= 32000 else 576
    n = a.shape[0]
    chunks = max(1, math.ceil(n / (_MP3_CHUNK_SEC * sample_rate)))
    data: bytes | None = None
    if chunks > 1:
        data = _encode_chunked(a, sample_rate, level, frame, chunks)
        if data is None:
            log.warning("MP3: no clean join between chunks; encoding in one piece")
    if data is None:
        data = _lame(a, sample_rate, level)
    return (_id3(title) if title else b"") + data


def _compression_level(sample_rate: int, bitrate: int) -> float:
    """libsndfile's ``compression_level`` that makes LAME use ``bitrate`` kbps (CBR)."""
    allowed: tuple[int, ...]
    if sample_rate >= 32000:
        allowed, high, low = _MPEG1_BITRATES, 320.0, 32.0
    elif sample_rate >= 16000:
        allowed, high, low = _MPEG2_BITRATES, 160.0, 8.0
    else:
        allowed, high, low = _MPEG2_BITRATES[:8], 64.0, 8.0
    if bitrate not in allowed:
        raise ValueError(
            f"MP3 at {sample_rate} Hz cannot be {bitrate!r} kbps; use one of {list(allowed)}"
        )
    # libsndfile computes int(high - level * (high - low)): aim half a kbps above.
    return min(1.0, max(0.0, (high - bitrate - 0.5) / (high - low)))


def _lame(audio: FloatArray, sample_rate: int, level: float) -> bytes:
    import soundfile as sf

    buffer = io.BytesIO()
    try:
        with sf.SoundFile(
            buffer,
            "w",
            samplerate=sample_rate,
            channels=1 if audio.ndim == 1 else 2,
            format="MP3",
            subtype="MPEG_LAYER_III",
            compression_level=level,
            bitrate_mode="CONSTANT",
        ) as f:
            f.write(audio)
    except (sf.SoundFileError, RuntimeError, TypeError) as exc:
        raise AudioError(f"cannot encode MP3 ({exc}); libsndfile needs MP3 support (1.1+)") from exc
    return buffer.getvalue()


@dataclass(frozen=True)
class _Frame:
    pos: int
    size: int
    head: int  # header + CRC + side information: main data starts here


@dataclass(frozen=True)
class _Side:
    reservoir: int  # main_data_begin
    first: tuple[int, ...]  # block type of the first granule, per channel
    last: tuple[int, ...]  # block type of the last granule, per channel


def _frames(data: bytes) -> list[_Frame]:
    """The MPEG frames of ``data`` (after any ID3v2 tag), up to the first non-frame."""
    pos = 0
    if data[:3] == b"ID3" and len(data) >= 10:
        pos = 10 + ((data[6] << 21) | (data[7] << 14) | (data[8] << 7) | data[9])
    frames: list[_Frame] = []
    end = len(data)
    while pos + 4 <= end:
        h = int.from_bytes(data[pos : pos + 4], "big")
        version = (h >> 19) & 3
        bitrate_index = (h >> 12) & 15
        rate_index = (h >> 10) & 3
        if (h >> 21) != 0x7FF or version == 1 or ((h >> 17) & 3) != 1:
            break
        if bitrate_index in (0, 15) or rate_index == 3:
            break
        mpeg1 = version == 3
        rate = _RATE_INDEX[rate_index] >> (0 if mpeg1 else 1 if version == 2 else 2)
        kbps = _BITRATE_INDEX[version][bitrate_index]
        size = (144000 if mpeg1 else 72000) * kbps // rate + ((h >> 9) & 1)
        channels = 1 if ((h >> 6) & 3) == 3 else 2
        head = 4 + (0 if (h >> 16) & 1 else 2) + _side_size(mpeg1, channels)
        if pos + size > end:
            break
        frames.append(_Frame(pos, size, head))
        pos += size
    return frames


def _side_size(mpeg1: bool, channels: int) -> int:
    if mpeg1:
        return 17 if channels == 1 else 32
    return 9 if channels == 1 else 17


def _side(data: bytes, frame: _Frame) -> _Side:
    """``main_data_begin`` and the granules' block types from a frame's side information."""
    h = int.from_bytes(data[frame.pos : frame.pos + 4], "big")
    mpeg1 = ((h >> 19) & 3) == 3
    channels = 1 if ((h >> 6) & 3) == 3 else 2
    size = _side_size(mpeg1, channels)
    bits = int.from_bytes(data[frame.pos + frame.head - size : frame.pos + frame.head], "big")
    total = size * 8
    read = 0

    def take(count: int) -> int:
        nonlocal read
        read += count
        return (bits >> (total - read)) & ((1 << count) - 1)

    reservoir = take(9 if mpeg1 else 8)
    take((5 if channels == 1 else 3) if mpeg1 else channels)  # private bits
    if mpeg1:
        take(4 * channels)  # scfsi
    granules: list[tuple[int, ...]] = []
    for _ in range(2 if mpeg1 else 1):
        types = []
        for _ in range(channels):
            take(12 + 9 + 8 + (4 if mpeg1 else 9))  # part2_3, big_values, gain, sf_compress
            if take(1):  # window switching
                types.append(take(2))
                take(1 + 10 + 9)  # mixed block, 2 table selects, 3 subblock gains
            else:
                types.append(0)
                take(15 + 4 + 3)  # 3 table selects, region counts
            take(3 if mpeg1 else 2)  # (preflag,) scalefac_scale, count1table
        granules.append(tuple(types))
    return _Side(reservoir, granules[0], granules[-1])


def _meets(before: tuple[int, ...], after: tuple[int, ...]) -> bool:
    """Whether a granule ending with ``before`` block types may precede ``after``'s."""
    # Types: 0 normal (long/long), 1 start (long/short), 2 short, 3 stop (short/long).
    return all((b in (0, 3)) == (a in (0, 1)) for b, a in zip(before, after, strict=True))


def _encode_chunked(
    audio: FloatArray, sample_rate: int, level: float, frame: int, chunks: int
) -> bytes | None:
    """Encode ``chunks`` pieces on threads and join their frames; None if no clean join."""
    n = audio.shape[0]
    total_frames = math.ceil(n / frame)
    bounds = [round(k * total_frames / chunks) for k in range(chunks + 1)]
    spans = []
    for k in range(chunks):
        first = 0 if k == 0 else (bounds[k] - _MP3_PREROLL) * frame
        last = n if k == chunks - 1 else (bounds[k + 1] + _MP3_WINDOW + _MP3_TAIL) * frame
        spans.append((max(0, first), min(n, last)))
    with ThreadPoolExecutor(max_workers=min(threads(), chunks)) as pool:
        encoded = list(pool.map(lambda s: _lame(audio[s[0] : s[1]], sample_rate, level), spans))
    parsed = [_frames(d) for d in encoded]
    # Frame g of the whole stream is frame g - offset of a chunk, + 1 for its Info frame.
    offsets = [s[0] // frame for s in spans]
    joins = []
    for k in range(chunks - 1):
        join = _find_join(encoded[k], parsed[k], offsets[k], encoded[k + 1], parsed[k + 1],
                          offsets[k + 1], bounds[k + 1])  # fmt: skip
        if join is None:
            return None
        joins.append(join)
    last_frames = offsets[-1] + len(parsed[-1]) - 1
    edges = [0, *joins, last_frames]

    info = parsed[0][0]
    out = bytearray(encoded[0][info.pos : info.pos + info.size])
    main_areas: list[tuple[int, int]] = []  # main data [start, end) of each output frame
    positions: list[int] = []  # where each output frame (after the Info frame) starts
    for k in range(chunks):
        data, frames, offset = encoded[k], parsed[k], offsets[k]
        first, last = edges[k] + 1 - offset, edges[k + 1] + 1 - offset
        if first < 1 or last > len(frames):
            return None
        if k > 0 and not _carry_reservoir(out, main_areas, data, frames, first):
            return None
        base = len(out) - frames[first].pos
        for f in frames[first:last]:
            positions.append(base + f.pos)
            main_areas.append((base + f.pos + f.head, base + f.pos + f.size))
        out += data[frames[first].pos : frames[last - 1].pos + frames[last - 1].size]
    return _retag(out, info.size, positions, n, frame)


def _find_join(
    data: bytes,
    frames: list[_Frame],
    offset: int,
    next_data: bytes,
    next_frames: list[_Frame],
    next_offset: int,
    bound: int,
) -> int | None:
    for join in range(bound, bound + _MP3_WINDOW):
        here = join + 1 - offset
        there = join + 1 - next_offset
        if here + 1 > len(frames) or there >= len(next_frames) or there < 2:
            return None
        ending = _side(data, frames[here - 1]).last
        mine = _side(data, frames[here]).reservoir
        theirs = _side(next_data, next_frames[there])
        if theirs.reservoir <= mine and _meets(ending, theirs.first):
            return join
    return None


def _carry_reservoir(
    out: bytearray,
    main_areas: list[tuple[int, int]],
    data: bytes,
    frames: list[_Frame],
    first: int,
) -> bool:
    """Copy the reservoir bytes ``frames[first]`` reads into the end of ``out``'s frames."""
    need = _side(data, frames[first]).reservoir
    if need == 0:
        return True
    carried = b""
    index = first - 1
    while len(carried) < need and index >= 1:
        f = frames[index]
        carried = data[f.pos + f.head : f.pos + f.size] + carried
        index -= 1
    if len(carried) < need:
        return False
    carried = carried[len(carried) - need :]
    left = need
    for start, end in reversed(main_areas):
        take = min(left, end - start)
        out[end - take : end] = carried[left - take : left]
        left -= take
        if left == 0:
            return True
    return False


def _retag(
    stream: bytearray, info_size: int, positions: list[int], samples: int, frame: int
) -> bytes | None:
    """Rewrite the Info frame (``stream[:info_size]``) for the joined stream.

    ``positions`` are where the stream's audio frames start.
    """
    music = _crc16(bytes(stream[info_size:]))
    info = _retagged_info(
        stream[:info_size], len(positions), len(stream), positions, samples, frame, music
    )
    if info is None:
        return None
    stream[:info_size] = info
    return bytes(stream)


def _retagged_info(
    info: bytearray,
    count: int,
    size: int,
    positions: Sequence[int],
    samples: int,
    frame: int,
    music_crc: int,
) -> bytearray | None:
    """The Info frame ``info`` rewritten for a stream of ``count`` frames and ``size`` bytes.

    ``positions`` are where the frames start (only the seek table's 99 are read);
    ``music_crc`` is the CRC-16 of everything after the Info frame.
    """
    info_size = len(info)
    tag_at = info.find(b"Info")
    if tag_at < 0:
        tag_at = info.find(b"Xing")
    if tag_at < 0:
        return None
    flags = int.from_bytes(info[tag_at + 4 : tag_at + 8], "big")
    if flags & 7 != 7:
        return None
    fields = tag_at + 8
    info[fields : fields + 4] = count.to_bytes(4, "big")
    info[fields + 4 : fields + 8] = size.to_bytes(4, "big")
    toc = fields + 8
    info[toc] = 0
    for i in range(1, 100):  # where i percent of the frames lie, in 1/256ths of the bytes
        info[toc + i] = min(255, 256 * positions[(i * count) // 100] // size)
    lame = toc + 100 + (4 if flags & 8 else 0)
    if info[lame : lame + 4] != b"LAME" or lame + _LAME_TAG_SIZE > info_size:
        return None
    delay = int.from_bytes(info[lame + 21 : lame + 24], "big") >> 12
    padding = count * frame - delay - samples
    if not 0 <= padding < 4096:
        return None
    info[lame + 21 : lame + 24] = ((delay << 12) | padding).to_bytes(3, "big")
    info[lame + 28 : lame + 32] = size.to_bytes(4, "big")
    info[lame + 32 : lame + 34] = music_crc.to_bytes(2, "big")
    tag_crc = _crc16(bytes(info[: lame + 34]))
    info[lame + 34 : lame + 36] = tag_crc.to_bytes(2, "big")
    return info


@functools.lru_cache(maxsize=1)
def _crc_table() -> npt.NDArray[np.uint16]:
    table = np.zeros(256, dtype=np.uint16)
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0xA001 if c & 1 else c >> 1
        table[i] = c
    return table


@functools.lru_cache(maxsize=4)
def _crc_shift(block: int) -> tuple[list[int], list[int]]:
    """Tables that advance a CRC register over ``block`` zero bytes (low, high byte)."""
    table = _crc_table()
    low = np.arange(256, dtype=np.uint16)
    high = (np.arange(256, dtype=np.uint32) << 8).astype(np.uint16)
    for _ in range(block):
        low = (low >> 8) ^ table[low & 0xFF]
        high = (high >> 8) ^ table[high & 0xFF]
    return [int(v) for v in low], [int(v) for v in high]


def _crc16(data: bytes, block: int = 2048) -> int:
    """CRC-16 (0x8005 reflected, initial 0: LAME's) of ``data``, vectorised over blocks.

    Leading zero bytes leave this CRC at 0, so the data is zero-padded in front to whole
    blocks; the blocks' CRCs are computed side by side and then chained (the CRC is
    linear: the running value is advanced over a block of zeros and the block's CRC
    added).
    """
    table = _crc_table()
    raw = np.frombuffer(data, dtype=np.uint8)
    count = -(-raw.size // block)
    padded = np.zeros(count * block, dtype=np.uint8)
    padded[padded.size - raw.size :] = raw
    rows = padded.reshape(count, block)
    crc = np.zeros(count, dtype=np.uint16)
    for j in range(block):
        crc = (crc >> 8) ^ table[(crc ^ rows[:, j]) & 0xFF]
    low, high = _crc_shift(block)
    value = 0
    for part in crc.tolist():
        value = low[value & 0xFF] ^ high[value >> 8] ^ part
    return value


def _id3(title: str) -> bytes:
    """An ID3v2.4 tag holding ``title`` (TIT2, UTF-8)."""
    text = b"\x03" + title.encode("utf-8")
    frame = b"TIT2" + _synchsafe(len(text)) + b"\x00\x00" + text
    return b"ID3\x04\x00\x00" + _synchsafe(len(frame)) + frame


def _synchsafe(value: int) -> bytes:
    return bytes(((value >> shift) & 0x7F) for shift in (21, 14, 7, 0))


class _Crc16Stream:
    """:func:`_crc16` of bytes fed a piece at a time (the same value for the same bytes)."""

    def __init__(self, block: int = 2048) -> None:
        self.block = block
        self.value = 0
        self.pending = b""

    def feed(self, data: bytes) -> None:
        data = self.pending + data
        whole = len(data) - len(data) % self.block
        self.pending = data[whole:]
        if not whole:
            return
        table = _crc_table()
        rows = np.frombuffer(data[:whole], dtype=np.uint8).reshape(-1, self.block)
        crc = np.zeros(rows.shape[0], dtype=np.uint16)
        for j in range(self.block):
            crc = (crc >> 8) ^ table[(crc ^ rows[:, j]) & 0xFF]
        low, high = _crc_shift(self.block)
        value = self.value
        for part in crc.tolist():
            value = low[value & 0xFF] ^ high[value >> 8] ^ part
        self.value = value

    def finish(self) -> int:
        table = _crc_table().tolist()
        value = self.value
        for byte in self.pending:
            value = (value >> 8) ^ table[(value ^ byte) & 0xFF]
        return value


class Mp3Unjoinable(Exception):
    """No clean join between two chunks: the stream must be encoded in one piece."""


_MP3_STREAM_BATCH: Final = 4
"""Chunks a streamed MP3 encodes at once (memory: 4 x 3 minutes of audio, held twice)."""
_MP3_KEEP_FRAMES: Final = 32
"""Frames kept in memory at the end of a streamed MP3: a join may write reservoir bytes
(at most 511) into the main data of the frames before it."""


class Mp3Writer:
    """Writes an MP3 of ``samples`` samples fed in order, a block at a time, to ``path``.

    The stream is the one :func:`encode_mp3` makes of the same audio (the same 3-minute
    chunks, encoded on threads a batch at a time, joined the same way; byte-identical),
    written as it goes: memory holds one batch of chunks, not the episode. ``one_piece``
    encodes in one LAME stream instead (the fallback when chunks cannot be joined;
    :meth:`feed` raises :class:`Mp3Unjoinable` then, and the caller starts again).
    """

    def __init__(
        self,
        path: Path,
        samples: int,
        sample_rate: int,
        channels: int,
        *,
        bitrate_kbps: int = 128,
        title: str | None = None,
        one_piece: bool = False,
    ) -> None:
        import soundfile as sf

        if sample_rate not in _MP3_RATES:
            raise ValueError(f"MP3 cannot hold {sample_rate} Hz; use one of {list(_MP3_RATES)}")
        self.path = path
        self.n = samples
        self.sr = sample_rate
        self.channels = channels
        self.level = _compression_level(sample_rate, bitrate_kbps)
        self.frame = 1152 if sample_rate >= 32000 else 576
        self.tag = _id3(title) if title else b""
        self.fed = 0
        chunks = max(1, math.ceil(samples / (_MP3_CHUNK_SEC * sample_rate)))
        self.one_piece = one_piece or chunks == 1
        self.file = open(path, "wb")  # noqa: SIM115 (closed by close())
        self.file.write(self.tag)
        self.lame: Any = None
        self.lame_path = path.with_name(path.name + ".lame")
        if self.one_piece:
            # LAME rewrites its Info frame at the start of its file: a file of its own.
            self.lame = sf.SoundFile(
                str(self.lame_path), "w", samplerate=sample_rate, channels=channels,
                format="MP3", subtype="MPEG_LAYER_III", compression_level=self.level,
                bitrate_mode="CONSTANT",
            )  # fmt: skip
            return
        total_frames = math.ceil(samples / self.frame)
        self.bounds = [round(k * total_frames / chunks) for k in range(chunks + 1)]
        self.spans: list[tuple[int, int]] = []
        for k in range(chunks):
            first = 0 if k == 0 else (self.bounds[k] - _MP3_PREROLL) * self.frame
            last = (
                samples
                if k == chunks - 1
                else (self.bounds[k + 1] + _MP3_WINDOW + _MP3_TAIL) * self.frame
            )
            self.spans.append((max(0, first), min(samples, last)))
        self.buffer: list[FloatArray] = []
        self.buffer_start = 0  # the sample buffer[0] starts at
        self.next_chunk = 0  # the next chunk to encode
        self.held: tuple[int, bytes, list[_Frame], int] | None = None  # encoded, not emitted
        self.edge = 0  # the stream frame the next emitted chunk starts after
        self.info: bytearray | None = None
        self.out = bytearray()  # frames not yet written (the last few)
        self.out_at = 0  # the stream offset of out[0]
        self.length = 0  # stream bytes so far (Info frame included)
        self.positions: list[int] = []
        self.areas: list[tuple[int, int]] = []  # main data of the last frames (stream offsets)
        self.crc = _Crc16Stream()

    def feed(self, block: npt.NDArray[Any]) -> None:
        a = np.asarray(block, dtype=np.float32)
        if self.fed + a.shape[0] > self.n:
            raise ValueError(f"fed {self.fed + a.shape[0]} samples to an MP3 of {self.n}")
        self.fed += a.shape[0]
        if self.one_piece:
            self.lame.write(a)
            return
        self.buffer.append(a)
        batch = min(threads(), _MP3_STREAM_BATCH)
        while self.next_chunk < len(self.spans):
            last = min(self.next_chunk + batch, len(self.spans)) - 1
            if self.fed < self.spans[last][1]:
                break
            self._encode(range(self.next_chunk, last + 1))

    def close(self) -> None:
        """Finish the stream (every sample must have been fed)."""
        try:
            if self.fed != self.n:
                raise ValueError(f"an MP3 of {self.n} samples was fed {self.fed}")
            if self.one_piece:
                self.lame.close()
                with open(self.lame_path, "rb") as lame:
                    shutil.copyfileobj(lame, self.file, 1 << 20)
                return
            assert self.held is not None and self.info is not None  # nosec B101  # type narrowing only
            k, data, frames, offset = self.held
            self._emit(k, data, frames, offset, offset + len(frames) - 1)
            self._flush(len(self.out))
            count = len(self.positions)
            info = _retagged_info(
                self.info, count, self.length, self.positions, self.n, self.frame,
                self.crc.finish(),
            )  # fmt: skip
            if info is None:
                raise Mp3Unjoinable
            self.file.seek(len(self.tag))
            self.file.write(info)
        finally:
            self.file.close()
            self.lame_path.unlink(missing_ok=True)

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            if self.lame is not None:
                self.lame.close()
        self.file.close()
        self.lame_path.unlink(missing_ok=True)

    def _audio(self, start: int, end: int) -> FloatArray:
        if len(self.buffer) > 1:
            whole = np.concatenate(self.buffer)
            self.buffer = [whole]
        return self.buffer[0][start - self.buffer_start : end - self.buffer_start]

    def _encode(self, chunks: range) -> None:
        parts = [self._audio(*self.spans[k]) for k in chunks]
        with ThreadPoolExecutor(max_workers=max(1, len(parts))) as pool:
            encoded = list(pool.map(lambda p: _lame(p, self.sr, self.level), parts))
        del parts
        for k, data in zip(chunks, encoded, strict=True):
            frames = _frames(data)
            offset = self.spans[k][0] // self.frame
            if self.held is None:
                info = frames[0]
                self.info = bytearray(data[info.pos : info.pos + info.size])
                self.length = self.out_at = info.size
                self.file.write(self.info)  # rewritten by close()
            else:
                pk, pdata, pframes, poffset = self.held
                join = _find_join(pdata, pframes, poffset, data, frames, offset,
                                  self.bounds[k])  # fmt: skip
                if join is None:
                    raise Mp3Unjoinable
                self._emit(pk, pdata, pframes, poffset, join)
            self.held = (k, data, frames, offset)
        self.next_chunk = chunks[-1] + 1
        if self.next_chunk < len(self.spans):  # drop audio no later chunk reads
            keep = self.spans[self.next_chunk][0]
            whole = self._audio(self.buffer_start, self.fed)
            self.buffer = [whole[keep - self.buffer_start :].copy()]
            self.buffer_start = keep

    def _emit(self, k: int, data: bytes, frames: list[_Frame], offset: int, edge: int) -> None:
        """Append chunk ``k``'s frames up to stream frame ``edge`` (after the last edge)."""
        first, last = self.edge + 1 - offset, edge + 1 - offset
        if first < 1 or last > len(frames):
            raise Mp3Unjoinable
        if k > 0:
            need = _side(data, frames[first]).reservoir
            if need:
                local = [(s - self.out_at, e - self.out_at) for s, e in self.areas]
                local = [(s, e) for s, e in local if s >= 0]
                if not _carry_reservoir(self.out, local, data, frames, first):
                    raise Mp3Unjoinable
        base = self.length - frames[first].pos
        for f in frames[first:last]:
            self.positions.append(base + f.pos)
            self.areas.append((base + f.pos + f.head, base + f.pos + f.size))
        piece = data[frames[first].pos : frames[last - 1].pos + frames[last - 1].size]
        self.out += piece
        self.length += len(piece)
        self.edge = edge
        del self.areas[:-_MP3_KEEP_FRAMES]
        self._flush(self.areas[0][0] - self.out_at if self.areas else len(self.out))

    def _flush(self, upto: int) -> None:
        """Write ``out[:upto]`` (bytes no join will change any more)."""
        upto = max(0, min(upto, len(self.out)))
        if upto:
            head = bytes(self.out[:upto])
            self.file.write(head)
            self.crc.feed(head)
            del self.out[:upto]
            self.out_at += upto
