"""Consent-bound voices (core.voices.consent): an exported voice carries its speaker's
consent record in voice.toml and its hash in the adapter; synthesis refuses any mismatch."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
import tomli_w
from safetensors import safe_open

from core.errors import ConsentError
from core.settings import new_consent
from core.voices.consent import ADAPTER_KEY, bind_consent, consent_record
from core.voices.folder import VoiceFolder, trained_voice
from core.workspace import Workspace
from tests.conftest import make_tiny_voice


@pytest.fixture
def voiced(demo_copy: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Workspace:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    make_tiny_voice(demo_copy, "alice", seed=1)
    return demo_copy


def _adapter_hash(folder: VoiceFolder) -> str | None:
    with safe_open(str(folder.adapter / "adapter_model.safetensors"), framework="np") as f:
        return (f.metadata() or {}).get(ADAPTER_KEY)


def test_an_exported_voice_carries_the_record_and_its_hash(voiced: Workspace) -> None:
    folder = VoiceFolder.for_speaker(voiced, "alice")
    meta = tomllib.loads(folder.toml.read_text())
    consent = voiced.speaker("alice").consent
    assert consent is not None
    record = consent_record("alice", consent)
    assert meta["consent"] == record and meta["consent"]["statement"] == consent.statement
    assert _adapter_hash(folder) == record["sha256"]
    assert trained_voice(voiced, "alice") == folder  # and it may be used


def test_another_or_no_record_or_a_tampered_adapter_is_refused(voiced: Workspace) -> None:
    folder = VoiceFolder.for_speaker(voiced, "alice")
    # The workspace's record changes: the voice was exported under the old one.
    voiced.add_speaker("alice", new_consent("Alice A", "a new form, signed again"))
    with pytest.raises(ConsentError) as info:
        trained_voice(voiced, "alice")
    message = str(info.value)
    assert "another consent record" in message and "\n" not in message
    assert str(folder.toml) in message and "export it again" in message
    # Someone edits voice.toml to the new record by hand: the adapter still disagrees.
    meta = folder.read_meta()
    new = voiced.speaker("alice").consent
    assert new is not None
    meta["consent"] = consent_record("alice", new)
    folder.toml.write_text(tomli_w.dumps(meta))
    with pytest.raises(ConsentError, match="adapter's consent hash does not match"):
        trained_voice(voiced, "alice")
    # A voice folder copied in without a record.
    del meta["consent"]
    folder.toml.write_text(tomli_w.dumps(meta))
    with pytest.raises(ConsentError, match="carries no consent record"):
        trained_voice(voiced, "alice")
    # Exported again under the new record: usable.
    bind_consent(voiced, "alice", folder)
    assert trained_voice(voiced, "alice") == folder


def test_an_unreadable_adapter_is_one_line(workspace: Workspace) -> None:
    from core.errors import VoiceError

    folder = VoiceFolder.for_speaker(workspace, "alice")
    folder.adapter.mkdir(parents=True)
    (folder.adapter / "adapter_model.safetensors").write_bytes(b"not weights")
    with pytest.raises(VoiceError) as info:
        bind_consent(workspace, "alice", folder)
    assert "not a readable safetensors adapter" in str(info.value)
    assert "\n" not in str(info.value)
