"""Export a run's adapter as the speaker's voice: ``voices/<speaker>/``.

``adapter/`` is the checkpoint's peft adapter as ``save_pretrained`` wrote it (any peft user
loads it with ``PeftModel.from_pretrained(base, path)``); ``anchors/`` holds 2-3 reference
clips (the best-QC accepted segments of 3-10 s) whose transcripts go into ``voice.toml``
with the base model, run, step and last metrics. The folder is built beside the old one and
swapped in (:func:`core.atomic.swap_in_folder`, marked ``voice``), so a reader never sees half
a voice; the old voice's ``eval/`` reports are carried over. An existing ``voices/<speaker>/``
that podforge did not make (no marker, and not :func:`is_unmarked_voice`) is refused, never
replaced; so is a run whose configured speaker is not a valid speaker name.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import tomllib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import tomli_w

from core.atomic import check_swap_target, swap_in_folder
from core.catalog import Catalog
from core.errors import TrainingError
from core.settings import SPEAKER_NAME
from core.training.protocol import read_metrics
from core.workspace import Workspace

ANCHORS = 3
VOICE_KIND = "voice"


def export_adapter(ws: Workspace, run_dir: Path, checkpoint: Path | None = None) -> Path:
    """Copy the newest (or given) checkpoint's adapter and anchors to ``voices/<speaker>/``."""
    from core.training.loop import newest_checkpoint
    from core.training.runs import RunConfig

    config = RunConfig.load(run_dir)
    checkpoint = checkpoint or newest_checkpoint(run_dir)
    if checkpoint is None or not (checkpoint / "adapter" / "adapter_config.json").is_file():
        raise TrainingError(f"{run_dir.name}: no checkpoint to export yet; train for a while first")
    if not SPEAKER_NAME.match(config.speaker):
        raise TrainingError(
            f"{run_dir / 'config.toml'}: speaker {config.speaker!r} is not a valid speaker name; "
            "fix the run's configuration"
        )
    target = ws.voices_dir / config.speaker
    target.parent.mkdir(parents=True, exist_ok=True)
    check_swap_target(target, kind=VOICE_KIND, parent=ws.voices_dir, adopt=is_unmarked_voice)
    anchors = _anchors(ws, config.speaker)
    staging = Path(tempfile.mkdtemp(prefix=f".{config.speaker}.", dir=ws.voices_dir))
    try:
        if (target / "eval").is_dir():  # the voice's evaluation history stays with it
            shutil.copytree(target / "eval", staging / "eval", copy_function=_link_or_copy)
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
        swap_in_folder(
            staging, target, kind=VOICE_KIND, parent=ws.voices_dir, adopt=is_unmarked_voice
        )
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def is_unmarked_voice(folder: Path) -> bool:
    """True for a ``voices/<speaker>/`` that podforge wrote before it marked its folders: only
    evaluation reports (``eval/*.json``, e.g. of the draft voice), or an exported voice's exact
    layout (``adapter/``, ``anchors/``, ``voice.toml`` naming its run, ``eval/``)."""
    try:
        names = {p.name for p in folder.iterdir()}
    except OSError:
        return False
    if "eval" in names and not _only_reports(folder / "eval"):
        return False
    if names <= {"eval"}:
        return True
    if names - {"eval"} != {"adapter", "anchors", "voice.toml"}:
        return False
    try:
        meta = tomllib.loads((folder / "voice.toml").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return False
    return {"run_id", "exported_at", "base_model"} <= meta.keys()


def _only_reports(folder: Path) -> bool:
    try:
        return folder.is_dir() and all(
            p.is_file() and p.suffix == ".json" for p in folder.iterdir()
        )
    except OSError:
        return False


def _link_or_copy(source: str, target: str) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


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
