"""The training set's stored train/val/test splits of accepted segments.

Every accepted, transcribed segment gets a split **once**, stored in the catalog
(``segments.split``), and keeps it: export, training (targets and context turns),
validation and evaluation all read it, so what evaluation holds out was never trained on.
Splits are assigned lazily, at the first use after a segment is accepted
(:func:`ensure_splits`: export, training, evaluation, ``podforge splits``); only
:func:`reassign_splits` (``podforge splits --reassign``) moves a segment.

Per speaker, segments form groups that never straddle two splits: a whole recording, or a
~60 s block of one while the speaker has fewer than three recordings (the recording's
``split_unit``, stored). New groups are dealt towards 80/10/10 of the speaker's minutes,
in an order drawn from the catalog's split seed (:func:`plan_splits`); a split further
than 5 points from its share is reported (:meth:`SplitSummary.warning`).

The exports that read these splits are :mod:`core.dataset.exports`.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Literal

from core.catalog import Catalog
from core.records import Recording, Segment

Split = Literal["train", "val", "test"]
SPLITS: tuple[Split, ...] = ("train", "val", "test")
Unit = Literal["recording", "block"]
BLOCK_SECONDS = 60.0
MIN_RECORDINGS_FOR_RECORDING_SPLIT = 3
TARGET_SHARES: dict[str, float] = {"train": 0.8, "val": 0.1, "test": 0.1}
"""Each split's target share of a speaker's minutes."""
BALANCE_TOLERANCE = 0.05
"""A split further than this from its share of the minutes is reported (a warning)."""
HELD_OUT: tuple[Split, ...] = ("test", "val")
MIN_GROUPS: dict[str, int] = {"test": 3, "val": 2}
"""With at least this many groups, an empty held-out split gets the smallest one even when
it is larger than its share, if it holds at most :data:`MAX_FORCED_SHARE` of the minutes."""
MAX_FORCED_SHARE = 0.20
DEFAULT_SPLIT_SEED = 42
_SPLIT_OF: dict[str, Split] = {s: s for s in SPLITS}
SPLIT_SEED_KEY = "split_seed"


@dataclass(frozen=True)
class SplitPlan:
    """What :func:`plan_splits` decided: new splits and recording units, and notes."""

    splits: dict[int, Split]
    """Segment id -> split, for the segments that had none."""
    units: dict[int, Unit]
    """Recording id -> unit, for the recordings whose unit was not stored yet."""
    notes: list[str]


@dataclass(frozen=True)
class SplitSummary:
    """A speaker's stored splits: what each holds (accepted segments with a transcript)."""

    speaker: str
    counts: dict[str, int]
    seconds: dict[str, float]
    groups: int
    block_recordings: int
    """How many of the speaker's recordings are split by ~60 s blocks."""

    @property
    def total_seconds(self) -> float:
        return sum(self.seconds.values())

    def share(self, split: str) -> float:
        total = self.total_seconds
        return self.seconds.get(split, 0.0) / total if total > 0 else 0.0

    @property
    def balanced(self) -> bool:
        """Every split within :data:`BALANCE_TOLERANCE` of its share of the minutes."""
        return all(abs(self.share(s) - TARGET_SHARES[s]) <= BALANCE_TOLERANCE for s in SPLITS)

    def warning(self) -> str | None:
        """One line when the split is far from 80/10/10 (``None`` when it is near)."""
        if self.total_seconds <= 0 or self.balanced:
            return None
        minutes = " / ".join(f"{s} {self.seconds.get(s, 0.0) / 60:.1f} min" for s in SPLITS)
        shares = "/".join(f"{round(self.share(s) * 100)}" for s in SPLITS)
        unit = "~60 s blocks" if self.block_recordings else "recordings"
        empty = [s for s in HELD_OUT if not self.counts.get(s)]
        lacking = f" (no {' and no '.join(empty)} split)" if empty else ""
        if len(empty) == len(HELD_OUT):
            lacking = lacking[:-1] + ": nothing held out)"
        return (
            f"{self.speaker}: split {minutes} ({shares} %){lacking}, far from 80/10/10: its "
            f"{self.groups} group(s) ({unit}; a group never straddles two splits) are too few "
            "or too uneven to balance; more recordings bring it closer (then `podforge "
            "splits WORKSPACE --reassign` rebalances what is already split)"
        )


@dataclass(frozen=True)
class SplitState:
    """What :func:`ensure_splits` found and did."""

    seed: int
    assigned: int
    """Segments given a split just now."""
    summaries: list[SplitSummary]
    notes: list[str]
    warnings: list[str]


def usable(segment: Segment) -> bool:
    """Whether a segment belongs in a split: accepted, with a transcript."""
    return segment.status == "accepted" and bool(segment.text.strip())


def plan_splits(
    segments: Sequence[Segment],
    recordings: Mapping[int, Recording],
    units: Mapping[int, str | None],
    seed: int,
) -> SplitPlan:
    """Splits for the ``segments`` that have none (``Segment.split is None``), keeping those
    that have one; a pure function, deterministic given its inputs.

    Per speaker, segments form **groups** that never straddle two splits: a whole recording
    (unit ``recording``) or a ~60 s block of one (unit ``block``). A recording's unit is the
    stored one (``units``), else inferred from its assigned segments (one split: recording,
    several: block), else ``recording`` when the speaker has at least
    :data:`MIN_RECORDINGS_FOR_RECORDING_SPLIT` recordings here, ``block`` otherwise. A new
    segment in a group that already has a split joins it (the nearest assigned segment's);
    the new groups are dealt out towards :data:`TARGET_SHARES` of the speaker's minutes
    (assigned ones included): in an order drawn from ``seed``, test and then val take each
    group that still fits under their target, then the one group that brings them closest
    to it if it does; test (with 3+ groups) and val (with 2+), when still empty, get the
    smallest group if it holds at most :data:`MAX_FORCED_SHARE` of the minutes and one is
    left for train (so a few big groups leave them empty rather than starve training);
    train takes the rest.
    """
    by_speaker: dict[str, list[Segment]] = defaultdict(list)
    for s in segments:
        if s.id is not None:
            by_speaker[s.speaker].append(s)
    out: dict[int, Split] = {}
    new_units: dict[int, Unit] = {}
    notes: list[str] = []
    for speaker, segs in sorted(by_speaker.items()):
        rec_ids = sorted({s.recording_id for s in segs})
        unit_of: dict[int, Unit] = {}
        for rid in rec_ids:
            stored = units.get(rid)
            assigned = {s.split for s in segs if s.recording_id == rid and s.split is not None}
            unit: Unit
            if stored in ("recording", "block"):
                unit = "recording" if stored == "recording" else "block"
            elif assigned:
                unit = "block" if len(assigned) > 1 else "recording"
            else:
                by_recording = len(rec_ids) >= MIN_RECORDINGS_FOR_RECORDING_SPLIT
                unit = "recording" if by_recording else "block"
            unit_of[rid] = unit
            if stored != unit:
                new_units[rid] = unit
        blocks = sum(1 for rid in rec_ids if unit_of[rid] == "block")
        if blocks:
            notes.append(
                f"{speaker}: {blocks} recording(s) split by ~{BLOCK_SECONDS:.0f} s blocks within "
                f"the recording (first split when the speaker had fewer than "
                f"{MIN_RECORDINGS_FOR_RECORDING_SPLIT} recordings)"
            )
        groups = _groups(segs, recordings, unit_of)
        current: dict[Split, float] = dict.fromkeys(SPLITS, 0.0)
        filled: dict[Split, int] = dict.fromkeys(SPLITS, 0)
        fresh: dict[str, float] = {}
        for key, members in groups.items():
            known = [m for m in members if m.split in _SPLIT_OF]
            if not known:
                fresh[key] = sum(m.duration_sec for m in members)
                continue
            for m in members:
                sp = _SPLIT_OF.get(m.split or "") or _SPLIT_OF[_nearest(m, known).split or ""]
                if m.split is None:
                    out[m.id or 0] = sp
                current[sp] += m.duration_sec
            filled[_SPLIT_OF[_nearest(members[0], known).split or ""]] += 1
        chosen = _deal(fresh, current, filled, len(groups), seed)
        for key, split in chosen.items():
            for m in groups[key]:
                out[m.id or 0] = split
    return SplitPlan(splits=out, units=new_units, notes=notes)


def _deal(
    fresh: Mapping[str, float],
    current: dict[Split, float],
    filled: dict[Split, int],
    n_groups: int,
    seed: int,
) -> dict[str, Split]:
    """Deal the new groups (key -> seconds) to splits towards :data:`TARGET_SHARES` of all the
    minutes, given what each split holds already (``current`` seconds, ``filled`` groups)."""
    total = sum(current.values()) + sum(fresh.values())
    order = sorted(fresh, key=lambda key: _hash(seed, key))
    chosen: dict[str, Split] = {}

    def take(key: str, split: Split) -> None:
        chosen[key] = split
        current[split] += fresh[key]
        filled[split] += 1

    for held in HELD_OUT:
        target = TARGET_SHARES[held] * total
        for key in order:  # first fit under the target, in the seeded order
            if key not in chosen and current[held] + fresh[key] <= target:
                take(key, held)
        free = [k for k in order if k not in chosen]
        if free and current[held] < target:  # then the closest top-up, if it helps
            best = min(free, key=lambda k: abs(current[held] + fresh[k] - target))
            if abs(current[held] + fresh[best] - target) < target - current[held]:
                take(best, held)
    for held in HELD_OUT:  # an empty held-out split takes the smallest group if it may
        free = [k for k in order if k not in chosen]
        spare = len(free) - (0 if filled["train"] else 1)
        if filled[held] or n_groups < MIN_GROUPS[held] or spare <= 0:
            continue
        smallest = min(free, key=lambda k: fresh[k])  # ties: the seeded order
        if fresh[smallest] <= MAX_FORCED_SHARE * total:
            take(smallest, held)
    for key in order:
        if key not in chosen:
            take(key, "train")
    return chosen


def assign_splits(
    segments: Sequence[Segment], recordings: Mapping[int, Recording], seed: int
) -> tuple[dict[int, Split], str]:
    """Fresh splits of ``segments`` (their stored ones ignored), as :func:`plan_splits` deals
    them; also a note on how groups were formed."""
    fresh = [replace(s, split=None) for s in segments]
    plan = plan_splits(fresh, recordings, {}, seed)
    return plan.splits, "; ".join(plan.notes)


def split_seed(catalog: Catalog) -> int | None:
    """The seed the catalog's splits were first assigned with (``None``: none yet)."""
    value = catalog.meta(SPLIT_SEED_KEY)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def ensure_splits(
    catalog: Catalog, *, speaker: str | None = None, seed: int | None = None
) -> SplitState:
    """Give every usable segment (accepted, transcribed) of ``speaker`` (or everyone) that has
    no split yet its split, stored in the catalog, and summarise the stored splits.

    Segments that have a split keep it, whatever ``seed`` says: the seed only draws the
    splits of new groups. It is the catalog's split seed (stored at the first assignment:
    ``seed``, else :data:`DEFAULT_SPLIT_SEED`); a different ``seed`` given here is ignored
    with a warning (``podforge splits --reassign --seed N`` changes it). Reading and writing
    happen in one transaction, so two processes never assign the same segment twice.
    """
    stored_seed = split_seed(catalog)
    use = stored_seed if stored_seed is not None else seed
    use = DEFAULT_SPLIT_SEED if use is None else use
    assigned = 0
    notes: list[str] = []
    if _unassigned(catalog, speaker):
        with catalog.transaction():
            stored_seed = split_seed(catalog)  # again, under the write lock
            use = stored_seed if stored_seed is not None else use
            segs = [s for s in catalog.segments(status="accepted", speaker=speaker) if usable(s)]
            recordings = {r.id: r for r in catalog.recordings(speaker) if r.id is not None}
            plan = plan_splits(segs, recordings, catalog.split_units(speaker), use)
            if plan.splits or plan.units:
                catalog.set_splits(list(plan.splits.items()), units=dict(plan.units))
            if stored_seed is None and plan.splits:
                catalog.set_meta(SPLIT_SEED_KEY, str(use))
            assigned = len(plan.splits)
    warnings = []
    if seed is not None and stored_seed is not None and seed != stored_seed:
        warnings.append(
            f"the splits were first assigned with seed {stored_seed} and are kept (a segment "
            f"never changes split by itself): --seed {seed} is ignored; `podforge splits "
            f"WORKSPACE --reassign --seed {seed}` redoes them all"
        )
    summaries = split_summaries(catalog, speaker)
    for summary in summaries:
        if summary.block_recordings:
            notes.append(
                f"{summary.speaker}: {summary.block_recordings} recording(s) split by "
                f"~{BLOCK_SECONDS:.0f} s blocks (the speaker had fewer than "
                f"{MIN_RECORDINGS_FOR_RECORDING_SPLIT} recordings when they were first split)"
            )
        line = summary.warning()
        if line:
            warnings.append(line)
    return SplitState(use, assigned, summaries, notes, warnings)


def reassign_splits(
    catalog: Catalog, *, speaker: str | None = None, seed: int | None = None
) -> tuple[int, SplitState]:
    """Forget the stored splits (of ``speaker``, or all) and assign them afresh with ``seed``
    (default: the catalog's split seed), which becomes the catalog's split seed. Returns how
    many usable segments changed split, and the new state. Voices trained and evaluations
    made before were made on the old splits."""
    with catalog.transaction():
        before = {s.id: s.split for s in catalog.segments(status="accepted", speaker=speaker)}
        if seed is None:
            stored = split_seed(catalog)
            seed = DEFAULT_SPLIT_SEED if stored is None else stored
        catalog.set_meta(SPLIT_SEED_KEY, str(seed))
        every = catalog.segments(speaker=speaker)
        catalog.set_splits(
            [(s.id, None) for s in every if s.id is not None],
            units=dict.fromkeys(catalog.split_units(speaker), None),
        )
    state = ensure_splits(catalog, speaker=speaker)  # its own transaction, with the new seed
    after = {s.id: s.split for s in catalog.segments(status="accepted", speaker=speaker)}
    moved = sum(1 for i, split in after.items() if before.get(i) is not None and
                before.get(i) != split)  # fmt: skip
    return moved, state


def split_summaries(catalog: Catalog, speaker: str | None = None) -> list[SplitSummary]:
    """Per speaker, what the stored splits hold (usable segments only)."""
    segs = [s for s in catalog.segments(status="accepted", speaker=speaker) if usable(s)]
    recordings = {r.id: r for r in catalog.recordings(speaker) if r.id is not None}
    units = catalog.split_units(speaker)
    by_speaker: dict[str, list[Segment]] = defaultdict(list)
    for s in segs:
        by_speaker[s.speaker].append(s)
    out = []
    for name, members in sorted(by_speaker.items()):
        rec_ids = {s.recording_id for s in members}
        unit_of: dict[int, Unit] = {
            rid: ("block" if units.get(rid) == "block" else "recording") for rid in rec_ids
        }
        counts: dict[str, int] = dict.fromkeys(SPLITS, 0)
        seconds: dict[str, float] = dict.fromkeys(SPLITS, 0.0)
        for s in members:
            if s.split in counts:
                counts[s.split] += 1
                seconds[s.split] += s.duration_sec
        out.append(
            SplitSummary(
                speaker=name,
                counts=counts,
                seconds=seconds,
                groups=len(_groups(members, recordings, unit_of)),
                block_recordings=sum(1 for u in unit_of.values() if u == "block"),
            )
        )
    return out


def _unassigned(catalog: Catalog, speaker: str | None) -> bool:
    return any(
        s.split is None and usable(s) for s in catalog.segments(status="accepted", speaker=speaker)
    )


def _groups(
    segs: Sequence[Segment], recordings: Mapping[int, Recording], unit_of: Mapping[int, Unit]
) -> dict[str, list[Segment]]:
    """Segments by group key: the recording's SHA-256, or ``<sha>:<block index>``."""
    groups: dict[str, list[Segment]] = defaultdict(list)
    for s in sorted(segs, key=lambda s: (s.recording_id, s.start_sec, s.id or 0)):
        sha = recordings[s.recording_id].sha256
        block = unit_of[s.recording_id] == "block"
        groups[f"{sha}:{int(s.start_sec // BLOCK_SECONDS)}" if block else sha].append(s)
    return groups


def _nearest(segment: Segment, known: Sequence[Segment]) -> Segment:
    return min(known, key=lambda k: (abs(k.start_sec - segment.start_sec), k.id or 0))


def _hash(seed: int, key: str) -> str:
    return hashlib.sha256(f"{seed}:{key}".encode()).hexdigest()
