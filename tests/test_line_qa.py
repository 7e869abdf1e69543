"""Line QA, retakes and pronunciations (core.episodes.qa, retakes, pronunciations, verbalise).

The tiny ASR and ECAPA models are random: their scores prove nothing. So the retake logic
runs with a planted scorer (no transcript, a low similarity for planted wrong-speaker audio)
over real draft-voice renders, with real defects planted in the render cache; the signal
metrics are measured on real speech (the espeak-ng draft voice) against the silences and
clipping put into it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import soundfile as sf

from core.episodes.parser import load_script
from core.episodes.pronunciations import load_pronunciations, respell, spoken_line, spoken_text
from core.episodes.qa import DEFAULT_RATE, judge, signal_scores, speaker_rate_range
from core.episodes.render import line_cache_key, render_episode
from core.episodes.retakes import candidate_seed, save_choice, score_audio
from core.episodes.synthesis.backends import make_backend
from core.episodes.synthesis.cache import RenderCache
from core.episodes.verbalise import verbalise
from core.errors import WorkspaceConfigError
from core.evaluation.text import normalise, whisper_normalise
from core.settings import LineQa
from core.workspace import Workspace

SR = 24000


# --------------------------------------------------------------------------- verbalising


@pytest.mark.parametrize(
    ("written", "spoken"),
    [
        ("1,250.5", "one thousand two hundred fifty point five"),
        ("1.5k", "one point five thousand"),
        ("$5", "five dollars"),
        ("1990s", "nineteen nineties"),
        ("-5", "minus five"),
        ("3:00", "three o'clock"),
        ("$1.50", "one dollar and fifty cents"),
        ("$2.5m", "two point five million dollars"),
        ("the '90s", "the nineties"),
        ("10:05 pm", "ten oh five p m"),
        ("20%", "twenty percent"),
        ("the 21st", "the twenty first"),
        ("in 2024", "in twenty twenty four"),
        ("in 2005", "in two thousand five"),
        ("3.05 s", "three point zero five s"),
        ("well-known 2-3", "well-known two-three"),
    ],
)
def test_verbalise(written: str, spoken: str) -> None:
    assert verbalise(written) == spoken


def test_the_reference_and_a_transcript_meet_in_one_form() -> None:
    # What the voice said, written either way by an ASR, compares equal to the script.
    assert normalise("It cost $5 in the 1990s.") == normalise(
        "it cost five dollars in the nineteen nineties"
    )
    assert normalise("-5 at 3:00") == "minus five at three oclock"
    # Whisper's convention writes digits; both sides go through it.
    assert whisper_normalise("one thousand two hundred fifty") == whisper_normalise("1250")


# --------------------------------------------------------------------------- signal metrics


def _speech(
    tmp_path: Path, text: str = "The quick brown fox jumps over the lazy dog."
) -> npt.NDArray[np.float32]:
    """Real speech: espeak-ng at 24 kHz, leading and trailing silence trimmed by sox."""
    raw, trimmed = tmp_path / "raw.wav", tmp_path / "speech.wav"
    subprocess.run(["espeak-ng", "-w", str(raw), text], check=True, capture_output=True)
    subprocess.run(
        ["sox", str(raw), "-r", str(SR), str(trimmed), "silence", "1", "0.02", "1%", "reverse",
         "silence", "1", "0.02", "1%", "reverse"], check=True, capture_output=True,
    )  # fmt: skip
    audio, rate = sf.read(trimmed, dtype="float32")
    assert rate == SR
    return audio


def _silence(seconds: float) -> npt.NDArray[np.float32]:
    return np.zeros(round(seconds * SR), np.float32)


def test_silences_and_clipping_are_measured_where_they_were_put(tmp_path: Path) -> None:
    speech = _speech(tmp_path)
    clean = signal_scores(speech, SR)
    assert clean.lead < 0.1 and clean.trail < 0.25 and clean.longest_pause < 0.6
    assert clean.clipped_ratio == 0.0
    padded = np.concatenate([_silence(1.5), speech, _silence(3.0), speech, _silence(2.0)])
    got = signal_scores(padded, SR)
    assert got.lead == pytest.approx(1.5, abs=0.1)
    assert got.trail == pytest.approx(2.0, abs=0.3)
    assert got.longest_pause == pytest.approx(3.0, abs=0.35)
    assert got.duration == pytest.approx(len(padded) / SR)
    clipped = np.clip(speech * 8.0, -1.0, 1.0)
    assert signal_scores(clipped, SR).clipped_ratio > 0.01
    reasons = judge(
        score_audio(padded, SR, "the quick brown fox", None, None),
        LineQa(),
        speaker_rate_range([], 0.25),
    )
    assert any("before the speech" in r for r in reasons)
    assert any("3.0 s pause" in r or "pause inside" in r for r in reasons)


def test_the_speaking_rate_is_held_to_the_speakers_own_range(tmp_path: Path) -> None:
    rates = speaker_rate_range([(10, 4.0), (12, 4.0), (9, 4.0), (11, 4.0), (10, 4.0)], 0.25)
    assert rates.measured_on == 5 and rates.median == pytest.approx(2.5)
    assert rates.low < 2.25 * 0.8 and rates.high > 3.0 * 1.2
    assert speaker_rate_range([(10, 4.0)], 0.25).low == DEFAULT_RATE[0]  # too few: default
    speech = _speech(tmp_path)  # nine words in ~2.5 s
    words = "the quick brown fox jumps over the lazy dog"
    fine = score_audio(speech, SR, words, words, 0.9)
    assert fine.wer == 0.0 and not judge(fine, LineQa(), speaker_rate_range([], 0.25))
    slow = speaker_rate_range([(4, 4.0)] * 5, 0.25)  # a speaker of one word a second
    assert any("words/s" in r for r in judge(fine, LineQa(), slow))


def test_scores_use_the_verbalised_reference() -> None:
    audio = np.zeros(SR, np.float32)
    said = score_audio(audio, SR, "It cost $5.", "it cost five dollars", None)
    assert said.wer == 0.0 and said.wer_whisper == 0.0
    wrong = score_audio(audio, SR, "It cost $5.", "it cost nine dollars", None)
    assert wrong.wer == pytest.approx(1 / 4)


# --------------------------------------------------------------------------- retakes


class PlantedScorer:
    """No transcript (intelligibility is not judged); a similarity of 0.2 for the clips whose
    length was planted as another speaker's, 0.9 for the rest. Counts its calls."""

    identity = "planted-1"

    def __init__(self, wrong_lengths: set[int]) -> None:
        self.wrong_lengths = wrong_lengths
        self.calls = 0

    def transcribe(self, clips: Sequence[npt.NDArray[np.float32]]) -> list[str | None]:
        self.calls += 1
        return [None] * len(clips)

    def similarity(
        self, voice: str, clips: Sequence[npt.NDArray[np.float32]]
    ) -> list[float | None]:
        return [0.2 if len(clip) in self.wrong_lengths else 0.9 for clip in clips]


def _clip16k_length(audio: npt.NDArray[np.float32]) -> int:
    from core.audio.io import resample

    return len(resample(audio, SR, 16000))


def test_planted_bad_takes_are_flagged_retaken_and_re_judged_from_the_cache(
    demo_copy: Workspace,
) -> None:
    script = demo_copy.scripts_dir / "welcome.md"
    first = render_episode(demo_copy, script, backend="draft")
    assert first.qa is None  # line QA is off by default
    episode = load_script(script, demo_copy)
    engine = make_backend(demo_copy, "draft")
    cache = RenderCache(demo_copy.episodes_dir / "welcome" / "cache")
    silent_line, wrong_line = episode.lines[1], episode.lines[2]
    key = line_cache_key(demo_copy, engine, silent_line, 0)
    good = cache.get(key)
    assert good is not None
    half = len(good.audio) // 2  # a 3 s silence in the middle of take 0
    planted = np.concatenate([good.audio[:half], _silence(3.0), good.audio[half:]])
    cache.put(key, type(good)(audio=planted, sample_rate=good.sample_rate))
    other = cache.get(line_cache_key(demo_copy, engine, episode.lines[3], 0))  # another voice
    assert other is not None and wrong_line.voice != episode.lines[3].voice
    someone_else = np.concatenate([other.audio, _silence(0.1)])  # a length of its own
    cache.put(line_cache_key(demo_copy, engine, wrong_line, 0), type(other)(someone_else, SR))
    scorer = PlantedScorer({_clip16k_length(someone_else)})

    result = render_episode(demo_copy, script, backend="draft", retakes=3, scorer=scorer)
    assert result.qa is not None and not result.suspect
    verdicts = {v.index: v for v in result.qa}
    silent, wrong = verdicts[silent_line.index], verdicts[wrong_line.index]
    assert "pause inside the line" in " ".join(silent.candidates[0].reasons)
    assert "similarity 0.20" in " ".join(wrong.candidates[0].reasons)
    for verdict in (silent, wrong):
        assert len(verdict.candidates) == 2 and verdict.kept.take == 1 and verdict.how == "passed"
        assert verdict.kept.seed == candidate_seed(verdict.candidates[0].seed, 1)
    assert all(
        len(v.candidates) == 1 and v.kept.take == 0 for v in result.qa if v not in (silent, wrong)
    )
    manifest = json.loads(result.exported.manifest.read_text())
    lines = {entry["index"]: entry for entry in manifest["qa"]["lines"]}
    assert [c["take"] for c in lines[silent_line.index]["candidates"]] == [0, 1]
    assert lines[silent_line.index]["candidates"][0]["scores"]["signal"]["longest_pause"] > 2.5
    assert manifest["qa"]["summary"]["retaken"] == 2 and manifest["qa"]["summary"]["suspect"] == []
    # The mixed episode has the kept takes: as long as the clean lines, not the planted ones.
    kept_line = next(ln for ln in manifest["lines"] if ln["index"] == silent_line.index)
    assert kept_line["end_sec"] - kept_line["start_sec"] < len(planted) / SR - 2.5

    # A looser similarity limit re-judges from the score cache: nothing synthesised or
    # scored; the other speaker's take is no longer flagged for its identity.
    demo_copy.settings.qa.min_similarity = 0.1
    calls = PlantedScorer(set())
    again = render_episode(demo_copy, script, backend="draft", retakes=3, scorer=calls)
    assert again.rendered_lines == [] and again.qa is not None and calls.calls == 0
    now = {v.index: v for v in again.qa}
    assert not any("similarity" in r for r in now[wrong_line.index].candidates[0].reasons)
    assert "pause inside the line" in " ".join(now[silent_line.index].candidates[0].reasons)
    assert not again.suspect


def test_a_take_chosen_by_ear_is_kept(demo_copy: Workspace) -> None:
    script = demo_copy.scripts_dir / "welcome.md"
    line = load_script(script, demo_copy).lines[0]
    save_choice(demo_copy, "welcome", line.voice, line.text, 2)
    scorer = PlantedScorer(set())
    result = render_episode(demo_copy, script, backend="draft", retakes=1, scorer=scorer)
    assert result.qa is not None
    chosen = next(v for v in result.qa if v.index == line.index)
    assert chosen.how == "by ear" and chosen.kept.take == 2 and not chosen.suspect
    # With line QA off the chosen take is still kept, and nothing is scored (no ASR needed).
    calls = PlantedScorer(set())
    off = render_episode(demo_copy, script, backend="draft", retakes=0, scorer=calls)
    assert off.qa is None and calls.calls == 0
    manifest = json.loads(off.exported.manifest.read_text())
    kept = next(ln for ln in manifest["lines"] if ln["index"] == line.index)
    assert kept["seed"] == chosen.kept.seed and "qa" not in manifest


def test_strict_render_exits_non_zero_with_a_summary(demo_copy: Workspace) -> None:
    """The tiny ASR transcribes nonsense: every line stays suspect, and --strict says so."""
    out = subprocess.run(
        [str(Path(sys.executable).with_name("podforge")), "render", str(demo_copy.root),
         "scripts/welcome.md", "--draft", "--retakes", "1", "--strict"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode == 3, out.stderr[-2000:]
    assert "QA: 0 of" in out.stderr and "still suspect" in out.stderr
    assert "suspect: script line" in out.stderr and "Traceback" not in out.stderr


# --------------------------------------------------------------------------- pronunciations


def test_respellings_change_what_is_said_and_only_those_lines(demo_copy: Workspace) -> None:
    script = demo_copy.scripts_dir / "welcome.md"
    episode = load_script(script, demo_copy)
    before = render_episode(demo_copy, script, backend="draft").exported.wav.read_bytes()
    word = "podforge"
    touched = [ln.index for ln in episode.lines if word in ln.text.lower()]
    assert touched and len(touched) < len(episode.lines)
    (demo_copy.root / "pronunciations.toml").write_text(
        f'{word} = "pod forj"\n"2 cats" = "two kats"\n'
    )
    lexicon = load_pronunciations(demo_copy.root)
    assert respell("Welcome to PodForge!", lexicon) == "Welcome to pod forj!"
    assert spoken_text("I have 2 cats and 3 dogs", lexicon) == "I have two kats and three dogs"
    said = spoken_line(episode.lines[touched[0]], lexicon)
    assert "pod forj" in said.text and word not in said.text.lower()
    again = render_episode(demo_copy, script, backend="draft")
    assert sorted(again.rendered_lines) == touched
    assert again.exported.wav.read_bytes() != before


def test_a_broken_pronunciations_file_is_one_line_naming_it(tmp_path: Path) -> None:
    (tmp_path / "pronunciations.toml").write_text('good = "fine"\nbad = 3\n')
    with pytest.raises(
        WorkspaceConfigError, match=r"pronunciations\.toml:2: 'bad' needs a respelling"
    ):
        load_pronunciations(tmp_path)
    (tmp_path / "pronunciations.toml").write_text("oops = \n")
    with pytest.raises(WorkspaceConfigError, match=r"pronunciations\.toml: .*line 1"):
        load_pronunciations(tmp_path)


# --------------------------------------------------------------------------- script lint

LINT_SCRIPT = """+++
title = "T"
[speakers]
A = "alice"
+++

A: NASA said $5 at 3:00; see https://x.org & <emphasis>Nguyen</emphasis> in the 1990s.
"""


def test_lint_flags_what_voices_misread_at_its_column(tmp_path: Path) -> None:
    from core.episodes.lint import MIN_VOCABULARY, add_pronunciation, lint_lines
    from core.episodes.parser import parse_script
    from core.episodes.pronunciations import Lexicon

    lines = parse_script(LINT_SCRIPT).lines
    source = LINT_SCRIPT.splitlines()
    hints = lint_lines(lines, source, Lexicon(), {})
    assert [(h.kind, h.token) for h in hints] == [
        ("acronym", "NASA"), ("number", "$5"), ("number", "3:00"), ("address", "https://x.org"),
        ("symbol", "&"), ("number", "1990s"),
    ]  # fmt: skip
    for hint in hints:
        assert source[hint.line - 1][hint.column - 1 :].startswith(hint.token)
    assert "“five dollars”" in hints[1].message and "“nineteen nineties”" in hints[5].message
    # With a large vocabulary of the speaker's own words, a word never said is flagged too.
    vocabulary = {f"w{i}" for i in range(MIN_VOCABULARY)} | {"said", "at", "see", "in", "the"}
    unknown = [h.token for h in lint_lines(lines, source, Lexicon(), {"alice": vocabulary})
               if h.kind == "unknown"]  # fmt: skip
    assert unknown == ["Nguyen"]
    # A respelled word is no longer flagged; the file keeps its comments and other entries.
    (tmp_path / "pronunciations.toml").write_text('# names\nGIF = "jif"\nNASA = "nassa"\n')
    lexicon = add_pronunciation(tmp_path, "NASA", "nah sah")
    add_pronunciation(tmp_path, "Nguyen", "win")
    text = (tmp_path / "pronunciations.toml").read_text()
    assert text.startswith('# names\nGIF = "jif"\n') and text.count("NASA") == 1
    assert dict(load_pronunciations(tmp_path).entries)["NASA"] == "nah sah"
    assert "NASA" not in [h.token for h in lint_lines(lines, source, lexicon, {})]


@pytest.mark.slow  # the tiny CSM, whisper and ECAPA, for real
def test_line_qa_through_the_real_scorer_and_trained_voices(
    demo_copy: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The path a user runs: trained voices, faster-whisper and ECAPA (the tiny stand-ins,
    whose figures mean nothing); every line scored, with a transcript and a similarity,
    and the retakes batched through the CSM engine."""
    from tests.conftest import make_tiny_voice

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    make_tiny_voice(demo_copy, "alice", seed=1)
    make_tiny_voice(demo_copy, "bob", seed=2)
    script = demo_copy.scripts_dir / "short.md"
    script.write_text(
        '+++\ntitle = "Short"\n[speakers]\nA = "alice"\nB = "bob"\n+++\n\n'
        "A: It cost $5 in 1990.\nB: Thanks.\n"
    )
    result = render_episode(demo_copy, script, backend="csm", retakes=2)
    assert result.qa is not None and len(result.qa) == 2
    for verdict in result.qa:
        first = verdict.candidates[0].scores
        assert first is not None and first.transcript is not None
        assert first.similarity is not None and -1.0 <= first.similarity <= 1.0
        assert first.reference in ("It cost five dollars in nineteen ninety.", "Thanks.")
        assert 1 <= len(verdict.candidates) <= 2
    manifest = json.loads(result.exported.manifest.read_text())
    assert manifest["qa"]["summary"]["lines"] == 2
