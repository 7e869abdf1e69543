"""The CSM backend: one base model in memory, every speaker's LoRA adapter loaded into it.

A speaker's voice is its :class:`~core.voices.folder.VoiceFolder`: the peft adapter, the anchor
clips and ``voice.toml`` (anchor transcripts). Each generation runs after its speaker's anchor
clips as context turns, with a seed of its own; the output length is bounded from the text
length. Generations run in batches of up to ``models.tts_batch`` across lines and speakers
(:func:`core.models.csm_engine.generate_batch`: each row with its own adapter and its own
random generator, so a line sounds the same alone or in any batch). ``<break>`` tags are
honoured by generating the text on either side separately and joining them with silence;
emphasis and prosody are not (the renderer warns once).

``models.tts_engine`` picks the engine (:func:`core.models.csm_compiled.resolve_mode`): on
the compiled path a batch holds one speaker's lines, and each speaker's adapter is swapped
into one slot in place (peft hotswap, padded to the workspace's largest rank) so the
compiled graphs stay valid; a voice that cannot be swapped (its adapter targets other
layers) turns the backend eager, said in one log line. On CUDA the batch is held to what
fits in the free memory (:func:`core.models.csm_memory.fit_batch`).

One generation is at most 40 s (``MAX_SECONDS``), about 440 characters
(:data:`core.episodes.script.MAX_PIECE_CHARS`). Longer text is never cut off: it is split between
sentences (:func:`core.episodes.script.split_text`), each piece generated with its own seed and the
pieces joined with ``SENTENCE_GAP_S`` of silence; a single sentence longer than that is cut
at commas or between words (the parser warns about it at its line).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from core.episodes.script import MAX_PIECE_CHARS, Break, Line, Span, split_text
from core.episodes.synthesis.backends import Rendered
from core.errors import one_line
from core.models.csm_compiled import (
    HOTSWAP_SLOT,
    CompileBackend,
    EngineMode,
    hotswap,
    prepare_hotswap,
    resolve_mode,
)
from core.voices.folder import VoiceFolder, trained_voice
from core.workspace import Workspace

log = logging.getLogger(__name__)

SECONDS_PER_CHAR = 0.09  # generous: ~11 characters a second of speech
MIN_SECONDS = 2.0
MAX_SECONDS = 40.0
SENTENCE_GAP_S = 0.2  # silence between the pieces of a line too long for one generation


@dataclass
class Voice:
    speaker: str
    folder: Path
    anchors: list[tuple[str, Any]]  # (transcript, codes) context turns
    identity: dict[str, object]


class CsmBackend:
    """Renders lines with ``models.tts`` plus each speaker's trained adapter."""

    name = "csm"
    version = "csm-2"  # 2: long lines split between sentences instead of cut at 40 s
    ENGINES: ClassVar[dict[str, str]] = {
        "eager": "frame-loop-1",
        "compiled": "frame-loop-1-compiled",
    }
    """The generation path per engine mode, part of every line's cache identity (our frame
    loop; on the CPU its codes equal stock ``generate``'s, tested)."""
    supported_tags = frozenset({"break"})

    def __init__(
        self,
        ws: Workspace,
        max_chars: int = MAX_PIECE_CHARS,
        batch_size: int | None = None,
        *,
        engine: str | None = None,
        compile_backend: CompileBackend = "inductor",
    ) -> None:
        if not 1 <= max_chars <= MAX_SECONDS / SECONDS_PER_CHAR:
            raise ValueError(f"max_chars must lie in 1..{MAX_SECONDS / SECONDS_PER_CHAR:g}")
        self.ws = ws
        self.max_chars = max_chars
        self.batch_size = batch_size or ws.settings.models.tts_batch
        self.engine_setting = engine or ws.settings.models.tts_engine
        self.compile_backend = compile_backend
        self.last_pieces: list[str] = []
        """The texts generated for the last rendered line, one per generation, in order."""
        self._bundle: Any = None
        self._model: Any = None
        self._voices: dict[str, Voice] = {}
        self._mode: EngineMode | None = None
        self._swapped: str | None = None  # the voice in the hotswap slot (compiled mode)

    @property
    def mode(self) -> EngineMode:
        """``eager`` or ``compiled``: ``models.tts_engine`` on the model's device."""
        if self._mode is None:
            from core.models.csm import pick_device

            self._mode = resolve_mode(
                self.engine_setting, pick_device(self.ws.settings.models.device)
            )
        return self._mode

    @property
    def engine(self) -> str:
        """The generation path this backend uses (part of each line's cache identity)."""
        return self.ENGINES[self.mode]

    # -- voices ------------------------------------------------------------------
    def voice_folder(self, speaker: str) -> Path:
        """``voices/<speaker>/``, the one door to a trained voice: every use of an adapter
        (a render, a preview) passes here first, ``podforge eval`` through the same
        :func:`core.voices.folder.trained_voice`.

        Raises :class:`~core.errors.ConsentError` when the speaker's consent record is
        missing or its scope does not cover synthesis (checked before anything else, also
        before the model loads), and :class:`~core.errors.VoiceError` when no adapter was
        exported.
        """
        return trained_voice(self.ws, speaker).root

    def cache_identity(self, voice: str) -> dict[str, object]:
        folder = VoiceFolder(self.voice_folder(voice))
        digest = hashlib.sha256()
        for path in sorted(folder.adapter.glob("*")) + sorted(folder.anchors.glob("*")):
            digest.update(path.name.encode())
            digest.update(path.read_bytes())
        if folder.toml.is_file():
            digest.update(folder.toml.read_bytes())
        return {
            "base_model": self.ws.settings.models.tts,
            "voice": digest.hexdigest()[:24],
            "engine": self.engine,
        }

    def _load(self, speaker: str) -> Voice:
        if speaker in self._voices:
            return self._voices[speaker]
        from peft import PeftModel

        from core.audio.io import read
        from core.models import csm

        folder = VoiceFolder(self.voice_folder(speaker))
        if self._bundle is None:
            self._bundle = csm.load_csm(self.ws.settings.models.tts, self.ws.settings.models.device)
        if self._model is None and self.mode == "compiled":
            # One slot every speaker is swapped into: shapes never change, graphs stay valid.
            self._model = PeftModel.from_pretrained(
                self._bundle.model, str(folder.adapter), adapter_name=HOTSWAP_SLOT
            )
            prepare_hotswap(self._model, target_rank=self._largest_rank())
            self._swapped = speaker
        elif self._model is None:
            self._model = PeftModel.from_pretrained(
                self._bundle.model, str(folder.adapter), adapter_name=speaker
            )
        elif self.mode == "eager":
            self._model.load_adapter(str(folder.adapter), adapter_name=speaker)
        self._model.eval()
        anchors = []
        for clip, text in folder.listed_anchors():
            audio, _ = read(clip, target_rate=self._bundle.sample_rate)
            anchors.append((text, csm.encode_audio(self._bundle, audio)))
        voice = Voice(speaker, folder.root, anchors, self.cache_identity(speaker))
        self._voices[speaker] = voice
        return voice

    def _largest_rank(self) -> int:
        """The largest LoRA rank among the workspace's exported voices (the hotswap slot is
        padded to it, so any of them can be swapped in later)."""
        ranks = [1]
        for config in sorted(self.ws.root.glob("voices/*/adapter/adapter_config.json")):
            try:
                data = json.loads(config.read_text(encoding="utf-8"))
                pattern = data.get("rank_pattern") or {}
                ranks.append(max([int(data.get("r") or 1), *map(int, pattern.values())]))
            except (OSError, ValueError, TypeError, AttributeError):
                continue  # not a voice this backend can use; the door check says why
        return max(ranks)

    def _swap_in(self, speaker: str) -> bool:
        """Put ``speaker``'s adapter in the hotswap slot; ``False`` (and eager from now on,
        said in one log line) when peft cannot swap it in place."""
        if self._swapped == speaker:
            return True
        try:
            hotswap(self._model, str(VoiceFolder(self._voices[speaker].folder).adapter),
                    self._bundle.device)  # fmt: skip
        except (ValueError, RuntimeError, KeyError) as exc:
            log.warning(
                "cannot swap voice %r into the compiled model (%s); generating eagerly",
                speaker, one_line(exc, first_line=True),
            )  # fmt: skip
            self._to_eager()
            return False
        self._swapped = speaker
        return True

    def _to_eager(self) -> None:
        """Leave the compiled path: every loaded voice gets its own adapter by name."""
        self._mode = "eager"
        for voice in self._voices.values():
            if voice.speaker not in self._model.peft_config:
                adapter = VoiceFolder(voice.folder).adapter
                self._model.load_adapter(str(adapter), adapter_name=voice.speaker)
        self._model.eval()

    # -- rendering ---------------------------------------------------------------
    def render(self, line: Line, seed: int) -> Rendered:
        return self.render_many([(line, seed)])[0]

    def render_many(self, items: Sequence[tuple[Line, int]]) -> list[Rendered]:
        """Render each ``(line, seed)``; every generation of every line (a line is split at
        its breaks and, when long, between sentences) goes into batches of ``batch_size``."""
        for line, _ in items:
            self._load(line.voice)
        sr = self._bundle.sample_rate
        plans = [self._plan(line, seed) for line, seed in items]
        jobs = [job for plan in plans for job in plan if isinstance(job, _Job)]
        if self.mode == "compiled":  # one adapter per compiled batch: speaker by speaker
            order = list(dict.fromkeys(job.voice for job in jobs))
            jobs.sort(key=lambda job: order.index(job.voice))
        size = self._fitting_batch(jobs)
        start = 0
        while start < len(jobs):
            batch = jobs[start : start + size]
            if self.mode == "compiled":
                batch = [job for job in batch if job.voice == batch[0].voice]
            self._generate(batch)
            start += len(batch)
        rendered = []
        for plan in plans:
            pieces: list[npt.NDArray[np.float32]] = []
            for job in plan:
                if isinstance(job, _Job):
                    assert job.audio is not None  # nosec B101  # filled by _generate above
                    pieces.append(job.audio)
                else:
                    pieces.append(np.zeros(job, np.float32))
            audio = np.concatenate(pieces) if pieces else np.zeros(0, np.float32)
            rendered.append(Rendered(audio=audio.astype(np.float32), sample_rate=sr))
        last = plans[-1] if plans else []
        self.last_pieces = [job.text for job in last if isinstance(job, _Job)]
        return rendered

    def _plan(self, line: Line, seed: int) -> list[_Job | int]:
        """``line`` as generations (:class:`_Job`) and silences (samples), in order."""
        sr: int = self._bundle.sample_rate
        plan: list[_Job | int] = []
        seeds = 0
        text = ""
        for part in (*line.parts, Break(0.0)):
            if isinstance(part, Span):
                text += part.text
                continue
            for k, piece in enumerate(split_text(text, self.max_chars)):
                if k > 0:
                    plan.append(round(SENTENCE_GAP_S * sr))
                max_seconds = min(MAX_SECONDS, max(MIN_SECONDS, len(piece) * SECONDS_PER_CHAR))
                plan.append(_Job(line.voice, piece, seed + seeds, max_seconds))
                seeds += 1
            text = ""
            if isinstance(part, Break) and part.seconds > 0:
                plan.append(math.ceil(part.seconds * sr))
        return plan

    def _frames(self, job: _Job) -> int:
        """The most frames ``job`` may make."""
        rate = float(self._bundle.frame_rate)
        return max(1, math.ceil(job.max_seconds * rate - 1e-9))

    def _fitting_batch(self, jobs: Sequence[_Job]) -> int:
        """``batch_size``, held to what fits in the device's free memory for the longest job
        (its anchors, text and frames: an upper bound on its positions)."""
        from core.models.csm import _csm
        from core.models.csm_memory import fit_batch

        if not jobs:
            return self.batch_size

        def positions(job: _Job) -> int:
            anchors = self._voices[job.voice].anchors
            context = sum(int(codes.shape[-1]) + len(text) + 4 for text, codes in anchors)
            return context + len(job.text) + 4 + self._frames(job)

        longest = max(positions(job) for job in jobs)
        return fit_batch(_csm(self._bundle.model), self.batch_size, longest)

    def _generate(self, jobs: Sequence[_Job]) -> None:
        """Generate ``jobs`` in one batch, each with its speaker's adapter and anchors."""
        from core.models import csm
        from core.models.csm_engine import EngineRow, generate_batch

        bundle = self._bundle
        voices = {job.voice for job in jobs}
        compiled = self.mode == "compiled" and self._swap_in(jobs[0].voice)
        if compiled:
            self._model.set_adapter(HOTSWAP_SLOT)
        elif len(voices) == 1:
            self._model.set_adapter(*voices)  # one voice: the plain adapter path, no row hooks
        frames = [self._frames(job) for job in jobs]
        rows = [
            EngineRow(
                csm.build_conversation(self._voices[job.voice].anchors, job.text, 0),
                job.seed,
                adapter=HOTSWAP_SLOT if compiled else job.voice,
            )
            for job in jobs
        ]
        codes = generate_batch(
            bundle,
            rows,
            max_new_frames=max(frames),
            mode="compiled" if compiled else "eager",
            compile_backend=self.compile_backend,
        )
        for job, row_codes, limit in zip(jobs, codes, frames, strict=True):
            audio = csm.decode_codes(bundle, row_codes[:, :limit])
            job.audio = audio[: round(job.max_seconds * bundle.sample_rate)]


@dataclass
class _Job:
    """One generation: ``text`` in ``voice`` with ``seed``, at most ``max_seconds`` long."""

    voice: str
    text: str
    seed: int
    max_seconds: float
    audio: npt.NDArray[np.float32] | None = None
