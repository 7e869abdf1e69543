"""Batched CSM synthesis with our own frame loop: each row's codes depend only on that row.

:func:`generate_batch` runs the parts of ``CsmForConditionalGeneration`` itself, frame by
frame: the backbone one position at a time over a KV cache (a ``transformers``
``StaticCache`` by default, sized to the longest prompt plus the frames to make; a
``DynamicCache`` with ``cache="dynamic"``), then the depth decoder over the other codebooks
with a cache of its own. Each row has its own inputs (built by the same assembly as
:func:`core.models.csm.generate_codes`, then padded on the left and masked), its own
positions, its own stop (the end-of-audio frame) and its own ``torch.Generator`` seeded from
its seed; sampling repeats the stock logits processors (suppressed ids, temperature, top-k)
op for op. So a row's codes do not depend on which rows share its batch, and a single row
draws what ``generate_codes`` draws for the same seed (both bit for bit on the CPU, tested).
Stopped rows keep being computed (fixed shapes) but their frames are dropped.

Rows may ask for different LoRA adapters: the batch then runs under peft's mixed-batch
mechanism (its pre-forward hook that hands ``adapter_names`` to every LoRA layer, as
``PeftModel.generate(adapter_names=...)`` installs), around the backbone and the depth
decoder alike; ``None`` is the base model (peft's ``"__base__"``). A batch whose rows all ask
for the one active adapter runs without hooks.

torch and peft are imported inside the functions that use them.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from core.models.csm import CsmBundle, _assemble, _check_generation_args, _csm
from core.models.csm_compiled import (
    CompileBackend,
    EngineMode,
    Steps,
    backbone_step,
    bucket_length,
    bucket_rows,
    compiled_steps,
    depth_embeds,
    depth_step,
    mark_failed,
)

if TYPE_CHECKING:
    import torch

__all__ = ["BASE_ADAPTER", "CacheKind", "EngineRow", "generate_batch"]

BASE_ADAPTER = "__base__"
"""peft's name for "no adapter" in a mixed batch."""

CacheKind = Literal["static", "dynamic"]


@dataclass(frozen=True)
class EngineRow:
    """One line to generate: its conversation (last turn: text only), seed and adapter."""

    conversation: Sequence[Mapping[str, Any]]
    seed: int
    adapter: str | None = None
    """A LoRA adapter loaded into the model, or ``None`` for the base model."""


def generate_batch(
    bundle: CsmBundle,
    rows: Sequence[EngineRow],
    *,
    max_new_frames: int,
    temperature: float = 0.9,
    depth_temperature: float = 0.9,
    top_k: int = 50,
    cache: CacheKind = "static",
    mode: EngineMode = "eager",
    compile_backend: CompileBackend = "inductor",
) -> list[torch.Tensor]:
    """Sample each row's codes: one int64 ``(num_codebooks, frames)`` CPU tensor per row.

    The same convention as :func:`core.models.csm.generate_codes`: at most
    ``max_new_frames`` frames, fewer when the row's model ends the audio (the end-of-audio
    frame itself is not returned). A row's result depends only on its conversation, seed and
    adapter (and the model, device and library versions). The caller's random state and the
    model's mode are left as they were.

    ``mode="compiled"`` runs the loop's steps compiled (:mod:`core.models.csm_compiled`;
    static cache only, every row with the same adapter); if compiling fails the batch, and
    every later one, runs eagerly. ``compile_backend`` is ``torch.compile``'s backend.
    """
    import torch

    for row in rows:
        _check_generation_args(
            row.conversation, max_new_frames, temperature, depth_temperature, top_k
        )
    if cache not in ("static", "dynamic"):
        raise ValueError(f"cache must be static or dynamic, not {cache!r}")
    if mode not in ("eager", "compiled"):
        raise ValueError(f"mode must be eager or compiled, not {mode!r}")
    if mode == "compiled" and cache != "static":
        raise ValueError("the compiled engine needs the static cache")
    if mode == "compiled" and len({row.adapter for row in rows}) > 1:
        raise ValueError("the compiled engine runs one adapter per batch: group rows by adapter")
    if not rows:
        return []
    model = _csm(bundle.model)
    was_training = bool(bundle.model.training)
    bundle.model.eval()
    try:
        with torch.no_grad():
            prompts = [
                _assemble(bundle, row.conversation, reserve=max_new_frames)["inputs_embeds"][0]
                for row in rows
            ]
            seeds = [row.seed for row in rows]
            sampling = _Sampling(temperature, depth_temperature, top_k)
            with adapters_for(model, [row.adapter for row in rows]):
                steps = compiled_steps(model, compile_backend) if mode == "compiled" else None
                if steps is not None:
                    try:
                        return _frame_loop(
                            model, prompts, seeds, max_new_frames, sampling, cache, steps
                        )
                    except torch.OutOfMemoryError:
                        raise
                    except Exception as exc:  # compilers fail in many ways; eager still works
                        mark_failed(model, exc)
                return _frame_loop(model, prompts, seeds, max_new_frames, sampling, cache)
    finally:
        bundle.model.train(was_training)
        model.codec_model.eval()  # train(True) would switch the codec too


@dataclass(frozen=True)
class _Sampling:
    temperature: float
    depth_temperature: float
    top_k: int


def _frame_loop(
    model: Any,
    prompts: list[torch.Tensor],
    seeds: list[int],
    max_new_frames: int,
    sampling: _Sampling,
    cache: CacheKind,
    steps: Steps | None = None,
) -> list[torch.Tensor]:
    """Generate every row; ``steps`` (compiled) replaces the stock module calls, with the
    batch padded to a row bucket and the caches to a length bucket."""
    import torch

    config = model.config
    device = prompts[0].device
    wanted = len(prompts)
    if steps is not None:  # fixed shapes: extra rows repeat the first and are dropped
        extra = bucket_rows(wanted) - wanted
        prompts, seeds = prompts + [prompts[0]] * extra, seeds + [seeds[0]] * extra
    rows = len(prompts)
    lengths = [int(prompt.shape[0]) for prompt in prompts]
    longest = max(lengths)
    total = longest + max_new_frames
    if steps is not None:
        total = bucket_length(total)
    eos = int(config.codebook_eos_token_id)
    vocab_limit = int(config.codec_config.codebook_size)

    embeds = prompts[0].new_zeros((rows, longest, prompts[0].shape[-1]))
    mask = torch.zeros((rows, total), dtype=torch.long, device=device)
    for index, prompt in enumerate(prompts):
        embeds[index, longest - lengths[index] :] = prompt
        mask[index, longest - lengths[index] : longest] = 1
    positions = (mask[:, :longest].cumsum(-1) - 1).clamp(min=0)  # as the row alone
    following = torch.tensor(lengths, dtype=torch.long, device=device)[:, None]
    generators = [torch.Generator(device=device).manual_seed(seed) for seed in seeds]
    backbone_cache = _make_cache(cache, config, total)
    depth_cache = _make_cache(cache, model.depth_decoder.config, int(config.num_codebooks))

    frames: list[torch.Tensor] = []
    stops = [max_new_frames] * rows
    seen = longest
    for frame in range(max_new_frames):
        if steps is None:
            hidden = model.backbone_model(
                inputs_embeds=embeds,
                attention_mask=mask[:, :seen],
                position_ids=positions,
                past_key_values=backbone_cache,
                use_cache=True,
            ).last_hidden_state[:, -1]
        else:  # the prompt runs eagerly (its own shape); each following frame compiled
            step = backbone_step if frame == 0 else steps.backbone
            written = torch.arange(seen - embeds.shape[1], seen, device=device)
            hidden = _call(steps, step, model, embeds, mask, positions, written, backbone_cache)
        logits = model.lm_head(hidden[:, None])[:, -1]
        first = _sample(logits, sampling.temperature, sampling.top_k, vocab_limit, generators)
        codes = _depth_decode(
            model, hidden, first, depth_cache, sampling, vocab_limit, generators, steps,
            first_eager=frame == 0,
        )  # fmt: skip
        frames.append(codes)
        checked = codes[:, :-1] if codes.shape[1] > 1 else codes
        for index, ended in enumerate((checked == eos).all(dim=-1).tolist()):
            if ended and stops[index] == max_new_frames:
                stops[index] = frame
        if all(stop <= frame for stop in stops) or frame + 1 == max_new_frames:
            break
        embeds = model.backbone_model.embed_tokens(codes[:, None, :])
        mask[:, seen] = 1
        seen += 1
        positions = following
        following = following + 1
    stacked = torch.stack(frames, dim=1).to("cpu", torch.long)  # (rows, frames, codebooks)
    return [stacked[index, : stops[index]].T.contiguous() for index in range(wanted)]


def _call(steps: Steps, step: Callable[..., torch.Tensor], *args: Any) -> torch.Tensor:
    """``step(*args)``; with CUDA graphs, a new graph step and the output copied out of the
    graph's memory (the next replay overwrites it)."""
    if not steps.cuda_graphs:
        return step(*args)
    import torch

    torch.compiler.cudagraph_mark_step_begin()  # type: ignore[no-untyped-call]
    return step(*args).clone()


def _depth_decode(
    model: Any,
    hidden: torch.Tensor,
    first: torch.Tensor,
    cache: Any,
    sampling: _Sampling,
    vocab_limit: int,
    generators: list[torch.Generator],
    steps: Steps | None = None,
    *,
    first_eager: bool = False,
) -> torch.Tensor:
    """The frame's codebooks after the first, as the stock depth decoder ``generate`` makes
    them: position 0 is the backbone's last hidden state, position 1 the first codebook.

    With ``steps`` through :func:`core.models.csm_compiled.depth_step`: the positions are
    tensors, so every codebook after the first runs the same graph. ``first_eager`` runs the
    first step uncompiled: it allocates a new cache's tensors, which a compiled graph would
    otherwise have to include (and then recompile without)."""
    import torch

    if steps is not None:
        cache.reset()
        codes = [first]
        embeds = torch.stack([hidden, depth_embeds(model, first, 0)], dim=1)
        position = torch.arange(2, device=hidden.device)
        for codebook in range(1, int(model.config.num_codebooks)):
            step = depth_step if first_eager and codebook == 1 else steps.depth
            logits = _call(steps, step, model, embeds, position, cache)
            code = _sample(
                logits, sampling.depth_temperature, sampling.top_k, vocab_limit, generators
            )
            codes.append(code)
            embeds = depth_embeds(model, code, codebook)[:, None]
            position = position[-1:] + 1
        return torch.stack(codes, dim=1)
    decoder = model.depth_decoder
    cache.reset()
    codes = [first]
    inputs = torch.stack([torch.zeros_like(first), first], dim=1)
    state: Any = hidden.clone()
    for _ in range(int(model.config.num_codebooks) - 1):
        logits = decoder(
            input_ids=inputs,
            backbone_last_hidden_state=state,
            past_key_values=cache,
            use_cache=True,
            logits_to_keep=1,
        ).logits[:, -1]
        code = _sample(logits, sampling.depth_temperature, sampling.top_k, vocab_limit, generators)
        codes.append(code)
        inputs, state = code[:, None], None
    return torch.stack(codes, dim=1)


def _sample(
    logits: torch.Tensor,
    temperature: float,
    top_k: int,
    vocab_limit: int,
    generators: list[torch.Generator],
) -> torch.Tensor:
    """One id per row, drawn with the row's own generator after the stock processors:
    ids from ``vocab_limit`` on suppressed, temperature, top-k (the same ops, in order)."""
    import torch

    scores = logits.to(torch.float32)
    if vocab_limit < scores.shape[-1]:
        suppressed = torch.arange(scores.shape[-1], device=scores.device) >= vocab_limit
        scores = torch.where(suppressed, -float("inf"), scores)
    scores = scores / temperature
    kept = min(top_k, scores.shape[-1])
    scores = scores.masked_fill(scores < torch.topk(scores, kept)[0][..., -1, None], -float("inf"))
    probs = torch.nn.functional.softmax(scores, dim=-1)
    drawn = [
        torch.multinomial(probs[index : index + 1], num_samples=1, generator=generator)
        for index, generator in enumerate(generators)
    ]
    return torch.cat(drawn).squeeze(1)


def _make_cache(kind: CacheKind, config: Any, length: int) -> Any:
    import transformers

    library: Any = transformers  # only partly typed
    if kind == "static":
        return library.StaticCache(config=config, max_cache_len=length)
    return library.DynamicCache()


# --------------------------------------------------------------------------- adapters


@contextmanager
def adapters_for(model: Any, names: Sequence[str | None]) -> Iterator[None]:
    """Run ``model`` (a CSM model, LoRA layers inside or not) with one adapter per batch row.

    ``None`` is the base model. Installs peft's mixed-batch pre-forward hook on every LoRA
    layer unless every row asks for the one adapter already active (or the model has no
    adapters and every row asks for none). Unknown adapters are a ``ValueError``.
    """
    layers = _lora_layers(model)
    wanted = {name for name in names if name is not None}
    known: set[str] = set()
    for layer in layers:
        known |= set(layer.lora_A.keys())
    unknown = sorted(wanted - known)
    if unknown:
        have = ", ".join(sorted(known)) or "none"
        raise ValueError(f"no adapter {', '.join(map(repr, unknown))} in the model (it has {have})")
    if _plain_run_fits(layers, names):
        yield
        return
    if any(getattr(layer, "merged", False) for layer in layers):
        raise ValueError("adapters merged into the model cannot be mixed in one batch")
    adapter_names = [BASE_ADAPTER if name is None else name for name in names]

    def inject(module: Any, args: Any, kwargs: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        kwargs["adapter_names"] = adapter_names
        return args, kwargs

    handles = [layer.register_forward_pre_hook(inject, with_kwargs=True) for layer in layers]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _lora_layers(model: Any) -> list[Any]:
    """The peft LoRA layers inside ``model`` (none when peft was never imported)."""
    if "peft" not in sys.modules:
        return []
    from peft.tuners.lora import LoraLayer

    return [module for module in model.modules() if isinstance(module, LoraLayer)]


def _plain_run_fits(layers: list[Any], names: Sequence[str | None]) -> bool:
    """Whether a forward without hooks gives every row its adapter."""
    if len(set(names)) != 1:
        return False
    name = names[0]
    if not layers:
        return name is None
    return name is not None and all(
        not layer.disable_adapters and list(layer.active_adapters) == [name] for layer in layers
    )
