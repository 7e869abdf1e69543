"""The evaluation report: what :func:`core.evaluation.evaluate.evaluate_voice` measured, as
saved to ``voices/<speaker>/eval/<UTC time>.json`` and read back.

:class:`EvalReport` is the record (``to_dict`` / ``to_json``, schema :data:`REPORT_SCHEMA`);
:func:`save_report` writes it atomically into the voice folder's ``eval/``;
:func:`latest_report` reads the newest one back as a dict, passing over unreadable files.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from core.atomic import atomic_write_text
from core.evaluation.gates import GateResult
from core.voices.folder import VoiceFolder
from core.workspace import Workspace

__all__ = ["REPORT_SCHEMA", "EvalItem", "EvalReport", "latest_report", "save_report"]

REPORT_SCHEMA = 3
"""2: ``segment_ids``, ``split_seed`` and each item's ``segment_id`` added. 3:
``normalisers``, ``aggregates.wer_whisper`` and each item's ``wer_whisper``."""


@dataclass
class EvalItem:
    """One rendered text."""

    text: str
    hypothesis: str
    wer: float
    cer: float
    similarity: float | None
    """ECAPA cosine to the anchors; ``None`` when the render is too short to embed."""
    rtf: float | None
    """Render seconds over audio seconds; ``None`` when the render is empty."""
    seconds: float
    """Length of the rendered audio."""
    render_seconds: float
    """Wall time the render took."""
    segment_id: int | None = None
    """The held-out segment whose transcript this is; ``None`` for ``--texts``."""
    wer_whisper: float | None = None
    """WER after Whisper's English normaliser (the leaderboards' form)."""


@dataclass
class EvalReport:
    """What :func:`evaluate_voice` measured; ``to_json()`` is what is saved."""

    voice: str
    backend: str
    created_at: str
    seed: int
    texts_source: str
    items: list[EvalItem]
    wer: float
    cer: float
    similarity: float
    """Mean over the items; an item too short to embed counts as 0."""
    reference_similarity: float | None
    """The same for the real held-out recordings; ``None`` when there are none."""
    rtf: float | None
    """Total render time over total audio time; ``None`` when no audio was made."""
    render_seconds: float
    audio_seconds: float
    load_seconds: float
    """Loading the voice and one warm-up render; not part of the RTF."""
    gates: dict[str, GateResult]
    """``{name: (value, threshold, passed)}`` for ``wer``, ``cer``, ``similarity``, ``rtf``."""
    passed: bool
    models: dict[str, str] = field(default_factory=dict)
    anchors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    segment_ids: list[int] = field(default_factory=list)
    """The held-out segments used (their texts rendered unless ``--texts``; their audio as
    the reference similarity): none of them is in a ``split.json`` ``train`` list of the
    voice's runs, since both come from the splits stored in the catalog."""
    split_seed: int | None = None
    wer_whisper: float | None = None
    """Corpus WER after Whisper's English normaliser; ``None`` when no text survives it."""
    normalisers: dict[str, str] = field(default_factory=dict)
    """Which normaliser each figure was computed in (``wer``/``cer``, ``wer_whisper``)."""
    path: Path | None = None
    """Where the report was saved."""

    @property
    def failed_gates(self) -> list[str]:
        return [name for name, (_, _, ok) in self.gates.items() if not ok]

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": REPORT_SCHEMA,
            "voice": self.voice,
            "backend": self.backend,
            "created_at": self.created_at,
            "seed": self.seed,
            "texts_source": self.texts_source,
            "models": dict(self.models),
            "normalisers": dict(self.normalisers),
            "anchors": list(self.anchors),
            "notes": list(self.notes),
            "split_seed": self.split_seed,
            "segment_ids": list(self.segment_ids),
            "aggregates": {
                "wer": self.wer,
                "wer_whisper": self.wer_whisper,
                "cer": self.cer,
                "similarity": self.similarity,
                "reference_similarity": self.reference_similarity,
                "rtf": self.rtf,
                "render_seconds": self.render_seconds,
                "audio_seconds": self.audio_seconds,
                "load_seconds": self.load_seconds,
                "items": len(self.items),
            },
            "gates": {
                name: {"value": value, "threshold": threshold, "passed": ok}
                for name, (value, threshold, ok) in self.gates.items()
            },
            "passed": self.passed,
            "items": [asdict(item) for item in self.items],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n"


def save_report(ws: Workspace, report: EvalReport, when: datetime) -> Path:
    """Write ``report`` as ``voices/<voice>/eval/<when, UTC>.json``; sets and returns its path."""
    folder = VoiceFolder.for_speaker(ws, report.voice).eval
    path = folder / f"{when.strftime('%Y%m%dT%H%M%S.%fZ')}.json"
    atomic_write_text(path, report.to_json())
    report.path = path
    return path


def latest_report(ws: Workspace, voice: str) -> dict[str, Any] | None:
    """The newest saved report of ``voice`` as a dict (see :meth:`EvalReport.to_dict`), or
    ``None`` when it has none; an unreadable file is passed over for the one before it."""
    folder = VoiceFolder.for_speaker(ws, voice).eval
    if not folder.is_dir():
        return None
    for path in sorted(folder.glob("*.json"), reverse=True):
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            continue
        if isinstance(doc, dict):
            doc["path"] = str(path)
            return doc
    return None
