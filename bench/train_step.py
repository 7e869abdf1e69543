"""One LoRA training step of the real-size CSM-1B: time and peak memory, by depth-decoder share.

The model is built from ``transformers.CsmConfig()`` with random weights
(:func:`core.models.tiny.csm.full_size_random_csm`: no download), wrapped for training the way
a run does it (:func:`core.models.csm.prepare_for_training`: LoRA on the attention and MLP
projections, gradient checkpointing), then one optimizer step of a batch of ``--batch``
two-turn conversations (an anchor turn and a target of ``--seconds`` of random codes) is timed
for each ``--ratios`` value of ``depth_decoder_ratio`` (the share of target frames whose depth
decoder loss is trained). Each ratio runs once untimed first. Prints seconds per step, the
peak resident memory of the process (CPU) or the peak reserved GPU memory, and each ratio's
time against the first ratio measured in the same run. On a CPU the memory figure is the
process's peak so far (model build included); on a GPU each ratio's own peak.

    uv run python bench/train_step.py [--rank 16] [--batch 2] [--seconds 10]
        [--ratios 1.0,0.0625] [--device auto] [--dtype auto] [--no-checkpointing] [--tiny]
"""

from __future__ import annotations

import argparse
import resource
import time
from typing import Any


def conversation_inputs(bundle: Any, seconds: float, ratio: float, seed: int) -> dict[str, Any]:
    """Training inputs for one two-turn conversation of random codes."""
    import torch

    from core.models import csm

    size = int(bundle.model.config.codec_config.codebook_size)
    generator = torch.Generator().manual_seed(seed)
    frames = max(1, round(seconds * bundle.frame_rate))
    anchor = torch.randint(0, size, (bundle.num_codebooks, frames // 2), generator=generator)
    target = torch.randint(0, size, (bundle.num_codebooks, frames), generator=generator)
    return csm.training_inputs(
        bundle,
        [("an anchor clip of the same speaker", anchor)],
        "the line this step learns to say, about ten seconds of speech in all",
        target,
        depth_decoder_ratio=ratio,
        seed=seed,
    )


def peak_memory_gb(device: str) -> float:
    import torch

    if device.startswith("cuda"):
        return float(torch.cuda.max_memory_reserved()) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--ratios", default="1.0,0.0625")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--no-checkpointing", action="store_true")
    parser.add_argument("--tiny", action="store_true", help="the tiny model: plumbing check")
    args = parser.parse_args()

    import torch

    from core.models import csm
    from core.models.tiny.csm import full_size_random_csm

    started = time.perf_counter()
    if args.tiny:
        bundle = csm.load_csm("tiny", device=args.device, dtype=args.dtype)
    else:
        bundle = full_size_random_csm(args.device, args.dtype)
    model = csm.prepare_for_training(
        bundle,
        csm.lora_config(args.rank, 2 * args.rank, 0.0),
        gradient_checkpointing=not args.no_checkpointing,
    )
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    print(
        f"model {bundle.model_id} ({bundle.dtype}, {bundle.device}, "
        f"{torch.get_num_threads()} threads), LoRA r={args.rank}, "
        f"{sum(p.numel() for p in params) / 1e6:.1f} M trainable, ready in "
        f"{time.perf_counter() - started:.1f} s; batch {args.batch} x {args.seconds:g} s, "
        f"checkpointing {'off' if args.no_checkpointing else 'on'}",
        flush=True,
    )
    autocast = (
        torch.autocast("cuda", dtype=torch.bfloat16)
        if bundle.device.startswith("cuda") and bundle.dtype == torch.float32
        else torch.autocast("cpu", enabled=False)
    )
    baseline: float | None = None
    for ratio in (float(r) for r in args.ratios.split(",")):
        if bundle.device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()  # each ratio's own peak
        batch = csm.collate_training_inputs(
            [conversation_inputs(bundle, args.seconds, ratio, seed) for seed in range(args.batch)]
        )
        times = []
        for _ in range(2):  # the first is untimed: allocations, kernel choices
            if bundle.device.startswith("cuda"):
                torch.cuda.synchronize()
            start = time.perf_counter()
            with autocast:
                loss = model(**batch).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if bundle.device.startswith("cuda"):
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
        step = times[-1]
        memory = "reserved VRAM" if bundle.device.startswith("cuda") else "process RSS"
        baseline = baseline or step
        print(
            f"depth_decoder_ratio {ratio:<7g} step {step:8.2f} s  "
            f"({baseline / step:.2f}x the speed of ratio {args.ratios.split(',')[0]}), "
            f"loss {float(loss.detach()):.3f}, "
            f"peak {memory} {peak_memory_gb(bundle.device):.2f} GB",
            flush=True,
        )


if __name__ == "__main__":
    main()
