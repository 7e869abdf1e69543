"""Segment planning: hand-made regions and cues, and VAD on real generated speech."""

from __future__ import annotations

import itertools
import json
import random
from pathlib import Path

import numpy as np
import pytest

from core.audio.io import iter_blocks, probe, read
from core.dataset.segment import (
    PlanLimits,
    TimeSpan,
    VadStream,
    plan_adaptive,
    plan_from_cues,
    plan_from_vad,
    speech_ratio,
)
from core.dataset.subtitles import Cue, read_subtitles
from core.workspace import Workspace
from tests.conftest import TESTDATA

MARGIN = 0.15


def _regions(*pairs: tuple[float, float]) -> list[TimeSpan]:
    return [TimeSpan(a, b) for a, b in pairs]


def _sentences(
    start: float, durations: list[float], gaps: list[float]
) -> list[tuple[float, float]]:
    """Back-to-back speech regions: ``durations[k]`` long, ``gaps[k]`` after each."""
    out, t = [], start
    for k, d in enumerate(durations):
        out.append((t, t + d))
        t += d + (gaps[k] if k < len(gaps) else 0.0)
    return out


def _in_range(spans: list[TimeSpan]) -> float:
    return sum(5.0 - 1e-9 <= s.duration <= 15.0 + 1e-9 for s in spans) / len(spans)


def _assert_well_formed(
    spans: list[TimeSpan], speech: list[tuple[float, float]], total: float
) -> None:
    """Spans are ordered, inside the file, never overlap, and never cut through speech."""
    assert all(0.0 <= s.start_sec < s.end_sec <= total for s in spans)
    for left, right in itertools.pairwise(spans):
        assert left.end_sec <= right.start_sec
    for s in spans:
        for a, b in speech:
            # A speech region is either wholly inside a span or wholly outside it.
            inside = s.start_sec <= a and b <= s.end_sec
            outside = b <= s.start_sec or a >= s.end_sec
            assert inside or outside, (s, (a, b))


# ------------------------------------------------------------------ planning from regions


def test_many_short_sentences_merge_into_5_to_15_second_utterances() -> None:
    speech = _sentences(0.5, [1.2, 2.0, 0.9, 1.6, 2.4, 1.1] * 8, [0.3, 0.5, 0.25, 0.6] * 12)
    total = speech[-1][1] + 0.5
    spans = plan_from_vad(_regions(*speech), total)
    assert _in_range(spans) == 1.0
    _assert_well_formed(spans, speech, total)
    covered = sum(b - a for a, b in speech if any(s.start_sec <= a < s.end_sec for s in spans))
    assert covered == pytest.approx(sum(b - a for a, b in speech))  # nothing dropped


def test_a_40_second_monologue_is_split_at_its_longest_pauses() -> None:
    # Sentences of ~3 s with short 0.25 s breaths; three long 0.9 s pauses at known places.
    durations = [3.1, 2.8, 3.3, 2.9, 3.0, 2.7, 3.2, 3.1, 2.9, 3.0, 2.8, 3.4]
    gaps = [0.25] * 11
    for k in (2, 5, 8):
        gaps[k] = 0.9
    speech = _sentences(1.0, durations, gaps)
    total = speech[-1][1] + 1.0
    assert speech[-1][1] - speech[0][0] > 38
    spans = plan_from_vad(_regions(*speech), total)
    assert len(spans) == 4
    cuts = [(speech[k][1], speech[k + 1][0]) for k in (2, 5, 8)]
    for (end, nxt), a, b in zip(cuts, spans[:-1], spans[1:], strict=True):
        assert a.end_sec == pytest.approx(end + MARGIN)
        assert b.start_sec == pytest.approx(nxt - MARGIN)
    assert _in_range(spans) == 1.0
    _assert_well_formed(spans, speech, total)


def test_a_long_run_without_long_pauses_is_still_cut_into_pieces_of_at_most_15_s() -> None:
    speech = _sentences(0.0, [2.0] * 20, [0.2] * 19)  # 43.8 s, every pause the same
    spans = plan_from_vad(_regions(*speech), 44.0)
    assert _in_range(spans) == 1.0
    _assert_well_formed(spans, speech, 44.0)


def test_margins_are_clamped_to_the_file_and_split_short_gaps_with_neighbours() -> None:
    # Two 6 s utterances 0.1 s apart (a short gap: each side gets 0.05 s), at the file's ends.
    speech = [(0.05, 6.05), (6.15, 12.15), (12.25, 18.25)]
    spans = plan_from_vad(_regions(*speech), 18.3, limits=PlanLimits(min_sec=5.0, max_sec=8.0))
    assert [(s.start_sec, s.end_sec) for s in spans] == [(0.0, 6.1), (6.1, 12.2), (12.2, 18.3)]
    _assert_well_formed(spans, speech, 18.3)


def test_long_pauses_are_never_inside_a_span_and_short_or_tiny_islands() -> None:
    speech = [(1.0, 4.0), (10.0, 20.0), (20.3, 27.0), (40.0, 40.6), (50.0, 68.0)]
    spans = plan_from_vad(_regions(*speech), 70.0)
    got = [(round(s.start_sec, 3), round(s.end_sec, 3)) for s in spans]
    assert got == [
        (0.85, 4.15),  # 3 s alone between long pauses: kept, QC flags it too short
        (9.85, 20.15),
        (20.15, 27.15),
        # the 0.6 s blip at 40 s is dropped
        (49.85, 68.15),  # 18 s with no pause to cut at: its own span, QC flags it too long
    ]


def test_planning_is_deterministic_and_ignores_input_order() -> None:
    rng = random.Random(3)
    speech, t = [], 0.3
    for _ in range(200):
        d = rng.uniform(0.3, 4.0)
        speech.append((round(t, 3), round(t + d, 3)))
        t += d + rng.choice([0.2, 0.3, 0.5, 0.8, 1.2, 3.0])
    shuffled = _regions(*speech)
    rng.shuffle(shuffled)
    first = plan_from_vad(_regions(*speech), t)
    assert plan_from_vad(shuffled, t) == first == plan_from_vad(_regions(*speech), t)
    assert _in_range(first) >= 0.9
    _assert_well_formed(first, speech, t)


def test_empty_input_plans_nothing() -> None:
    assert plan_from_vad([], 10.0) == []
    assert plan_from_cues([], 10.0) == []


def test_speech_ratio() -> None:
    regions = _regions((1.0, 2.0), (3.0, 5.0))
    assert speech_ratio(regions, 0.0, 6.0) == pytest.approx(0.5)
    assert speech_ratio(regions, 1.5, 3.5) == pytest.approx(0.5)
    assert speech_ratio(regions, 2.0, 2.0) == 0.0


# ---------------------------------------------------------------------- planning from cues


def test_cue_windows_end_on_sentences_and_join_their_texts() -> None:
    cues = [
        Cue(0.0, 3.0, "We started early."),
        Cue(3.2, 6.0, "The room was cold,"),
        Cue(7.2, 9.5, "so we waited."),  # the longest gap (1.2 s) is inside a sentence
        Cue(9.8, 12.5, "Then the guests came in."),
        Cue(12.75, 15.5, "It was loud,"),
        Cue(16.1, 18.5, "but fun."),
    ]
    spans = plan_from_cues(cues, 19.0)
    # Cutting at the 1.2 s pause would also give two 5-15 s spans, but mid-sentence.
    assert [s.text for s in spans] == [
        "We started early. The room was cold, so we waited.",
        "Then the guests came in. It was loud, but fun.",
    ]
    assert [(s.start_sec, s.end_sec) for s in spans] == [(0.0, 9.65), (9.65, 18.65)]
    assert plan_from_cues(list(reversed(cues)), 19.0) == spans


def _cues(table: str) -> list[Cue]:
    """Cues from ``start end text`` lines."""
    rows = (line.split(maxsplit=2) for line in table.strip().splitlines())
    return [Cue(float(start), float(end), text) for start, end, text in rows]


def test_a_cue_longer_than_the_maximum_is_its_own_span() -> None:
    cues = _cues(
        """
        0.0 3.0 Short one.
        3.2 6.0 Another short one.
        6.3 24.0 A very long cue without a break.
        24.5 30.0 And the end.
        """
    )
    spans = plan_from_cues(cues, 31.0)
    texts = "Short one. Another short one.|A very long cue without a break.|And the end."
    assert [s.text for s in spans] == texts.split("|")
    assert spans[1].duration > 15.0
    _assert_well_formed(spans, [(c.start_sec, c.end_sec) for c in cues], 31.0)


def test_untidy_cues_are_tidied_before_planning() -> None:
    cues = [
        Cue(6.0, 11.0, "Second sentence."),
        Cue(0.5, 6.5, "First sentence."),  # overlaps the next: trimmed to end at 6.0
        Cue(7.0, 8.0, "Second sentence."),  # a duplicate inside it: collapsed
        Cue(12.0, 12.0, "Empty."),
    ]
    spans = plan_from_cues(cues, 12.0)
    assert [(s.start_sec, s.end_sec, s.text) for s in spans] == [
        (0.35, 11.15, "First sentence. Second sentence.")
    ]


def test_plan_limits_refuse_an_empty_range() -> None:
    for low, high in ((5.0, 5.0), (8.0, 5.0), (0.0, 5.0)):
        with pytest.raises(ValueError, match="min_sec < max_sec"):
            PlanLimits(min_sec=low, max_sec=high)


# ---------------------------------------------------------------------------- streaming VAD


def test_vad_stream_rejects_bad_settings() -> None:
    with pytest.raises(ValueError):
        VadStream(mode=4)
    with pytest.raises(ValueError):
        VadStream(frame_ms=25)
    with pytest.raises(ValueError):
        VadStream(sample_rate=22050)
    with pytest.raises(ValueError):
        VadStream().feed(np.zeros((10, 2), np.float32))


def test_silence_has_no_speech() -> None:
    vad = VadStream()
    vad.feed(np.zeros(16000 * 3, np.float32))
    assert vad.finish() == []
    assert vad.total_sec == pytest.approx(3.0)


def _demo_truth(ws: Workspace) -> dict[str, dict[str, object]]:
    truth = json.loads((ws.assets_dir / "demo-truth.json").read_text())
    recordings: dict[str, dict[str, object]] = truth["recordings"]
    return recordings


def _vad(path: Path, mode: int = 2) -> tuple[list[TimeSpan], float]:
    vad = VadStream(mode=mode)
    for block in iter_blocks(path, target_rate=16000):
        vad.feed(block)
    return vad.finish(), vad.total_sec


def test_odd_block_sizes_give_the_same_regions(demo_workspace: Workspace) -> None:
    rec = next(iter(_demo_truth(demo_workspace).values()))
    audio, _ = read(demo_workspace.root / str(rec["raw"]), target_rate=16000)
    whole = VadStream()
    whole.feed(audio)
    pieces = VadStream()
    for start in range(0, len(audio), 1234):
        pieces.feed(audio[start : start + 1234])
    regions = whole.finish()
    assert regions and pieces.finish() == regions
    assert np.array_equal(whole.frame_decisions, pieces.frame_decisions)
    with pytest.raises(RuntimeError):
        pieces.feed(audio[:100])


def test_vad_plans_on_the_demo_recordings(demo_workspace: Workspace) -> None:
    vad_spans: list[TimeSpan] = []
    cue_spans: list[TimeSpan] = []
    sidecars = 0
    for rec in _demo_truth(demo_workspace).values():
        path = demo_workspace.root / str(rec["raw"])
        regions, total = _vad(path)
        assert total == pytest.approx(probe(path).duration_sec, abs=0.01)
        spans = plan_from_vad(regions, total)
        vad_spans += spans
        truth = [(float(c["start_sec"]), float(c["end_sec"])) for c in rec["cues"]]  # type: ignore[attr-defined]
        # Every true sentence is mostly heard as speech and lies inside one span.
        for a, b in truth:
            assert speech_ratio(regions, a, b) > 0.8
            assert sum(s.start_sec <= a + 0.1 and b - 0.1 <= s.end_sec for s in spans) == 1
        for planted in rec["planted"]:  # type: ignore[attr-defined]
            if planted["kind"] != "silence":
                continue
            a, b = float(planted["start_sec"]), float(planted["end_sec"])
            assert speech_ratio(regions, a, b) < 0.05
            for s in spans:
                overlap = max(0.0, min(s.end_sec, b) - max(s.start_sec, a))
                assert overlap <= MARGIN + 1e-6  # at most a margin reaches into it
                assert not (a + 0.5 < s.start_sec < b - 0.5 or a + 0.5 < s.end_sec < b - 0.5)
        if rec["sidecar"]:
            sidecars += 1
            cues = read_subtitles(path.with_suffix(".srt"))
            assert [(c.start_sec, c.end_sec) for c in cues] == [pytest.approx(t) for t in truth]
            planned = plan_from_cues(cues, total)
            cue_spans += planned
            for s in planned:
                covered = [c.text for c in cues if s.start_sec <= c.start_sec < s.end_sec]
                assert s.text == " ".join(covered)
            assert " ".join(s.text for s in planned) == " ".join(c.text for c in cues)
    assert sidecars == 2
    assert len(vad_spans) >= 8 and _in_range(vad_spans) >= 0.9
    assert len(cue_spans) >= 4 and _in_range(cue_spans) >= 0.9


JFK = TESTDATA / "jfk.flac"


def test_vad_finds_the_speech_in_a_real_recording() -> None:
    regions, total = _vad(JFK)
    assert 10.0 < total < 12.0
    assert speech_ratio(regions, 0.0, total) > 0.6
    spans = plan_from_vad(regions, total)
    assert spans and sum(s.duration for s in spans) > 0.8 * total


# ------------------------------------------------------------------ adaptive planning

SR = 24000
FLOOR_DBFS = -66.0


def _read_aloud(seconds: float, seed: int, pause: tuple[float, float]) -> np.ndarray:  # type: ignore[type-arg]
    """Draft-voice sentences separated by random pauses in ``pause`` (seconds), over a
    -66 dBFS white noise floor, 24 kHz."""
    from core.demo.corpus import SENTENCES
    from core.episodes.synthesis.draft import DraftVoice, synthesize

    rng = np.random.default_rng(seed)
    voice = DraftVoice(language="en-us", pitch=40)
    parts: list[np.ndarray] = []  # type: ignore[type-arg]
    total = 0
    while total < seconds * SR:
        speech = synthesize(SENTENCES[int(rng.integers(len(SENTENCES)))], voice, sample_rate=SR)
        gap = np.zeros(int(rng.uniform(*pause) * SR), np.float32)
        parts += [speech * 0.3, gap]
        total += len(speech) + len(gap)
    audio = np.concatenate(parts)
    noise = rng.standard_normal(len(audio)) * 10 ** (FLOOR_DBFS / 20)
    return (audio + noise).astype(np.float32)


def _regions_of(audio: np.ndarray, mode: int = 2) -> list[TimeSpan]:  # type: ignore[type-arg]
    import soxr

    vad = VadStream(mode)
    vad.feed(np.asarray(soxr.resample(audio, SR, 16000), np.float32))
    return vad.finish()


def test_fast_speech_lands_in_range_without_tuning() -> None:
    """Two minutes of sentences with 0.1-0.19 s pauses (under the VAD's 200 ms gap fill)
    are one speech region: planned as it is, one 2-minute segment; planned adaptively,
    >= 90 % of the segments are 5-15 s and none is longer, and the report says why."""
    audio = _read_aloud(120.0, seed=1, pause=(0.1, 0.19))
    total = len(audio) / SR
    regions = _regions_of(audio)
    assert max(r.duration for r in regions) > 60.0
    spans, report = plan_adaptive(regions, audio, SR)
    assert _in_range(spans) >= 0.9
    assert all(s.duration <= 15.0 + 1e-6 for s in spans)
    assert sum(s.duration for s in spans) > 0.85 * total
    for left, right in itertools.pairwise(spans):
        assert left.end_sec <= right.start_sec
    assert report.long_regions >= 1 and report.segments == len(spans)
    assert report.in_range == sum(5.0 <= s.duration <= 15.0 + 1e-6 for s in spans)
    assert report.split_by_vad + report.split_by_energy >= 1
    assert report.noise_floor_db is not None and -72.0 < report.noise_floor_db < -60.0
    assert "too long" in report.summary() and "\n" not in report.summary()
    # The same input gives the same plan.
    assert plan_adaptive(regions, audio, SR) == (spans, report)


def test_a_region_without_any_pause_is_cut_at_its_quietest_points() -> None:
    """40 s of sound that never gets quiet (noise modulated at a syllable rate, 20 dB deep)
    is one region with no pause to split at: cut at its quietest moments into pieces that
    fit, instead of one 40 s segment that training would drop."""
    rng = np.random.default_rng(4)
    n = 40 * SR
    t = np.arange(n) / SR
    envelope = 10 ** ((-10.0 * (1 + np.sin(2 * np.pi * 3.7 * t + 2 * np.sin(0.3 * t)))) / 20)
    audio = (rng.standard_normal(n) * 0.1 * envelope).astype(np.float32)
    regions = [TimeSpan(0.0, 40.0)]
    assert plan_from_vad(regions, 40.0)[0].duration > 15.0  # what a plain plan does
    spans, report = plan_adaptive(regions, audio, SR, vad_mode=3)
    assert len(spans) >= 3 and all(5.0 <= s.duration <= 15.0 for s in spans)
    assert report.forced_cuts == len(spans) - 1 and report.split_by_vad == 0
    assert "quietest" in report.summary()
    # Each cut sits in a quiet moment: within 6 dB of the quietest 50 ms around it.
    level = np.convolve(audio.astype(np.float64) ** 2, np.ones(1200) / 1200, "same")
    for left, right in itertools.pairwise(spans):
        cut = int((left.end_sec + right.start_sec) / 2 * SR)
        window = level[max(0, cut - SR) : cut + SR]
        assert 10 * np.log10(level[cut] / window.min()) < 6.0


def test_speech_with_long_pauses_is_left_as_it_was() -> None:
    """Sentences with 0.3-1.5 s pauses: the VAD already separates them; adapting changes
    nothing and says so."""
    audio = _read_aloud(60.0, seed=2, pause=(0.3, 1.5))
    regions = _regions_of(audio)
    spans, report = plan_adaptive(regions, audio, SR)
    assert spans == plan_from_vad(regions, len(audio) / SR)
    assert report.long_regions == 0 and _in_range(spans) >= 0.9
    assert report.summary().endswith("no speech region was too long")
