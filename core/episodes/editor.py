"""What the script editor shows, computed without a screen: pure functions and records.

:func:`analyse` parses the text being edited into :class:`Diagnostic` s (the error or the
warnings, with their places) and each line's :class:`LineState` in the render cache, read
with the render's own :func:`~core.episodes.render.line_cache_key`, so the outline can never
disagree with what a render reuses. :func:`preview_line` synthesises one line through that
cache. :func:`mix_report` measures the last mix's ``manifest.json`` against the target the
render masters to (:func:`~core.episodes.target.master_target`). The app only formats these.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import soundfile as sf

from core.episodes.lint import lint_lines
from core.episodes.parser import parse_script
from core.episodes.pronunciations import Lexicon, load_pronunciations, spoken_line
from core.episodes.render import line_cache_key, line_key, line_seed
from core.episodes.retakes import candidate_seed
from core.episodes.script import Episode, Line, ScriptWarning, Span
from core.episodes.synthesis.backends import Rendered, make_backend
from core.episodes.synthesis.cache import RenderCache
from core.episodes.target import MasterTarget, master_target
from core.errors import PodforgeError, ScriptError
from core.voices.folder import VoiceFolder
from core.workspace import Workspace

SEED = 0
"""The episode seed the editor renders and previews with."""
ROLE_NAMES = ("HOST", "GUEST")

Severity = Literal["error", "warning", "hint"]
LineStateName = Literal["cached", "stale", "rendering", "error"]


@dataclass(frozen=True)
class Diagnostic:
    """One problem: 1-based ``line`` and ``column``."""

    severity: Severity
    line: int
    column: int
    message: str
    word: str | None = None
    """For a lint hint: the token it is about (what ``R`` respells)."""

    @property
    def label(self) -> str:
        return f"{self.line}:{self.column} {self.severity}: {self.message}"

    @classmethod
    def of_error(cls, error: ScriptError) -> Diagnostic:
        return cls("error", error.line, error.column, error.message)

    @classmethod
    def of_warning(cls, warning: ScriptWarning) -> Diagnostic:
        return cls("warning", warning.line, warning.column, warning.message)


@dataclass(frozen=True)
class LineState:
    """A line's render state; ``duration_sec`` when cached."""

    state: LineStateName
    duration_sec: float | None = None


@dataclass(frozen=True)
class Analysis:
    """What one parse found: the episode (None on an error), problems, line states."""

    episode: Episode | None
    diagnostics: tuple[Diagnostic, ...]
    states: dict[int, LineState]
    checks: dict[int, LineCheck] = field(default_factory=dict)
    """Each line's QA from the last render with line QA (:func:`line_checks`)."""
    cue_states: dict[int, str] = field(default_factory=dict)
    """Each generated cue's state (``cached``, ``stale``, ``error``) by script line
    (:func:`core.episodes.sound.cues.sound_states`)."""


def template(name: str, speakers: list[str]) -> str:
    """A new script: the workspace's speakers as HOST, GUEST, GUEST2..., one line each."""
    roles = [ROLE_NAMES[i] if i < len(ROLE_NAMES) else f"GUEST{i}" for i in range(len(speakers))]
    out = ["+++", f'title = "{name}"', "[speakers]"]
    out += [f'{role} = "{speaker}"' for role, speaker in zip(roles, speakers, strict=True)]
    out += ["+++", "", "# Chapter 1"]
    out += [
        f"{role}: Hello, this is {speaker}." for role, speaker in zip(roles, speakers, strict=True)
    ]
    if not speakers:
        out.append("<!-- add speakers: podforge speaker add WORKSPACE NAME -->")
    return "\n".join(out) + "\n"


def backend_for(ws: Workspace, episode: Episode) -> str:
    """``csm`` when every speaking voice has a trained adapter, else ``draft``."""
    voices = episode.voices
    if voices and all(VoiceFolder.for_speaker(ws, v).is_trained() for v in voices):
        return "csm"
    return "draft"


def line_states(ws: Workspace, name: str, episode: Episode) -> dict[int, LineState]:
    """Each line's state from the render cache of ``episodes/<name>/``."""
    try:
        engine = make_backend(ws, backend_for(ws, episode))
    except PodforgeError:
        return {line.index: LineState("stale") for line in episode.lines}
    cache = RenderCache(ws.episodes_dir / name / "cache")
    states: dict[int, LineState] = {}
    try:
        lexicon = load_pronunciations(ws.root)
    except PodforgeError:
        return {line.index: LineState("error") for line in episode.lines}
    for line in episode.lines:
        try:
            path = cache.path(line_cache_key(ws, engine, spoken_line(line, lexicon), SEED))
        except (PodforgeError, KeyError, OSError):
            states[line.index] = LineState("error")
            continue
        duration: float | None = None
        if path.is_file():
            try:
                duration = float(sf.info(str(path)).duration)
            except (RuntimeError, sf.LibsndfileError):
                duration = None
        states[line.index] = LineState("cached", duration) if duration else LineState("stale")
    return states


def analyse(ws: Workspace, text: str, path: Path) -> Analysis:
    """Parse ``text`` (the script at ``path``) and read the line states."""
    try:
        episode = parse_script(text, source=path.name, workspace=ws)
    except ScriptError as exc:
        return Analysis(None, (Diagnostic.of_error(exc),), {})
    diagnostics = tuple(Diagnostic.of_warning(w) for w in episode.warnings)
    try:
        lexicon = load_pronunciations(ws.root)
    except PodforgeError as exc:
        diagnostics += (Diagnostic("warning", 1, 1, str(exc)),)
        lexicon = Lexicon()
    vocabularies = {voice: speaker_vocabulary(ws, voice) for voice in episode.speakers.values()}
    hints = lint_lines(episode.lines, text.splitlines(), lexicon, vocabularies)
    diagnostics += tuple(Diagnostic("hint", h.line, h.column, h.message, h.token) for h in hints)
    from core.episodes.sound.cues import sound_states

    return Analysis(
        episode,
        diagnostics,
        line_states(ws, path.stem, episode),
        line_checks(ws, path.stem, episode),
        sound_states(ws, path.stem, episode, SEED),
    )


def speaker_vocabulary(ws: Workspace, voice: str) -> set[str]:
    """The words (lower case) of ``voice``'s accepted transcripts; read again only when the
    catalog changes."""
    try:
        stamp = ws.catalog_path.stat().st_mtime_ns
    except OSError:
        return set()
    return set(_vocabulary(str(ws.catalog_path), stamp, voice))


@lru_cache(maxsize=16)
def _vocabulary(catalog_path: str, stamp: int, voice: str) -> frozenset[str]:
    from core.catalog import Catalog
    from core.evaluation.text import normalise

    try:
        with Catalog.open(Path(catalog_path)) as catalog:
            segments = catalog.segments(speaker=voice, status="accepted")
    except PodforgeError:
        return frozenset()
    return frozenset(word for s in segments if s.text for word in normalise(s.text).split())


def audition(ws: Workspace, voice: str, text: str, backend: str) -> Rendered:
    """``text`` alone in ``voice`` (through ``backend``, respellings applied): how a word
    will sound. Not cached."""
    engine = make_backend(ws, backend)
    line = Line(0, voice.upper(), voice, (Span(text),), 1, 0)
    spoken = spoken_line(line, load_pronunciations(ws.root))
    return engine.render(spoken, SEED)


def preview_line(
    ws: Workspace, name: str, line: Line, backend: str, take: int = 0
) -> tuple[Rendered, bool]:
    """``line`` of the script ``name`` in ``backend``'s voice, from the render cache or
    synthesised into it; the flag says it was synthesised now (its state changed). ``take``
    is a retake candidate (:func:`core.episodes.retakes.candidate_seed`; 0: the usual one).

    Raises what the backend raises: :class:`~core.errors.VoiceError` (no trained voice),
    :class:`~core.errors.ConsentError`, other ``PodforgeError`` s and ``OSError``.
    """
    engine = make_backend(ws, backend)
    line = spoken_line(line, load_pronunciations(ws.root))  # what the voice says
    seed = candidate_seed(line_seed(SEED, line), take)
    settings: dict[str, object] = {"sample_rate": ws.settings.audio.sample_rate}
    key = line_key(engine, line, seed, settings)  # csm: a missing voice fails here
    cache = RenderCache(ws.episodes_dir / name / "cache")
    rendered = cache.get(key)
    if rendered is not None:
        return rendered, False
    rendered = engine.render(line, seed)
    cache.put(key, rendered)
    return rendered, True


@dataclass(frozen=True)
class LineCheck:
    """A line's QA from the last render with line QA (what the outline shows)."""

    passed: bool
    reasons: tuple[str, ...]
    wer: float | None
    similarity: float | None
    kept_take: int
    how: str
    takes: tuple[dict[str, Any], ...]
    """Every candidate: ``take``, ``seed``, ``passed``, ``reasons``, ``scores``."""

    def summary(self) -> str:
        """``"QA ✓ WER 0% sim 0.82"`` or ``"QA ⚠ WER 40% > 25%"``."""
        figures = []
        if self.wer is not None:
            figures.append(f"WER {self.wer:.0%}")
        if self.similarity is not None:
            figures.append(f"sim {self.similarity:.2f}")
        if self.passed:
            return " ".join(["QA ✓", *figures, *(["by ear"] if self.how == "by ear" else [])])
        return f"QA ⚠ {'; '.join(self.reasons) or 'suspect'}"


def line_checks(ws: Workspace, name: str, episode: Episode) -> dict[int, LineCheck]:
    """Each line's QA from the last mix's manifest, for the lines whose voice and text are
    still the same (an edited line has no QA until it is rendered again)."""
    manifest = read_manifest(ws, name) or {}
    qa = manifest.get("qa")
    entries = qa.get("lines") if isinstance(qa, dict) else None
    if not isinstance(entries, list):
        return {}
    by_line = {(line.voice, line.text): line.index for line in episode.lines}
    checks: dict[int, LineCheck] = {}
    for entry in entries:
        try:
            index = by_line.get((str(entry["voice"]), str(entry["text"])))
            if index is None:
                continue
            takes = tuple(entry["candidates"])
            kept = next(t for t in takes if t["take"] == entry["kept_take"])
            scores = kept.get("scores") or {}
            checks[index] = LineCheck(
                passed=entry["verdict"] == "pass",
                reasons=tuple(entry["reasons"]),
                wer=scores.get("wer"),
                similarity=scores.get("similarity"),
                kept_take=int(entry["kept_take"]),
                how=str(entry["how"]),
                takes=takes,
            )
        except (KeyError, TypeError, ValueError, StopIteration):
            continue  # an older or damaged manifest: no QA shown for that line
    return checks


def read_manifest(ws: Workspace, name: str) -> dict[str, Any] | None:
    """The last mix's ``manifest.json``, or None when there is none (or it is unreadable)."""
    path = ws.episodes_dir / name / "manifest.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def line_start_sec(manifest: dict[str, Any], index: int) -> float:
    """Where line ``index`` starts in the mix (0.0 when the manifest does not say)."""
    start = 0.0
    for entry in manifest.get("lines", []):
        if isinstance(entry, dict) and entry.get("index") == index:
            start = float(entry.get("start_sec", 0.0))
    return start


@dataclass(frozen=True)
class MixReport:
    """The last mix against its target. ``lufs`` and ``true_peak_dbtp`` are None when the
    manifest holds no figure; ``sample_rate``, ``channels`` and ``backend`` are as written
    there (``?`` when absent)."""

    title: str
    lufs: float | None
    true_peak_dbtp: float | None
    target: MasterTarget
    duration_sec: float | None
    sample_rate: str
    channels: str
    backend: str
    warnings: tuple[str, ...]
    drift: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    """Each speaker's similarity to their voice along the episode: ``(start_sec,
    similarity)`` of every line line QA scored, in time order (:func:`similarity_timeline`)."""
    min_similarity: float | None = None

    @property
    def loudness_ok(self) -> bool:
        return self.lufs is not None and self.target.loudness_ok(self.lufs)

    @property
    def peak_ok(self) -> bool:
        return self.true_peak_dbtp is not None and self.target.peak_ok(self.true_peak_dbtp)


def mix_report(ws: Workspace, manifest: dict[str, Any], episode: Episode | None) -> MixReport:
    """The report of a mix's ``manifest``, measured against what the script (``episode``;
    None when it does not parse) and the workspace ask the master for."""

    def number(key: str) -> float | None:
        value = manifest.get(key)
        return value if isinstance(value, int | float) else None

    return MixReport(
        title=str(manifest.get("title", "")),
        lufs=number("lufs"),
        true_peak_dbtp=number("true_peak_dbtp"),
        target=master_target(episode.mix if episode is not None else None, ws.settings),
        duration_sec=number("duration_sec"),
        sample_rate=str(manifest.get("sample_rate", "?")),
        channels=str(manifest.get("channels", "?")),
        backend=str(manifest.get("backend", "?")),
        warnings=tuple(str(w) for w in manifest.get("warnings") or []),
        drift=similarity_timeline(manifest),
        min_similarity=ws.settings.qa.min_similarity,
    )


def similarity_timeline(manifest: dict[str, Any]) -> dict[str, list[tuple[float, float]]]:
    """Each speaker's kept-take similarity against the line's start in the mix, in time
    order, from a manifest with line QA (empty without): a voice that drifts after minute
    12 shows as a fall there."""
    qa = manifest.get("qa")
    starts = {
        entry.get("index"): entry.get("start_sec")
        for entry in manifest.get("lines") or []
        if isinstance(entry, dict)
    }
    timeline: dict[str, list[tuple[float, float]]] = {}
    for entry in qa.get("lines") or [] if isinstance(qa, dict) else []:
        try:
            kept = next(c for c in entry["candidates"] if c["take"] == entry["kept_take"])
            similarity = (kept.get("scores") or {}).get("similarity")
            start = starts.get(entry["index"])
        except (KeyError, TypeError, StopIteration):
            continue
        if isinstance(similarity, int | float) and isinstance(start, int | float):
            timeline.setdefault(str(entry["speaker"]), []).append((float(start), float(similarity)))
    return {speaker: sorted(points) for speaker, points in timeline.items()}
