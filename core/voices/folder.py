"""A speaker's voice folder, ``voices/<speaker>/``: the one owner of its layout and anchors.

``adapter/`` is the peft adapter as ``save_pretrained`` wrote it, ``anchors/anchor-N.wav``
the reference clips, ``voice.toml`` the speaker, base model, run, step, metrics and the
anchors' transcripts, ``eval/`` the evaluation reports. A voice is trained when its adapter
has an ``adapter_config.json``.

Anchors are chosen by one rule: segments of 3-10 s with no flag but the tolerated ones,
highest SNR first, ties by audio path (deterministic, so an interrupted job and a whole one
use the same clips). Ten seconds, not fifteen: every anchor is a context turn in front of each
CSM generation, so short clean clips leave room for the line and keep generation fast; ECAPA
needs no more than a few seconds either. A voice takes :data:`VOICE_ANCHORS`; a speaker check
or an evaluation takes up to :data:`REFERENCE_ANCHORS` when the voice has no ``anchors/`` yet.
"""

from __future__ import annotations

import tomllib
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.errors import VoiceError
from core.records import Segment
from core.subpath import Subpath
from core.workspace import Workspace

ADAPTER = "adapter"
ANCHORS = "anchors"
TOML = "voice.toml"
EVAL = "eval"
ADAPTER_CONFIG = "adapter_config.json"

ANCHOR_MIN_SEC = 3.0
ANCHOR_MAX_SEC = 10.0
VOICE_ANCHORS = 3
"""Anchors exported with a voice: the context turns of every CSM generation."""
REFERENCE_ANCHORS = 8
"""Reference clips for speaker similarity taken from the catalog when a voice has none."""
REFERENCE_FLAGS = frozenset({"no_text", "other_speaker"})
"""Flags a reference clip may carry (ingest's analysis flags, not audio defects): ECAPA needs
no transcript, and an earlier speaker check's verdict must not change the reference."""


@dataclass(frozen=True)
class VoiceFolder:
    """``voices/<speaker>/`` and the paths inside it."""

    root: Path

    @classmethod
    def for_speaker(cls, ws: Workspace, speaker: str) -> VoiceFolder:
        return cls(ws.voices_dir / speaker)

    @property
    def speaker(self) -> str:
        return self.root.name

    adapter = Subpath(ADAPTER)
    adapter_config = Subpath(ADAPTER, ADAPTER_CONFIG)
    anchors = Subpath(ANCHORS)
    toml = Subpath(TOML)
    eval = Subpath(EVAL)

    def exists(self) -> bool:
        return self.root.is_dir()

    def is_trained(self) -> bool:
        """An exported adapter is there."""
        return self.adapter_config.is_file()

    def anchor_files(self) -> list[Path]:
        """``anchors/*.wav`` in name order (none when the folder is missing)."""
        return sorted(self.anchors.glob("*.wav")) if self.anchors.is_dir() else []

    def read_meta(self) -> dict[str, Any]:
        """``voice.toml`` as a dict, ``{}`` when missing; an unreadable one is a VoiceError."""
        if not self.toml.is_file():
            return {}
        try:
            return tomllib.loads(self.toml.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise VoiceError(f"{self.toml}: unreadable ({exc}); export the voice again") from None

    def listed_anchors(self) -> list[tuple[Path, str]]:
        """``(clip, transcript)`` of each anchor ``voice.toml`` lists, in its order."""
        rows = self.read_meta().get("anchors", [])
        return [(self.root / row["file"], str(row["text"])) for row in rows]

    def write_meta(self, meta: dict[str, Any]) -> None:
        import tomli_w

        from core.atomic import atomic_write_text

        atomic_write_text(self.toml, tomli_w.dumps(meta))


def trained_voice(ws: Workspace, speaker: str) -> VoiceFolder:
    """The speaker's voice folder, checked for use in synthesis: a
    :class:`~core.errors.ConsentError` when the consent does not cover synthesis (checked
    first), a one-line :class:`VoiceError` when no adapter was exported, and a
    ``ConsentError`` when the voice does not carry the workspace's consent record for the
    speaker (:func:`core.voices.consent.check_voice_consent`). Loads no model."""
    ws.require_consent(speaker, "synthesis")
    folder = VoiceFolder.for_speaker(ws, speaker)
    if not folder.is_trained():
        raise VoiceError(
            f"speaker {speaker!r} has no trained voice ({folder.adapter} is missing): "
            f"train one with `podforge train {ws.root} --speaker {speaker}` and export "
            "it, or render with --draft"
        )
    from core.voices.consent import check_voice_consent

    check_voice_consent(ws, speaker, folder)  # the voice carries this very consent
    return folder


def anchor_name(n: int) -> str:
    """The file name of the ``n``-th anchor (from 1), as ``voice.toml`` lists it."""
    return f"{ANCHORS}/anchor-{n}.wav"


def is_anchor_length(seconds: float) -> bool:
    return ANCHOR_MIN_SEC <= seconds <= ANCHOR_MAX_SEC


def best_anchors(
    segments: Sequence[Segment], count: int, *, tolerated_flags: Collection[str] = ()
) -> list[Segment]:
    """The one anchor rule: anchor-length segments with no flag outside ``tolerated_flags``,
    highest SNR first, ties by audio path; at most ``count``."""
    allowed = set(tolerated_flags)
    fit = [s for s in segments if set(s.flags) <= allowed and is_anchor_length(s.duration_sec)]
    return sorted(fit, key=_by_quality)[:count]


def voice_anchors(accepted: Sequence[Segment]) -> list[Segment]:
    """The anchors exported with a voice: transcribed accepted segments by the anchor rule;
    when none fits, the best transcribed ones of any length."""
    transcribed = [s for s in accepted if s.text]
    chosen = best_anchors(transcribed, VOICE_ANCHORS)
    return chosen or sorted(transcribed, key=_by_quality)[:VOICE_ANCHORS]


def reference_segments(segments: Sequence[Segment]) -> list[Segment]:
    """Up to :data:`REFERENCE_ANCHORS` reference clips for a speaker check: by the anchor rule
    (:data:`REFERENCE_FLAGS` tolerated); when none fits, the best of any length."""
    chosen = best_anchors(segments, REFERENCE_ANCHORS, tolerated_flags=REFERENCE_FLAGS)
    return chosen or sorted(segments, key=_by_quality)[:REFERENCE_ANCHORS]


def anchor_paths(ws: Workspace, speaker: str, segments: Sequence[Segment]) -> list[Path]:
    """The speaker's reference clips: the voice's ``anchors/*.wav`` when present, else up to
    :data:`REFERENCE_ANCHORS` of ``segments`` by the anchor rule (:data:`REFERENCE_FLAGS`
    tolerated)."""
    given = VoiceFolder.for_speaker(ws, speaker).anchor_files()
    if given:
        return given
    chosen = best_anchors(segments, REFERENCE_ANCHORS, tolerated_flags=REFERENCE_FLAGS)
    return [ws.root / s.audio for s in chosen]


def is_unmarked_voice(folder: Path) -> bool:
    """True for a ``voices/<speaker>/`` that podforge wrote before it marked its folders: only
    evaluation reports (``eval/*.json``, e.g. of the draft voice), or an exported voice's exact
    layout (``adapter/``, ``anchors/``, ``voice.toml`` naming its run, ``eval/``)."""
    try:
        names = {p.name for p in folder.iterdir()}
    except OSError:
        return False
    if EVAL in names and not _only_reports(folder / EVAL):
        return False
    if names <= {EVAL}:
        return True
    if names - {EVAL} != {ADAPTER, ANCHORS, TOML}:
        return False
    try:
        meta = VoiceFolder(folder).read_meta()
    except VoiceError:
        return False
    return {"run_id", "exported_at", "base_model"} <= meta.keys()


def _only_reports(folder: Path) -> bool:
    try:
        return folder.is_dir() and all(
            p.is_file() and p.suffix == ".json" for p in folder.iterdir()
        )
    except OSError:
        return False


def _by_quality(s: Segment) -> tuple[float, str]:
    return (-(s.qc.snr_db or 0.0), s.audio)
