"""Synthetic catalogs for the split tests: recordings and accepted segments, built in
milliseconds straight into a workspace's catalog (no audio decoded, no model)."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import numpy as np
import soundfile as sf

from core.catalog import Catalog
from core.records import Recording, Segment
from core.workspace import Workspace


def add_recordings(
    ws: Workspace,
    speaker: str,
    sizes: list[int],
    *,
    seed: int = 0,
    salt: str = "",
    status: str = "accepted",
    audio: bool = False,
) -> list[int]:
    """One recording per entry of ``sizes`` with that many segments of 3–15 s (random from
    ``seed``) separated by 0.2–3 s pauses; ``audio``: also write a short wav per segment so
    that an export can link it. Returns the recording ids."""
    rng = random.Random(f"{seed}:{salt}")
    ids = []
    with Catalog.open(ws.catalog_path) as catalog:
        for r, size in enumerate(sizes):
            sha = hashlib.sha256(f"{speaker}:{salt}:{r}".encode()).hexdigest()
            segments, t = [], 0.0
            for i in range(size):
                d = rng.uniform(3.0, 15.0)
                segments.append((t, d, i))
                t += d + rng.uniform(0.2, 3.0)
            rec_id = catalog.add_recording(
                Recording(
                    speaker=speaker, path=f"raw/{speaker}/{salt}{r}.wav",
                    original_name=f"{salt}{r}.wav", sha256=sha, sample_rate=24000, channels=1,
                    duration_sec=t, format="WAV", state="segmented",
                )
            )  # fmt: skip
            rows = []
            for start, d, i in segments:
                path = f"segments/{speaker}/{salt}{r}-{sha[:8]}-{i:04d}.wav"
                if audio:
                    _silence(ws.root / path)
                rows.append(
                    Segment(
                        recording_id=rec_id, speaker=speaker, audio=path, start_sec=start,
                        end_sec=start + d, duration_sec=d, text=f"words {salt} {r} {i}",
                        text_source="manual", status=status,  # type: ignore[arg-type]
                    )
                )  # fmt: skip
            catalog.add_segments(rows)
            ids.append(rec_id)
    return ids


def stored_splits(ws: Workspace, speaker: str | None = None) -> dict[int, str | None]:
    """Segment id -> the split stored in the catalog (accepted segments)."""
    with Catalog.open(ws.catalog_path) as catalog:
        return {
            s.id: s.split
            for s in catalog.segments(status="accepted", speaker=speaker)
            if s.id is not None
        }


def _silence(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.zeros(240, dtype=np.float32), 24000, subtype="PCM_16")
