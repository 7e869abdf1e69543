"""The voice folder (core.voices.folder): its layout, voice.toml, and the one anchor rule."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.dataset.ingest import NO_TEXT_FLAG, OTHER_SPEAKER_FLAG
from core.errors import ConsentError, VoiceError
from core.records import QC, Segment
from core.voices import VoiceFolder, anchor_paths, best_anchors, is_anchor_length, voice_anchors
from core.voices.consent import bind_consent
from core.voices.folder import (
    REFERENCE_ANCHORS,
    REFERENCE_FLAGS,
    VOICE_ANCHORS,
    anchor_name,
    is_unmarked_voice,
    trained_voice,
)
from core.workspace import Workspace


def _seg(
    name: str, seconds: float, snr: float, text: str = "words", flags: tuple[str, ...] = ()
) -> Segment:
    return Segment(
        recording_id=1, speaker="alice", audio=f"segments/alice/{name}.wav", start_sec=0.0,
        end_sec=seconds, duration_sec=seconds, text=text, qc=QC(snr_db=snr), flags=flags,
    )  # fmt: skip


def test_the_layout_of_a_voice_folder(workspace: Workspace) -> None:
    folder = VoiceFolder.for_speaker(workspace, "alice")
    root = workspace.root / "voices" / "alice"
    assert folder.root == root and folder.speaker == "alice"
    assert folder.adapter == root / "adapter"
    assert folder.adapter_config == root / "adapter" / "adapter_config.json"
    assert folder.anchors == root / "anchors"
    assert folder.toml == root / "voice.toml"
    assert folder.eval == root / "eval"
    with pytest.raises(AttributeError):
        folder.adapter = root  # type: ignore[misc]
    assert anchor_name(2) == "anchors/anchor-2.wav"
    assert not folder.exists() and not folder.is_trained() and folder.anchor_files() == []
    assert folder.read_meta() == {}

    folder.adapter.mkdir(parents=True)
    assert folder.exists() and not folder.is_trained()
    folder.adapter_config.write_text("{}")
    assert folder.is_trained()
    folder.anchors.mkdir()
    for n in (2, 1):
        (folder.root / anchor_name(n)).write_bytes(b"")
    (folder.anchors / "notes.txt").write_text("not audio")
    assert [p.name for p in folder.anchor_files()] == ["anchor-1.wav", "anchor-2.wav"]


def test_voice_toml_round_trips_and_an_unreadable_one_is_one_line(workspace: Workspace) -> None:
    folder = VoiceFolder.for_speaker(workspace, "alice")
    meta = {"speaker": "alice", "step": 12, "anchors": [{"file": anchor_name(1), "text": "Hi."}]}
    folder.write_meta(meta)
    assert folder.read_meta() == meta
    assert folder.listed_anchors() == [(folder.root / "anchors" / "anchor-1.wav", "Hi.")]
    folder.toml.write_text("speaker = ")
    with pytest.raises(VoiceError, match=r"voice\.toml: unreadable .*export the voice again"):
        folder.read_meta()


def test_a_trained_voice_needs_consent_first_then_an_adapter(workspace: Workspace) -> None:
    with pytest.raises(ConsentError):
        trained_voice(workspace, "carol")
    with pytest.raises(VoiceError, match="'alice' has no trained voice"):
        trained_voice(workspace, "alice")
    folder = VoiceFolder.for_speaker(workspace, "alice")
    folder.adapter.mkdir(parents=True)
    folder.adapter_config.write_text("{}")
    # An adapter alone is not enough: the voice must carry the speaker's consent record.
    with pytest.raises(ConsentError, match="carries no consent record"):
        trained_voice(workspace, "alice")
    from safetensors.numpy import save_file

    save_file({"w": np.zeros(2, np.float32)}, str(folder.adapter / "adapter_model.safetensors"))
    bind_consent(workspace, "alice", folder)
    assert trained_voice(workspace, "alice") == folder


@pytest.mark.parametrize(
    ("seconds", "anchor"),
    [(2.9, False), (3.0, True), (7.5, True), (10.0, True), (10.1, False), (12.0, False)],
)
def test_the_anchor_rule_takes_3_to_10_seconds(seconds: float, anchor: bool) -> None:
    """One rule for every anchor: CSM context turns and ECAPA references alike. A 12 s segment
    is never an anchor (the speaker check once took up to 15 s)."""
    assert is_anchor_length(seconds) is anchor
    assert (best_anchors([_seg("a", seconds, 20.0)], 3) != []) is anchor


def test_anchors_are_the_best_snr_first_ties_by_path_and_clean() -> None:
    segs = [
        _seg("c", 5.0, 20.0),
        _seg("b", 5.0, 20.0),
        _seg("a", 5.0, 10.0),
        _seg("loud", 5.0, 40.0, flags=("clipped",)),
        _seg("long", 12.0, 50.0),
        _seg("untranscribed", 5.0, 30.0, flags=(NO_TEXT_FLAG,)),
    ]
    assert [s.audio[-5] for s in best_anchors(segs, 2)] == ["b", "c"]
    tolerated = best_anchors(segs, 8, tolerated_flags=REFERENCE_FLAGS)
    assert [Path(s.audio).stem for s in tolerated] == ["untranscribed", "b", "c", "a"]


def test_reference_flags_are_ingests_analysis_flags() -> None:
    assert {NO_TEXT_FLAG, OTHER_SPEAKER_FLAG} == REFERENCE_FLAGS
    assert VOICE_ANCHORS == 3 and REFERENCE_ANCHORS == 8


def test_a_voice_takes_transcribed_anchors_and_falls_back_to_any_length() -> None:
    segs = [_seg("x", 5.0, 30.0, text=""), _seg("y", 6.0, 10.0), _seg("z", 12.0, 50.0)]
    assert [Path(s.audio).stem for s in voice_anchors(segs)] == ["y"]
    assert [Path(s.audio).stem for s in voice_anchors(segs[:1] + segs[2:])] == ["z"]
    assert voice_anchors([_seg("x", 5.0, 30.0, text="")]) == []


def test_anchor_paths_prefer_the_voices_own_anchors(workspace: Workspace) -> None:
    segs = [_seg("a", 5.0, 20.0), _seg("b", 12.0, 30.0)]
    assert anchor_paths(workspace, "alice", segs) == [workspace.root / "segments/alice/a.wav"]
    folder = VoiceFolder.for_speaker(workspace, "alice")
    folder.anchors.mkdir(parents=True)
    (folder.root / anchor_name(1)).write_bytes(b"")
    assert anchor_paths(workspace, "alice", segs) == [folder.root / anchor_name(1)]


def test_an_unmarked_voice_is_recognised_by_its_exact_layout(tmp_path: Path) -> None:
    folder = VoiceFolder(tmp_path / "alice")
    folder.eval.mkdir(parents=True)
    (folder.eval / "r.json").write_text("{}")
    assert is_unmarked_voice(folder.root)  # evaluation reports only
    folder.adapter.mkdir()
    folder.anchors.mkdir()
    assert not is_unmarked_voice(folder.root)  # no voice.toml
    folder.write_meta({"run_id": "r1", "exported_at": "now", "base_model": "tiny"})
    assert is_unmarked_voice(folder.root)
    folder.toml.write_text("= broken")
    assert not is_unmarked_voice(folder.root)
    (folder.root / "mine.txt").write_text("user file")
    assert not is_unmarked_voice(folder.root)
