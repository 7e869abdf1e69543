"""A read-only summary of a workspace: what the app's home screen shows.

Built from ``workspace.toml``, the catalog and the ``runs/``, ``scripts/`` and
``episodes/`` folders. Cheap (a few SQL aggregates and directory listings), so it
can be rebuilt every couple of seconds while another process ingests or trains.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.catalog import Catalog, StatusCounts
from core.errors import VoiceError
from core.records import Recording
from core.voices.folder import VoiceFolder
from core.workspace import Workspace


@dataclass(frozen=True)
class VoiceSummary:
    """A trained voice in ``voices/<speaker>/`` and its newest evaluation, if any."""

    step: int | None
    run_id: str | None
    eval_passed: bool | None  # None: never evaluated
    wer: float | None = None
    similarity: float | None = None
    failed_gates: tuple[str, ...] = ()


@dataclass(frozen=True)
class SpeakerSummary:
    name: str
    display_name: str
    consent_by: str | None  # None: no consent record
    consent_at: str | None
    recordings: int
    recorded_seconds: float
    counts: StatusCounts
    voice: VoiceSummary | None = None


@dataclass(frozen=True)
class RunSummary:
    id: str
    speaker: str
    state: str
    step: int | None
    max_steps: int | None
    updated_at: str | None


@dataclass(frozen=True)
class EpisodeSummary:
    name: str
    script: str | None  # relative path of the script, when there is one
    mixed: bool  # a mix (WAV) exists


@dataclass(frozen=True)
class Overview:
    name: str
    root: Path
    speakers: tuple[SpeakerSummary, ...]
    recordings: tuple[Recording, ...]
    counts: StatusCounts
    target_minutes: tuple[float, float]
    runs: tuple[RunSummary, ...]
    episodes: tuple[EpisodeSummary, ...]

    @property
    def accepted_minutes(self) -> float:
        return self.counts.accepted_seconds / 60.0


def load_overview(ws: Workspace, catalog: Catalog) -> Overview:
    """Summarise ``ws`` as it is on disk now."""
    recordings = catalog.recordings()
    speakers = []
    for name, sp in sorted(ws.settings.speakers.items()):
        mine = [r for r in recordings if r.speaker == name]
        speakers.append(
            SpeakerSummary(
                name=name,
                display_name=sp.display_name or name,
                consent_by=sp.consent.granted_by if sp.consent else None,
                consent_at=sp.consent.granted_at.date().isoformat() if sp.consent else None,
                recordings=len(mine),
                recorded_seconds=sum(r.duration_sec for r in mine),
                counts=catalog.counts(speaker=name),
                voice=_voice(ws, name),
            )
        )
    audio = ws.settings.audio
    return Overview(
        name=ws.name,
        root=ws.root,
        speakers=tuple(speakers),
        recordings=tuple(recordings),
        counts=catalog.counts(),
        target_minutes=(audio.target_minutes_min, audio.target_minutes_max),
        runs=tuple(_runs(ws, catalog)),
        episodes=tuple(_episodes(ws)),
    )


def _voice(ws: Workspace, speaker: str) -> VoiceSummary | None:
    """The speaker's exported voice and its newest evaluation report."""
    folder = VoiceFolder.for_speaker(ws, speaker)
    if not folder.toml.is_file():
        return None
    try:
        meta = folder.read_meta()
    except VoiceError:
        meta = {}
    from core.evaluation.report import latest_report  # lazy: only when a voice exists

    report = latest_report(ws, speaker)
    gates = report.get("gates", {}) if report else {}
    failed = tuple(
        sorted(k for k, g in gates.items() if isinstance(g, dict) and not g.get("passed"))
    )
    return VoiceSummary(
        step=_int_or_none(meta.get("step")),
        run_id=meta.get("run_id"),
        eval_passed=None if report is None else bool(report.get("passed")),
        wer=_float_or_none(gates.get("wer", {}).get("value")) if gates else None,
        similarity=_float_or_none(gates.get("similarity", {}).get("value")) if gates else None,
        failed_gates=failed,
    )


def _float_or_none(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _runs(ws: Workspace, catalog: Catalog) -> list[RunSummary]:
    speakers = {r.id: r.speaker for r in catalog.runs()}
    out = []
    for folder in sorted(p for p in ws.runs_dir.iterdir() if p.is_dir()):
        status = _read_json(folder / "status.json")
        out.append(
            RunSummary(
                id=folder.name,
                speaker=str(status.get("speaker") or speakers.get(folder.name, "?")),
                state=str(status.get("state", "unknown")),
                step=_int_or_none(status.get("step")),
                max_steps=_int_or_none(status.get("max_steps")),
                updated_at=status.get("updated_at"),
            )
        )
    return out


def _episodes(ws: Workspace) -> list[EpisodeSummary]:
    names = {p.stem for p in ws.scripts_dir.glob("*.md")}
    names |= {p.name for p in ws.episodes_dir.iterdir() if p.is_dir()}
    out = []
    for name in sorted(names):
        script = ws.scripts_dir / f"{name}.md"
        out.append(
            EpisodeSummary(
                name=name,
                script=script.relative_to(ws.root).as_posix() if script.is_file() else None,
                mixed=(ws.episodes_dir / name / f"{name}.wav").is_file(),
            )
        )
    return out


def _read_json(path: Path) -> dict[str, Any]:
    """A JSON object from ``path``; ``{}`` when missing or half-written (tolerated)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
