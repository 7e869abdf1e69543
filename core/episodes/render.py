"""Render an episode: parse the script, synthesise each line (through the cache), mix, export.

``render_episode`` is what ``podforge render`` and the script editor call. Lines whose
cache key (:func:`line_cache_key`, the one the editor's outline reads too) is unchanged are
read from ``episodes/<name>/cache/``; only new or edited lines are synthesised. Tags a
backend cannot honour produce one warning per tag kind. The master's loudness target and
ceiling come from :func:`core.episodes.target.master_target`. A ``cancel`` hook is polled
after every line and every mixing report; a stopped render keeps the lines it finished in
the cache and writes no episode files.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from core.audio.io import read
from core.episodes.deliverables import deliveries
from core.episodes.export import ExportedEpisode
from core.episodes.master import STAGE_MASTER, STAGE_MIX, render_episode_files
from core.episodes.mixing import (
    MixSettings,
    TimelineBed,
    TimelineChapter,
    TimelineItem,
    TimelineLine,
    TimelinePause,
    TimelineSfx,
    plan_has_music_or_effects,
)
from core.episodes.parser import load_script
from core.episodes.pronunciations import load_pronunciations, spoken_line
from core.episodes.qa import RateRange, speaker_rate_range
from core.episodes.retakes import (
    CheckJob,
    LineVerdict,
    ModelScorer,
    ScoreCache,
    Scorer,
    check_lines,
    choice_id,
    load_choices,
)
from core.episodes.script import Chapter, Episode, Line, MusicCue, Pause, SfxCue
from core.episodes.sound.backend import STAGE_SOUND
from core.episodes.sound.cues import render_sounds, sound_cache
from core.episodes.synthesis.backends import Backend, Rendered, make_backend
from core.episodes.synthesis.cache import RenderCache, cache_key
from core.episodes.synthesis.watermarked import watermark_manifest
from core.episodes.tags import Mp3Tags, find_cover
from core.episodes.target import master_target, stereo_master
from core.errors import FolderSafetyError, PodforgeError, VoiceError
from core.progress import CancelCheck, Progress, check_cancel
from core.workspace import Workspace

STAGE_LOADING: Final = "loading model …"
STAGES: Final = (STAGE_LOADING, STAGE_MIX, STAGE_MASTER, STAGE_SOUND)
"""The ``what`` of the stages that are not lines (a make-up round adds to STAGE_MASTER)."""


def is_stage(what: str) -> bool:
    """Whether a progress report is a stage (mixing, mastering, loading), not a line."""
    return what.startswith(STAGES)


@dataclass
class RenderResult:
    episode: Episode
    exported: ExportedEpisode
    lufs: float | None
    true_peak_db: float
    duration_sec: float
    rendered_lines: list[int] = field(default_factory=list)  # indexes synthesised now
    cached_lines: list[int] = field(default_factory=list)  # indexes read from the cache
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0
    qa: list[LineVerdict] | None = None
    """Each line's QA and candidates (``None``: line QA was off)."""
    generated_sounds: list[int] = field(default_factory=list)  # script lines generated now
    cached_sounds: list[int] = field(default_factory=list)  # script lines from the cache

    @property
    def suspect(self) -> list[LineVerdict]:
        """The lines still suspect after their retakes."""
        return [verdict for verdict in self.qa or () if verdict.suspect]


def line_key(backend: Backend, line: Line, seed: int, settings: dict[str, object]) -> str:
    """The render-cache key of ``line``: everything that shapes its audio."""
    return cache_key(
        {
            "ssml": line.ssml(),
            "voice": line.voice,
            "voice_identity": backend.cache_identity(line.voice),
            "backend": backend.name,
            "backend_version": backend.version,
            "seed": seed,
            "settings": settings,
        }
    )


def line_seed(seed: int, line: Line) -> int:
    """Each line's own seed: stable under edits of other lines."""
    digest = hashlib.sha256(f"{seed}:{line.voice}:{line.text}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


def line_cache_key(ws: Workspace, backend: Backend, line: Line, seed: int) -> str:
    """The key :func:`render_episode` stores ``line`` under when the episode's seed is
    ``seed``: :func:`line_key` with the line's own seed and the workspace's synthesis
    settings."""
    settings: dict[str, object] = {"sample_rate": ws.settings.audio.sample_rate}
    return line_key(backend, line, line_seed(seed, line), settings)


def render_episode(
    ws: Workspace,
    script_path: Path | str,
    *,
    backend: str | Backend = "csm",
    seed: int = 0,
    progress: Progress | None = None,
    cancel: CancelCheck | None = None,
    retakes: int | None = None,
    scorer: Scorer | None = None,
    allow_cpu_sound: bool | None = None,
) -> RenderResult:
    """Render ``script_path`` into ``episodes/<script name>/``.

    ``backend`` is a name for :func:`~core.episodes.synthesis.backends.make_backend` or a
    backend it made earlier (the service shares one loaded model between its jobs).

    Every line is said as :func:`~core.episodes.pronunciations.spoken_text` makes it
    (respelled, verbalised). ``retakes`` (default ``render.retakes``): line QA with up to
    that many candidates per line (:func:`core.episodes.retakes.check_lines`; 0: off),
    scored by ``scorer`` (default :class:`~core.episodes.retakes.ModelScorer`); candidates
    chosen by ear are kept whatever the setting. Generated cues (``gen=``) come first, through
    their own cache (:func:`core.episodes.sound.cues.render_sounds`; ``allow_cpu_sound`` lets
    a real sound model run on the CPU), reporting denoising steps as :data:`STAGE_SOUND`.

    ``progress(done, total, what)`` is called after each line (``what`` =
    ``"SPEAKER: text"``), then for each stage after the lines (``what`` is one of
    :data:`STAGES`, ``done``/``total`` in seconds of audio), and with ``(0, 0, "loading model
    …")`` before a model is loaded. ``cancel()`` is polled after each of those reports; once
    it is true the render stops with :class:`~core.progress.Cancelled`.
    """
    started = time.perf_counter()
    script_path = Path(script_path)
    if not script_path.is_absolute():
        script_path = ws.root / script_path
    name = script_path.stem
    if name in ("", ".", ".."):  # episodes/. or episodes/.. is not an episode folder
        raise FolderSafetyError(
            f"{script_path}: its name gives no usable episode folder ({name!r}); rename the script"
        )
    episode = load_script(script_path, ws)
    engine = make_backend(ws, backend) if isinstance(backend, str) else backend
    marked = True  # every line's identity names the mark (make_backend's backends do)
    for voice in sorted({line.voice for line in episode.lines}):
        # a missing voice fails now, before any synthesis
        marked = "watermark" in engine.cache_identity(voice) and marked
    folder = ws.episodes_dir / name
    cache = RenderCache(folder / "cache")

    def report(done: int, total: int, what: str) -> None:
        if progress is not None:
            progress(done, total, what)
        check_cancel(cancel)  # between units: after a line (the master polls it per window)

    sounds = render_sounds(ws, episode, folder, seed=seed, report=report, allow_cpu=allow_cpu_sound)

    result_warnings: list[str] = [str(w) for w in episode.warnings]
    unsupported: set[str] = set()
    rendered: list[int] = []
    cached: list[int] = []
    keys: set[str] = set()
    timeline: list[TimelineLine | TimelinePause | TimelineBed | TimelineSfx | TimelineChapter] = []
    lines = episode.lines
    lexicon = load_pronunciations(ws.root)
    spoken = {line.index: spoken_line(line, lexicon) for line in lines}
    done = 0
    loaded = False
    keyed = [(spoken[line.index], line_cache_key(ws, engine, spoken[line.index], seed))
             for line in lines]  # fmt: skip
    missing = [(line, key) for line, key in keyed if cache.file(key) is None]
    fresh: set[int] = set()  # lines synthesised by this call
    for item in episode.items:
        if isinstance(item, Line):
            for kind in sorted(item.tag_kinds - engine.supported_tags):
                if kind not in unsupported:
                    unsupported.add(kind)
                    result_warnings.append(
                        f"the {engine.name} backend cannot honour <{kind}>; it is read as "
                        f"plain text (first on line {item.source_line})"
                    )
            own_seed = line_seed(seed, spoken[item.index])
            key = keyed[item.index][1]
            keys.add(key)
            ref = cache.file(key)
            if ref is None:
                if not loaded and engine.name != "draft":
                    loaded = True
                    report(0, 0, STAGE_LOADING)
                # This line and the next missing ones, up to the backend's batch size.
                batch = [(line, k) for line, k in missing if line.index not in fresh]
                batch = batch[: max(1, engine.batch_size)]
                with _library_noise_to(ws, engine.name != "draft"):
                    audios = engine.render_many([(ln, line_seed(seed, ln)) for ln, _ in batch])
                for (line, k), audio in zip(batch, audios, strict=True):
                    cache.put(k, audio)
                    fresh.add(line.index)
                ref = cache.file(key)
                if ref is None:
                    raise VoiceError(
                        f"cannot read back line {item.source_line} from {cache.folder}"
                    )
            if item.index in fresh:
                rendered.append(item.index)
            else:
                cached.append(item.index)
            timeline.append(
                TimelineLine(
                    index=item.index, speaker=item.speaker, text=item.text, audio=ref,
                    sample_rate=ref.sample_rate, seed=own_seed, backend=engine.name,
                    chapter=item.chapter,
                )
            )  # fmt: skip
            done += 1
            report(done, len(lines), f"{item.speaker}: {item.text[:40]}")
        elif isinstance(item, SfxCue | MusicCue) and item.generate is not None:
            timeline.append(sounds.item(item))
        elif isinstance(item, SfxCue):
            if item.path is None:
                continue  # skipped; the parser warned at its FILE:LINE:COL
            sfx, rate = read(item.path)
            timeline.append(TimelineSfx(audio=sfx, sample_rate=rate, volume_db=item.volume_db))
        else:
            timeline.append(_cue_item(item))
    candidates = ws.settings.render.retakes if retakes is None else retakes
    choices = load_choices(ws, name)
    verdicts: list[LineVerdict] | None = None
    if candidates or choices:  # without QA, only the takes chosen by ear are swapped in
        checked, timeline = _check(
            ws, engine, cache, folder, lines, spoken, seed, timeline,
            candidates=max(1, candidates), choices=choices, scorer=scorer,
            keys=keys, report=report, score=bool(candidates),
        )  # fmt: skip
        verdicts = checked if candidates else None
    cache.prune(keys)
    sound_cache(folder).prune(sounds.keys)
    settings = episode_mix_settings(ws, episode, timeline)

    def stage_progress(stage: str, done_sec: int, total_sec: int) -> None:
        if progress is not None:
            progress(done_sec, total_sec, stage)

    exported, mixed = render_episode_files(
        timeline,
        settings,
        folder,
        name,
        title=episode.title,
        tmp_dir=ws.root / ".tmp",
        mp3_bitrate_kbps=ws.settings.episode.mp3_bitrate_kbps,
        tags=episode_tags(ws, episode, engine.name),
        deliveries=deliveries(
            ws.settings.export.targets, settings.stereo, ws.settings.audio.true_peak_dbtp
        ),
        extra_manifest={
            "script": script_path.relative_to(ws.root).as_posix()
            if script_path.is_relative_to(ws.root)
            else str(script_path),
            "backend": engine.name,
            "backend_version": engine.version,
            "seed": seed,
            "watermark": watermark_manifest(ws.settings.watermark, marked),
            "warnings": result_warnings,
            **({"sounds": sounds.manifest(ws.root)} if sounds.takes else {}),
            **({} if verdicts is None else {"qa": _qa_manifest(ws, verdicts, candidates)}),
        },
        progress=None
        if progress is None
        else lambda stage, done, total: progress(done, total, stage),
        cancel=cancel,
    )
    return RenderResult(
        episode=episode,
        exported=exported,
        lufs=mixed.lufs,
        true_peak_db=mixed.true_peak_db,
        duration_sec=mixed.duration_sec,
        rendered_lines=rendered,
        cached_lines=cached,
        warnings=result_warnings,
        seconds=time.perf_counter() - started,
        qa=verdicts,
        generated_sounds=sounds.generated,
        cached_sounds=sounds.cached,
    )


def _check(
    ws: Workspace,
    engine: Backend,
    cache: RenderCache,
    folder: Path,
    lines: Sequence[Line],
    spoken: dict[int, Line],
    seed: int,
    timeline: list[Any],
    *,
    candidates: int,
    choices: dict[str, int],
    scorer: Scorer | None,
    keys: set[str],
    report: Callable[[int, int, str], None],
    score: bool = True,
) -> tuple[list[LineVerdict], list[Any]]:
    """Line QA and retakes over the rendered lines; the timeline with each line's kept
    candidate. Adds the candidates' cache keys to ``keys``."""
    settings: dict[str, object] = {"sample_rate": ws.settings.audio.sample_rate}
    jobs = [
        CheckJob(line, spoken[line.index], line_seed(seed, spoken[line.index]),
                 choices.get(choice_id(line.voice, line.text)))
        for line in lines
    ]  # fmt: skip
    if scorer is None and score:
        scorer = ModelScorer(ws, identity_check=engine.name != "draft")
    scores = ScoreCache(folder / "qa")

    def render(items: list[tuple[Line, int]]) -> list[Rendered]:
        with _library_noise_to(ws, engine.name != "draft"):
            return engine.render_many(items)

    with _library_noise_to(ws, True):
        verdicts, used, score_keys = check_lines(
            jobs,
            candidates=candidates,
            limits=ws.settings.qa,
            rates={voice: speaker_rates(ws, voice) for voice in {line.voice for line in lines}},
            scorer=scorer if score else None,
            scores=scores,
            cache=cache,
            key_of=lambda line, own: line_key(engine, line, own, settings),
            render=render,
            batch_size=engine.batch_size,
            report=report,
        )
    keys |= used
    if score:
        scores.prune(score_keys)
    kept = {verdict.index: verdict.kept for verdict in verdicts}
    out = []
    for item in timeline:
        if isinstance(item, TimelineLine) and item.index in kept:
            ref = cache.file(kept[item.index].key)
            if ref is None:
                raise VoiceError(f"cannot read back a candidate of line {item.index + 1}")
            item = dataclasses.replace(item, audio=ref, seed=kept[item.index].seed)
        out.append(item)
    return verdicts, out


def episode_tags(ws: Workspace, episode: Episode, backend: str) -> Mp3Tags:
    """The MP3's provenance: title, the workspace as the show, the cover from ``assets/``,
    and the statement that the speech is synthetic, by whom and with what."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        made_by = f"podforge {version('podforge')}"
    except PackageNotFoundError:
        made_by = "podforge"
    voices = ", ".join(f"{tag} ({voice})" for tag, voice in sorted(episode.speakers.items()))
    kind = "the espeak-ng draft voice" if backend == "draft" else "cloned voices (CSM + LoRA)"
    mark = "Perth watermark" if ws.settings.watermark.enabled else "no watermark"
    return Mp3Tags(
        title=episode.title,
        show=ws.settings.name,
        provenance=f"synthetic speech: {voices}, with {kind} ({mark}); made by {made_by}",
        cover=find_cover(ws.root / "assets"),
        software=made_by,
    )


def speaker_rates(ws: Workspace, voice: str) -> RateRange:
    """``voice``'s speaking-rate range from their accepted, transcribed segments."""
    from core.catalog import Catalog
    from core.evaluation.text import normalise

    try:
        with Catalog.open(ws.catalog_path) as catalog:
            segments = catalog.segments(speaker=voice, status="accepted")
    except PodforgeError:
        segments = []
    pairs = [(len(normalise(s.text).split()), s.duration_sec) for s in segments if s.text]
    return speaker_rate_range(pairs, ws.settings.qa.rate_tolerance)


def _qa_manifest(ws: Workspace, verdicts: list[LineVerdict], candidates: int) -> dict[str, Any]:
    passed = [v for v in verdicts if not v.suspect]
    return {
        "candidates": candidates,
        "limits": dataclasses.asdict(ws.settings.qa),
        "summary": {
            "lines": len(verdicts),
            "passed": len(passed),
            "retaken": sum(1 for v in passed if v.kept.take > 0),
            "suspect": [v.source_line for v in verdicts if v.suspect],
        },
        "lines": [verdict.to_json() for verdict in verdicts],
    }


def episode_mix_settings(
    ws: Workspace, episode: Episode, timeline: Sequence[TimelineItem]
) -> MixSettings:
    """How ``episode`` is mixed and mastered: the script's ``[mix]`` over the workspace's
    targets (:func:`~core.episodes.target.master_target`), at the master rate
    :func:`master_rate` picks for ``timeline``."""
    mix = episode.mix
    target = master_target(mix, ws.settings)
    return MixSettings(
        sample_rate=master_rate(ws, episode, plan_has_music_or_effects(timeline)),
        stereo=stereo_master(mix, ws.settings),
        gap_ms=mix.gap_ms,
        fade_ms=mix.fade_ms,
        duck_attack_ms=mix.duck_attack_ms,
        duck_release_ms=mix.duck_release_ms,
        target_lufs=target.lufs,
        ceiling_dbtp=target.ceiling_dbtp,
        pan=dict(mix.pan),
    )


def _cue_item(item: Pause | Chapter | MusicCue) -> TimelinePause | TimelineChapter | TimelineBed:
    """The timeline item of a pause, a chapter mark or a music cue."""
    if isinstance(item, Pause):
        return TimelinePause(item.seconds)
    if isinstance(item, Chapter):
        return TimelineChapter(item.title)
    return _bed(item)


def _bed(cue: MusicCue) -> TimelineBed:
    if cue.action == "stop" or cue.path is None:
        return TimelineBed(
            action="stop", audio=None, sample_rate=0, fade_in=0.0, fade_out=cue.fade_out,
            duck_db=0.0, volume_db=0.0,
        )  # fmt: skip
    audio, rate = read(cue.path, mono=False)
    return TimelineBed(
        action="start", audio=audio, sample_rate=rate, fade_in=cue.fade_in,
        fade_out=cue.fade_out, duck_db=cue.duck_db, volume_db=cue.volume_db,
    )  # fmt: skip


def master_rate(ws: Workspace, episode: Episode, music_or_effects: bool) -> int:
    """The master's sample rate: the script's ``[mix] sample_rate``, else the workspace's
    ``[episode] sample_rate``, else 48 kHz when the episode has music or effects (a bed at
    44.1/48 kHz keeps its top octave) and the voice rate (``audio.sample_rate``) when it
    is speech only."""
    if episode.mix.sample_rate:
        return episode.mix.sample_rate
    if ws.settings.episode.sample_rate:
        return ws.settings.episode.sample_rate
    return 48000 if music_or_effects else ws.settings.audio.sample_rate


_NOISY_LOGGERS: Final = ("transformers", "peft", "huggingface_hub", "accelerate", "py.warnings")


@contextlib.contextmanager
def _library_noise_to(ws: Workspace, models: bool) -> Iterator[None]:
    """Send the model libraries' warnings, log lines and progress bars to
    ``<workspace>/.tmp/render.log`` instead of the user's terminal while synthesising."""
    log_path = ws.root / ".tmp" / "render.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(log_path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    hf_logging: Any = None
    if models:  # the model's own libraries are about to be imported anyway
        import transformers.utils.logging

        hf_logging = transformers.utils.logging
        hf_logging.disable_progress_bar()
        hf_logging.disable_default_handler()
    loggers = [logging.getLogger(name) for name in _NOISY_LOGGERS]
    saved = [(lg.propagate, list(lg.handlers)) for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        lg.propagate = False
    logging.captureWarnings(True)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("default")
            yield
    finally:
        logging.captureWarnings(False)
        for lg, (propagate, handlers) in zip(loggers, saved, strict=True):
            lg.removeHandler(handler)
            lg.propagate = propagate
            lg.handlers[:] = handlers
        if hf_logging is not None:
            hf_logging.enable_default_handler()
            hf_logging.enable_progress_bar()
        handler.close()
