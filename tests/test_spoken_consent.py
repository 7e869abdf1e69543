"""Spoken consent: `speaker add --consent-audio` keeps a copy and its hash, the voice export
carries the hash, and training's pre-flight holds the clip to the speaker's accepted segments.

The speaker model here is the tiny random-weight ECAPA, so it cannot tell two voices apart
(every clip scores ~0.99 against any other): what is tested for real is the plumbing (the
copy, the hash, the reference segments, the model path, the threshold and the refusals).
With the real ECAPA (`[models] speaker`), the same code compares real voices."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys

import pytest

from core.dataset.ingest import accept_passing
from core.errors import ConsentError
from core.training.runs import preflight, run_settings
from core.voices.consent import bind_consent
from core.voices.folder import VoiceFolder
from core.voices.spoken import check_spoken_consent
from core.workspace import Workspace
from tests.conftest import make_tiny_voice


def _add(ws: Workspace, clip: object, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tui.cli", "speaker", "add", str(ws.root), "alice",
         "--consent", "I, Alice, agree to podforge cloning my voice for this show.",
         "--granted-by", "Alice", "--consent-audio", str(clip), *extra],
        capture_output=True, text=True, check=False,
    )  # fmt: skip


@pytest.fixture
def spoken(demo_copy: Workspace) -> Workspace:
    """The demo workspace with alice's passing segments accepted and her spoken consent: one
    of her own recordings' segments stands in for the clip."""
    assert accept_passing(demo_copy, "alice") > 0
    clip = next((demo_copy.root / "segments" / "alice").rglob("*.wav"))
    outside = demo_copy.root.parent / "consent-take.wav"
    shutil.copyfile(clip, outside)
    before = hashlib.sha256(outside.read_bytes()).hexdigest()
    run = _add(demo_copy, outside)
    assert run.returncode == 0, run.stderr
    assert "spoken: consent/alice-" in run.stdout
    assert hashlib.sha256(outside.read_bytes()).hexdigest() == before  # the original untouched
    return Workspace.open(demo_copy.root)


def test_the_clip_is_copied_with_its_hash_and_the_export_carries_it(spoken: Workspace) -> None:
    consent = spoken.settings.speakers["alice"].consent
    assert consent is not None and consent.audio.startswith("consent/alice-")
    copy = spoken.root / consent.audio
    assert hashlib.sha256(copy.read_bytes()).hexdigest() == consent.audio_sha256
    make_tiny_voice(spoken, "alice", 1)
    record = bind_consent(spoken, "alice", VoiceFolder.for_speaker(spoken, "alice"))
    assert record["audio_sha256"] == consent.audio_sha256
    meta = VoiceFolder.for_speaker(spoken, "alice").read_meta()
    assert meta["consent"]["audio_sha256"] == consent.audio_sha256


def test_preflight_checks_the_clip_against_the_accepted_segments(spoken: Workspace) -> None:
    result = check_spoken_consent(spoken, "alice")
    assert result is not None and result.references > 0
    assert result.similarity >= result.threshold == spoken.settings.qc.min_speaker_similarity
    training = run_settings(spoken, steps=2)
    preflight(spoken, "alice", training, "tiny", "cpu")  # passes
    assert check_spoken_consent(spoken, "bob") is None  # bob has no clip: nothing to check


def test_a_clip_unlike_the_speaker_or_changed_or_missing_is_refused(spoken: Workspace) -> None:
    training = run_settings(spoken, steps=2)
    # a threshold no other recording reaches stands in for another person's voice
    spoken.settings.qc.min_speaker_similarity = 1.0
    with pytest.raises(ConsentError, match=r"does not sound like 'alice'") as info:
        preflight(spoken, "alice", training, "tiny", "cpu")
    assert "\n" not in str(info.value) and "--consent-audio" in str(info.value)
    spoken.settings.qc.min_speaker_similarity = 0.55
    consent = spoken.settings.speakers["alice"].consent
    assert consent is not None
    clip = spoken.root / consent.audio
    clip.write_bytes(clip.read_bytes()[:-2] + b"\x00\x01")
    with pytest.raises(ConsentError, match="changed since it was recorded"):
        preflight(spoken, "alice", training, "tiny", "cpu")
    clip.unlink()
    with pytest.raises(ConsentError, match="clip is missing"):
        check_spoken_consent(spoken, "alice")
    assert not any(spoken.runs_dir.iterdir()) if spoken.runs_dir.exists() else True


def test_a_bad_consent_clip_is_one_line(demo_copy: Workspace) -> None:
    run = _add(demo_copy, demo_copy.root / "nope.wav")
    assert run.returncode == 1 and run.stderr.count("\n") == 1 and "nope.wav" in run.stderr
    short = demo_copy.root.parent / "short.wav"
    import numpy as np
    import soundfile as sf

    sf.write(short, np.zeros(24000, np.float32), 24000)
    run = _add(demo_copy, short)
    assert run.returncode == 1 and "too short for spoken consent" in run.stderr
    assert not (demo_copy.root / "consent").exists()
