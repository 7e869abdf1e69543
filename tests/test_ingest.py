"""Ingest end to end: demo recordings, targets, idempotence, kill-and-resume, bad inputs."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pyloudnorm
import pytest
import soundfile as sf
from scipy.signal import resample_poly

from core.catalog import Catalog
from core.dataset.ingest import IngestOptions, accept_passing, ingest
from core.demo.corpus import SENTENCES
from core.episodes.synthesis.draft import DraftVoice, synthesize
from core.settings import new_consent
from core.workspace import Workspace
from tests.meters import ideal_true_peak_db

ROOT = Path(__file__).resolve().parents[1]


def _truth(ws: Workspace) -> dict[str, dict]:  # type: ignore[type-arg]
    return json.loads((ws.assets_dir / "demo-truth.json").read_text())["recordings"]  # type: ignore[no-any-return]


def _segments_by_raw(ws: Workspace) -> dict[str, list]:  # type: ignore[type-arg]
    with Catalog.open(ws.catalog_path) as cat:
        recs = {r.id: r.path for r in cat.recordings()}
        out: dict[str, list] = {}  # type: ignore[type-arg]
        for s in cat.segments():
            out.setdefault(recs[s.recording_id], []).append(s)
    return out


def test_demo_segments_land_in_range(demo_workspace: Workspace) -> None:
    segments = [s for segs in _segments_by_raw(demo_workspace).values() for s in segs]
    assert len(segments) >= 8
    in_range = [s for s in segments if 5.0 <= s.duration_sec <= 15.0]
    assert len(in_range) / len(segments) >= 0.9


def test_planted_defects_are_flagged_and_only_there(demo_workspace: Workspace) -> None:
    by_raw = _segments_by_raw(demo_workspace)
    flag_of = {"clip": "clipped", "hum": "hum"}
    for rec in _truth(demo_workspace).values():
        segs = by_raw[rec["raw"]]
        for p in rec["planted"]:
            if p["kind"] not in flag_of:
                continue
            over = [s for s in segs if s.start_sec < p["end_sec"] and s.end_sec > p["start_sec"]]
            assert over, f"no segment covers the planted {p['kind']} in {rec['raw']}"
            assert any(flag_of[p["kind"]] in s.flags for s in over)
        for s in segs:
            touches = [
                p["kind"]
                for p in rec["planted"]
                if s.start_sec < p["end_sec"] and s.end_sec > p["start_sec"]
            ]
            for kind, flag in flag_of.items():
                if kind not in touches:
                    assert flag not in s.flags, (rec["raw"], s.start_sec, s.flags)


def test_subtitle_segments_carry_the_cue_text(demo_workspace: Workspace) -> None:
    by_raw = _segments_by_raw(demo_workspace)
    for rec in _truth(demo_workspace).values():
        for s in by_raw[rec["raw"]]:
            if not rec["sidecar"]:
                assert s.text == "" and "no_text" in s.flags
                continue
            inside = [
                c["text"]
                for c in rec["cues"]
                if c["start_sec"] >= s.start_sec - 0.01 and c["end_sec"] <= s.end_sec + 0.01
            ]
            assert s.text_source == "subtitle"
            assert s.text == " ".join(inside)


def test_segment_files_meet_the_audio_targets(demo_workspace: Workspace) -> None:
    segments = [s for segs in _segments_by_raw(demo_workspace).values() for s in segs]
    for s in segments:
        path = demo_workspace.root / s.audio
        info = sf.info(str(path))
        assert (info.samplerate, info.channels, info.subtype) == (24000, 1, "PCM_16")
        audio, sr = sf.read(str(path))
        # Independent meters: pyloudnorm for loudness, a near-ideal reconstruction (up to
        # the Nyquist frequency) for the peak.
        lufs = pyloudnorm.Meter(sr).integrated_loudness(audio)
        true_peak = ideal_true_peak_db(audio)
        assert true_peak <= -1.0 + 0.05, (s.audio, true_peak)
        if "clipped" not in s.flags:
            assert lufs == pytest.approx(-19.0, abs=0.5), (s.audio, lufs)


def test_the_originals_are_untouched(demo_workspace: Workspace) -> None:
    import hashlib

    with Catalog.open(demo_workspace.catalog_path) as cat:
        for rec in cat.recordings():
            data = (demo_workspace.root / rec.path).read_bytes()
            assert hashlib.sha256(data).hexdigest() == rec.sha256
            assert rec.state == "segmented"


def _dump(ws: Workspace) -> list[tuple]:  # type: ignore[type-arg]
    conn = sqlite3.connect(ws.catalog_path)
    rows = conn.execute(
        "SELECT r.sha256, r.state, s.audio, s.start_sec, s.end_sec, s.text, s.text_source, "
        "s.flags, s.rms_db, s.snr_db, s.clipped, s.hum_score, s.plosive_ratio, s.lufs, "
        "s.true_peak_db, s.similarity, s.status FROM segments s JOIN recordings r "
        "ON r.id = s.recording_id ORDER BY s.audio"
    ).fetchall()
    conn.close()
    return rows


def test_rerun_skips_finished_work(demo_copy: Workspace) -> None:
    before = _dump(demo_copy)
    summary = ingest(demo_copy, [demo_copy.raw_dir / "alice"], "alice", IngestOptions(False, False))
    assert summary.files and all(f.skipped and not f.error for f in summary.files)
    assert _dump(demo_copy) == before


def _speech_recording(path: Path, seconds: float, seed: int, sr: int = 44100) -> Path:
    rng = np.random.default_rng(seed)
    voice = DraftVoice(language="en-us", pitch=40)
    parts: list[np.ndarray] = []  # type: ignore[type-arg]
    total = 0
    while total < seconds * sr:
        text = SENTENCES[int(rng.integers(len(SENTENCES)))]
        speech = synthesize(text, voice, sample_rate=sr) * 0.3
        pause = np.zeros(int(rng.uniform(0.3, 1.2) * sr), np.float32)
        parts += [speech, pause]
        total += len(speech) + len(pause)
    audio = np.concatenate(parts)
    audio = audio + rng.standard_normal(len(audio)).astype(np.float32) * 0.0005
    sf.write(path, audio, sr, subtype="PCM_16")
    return path


def _tiny_workspace(root: Path) -> Workspace:
    ws = Workspace.create(root)
    ws.settings.models.asr = "tiny"
    ws.settings.models.speaker = "tiny"
    ws.save()
    ws.add_speaker("dana", new_consent("Dana D", "test consent"))
    return ws


_INGEST = (
    "import sys\n"
    "from core.workspace import Workspace\n"
    "from core.dataset.ingest import ingest\n"
    "ingest(Workspace.open(sys.argv[1]), sys.argv[3:], sys.argv[2])\n"
)


@pytest.mark.parametrize("kill_when", ["segmented", "analysing"])
def test_sigkill_then_rerun_equals_an_uninterrupted_run(
    tmp_path: Path, kill_when: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    sources = [_speech_recording(tmp_path / f"take{i}.wav", 40, seed=i) for i in range(3)]
    whole = _tiny_workspace(tmp_path / "whole")
    ingest(whole, sources, "dana")
    expected = _dump(whole)
    assert expected and any(row[6] == "asr" for row in expected)
    assert all(row[15] is not None for row in expected)  # every segment speaker-checked

    broken = _tiny_workspace(tmp_path / "broken")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-c", _INGEST, str(broken.root), "dana", *map(str, sources)], env=env
    )
    query = {
        "segmented": "SELECT count(*) FROM segments",
        "analysing": "SELECT count(*) FROM segments WHERE text_source = 'asr'",
    }[kill_when]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            conn = sqlite3.connect(broken.catalog_path, timeout=0.1)
            found = conn.execute(query).fetchone()[0]
            conn.close()
        except sqlite3.Error:
            found = 0
        if found:
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert _dump(broken) != expected, "the kill came too late to test anything"

    ingest(Workspace.open(broken.root), sources, "dana")
    assert _dump(broken) == expected


def test_bad_inputs_fail_alone_with_one_line_each(tmp_path: Path) -> None:
    ws = Workspace.create(tmp_path / "ws")
    ws.add_speaker("dana", new_consent("Dana D", "test consent"))
    folder = tmp_path / "in"
    folder.mkdir()
    good = _speech_recording(folder / "good.wav", 14, seed=1)
    speech, sr = sf.read(str(good), dtype="float32")
    (folder / "empty.wav").write_bytes(b"")
    (folder / "notes.wav").write_text("not audio at all\n" * 50)
    nan = speech.copy()
    nan[1000] = np.nan
    sf.write(folder / "nan.wav", nan, sr, subtype="FLOAT")
    sf.write(folder / "silence.wav", np.zeros(16000 * 600, np.float32), 16000, subtype="PCM_16")
    t = np.arange(sr * 8) / sr
    sf.write(folder / "square.wav", np.sign(np.sin(2 * np.pi * 220 * t)) * 1.0, sr)
    sf.write(folder / "eight-bit.wav", speech, sr, subtype="PCM_U8")
    sf.write(folder / "hires.flac", resample_poly(speech, 320, 147), 96000, subtype="PCM_24")
    sf.write(folder / "six.wav", np.stack([speech] * 6, axis=1) * 0.5, sr)
    data = bytearray(good.read_bytes())
    (folder / "truncated.wav").write_bytes(bytes(data[: len(data) // 2]))

    summary = ingest(ws, [folder, tmp_path / "missing.wav"], "dana", IngestOptions(False, False))
    by_name = {Path(f.source).name: f for f in summary.files}
    for bad in ("empty.wav", "notes.wav", "nan.wav", "missing.wav"):
        error = by_name[bad].error
        assert error and bad in error and "\n" not in error, (bad, error)
    for fine in ("good.wav", "eight-bit.wav", "hires.flac", "six.wav", "truncated.wav"):
        assert by_name[fine].error is None, by_name[fine].error
        assert by_name[fine].segments >= 1, fine
    assert by_name["silence.wav"].error is None and by_name["silence.wav"].segments == 0
    assert by_name["square.wav"].error is None
    with Catalog.open(ws.catalog_path) as cat:
        assert {r.original_name for r in cat.recordings()} >= {"good.wav", "silence.wav"}


def test_memory_stays_bounded_for_a_long_file(tmp_path: Path) -> None:
    """A 12-minute 48 kHz file: peak traced allocations far below the decoded file's size."""
    ws = Workspace.create(tmp_path / "ws")
    ws.add_speaker("dana", new_consent("Dana D", "test consent"))
    sr, minutes = 48000, 12
    clip = _speech_recording(tmp_path / "clip.wav", 20, seed=3, sr=sr)
    chunk, _ = sf.read(str(clip), dtype="float32")
    long = tmp_path / "long.wav"
    with sf.SoundFile(long, "w", sr, 1, subtype="PCM_16") as out:
        for _ in range(minutes * 60 * sr // len(chunk)):
            out.write(chunk)
    decoded_bytes = sf.info(str(long)).frames * 4 * 24000 // sr
    tracemalloc.start()
    summary = ingest(ws, [long], "dana", IngestOptions(False, False))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert summary.files[0].segments > 30
    assert peak < decoded_bytes / 3, (peak, decoded_bytes)


def test_txt_sidecar_text_is_aligned_onto_segments(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    ws = _tiny_workspace(tmp_path / "ws")
    sr = 24000
    voice = DraftVoice(language="en-us", pitch=40)
    texts = SENTENCES[:8]
    parts = []
    for text in texts:
        speech = synthesize(text, voice, sample_rate=sr) * 0.3
        parts += [speech, np.zeros(int(0.9 * sr), np.float32)]
    sf.write(tmp_path / "read.wav", np.concatenate(parts), sr)
    (tmp_path / "read.txt").write_text("\n\n".join(texts) + "\n")
    options = IngestOptions(transcribe=True, speaker_filter=False)
    ingest(ws, [tmp_path / "read.wav"], "dana", options)
    with Catalog.open(ws.catalog_path) as cat:
        segs = cat.segments()
    assert segs and all(s.text_source == "txt" for s in segs)
    assert " ".join(s.text for s in segs).split() == " ".join(texts).split()


def test_missing_asr_model_is_a_warning_and_segments_remain(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HUGGINGFACE_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    ws = Workspace.create(tmp_path / "ws")
    ws.add_speaker("dana", new_consent("Dana D", "test consent"))
    src = _speech_recording(tmp_path / "a.wav", 15, seed=5)
    summary = ingest(ws, [src], "dana", IngestOptions(transcribe=True, speaker_filter=False))
    assert summary.files[0].segments >= 1
    assert summary.warnings == []
    asr, speaker = summary.skipped_stages
    assert (asr.stage, asr.segments) == ("transcription", summary.files[0].segments)
    assert "large-v3" in asr.line() and "[models] asr" in asr.line() and "\n" not in asr.line()
    assert speaker.stage == "speaker filter" and "--no-speaker-filter" in speaker.line()


def test_accept_passing_accepts_only_clean_pending(demo_copy: Workspace) -> None:
    with Catalog.open(demo_copy.catalog_path) as cat:
        segs = cat.segments(speaker="alice")
        clean = [s for s in segs if not s.flags]
        cat.set_status(clean[0].id or 0, "rejected")
    count = accept_passing(demo_copy, "alice")
    assert count == len(clean) - 1
    with Catalog.open(demo_copy.catalog_path) as cat:
        after = {s.id: s for s in cat.segments(speaker="alice")}
        assert after[clean[0].id].status == "rejected"
        assert all(after[s.id].status == "accepted" for s in clean[1:])
        assert all(s.status == "pending" for s in after.values() if s.flags)
        assert cat.counts(speaker="bob").accepted == 0
        assert [h.source for h in cat.history()].count("cli") == count


# -- issue 11: ingest hygiene and honest reporting -------------------------------------

_INGEST_QUIET = (
    "import sys\n"
    "from core.workspace import Workspace\n"
    "from core.dataset.ingest import IngestOptions, ingest\n"
    "ingest(Workspace.open(sys.argv[1]), sys.argv[3:], sys.argv[2], IngestOptions(False, False))\n"
)

_HOLD_TMP = (
    "import sys\n"
    "from core.tempfiles import workspace_tempdir\n"
    "with workspace_tempdir(sys.argv[1], 'ingest') as folder:\n"
    "    print(folder, flush=True)\n"
    "    sys.stdin.readline()\n"
)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def test_a_killed_ingest_leaks_nothing_and_the_next_run_cleans_up(tmp_path: Path) -> None:
    """The spill file lives in <workspace>/.tmp; after a SIGKILL the next run removes it,
    but never the folder of an ingest still running in another process."""
    ws = Workspace.create(tmp_path / "ws")
    ws.add_speaker("dana", new_consent("Dana D", "test consent"))
    source = _speech_recording(tmp_path / "long.wav", 60, seed=4, sr=48000)
    system_tmp = tmp_path / "system-tmp"
    system_tmp.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TMPDIR": str(system_tmp)}
    proc = subprocess.Popen(
        [sys.executable, "-c", _INGEST_QUIET, str(ws.root), "dana", str(source)], env=env
    )
    spill: list[Path] = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None and not spill:
        found = [*(ws.root / ".tmp").glob("*/audio.f32"), *system_tmp.glob("*/audio.f32")]
        spill = [p for p in found if _size(p)]
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert spill, "the ingest finished before its spill file was seen"
    assert list(system_tmp.iterdir()) == []  # nothing in the system temp folder
    assert spill[0].exists()  # the kill left the spill file in the workspace

    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD_TMP, str(ws.root)],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        live = Path(holder.stdout.readline().strip())
        assert live.is_dir()
        summary = ingest(Workspace.open(ws.root), [source], "dana", IngestOptions(False, False))
        assert summary.files[0].segments >= 3 and not summary.files[0].error
        assert not spill[0].parent.exists()  # the stale folder is gone
        assert live.is_dir()  # the live one is kept
        assert [p for p in (ws.root / ".tmp").iterdir()] == [live]
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=30)


def test_a_file_of_another_speaker_names_that_speaker(tmp_path: Path) -> None:
    ws = Workspace.create(tmp_path / "ws")
    ws.add_speaker("dana", new_consent("Dana D", "test consent"))
    ws.add_speaker("eve", new_consent("Eve E", "test consent"))
    take = _speech_recording(tmp_path / "take.wav", 12, seed=2)
    ingest(ws, [take], "dana", IngestOptions(False, False))
    copy = tmp_path / "renamed.wav"
    copy.write_bytes(take.read_bytes())
    again = ingest(ws, [take], "dana", IngestOptions(False, False)).files[0]
    other = ingest(ws, [copy], "eve", IngestOptions(False, False)).files[0]
    assert again.skipped and again.note is None
    assert other.skipped and not other.error and other.segments == 0
    assert other.note is not None and "'dana'" in other.note and "take.wav" in other.note
    with Catalog.open(ws.catalog_path) as cat:
        assert [r.speaker for r in cat.recordings()] == ["dana"]
        assert cat.segments(speaker="eve") == []


def test_flagged_counts_are_those_after_transcription(
    demo_copy: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with Catalog.open(demo_copy.catalog_path) as cat:
        before = sum(1 for s in cat.segments(speaker="alice") if s.flags)
    summary = ingest(demo_copy, [demo_copy.raw_dir / "alice"], "alice", IngestOptions(True, False))
    assert summary.transcribed > 0
    with Catalog.open(demo_copy.catalog_path) as cat:
        recs = {r.path: r.id for r in cat.recordings(speaker="alice")}
        for f in summary.files:
            rec_id = recs[Path(f.source).relative_to(demo_copy.root).as_posix()]
            truth = sum(1 for s in cat.segments(recording_id=rec_id) if s.flags)
            assert f.flagged == truth, (f.source, f.flagged, truth)
        after = sum(1 for s in cat.segments(speaker="alice") if s.flags)
    assert after < before  # transcription cleared some no_text flags: the test means something


def _decoded_frames(path: Path) -> tuple[int, int]:
    """Frames and rate of ``path`` decoded by FFmpeg (PyAV) directly, as the reference."""
    import av

    frames = 0
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        rate = stream.codec_context.sample_rate
        try:
            for packet in container.demux(stream):
                try:
                    frames += sum(f.samples for f in packet.decode())
                except av.error.FFmpegError:
                    continue
        except av.error.FFmpegError:
            pass
    return frames, rate


@pytest.mark.parametrize("kind", ["flac", "mp3"])
def test_a_truncated_file_stores_its_decoded_length_and_is_flagged(
    tmp_path: Path, kind: str
) -> None:
    from core.audio.mp3 import encode_mp3

    ws = Workspace.create(tmp_path / "ws")
    ws.add_speaker("dana", new_consent("Dana D", "test consent"))
    wav = _speech_recording(tmp_path / "take.wav", 22, seed=6)
    audio, sr = sf.read(str(wav), dtype="float32")
    whole = tmp_path / f"whole.{kind}"
    if kind == "flac":
        sf.write(whole, audio, sr, subtype="PCM_16", format="FLAC")
    else:
        whole.write_bytes(encode_mp3(audio, sr))
    cut = tmp_path / f"cut.{kind}"
    data = whole.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    header_sec = sf.info(str(cut)).duration
    frames, rate = _decoded_frames(cut)
    decoded_sec = frames / rate
    assert decoded_sec < header_sec * 0.7, (decoded_sec, header_sec)  # really truncated

    summary = ingest(ws, [cut, wav], "dana", IngestOptions(False, False))
    result, fine = summary.files
    assert result.error is None and result.segments >= 1
    assert result.truncated and not fine.truncated
    assert result.duration_sec == pytest.approx(decoded_sec, abs=0.1)
    with Catalog.open(ws.catalog_path) as cat:
        rec = cat.recording(result.recording_id or 0)
        clean = cat.recording(fine.recording_id or 0)
    assert rec.duration_sec == pytest.approx(decoded_sec, abs=0.1)
    assert rec.state == "segmented" and rec.error and rec.error.startswith("truncated")
    assert f"{header_sec:.1f} s" in rec.error
    assert clean.error is None
    assert clean.duration_sec == pytest.approx(len(audio) / sr, abs=0.01)
    # A rerun keeps both the decoded length and the note.
    again = ingest(ws, [cut], "dana", IngestOptions(False, False)).files[0]
    assert again.skipped and again.truncated
    assert again.duration_sec == pytest.approx(decoded_sec, abs=0.1)


@pytest.mark.slow
def test_cli_names_every_skipped_stage_and_its_setting(tmp_path: Path) -> None:
    """Offline with the default hub models: both analysis stages are skipped, and the
    output says so for each, naming the workspace.toml setting that fixes it."""
    ws = Workspace.create(tmp_path / "ws")
    ws.add_speaker("dana", new_consent("Dana D", "test consent"))
    source = _speech_recording(tmp_path / "a.wav", 15, seed=5)
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "HF_HUB_OFFLINE": "1",
        "HF_HOME": str(tmp_path / "hf"),
        "HUGGINGFACE_HUB_CACHE": str(tmp_path / "hf" / "hub"),
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "COLUMNS": "200",
    }
    env.pop("HF_HUB_CACHE", None)
    done = subprocess.run(
        [sys.executable, "-m", "tui.cli", "ingest", str(ws.root), str(source), "--speaker", "dana"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = " ".join((done.stdout + done.stderr).split())
    assert done.returncode == 0, output
    assert "Traceback" not in output
    assert "transcription skipped" in output and "[models] asr" in output, output
    assert "speaker filter skipped" in output and "[models] speaker" in output, output
    assert "large-v3" in output and "speechbrain/spkrec-ecapa-voxceleb" in output


def test_the_summary_says_how_too_long_speech_was_split(
    workspace: Workspace, tmp_path: Path
) -> None:
    """Speech with only short breaths between sentences: ingest splits what VAD leaves too
    long, and the file's result says so (the console summary prints it)."""
    from tests.test_segment import SR, _read_aloud

    audio = _read_aloud(60.0, seed=3, pause=(0.1, 0.19))
    source = tmp_path / "fast.wav"
    sf.write(source, audio, SR, subtype="PCM_16")
    summary = ingest(workspace, [source], "alice", IngestOptions(False, False))
    result = summary.files[0]
    assert result.error is None
    assert result.segmentation is not None and "too long" in result.segmentation
    with Catalog.open(workspace.catalog_path) as catalog:
        lengths = [s.duration_sec for s in catalog.segments()]
    assert lengths and sum(5.0 <= d <= 15.0 for d in lengths) >= 0.9 * len(lengths)
