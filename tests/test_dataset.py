"""Splits and exports: deterministic, no recording in two splits, the three layouts."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
import soundfile as sf

from core.catalog import Catalog
from core.dataset import assign_splits, export
from core.errors import ExportError
from core.ingest import accept_passing
from core.records import Recording, Segment
from core.workspace import Workspace

DESIGN_FIELDS = {
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
            assert set(rec) == DESIGN_FIELDS and set(rec["qc"]) == QC_FIELDS
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
    assert names == ["test", "train", "validation"]
    for split_dir in af.iterdir():
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
