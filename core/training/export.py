"""Export a run's adapter as the speaker's voice (:class:`core.voices.folder.VoiceFolder`).

``adapter/`` is the checkpoint's peft adapter as ``save_pretrained`` wrote it (any peft user
loads it with ``PeftModel.from_pretrained(base, path)``); ``anchors/`` holds up to 3 reference
clips chosen by the voice folder's anchor rule (:func:`core.voices.folder.voice_anchors`),
whose transcripts go into ``voice.toml`` with the base model, run, step and last metrics. The
folder is built beside the old one and swapped in (:func:`core.atomic.swap_in_folder`, marked
``voice``), so a reader never sees half a voice; the old voice's ``eval/`` reports are carried
over. An existing ``voices/<speaker>/`` that podforge did not make (no marker, and not
:func:`core.voices.folder.is_unmarked_voice`) is refused, never replaced; so is a run whose
configured speaker is not a valid speaker name.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from core.atomic import check_swap_target, swap_in_folder
from core.catalog import Catalog
from core.errors import TrainingError
from core.settings import SPEAKER_NAME
from core.training.checkpoints import ADAPTER, checkpoint_step, newest_checkpoint
from core.training.protocol import read_metrics
from core.training.runs import RunConfig
from core.voices.consent import bind_consent
from core.voices.folder import (
    ADAPTER_CONFIG,
    VoiceFolder,
    anchor_name,
    is_unmarked_voice,
    voice_anchors,
)
from core.workspace import Workspace

VOICE_KIND = "voice"


def export_adapter(ws: Workspace, run_dir: Path, checkpoint: Path | None = None) -> Path:
    """Copy the newest (or given) checkpoint's adapter and anchors to ``voices/<speaker>/``."""
    config = RunConfig.load(run_dir)
    checkpoint = checkpoint or newest_checkpoint(run_dir)
    if checkpoint is None or not (checkpoint / ADAPTER / ADAPTER_CONFIG).is_file():
        raise TrainingError(f"{run_dir.name}: no checkpoint to export yet; train for a while first")
    if not SPEAKER_NAME.match(config.speaker):
        raise TrainingError(
            f"{run_dir / 'config.toml'}: speaker {config.speaker!r} is not a valid speaker name; "
            "fix the run's configuration"
        )
    target = VoiceFolder.for_speaker(ws, config.speaker)
    target.root.parent.mkdir(parents=True, exist_ok=True)
    check_swap_target(target.root, kind=VOICE_KIND, parent=ws.voices_dir, adopt=is_unmarked_voice)
    anchors = _anchors(ws, config.speaker)
    staging = VoiceFolder(Path(tempfile.mkdtemp(prefix=f".{config.speaker}.", dir=ws.voices_dir)))
    try:
        if target.eval.is_dir():  # the voice's evaluation history stays with it
            shutil.copytree(target.eval, staging.eval, copy_function=_link_or_copy)
        shutil.copytree(checkpoint / ADAPTER, staging.adapter)
        staging.anchors.mkdir()
        anchor_rows: list[dict[str, Any]] = []
        for n, (audio, text) in enumerate(anchors, 1):
            name = anchor_name(n)
            shutil.copyfile(ws.root / audio, staging.root / name)
            anchor_rows.append({"file": name, "text": text})
        staging.write_meta(
            {
                "speaker": config.speaker,
                "base_model": config.base_model,
                "run_id": config.run_id,
                "step": checkpoint_step(checkpoint),
                "exported_at": datetime.now(UTC).replace(microsecond=0),
                "lora_rank": config.training.lora_rank,
                "metrics": _last_metrics(run_dir),
                "anchors": anchor_rows,
            }
        )
        bind_consent(ws, config.speaker, staging)  # voice.toml [consent] + adapter metadata
        swap_in_folder(
            staging.root, target.root, kind=VOICE_KIND, parent=ws.voices_dir,
            adopt=is_unmarked_voice,
        )  # fmt: skip
    except BaseException:
        shutil.rmtree(staging.root, ignore_errors=True)
        raise
    return target.root


def _link_or_copy(source: str, target: str) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def _anchors(ws: Workspace, speaker: str) -> list[tuple[str, str]]:
    with Catalog.open(ws.catalog_path) as catalog:
        accepted = catalog.segments(speaker=speaker, status="accepted")
    chosen = voice_anchors(accepted)
    if not chosen:
        raise TrainingError(f"speaker {speaker!r} has no accepted segment to use as an anchor")
    return [(s.audio, s.text) for s in chosen]


def _last_metrics(run_dir: Path) -> dict[str, float]:
    out: dict[str, float] = {}
    for event in read_metrics(run_dir):
        if event.get("event") == "step" and isinstance(event.get("loss"), int | float):
            out["loss"] = float(event["loss"])
        if event.get("event") == "eval" and isinstance(event.get("eval_loss"), int | float):
            out["eval_loss"] = float(event["eval_loss"])
    return out
