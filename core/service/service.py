"""The service without HTTP: what each endpoint does, on the workspace and the queues.

:class:`Service` holds the workspace (its settings kept fresh by
:class:`~core.service.watch.SettingsWatch`), one :class:`~core.service.queue.SynthesisQueue`
per backend (``csm``: the one model in memory; ``draft``: espeak-ng), the render jobs and
the limits. :mod:`core.service.app` maps HTTP onto it; everything here that touches the disk
or a model is called from a worker thread, never on the event loop.
"""

from __future__ import annotations

import io
import resource
import sys
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from core.episodes.export import episode_paths
from core.episodes.pronunciations import load_pronunciations, spoken_line
from core.episodes.script import Line, Span
from core.episodes.synthesis.backends import Rendered
from core.errors import PodforgeError
from core.service.errors import NotFound, Unprocessable
from core.service.jobs import RenderJobs
from core.service.limits import Limits
from core.service.queue import SynthesisQueue
from core.service.watch import SettingsWatch
from core.voices.folder import VoiceFolder, trained_voice
from core.workspace import Workspace

BACKENDS = ("csm", "draft")
FORMATS = {"wav": "audio/wav", "mp3": "audio/mpeg"}


@dataclass
class Service:
    ws: Workspace
    token: str | None
    """The bearer token every call but health and the API page needs (``None``: no auth)."""
    limits: Limits = field(default_factory=Limits)

    def __post_init__(self) -> None:
        self.watch = SettingsWatch(self.ws)
        self.queues = {
            name: SynthesisQueue(self.watch, name, self.limits.queue_requests) for name in BACKENDS
        }
        self.jobs = RenderJobs(self.watch, self.queues.__getitem__, self.limits)
        self.started = time.monotonic()

    def close(self) -> None:
        self.jobs.close()
        for queue in self.queues.values():
            queue.close()

    # -- voices and synthesis ----------------------------------------------------------
    def voices(self) -> list[dict[str, Any]]:
        """Every speaker: whether it has a trained voice it may be synthesised with, and why
        not when it has none (the draft voice needs neither)."""
        settings = self.watch.refresh()
        out = []
        for name, speaker in sorted(settings.speakers.items()):
            try:
                trained_voice(self.ws, name)
                refused = None
            except PodforgeError as exc:
                refused = str(exc)
            out.append(
                {
                    "name": name,
                    "display_name": speaker.display_name,
                    "trained": VoiceFolder.for_speaker(self.ws, name).is_trained(),
                    "backends": ["csm", "draft"] if refused is None else ["draft"],
                    "csm_refused": refused,
                }
            )
        return out

    def line(self, voice: str, text: str) -> Line:
        """``text`` as one line of ``voice``, as a script line is said (respelled,
        verbalised); an unknown speaker or an unusable text is one line."""
        self.watch.refresh()
        self.ws.speaker(voice)  # SpeakerError: 404
        words = " ".join(text.split())
        if not words:
            raise Unprocessable("text is empty; send the words to say")
        if len(words) > self.limits.max_text_chars:
            raise Unprocessable(
                f"text is {len(words)} characters, over the limit of "
                f"{self.limits.max_text_chars}; send it in parts or render a script as a job"
            )
        line = Line(0, voice.upper(), voice, (Span(words),), 1, 0)
        return spoken_line(line, load_pronunciations(self.ws.root))

    def synthesize(self, line: Line, seed: int, backend: str) -> Future[list[Rendered]]:
        """Queue ``line``; raises :class:`~core.service.errors.Busy` when the queue is full."""
        return self.queues[backend].submit([(line, seed)])

    def encode(self, rendered: Rendered, fmt: str) -> bytes:
        """``rendered`` as a WAV (16-bit PCM) or MP3 file (the episode bitrate)."""
        audio = np.clip(rendered.audio, -1.0, 1.0)
        if fmt == "mp3":
            from core.audio.mp3 import encode_mp3

            rate = self.ws.settings.episode.mp3_bitrate_kbps
            return encode_mp3(audio, rendered.sample_rate, bitrate_kbps=rate)
        import soundfile as sf

        buffer = io.BytesIO()
        sf.write(buffer, audio, rendered.sample_rate, format="WAV", subtype="PCM_16")
        return buffer.getvalue()

    # -- scripts and episodes ----------------------------------------------------------
    def scripts(self) -> list[str]:
        return sorted(
            p.relative_to(self.ws.root).as_posix() for p in self.ws.scripts_dir.glob("*.md")
        )

    def episodes(self) -> list[dict[str, Any]]:
        return [
            self.episode(p.name)
            for p in sorted(self.ws.episodes_dir.iterdir())
            if p.is_dir() and not p.name.startswith(".")
        ]

    def episode(self, name: str) -> dict[str, Any]:
        """The files of episode ``name`` that exist (the ones a render writes)."""
        folder = self._episode_folder(name)
        out = episode_paths(folder, name)
        files = (out.wav, out.mp3, out.manifest, out.chapters, out.srt, out.vtt, out.transcript)
        present = [path.name for path in files if path.is_file()]
        return {"name": name, "files": present, "complete": out.manifest.name in present}

    def episode_file(self, name: str, filename: str) -> Path:
        """One of an episode's files, never anything else in or outside the workspace."""
        if filename not in self.episode(name)["files"]:
            raise NotFound(
                f"episode {name!r} has no file {filename!r}; GET /v1/episodes/{name} lists them"
            )
        path = self._episode_folder(name) / filename
        if path.resolve().parent != path.parent.resolve():  # a link planted in the folder
            raise NotFound(f"episode {name!r}: {filename!r} is not one of its files")
        return path

    def _episode_folder(self, name: str) -> Path:
        folder = self.ws.episodes_dir / name
        if (
            not name
            or name.startswith(".")
            or "/" in name
            or "\\" in name
            or not folder.is_dir()
            or folder.resolve().parent != self.ws.episodes_dir.resolve()
        ):
            raise NotFound(f"no episode {name!r}; GET /v1/episodes lists them")
        return folder

    # -- health ------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        settings = self.ws.settings
        csm = self.queues["csm"]
        return {
            "status": "ok",
            "uptime_s": round(time.monotonic() - self.started, 1),
            "model": {"tts": settings.models.tts, "loaded": csm.loaded},
            "device": _device(settings.models.device, loaded=csm.loaded),
            "memory": _memory(),
            "queues": {
                name: {
                    "waiting": queue.depth,
                    "rendering": queue.rendering,
                    "capacity": queue.capacity,
                    "batches": queue.stats.batches,
                    "lines": queue.stats.lines,
                    "largest_batch": queue.stats.largest_batch,
                }
                for name, queue in self.queues.items()
            },
            "jobs": self.jobs.counts(),
            "auth": self.token is not None,
        }


def _device(setting: str, *, loaded: bool) -> str:
    """The device the model runs on once loaded; before, the setting (resolving it would
    import PyTorch)."""
    if not loaded or "torch" not in sys.modules:
        return f"{setting} (model not loaded yet)"
    from core.models.csm import pick_device

    try:
        return pick_device(setting)
    except PodforgeError:  # a loaded model had a device; keep health answering anyway
        return setting


def _memory() -> dict[str, float | None]:
    """The process's peak resident memory and, with CUDA in use, the GPU's, in MB."""
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out: dict[str, float | None] = {"peak_rss_mb": round(peak_kb / 1024, 1)}
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        free, total = torch.cuda.mem_get_info()
        out |= {
            "gpu_allocated_mb": round(torch.cuda.memory_allocated() / 2**20, 1),
            "gpu_reserved_mb": round(torch.cuda.memory_reserved() / 2**20, 1),
            "gpu_free_mb": round(free / 2**20, 1),
            "gpu_total_mb": round(total / 2**20, 1),
        }
    return out
