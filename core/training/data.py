"""Training data: a speaker's accepted segments as CSM conversations, with cached codec codes.

Examples are the speaker's **accepted** segments that have a transcript, split with the
same deterministic rule as the exports (:func:`core.dataset.assign_splits`): train and
val are used here, test is kept for evaluation. Each example is a conversation of two
turns: a context turn (the previous accepted segment of the same recording, else a
deterministically chosen other segment of the speaker) and the target turn.

Mimi codes are computed once per segment and cached in ``runs/.codes/<model>/`` keyed by
the hash of the segment's audio file: changing the audio (a re-ingest) changes the key;
the transcript is not cached (it is read from the catalog at every run), so a fixed
transcript is used at once.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from core.catalog import Catalog
from core.dataset import assign_splits
from core.errors import TrainingError
from core.records import Segment
from core.workspace import Workspace

Codes = npt.NDArray[np.int64]  # (num_codebooks, frames)
Encoder = Callable[[npt.NDArray[np.float32]], Codes]


@dataclass(frozen=True)
class Example:
    """One training conversation: context turn, then the target turn."""

    target: Segment
    context: Segment


@dataclass(frozen=True)
class SpeakerData:
    train: tuple[Example, ...]
    val: tuple[Example, ...]
    note: str


def speaker_examples(
    ws: Workspace, speaker: str, seed: int, max_clip_sec: float = 15.0
) -> SpeakerData:
    """The speaker's train and val conversations (deterministic from ``seed``).

    Segments longer than ``max_clip_sec`` are left out (cutting their audio would no longer
    match their transcript).
    """
    with Catalog.open(ws.catalog_path) as catalog:
        accepted = [
            s
            for s in catalog.segments(speaker=speaker, status="accepted")
            if s.text.strip() and s.duration_sec <= max_clip_sec
        ]
        recordings = {r.id: r for r in catalog.recordings(speaker) if r.id is not None}
    if len(accepted) < 2:
        raise TrainingError(
            f"speaker {speaker!r} has {len(accepted)} accepted segment(s) with a transcript; "
            f"training needs at least 2 (review in the app, or `podforge accept {ws.root} "
            f"--passing --speaker {speaker}`)"
        )
    splits, note = assign_splits(accepted, recordings, seed)
    rng = random.Random(seed)
    by_id = {s.id: s for s in accepted}
    ordered = sorted(accepted, key=lambda s: (s.recording_id, s.start_sec))
    examples: dict[str, list[Example]] = {"train": [], "val": [], "test": []}
    for i, seg in enumerate(ordered):
        previous = ordered[i - 1] if i > 0 else None
        if previous is None or previous.recording_id != seg.recording_id:
            others = [s for s in ordered if s.id != seg.id]
            previous = others[rng.randrange(len(others))]
        examples[splits[seg.id or 0]].append(Example(target=by_id[seg.id], context=previous))
    val = examples["val"] or examples["train"][-1:]  # tiny sets: evaluate on one train example
    return SpeakerData(train=tuple(examples["train"]), val=tuple(val), note=note)


class CodeCache:
    """Mimi codes per segment audio, on disk, computed once per (model, audio content)."""

    def __init__(self, ws: Workspace, model_key: str) -> None:
        safe = hashlib.sha256(model_key.encode()).hexdigest()[:16]
        self.folder = ws.runs_dir / ".codes" / safe
        self.root = ws.root

    def codes(self, segment: Segment, encode: Encoder) -> Codes:
        from core.atomic import atomic_path
        from core.audio import read

        path = self.root / segment.audio
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:32]
        cached = self.folder / f"{digest}.npy"
        if cached.is_file():
            stored: Codes = np.load(cached)
            return stored
        audio, _ = read(path, target_rate=24000)
        codes = np.asarray(encode(audio), dtype=np.int64)
        cached.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(cached) as tmp, tmp.open("wb") as fh:
            np.save(fh, codes)
        return codes

    def __len__(self) -> int:
        return len(list(self.folder.glob("*.npy"))) if self.folder.is_dir() else 0


def batch_for_step(
    examples: tuple[Example, ...], step: int, batch_size: int, seed: int
) -> list[Example]:
    """The examples of one micro-batch: a pure function of (seed, step), so a resumed run
    sees exactly the batches an uninterrupted one would (no iterator state to save)."""
    per_epoch = max(1, len(examples))
    epoch, offset = divmod(step * batch_size, per_epoch)
    order = list(range(len(examples)))
    random.Random(f"{seed}:{epoch}").shuffle(order)
    picks = []
    for k in range(batch_size):
        e, o = divmod(offset + k, per_epoch)
        if e:  # spills into the next epoch's order
            nxt = list(range(len(examples)))
            random.Random(f"{seed}:{epoch + e}").shuffle(nxt)
            picks.append(examples[nxt[o]])
        else:
            picks.append(examples[order[o]])
    return picks


def epoch_of(step: int, batch_size: int, n_examples: int) -> float:
    return step * batch_size / max(1, n_examples)
