"""Plain records stored in the catalog: recordings, segments, review actions, runs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

SegmentStatus = Literal["pending", "accepted", "rejected"]
SEGMENT_STATUSES: tuple[SegmentStatus, ...] = ("pending", "accepted", "rejected")


@dataclass(frozen=True)
class Recording:
    """A long recording imported into ``raw/`` (the original, never modified)."""

    speaker: str
    path: str  # relative to the workspace root
    original_name: str
    sha256: str
    sample_rate: int
    channels: int
    duration_sec: float
    format: str
    subtype: str | None = None
    transcript: str | None = None  # sidecar path relative to the root
    state: str = "imported"  # imported | segmented | failed
    error: str | None = None
    imported_at: str = ""
    id: int | None = None


@dataclass(frozen=True)
class QC:
    """Quality measurements of one segment (``None``: not measured)."""

    rms_db: float | None = None
    snr_db: float | None = None
    clipped: float | None = None
    hum_score: float | None = None
    plosive_ratio: float | None = None
    lufs: float | None = None
    true_peak_db: float | None = None
    similarity: float | None = None


@dataclass(frozen=True)
class Segment:
    """One utterance cut from a recording, conditioned to the workspace's audio targets."""

    recording_id: int
    speaker: str
    audio: str  # relative to the workspace root
    start_sec: float
    end_sec: float
    duration_sec: float
    sample_rate: int = 24000
    bit_depth: int = 16
    num_channels: int = 1
    text: str = ""
    text_source: str = ""
    qc: QC = field(default_factory=QC)
    flags: tuple[str, ...] = ()
    status: SegmentStatus = "pending"
    split: str | None = None
    id: int | None = None


@dataclass(frozen=True)
class ReviewAction:
    """One entry of the review history."""

    id: int
    segment_id: int
    action: str  # accept | reject | reset | edit
    old_status: SegmentStatus
    new_status: SegmentStatus
    old_text: str
    new_text: str
    source: str
    at: str
    undone: bool = False


@dataclass(frozen=True)
class Run:
    """A training run registered in the catalog (its live state is in ``runs/<id>/``)."""

    id: str
    speaker: str
    path: str
    kind: str = "train"
    created_at: str = ""
    note: str = ""


@dataclass(frozen=True)
class SegmentUpdate:
    """Machine results for one segment; ``None`` fields are left as they are."""

    segment_id: int
    text: str | None = None
    text_source: str = "asr"
    similarity: float | None = None
    flags: tuple[str, ...] | None = None
