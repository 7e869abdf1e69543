"""Speech-quality evaluation during training: WER and speaker similarity at eval steps.

With ``training.eval_quality_every = N`` (0: off), every N steps the worker synthesises up to
``training.eval_texts`` validation transcripts with the adapter being trained, transcribes
them back with ``models.asr`` and compares them with ``models.speaker`` against the
speaker's anchor clips. The scoring is the evaluation's own (:mod:`core.evaluation.scoring`:
one WER, one similarity with its minimum clip length), on validation texts and without gates.
The figures go into the ``eval`` event (``wer``, ``similarity``) that the dashboard plots.
Everything runs inside ``torch.random.fork_rng``: it never changes the training's random
state, so resumed runs stay exact.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from core.training.data import CodeCache, Example
from core.workspace import Workspace

VAD_RATE = 16000


class QualityProbe:
    """Loads the ASR and speaker models once; ``measure`` renders and scores examples."""

    def __init__(self, ws: Workspace, speaker: str, bundle: Any, cache: CodeCache) -> None:
        from core.catalog import Catalog
        from core.models.asr import load_asr
        from core.models.speaker import load_speaker_encoder
        from core.voices.folder import anchor_paths

        self.ws, self.bundle, self.cache = ws, bundle, cache
        device = ws.settings.models.device
        self.asr = load_asr(ws.settings.models.asr, device=device)
        self.encoder = load_speaker_encoder(ws.settings.models.speaker, device=device)
        with Catalog.open(ws.catalog_path) as catalog:
            segments = catalog.segments(speaker=speaker, status="accepted")
        from core.audio.io import read

        clips = [read(p, target_rate=VAD_RATE)[0] for p in anchor_paths(ws, speaker, segments)]
        self.anchors = self.encoder.embed_many(clips) if clips else None

    def measure(self, examples: Sequence[Example], seed: int) -> dict[str, float]:
        import torch

        from core.audio.io import resample
        from core.evaluation.scoring import corpus_wer, mean_similarity, similarities
        from core.models import csm

        def encode(audio: Any) -> Any:
            return csm.encode_audio(self.bundle, audio).numpy()

        refs, hyps, clips = [], [], []
        with torch.random.fork_rng(devices=[]):
            for n, ex in enumerate(examples):
                context = (
                    [(ex.context.text, self.cache.codes(ex.context, encode))] if ex.context else []
                )
                seconds = min(30.0, max(2.0, ex.target.duration_sec * 1.5))
                audio = csm.synthesize(self.bundle, ex.target.text, 0, context, seed=seed + n,
                                       max_seconds=seconds)  # fmt: skip
                clip = resample(audio, self.bundle.sample_rate, VAD_RATE) if len(audio) else audio
                clips.append(clip)
                refs.append(ex.target.text)
            transcripts = self.asr.transcribe_many(clips)
            hyps = [t.text for t in transcripts]
            similarity = 0.0
            if self.anchors is not None:
                similarity = mean_similarity(similarities(self.encoder, clips, self.anchors))
        return {"wer": round(corpus_wer(refs, hyps), 6), "similarity": round(similarity, 6)}
