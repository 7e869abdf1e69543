"""Training examples, their deterministic batches and the codec-code cache."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from core.errors import TrainingError
from core.ingest import accept_passing
from core.training.data import CodeCache, batch_for_step, speaker_examples
from core.workspace import Workspace


@pytest.fixture
def accepted(demo_workspace: Workspace, tmp_path: Path) -> Workspace:
    shutil.copytree(demo_workspace.root, tmp_path / "demo")
    ws = Workspace.open(tmp_path / "demo")
    accept_passing(ws)
    return ws


def test_examples_are_accepted_transcribed_and_deterministic(accepted: Workspace) -> None:
    data = speaker_examples(accepted, "alice", seed=42)
    again = speaker_examples(accepted, "alice", seed=42)
    assert data == again and data.train and data.val
    for ex in data.train + data.val:
        assert ex.target.status == "accepted" and ex.target.text
        assert ex.context.id != ex.target.id and ex.context.speaker == "alice"


def test_too_few_accepted_segments_is_a_clear_error(demo_workspace: Workspace) -> None:
    with pytest.raises(TrainingError, match=r"accept .* --passing --speaker bob"):
        speaker_examples(demo_workspace, "bob", seed=1)


def test_batches_are_a_pure_function_of_the_step(accepted: Workspace) -> None:
    train = speaker_examples(accepted, "alice", seed=42).train
    first = [batch_for_step(train, s, 2, seed=7) for s in range(10)]
    assert first == [batch_for_step(train, s, 2, seed=7) for s in range(10)]
    epoch = [ex for s in range(len(train) // 2) for ex in batch_for_step(train, s, 2, seed=7)]
    assert len({ex.target.id for ex in epoch}) == len(epoch)  # no repeats inside an epoch


def test_code_cache_encodes_once_per_audio(accepted: Workspace) -> None:
    cache = CodeCache(accepted, "tiny")
    seg = speaker_examples(accepted, "alice", seed=42).train[0].target
    calls = []

    def encode(audio: np.ndarray) -> np.ndarray:  # the real path passes core.csm.encode_audio
        calls.append(len(audio))
        return np.arange(8 * 10, dtype=np.int64).reshape(8, 10)

    first = cache.codes(seg, encode)
    second = cache.codes(seg, encode)
    assert len(calls) == 1 and np.array_equal(first, second) and len(cache) == 1
    assert calls[0] == pytest.approx(seg.duration_sec * 24000, abs=2)
    (accepted.root / seg.audio).write_bytes((accepted.root / seg.audio).read_bytes() + b"\0\0")
    cache.codes(seg, encode)  # the audio changed: encoded again
    assert len(calls) == 2 and len(CodeCache(accepted, "other-model")) == 0
