"""The settings held in ``workspace.toml``, as typed dataclasses.

``parse_settings`` turns the TOML document into :class:`Settings`, refusing unknown
keys, wrong types and out-of-range values with one line that names the key;
``settings_to_toml`` turns it back into a plain table for ``tomli_w``. Reading and
writing the file itself is :mod:`core.workspace`'s job.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, TypeVar

from core.errors import SpeakerError, WorkspaceConfigError

SCHEMA_VERSION = 1
"""The ``schema`` this podforge writes and the newest it reads."""

DEFAULT_CONSENT_SCOPE = "training and synthesis of this voice in this workspace"
SPEAKER_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")


@dataclass
class AudioTargets:
    """What every training utterance is conditioned to."""

    sample_rate: int = 24000
    subtype: str = "PCM_16"
    channels: int = 1
    target_lufs: float = -19.0
    true_peak_dbtp: float = -1.0
    min_segment_sec: float = 5.0
    max_segment_sec: float = 15.0
    margin_ms: int = 150
    target_minutes_min: float = 30.0
    target_minutes_max: float = 90.0


@dataclass
class QCThresholds:
    """A segment failing any of these gets a QC flag naming it."""

    min_rms_db: float = -40.0
    min_snr_db: float = 10.0
    max_clipped_ratio: float = 0.001
    max_hum_score: float = 0.1
    max_plosive_ratio: float = 0.01
    min_bandwidth_hz: float = 7000.0
    min_speaker_similarity: float = 0.55


@dataclass
class Segmentation:
    """Voice activity detection settings (webrtcvad)."""

    vad_mode: int = 2
    frame_ms: int = 30
    hum_notch: bool = False


@dataclass
class Models:
    """Model ids: a hub id, a local folder, or ``"tiny"`` for the built-in stand-in."""

    tts: str = "sesame/csm-1b"
    asr: str = "large-v3"
    speaker: str = "speechbrain/spkrec-ecapa-voxceleb"
    device: str = "auto"
    tts_batch: int = 8
    """At most this many generations (lines or their pieces) run together in one batch."""
    tts_engine: str = "auto"
    """``auto`` (compiled on CUDA, eager elsewhere), ``eager`` or ``compiled``."""
    sound: str = "stabilityai/stable-audio-open-1.0"
    """The text-to-audio model of ``gen=`` cues (diffusers ``StableAudioPipeline``)."""
    sound_cpu: bool = False
    """Let a real sound model run on the CPU (hours for one sound; ``"tiny"`` always may)."""


@dataclass
class Training:
    """Defaults for new training runs (each run keeps its own copy in ``config.toml``)."""

    lora_rank: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.1
    learning_rate: float = 1e-4
    warmup_steps: int = 50
    batch_size: int = 2
    grad_accum: int = 8
    max_steps: int = 1000
    eval_every: int = 100
    save_every: int = 100
    seed: int = 42
    bf16: bool = True
    gradient_checkpointing: bool = True
    max_clip_sec: float = 15.0
    depth_decoder_ratio: float = 1.0
    """Share of each clip's frames whose depth-decoder loss is trained (CSM's compute
    amortisation: below 1 a step is cheaper; the backbone still learns every frame)."""
    eval_quality_every: int = 0  # steps between WER/similarity probes; 0 = off
    eval_texts: int = 4  # validation texts synthesised per probe


@dataclass
class Evaluation:
    """The gates ``podforge eval`` holds a voice to (the ``[eval]`` table)."""

    max_wer: float = 0.07
    max_cer: float = 0.03
    min_similarity: float = 0.75
    max_rtf: float = 1.0


CONSENT_USES: dict[str, tuple[str, ...]] = {
    "training": ("train",),
    "synthesis": ("synthes", "synthez"),
}
"""What podforge does with a voice, and the word stems by which a consent ``scope`` names
each use (``train`` matches training/train/trained; ``synthes`` synthesis/synthesise/
synthesize): a use is covered when the scope mentions it (case-insensitive)."""


@dataclass
class EpisodeMaster:
    """How rendered episodes are mastered (the ``[episode]`` table); a script's ``[mix]``
    wins over it."""

    sample_rate: int = 0
    """0: 48000 when the episode has music or effects, else ``audio.sample_rate``."""
    stereo: bool = False
    mp3_bitrate_kbps: int = 128
    preset: str = ""
    """A platform's loudness for every episode (``apple``, ``spotify``, ``youtube``,
    ``ebu-r128``, ``aes-speech``); empty: ``audio.target_lufs`` (-16 for stereo)."""


@dataclass
class LineQa:
    """When a rendered line is suspect (the ``[qa]`` table; docs/EPISODES.md, *Line QA*).
    The defaults are not yet validated on real voices."""

    max_wer: float = 0.25
    max_cer: float = 0.15
    min_similarity: float = 0.55
    max_lead_s: float = 1.0
    max_trail_s: float = 1.5
    max_pause_s: float = 1.5
    max_clipped_ratio: float = 0.001
    rate_tolerance: float = 0.25
    """The speaker's 10th-90th percentile speaking rate, widened by this share either way."""
    min_length_ratio: float = 0.5
    max_length_ratio: float = 2.0


@dataclass
class RenderSettings:
    """Defaults of ``podforge render`` (the ``[render]`` table)."""

    retakes: int = 0
    """Line QA and retakes: up to this many candidates per line, the first that passes QA
    kept (0: no line QA; 1: QA without retakes)."""


PRESET_NAMES: Final = ("apple", "spotify", "youtube", "ebu-r128", "aes-speech")
"""The platform loudness presets (their figures: :data:`core.episodes.target.LOUDNESS_PRESETS`)."""


@dataclass
class ExportTargets:
    """More deliverables from every render (the ``[export]`` table)."""

    targets: list[str] = field(default_factory=list)
    """Platform presets, each optionally ``:mono`` or ``:stereo`` (default: the master's
    layout): one more MP3 each, ``<name>.<preset>[-<layout>].mp3``, measured after decoding."""


@dataclass
class WatermarkSettings:
    """The synthetic-speech mark on every rendered line (the ``[watermark]`` table)."""

    enabled: bool = True
    reason: str = ""
    """Why the mark is off (required when ``enabled = false``; recorded in each manifest)."""


@dataclass
class Consent:
    """A speaker's recorded consent to clone and synthesise their voice."""

    granted_by: str
    granted_at: datetime
    scope: str = DEFAULT_CONSENT_SCOPE
    statement: str = ""
    evidence: str = ""
    audio: str = ""
    """The spoken consent clip, relative to the workspace (``consent/<speaker>-<hash>.*``)."""
    audio_sha256: str = ""

    def covers(self, use: str) -> bool:
        """Whether ``scope`` names ``use`` (a key of :data:`CONSENT_USES`)."""
        scope = self.scope.casefold()
        return any(stem in scope for stem in CONSENT_USES[use])


@dataclass
class Speaker:
    """A person whose recordings are in the workspace."""

    display_name: str = ""
    consent: Consent | None = None
    draft_voice: str = "en-us"
    draft_pitch: int = 50


@dataclass
class Settings:
    """Everything in ``workspace.toml``."""

    schema: int = SCHEMA_VERSION
    name: str = "untitled"
    audio: AudioTargets = field(default_factory=AudioTargets)
    qc: QCThresholds = field(default_factory=QCThresholds)
    segmentation: Segmentation = field(default_factory=Segmentation)
    models: Models = field(default_factory=Models)
    training: Training = field(default_factory=Training)
    speakers: dict[str, Speaker] = field(default_factory=dict)
    evaluation: Evaluation = field(default_factory=Evaluation)
    """Written as ``[eval]`` in ``workspace.toml``."""
    episode: EpisodeMaster = field(default_factory=EpisodeMaster)
    qa: LineQa = field(default_factory=LineQa)
    render: RenderSettings = field(default_factory=RenderSettings)
    watermark: WatermarkSettings = field(default_factory=WatermarkSettings)
    export: ExportTargets = field(default_factory=ExportTargets)


def validate_speaker_name(name: str) -> str:
    """Return ``name`` if it can name a speaker (it becomes a folder name), else raise."""
    if not SPEAKER_NAME.match(name):
        raise SpeakerError(
            f"speaker name {name!r} is not allowed: use lower-case letters, digits, '-' or '_' "
            "(up to 40, starting with a letter or digit)"
        )
    return name


def parse_settings(doc: dict[str, Any]) -> Settings:
    """Build :class:`Settings` from a parsed TOML document, or raise one clear line."""
    schema = doc.get("schema")
    if not isinstance(schema, int) or isinstance(schema, bool):
        raise WorkspaceConfigError("'schema' is missing or not an integer")
    speakers_doc = doc.get("speakers", {})
    if not isinstance(speakers_doc, dict):
        raise WorkspaceConfigError("'speakers' must be a table")
    eval_doc = doc.get("eval", {})
    if not isinstance(eval_doc, dict):
        raise WorkspaceConfigError("'eval' must be a table")
    if "evaluation" in doc:
        raise WorkspaceConfigError("unknown key 'evaluation' (the evaluation gates are [eval])")
    rest = {k: v for k, v in doc.items() if k not in ("speakers", "eval")}
    settings = _build(Settings, rest, "")
    settings.evaluation = _build(Evaluation, eval_doc, "eval.")
    for name, table in speakers_doc.items():
        try:
            validate_speaker_name(name)
        except SpeakerError as exc:
            raise WorkspaceConfigError(f"[speakers.{name}]: {exc}") from None
        if not isinstance(table, dict):
            raise WorkspaceConfigError(f"'speakers.{name}' must be a table")
        settings.speakers[name] = _build(Speaker, table, f"speakers.{name}.")
    _check_ranges(settings)
    return settings


def settings_to_toml(settings: Settings) -> dict[str, Any]:
    """A plain dict for ``tomli_w``; ``None`` values (TOML has no null) are left out."""
    table: dict[str, Any] = _strip_none(dataclasses.asdict(settings))
    table["eval"] = table.pop("evaluation")
    return table


def new_consent(
    granted_by: str,
    statement: str,
    scope: str | None = None,
    evidence: str = "",
    granted_at: datetime | None = None,
    audio: tuple[str, str] | None = None,
) -> Consent:
    """A consent record of exactly what was given, stamped now (UTC, whole seconds) unless
    ``granted_at`` is given. Who granted it and the statement are required: nothing is
    filled in for them. ``scope=None`` means the default scope (training and synthesis).
    ``audio``: the spoken consent clip's workspace path and SHA-256
    (:func:`core.voices.spoken.store_consent_audio`)."""
    if not granted_by.strip():
        raise SpeakerError(
            "a consent record needs the name of the person who granted it; it was empty"
        )
    if not statement.strip():
        raise SpeakerError(
            "the consent statement is empty; write who agreed to what, how and when "
            '(e.g. "agreed on tape, 2026-01-05, to training and synthesis of my voice")'
        )
    if scope is not None and not scope.strip():
        raise SpeakerError(
            "the consent scope is empty; leave it out for the default "
            f"({DEFAULT_CONSENT_SCOPE!r}) or say what it covers"
        )
    when = granted_at or datetime.now(UTC).replace(microsecond=0)
    return Consent(
        granted_by=granted_by.strip(),
        granted_at=when,
        scope=scope.strip() if scope is not None else DEFAULT_CONSENT_SCOPE,
        statement=statement.strip(),
        evidence=evidence.strip(),
        audio=audio[0] if audio else "",
        audio_sha256=audio[1] if audio else "",
    )


T = TypeVar("T")


def _build(cls: type[T], table: dict[str, Any], prefix: str) -> T:
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(table) - known)
    if unknown:
        raise WorkspaceConfigError(
            f"unknown key '{prefix}{unknown[0]}' (known here: {', '.join(sorted(known))})"
        )
    kwargs: dict[str, Any] = {}
    for key, value in table.items():
        kwargs[key] = _coerce(hints[key], value, f"{prefix}{key}")
    try:
        return cls(**kwargs)
    except TypeError as exc:  # a required field is missing
        missing = str(exc).split("argument", 1)[-1].strip(": ")
        raise WorkspaceConfigError(f"'{prefix.rstrip('.')}' is missing {missing}") from None


def _coerce(hint: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        inner = [a for a in typing.get_args(hint) if a is not type(None)]
        return _coerce(inner[0], value, key)
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise WorkspaceConfigError(f"'{key}' must be a table")
        return _build(hint, value, f"{key}.")  # type: ignore[arg-type]
    if origin is dict:
        if not isinstance(value, dict):
            raise WorkspaceConfigError(f"'{key}' must be a table")
        return value
    if origin is list:
        (item,) = typing.get_args(hint)
        if not isinstance(value, list):
            raise WorkspaceConfigError(f"'{key}' must be a list, not {type(value).__name__}")
        return [_coerce(item, v, key) for v in value]
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is datetime and isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
        raise WorkspaceConfigError(
            f"'{key}' must be {_type_name(hint)}, not {type(value).__name__} {value!r}"
        )
    return value


def _type_name(hint: Any) -> str:
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(
        hint, "a date-time (e.g. 2026-11-21T12:00:00Z)" if hint is datetime else str(hint)
    )


def _check_ranges(s: Settings) -> None:
    a, q = s.audio, s.qc
    checks: list[tuple[bool, str]] = [
        (
            a.sample_rate in (16000, 22050, 24000, 44100, 48000),
            "'audio.sample_rate' must be one of 16000, 22050, 24000, 44100, 48000",
        ),
        (a.subtype in ("PCM_16", "PCM_24"), '\'audio.subtype\' must be "PCM_16" or "PCM_24"'),
        (a.channels == 1, "'audio.channels' must be 1 (training utterances are mono)"),
        (-40.0 <= a.target_lufs <= -10.0, "'audio.target_lufs' must lie in -40..-10"),
        (-12.0 <= a.true_peak_dbtp <= 0.0, "'audio.true_peak_dbtp' must lie in -12..0"),
        (
            0.5 <= a.min_segment_sec < a.max_segment_sec <= 60.0,
            "'audio.min_segment_sec' < 'audio.max_segment_sec' must lie in 0.5..60",
        ),
        (0 <= a.margin_ms <= 1000, "'audio.margin_ms' must lie in 0..1000"),
        (
            0 < a.target_minutes_min <= a.target_minutes_max,
            "'audio.target_minutes_min' must be > 0 and <= 'audio.target_minutes_max'",
        ),
        (0.0 <= q.max_clipped_ratio <= 1.0, "'qc.max_clipped_ratio' must lie in 0..1"),
        (0.0 <= q.max_plosive_ratio <= 1.0, "'qc.max_plosive_ratio' must lie in 0..1"),
        (0.0 <= q.min_bandwidth_hz <= 24000.0, "'qc.min_bandwidth_hz' must lie in 0..24000"),
        (-1.0 <= q.min_speaker_similarity <= 1.0, "'qc.min_speaker_similarity' must lie in -1..1"),
        (s.segmentation.vad_mode in (0, 1, 2, 3), "'segmentation.vad_mode' must be 0, 1, 2 or 3"),
        (s.segmentation.frame_ms in (10, 20, 30), "'segmentation.frame_ms' must be 10, 20 or 30"),
        (s.models.device in ("auto", "cpu", "cuda"), "'models.device' must be auto, cpu or cuda"),
        (1 <= s.models.tts_batch <= 64, "'models.tts_batch' must lie in 1..64"),
        (
            s.models.tts_engine in ("auto", "eager", "compiled"),
            "'models.tts_engine' must be auto, eager or compiled",
        ),
        (1 <= s.training.lora_rank <= 256, "'training.lora_rank' must lie in 1..256"),
        (
            0.0 < s.training.depth_decoder_ratio <= 1.0,
            "'training.depth_decoder_ratio' must lie in 0..1 (above 0)",
        ),
        (0.0 <= s.training.lora_dropout < 1.0, "'training.lora_dropout' must lie in 0..1"),
        (0.0 < s.training.learning_rate < 1.0, "'training.learning_rate' must lie in 0..1"),
        (
            s.training.batch_size >= 1 and s.training.grad_accum >= 1,
            "'training.batch_size' and 'training.grad_accum' must be >= 1",
        ),
        (s.training.max_steps >= 1, "'training.max_steps' must be >= 1"),
        (
            s.training.eval_every >= 1 and s.training.save_every >= 1,
            "'training.eval_every' and 'training.save_every' must be >= 1",
        ),
        (
            s.episode.sample_rate in (0, 24000, 44100, 48000),
            "'episode.sample_rate' must be 0 (automatic), 24000, 44100 or 48000",
        ),
        (
            s.episode.mp3_bitrate_kbps in (32, 40, 48, 56, 64, 80, 96, 112, 128, 160),
            "'episode.mp3_bitrate_kbps' must be one of 32..160 (an MPEG bitrate, e.g. 128)",
        ),
        (0 <= s.render.retakes <= 10, "'render.retakes' must lie in 0..10"),
        (
            s.watermark.enabled or bool(s.watermark.reason.strip()),
            "'watermark.enabled = false' needs 'watermark.reason' (why the synthetic speech "
            "goes unmarked; it is recorded in every episode's manifest)",
        ),
        (
            s.episode.preset in ("", *PRESET_NAMES),
            f"'episode.preset' must be {', '.join(PRESET_NAMES)} or empty",
        ),
        (
            all(
                t.partition(":")[0] in PRESET_NAMES
                and t.partition(":")[2] in ("", "mono", "stereo")
                for t in s.export.targets
            ),
            f"'export.targets' must list presets ({', '.join(PRESET_NAMES)}), each optionally "
            'with :mono or :stereo (e.g. ["apple", "spotify:stereo"])',
        ),
        (s.qa.max_wer >= 0.0 and s.qa.max_cer >= 0.0, "'qa.max_wer' and 'qa.max_cer' must be >= 0"),
        (-1.0 <= s.qa.min_similarity <= 1.0, "'qa.min_similarity' must lie in -1..1"),
        (0.0 <= s.qa.rate_tolerance < 1.0, "'qa.rate_tolerance' must lie in 0..1"),
        (
            0.0 < s.qa.min_length_ratio <= 1.0 <= s.qa.max_length_ratio,
            "'qa.min_length_ratio' must lie in 0..1 and 'qa.max_length_ratio' be >= 1",
        ),
        (s.evaluation.max_wer >= 0.0, "'eval.max_wer' must be >= 0"),
        (s.evaluation.max_cer >= 0.0, "'eval.max_cer' must be >= 0"),
        (-1.0 <= s.evaluation.min_similarity <= 1.0, "'eval.min_similarity' must lie in -1..1"),
        (0.0 < s.evaluation.max_rtf <= 1000.0, "'eval.max_rtf' must lie in 0..1000 (above 0)"),
    ]
    for name, sp in s.speakers.items():
        checks.append(
            (0 <= sp.draft_pitch <= 100, f"'speakers.{name}.draft_pitch' must lie in 0..100")
        )
    for ok, message in checks:
        if not ok:
            raise WorkspaceConfigError(message)


def _strip_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_none(v) for k, v in value.items() if v is not None}
    return value
