"""Export a run's adapter as the speaker's voice: ``voices/<speaker>/``.

``adapter/`` is the checkpoint's peft adapter as ``save_pretrained`` wrote it (any peft user
loads it with ``PeftModel.from_pretrained(base, path)``); ``anchors/`` holds 2-3 reference
clips (the best-QC accepted segments of 3-10 s) whose transcripts go into ``voice.toml``
with the base model, run, step and last metrics. The folder is built beside the old one and
swapped in, so a reader never sees half a voice.
"""

from __future__ import annotations

import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import tomli_w

from core.atomic import swap_in_folder
from core.catalog import Catalog
from core.errors import TrainingError
from core.training.protocol import read_metrics
from core.workspace import Workspace

ANCHORS = 3


def export_adapter(ws: Workspace, run_dir: Path, checkpoint: Path | None = None) -> Path:
    """Copy the newest (or given) checkpoint's adapter and anchors to ``voices/<speaker>/``."""
    from core.training.loop import newest_checkpoint
    from core.training.runs import RunConfig

    config = RunConfig.load(run_dir)
    checkpoint = checkpoint or newest_checkpoint(run_dir)
    if checkpoint is None or not (checkpoint / "adapter" / "adapter_config.json").is_file():
        raise TrainingError(f"{run_dir.name}: no checkpoint to export yet; train for a while first")
    anchors = _anchors(ws, config.speaker)
    target = ws.voices_dir / config.speaker
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{config.speaker}.", dir=ws.voices_dir))
    try:
        shutil.copytree(checkpoint / "adapter", staging / "adapter")
        (staging / "anchors").mkdir()
        anchor_rows: list[dict[str, Any]] = []
        for n, (audio, text) in enumerate(anchors, 1):
            name = f"anchor-{n}.wav"
            shutil.copyfile(ws.root / audio, staging / "anchors" / name)
            anchor_rows.append({"file": f"anchors/{name}", "text": text})
        voice = {
            "speaker": config.speaker,
            "base_model": config.base_model,
            "run_id": config.run_id,
            "step": int(checkpoint.name.split("-")[1]),
            "exported_at": datetime.now(UTC).replace(microsecond=0),
            "lora_rank": config.training.lora_rank,
            "metrics": _last_metrics(run_dir),
            "anchors": anchor_rows,
        }
        (staging / "voice.toml").write_text(tomli_w.dumps(voice), encoding="utf-8")
        swap_in_folder(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def _anchors(ws: Workspace, speaker: str) -> list[tuple[str, str]]:
    with Catalog.open(ws.catalog_path) as catalog:
        accepted = catalog.segments(speaker=speaker, status="accepted")
    good = [s for s in accepted if s.text and not s.flags and 3.0 <= s.duration_sec <= 10.0]
    good = good or [s for s in accepted if s.text]
    good.sort(key=lambda s: (-(s.qc.snr_db or 0.0), s.audio))
    if not good:
        raise TrainingError(f"speaker {speaker!r} has no accepted segment to use as an anchor")
    return [(s.audio, s.text) for s in good[:ANCHORS]]


def _last_metrics(run_dir: Path) -> dict[str, float]:
    out: dict[str, float] = {}
    for event in read_metrics(run_dir):
        if event.get("event") == "step" and isinstance(event.get("loss"), int | float):
            out["loss"] = float(event["loss"])
        if event.get("event") == "eval" and isinstance(event.get("eval_loss"), int | float):
            out["eval_loss"] = float(event["eval_loss"])
    return out
