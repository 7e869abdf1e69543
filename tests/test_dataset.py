"""Splits and exports: deterministic, no recording in two splits, the three layouts."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
import soundfile as sf

from core.catalog import Catalog
from core.dataset.exports import export
from core.dataset.ingest import accept_passing
from core.dataset.splits import assign_splits
from core.errors import ExportError
from core.records import Recording, Segment
from core.workspace import Workspace

RECORD_FIELDS = {
    "audio", "text", "speaker", "recording", "start_sec", "end_sec", "duration_sec",
    "sample_rate", "bit_depth", "num_channels", "qc", "status", "split",
}  # fmt: skip
QC_FIELDS = {"rms_db", "snr_db", "clipped", "hum_score", "plosive_ratio", "lufs", "true_peak_db"}


def _fake(n_recordings: int, per_recording: int) -> tuple[list[Segment], dict[int, Recording]]:
    recs, segs = {}, []
    for r in range(1, n_recordings + 1):
        recs[r] = Recording(
            speaker="alice", path=f"raw/{r}.wav", original_name=f"{r}.wav", sha256=f"{r:064x}",
            sample_rate=24000, channels=1, duration_sec=600.0, format="WAV", id=r,
        )  # fmt: skip
        for i in range(per_recording):
            segs.append(
                Segment(recording_id=r, speaker="alice", audio=f"s/{r}-{i}.wav",
                        start_sec=i * 10.0, end_sec=i * 10.0 + 8, duration_sec=8.0,
                        text="x", id=r * 1000 + i)
            )  # fmt: skip
    return segs, recs


def test_splits_by_recording_are_deterministic_and_near_80_10_10() -> None:
    segs, recs = _fake(40, 10)
    a, note = assign_splits(segs, recs, seed=42)
    b, _ = assign_splits(segs, recs, seed=42)
    assert a == b and note == ""
    c, _ = assign_splits(segs, recs, seed=7)
    assert a != c
    share = {sp: sum(1 for v in a.values() if v == sp) / len(a) for sp in ("train", "val", "test")}
    assert share["train"] == pytest.approx(0.8, abs=0.05)
    assert share["val"] == pytest.approx(0.1, abs=0.05)
    assert share["test"] == pytest.approx(0.1, abs=0.05)
    for r in recs:  # a recording never straddles two splits
        assert len({a[s.id] for s in segs if s.recording_id == r and s.id}) == 1


def test_few_recordings_split_by_blocks_and_say_so() -> None:
    segs, recs = _fake(2, 60)
    splits, note = assign_splits(segs, recs, seed=42)
    assert "fewer than 3" in note
    assert set(splits.values()) == {"train", "val", "test"}
    for block_start in range(0, 600, 60):  # a one-minute block is never split
        block = {
            splits[s.id]
            for s in segs
            if s.id and block_start <= s.start_sec < block_start + 60 and s.recording_id == 1
        }
        assert len(block) <= 1


@pytest.fixture
def accepted_demo(demo_workspace: Workspace, tmp_path: Path) -> Workspace:
    shutil.copytree(demo_workspace.root, tmp_path / "demo")
    ws = Workspace.open(tmp_path / "demo")
    assert accept_passing(ws) > 0
    return ws


def test_jsonl_export(accepted_demo: Workspace) -> None:
    result = export(accepted_demo, "jsonl", seed=42)
    folder = accepted_demo.exports_dir / "jsonl"
    assert result.folder == folder
    total = 0
    for split in ("train", "val", "test"):
        lines = (folder / split / "metadata.jsonl").read_text().splitlines()
        total += len(lines)
        for line in lines:
            rec = json.loads(line)
            assert set(rec) == RECORD_FIELDS and set(rec["qc"]) == QC_FIELDS
            assert rec["split"] == split and rec["status"] == "accepted" and rec["text"]
            info = sf.info(str(folder / split / rec["audio"]))
            assert info.samplerate == rec["sample_rate"] == 24000
    with Catalog.open(accepted_demo.catalog_path) as cat:
        accepted = cat.segments(status="accepted")
        assert total == len([s for s in accepted if s.text]) == sum(result.counts.values())
        assert all(s.split in ("train", "val", "test") for s in accepted if s.text)


def test_ljspeech_and_audiofolder_exports(accepted_demo: Workspace) -> None:
    export(accepted_demo, "ljspeech")
    lj = accepted_demo.exports_dir / "ljspeech"
    rows = list(csv.reader((lj / "metadata.csv").open(), delimiter="|", quoting=csv.QUOTE_NONE))
    assert rows and all(len(r) == 3 and r[1] == r[2] for r in rows)
    assert all((lj / "wavs" / f"{r[0]}.wav").is_file() for r in rows)
    parts = sum(
        len((lj / f"metadata_{s}.csv").read_text().splitlines()) for s in ("train", "val", "test")
    )
    assert parts == len(rows)

    export(accepted_demo, "audiofolder")
    af = accepted_demo.exports_dir / "audiofolder"
    names = sorted(p.name for p in af.iterdir())
    assert names == [".podforge-folder", "test", "train", "validation"]  # hidden: HF skips it
    for split_dir in (af / n for n in names[1:]):
        for line in (split_dir / "metadata.jsonl").read_text().splitlines():
            rec = json.loads(line)
            assert (split_dir / rec["file_name"]).is_file()


def test_export_is_deterministic_and_replaces_the_old_one(accepted_demo: Workspace) -> None:
    export(accepted_demo, "jsonl", seed=3)
    first = {
        p.relative_to(accepted_demo.exports_dir): p.read_bytes()
        for p in accepted_demo.exports_dir.rglob("*.jsonl")
    }
    (accepted_demo.exports_dir / "jsonl" / "stale.txt").write_text("old")
    export(accepted_demo, "jsonl", seed=3)
    second = {
        p.relative_to(accepted_demo.exports_dir): p.read_bytes()
        for p in accepted_demo.exports_dir.rglob("*.jsonl")
    }
    assert first == second
    assert not (accepted_demo.exports_dir / "jsonl" / "stale.txt").exists()
    assert sorted(p.name for p in accepted_demo.exports_dir.iterdir()) == ["jsonl"]


def test_nothing_accepted_is_a_clear_error(demo_workspace: Workspace, tmp_path: Path) -> None:
    shutil.copytree(demo_workspace.root, tmp_path / "demo")
    ws = Workspace.open(tmp_path / "demo")
    with pytest.raises(ExportError, match="no accepted segments"):
        export(ws, "jsonl")
    with pytest.raises(ExportError, match="unknown export format"):
        export(ws, "mp4")


def test_ljspeech_metadata_has_one_three_field_record_per_segment_whatever_the_names(
    tmp_path: Path,
) -> None:
    """File stems (the id) and transcripts with ``|``, line breaks and control characters."""
    import numpy as np

    from core.dataset.ingest import IngestOptions, ingest
    from core.episodes.synthesis.draft import DraftVoice, synthesize
    from core.settings import new_consent

    ws = Workspace.create(tmp_path / "show")
    ws.add_speaker("dana", new_consent("Dana D", "test consent"))
    sr = 24000
    texts = ("One two three four five six seven.", "Another sentence comes right after it.")
    speech = [synthesize(t, DraftVoice(), sample_rate=sr) * 0.3 for t in texts]
    gap = np.zeros(sr // 2, np.float32)
    sources = tmp_path / "in"
    sources.mkdir()
    # Two recordings whose stems differ only in characters an LJSpeech id cannot hold.
    sf.write(sources / "take|one\ntwo.wav", np.concatenate([gap, speech[0], gap, speech[1]]), sr)
    sf.write(sources / "take one two.wav", np.concatenate([gap, speech[1], gap, speech[0]]), sr)
    summary = ingest(ws, sorted(sources.iterdir()), "dana", IngestOptions(False, False))
    assert all(f.error is None for f in summary.files)
    weird = "pipe|in\nthe text\r\nand\x00a NUL\u2028and a separator"
    with Catalog.open(ws.catalog_path) as cat:
        segs = cat.segments()
        assert any("|" in s.audio and "\n" in s.audio for s in segs)
        for s in segs:
            assert s.id is not None
            cat.set_text(s.id, weird, source="cli")
            cat.set_status(s.id, "accepted", source="cli")
    export(ws, "ljspeech")
    lj = ws.exports_dir / "ljspeech"
    raw = (lj / "metadata.csv").read_bytes()
    assert raw.count(b"\n") == len(segs) and b"\r" not in raw and b"\x00" not in raw
    with (lj / "metadata.csv").open(newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh, delimiter="|", quoting=csv.QUOTE_NONE))
    assert len(rows) == len(segs) and all(len(r) == 3 for r in rows)
    ids = [r[0] for r in rows]
    assert len(set(ids)) == len(ids)
    assert all(r[1] == r[2] == "pipe in the text and a NUL and a separator" for r in rows)
    assert sorted(p.name for p in (lj / "wavs").iterdir()) == sorted(f"{i}.wav" for i in ids)
    parts = []
    for split in ("train", "val", "test"):
        with (lj / f"metadata_{split}.csv").open(newline="", encoding="utf-8") as fh:
            parts += list(csv.reader(fh, delimiter="|", quoting=csv.QUOTE_NONE))
    assert sorted(parts) == sorted(rows)


# ----------------------------------------------------------------------------- stored splits


def _minutes(ws: Workspace, speaker: str = "alice") -> dict[str, float]:
    with Catalog.open(ws.catalog_path) as cat:
        segs = cat.segments(status="accepted", speaker=speaker)
    out = {"train": 0.0, "val": 0.0, "test": 0.0}
    for s in segs:
        assert s.split in out, s
        out[s.split] += s.duration_sec / 60
    return out


def test_stored_splits_never_move_when_the_seed_changes_or_data_arrives(
    workspace: Workspace,
) -> None:
    """Splits are assigned once and stored: a re-export with another seed, new recordings
    and segments accepted later never move an assigned segment; the new ones join their
    recording's (or block's) split."""
    from tests.splitdata import add_recordings, stored_splits

    add_recordings(workspace, "alice", [12, 9, 15, 6, 10], seed=1, audio=True)
    late = add_recordings(workspace, "alice", [8], seed=1, salt="late", status="pending",
                          audio=True)  # fmt: skip
    export(workspace, "jsonl", seed=42)
    first = stored_splits(workspace)
    assert set(first.values()) == {"train", "val", "test"}

    result = export(workspace, "jsonl", seed=7)  # another seed: nothing moves, and it says so
    assert stored_splits(workspace) == first
    assert any("seed" in w and "--reassign" in w for w in result.warnings)

    add_recordings(workspace, "alice", [7, 11, 9], seed=2, salt="new", audio=True)
    with Catalog.open(workspace.catalog_path) as cat:  # a recording reviewed later
        pending = [s.id for s in cat.segments(recording_id=late[0]) if s.id is not None]
        cat.set_status_many(pending[:4], "accepted")
        old_recording = cat.segments(recording_id=1)
        cat.set_status(old_recording[0].id or 0, "pending")  # un-accepted, then accepted again
    export(workspace, "ljspeech", seed=3)
    with Catalog.open(workspace.catalog_path) as cat:
        cat.set_status(old_recording[0].id or 0, "accepted")
    export(workspace, "jsonl", seed=11)
    after = stored_splits(workspace)
    assert {i: after[i] for i in first} == first
    assert all(after[i] in ("train", "val", "test") for i in after)
    by_recording: dict[int, set[str | None]] = {}
    with Catalog.open(workspace.catalog_path) as cat:
        for s in cat.segments(status="accepted"):
            by_recording.setdefault(s.recording_id, set()).add(s.split)
    assert all(len(v) == 1 for v in by_recording.values())  # 9 recordings: one split each


@pytest.mark.parametrize("seed", range(12))
def test_a_few_uneven_recordings_keep_most_minutes_for_training(
    workspace: Workspace, seed: int
) -> None:
    """6 recordings holding 15 accepted segments: val and test get one small recording each,
    training keeps most minutes (before: train 0.6 min, val 0.7, test 1.1)."""
    from tests.splitdata import add_recordings

    add_recordings(workspace, "alice", [5, 4, 2, 2, 1, 1], seed=seed, audio=True)
    result = export(workspace, "jsonl", seed=seed)
    share = {k: v / sum(result.seconds.values()) for k, v in result.seconds.items()}
    assert result.counts["val"] >= 1 and result.counts["test"] >= 1
    assert share["train"] >= 0.6, result.seconds
    minutes = _minutes(workspace)
    assert minutes["train"] == pytest.approx(result.seconds["train"] / 60)


def test_export_warns_when_the_data_cannot_be_split_near_80_10_10(workspace: Workspace) -> None:
    from click.testing import CliRunner

    from tests.splitdata import add_recordings
    from tui.cli import main

    add_recordings(workspace, "alice", [6, 6, 6], seed=3, audio=True)
    result = export(workspace, "jsonl")
    assert len(result.warnings) == 1
    assert result.warnings[0].startswith("alice: ") and "80/10/10" in result.warnings[0]
    out = CliRunner().invoke(main, ["export", str(workspace.root)])
    assert out.exit_code == 0, out.output
    assert "podforge: warning: alice: " in out.output and "80/10/10" in out.output


@pytest.mark.parametrize("n_recordings", [12, 30])
def test_split_minutes_stay_near_80_10_10_with_enough_recordings(n_recordings: int) -> None:
    import random

    for seed in range(10):
        rng = random.Random(seed)
        segs, recs = _fake(n_recordings, 1)
        segs = []
        for r in recs:
            start = 0.0
            for i in range(rng.randint(5, 40)):
                d = rng.uniform(3, 15)
                segs.append(Segment(recording_id=r, speaker="alice", audio=f"s/{r}-{i}.wav",
                                    start_sec=start, end_sec=start + d, duration_sec=d,
                                    text="x", id=r * 1000 + i))  # fmt: skip
                start += d + 1
        splits, _ = assign_splits(segs, recs, seed=seed)
        total = sum(s.duration_sec for s in segs)
        for split, target in (("train", 0.8), ("val", 0.1), ("test", 0.1)):
            got = sum(s.duration_sec for s in segs if splits[s.id or 0] == split) / total
            assert got == pytest.approx(target, abs=0.05), (seed, split, got)


def test_splits_stored_before_units_were_kept_and_reassign_says_what_moved(
    workspace: Workspace,
) -> None:
    """A catalog whose splits an older podforge stored (no recorded unit) keeps them; a
    segment accepted later joins its neighbours' split; `podforge splits --reassign` deals
    them again with a warning, and without --reassign --seed is refused."""
    from click.testing import CliRunner

    from tests.splitdata import add_recordings, stored_splits
    from tui.cli import main

    (rec,) = add_recordings(workspace, "alice", [24], seed=5)
    with Catalog.open(workspace.catalog_path) as cat:
        segs = cat.segments(recording_id=rec)
        legacy = {s.id or 0: ("train" if s.start_sec < 120 else "test") for s in segs[:-1]}
        cat.set_splits(list(legacy.items()))  # as exports used to: no unit, no seed
        cat.set_status(segs[-1].id or 0, "rejected")
        cat.set_status(segs[-1].id or 0, "accepted")
        cat.set_splits([(segs[-1].id or 0, None)])
    runner = CliRunner()
    shown = runner.invoke(main, ["splits", str(workspace.root)])
    assert shown.exit_code == 0, shown.output
    after = stored_splits(workspace)
    assert {i: after[i] for i in legacy} == legacy
    last = segs[-1]
    assert last.start_sec >= 120 and after[last.id or 0] == "test"  # its block's neighbours
    assert "assigned a split to 1 new segment(s)" in shown.output

    refused = runner.invoke(main, ["splits", str(workspace.root), "--seed", "3"])
    assert refused.exit_code == 1 and "--reassign" in refused.output
    redone = runner.invoke(main, ["splits", str(workspace.root), "--reassign", "--seed", "3"])
    assert redone.exit_code == 0, redone.output
    assert "podforge: warning: splits reassigned: " in redone.output
    assert "split seed 3" in redone.output
    again = stored_splits(workspace)
    assert set(again.values()) <= {"train", "val", "test"} and None not in again.values()
    moved = sum(1 for i in again if again[i] != after[i])
    assert f"{moved} segment(s) changed split" in redone.output
