"""The LoRA training loop (own PyTorch loop), run inside the worker process.

One optimizer step = ``grad_accum`` micro-batches of ``batch_size`` conversations. The
micro-batches of a step are a pure function of (seed, step) (:func:`batch_for_step`) and
building their inputs never touches the random state, so a run resumed from a checkpoint
(adapter, optimizer, scheduler and every RNG state) computes exactly the steps an
uninterrupted run would. Learning rate: linear warm-up, then cosine decay to 10 %.
Mixed precision: bf16 autocast on CUDA when ``training.bf16``. Checkpoints are
:mod:`core.training.checkpoints`; a finished run is exported (:mod:`core.training.export`).
Metrics follow the worker protocol of docs/TRAINING.md (``step``, ``eval``, ``checkpoint``
events).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from core.training.checkpoints import load_checkpoint, newest_checkpoint, save_checkpoint
from core.training.data import (
    CodeCache,
    Example,
    SpeakerData,
    batch_for_step,
    epoch_of,
    speaker_examples,
    write_split_record,
)
from core.training.export import export_adapter
from core.training.protocol import MetricsWriter, State, update_status
from core.training.runs import RunConfig, require_device, warmup_warning
from core.workspace import Workspace

log = logging.getLogger("podforge.worker")

EVAL_EXAMPLES = 16
GRAD_CLIP = 1.0


def train(
    ws: Workspace, run_dir: Path, config: RunConfig, should_stop: Callable[[], bool]
) -> State:
    """Train until ``max_steps`` (``finished``) or until asked to stop (``stopped``)."""
    import torch

    from core.models import csm

    t = config.training
    warmup = warmup_warning(t)
    if warmup:
        log.warning("%s", warmup)
    data = speaker_examples(ws, config.speaker, t.seed, t.max_clip_sec)
    write_split_record(run_dir, config.speaker, data)  # the ids trained and validated on
    for line in data.warnings:
        log.warning("%s", line)
    require_device(config.device)  # names the NVIDIA driver found and the one needed
    bundle = csm.load_csm(config.base_model, device=config.device)
    cache = CodeCache(ws, f"{config.base_model}:{bundle.path}")
    built: dict[tuple[int | None, int | None], dict[str, Any]] = {}

    def encode(audio: npt.NDArray[np.float32]) -> npt.NDArray[np.int64]:
        codes: npt.NDArray[np.int64] = csm.encode_audio(bundle, audio).numpy()
        return codes

    def inputs_for(ex: Example) -> dict[str, Any]:
        key = (ex.target.id, ex.context.id if ex.context else None)
        if key not in built:
            with torch.random.fork_rng(devices=[]):  # never moves the training RNG
                context = [(ex.context.text, cache.codes(ex.context, encode))] if ex.context else []
                built[key] = csm.training_inputs(
                    bundle, context, ex.target.text, cache.codes(ex.target, encode),
                    depth_decoder_ratio=t.depth_decoder_ratio, seed=t.seed + (ex.target.id or 0),
                )  # fmt: skip
            if len(built) > 512:  # bounded memory on long datasets
                built.pop(next(iter(built)))
        return built[key]

    log.info(
        "speaker %s: %d training and %d validation conversations%s; model %s on %s",
        config.speaker, len(data.train), len(data.val), f" ({data.note})" if data.note else "",
        config.base_model, bundle.device,
    )  # fmt: skip
    torch.manual_seed(t.seed)
    model = csm.prepare_for_training(
        bundle, csm.lora_config(t.lora_rank, t.lora_alpha, t.lora_dropout),
        gradient_checkpointing=t.gradient_checkpointing,
    )  # fmt: skip
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=t.learning_rate, weight_decay=0.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: _lr_factor(s, t.warmup_steps, t.max_steps)
    )
    step = 0
    newest = newest_checkpoint(run_dir)
    if newest is not None:
        step = load_checkpoint(newest, model, optimizer, scheduler)
        log.info("resumed from %s at step %d", newest.name, step)
    cuda = bundle.device.startswith("cuda")
    autocast = (
        torch.autocast("cuda", dtype=torch.bfloat16)
        if cuda and t.bf16
        else contextlib.nullcontext()
    )
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    n = len(data.train)
    probe: list[Any] = []  # the QualityProbe, loaded at the first quality eval
    metrics = MetricsWriter(run_dir)
    update_status(run_dir, state="running", step=step, max_steps=t.max_steps)
    try:
        while step < t.max_steps:
            if should_stop():
                update_status(run_dir, state="stopping")
                save_checkpoint(run_dir, model, optimizer, scheduler, step, metrics)
                log.info("stopped at step %d (checkpoint saved)", step)
                return "stopped"
            started = time.perf_counter()
            optimizer.zero_grad(set_to_none=True)
            total = 0.0
            for micro in range(t.grad_accum):
                batch = batch_for_step(
                    data.train, step * t.grad_accum + micro, t.batch_size, t.seed
                )
                inputs = csm.collate_training_inputs([inputs_for(ex) for ex in batch])
                with autocast:
                    loss = model(**inputs).loss / t.grad_accum
                loss.backward()
                total += float(loss.detach())
            grad_norm = float(torch.nn.utils.clip_grad_norm_(params, GRAD_CLIP))
            optimizer.step()
            scheduler.step()
            step += 1
            elapsed = time.perf_counter() - started
            metrics.write(
                "step", step=step, epoch=round(epoch_of(step * t.grad_accum, t.batch_size, n), 3),
                loss=round(total, 6), lr=scheduler.get_last_lr()[0], grad_norm=round(grad_norm, 6),
                samples_per_s=round(t.batch_size * t.grad_accum / elapsed, 3),
                **memory_fields(bundle.device),
            )  # fmt: skip
            update_status(run_dir, state="running", step=step)
            log.info("step %d/%d loss %.4f lr %.2e %.1f s", step, t.max_steps, total,
                     scheduler.get_last_lr()[0], elapsed)  # fmt: skip
            quality_due = bool(t.eval_quality_every) and (
                step % t.eval_quality_every == 0 or step == t.max_steps
            )
            if step % t.eval_every == 0 or step == t.max_steps or quality_due:
                eval_loss = evaluate(model, data, inputs_for, autocast)
                extra = _quality(ws, config, bundle, cache, data, probe) if quality_due else {}
                metrics.write("eval", step=step, eval_loss=round(eval_loss, 6), **extra)
                log.info("step %d eval loss %.4f %s", step, eval_loss, extra or "")
            if step % t.save_every == 0 or step == t.max_steps:
                save_checkpoint(run_dir, model, optimizer, scheduler, step, metrics)
    finally:
        metrics.close()
    voice = export_adapter(ws, run_dir)
    log.info("voice exported to %s", voice)
    return "finished"


def _quality(
    ws: Workspace,
    config: RunConfig,
    bundle: Any,
    cache: CodeCache,
    data: SpeakerData,
    probe: list[Any],
) -> dict[str, float]:
    """WER and similarity of freshly synthesised validation texts; {} if models are missing."""
    import torch

    from core.errors import PodforgeError
    from core.training.quality import QualityProbe

    t = config.training
    threads = torch.get_num_threads()  # CTranslate2 may change the shared OpenMP pool
    try:
        if not probe:
            with torch.random.fork_rng(devices=[]):  # model construction draws random inits
                probe.append(QualityProbe(ws, config.speaker, bundle, cache))
        if probe[0] is None:
            return {}
        result: dict[str, float] = probe[0].measure(data.val[: t.eval_texts], seed=t.seed)
        return result
    except PodforgeError as exc:  # e.g. models.asr not available: train on, say so once
        log.warning("quality evaluation disabled: %s", exc)
        probe[:] = [None]
        return {}
    finally:
        torch.set_num_threads(threads)


def evaluate(
    model: Any, data: SpeakerData, inputs_for: Callable[[Example], dict[str, Any]], autocast: Any
) -> float:
    """Mean loss over (up to 16) validation conversations, without dropout or gradients."""
    import torch

    from core.models import csm

    examples = data.val[:EVAL_EXAMPLES]
    model.eval()
    losses = []
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        for ex in examples:
            with autocast:
                losses.append(float(model(**csm.collate_training_inputs([inputs_for(ex)])).loss))
    model.train()
    return sum(losses) / max(1, len(losses))


def _lr_factor(step: int, warmup: int, total: int) -> float:
    if warmup and step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def memory_fields(device: str) -> dict[str, float | None]:
    """VRAM (allocated, reserved, peak, GPU total) on CUDA; RSS on CPU (docs/TRAINING.md)."""
    import torch

    if device.startswith("cuda"):
        mb = 1024 * 1024
        return {
            "vram_allocated_mb": round(torch.cuda.memory_allocated() / mb, 1),
            "vram_reserved_mb": round(torch.cuda.memory_reserved() / mb, 1),
            "vram_peak_mb": round(torch.cuda.max_memory_allocated() / mb, 1),
            "gpu_total_mb": _gpu_total_mb(),
            "rss_mb": _rss_mb(),
        }
    return {
        "vram_allocated_mb": None, "vram_reserved_mb": None, "vram_peak_mb": None,
        "gpu_total_mb": None, "rss_mb": _rss_mb(),
    }  # fmt: skip


def _gpu_total_mb() -> float | None:
    try:
        import pynvml

        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(0)
        total = float(pynvml.nvmlDeviceGetMemoryInfo(handle).total)
        return round(total / (1024 * 1024), 1)
    except Exception:  # NVML missing or not permitted: fall back to torch's figure
        import torch

        return round(torch.cuda.get_device_properties(0).total_memory / (1024 * 1024), 1)


def _rss_mb() -> float:
    with open("/proc/self/statm", encoding="ascii") as fh:
        pages = int(fh.read().split()[1])
    return round(pages * os.sysconf("SC_PAGE_SIZE") / (1024 * 1024), 1)
