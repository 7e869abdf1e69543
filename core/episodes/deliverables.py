"""Platform deliverables: more MP3s from the same render, each to its own loudness target.

``[export] targets`` in ``workspace.toml`` names platform presets
(:data:`core.episodes.target.LOUDNESS_PRESETS`), each optionally ``:mono`` or ``:stereo``
(default: the master's layout). The render masters the same mix once more for each one
(:func:`core.episodes.master.render_episode_files`), so a -14 LUFS Spotify file is not a
-19 LUFS master turned up through a second limiter. Every MP3 — the master's too — is then
**decoded and measured** by the project's meter (:func:`measure_decoded`): encoders overshoot
the ceiling and their quantiser takes loudness, so a deliverable whose decoded true peak lands
over its ceiling, or whose decoded loudness is more than :data:`DECODED_TOLERANCE_LU` off,
is made again with the limiter's ceiling lowered by the overshoot and the gain corrected (at
most :data:`ENCODE_ROUNDS` times). The master's own MP3 is held to the same rule; the
master WAV comes from the first pass only.
The manifest's ``deliverables`` lists each file with its target and what was measured on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.audio.types import FloatArray

ENCODE_ROUNDS = 3
"""Encodes of one deliverable at most (the first, then ceilings lowered by the overshoot)."""
DECODED_TOLERANCE_LU = 0.2
"""How far a deliverable's decoded loudness may lie from its target before it is encoded
again with the gain corrected (LAME's quantiser at 128 kbit/s takes ~0.45 dB from every band)."""
_PEAK_CONTEXT = 256  # samples of the previous block kept for the next block's true peak


@dataclass(frozen=True)
class Delivery:
    """One extra MP3: ``<name>.<label>.mp3`` at ``lufs`` under ``ceiling_dbtp``."""

    label: str
    lufs: float
    ceiling_dbtp: float
    channels: int


@dataclass(frozen=True)
class Delivered:
    """An MP3 as written and as measured after decoding it."""

    label: str
    path: Path
    target_lufs: float | None
    ceiling_dbtp: float | None
    channels: int
    lufs: float | None
    true_peak_dbtp: float
    encodes: int

    def manifest(self) -> dict[str, object]:
        return {
            "target": self.label,
            "file": self.path.name,
            "channels": self.channels,
            "target_lufs": self.target_lufs,
            "ceiling_dbtp": self.ceiling_dbtp,
            "measured_on": "decoded file",
            "lufs": None if self.lufs is None else round(self.lufs, 2),
            "true_peak_dbtp": round(self.true_peak_dbtp, 2),
            "encodes": self.encodes,
        }


def parse_target(spec: str) -> tuple[str, bool | None]:
    """``"apple"`` -> ``("apple", None)``; ``"apple:stereo"`` -> ``("apple", True)``;
    ``ValueError`` (one line) for anything else."""
    from core.episodes.target import LOUDNESS_PRESETS

    preset, _, layout = spec.partition(":")
    if preset not in LOUDNESS_PRESETS or layout not in ("", "mono", "stereo"):
        names = ", ".join(LOUDNESS_PRESETS)
        raise ValueError(
            f"export target {spec!r} is not a preset ({names}), optionally with :mono or :stereo"
        )
    return preset, None if not layout else layout == "stereo"


def deliveries(targets: list[str], master_stereo: bool, ceiling_dbtp: float) -> list[Delivery]:
    """The :class:`Delivery` of each ``[export] targets`` entry (duplicates once); the
    workspace's ceiling applies when it is lower than the preset's."""
    from core.episodes.target import LOUDNESS_PRESETS

    out: dict[str, Delivery] = {}
    for spec in targets:
        preset, stereo = parse_target(spec)
        stereo = master_stereo if stereo is None else stereo
        stereo_lufs, mono_lufs, ceiling = LOUDNESS_PRESETS[preset]
        label = spec.replace(":", "-")
        out[label] = Delivery(
            label=label,
            lufs=stereo_lufs if stereo else mono_lufs,
            ceiling_dbtp=min(ceiling, ceiling_dbtp),
            channels=2 if stereo else 1,
        )
    return list(out.values())


def measure_decoded(path: Path) -> tuple[float | None, float]:
    """Integrated loudness (LUFS; ``None`` under 0.4 s) and true peak (dBTP, 4x) of the audio
    a player decodes from ``path``, streamed in blocks. The meter needs the length first: the
    header's (exact for the MP3s podforge writes, whose LAME header holds it), else the file
    is decoded once more to count it."""
    from core.audio.io import probe

    info = probe(path)
    measured = _measure(info.path, info.sample_rate, info.channels, info.frames)
    if measured is None:  # the header's length was not the decoded one
        from core.audio.io import iter_blocks

        total = sum(block.shape[0] for block in iter_blocks(info.path, mono=False))
        measured = _measure(info.path, info.sample_rate, info.channels, total)
    if measured is None:  # pragma: no cover - the decoder gave another length twice
        raise RuntimeError(f"{path}: decodes to a different length each time")
    return measured


def _measure(path: Path, rate: int, channels: int, total: int) -> tuple[float | None, float] | None:
    """One decode of ``path`` through the meter, or ``None`` if it is not ``total`` long."""
    from core.audio.io import iter_blocks
    from core.audio.meter import LoudnessMeter, true_peak_db

    meter = LoudnessMeter(rate, total, channels)
    peak = -np.inf
    tail: FloatArray | None = None
    for block in iter_blocks(path, mono=False):
        pcm = block if channels > 1 else block.reshape(-1)
        if meter.fed + pcm.shape[0] > total:
            return None
        meter.add(pcm)
        joined = pcm if tail is None else np.concatenate([tail, pcm])
        peak = max(peak, true_peak_db(joined, rate))
        tail = pcm[-_PEAK_CONTEXT:]
    if meter.fed != total:
        return None
    return meter.lufs(), float(peak)
