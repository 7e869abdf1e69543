"""Creating, opening and refusing workspaces; workspace.toml round trips."""

from __future__ import annotations

import dataclasses
import tomllib
from datetime import UTC, datetime
from pathlib import Path

import pytest

from core.errors import (
    ConsentError,
    NotAWorkspaceError,
    SchemaTooNewError,
    SpeakerError,
    WorkspaceConfigError,
    WorkspaceError,
)
from core.settings import SCHEMA_VERSION, new_consent
from core.subpath import Subpath
from core.workspace import CONFIG_NAME, FOLDERS, Workspace, find_workspace


def test_create_makes_the_design_layout(tmp_path: Path) -> None:
    ws = Workspace.create(tmp_path / "my-show")
    for folder in FOLDERS:
        assert (ws.root / folder).is_dir(), folder
    assert ws.config_path.is_file()
    assert ws.catalog_path.is_file()
    doc = tomllib.loads(ws.config_path.read_text())
    assert doc["schema"] == SCHEMA_VERSION
    assert doc["name"] == "my-show"
    assert doc["audio"]["sample_rate"] == 24000
    assert doc["audio"]["subtype"] == "PCM_16"
    assert doc["audio"]["target_lufs"] == -19.0
    assert doc["audio"]["true_peak_dbtp"] == -1.0
    assert (doc["audio"]["min_segment_sec"], doc["audio"]["max_segment_sec"]) == (5.0, 15.0)
    assert doc["models"] == {
        "tts": "sesame/csm-1b",
        "asr": "large-v3",
        "speaker": "speechbrain/spkrec-ecapa-voxceleb",
        "device": "auto",
        "tts_batch": 8,
        "tts_engine": "auto",
        "sound": "stabilityai/stable-audio-open-1.0",
        "sound_cpu": False,
    }


def test_layout_paths_follow_the_root_and_are_read_only(workspace: Workspace) -> None:
    for folder in FOLDERS:
        assert getattr(workspace, f"{folder}_dir") == workspace.root / folder
    assert workspace.config_path == workspace.root / "workspace.toml"
    moved = dataclasses.replace(workspace, root=workspace.root.parent / "elsewhere")
    assert moved.scripts_dir == workspace.root.parent / "elsewhere" / "scripts"
    assert workspace.scripts_dir == workspace.root / "scripts"  # its own, not the last one read
    with pytest.raises(AttributeError, match="scripts_dir"):
        workspace.scripts_dir = workspace.root  # type: ignore[misc]
    assert Workspace.raw_dir.parts == ("raw",)  # the class holds the layout, not a path


@pytest.mark.parametrize("parts", [(), ("",), ("..",), ("a/b",)])
def test_a_subpath_is_plain_names(parts: tuple[str, ...]) -> None:
    with pytest.raises(ValueError, match="plain names"):
        Subpath(*parts)


def test_create_refuses_an_existing_workspace(workspace: Workspace) -> None:
    with pytest.raises(WorkspaceError, match="already a workspace"):
        Workspace.create(workspace.root)


def test_settings_round_trip_through_the_file(workspace: Workspace) -> None:
    reopened = Workspace.open(workspace.root)
    assert reopened.settings == workspace.settings
    consent = reopened.settings.speakers["alice"].consent
    assert consent is not None
    assert consent.granted_by == "Alice Example"
    assert consent.granted_at == datetime(2026, 11, 20, 9, 30, tzinfo=UTC)
    assert reopened.settings.speakers["carol"].consent is None


def test_edited_values_survive(workspace: Workspace) -> None:
    text = workspace.config_path.read_text().replace("target_lufs = -19.0", "target_lufs = -23")
    workspace.config_path.write_text(text)
    assert Workspace.open(workspace.root).settings.audio.target_lufs == -23.0


def test_open_a_folder_that_is_not_a_workspace(tmp_path: Path) -> None:
    with pytest.raises(NotAWorkspaceError) as info:
        Workspace.open(tmp_path)
    message = str(info.value)
    assert str(tmp_path) in message and "podforge init" in message and "\n" not in message


def test_open_a_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(NotAWorkspaceError, match="no such folder"):
        Workspace.open(tmp_path / "nope")


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("schema = 1\nname = [unclosed", "not valid TOML"),
        ("name = 'x'\n", "'schema' is missing"),
        ("schema = 1\n[audio]\nsample_rate = 'fast'\n", "'audio.sample_rate' must be an integer"),
        ("schema = 1\n[audio]\nsamplerate = 24000\n", "unknown key 'audio.samplerate'"),
        ("schema = 1\n[audio]\ntarget_lufs = 5\n", "'audio.target_lufs' must lie in"),
        ("schema = 1\n[models]\ntts_batch = 0\n", "'models.tts_batch' must lie in 1..64"),
        ("schema = 1\n[models]\ntts_engine = 'fast'\n", "'models.tts_engine' must be auto"),
        ("schema = 1\n[training]\ndepth_decoder_ratio = 0.0\n", "'training.depth_decoder_ratio'"),
        ("schema = 1\n[speakers.alice.consent]\nscope = 'all'\n", "missing"),
        ("schema = 1\n[speakers.'Bad Name']\n", "not allowed"),
    ],
)
def test_corrupt_workspace_toml_is_one_clear_line(
    workspace: Workspace, content: str, expected: str
) -> None:
    workspace.config_path.write_text(content)
    with pytest.raises(WorkspaceConfigError) as info:
        Workspace.open(workspace.root)
    message = str(info.value)
    assert expected in message
    assert str(workspace.config_path) in message
    assert "\n" not in message


def test_binary_garbage_toml(workspace: Workspace) -> None:
    workspace.config_path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(WorkspaceConfigError, match="not UTF-8"):
        Workspace.open(workspace.root)


def test_newer_schema_is_refused(workspace: Workspace) -> None:
    text = workspace.config_path.read_text().replace(
        f"schema = {SCHEMA_VERSION}", f"schema = {SCHEMA_VERSION + 1}"
    )
    workspace.config_path.write_text(text)
    with pytest.raises(SchemaTooNewError, match="upgrade podforge"):
        Workspace.open(workspace.root)


def test_removed_folders_are_recreated_on_open(workspace: Workspace) -> None:
    (workspace.root / "exports").rmdir()
    Workspace.open(workspace.root)
    assert (workspace.root / "exports").is_dir()


def test_speakers_and_consent(workspace: Workspace) -> None:
    assert workspace.require_consent("alice").granted_by == "Alice Example"
    with pytest.raises(ConsentError) as info:
        workspace.require_consent("carol")
    assert "podforge speaker add" in str(info.value) and "carol" in str(info.value)
    with pytest.raises(SpeakerError, match=r"unknown speaker 'dave'.*known: alice, carol"):
        workspace.speaker("dave")
    with pytest.raises(SpeakerError, match="not allowed"):
        workspace.add_speaker("../evil", None)


def test_adding_consent_later_keeps_the_speaker(workspace: Workspace) -> None:
    workspace.add_speaker("carol", new_consent("Carol C", statement="signed form 12"))
    reopened = Workspace.open(workspace.root)
    assert reopened.require_consent("carol").statement == "signed form 12"
    assert reopened.settings.speakers["carol"].display_name == "Carol"


def test_consent_needs_a_grantor() -> None:
    with pytest.raises(SpeakerError, match="who granted it"):
        new_consent("  ", "signed form 12")


def test_find_workspace_walks_up(workspace: Workspace) -> None:
    deep = workspace.root / "scripts" / "drafts"
    deep.mkdir()
    assert find_workspace(deep) == workspace.root
    assert find_workspace(workspace.root.parent) is None


def test_save_is_atomic_when_serialisation_fails(workspace: Workspace) -> None:
    before = workspace.config_path.read_bytes()
    workspace.settings.name = "renamed"
    workspace.settings.audio.margin_ms = object()  # type: ignore[assignment]  # not TOML-able
    with pytest.raises(TypeError):
        workspace.save()
    assert workspace.config_path.read_bytes() == before
    assert sorted(p.name for p in workspace.root.iterdir() if p.name.startswith(".")) == []
    assert CONFIG_NAME in {p.name for p in workspace.root.iterdir()}


@pytest.mark.parametrize("statement", ["", "   \n\t"])
def test_consent_needs_a_statement(statement: str) -> None:
    with pytest.raises(SpeakerError, match="statement is empty") as info:
        new_consent("Dana D", statement=statement)
    assert "\n" not in str(info.value)


def test_consent_records_what_was_given_and_nothing_else() -> None:
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    consent = new_consent("  Dana D ", statement=" signed form 7 ", granted_at=when)
    assert (consent.granted_by, consent.statement, consent.evidence) == (
        "Dana D",
        "signed form 7",
        "",
    )
    with pytest.raises(SpeakerError, match="scope is empty"):
        new_consent("Dana D", statement="ok", scope="  ")


def test_consent_scope_names_the_uses_it_covers(workspace: Workspace) -> None:
    assert workspace.require_consent("alice", "synthesis").covers("training")
    workspace.add_speaker("carol", new_consent("Carol C", "form 3", scope="training only"))
    assert workspace.require_consent("carol", "training").granted_by == "Carol C"
    with pytest.raises(ConsentError) as info:
        workspace.require_consent("carol", "synthesis")
    message = str(info.value)
    assert "'carol'" in message and "training only" in message and "synthesis" in message
    assert "podforge speaker add" in message and "--scope" in message and "\n" not in message
