"""The built-in demo workspace: everything a new user needs, with no download and no GPU.

``build_demo(root, seed)`` makes a workspace with two consented speakers (``alice`` and
``bob``). Each gets two "long recordings" read by the espeak-ng draft voice with
natural pauses, room noise and planted defects (a clipped burst, a stretch of mains
hum, a silence gap); one recording per speaker has an ``.srt`` sidecar, one has none.
The recordings are imported into ``raw/`` like any user's. It also writes a
generated music bed and chime under ``assets/`` and an episode script under
``scripts/``. The same seed gives byte-identical files.

The planted defects and the exact sentence timings are written to
``assets/demo-truth.json``, so tests of later stages can check what they find.

Finally the recordings are ingested (``ingest=True``): segmentation, conditioning and QC
run as for any user, from the subtitle cues where there are some and from voice activity
elsewhere. No model is needed: transcription and the speaker filter are skipped (segments
without subtitles are flagged ``no_text``), and the workspace's models are set to the
``"tiny"`` stand-ins so that every later stage also runs offline.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt
import soundfile as sf

from core.atomic import atomic_path, atomic_write_text
from core.audio.io import write_wav
from core.catalog import Catalog
from core.dataset.importer import import_recording
from core.dataset.ingest import IngestOptions
from core.dataset.ingest import ingest as run_ingest
from core.demo.corpus import SENTENCES
from core.episodes.synthesis.draft import DraftVoice, synthesize
from core.errors import WorkspaceError
from core.settings import Consent, Models
from core.tempfiles import workspace_tempdir
from core.training.protocol import pid_alive
from core.workspace import Workspace

Progress = Callable[[int, int, str], None]
Audio = npt.NDArray[np.float32]

DEMO_CONSENT_DATE = datetime(2026, 1, 1, tzinfo=UTC)
SCRIPT_NAME = "welcome"


@dataclass(frozen=True)
class RecordingSpec:
    """One long recording to generate."""

    stem: str
    sample_rate: int
    channels: int
    container: str  # "FLAC" or "WAV"
    with_srt: bool
    defects: tuple[str, ...]  # any of "clip", "hum", "silence"


@dataclass(frozen=True)
class DemoSpeaker:
    name: str
    display_name: str
    voice: DraftVoice
    recordings: tuple[RecordingSpec, ...]


DEMO_SPEAKERS: tuple[DemoSpeaker, ...] = (
    DemoSpeaker(
        name="alice",
        display_name="Alice",
        voice=DraftVoice(language="en-us", pitch=70, pitch_range=60, rate=160),
        recordings=(
            RecordingSpec("alice-studio", 44100, 1, "FLAC", True, ("clip", "silence")),
            RecordingSpec("alice-kitchen", 48000, 2, "WAV", False, ("hum",)),
        ),
    ),
    DemoSpeaker(
        name="bob",
        display_name="Bob",
        voice=DraftVoice(language="en-gb", pitch=30, pitch_range=45, rate=170),
        recordings=(
            RecordingSpec("bob-office", 48000, 1, "FLAC", True, ("hum", "silence")),
            RecordingSpec("bob-phone", 44100, 2, "WAV", False, ("clip",)),
        ),
    ),
)


@dataclass
class ScriptedCue:
    """A sentence's exact place in a generated recording."""

    start_sec: float
    end_sec: float
    text: str


@dataclass
class Planted:
    """A defect planted on purpose, for later stages to find."""

    kind: str
    start_sec: float
    end_sec: float


@dataclass
class GeneratedRecording:
    audio: Audio  # (frames,) or (frames, channels)
    sample_rate: int
    cues: list[ScriptedCue] = field(default_factory=list)
    planted: list[Planted] = field(default_factory=list)


def build_demo(
    root: Path | str,
    *,
    seed: int = 7,
    seconds_per_recording: float = 150.0,
    progress: Progress | None = None,
    ingest: bool = True,
) -> Workspace:
    """Create the demo workspace in ``root``, a new or empty folder.

    A folder holding anything else is refused before anything is written (the demo would
    write over assets and scripts). While building, ``root`` holds ``BUILDING_MARKER``
    (with the builder's pid): a build that fails removes what it made, and a build that
    was killed is recognised by the marker and started over by the next call.
    """
    root = Path(root).expanduser().resolve()
    existed = root.exists()
    _claim_for_demo(root)
    try:
        ws = _build(root, seed, seconds_per_recording, progress, ingest)
    except BaseException:
        _clear(root)
        (root / BUILDING_MARKER).unlink(missing_ok=True)
        if not existed:
            root.rmdir()
        raise
    (root / BUILDING_MARKER).unlink()
    return ws


BUILDING_MARKER = ".podforge-demo-building"
"""Present in a demo folder while it is being built; its text is the builder's pid."""


def unfinished_demo(root: Path | str) -> bool:
    """Whether ``root`` holds a demo build that never finished (its builder is gone)."""
    marker = Path(root) / BUILDING_MARKER
    return marker.is_file() and not _alive(_pid_in(marker))


def _claim_for_demo(root: Path) -> None:
    if root.exists() and not root.is_dir():
        raise WorkspaceError(f"{root}: exists and is not a folder; name a new folder for the demo")
    marker = root / BUILDING_MARKER
    if marker.is_file():
        pid = _pid_in(marker)
        if _alive(pid):
            raise WorkspaceError(
                f"{root}: the demo is being built by process {pid}; wait for it to finish"
            )
        _clear(root)  # a killed build of ours: everything in it is podforge's
    elif root.exists() and any(root.iterdir()):
        raise WorkspaceError(
            f"{root}: not empty; the demo is built only in a new or empty folder "
            "(name another one, e.g. `podforge demo ~/podforge-demo`)"
        )
    root.mkdir(parents=True, exist_ok=True)
    atomic_write_text(marker, f"{os.getpid()}\n")


def _pid_in(marker: Path) -> int:
    try:
        return int(marker.read_text(encoding="utf-8").strip() or 0)
    except (OSError, ValueError):
        return 0


def _alive(pid: int) -> bool:
    return pid != os.getpid() and pid_alive(pid)


def _clear(root: Path) -> None:
    """Remove what a demo build made in ``root`` (only called while our marker is there)."""
    if not (root / BUILDING_MARKER).is_file():
        return
    for child in root.iterdir():
        if child.name == BUILDING_MARKER:
            continue
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def _build(
    root: Path,
    seed: int,
    seconds_per_recording: float,
    progress: Progress | None,
    ingest: bool,
) -> Workspace:
    report = progress or (lambda done, total, what: None)
    total = (
        sum(len(s.recordings) for s in DEMO_SPEAKERS) + 2 + (len(DEMO_SPEAKERS) if ingest else 0)
    )
    done = 0
    ws = Workspace.create(root, name="demo")
    ws.settings.models = Models(tts="tiny", asr="tiny", speaker="tiny", device="auto", sound="tiny")
    for sp in DEMO_SPEAKERS:
        ws.add_speaker(
            sp.name,
            Consent(
                granted_by=f"{sp.display_name} (synthetic demo speaker)",
                granted_at=DEMO_CONSENT_DATE,
                statement="Generated by podforge's draft voice; no real person's voice.",
            ),
            display_name=sp.display_name,
            draft_voice=sp.voice.language,
            draft_pitch=sp.voice.pitch,
        )
    truth: dict[str, object] = {"seed": seed, "recordings": {}}
    with (
        workspace_tempdir(ws.root, "demo") as tmp,
        Catalog.open(ws.catalog_path) as catalog,
    ):
        for s_index, sp in enumerate(DEMO_SPEAKERS):
            for r_index, spec in enumerate(sp.recordings):
                report(done, total, f"reading {spec.stem}")
                rng = np.random.default_rng([seed, s_index, r_index])
                rec = generate_recording(sp.voice, spec, rng, seconds_per_recording)
                source = _write_source(tmp, spec, rec)
                result = import_recording(ws, catalog, source, sp.name)
                truth["recordings"][spec.stem] = {  # type: ignore[index]
                    "speaker": sp.name,
                    "raw": result.recording.path,
                    "sidecar": spec.with_srt,
                    "cues": [asdict(c) for c in rec.cues],
                    "planted": [asdict(p) for p in rec.planted],
                }
                done += 1
        report(done, total, "music bed")
        music_rng = np.random.default_rng([seed, 99])
        write_wav(ws.assets_dir / "theme.wav", music_bed(24000, 32.0, music_rng), 24000)
        write_wav(ws.assets_dir / "chime.wav", chime(24000), 24000)
        done += 1
        report(done, total, "episode script")
        atomic_write_text(ws.scripts_dir / f"{SCRIPT_NAME}.md", DEMO_SCRIPT)
        atomic_write_text(ws.scripts_dir / f"{SOUND_SCRIPT_NAME}.md", SOUND_SCRIPT)
        atomic_write_text(
            ws.assets_dir / "demo-truth.json", json.dumps(truth, indent=2, sort_keys=True) + "\n"
        )
        done += 1
    if ingest:
        for sp in DEMO_SPEAKERS:
            report(done, total, f"ingesting {sp.name}")
            run_ingest(ws, [ws.raw_dir / sp.name], sp.name, IngestOptions(False, False))
            done += 1
    report(done, total, "done")
    return ws


def generate_recording(
    voice: DraftVoice, spec: RecordingSpec, rng: np.random.Generator, seconds: float
) -> GeneratedRecording:
    """Read sentences with pauses into one long take, then add room noise and defects."""
    sr = spec.sample_rate
    order = rng.permutation(len(SENTENCES))
    parts: list[Audio] = []
    cues: list[ScriptedCue] = []
    utterances: list[tuple[int, int]] = []  # sample spans of whole utterances
    cursor = _silence(rng.uniform(0.8, 1.5), sr)
    parts.append(cursor)
    t = len(cursor)
    i = 0
    while t < seconds * sr or len(utterances) < 3:
        n_sentences = int(rng.integers(2, 4))
        gain = float(10 ** (rng.uniform(-3.0, 3.0) / 20.0))
        start = t
        for k in range(n_sentences):
            text = SENTENCES[int(order[i % len(order)])]
            i += 1
            speech = synthesize(text, voice, sample_rate=sr) * (0.3 * gain)
            cues.append(ScriptedCue(round(t / sr, 3), round((t + len(speech)) / sr, 3), text))
            parts.append(speech.astype(np.float32))
            t += len(speech)
            if k < n_sentences - 1:
                gap = _silence(rng.uniform(0.22, 0.42), sr)
                parts.append(gap)
                t += len(gap)
        utterances.append((start, t))
        gap = _silence(rng.uniform(0.7, 1.6), sr)
        parts.append(gap)
        t += len(gap)
    audio = np.concatenate(parts)
    planted: list[Planted] = []
    if "silence" in spec.defects:
        audio, cues, utterances, span = _insert_silence(audio, cues, utterances, sr, 8.0)
        planted.append(span)
    audio = audio + room_noise(len(audio), sr, rng, level_db=-58.0)
    for kind in spec.defects:
        if kind == "silence":
            continue
        # Plant in a middle utterance, away from the ends.
        middle = len(utterances) // 2 + (1 if kind == "hum" else -1)
        a, b = utterances[min(max(middle, 0), len(utterances) - 1)]
        if kind == "clip":
            audio[a:b] = np.clip(audio[a:b] * 12.0, -1.0, 1.0)
        elif kind == "hum":
            audio[a:b] += mains_hum(b - a, sr, freq=50.0, level_db=-26.0)
        planted.append(Planted(kind, round(a / sr, 3), round(b / sr, 3)))
    audio = np.clip(audio, -1.0, 1.0).astype(np.float32)
    if spec.channels == 2:
        # A slightly wider right channel, as from a real stereo recorder.
        audio = np.stack([audio, np.roll(audio, 3) * np.float32(0.9)], axis=1)
    planted.sort(key=lambda p: p.start_sec)
    return GeneratedRecording(audio=audio, sample_rate=sr, cues=cues, planted=planted)


def room_noise(n: int, sr: int, rng: np.random.Generator, level_db: float) -> Audio:
    """Pink-ish room noise at ``level_db`` dBFS RMS: white noise through a -3 dB/octave
    pinking filter (a standard 3-pole/3-zero approximation), darkened above ~8 kHz."""
    from scipy.signal import butter, lfilter, sosfilt

    white = rng.standard_normal(n)
    b = [0.049922035, -0.095993537, 0.050612699, -0.004408786]
    a = [1.0, -2.494956002, 2.017265875, -0.522189400]
    pink = lfilter(b, a, white)
    if sr > 16000:
        pink = 0.7 * pink + 0.3 * sosfilt(butter(2, 8000, fs=sr, output="sos"), pink)
    pink = np.asarray(pink, dtype=np.float64)
    pink /= np.sqrt(np.mean(pink**2)) + 1e-12
    out: Audio = (pink * 10 ** (level_db / 20.0)).astype(np.float32)
    return out


def mains_hum(n: int, sr: int, freq: float, level_db: float) -> Audio:
    """Mains hum: a fundamental plus decaying harmonics, faded in and out over 50 ms."""
    t = np.arange(n) / sr
    hum = sum((0.6**k) * np.sin(2 * np.pi * freq * (k + 1) * t) for k in range(4))
    hum = np.asarray(hum)
    hum /= np.sqrt(np.mean(hum**2)) + 1e-12
    fade = min(n // 2, int(0.05 * sr))
    env = np.ones(n)
    env[:fade] = np.linspace(0, 1, fade)
    env[n - fade :] = np.linspace(1, 0, fade)
    return (hum * env * 10 ** (level_db / 20.0)).astype(np.float32)


def music_bed(sr: int, seconds: float, rng: np.random.Generator) -> Audio:
    """A soft stereo loop: a I-V-vi-IV pad with a plucked arpeggio, seamless at its ends."""
    n = int(seconds * sr)
    t = np.arange(n) / sr
    chords = ((261.63, 329.63, 392.0), (196.0, 246.94, 293.66),
              (220.0, 261.63, 329.63), (174.61, 220.0, 261.63))  # fmt: skip
    bar = seconds / 8
    pad = np.zeros(n)
    pluck = np.zeros(n)
    for b in range(8):
        chord = chords[b % 4]
        a, z = int(b * bar * sr), int((b + 1) * bar * sr)
        tt = t[a:z] - t[a]
        env = np.minimum(1.0, tt / 0.4) * np.minimum(1.0, (tt[-1] - tt + 1e-3) / 0.4)
        for f in chord:
            detune = rng.uniform(-0.4, 0.4)
            pad[a:z] += env * (
                np.sin(2 * np.pi * (f / 2 + detune) * tt) + 0.3 * np.sin(2 * np.pi * f * tt)
            )
        step = bar / 4
        for k in range(4):
            pa = a + int(k * step * sr)
            pz = min(z, pa + int(step * sr))
            pt = t[pa:pz] - t[pa]
            note = chord[k % 3] * 2
            pluck[pa:pz] += np.exp(-pt * 6.0) * np.sin(2 * np.pi * note * pt)
    left = 0.7 * pad + 0.5 * pluck
    right = 0.7 * pad + 0.35 * np.roll(pluck, int(0.012 * sr))
    return _peak_normalise(np.stack([left, right], axis=1), 0.5)


def chime(sr: int, seconds: float = 1.5) -> Audio:
    """A short bell: inharmonic partials with exponential decay."""
    t = np.arange(int(seconds * sr)) / sr
    partials = ((880.0, 1.0, 3.0), (2420.0, 0.5, 5.0), (3960.0, 0.25, 8.0))
    bell = sum(amp * np.exp(-t * decay) * np.sin(2 * np.pi * f * t) for f, amp, decay in partials)
    return _peak_normalise(np.asarray(bell), 0.5)


def _peak_normalise(x: npt.NDArray[np.float64], peak: float) -> Audio:
    out: Audio = (x * (peak / np.max(np.abs(x)))).astype(np.float32)
    return out


def srt_text(cues: list[ScriptedCue]) -> str:
    """SubRip text for ``cues``."""
    blocks = [
        f"{n}\n{_srt_time(c.start_sec)} --> {_srt_time(c.end_sec)}\n{c.text}\n"
        for n, c in enumerate(cues, 1)
    ]
    return "\n".join(blocks)


def _srt_time(seconds: float) -> str:
    ms = round(seconds * 1000)
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{s:02d},{ms:03d}"


def _silence(seconds: float, sr: int) -> Audio:
    return np.zeros(int(seconds * sr), dtype=np.float32)


def _insert_silence(
    audio: Audio,
    cues: list[ScriptedCue],
    utterances: list[tuple[int, int]],
    sr: int,
    seconds: float,
) -> tuple[Audio, list[ScriptedCue], list[tuple[int, int]], Planted]:
    """Insert a long gap between two utterances a third of the way in."""
    _, at = utterances[len(utterances) // 3]
    at += int(0.3 * sr)
    gap = int(seconds * sr)
    shifted = [
        ScriptedCue(c.start_sec + seconds, c.end_sec + seconds, c.text)
        if c.start_sec * sr >= at
        else c
        for c in cues
    ]
    spans = [(a + gap, b + gap) if a >= at else (a, b) for a, b in utterances]
    out = np.concatenate([audio[:at], np.zeros(gap, dtype=np.float32), audio[at:]])
    return out, shifted, spans, Planted("silence", round(at / sr, 3), round((at + gap) / sr, 3))


def _write_source(folder: Path, spec: RecordingSpec, rec: GeneratedRecording) -> Path:
    suffix = ".flac" if spec.container == "FLAC" else ".wav"
    path = folder / f"{spec.stem}{suffix}"
    with atomic_path(path) as tmp:
        sf.write(tmp, rec.audio, rec.sample_rate, subtype="PCM_16", format=spec.container)
    if spec.with_srt:
        atomic_write_text(path.with_suffix(".srt"), srt_text(rec.cues))
    return path


SOUND_SCRIPT_NAME = "with-sound"
SOUND_SCRIPT = """\
+++
title = "Episode 2: Sound design"
[speakers]
HOST = "alice"
GUEST = "bob"
+++

<!-- Generated sound: the demo's sound model is "tiny" (random weights: shaped noise, made
     in seconds on a CPU); set [models] sound to stabilityai/stable-audio-open-1.0 on a GPU
     machine for real effects and beds (docs/EPISODES.md, "Generated sound"). -->
[music gen="warm lo-fi bed, no vocals, 80 bpm" 4s fade_in=1s duck=-14dB volume=-6dB]
HOST: Someone is at the door.
[sfx gen="a heavy wooden door creaks open, close mic" 2.5s seed=4]
GUEST: Sorry I am late!
[sfx gen="a bright bell, short" 1s from=chime.wav strength=0.4]
HOST: Right on time.
[music stop fade_out=1s]
"""

DEMO_SCRIPT = """\
+++
title = "Episode 1: Hello, podforge"
[speakers]
HOST = "alice"
GUEST = "bob"
+++

# Cold open
[music theme.wav fade_in=2s duck=-14dB]
HOST: Welcome to the podforge demo. <break time="400ms"/> Today we talk about voices.
GUEST: Thanks for having me! I am <emphasis>really</emphasis> glad to be here.
[music stop fade_out=3s]

# Making a dataset
HOST: So where does a cloned voice begin?
GUEST: With long, honest recordings. Thirty minutes is a good start, and an hour is better.
HOST: And then someone listens to every clip?
GUEST: Yes, with the keyboard. Accept, reject, fix the transcript, next.
[pause 1.2s]
[sfx chime.wav]

# Wrap-up
HOST: <prosody rate="slow">That is all for today.</prosody> Thanks for listening.
GUEST: See you next week!
"""
