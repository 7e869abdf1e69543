"""Frames a second and real-time factor of CSM synthesis: stock ``generate`` against our engine.

In one run: the stock path (``core.models.csm.generate_codes``, one line, and the stock
``generate`` on the largest batch, left-padded), then ``core.models.csm_engine.generate_batch``
for one line and batches of 4 and 8 (static KV cache), and the largest batch again with a
dynamic cache, then with LoRA adapters (rank 16): all rows one adapter, and two adapters
mixed (peft's per-row hooks); with ``--compiled`` also the compiled engine
(``mode="compiled"``, one line and the largest batch) and a teacher-forced check of its
logits against the eager ones. Every line has an anchor turn
of codes as context, as a render gives it. Prints frames/s (all lines of a batch together),
the RTF (seconds of compute per second of audio; 12.5 frames are one second) and the ratio
of frames/s to the stock single line. Each path is warmed up once first, then timed
``--repeats`` times (the fastest counts: the machine is shared).

By default the tiny model (fast, overhead-bound). ``--full`` builds the real-size model from
``transformers.CsmConfig()`` with random weights (no download): its special-token ids are
set to those of the tiny model's tokenizer (the real ones, 128000-128003, exist only in the
real tokenizer), which changes no computation; about 6 GB in fp32 and minutes on a CPU.

    uv run python bench/synthesis.py [--full] [--frames N] [--repeats N] [--device auto]
        [--compiled]
"""

from __future__ import annotations

import argparse
import time
from typing import Any

FRAME_RATE = 12.5
LOGIT_TOLERANCE = 0.02
"""Compiled and eager logits may differ by 2 % of the largest logit: bfloat16 keeps 8 bits
of mantissa (0.4 %), and fused kernels round at other points than eager ones."""
TEXTS = (
    "welcome back to the show",
    "thanks for being here",
    "today we talk about voices, recording and microphones",
    "it is really good to have you on the podcast again",
    "the quick brown fox jumps over the lazy dog",
    "ask not what your country can do for you",
    "hello and welcome",
    "this is the episode where we clone a voice, one line at a time",
)


def conversations(bundle: Any, count: int, anchor_frames: int) -> list[Any]:
    """``count`` lines, each after an anchor turn of ``anchor_frames`` random codes."""
    import torch

    from core.models import csm

    size = int(bundle.model.config.codec_config.codebook_size)
    generator = torch.Generator().manual_seed(1)
    anchor = torch.randint(0, size, (bundle.num_codebooks, anchor_frames), generator=generator)
    return [
        csm.build_conversation([("hello there, and welcome", anchor)], TEXTS[i % len(TEXTS)])
        for i in range(count)
    ]


def stock_batch(bundle: Any, lines: list[Any], count: int) -> list[Any]:
    """The stock ``generate`` on the lines left-padded into one batch (torch's global RNG)."""
    import torch

    from core.models import csm

    prompts = [csm._assemble(bundle, line, reserve=count)["inputs_embeds"][0] for line in lines]
    longest = max(int(prompt.shape[0]) for prompt in prompts)
    embeds = prompts[0].new_zeros((len(prompts), longest, prompts[0].shape[-1]))
    mask = torch.zeros((len(prompts), longest), dtype=torch.long, device=embeds.device)
    for index, prompt in enumerate(prompts):
        embeds[index, longest - prompt.shape[0] :] = prompt
        mask[index, longest - prompt.shape[0] :] = 1
    sampling = {"do_sample": True, "temperature": 0.9, "top_k": 50}
    depth = {f"depth_decoder_{key}": value for key, value in sampling.items()}
    with torch.no_grad():
        output = csm._csm(bundle.model).generate(
            inputs_embeds=embeds, attention_mask=mask, max_new_tokens=count, **sampling, **depth
        )
    return list(output.transpose(1, 2))  # (codebooks, frames) a row, not cut at an end


def add_adapters(bundle: Any) -> None:
    """Two LoRA adapters, ``alice`` (active) and ``bob``, on the bundle's model."""
    import warnings

    import peft
    import torch

    from core.models import csm

    with warnings.catch_warnings(), torch.random.fork_rng(devices=[]):
        warnings.simplefilter("ignore")
        torch.manual_seed(0)
        model = peft.get_peft_model(bundle.model, csm.lora_config(16, 32, 0.0), "alice")
        model.add_adapter("bob", csm.lora_config(16, 32, 0.0))
    model.set_adapter("alice")
    model.eval()


def timed(run: Any) -> tuple[float, int]:
    start = time.perf_counter()
    codes = run()
    return time.perf_counter() - start, sum(int(c.shape[1]) for c in codes)


def main() -> None:
    from core.models.tiny.csm import full_size_random_csm

    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--full", action="store_true", help="the real-size model, random weights")
    parser.add_argument("--frames", type=int, help="frames a line (tiny: 40, full: 24)")
    parser.add_argument("--repeats", type=int, help="timed runs of each (tiny: 5, full: 1)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--batches", default="4,8", help="batch sizes of the engine")
    parser.add_argument(
        "--compiled", action="store_true", help="also the compiled engine (minutes to compile)"
    )
    args = parser.parse_args()

    import torch

    from core.models import csm
    from core.models.csm_engine import CacheKind, EngineRow, generate_batch

    frames = args.frames or (24 if args.full else 40)
    repeats = args.repeats or (1 if args.full else 5)
    batches = [int(size) for size in args.batches.split(",")]
    start = time.perf_counter()
    if args.full:
        bundle = full_size_random_csm(args.device, args.dtype)
    else:
        bundle = csm.load_csm("tiny", device=args.device, dtype=args.dtype)
    anchor_frames = 62 if args.full else 25
    lines = conversations(bundle, max(batches), anchor_frames)
    print(
        f"model {bundle.model_id} ({bundle.dtype}, {bundle.device}, "
        f"{torch.get_num_threads()} threads), loaded in {time.perf_counter() - start:.1f} s; "
        f"{frames} frames a line after {anchor_frames} frames of anchor context, "
        f"fastest of {repeats}"
    )

    def stock(count: int) -> Any:
        return lambda: [csm.generate_codes(bundle, lines[0], max_new_frames=count, seed=1)]

    def stocks(size: int, count: int) -> Any:
        return lambda: stock_batch(bundle, lines[:size], count)

    def ours(
        size: int, count: int, cache: CacheKind = "static", voices: Any = (None,), mode: Any = None
    ) -> Any:
        rows = [EngineRow(lines[i], 1 + i, voices[i % len(voices)]) for i in range(size)]
        return lambda: generate_batch(
            bundle, rows, max_new_frames=count, cache=cache, mode=mode or "eager"
        )

    largest = max(batches)
    runs: list[tuple[str, Any, Any]] = [
        ("stock generate_codes, 1 line", stock(frames), stock(2)),
        (f"stock generate, batch {largest}", stocks(largest, frames), stocks(largest, 2)),
        ("engine, 1 line", ours(1, frames), ours(1, 2)),
    ]
    for size in batches:
        runs.append((f"engine, batch {size}", ours(size, frames), ours(size, 2)))
    dynamic = (ours(largest, frames, "dynamic"), ours(largest, 2, "dynamic"))
    runs.append((f"engine, batch {largest}, dynamic cache", *dynamic))
    for label, voices in (("one adapter", ("alice",)), ("two adapters mixed", ("alice", "bob"))):
        timing = (ours(largest, frames, voices=voices), ours(largest, 2, voices=voices))
        runs.append((f"engine, batch {largest}, {label}", *timing))
    if args.compiled:  # warmed up on the same shapes it is timed on: compiling happens there
        for size in (1, largest):
            compiled = ours(size, frames, voices=("alice",), mode="compiled")
            label = f"compiled engine, {'1 line' if size == 1 else f'batch {size}'}, one adapter"
            runs.append((label, compiled, compiled))
    baseline = 0.0
    for label, run, warm_up in runs:
        if "adapter" in label and not hasattr(bundle.model, "peft_config"):
            add_adapters(bundle)
        warm_up()
        seconds, made = min(timed(run) for _ in range(repeats))
        rate = made / seconds
        baseline = baseline or rate
        print(
            f"{label:<42} {made:4d} frames in {seconds:7.2f} s: {rate:8.2f} frames/s, "
            f"RTF {FRAME_RATE / rate:6.3f}, {rate / baseline:5.2f}x stock"
        )
    if args.compiled:
        check_logits(bundle, lines[0], frames)


def check_logits(bundle: Any, line: Any, frames: int) -> None:
    """Teacher-forced logits of the compiled steps against the plain ones on one line."""
    from core.models.csm import _csm
    from core.models.csm_compiled import (
        compile_failure,
        compiled_steps,
        eager_steps,
        teacher_forced_logits,
    )
    from core.models.csm_engine import EngineRow, generate_batch

    model = _csm(bundle.model)
    steps = compiled_steps(model)
    if steps is None:
        print(f"compiled engine unavailable: {compile_failure(model)}")
        return
    codes = generate_batch(bundle, [EngineRow(line, 1)], max_new_frames=frames)[0]
    fused = teacher_forced_logits(bundle, line, codes, steps)
    plain = teacher_forced_logits(bundle, line, codes, eager_steps())
    worst = float((fused - plain).abs().max())
    scale = float(plain.abs().max())
    tolerance = LOGIT_TOLERANCE * max(1.0, scale)
    verdict = "within" if worst <= tolerance else "OUTSIDE"
    print(
        f"teacher-forced logits, compiled vs eager: max |diff| {worst:.4g} over "
        f"{plain.shape[0]} positions (largest |logit| {scale:.3g}), {verdict} tolerance "
        f"{tolerance:.4g}"
    )


if __name__ == "__main__":
    main()
