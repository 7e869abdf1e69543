"""Training data: a speaker's accepted segments as CSM conversations, with cached codec codes.

Examples are the speaker's **accepted** segments that have a transcript, in the splits
stored in the catalog (:func:`core.dataset.splits.ensure_splits` assigns the ones that have none
first; ``training.seed`` plays no part in them): train and val are used here, test is kept
for evaluation. Each example is a conversation of two turns: a context turn and the target
turn. The context is always from the target's own split: the previous segment of the same
recording in that split, else one drawn (from the seed) among the split's other segments,
else none (a split of one segment). So a conversation never shows the model a segment of
another split.

Every run records the segment ids it trained and validated on in ``runs/<id>/split.json``
(:func:`write_split_record`).

Mimi codes are computed once per segment and cached in ``runs/.codes/<model>/`` keyed by
the hash of the segment's audio file: changing the audio (a re-ingest) changes the key;
the transcript is not cached (it is read from the catalog at every run), so a fixed
transcript is used at once.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from core.catalog import Catalog
from core.dataset.splits import ensure_splits, usable
from core.errors import TrainingError
from core.records import Segment
from core.workspace import Workspace

Codes = npt.NDArray[np.int64]  # (num_codebooks, frames)
Encoder = Callable[[npt.NDArray[np.float32]], Codes]
SPLIT_RECORD = "split.json"


@dataclass(frozen=True)
class Example:
    """One training conversation: context turn (``None``: none), then the target turn."""

    target: Segment
    context: Segment | None


@dataclass(frozen=True)
class SpeakerData:
    train: tuple[Example, ...]
    val: tuple[Example, ...]
    note: str
    val_from_train: bool = False
    """The val split was empty: ``val`` is the last training example (eval loss only)."""
    split_seed: int = 0
    warnings: tuple[str, ...] = ()
    """One line each: the speaker's split is far from 80/10/10."""


def speaker_examples(
    ws: Workspace, speaker: str, seed: int, max_clip_sec: float = 15.0
) -> SpeakerData:
    """The speaker's train and val conversations, from the stored splits (deterministic;
    ``seed`` draws only the context turns that are not the previous segment).

    Segments longer than ``max_clip_sec`` are left out (cutting their audio would no longer
    match their transcript). Assigns the splits of segments that have none (a catalog write).
    """
    with Catalog.open(ws.catalog_path) as catalog:
        ready = [
            s
            for s in catalog.segments(speaker=speaker, status="accepted")
            if usable(s) and s.duration_sec <= max_clip_sec
        ]
        if len(ready) < 2:
            raise TrainingError(
                f"speaker {speaker!r} has {len(ready)} accepted segment(s) with a transcript; "
                f"training needs at least 2 (review in the app, or `podforge accept "
                f"{ws.root} --passing --speaker {speaker}`)"
            )
        state = ensure_splits(catalog, speaker=speaker)
        ready = [
            s
            for s in catalog.segments(speaker=speaker, status="accepted")
            if usable(s) and s.duration_sec <= max_clip_sec
        ]
    by_split: dict[str, list[Segment]] = defaultdict(list)
    for s in sorted(ready, key=lambda s: (s.recording_id, s.start_sec, s.id or 0)):
        by_split[s.split or ""].append(s)
    rng = random.Random(seed)  # nosec B311  # a seeded, reproducible order
    examples: dict[str, list[Example]] = {"train": [], "val": []}
    for split, examples_of in examples.items():
        ordered = by_split.get(split, [])
        for i, seg in enumerate(ordered):
            previous = ordered[i - 1] if i > 0 else None
            if previous is None or previous.recording_id != seg.recording_id:
                others = [s for s in ordered if s.id != seg.id]
                previous = others[rng.randrange(len(others))] if others else None
            examples_of.append(Example(target=seg, context=previous))
    if not examples["train"]:
        raise TrainingError(
            f"speaker {speaker!r} has no accepted segment of at most {max_clip_sec:g} s in the "
            f"train split; accept more recordings (see `podforge splits {ws.root}`)"
        )
    val = examples["val"] or examples["train"][-1:]  # tiny sets: eval loss on a train example
    return SpeakerData(
        train=tuple(examples["train"]),
        val=tuple(val),
        note="; ".join(state.notes),
        val_from_train=not examples["val"],
        split_seed=state.seed,
        warnings=tuple(w for w in state.warnings if w.startswith(f"{speaker}: ")),
    )


def segment_ids(examples: Sequence[Example]) -> list[int]:
    """The ids of every segment in ``examples`` (targets and context turns), sorted."""
    found = {s.id for ex in examples for s in (ex.target, ex.context) if s is not None}
    return sorted(i for i in found if i is not None)


def write_split_record(run_dir: Path, speaker: str, data: SpeakerData) -> dict[str, Any]:
    """Write ``runs/<id>/split.json``: the segment ids the run trains on (``train``: targets
    and context turns) and validates on (``val``), with the split seed.

    A resumed run adds the ids it uses now to those recorded before (they are the same
    unless the splits were reassigned meanwhile, which is then logged in ``warnings``)."""
    from core.atomic import atomic_write_text

    path = run_dir / SPLIT_RECORD
    record: dict[str, Any] = {
        "schema": 1,
        "speaker": speaker,
        "split_seed": data.split_seed,
        "train": segment_ids(data.train),
        "val": segment_ids(data.val),
        "val_from_train": data.val_from_train,
        "warnings": list(data.warnings),
    }
    try:
        before = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        before = None
    if isinstance(before, dict):
        for key in ("train", "val"):
            old = {int(i) for i in before.get(key, [])}
            if old != set(record[key]):
                record["warnings"].append(
                    f"{key} segments changed since an earlier start of this run (splits "
                    "reassigned?): the ids listed are all those it used"
                )
            record[key] = sorted(old | set(record[key]))
    atomic_write_text(path, json.dumps(record, indent=1) + "\n")
    return record


class CodeCache:
    """Mimi codes per segment audio, on disk, computed once per (model, audio content)."""

    def __init__(self, ws: Workspace, model_key: str) -> None:
        safe = hashlib.sha256(model_key.encode()).hexdigest()[:16]
        self.folder = ws.runs_dir / ".codes" / safe
        self.root = ws.root

    def codes(self, segment: Segment, encode: Encoder) -> Codes:
        from core.atomic import atomic_path
        from core.audio.io import read

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
    random.Random(f"{seed}:{epoch}").shuffle(order)  # nosec B311  # reproducible, not secret
    picks = []
    for k in range(batch_size):
        e, o = divmod(offset + k, per_epoch)
        if e:  # spills into the next epoch's order
            nxt = list(range(len(examples)))
            random.Random(f"{seed}:{epoch + e}").shuffle(nxt)  # nosec B311  # reproducible
            picks.append(examples[nxt[o]])
        else:
            picks.append(examples[order[o]])
    return picks


def epoch_of(step: int, batch_size: int, n_examples: int) -> float:
    return step * batch_size / max(1, n_examples)
