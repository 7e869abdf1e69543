"""Consent-bound voices: an exported voice carries its speaker's consent record.

A voice export (:func:`bind_consent`) writes the speaker's consent record — who granted
it, when, the scope, the statement, the evidence — and its SHA-256 into ``voice.toml``'s
``[consent]`` table, and the same hash into the adapter's safetensors metadata
(``podforge.consent_sha256``). Before any synthesis :func:`check_voice_consent` holds the
voice to the workspace's record for that speaker: a voice with no record (exported before
podforge kept one, or copied in from elsewhere), with another record, or whose adapter
disagrees with its ``voice.toml`` is refused with one line saying what to do.

The hash gives **integrity, not proof**: anyone who can edit ``workspace.toml`` and the
voice folder can make them agree. It stops a voice being used under a consent it was not
exported with, by mistake or by copying folders around; it does not stop a determined
forger.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from core.errors import ConsentError, VoiceError, one_line
from core.settings import Consent
from core.voices.folder import VoiceFolder
from core.workspace import Workspace

__all__ = ["ADAPTER_KEY", "bind_consent", "check_voice_consent", "consent_record"]

ADAPTER_KEY = "podforge.consent_sha256"
"""The adapter's safetensors metadata key holding the consent record's hash."""
WEIGHTS = "adapter_model.safetensors"


def consent_record(speaker: str, consent: Consent) -> dict[str, str]:
    """The record a voice carries: the consent's fields and their SHA-256 (``sha256``)."""
    fields = {
        "speaker": speaker,
        "granted_by": consent.granted_by,
        "granted_at": consent.granted_at.isoformat(),
        "scope": consent.scope,
        "statement": consent.statement,
        "evidence": consent.evidence,
    }
    if consent.audio_sha256:  # spoken consent: the clip's hash (older records stay unchanged)
        fields["audio_sha256"] = consent.audio_sha256
    blob = json.dumps(fields, sort_keys=True, ensure_ascii=False).encode("utf-8")
    return {**fields, "sha256": hashlib.sha256(blob).hexdigest()}


def bind_consent(ws: Workspace, speaker: str, folder: VoiceFolder) -> dict[str, str]:
    """Write the speaker's consent record into ``folder``'s ``voice.toml`` and its hash into
    the adapter's metadata (the voice export does this); the record written. Raises
    :class:`~core.errors.ConsentError` when the speaker has no consent to training."""
    record = consent_record(speaker, ws.require_consent(speaker, "training"))
    meta = folder.read_meta()
    meta["consent"] = record
    folder.write_meta(meta)
    _write_adapter_hash(folder.adapter / WEIGHTS, record["sha256"])
    return record


def check_voice_consent(ws: Workspace, speaker: str, folder: VoiceFolder) -> None:
    """Refuse (one-line :class:`~core.errors.ConsentError`) a voice whose consent record is
    missing, differs from the workspace's, or differs from its adapter's."""
    expected = consent_record(speaker, ws.require_consent(speaker, "synthesis"))["sha256"]
    carried = (folder.read_meta().get("consent") or {}).get("sha256")
    again = f"export it again from its training run (`e` on the training screen of {ws.root})"
    if not carried:
        raise ConsentError(
            f"{folder.toml}: voice {speaker!r} carries no consent record (exported before "
            f"podforge kept one, or copied from elsewhere); {again}"
        )
    if carried != expected:
        raise ConsentError(
            f"{folder.toml}: voice {speaker!r} was exported under another consent record than "
            f"the one in {ws.config_path}; if the speaker agreed to this one, {again}"
        )
    if _adapter_hash(folder.adapter / WEIGHTS) != carried:
        raise ConsentError(
            f"{folder.adapter / WEIGHTS}: the adapter's consent hash does not match "
            f"{folder.toml}; {again}"
        )


def _adapter_hash(path: Path) -> str | None:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="np") as weights:
            meta: dict[str, Any] = weights.metadata() or {}
    except (OSError, ValueError, RuntimeError):
        return None
    value = meta.get(ADAPTER_KEY)
    return str(value) if value else None


def _write_adapter_hash(path: Path, sha256: str) -> None:
    """Rewrite the adapter's safetensors file with the hash in its metadata, atomically."""
    from safetensors import safe_open
    from safetensors.torch import save

    from core.atomic import atomic_write_bytes

    try:
        with safe_open(str(path), framework="pt") as weights:
            meta: dict[str, str] = dict(weights.metadata() or {})
            tensors = {key: weights.get_tensor(key) for key in weights.keys()}  # noqa: SIM118
    except Exception as exc:  # safetensors raises its own error type (not an OSError)
        raise VoiceError(
            f"{path}: not a readable safetensors adapter ({one_line(exc, first_line=True)}); "
            "export another checkpoint"
        ) from None
    meta[ADAPTER_KEY] = sha256
    atomic_write_bytes(path, save(tensors, metadata=meta))
