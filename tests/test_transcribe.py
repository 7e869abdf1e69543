"""core.models.asr and core.models.tiny.whisper: the tiny model end to end, load errors, lazy
imports."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from core.audio.io import read
from core.errors import ModelError
from core.models.asr import (
    SAMPLE_RATE,
    AsrModel,
    Transcript,
    asr_hub_repo,
    load_asr,
    resolve_asr_model,
)
from core.models.hub import looks_like_path
from core.models.tiny.whisper import (
    MODEL_FILES,
    STAMP_FILE,
    TINY_WHISPER_VERSION,
    build_tiny_whisper,
    tiny_whisper_path,
)
from tests.conftest import REPO, TESTDATA, loaded_after

JFK = TESTDATA / "jfk.flac"
HUB_ASR = "Systran/faster-whisper-large-v3"


@pytest.fixture(scope="module")
def tiny_asr(cache_home: Path) -> AsrModel:
    """The tiny model, loaded by the same call a workspace with ``models.asr = "tiny"`` makes."""
    return load_asr("tiny", device="cpu")


def generated_clip(seconds: float, seed: int = 0) -> npt.NDArray[np.float32]:
    """A voiced-sounding clip: a gliding harmonic tone with syllable-rate bursts and noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    pitch = 140 + 30 * np.sin(2 * np.pi * 0.3 * t)
    phase = 2 * np.pi * np.cumsum(pitch) / SAMPLE_RATE
    voice = sum(np.sin(k * phase) / k for k in range(1, 6))
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 4 * t) ** 2
    audio = 0.2 * voice * envelope + 0.01 * rng.standard_normal(t.size)
    return np.asarray(audio, dtype=np.float32)


def check_transcript(transcript: Transcript, duration: float) -> None:
    assert isinstance(transcript, Transcript)
    assert isinstance(transcript.text, str)
    assert transcript.language == "en"
    assert transcript.avg_logprob is None or transcript.avg_logprob <= 0.0
    previous_start = 0.0
    for word in transcript.words:
        assert isinstance(word.text, str)
        assert 0.0 <= word.start_sec <= word.end_sec <= duration + 1e-6, word
        assert word.start_sec >= previous_start, transcript.words
        assert 0.0 <= word.probability <= 1.0
        previous_start = word.start_sec


def file_hashes(folder: Path) -> dict[str, str]:
    return {
        path.name: hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.iterdir())
    }


# --------------------------------------------------------------------------- the tiny model


def test_tiny_whisper_builds_deterministically(tmp_path: Path) -> None:
    first = build_tiny_whisper(tmp_path / "a")
    second = build_tiny_whisper(tmp_path / "b")

    assert first == tmp_path / "a"
    assert set(file_hashes(first)) == {*MODEL_FILES, STAMP_FILE}
    assert file_hashes(first) == file_hashes(second)
    assert sum(p.stat().st_size for p in first.iterdir()) < 4_000_000

    # Idempotent: a complete build is reused, not rewritten.
    mtimes = {p.name: p.stat().st_mtime_ns for p in first.iterdir()}
    assert build_tiny_whisper(first) == first
    assert {p.name: p.stat().st_mtime_ns for p in first.iterdir()} == mtimes


def test_tiny_whisper_tokenizer_has_whisper_specials(tmp_path: Path) -> None:
    from tokenizers import Tokenizer

    folder = build_tiny_whisper(tmp_path / "m")
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    vocabulary = json.loads((folder / "vocabulary.json").read_text(encoding="utf-8"))
    assert vocabulary == [tokenizer.id_to_token(i) for i in range(tokenizer.get_vocab_size())]

    def token_id(token: str) -> int:
        index = tokenizer.token_to_id(token)
        assert index is not None, token
        return int(index)

    eot, sot = token_id("<|endoftext|>"), token_id("<|startoftranscript|>")
    no_timestamps = token_id("<|notimestamps|>")
    assert sot == eot + 1
    for token in ("<|en|>", "<|translate|>", "<|transcribe|>", "<|startofprev|>", "<|nospeech|>"):
        assert sot < token_id(token) < no_timestamps
    # The timestamps close the vocabulary, right after <|notimestamps|>, every 20 ms.
    assert token_id("<|0.00|>") == no_timestamps + 1
    assert token_id("<|0.02|>") == no_timestamps + 2
    assert token_id("<|30.00|>") == len(vocabulary) - 1
    # Ordinary text encodes (every byte has a token) and round-trips.
    ids = tokenizer.encode(" ask not what your country can do", add_special_tokens=False).ids
    assert ids and max(ids) < eot
    assert tokenizer.decode(ids) == " ask not what your country can do"

    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    assert config["lang_ids"] == [token_id("<|en|>"), *config["lang_ids"][1:]]
    assert config["alignment_heads"]
    preprocessor = json.loads((folder / "preprocessor_config.json").read_text(encoding="utf-8"))
    assert preprocessor["feature_size"] == 80
    assert preprocessor["sampling_rate"] == SAMPLE_RATE


def test_build_refuses_a_folder_that_is_not_a_tiny_build(tmp_path: Path) -> None:
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me", encoding="utf-8")
    with pytest.raises(ModelError) as info:
        build_tiny_whisper(folder)
    assert str(folder) in str(info.value)
    assert (folder / "notes.txt").read_text(encoding="utf-8") == "keep me"


def test_build_replaces_an_older_or_partial_build(tmp_path: Path) -> None:
    folder = tmp_path / "m"
    folder.mkdir()
    stamp = {"model": "tiny-whisper", "version": TINY_WHISPER_VERSION - 1, "seed": 0}
    (folder / STAMP_FILE).write_text(json.dumps(stamp), encoding="utf-8")
    (folder / "model.bin").write_bytes(b"old")
    build_tiny_whisper(folder)
    assert file_hashes(folder) == file_hashes(build_tiny_whisper(tmp_path / "fresh"))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no leftovers


def test_tiny_whisper_path_is_in_the_user_cache(cache_home: Path) -> None:
    path = tiny_whisper_path()
    assert path.parent == cache_home / "podforge"
    assert (path / "model.bin").is_file()
    assert resolve_asr_model("tiny") == str(path)
    assert tiny_whisper_path() == path


def test_building_the_tiny_model_does_not_import_torch(tmp_path: Path) -> None:
    code = (
        "import sys; from pathlib import Path; "
        "from core.models.tiny.whisper import build_tiny_whisper; "
        f"build_tiny_whisper(Path({str(tmp_path / 'm')!r})); "
        "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('ctranslate2.specs')))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "[]"


# --------------------------------------------------------------------------- transcription


def test_tiny_model_loads_through_load_asr(tiny_asr: AsrModel, cache_home: Path) -> None:
    assert tiny_asr.model_id == "tiny"
    assert tiny_asr.path == str(tiny_whisper_path())
    assert tiny_asr.device == "cpu"
    assert tiny_asr.compute_type in {"int8", "float32"}
    assert not tiny_asr.multilingual


def test_transcribe_jfk(tiny_asr: AsrModel) -> None:
    audio, rate = read(JFK, target_rate=SAMPLE_RATE)
    assert rate == SAMPLE_RATE
    transcript = tiny_asr.transcribe(audio)
    check_transcript(transcript, audio.size / SAMPLE_RATE)
    assert transcript.words  # the tiny model's garbage is made of words
    assert tiny_asr.transcribe(audio) == transcript  # deterministic


def test_transcribe_generated_clip(tiny_asr: AsrModel) -> None:
    clip = generated_clip(10.0)
    transcript = tiny_asr.transcribe(clip)
    check_transcript(transcript, 10.0)
    assert transcript.words
    assert transcript.text
    plain = tiny_asr.transcribe(clip, word_timestamps=False)
    assert plain.words == ()
    assert plain.text == transcript.text


def test_transcribe_odd_clips(tiny_asr: AsrModel) -> None:
    assert tiny_asr.transcribe(np.zeros(0, dtype=np.float32)) == Transcript("", "en", (), None)
    check_transcript(tiny_asr.transcribe(np.zeros(100, dtype=np.float32)), 100 / SAMPLE_RATE)
    check_transcript(tiny_asr.transcribe(generated_clip(1.0).astype(np.float64)), 1.0)
    with pytest.raises(ValueError, match="mono"):
        tiny_asr.transcribe(np.zeros((SAMPLE_RATE, 2), dtype=np.float32))


def test_transcribe_many(tiny_asr: AsrModel) -> None:
    clips = [
        generated_clip(3.0, seed=1),
        generated_clip(12.5, seed=2),
        np.zeros(0, dtype=np.float32),
        generated_clip(31.0, seed=3),  # over one window: the long-form path
        generated_clip(0.7, seed=4),
    ]
    transcripts = tiny_asr.transcribe_many(clips, batch_size=3)
    assert len(transcripts) == 5
    for clip, transcript in zip(clips, transcripts, strict=True):
        check_transcript(transcript, clip.size / SAMPLE_RATE)
    assert transcripts[2] == Transcript("", "en", (), None)
    assert_same_transcripts(transcripts, [tiny_asr.transcribe(clip) for clip in clips])


def test_batched_windows_match_one_by_one(tiny_asr: AsrModel) -> None:
    """The GPU path (several clips per batch) gives what one clip at a time gives."""
    clips = [generated_clip(seconds, seed=i) for i, seconds in enumerate((2.0, 9.5, 30.0, 4.2))]
    batched = tiny_asr._transcribe_windows(clips, "en", True, batch_size=4)
    assert_same_transcripts(batched, [tiny_asr.transcribe(clip) for clip in clips])


def assert_same_transcripts(got: list[Transcript], expected: list[Transcript]) -> None:
    """The same words at the same times; probabilities equal to float32 rounding (a batched
    matrix product sums in another order on some CPUs: the last bits differ)."""
    assert [t.text for t in got] == [t.text for t in expected]
    assert [t.language for t in got] == [t.language for t in expected]
    for a, b in zip(got, expected, strict=True):
        assert [(w.start_sec, w.end_sec, w.text) for w in a.words] == [
            (w.start_sec, w.end_sec, w.text) for w in b.words
        ]
        assert [w.probability for w in a.words] == pytest.approx(
            [w.probability for w in b.words], rel=1e-5
        )
        assert (a.avg_logprob is None) == (b.avg_logprob is None)
        if a.avg_logprob is not None:
            assert a.avg_logprob == pytest.approx(b.avg_logprob, rel=1e-5)


# --------------------------------------------------------------------------- load errors


def test_hub_model_offline_without_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HUGGINGFACE_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    for model_id in ("large-v3", "Systran/faster-whisper-small.en"):
        with pytest.raises(ModelError) as info:
            load_asr(model_id, device="cpu")
        message = str(info.value)
        assert "\n" not in message
        assert repr(model_id) in message
        assert "offline" in message
        assert '"tiny"' in message and "local folder" in message
    assert not (tmp_path / "hf" / "hub" / "models--Systran--faster-whisper-large-v3").exists()


def test_unknown_model_name() -> None:
    with pytest.raises(ModelError, match="'large-v9' is unknown"):
        load_asr("large-v9", device="cpu")


def test_local_folder_that_is_not_a_model(not_a_model: Path) -> None:
    folder = not_a_model
    with pytest.raises(ModelError) as info:
        load_asr(str(folder), device="cpu")
    message = str(info.value)
    assert "\n" not in message
    assert str(folder) in message
    assert "model.bin" in message


def test_local_folder_with_a_broken_model(tmp_path: Path) -> None:
    folder = build_tiny_whisper(tmp_path / "m")
    (folder / "model.bin").write_bytes(b"not a model")
    with pytest.raises(ModelError) as info:
        load_asr(str(folder), device="cpu")
    assert "\n" not in str(info.value)
    assert str(folder) in str(info.value)


def test_missing_local_folder(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="does not exist"):
        load_asr(str(tmp_path / "nowhere"), device="cpu")
    for model_id in ("./nowhere/whisper", "~/nowhere/whisper", ".hidden-model"):
        with pytest.raises(ModelError, match="does not exist"):
            load_asr(model_id, device="cpu")


@pytest.mark.parametrize(
    "model_id",
    [
        "/models/whisper",
        "./whisper",
        "../models/whisper",
        ".",
        ".whisper",
        "~/models/whisper",
        "~someone/whisper",  # not expanded: no error for an unknown user
        "models\\whisper",
        "C:\\models\\whisper",
        "models/whisper/v3",
    ],
)
def test_folder_forms_look_like_paths(model_id: str) -> None:
    """The one rule every loader (ASR, speaker, TTS) and the doctor use."""
    assert looks_like_path(model_id)


@pytest.mark.parametrize(
    "model_id",
    ["tiny", "large-v3", "distil-large-v3.5", HUB_ASR, "speechbrain/spkrec-ecapa-voxceleb"],
)
def test_names_and_hub_ids_do_not_look_like_paths(model_id: str) -> None:
    assert not looks_like_path(model_id)


def test_asr_hub_repo_is_faster_whispers_rule() -> None:
    assert asr_hub_repo("large-v3") == HUB_ASR
    assert asr_hub_repo("turbo") == "mobiuslabsgmbh/faster-whisper-large-v3-turbo"
    assert asr_hub_repo("someone/converted-whisper") == "someone/converted-whisper"
    assert asr_hub_repo("large-v9") is None
    assert asr_hub_repo("tiny") == "Systran/faster-whisper-tiny"  # load_asr's "tiny" is ours


def test_bad_device(cache_home: Path) -> None:
    with pytest.raises(ModelError, match="'tpu'"):
        load_asr("tiny", device="tpu")
    import ctranslate2

    if ctranslate2.get_cuda_device_count() == 0:
        with pytest.raises(ModelError, match="no CUDA GPU"):
            load_asr("tiny", device="cuda")


def test_importing_transcribe_does_not_import_faster_whisper() -> None:
    heavy = ("faster_whisper", "ctranslate2", "tokenizers", "huggingface_hub", "torch")
    assert loaded_after("core.models.asr, core.models.tiny.whisper", heavy) == []


def test_concurrent_builds_agree(tmp_path: Path) -> None:
    """Processes racing to build the same folder all end with one complete model."""
    folder = tmp_path / "shared" / "tiny-whisper"
    code = (
        "import sys; from pathlib import Path; "
        "from core.models.tiny.whisper import build_tiny_whisper; "
        f"print(build_tiny_whisper(Path({str(folder)!r})))"
    )
    racers = [
        subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    outputs = [racer.communicate(timeout=60)[0].strip() for racer in racers]
    assert [racer.returncode for racer in racers] == [0, 0, 0]
    assert outputs == [str(folder)] * 3
    assert file_hashes(folder) == file_hashes(build_tiny_whisper(tmp_path / "alone"))
    assert [p.name for p in folder.parent.iterdir()] == ["tiny-whisper"]  # no temp folders left
