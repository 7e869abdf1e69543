"""Training end to end with the tiny CSM in real worker processes."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.dataset.ingest import accept_passing
from core.errors import ConsentError
from core.training.protocol import effective_status, read_metrics, read_status
from core.training.runs import create_run, launch_worker, resume_run
from core.workspace import Workspace

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def trainable(own_cache: Path, demo_copy: Workspace) -> Workspace:
    """The demo with its clean segments accepted and quick training settings."""
    ws = demo_copy
    accept_passing(ws)
    ws.settings.training = dataclasses.replace(
        ws.settings.training, grad_accum=1, batch_size=2, learning_rate=5e-3, warmup_steps=1,
        eval_every=4, save_every=4, max_steps=12,
    )  # fmt: skip
    ws.save()
    return ws


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def _wait(run_dir: Path, done: object, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if done():  # type: ignore[operator]
            return
        time.sleep(0.1)
    log = (run_dir / "worker.log").read_text() if (run_dir / "worker.log").exists() else ""
    raise AssertionError(f"timed out; status {read_status(run_dir)}; log tail {log[-1500:]}")


def _losses(run_dir: Path) -> dict[int, float]:
    return {e["step"]: e["loss"] for e in read_metrics(run_dir) if e["event"] == "step"}


def test_detached_worker_trains_and_exports_a_loadable_adapter(trainable: Workspace) -> None:
    out = subprocess.run(
        [str(Path(sys.executable).with_name("podforge")), "train", str(trainable.root),
         "--speaker", "alice"], capture_output=True, text=True, env=_env(), timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    run_dir = trainable.runs_dir / out.stdout.strip()
    _wait(run_dir, lambda: read_status(run_dir).state in ("finished", "failed"))
    status = read_status(run_dir)
    assert status.state == "finished" and status.step == 12, status
    losses = _losses(run_dir)
    assert sorted(losses) == list(range(1, 13))
    assert losses[12] < losses[1]
    events = read_metrics(run_dir)
    assert [e["step"] for e in events if e["event"] == "eval"] == [4, 8, 12]
    assert [e["path"] for e in events if e["event"] == "checkpoint"] == [
        "checkpoints/step-4", "checkpoints/step-8", "checkpoints/step-12",
    ]  # fmt: skip
    step = next(e for e in events if e["event"] == "step")
    assert step["vram_allocated_mb"] is None and step["rss_mb"] > 0  # CPU: RSS, no VRAM
    voice = trainable.voices_dir / "alice"
    assert len(list((voice / "anchors").glob("*.wav"))) >= 2
    import tomllib

    meta = tomllib.loads((voice / "voice.toml").read_text())
    assert meta["step"] == 12 and meta["base_model"] == "tiny" and meta["anchors"][0]["text"]
    from core.voices.consent import consent_record
    from core.voices.folder import VoiceFolder, trained_voice

    consent = trainable.speaker("alice").consent
    assert consent is not None and meta["consent"] == consent_record("alice", consent)
    assert trained_voice(trainable, "alice") == VoiceFolder(voice)  # the export is usable

    from peft import PeftModel

    from core.models.csm import load_csm

    bundle = load_csm("tiny")
    model = PeftModel.from_pretrained(bundle.model, str(voice / "adapter"))
    names = [n for n, _ in model.named_parameters() if "lora_" in n]
    assert names and not any("codec_model" in n for n in names)


def test_sigterm_stops_with_a_checkpoint_and_resume_matches_an_uninterrupted_run(
    trainable: Workspace,
) -> None:
    whole = create_run(trainable, "alice", steps=10)
    subprocess.run([sys.executable, "-m", "core.training.worker", str(trainable.root), str(whole)],
                   env=_env(), check=True, timeout=300, capture_output=True)  # fmt: skip
    expected = _losses(whole)

    run_dir = create_run(trainable, "alice", steps=10)
    launch_worker(trainable, run_dir)
    _wait(run_dir, lambda: read_status(run_dir).step >= 3)
    pid = read_status(run_dir).pid
    assert pid is not None
    os.kill(pid, signal.SIGTERM)
    _wait(run_dir, lambda: read_status(run_dir).state in ("stopped", "finished", "failed"))
    stopped = read_status(run_dir)
    assert stopped.state == "stopped", stopped
    assert (run_dir / "checkpoints" / f"step-{stopped.step}" / "state.pt").is_file()
    assert stopped.step < 10

    resume_run(trainable, run_dir.name)
    worker = [sys.executable, "-m", "core.training.worker", str(trainable.root), str(run_dir)]
    subprocess.run(worker, env=_env(), check=True, timeout=300, capture_output=True)
    assert read_status(run_dir).state == "finished"
    resumed = _losses(run_dir)
    for step in range(1, 11):
        assert resumed[step] == pytest.approx(expected[step], rel=1e-6, abs=1e-7), step


def test_sigkill_shows_failed(trainable: Workspace) -> None:
    run_dir = create_run(trainable, "alice", steps=1000)
    launch_worker(trainable, run_dir)
    _wait(run_dir, lambda: read_status(run_dir).step >= 1)
    os.kill(read_status(run_dir).pid or 0, signal.SIGKILL)
    _wait(run_dir, lambda: effective_status(run_dir).state == "failed", timeout=10)
    assert "stopped without saying why" in (effective_status(run_dir).error or "")


def test_no_consent_no_training(workspace: Workspace) -> None:
    with pytest.raises(ConsentError, match="podforge speaker add"):
        create_run(workspace, "carol")
    assert list(workspace.runs_dir.iterdir()) == []


def test_cuda_asked_and_absent_is_a_clear_failure(trainable: Workspace) -> None:
    trainable.settings.models.device = "cuda"
    trainable.save()
    run_dir = create_run(trainable, "alice", steps=2)
    result = subprocess.run(
        [sys.executable, "-m", "core.training.worker", str(trainable.root), str(run_dir)],
        env=_env(), timeout=300, capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 1
    status = read_status(run_dir)
    assert status.state == "failed" and "GPU" in (status.error or "")
    _assert_names_the_driver(status.error or "")


def _assert_names_the_driver(message: str) -> None:
    """The driver found (none on a machine without one) and the one torch's CUDA needs."""
    import torch

    from core.models.cuda_info import driver_needed, driver_version

    found, _ = driver_version()
    assert (found or "no NVIDIA driver found") in message, message
    need = driver_needed(torch.version.cuda or "")
    if need is not None:
        assert f">= {need.minimum}" in message, message


def _podforge(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("podforge")
    return subprocess.run([str(exe), *args], capture_output=True, text=True,
                          env=env or _env(), timeout=300)  # fmt: skip


def _runs(ws: Workspace) -> list[Path]:
    return [p for p in ws.runs_dir.iterdir() if not p.name.startswith(".")]


def test_train_checks_the_data_before_detaching(demo_copy: Workspace) -> None:
    result = _podforge("train", str(demo_copy.root), "--speaker", "alice")  # nothing accepted
    assert result.returncode == 1, result.stdout
    assert result.stderr.startswith("podforge: error: speaker 'alice' has 0 accepted segment")
    assert result.stderr.count("\n") == 1 and result.stdout == ""
    assert _runs(demo_copy) == []  # no run folder, no worker


def test_train_checks_the_model_before_detaching(trainable: Workspace, tmp_path: Path) -> None:
    trainable.settings.models.tts = "sesame/csm-1b"
    trainable.save()
    env = {**_env(), "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "empty-hub")}
    result = _podforge("train", str(trainable.root), "--speaker", "alice", env=env)
    assert result.returncode == 1
    assert "models.tts = 'sesame/csm-1b'" in result.stderr
    assert "not in the Hugging Face cache" in result.stderr
    assert "uv run hf download sesame/csm-1b" in result.stderr
    assert result.stderr.count("\n") == 1 and _runs(trainable) == []


@pytest.mark.slow
def test_train_checks_the_device_before_detaching(trainable: Workspace) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA is available here: the device check passes")
    trainable.settings.models.device = "cuda"
    trainable.save()
    result = _podforge("train", str(trainable.root), "--speaker", "alice")
    assert result.returncode == 1 and result.stderr.startswith("podforge: error: CUDA was asked")
    assert result.stderr.count("\n") == 1 and _runs(trainable) == []
    _assert_names_the_driver(result.stderr)


@pytest.mark.slow
def test_foreground_logs_warns_inside_warmup_and_says_where_the_voice_is(
    trainable: Workspace,
) -> None:
    trainable.settings.training = dataclasses.replace(trainable.settings.training, warmup_steps=5)
    trainable.save()
    result = _podforge("train", str(trainable.root), "--speaker", "alice", "--steps", "2",
                       "--foreground")  # fmt: skip
    assert result.returncode == 0, result.stderr
    warning = "all 2 step(s) lie inside the 5-step warm-up"
    assert f"podforge: warning: {warning}" in result.stderr
    (run_dir,) = _runs(trainable)
    log = (run_dir / "worker.log").read_text()
    assert warning in log and "step 2/2" in log and "voice exported to" in log
    voice = trainable.voices_dir / "alice"
    assert result.stdout.strip().splitlines()[-1].endswith(f"voice exported to {voice}")
    assert (voice / "voice.toml").is_file() and read_status(run_dir).state == "finished"


def test_quality_evals_log_wer_and_similarity_without_changing_training(
    trainable: Workspace,
) -> None:
    plain = create_run(trainable, "alice", steps=8)
    worker = [sys.executable, "-m", "core.training.worker", str(trainable.root)]
    subprocess.run([*worker, str(plain)], env=_env(), check=True, timeout=300, capture_output=True)
    trainable.settings.training = dataclasses.replace(
        trainable.settings.training, eval_quality_every=4, eval_texts=2
    )
    trainable.save()
    probed = create_run(trainable, "alice", steps=8)
    subprocess.run([*worker, str(probed)], env=_env(), check=True, timeout=300, capture_output=True)
    evals = [e for e in read_metrics(probed) if e["event"] == "eval"]
    quality = {e["step"]: e for e in evals if "wer" in e}
    assert sorted(quality) == [4, 8]
    for e in quality.values():
        assert e["wer"] >= 0.0 and -1.0 <= e["similarity"] <= 1.0
    assert _losses(probed) == _losses(plain)  # the probes never touch the training RNG


def test_depth_decoder_ratio_reaches_the_loss_and_stays_deterministic(
    trainable: Workspace,
) -> None:
    worker = [sys.executable, "-m", "core.training.worker", str(trainable.root)]

    def losses(ratio: float) -> dict[int, float]:
        trainable.settings.training = dataclasses.replace(
            trainable.settings.training, depth_decoder_ratio=ratio
        )
        trainable.save()
        run = create_run(trainable, "alice", steps=3)
        subprocess.run(
            [*worker, str(run)], env=_env(), check=True, timeout=300, capture_output=True
        )
        return _losses(run)

    full, share = losses(1.0), losses(0.25)
    assert sorted(full) == sorted(share) == [1, 2, 3]
    assert full[1] != share[1]  # the depth decoder's loss is taken on other frames
    assert losses(0.25) == share  # the frames are drawn from the run's seed
