"""Training examples, their deterministic batches and the codec-code cache."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import numpy as np
import pytest

from core.dataset.ingest import accept_passing
from core.errors import TrainingError
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

    def encode(
        audio: np.ndarray,
    ) -> np.ndarray:  # the real path passes core.models.csm.encode_audio
        calls.append(len(audio))
        return np.arange(8 * 10, dtype=np.int64).reshape(8, 10)

    first = cache.codes(seg, encode)
    second = cache.codes(seg, encode)
    assert len(calls) == 1 and np.array_equal(first, second) and len(cache) == 1
    assert calls[0] == pytest.approx(seg.duration_sec * 24000, abs=2)
    (accepted.root / seg.audio).write_bytes((accepted.root / seg.audio).read_bytes() + b"\0\0")
    cache.codes(seg, encode)  # the audio changed: encoded again
    assert len(calls) == 2 and len(CodeCache(accepted, "other-model")) == 0


# ----------------------------------------------------------------------------- stored splits


@pytest.mark.parametrize("n_recordings", [1, 2, 5])
@pytest.mark.parametrize("training_seed", [1, 7, 13])
def test_training_never_sees_what_evaluation_holds_out(
    tmp_path: Path, n_recordings: int, training_seed: int
) -> None:
    """Over catalog sizes (1 and 2 recordings: split by blocks; 5: by recording) and odd
    training seeds: no segment evaluation holds out is a training target or context, and
    every context turn comes from its target's split."""
    from core.evaluation.evaluate import held_out_segments
    from tests.splitdata import add_recordings, stored_splits

    for catalog_seed in range(4):
        ws = Workspace.create(tmp_path / f"w{catalog_seed}", name="w")
        sizes = [random.Random(catalog_seed * 31 + r).randint(8, 40) for r in range(n_recordings)]
        add_recordings(ws, "alice", sizes, seed=catalog_seed)
        data = speaker_examples(ws, "alice", seed=training_seed)
        held_out, _, _ = held_out_segments(ws, "alice")
        split_of = stored_splits(ws, "alice")
        trained = {s.id for ex in data.train for s in (ex.target, ex.context) if s is not None}
        held = {s.id for s in held_out}
        assert held and trained, (n_recordings, catalog_seed)
        assert not trained & held, (n_recordings, catalog_seed, training_seed)
        assert all(split_of[i] == "train" for i in trained)
        for ex in data.train + (() if data.val_from_train else data.val):
            if ex.context is not None:
                assert split_of[ex.context.id] == split_of[ex.target.id]


def test_train_preflight_warns_when_the_split_is_far_from_80_10_10(
    workspace: Workspace,
) -> None:
    from core.training.runs import preflight
    from tests.splitdata import add_recordings

    add_recordings(workspace, "alice", [6, 6, 6], seed=3)  # a third of the minutes each
    warnings = preflight(workspace, "alice", workspace.settings.training, "tiny", "cpu")
    (line,) = [w for w in warnings if "80/10/10" in w]
    assert line.startswith("alice: split train ") and "podforge splits" in line
    assert "no test and no val split" in line  # rather than train on a third of the data
    data = speaker_examples(workspace, "alice", seed=1)
    assert data.warnings == (line,) and data.val_from_train and len(data.train) == 18


def test_a_split_of_one_segment_trains_without_a_borrowed_context(workspace: Workspace) -> None:
    """Two one-segment recordings beside a long one: val holds one segment, whose conversation
    has no context turn rather than one from the train split."""
    from tests.splitdata import add_recordings, stored_splits

    add_recordings(workspace, "alice", [12, 1, 1], seed=2)
    data = speaker_examples(workspace, "alice", seed=3)
    split_of = stored_splits(workspace, "alice")
    assert [ex.context for ex in data.val] == [None] and not data.val_from_train
    assert all(ex.context is not None and split_of[ex.context.id or 0] == "train"
               for ex in data.train)  # fmt: skip
