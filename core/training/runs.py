"""Training runs: create a run folder, start its worker detached, stop it, list runs.

A run lives in ``runs/<id>/``: ``config.toml`` (its settings, copied from the workspace's
``[training]`` and ``[models]`` when it starts), ``status.json``, ``metrics.jsonl``,
``worker.log`` and ``checkpoints/``. The worker is its own process in its own session
(``start_new_session``), so closing the app or losing the SSH connection does not stop it.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess  # nosec B404  # the worker only: fixed argv, no shell
import sys
import tomllib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import tomli_w

from core.atomic import atomic_write_text
from core.catalog import Catalog
from core.errors import TrainingError
from core.progress import now_iso
from core.records import Run
from core.settings import Training
from core.training.protocol import (
    CONFIG_NAME,
    LOG_NAME,
    Status,
    effective_status,
    pid_alive,
    read_status,
    write_status,
)
from core.workspace import Workspace


@dataclass(frozen=True)
class RunConfig:
    """Everything a worker needs, as stored in ``runs/<id>/config.toml``."""

    run_id: str
    speaker: str
    base_model: str
    device: str
    training: Training
    resume_from: str | None = None

    def to_toml(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        return {k: v for k, v in data.items() if v is not None}

    @classmethod
    def load(cls, run_dir: Path) -> RunConfig:
        path = run_dir / CONFIG_NAME
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
            training = Training(**data.pop("training"))
            return cls(training=training, **data)
        except (OSError, ValueError, TypeError, KeyError) as exc:
            raise TrainingError(f"{path}: unreadable run configuration ({exc})") from None


def new_run_id(speaker: str) -> str:
    return f"{datetime.now(UTC):%Y%m%d-%H%M%S}-{speaker}"


def run_settings(
    ws: Workspace,
    *,
    steps: int | None = None,
    rank: int | None = None,
    learning_rate: float | None = None,
) -> Training:
    """The workspace's ``[training]`` with a new run's overrides (alpha = 2 x rank)."""
    changes: dict[str, Any] = {}
    if steps is not None:
        changes["max_steps"] = steps
    if rank is not None:
        changes["lora_rank"] = rank
        changes["lora_alpha"] = 2 * rank
    if learning_rate is not None:
        changes["learning_rate"] = learning_rate
    return dataclasses.replace(ws.settings.training, **changes)


def warmup_warning(training: Training) -> str | None:
    """One line when every step of the run lies inside the learning-rate warm-up."""
    if training.warmup_steps <= 0 or training.max_steps > training.warmup_steps:
        return None
    return (
        f"all {training.max_steps} step(s) lie inside the {training.warmup_steps}-step warm-up: "
        f"the learning rate only climbs towards training.learning_rate "
        f"({training.learning_rate:g}) and never decays; train for more than "
        f"{training.warmup_steps} steps or lower training.warmup_steps in workspace.toml"
    )


def cuda_problem() -> str | None:
    """``None`` when PyTorch sees a CUDA GPU, else why not, naming the driver found and the
    one PyTorch's CUDA needs (:func:`core.models.cuda_info.cuda_unavailable_reason`)."""
    import warnings

    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's "driver too old" warning: said by us
        if torch.cuda.is_available():
            return None
    from core.models.cuda_info import cuda_unavailable_reason, driver_version

    driver, _ = driver_version()
    return cuda_unavailable_reason(str(torch.__version__), torch.version.cuda, driver)


def require_device(device: str) -> None:
    """Refuse CUDA asked for and absent with one line naming the driver found and needed."""
    if not device.startswith("cuda"):
        return
    reason = cuda_problem()
    if reason is not None:
        raise TrainingError(
            f'CUDA was asked for (models.device = "{device}") but PyTorch sees no GPU: '
            f'{reason}; or set models.device in workspace.toml to "auto" or "cpu"'
        )


def preflight(
    ws: Workspace, speaker: str, training: Training, base_model: str, device: str
) -> list[str]:
    """What can be checked before a worker starts; raises one clear line, returns warnings.

    Consent (and the spoken consent clip, when recorded, against the speaker's accepted
    segments), at least two accepted and transcribed segments of ``speaker``, the base model
    present (the tiny one, a local folder, or a hub id in the cache; a hub id that is not is
    only a warning while downloads are allowed), CUDA when ``device`` asks for it, and
    whether the run ends inside its warm-up. Nothing is created or downloaded.
    """
    from core.doctor import model_check, model_presence
    from core.errors import ModelError
    from core.models.hub import hub_offline
    from core.training.data import speaker_examples
    from core.voices.spoken import check_spoken_consent

    ws.require_consent(speaker)  # ConsentError says how to record it
    data = speaker_examples(ws, speaker, training.seed, training.max_clip_sec)  # or no data
    check_spoken_consent(ws, speaker)  # the clip, when there is one, sounds like the speaker
    warnings: list[str] = list(data.warnings)  # a split far from 80/10/10
    presence = model_presence("tts", base_model)
    if not presence.present:
        if presence.downloadable and not hub_offline():
            warnings.append(
                f"TTS model {base_model!r} is {presence.detail}: the worker will download it "
                "(network needed)"
            )
        else:
            check = model_check(presence)
            raise ModelError(f"{check.item}: {check.detail}; {check.fix}")
    require_device(device)
    if device == "auto":
        from core.models.cuda_info import driver_version

        driver, _ = driver_version()
        reason = cuda_problem() if driver is not None else None  # a GPU here, unusable?
        if reason is not None:
            warnings.append(f"training will run on the CPU: {reason}")
    warmup = warmup_warning(training)
    if warmup:
        warnings.append(warmup)
    return warnings


def create_run(
    ws: Workspace,
    speaker: str,
    *,
    steps: int | None = None,
    rank: int | None = None,
    learning_rate: float | None = None,
    run_id: str | None = None,
) -> Path:
    """Make ``runs/<id>/`` with its config and a ``starting`` status; refuses no consent.

    It checks nothing else: call :func:`preflight` first for the one-line refusals.
    """
    ws.require_consent(speaker)  # ConsentError says how to record it
    training = run_settings(ws, steps=steps, rank=rank, learning_rate=learning_rate)
    run_id = run_id or new_run_id(speaker)
    run_dir = ws.runs_dir / run_id
    if run_dir.exists():
        raise TrainingError(f"{run_dir}: a run with this id exists already")
    (run_dir / "checkpoints").mkdir(parents=True)
    config = RunConfig(
        run_id=run_id,
        speaker=speaker,
        base_model=ws.settings.models.tts,
        device=ws.settings.models.device,
        training=training,
    )
    atomic_write_text(run_dir / CONFIG_NAME, tomli_w.dumps(config.to_toml()))
    stamp = now_iso()
    write_status(
        run_dir,
        Status(state="starting", pid=None, step=0, max_steps=training.max_steps,
               started_at=stamp, updated_at=stamp, speaker=speaker),
    )  # fmt: skip
    with Catalog.open(ws.catalog_path) as catalog:
        catalog.add_run(Run(id=run_id, speaker=speaker, path=f"runs/{run_id}"))
    return run_dir


def launch_worker(ws: Workspace, run_dir: Path) -> int:
    """Start the worker for ``run_dir`` detached from this terminal; returns its pid."""
    log = (run_dir / LOG_NAME).open("ab")
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(  # nosec B603  # sys.executable, fixed argv, no shell
        [sys.executable, "-m", "core.training.worker", str(ws.root), str(run_dir)],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # survives the app, the terminal and the SSH session
        close_fds=True,
        env=env,
    )
    log.close()
    return proc.pid


def stop_run(run_dir: Path) -> Status:
    """Ask a running worker to stop: SIGTERM, it saves a checkpoint and says ``stopped``."""
    status = effective_status(run_dir)
    if not status.live or not pid_alive(status.pid):
        raise TrainingError(f"{run_dir.name}: not running (state {status.state})")
    assert status.pid is not None  # nosec B101  # narrowing: a live run has a pid
    os.kill(status.pid, signal.SIGTERM)
    return status


def resume_run(ws: Workspace, run_id: str) -> Path:
    """Make a stopped or failed run resumable from its newest checkpoint and start it again."""
    run_dir = ws.runs_dir / run_id
    if not run_dir.is_dir():
        raise TrainingError(f"{run_dir}: no such run; list runs in the app's training screen")
    status = effective_status(run_dir)
    if status.live:
        raise TrainingError(f"{run_id}: still running (pid {status.pid}); stop it first")
    if status.state == "finished":
        raise TrainingError(f"{run_id}: already finished; start a new run to train longer")
    ws.require_consent(status.speaker or RunConfig.load(run_dir).speaker)
    stamp = now_iso()
    write_status(run_dir, dataclasses.replace(read_status(run_dir), state="starting", pid=None,
                                              error=None, updated_at=stamp))  # fmt: skip
    return run_dir


def list_runs(ws: Workspace) -> list[tuple[str, Status]]:
    """Every run folder with its effective status, newest first."""
    runs = [p for p in ws.runs_dir.iterdir() if (p / CONFIG_NAME).is_file()]
    return [(p.name, effective_status(p)) for p in sorted(runs, reverse=True)]
