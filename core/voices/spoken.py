"""Spoken consent: the speaker says the consent statement in their own voice.

``podforge speaker add ... --consent-audio FILE`` copies the clip into the workspace
(``consent/<speaker>-<hash>.<ext>``; the user's file is never touched) and records its path
and SHA-256 in the speaker's consent (so the voice export carries the clip's hash inside
the consent record). Before training, :func:`check_spoken_consent` holds the clip to the
speaker's accepted segments with the workspace's speaker model (ECAPA): the clip must be
the one recorded (same hash) and sound like the speaker (mean cosine similarity to up to
eight reference segments at least ``[qc] min_speaker_similarity``). A clip is evidence a
person can listen to; the similarity check only catches the wrong clip or the wrong person,
it is no proof of identity.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from core.dataset.importer import file_sha256
from core.errors import AudioError, ConsentError
from core.workspace import Workspace

FOLDER = "consent"
"""Workspace folder of the spoken consent clips."""


@dataclass(frozen=True)
class SpokenConsent:
    """What :func:`check_spoken_consent` measured."""

    clip: Path
    similarity: float
    threshold: float
    references: int


def store_consent_audio(ws: Workspace, speaker: str, source: Path) -> tuple[str, str]:
    """Copy ``source`` (any audio podforge decodes, at least 2 s) into ``consent/``; returns
    its workspace-relative path and SHA-256. The copy is written atomically."""
    from core.atomic import atomic_path
    from core.audio.io import probe

    info = probe(source)  # a missing or undecodable file is a one-line AudioError
    if info.duration_sec < 2.0:
        raise AudioError(
            f"{source}: {info.duration_sec:.1f} s is too short for spoken consent; record the "
            "speaker saying the whole consent statement"
        )
    sha = file_sha256(info.path)
    target = ws.root / FOLDER / f"{speaker}-{sha[:12]}{info.path.suffix.lower()}"
    target.parent.mkdir(exist_ok=True)
    if not target.exists():
        with atomic_path(target) as tmp:
            shutil.copyfile(info.path, tmp)
    return target.relative_to(ws.root).as_posix(), sha


def check_spoken_consent(ws: Workspace, speaker: str) -> SpokenConsent | None:
    """Hold the speaker's spoken consent clip to their accepted segments; ``None`` when the
    consent has no clip. Raises a one-line :class:`~core.errors.ConsentError` when the clip is
    missing, changed since it was recorded, or does not sound like the speaker; loads the
    workspace's speaker model (``[models] speaker``)."""
    import numpy as np

    from core.audio.io import read
    from core.catalog import Catalog
    from core.models.speaker import load_speaker_encoder, similarity_to_anchors
    from core.voices.folder import reference_segments

    consent = ws.require_consent(speaker)
    if not consent.audio:
        return None
    clip = ws.root / consent.audio
    again = (
        f"record it again with `podforge speaker add {ws.root} {speaker} --consent ... "
        "--granted-by ... --consent-audio FILE`"
    )
    if not clip.is_file():
        raise ConsentError(f"{clip}: {speaker!r}'s spoken consent clip is missing; {again}")
    if file_sha256(clip) != consent.audio_sha256:
        raise ConsentError(
            f"{clip}: the spoken consent clip changed since it was recorded (its hash differs "
            f"from {ws.config_path}); {again}"
        )
    with Catalog.open(ws.catalog_path) as catalog:
        accepted = catalog.segments(speaker=speaker, status="accepted")
    references = reference_segments(accepted)
    if not references:
        raise ConsentError(
            f"speaker {speaker!r} has no accepted segment to hold the spoken consent to; "
            "accept some in the review screen first"
        )
    models = ws.settings.models
    encoder = load_speaker_encoder(models.speaker, models.device)
    audio, _ = read(clip, target_rate=16000)
    refs = [read(ws.root / s.audio, target_rate=16000)[0] for s in references]
    similarity = float(similarity_to_anchors(encoder.embed(audio), encoder.embed_many(refs))[0])
    threshold = ws.settings.qc.min_speaker_similarity
    if not np.isfinite(similarity) or similarity < threshold:
        raise ConsentError(
            f"{clip}: the spoken consent does not sound like {speaker!r}'s accepted segments "
            f"(similarity {similarity:.2f} < {threshold:.2f}, [qc] min_speaker_similarity); "
            f"the speaker must record it themselves: {again}"
        )
    return SpokenConsent(clip, similarity, threshold, len(references))
