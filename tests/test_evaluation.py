"""Voice evaluation: the metrics by hand, and `podforge eval` end to end with tiny models."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from core.catalog import Catalog
from core.dataset.ingest import accept_passing
from core.errors import WorkspaceConfigError
from core.evaluation.evaluate import (
    cer,
    corpus_cer,
    corpus_wer,
    held_out_segments,
    latest_report,
    normalise,
    number_to_words,
    wer,
)
from core.evaluation.text import NORMALISER, WHISPER_NORMALISER, whisper_normalise
from core.settings import parse_settings, settings_to_toml
from core.workspace import Workspace
from tests.conftest import REPO, make_tiny_voice
from tui.cli import main

# ----------------------------------------------------------------------------- metrics


def test_wer_by_hand() -> None:
    assert wer("the cat sat", "the cat sat down") == pytest.approx(1 / 3)  # one insertion
    assert wer("the cat sat", "the cat sat") == 0.0
    assert wer("the cat sat", "the dog sat") == pytest.approx(1 / 3)  # one substitution
    assert wer("the cat sat", "cat") == pytest.approx(2 / 3)  # two deletions
    assert wer("the cat sat", "") == 1.0
    assert wer("a b", "c d e f") == pytest.approx(2.0)  # 2 substitutions + 2 insertions


def test_cer_by_hand() -> None:
    assert cer("abc", "abd") == pytest.approx(1 / 3)
    assert cer("abc", "abc") == 0.0
    assert cer("abcd", "abc") == pytest.approx(1 / 4)
    assert cer("cat", "") == 1.0
    assert cer("ab cd", "abcd") == pytest.approx(1 / 5)  # the space is a character


def test_corpus_rates_pool_the_edits() -> None:
    # 1 error in 3 words + 1 error in 1 word = 2 / 4, not the mean of 1/3 and 1.
    assert corpus_wer(["the cat sat", "hello"], ["the cat sat down", "yellow"]) == 0.5
    assert corpus_cer(["ab", "cd"], ["ab", "ce"]) == pytest.approx(1 / 4)
    with pytest.raises(ValueError, match="empty after normalisation"):
        corpus_wer(["!!"], ["x"])


def test_normalisation() -> None:
    assert normalise("The Cat, sat!") == "the cat sat"
    assert normalise("3 cats") == normalise("three cats") == "three cats"
    assert wer("3 cats", "Three cats.") == 0.0
    assert normalise("twenty-four") == normalise("24") == "twenty four"
    assert normalise("Don't  stop") == "dont stop"
    assert normalise("1,250 people") == "one thousand two hundred fifty people"
    assert normalise("3.5%") == "three point five percent"
    assert normalise("the 21st and 2nd") == "the twenty first and second"
    assert normalise("in 1999 and 2024") == "in nineteen ninety nine and twenty twenty four"
    assert normalise("in 2005") == "in two thousand five"
    assert normalise("“Quoted” — dash… end") == "quoted dash end"


def test_number_to_words() -> None:
    assert number_to_words(0) == "zero"
    assert number_to_words(13) == "thirteen"
    assert number_to_words(40) == "forty"
    assert number_to_words(342) == "three hundred forty two"
    assert number_to_words(100000) == "one hundred thousand"
    assert number_to_words(999999) == "nine hundred ninety nine thousand nine hundred ninety nine"
    assert number_to_words(2_000_001) == "two million one"


def test_eval_settings_are_read_checked_and_written_as_eval() -> None:
    settings = parse_settings({"schema": 1, "eval": {"max_wer": 0.1, "min_similarity": 0.6}})
    assert settings.evaluation.max_wer == 0.1 and settings.evaluation.max_cer == 0.03
    table = settings_to_toml(settings)
    assert table["eval"]["min_similarity"] == 0.6 and "evaluation" not in table
    with pytest.raises(WorkspaceConfigError, match=r"'eval\.min_similarity'"):
        parse_settings({"schema": 1, "eval": {"min_similarity": 2.0}})
    with pytest.raises(WorkspaceConfigError, match=r"'eval\.nope'"):
        parse_settings({"schema": 1, "eval": {"nope": 1}})


# ----------------------------------------------------------------------------- end to end


def _three_recordings(ws: Workspace, speaker: str) -> None:
    """Copy one of the speaker's accepted segments under each of two more recordings, so that
    the split is by recording and test and val are not empty (the test demo has one short
    recording a speaker), and give every accepted segment a short transcript (the tiny CSM is
    slow on a CPU and renders at least 2 s whatever the text). The first recording gets
    copies too, up to 10 segments, so that each one-segment recording is about a tenth of
    the minutes: the splits then hold them out (a recording of a quarter of the minutes
    would stay in train, see DATASET.md *Splits*)."""
    with Catalog.open(ws.catalog_path) as catalog:
        segments = catalog.segments(speaker=speaker, status="accepted")
        recording = catalog.recording(segments[0].recording_id)
        first, last = segments[0], segments[-1]
        extra = []
        for k in range(max(0, 10 - len(segments))):
            audio = first.audio.replace(".wav", f"-more{k}.wav")
            shutil.copyfile(ws.root / first.audio, ws.root / audio)
            start = last.end_sec + 1.0 + k * (first.duration_sec + 1.0)
            extra.append(dataclasses.replace(first, id=None, audio=audio, start_sec=start,
                                             end_sec=start + first.duration_sec))  # fmt: skip
        catalog.add_segments(extra)
        for copy in (1, 2):
            rec_id = catalog.add_recording(
                dataclasses.replace(recording, id=None, sha256=f"{recording.sha256[:-1]}{copy}")
            )
            first = segments[0]
            audio = first.audio.replace(".wav", f"-copy{copy}.wav")
            shutil.copyfile(ws.root / first.audio, ws.root / audio)
            catalog.add_segments(
                [dataclasses.replace(first, id=None, recording_id=rec_id, audio=audio)]
            )
        for n, seg in enumerate(catalog.segments(speaker=speaker, status="accepted")):
            assert seg.id is not None
            catalog.set_text(seg.id, f"Take {n + 1}, and 3 cats.")


@pytest.fixture
def evaluable(own_cache: Path, demo_copy: Workspace) -> Workspace:
    """The demo (tiny models) with its clean segments accepted and a tiny trained voice."""
    ws = demo_copy
    ws.settings.models = dataclasses.replace(
        ws.settings.models, tts="tiny", asr="tiny", speaker="tiny", device="cpu"
    )
    ws.save()
    assert accept_passing(ws) > 0
    _three_recordings(ws, "alice")
    make_tiny_voice(ws, "alice", seed=1)
    return ws


ITEM_FIELDS = {
    "text", "hypothesis", "wer", "cer", "similarity", "rtf", "seconds", "render_seconds",
    "segment_id", "wer_whisper",
}  # fmt: skip
AGGREGATES = {
    "wer", "cer", "similarity", "reference_similarity", "rtf", "render_seconds",
    "audio_seconds", "load_seconds", "items", "wer_whisper",
}  # fmt: skip


@pytest.mark.slow
def test_eval_command_end_to_end_with_tiny_models(evaluable: Workspace) -> None:
    segments, source, _ = held_out_segments(evaluable, "alice")
    assert segments and source in ("test", "test+val")
    result = CliRunner().invoke(main, ["eval", str(evaluable.root), "--voice", "alice"])
    # The tiny models say nothing intelligible: WER fails, and the command says so.
    assert result.exit_code == 1, result.output
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("failed gate(s): ") and "wer" in last
    assert "Traceback" not in result.output
    for gate in ("wer", "cer", "similarity", "rtf"):
        assert gate in result.output
    assert "FAIL" in result.output
    assert "WER in Whisper's English form" in result.output
    assert "similarity text by text, in render order:" in result.output

    files = sorted((evaluable.voices_dir / "alice" / "eval").glob("*.json"))
    assert len(files) == 1
    doc = json.loads(files[0].read_text())
    assert latest_report(evaluable, "alice") == {**doc, "path": str(files[0])}
    assert doc["voice"] == "alice" and doc["backend"] == "csm" and doc["texts_source"] == source
    assert set(doc["aggregates"]) >= AGGREGATES
    assert len(doc["items"]) == len(segments) == doc["aggregates"]["items"]
    assert [item["text"] for item in doc["items"]] == [s.text for s in segments]
    assert [item["segment_id"] for item in doc["items"]] == [s.id for s in segments]
    assert doc["segment_ids"] == [s.id for s in segments] and doc["split_seed"] == 42
    for item in doc["items"]:
        assert set(item) == ITEM_FIELDS
        assert item["wer"] >= 0.0 and item["cer"] >= 0.0 and item["seconds"] > 0
    assert doc["aggregates"]["reference_similarity"] is not None
    assert doc["aggregates"]["rtf"] > 0
    assert set(doc["gates"]) == {"wer", "cer", "similarity", "rtf"}
    wer_gate = doc["gates"]["wer"]
    assert wer_gate == {"value": doc["aggregates"]["wer"], "threshold": 0.07, "passed": False}
    assert doc["passed"] is False
    assert doc["anchors"] == ["voices/alice/anchors/anchor-1.wav"]
    assert doc["models"] == {"tts": "tiny", "asr": "tiny", "speaker": "tiny"}
    # Which normaliser made each figure; WER in Whisper's form beside ours, recomputed here.
    assert doc["normalisers"] == {
        "wer": NORMALISER, "cer": NORMALISER, "wer_whisper": WHISPER_NORMALISER,
    }  # fmt: skip
    kept = [
        (whisper_normalise(i["text"]), whisper_normalise(i["hypothesis"])) for i in doc["items"]
    ]
    kept = [(r, h) for r, h in kept if r]
    expected = corpus_wer([r for r, _ in kept], [h for _, h in kept], normalised=False)
    assert doc["aggregates"]["wer_whisper"] == pytest.approx(expected)


@pytest.mark.slow
def test_eval_with_a_texts_file_and_loose_gates(evaluable: Workspace, tmp_path: Path) -> None:
    evaluable.settings.evaluation = dataclasses.replace(
        evaluable.settings.evaluation, max_wer=1000.0, max_cer=1000.0, min_similarity=-1.0,
        max_rtf=1000.0,
    )  # fmt: skip
    evaluable.save()
    texts = tmp_path / "texts.txt"
    texts.write_text("Hello world.\n\nWe have 3 cats.\n")
    result = CliRunner().invoke(
        main,
        ["eval", str(evaluable.root), "--voice", "alice", "--texts", str(texts), "--seed", "5"],
    )
    assert result.exit_code == 0, result.output
    assert "PASS" in result.output and "FAIL" not in result.output
    doc = latest_report(evaluable, "alice")
    assert doc is not None and doc["passed"] is True and doc["seed"] == 5
    assert doc["texts_source"] == "texts"
    assert [item["text"] for item in doc["items"]] == ["Hello world.", "We have 3 cats."]


@pytest.mark.slow
def test_eval_draft_baseline(evaluable: Workspace, tmp_path: Path) -> None:
    texts = tmp_path / "texts.txt"
    texts.write_text("The draft voice reads this.\n")
    result = CliRunner().invoke(
        main, ["eval", str(evaluable.root), "--voice", "bob", "--draft", "--texts", str(texts)]
    )
    assert result.exit_code in (0, 1) and "Traceback" not in result.output, result.output
    doc = latest_report(evaluable, "bob")
    assert doc is not None and doc["backend"] == "draft" and doc["models"]["tts"] == "espeak-ng"
    assert len(doc["items"]) == 1 and doc["items"][0]["seconds"] > 0
    assert doc["aggregates"]["reference_similarity"] is None  # bob has nothing held out
    assert any("no reference similarity" in note for note in doc["notes"])


@pytest.mark.slow
def test_eval_mistakes_are_one_line(evaluable: Workspace, tmp_path: Path) -> None:
    runner = CliRunner()
    cases = [
        (["--voice", "bob"], "no trained voice"),  # bob is a speaker without a voice
        (["--voice", "zed"], "zed"),  # not a speaker at all
        (["--voice", "alice", "--texts", str(tmp_path / "nope.txt")], "nope.txt"),
        (["--voice", "bob", "--draft"], "no accepted, transcribed segment in the test or val"),
    ]
    for args, needle in cases:
        result = runner.invoke(main, ["eval", str(evaluable.root), *args])
        assert result.exit_code == 1
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("podforge: error:"), result.output
        assert needle in lines[0]
    assert latest_report(evaluable, "bob") is None


@pytest.mark.slow
def test_missing_model_is_one_line(evaluable: Workspace, tmp_path: Path) -> None:
    evaluable.settings.models = dataclasses.replace(
        evaluable.settings.models, asr=str(tmp_path / "no-such-asr")
    )
    evaluable.save()
    texts = tmp_path / "t.txt"
    texts.write_text("Hello.\n")
    result = CliRunner().invoke(
        main, ["eval", str(evaluable.root), "--voice", "alice", "--texts", str(texts)]
    )
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("podforge: error:") and "no-such-asr" in lines[0]


@pytest.mark.slow
def test_a_trained_voice_is_evaluated_only_on_segments_it_never_trained_on(
    demo_copy: Workspace, tmp_path: Path
) -> None:
    """End to end with the tiny models, in real processes: `podforge train` records the ids
    it trained and validated on (runs/<id>/split.json), `podforge eval` the ids it scored;
    they come from the same stored splits, so the trained and the scored ids are disjoint,
    with the training seed far from the split seed."""
    import os
    import subprocess
    import sys

    ws = demo_copy
    ws.settings.models = dataclasses.replace(
        ws.settings.models, tts="tiny", asr="tiny", speaker="tiny", device="cpu"
    )
    ws.settings.training = dataclasses.replace(
        ws.settings.training, grad_accum=1, batch_size=1, warmup_steps=1, eval_every=2,
        save_every=2, max_steps=2, seed=7,
    )  # fmt: skip
    ws.save()
    assert accept_passing(ws) > 0
    _three_recordings(ws, "alice")
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache"),
           "PYTHONPATH": str(REPO)}  # fmt: skip
    exe = str(Path(sys.executable).with_name("podforge"))
    trained = subprocess.run(
        [exe, "train", str(ws.root), "--speaker", "alice", "--foreground"],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert trained.returncode == 0, trained.stderr + trained.stdout
    (run_dir,) = [p for p in ws.runs_dir.iterdir() if not p.name.startswith(".")]
    record = json.loads((run_dir / "split.json").read_text())
    assert record["speaker"] == "alice" and record["split_seed"] == 42
    assert record["train"] and record["val"] and record["val_from_train"] is False
    assert not set(record["train"]) & set(record["val"])

    scored = subprocess.run(
        [exe, "eval", str(ws.root), "--voice", "alice"],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert scored.returncode in (0, 1) and "Traceback" not in scored.stderr, scored.stderr
    doc = latest_report(ws, "alice")
    assert doc is not None and doc["segment_ids"]
    assert [item["segment_id"] for item in doc["items"]] == doc["segment_ids"]
    assert not set(doc["segment_ids"]) & set(record["train"])
    with Catalog.open(ws.catalog_path) as catalog:
        split_of = {s.id: s.split for s in catalog.segments(speaker="alice")}
    assert {split_of[i] for i in record["train"]} == {"train"}
    assert {split_of[i] for i in record["val"]} == {"val"}
    assert {split_of[i] for i in doc["segment_ids"]} <= {"test", "val"}


def test_gates_hold_each_figure_in_its_direction() -> None:
    from core.evaluation.gates import GATES, apply_gates, bound
    from core.settings import Evaluation

    limits = Evaluation(max_wer=0.1, max_cer=0.05, min_similarity=0.7, max_rtf=1.0)
    results = apply_gates(limits, {"wer": 0.1, "cer": 0.06, "similarity": 0.7, "rtf": None})
    assert results == {
        "wer": (0.1, 0.1, True),
        "cer": (0.06, 0.05, False),
        "similarity": (0.7, 0.7, True),
        "rtf": (None, 1.0, False),  # nothing measured fails
    }
    assert not apply_gates(limits, {"wer": 0, "cer": 0, "similarity": 0.69, "rtf": 0.5})[
        "similarity"
    ][2]
    assert [g.name for g in GATES] == ["wer", "cer", "similarity", "rtf"]
    assert [bound(g.name) for g in GATES] == ["<=", "<=", ">=", "<="]
