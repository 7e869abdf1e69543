"""The compiled CSM frame step: ``torch.compile`` over fixed shapes, eager when it fails.

:func:`core.models.csm_engine.generate_batch` with ``mode="compiled"`` runs its frame loop
through the two step functions here, compiled once per model and process
(:func:`compiled_steps`):

- :func:`backbone_step` — one backbone position for every row over a ``StaticCache``, the
  attention mask given at the cache's full length and the cache position explicit, so every
  step has the same shapes and the compiler makes one graph for the whole line;
- :func:`depth_step` — one depth-decoder position over its own static cache, with the
  position a tensor and the causal mask built here (the stock forward derives positions
  from the cache's length, which breaks the graph and recompiles per codebook).

Shapes are held fixed across batches: static-cache lengths are rounded up to
:data:`CACHE_BUCKET` positions and the number of rows up to the next of
:data:`ROW_BUCKETS` (extra rows repeat the first and are dropped), so a render compiles a
handful of graphs, not one per batch. On CUDA the steps compile with
``mode="reduce-overhead"`` (CUDA graphs: the per-codebook launches are what make stock CSM
slower than real time) and the model runs in bfloat16 (:func:`core.models.csm.load_csm`).

A compiled batch runs one adapter for all its rows: mixing adapters per row splits the
batch in peft's Python loop, which breaks and recompiles graphs. The CSM backend instead
groups lines per speaker and swaps each speaker's weights into one adapter slot with peft's
hotswap (:func:`prepare_hotswap`, :func:`hotswap`), which changes no shapes.

The compiler caches its kernels in ``$XDG_CACHE_HOME/podforge/torchinductor`` (unless
``TORCHINDUCTOR_CACHE_DIR`` says otherwise), so a later process starts faster.

When compiling fails (no C compiler, an unsupported op, a library mismatch) the model is
marked and every later batch runs eagerly; one warning line says why. torch and peft are
imported inside the functions that use them.
"""

from __future__ import annotations

import logging
import os
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import torch

__all__ = [
    "CACHE_BUCKET",
    "ENGINE_SETTINGS",
    "HOTSWAP_SLOT",
    "ROW_BUCKETS",
    "EngineMode",
    "Steps",
    "backbone_step",
    "bucket_length",
    "bucket_rows",
    "compile_failure",
    "compiled_steps",
    "depth_embeds",
    "depth_step",
    "eager_steps",
    "hotswap",
    "mark_failed",
    "prepare_hotswap",
    "resolve_mode",
    "teacher_forced_logits",
]

log = logging.getLogger(__name__)

EngineMode = Literal["eager", "compiled"]
ENGINE_SETTINGS = ("auto", "eager", "compiled")
"""Values of ``models.tts_engine``: ``auto`` compiles on CUDA and runs eagerly elsewhere."""

CACHE_BUCKET = 128
"""Static-cache lengths are rounded up to a multiple of this many positions."""

ROW_BUCKETS = (1, 2, 4, 8, 16, 32, 64)
"""Batch sizes a compiled batch is padded up to."""

RECOMPILE_LIMIT = 256
"""Graphs each step function may have (``torch._dynamo.config.recompile_limit``)."""

HOTSWAP_SLOT = "voice"
"""The adapter name every speaker's weights are swapped into on the compiled path."""

CompileBackend = str | Callable[..., Any]


def resolve_mode(setting: str, device: str) -> EngineMode:
    """``models.tts_engine`` on ``device``: ``auto`` is compiled on CUDA, eager elsewhere."""
    if setting not in ENGINE_SETTINGS:
        raise ValueError(f"tts_engine must be one of {', '.join(ENGINE_SETTINGS)}, not {setting!r}")
    if setting == "auto":
        return "compiled" if device.startswith("cuda") else "eager"
    return "compiled" if setting == "compiled" else "eager"


def bucket_length(length: int) -> int:
    """``length`` rounded up to a multiple of :data:`CACHE_BUCKET`."""
    return -(-length // CACHE_BUCKET) * CACHE_BUCKET


def bucket_rows(rows: int) -> int:
    """The smallest of :data:`ROW_BUCKETS` that holds ``rows`` (``rows`` itself past 64)."""
    return next((size for size in ROW_BUCKETS if size >= rows), rows)


# --------------------------------------------------------------------------- the steps


def backbone_step(
    model: Any,
    embeds: torch.Tensor,
    mask: torch.Tensor,
    positions: torch.Tensor,
    cache_position: torch.Tensor,
    cache: Any,
) -> torch.Tensor:
    """The backbone's last hidden state ``(rows, hidden)`` after ``embeds`` ``(rows, 1, h)``.

    ``mask`` is ``(rows, cache length)``, ones where a row has a real position so far;
    ``positions`` ``(rows, 1)`` each row's own position; ``cache_position`` ``(1,)`` the
    slot written in ``cache``.
    """
    output = model.backbone_model(
        inputs_embeds=embeds,
        attention_mask=mask,
        position_ids=positions,
        cache_position=cache_position,
        past_key_values=cache,
        use_cache=True,
    )
    hidden: torch.Tensor = output.last_hidden_state[:, -1]
    return hidden


def depth_step(
    model: Any, embeds: torch.Tensor, position: torch.Tensor, cache: Any
) -> torch.Tensor:
    """The depth decoder's logits ``(rows, vocab)`` for the codebook after the last of
    ``embeds`` ``(rows, q, backbone hidden)`` at depth positions ``position`` ``(q,)``.

    The same computation as ``CsmDepthDecoderForCausalLM`` with ``logits_to_keep=1``, with
    the positions given instead of read from the cache's length.
    """
    import torch

    decoder = model.depth_decoder
    inner = decoder.model
    hidden = inner.inputs_embeds_projector(embeds)
    slots = torch.arange(int(model.config.num_codebooks), device=hidden.device)
    allowed = slots[None, :] <= position[:, None]
    mask = torch.zeros(allowed.shape, dtype=hidden.dtype, device=hidden.device)
    mask = mask.masked_fill(~allowed, torch.finfo(hidden.dtype).min)[None, None]
    position_ids = position[None]
    rotary = inner.rotary_emb(hidden, position_ids=position_ids)
    for layer in inner.layers[: inner.config.num_hidden_layers]:
        hidden = layer(
            hidden,
            attention_mask=mask,
            position_ids=position_ids,
            past_key_values=cache,
            use_cache=True,
            cache_position=position,
            position_embeddings=rotary,
        )
    hidden = inner.norm(hidden)
    logits: torch.Tensor = decoder.codebooks_head(hidden[:, -1:], position[-1:])[:, -1]
    return logits


def depth_embeds(model: Any, codes: torch.Tensor, codebook: int) -> torch.Tensor:
    """The depth decoder's input embedding of ``codes`` ``(rows,)`` of ``codebook``."""
    inner = model.depth_decoder.model
    embedded: torch.Tensor = inner.embed_tokens(codes + codebook * inner.vocab_size)
    return embedded


# --------------------------------------------------------------------------- compiling


@dataclass
class Steps:
    """The step functions a frame loop calls: compiled, or the plain functions."""

    backbone: Callable[..., torch.Tensor]
    depth: Callable[..., torch.Tensor]
    compiled: bool
    cuda_graphs: bool = False


_COMPILED: weakref.WeakKeyDictionary[Any, Steps] = weakref.WeakKeyDictionary()
_FAILED: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()


def compiled_steps(model: Any, backend: CompileBackend = "inductor") -> Steps | None:
    """``model``'s compiled steps, compiled on first use and kept for the process; ``None``
    once compiling ``model`` has failed (:func:`compile_failure` says why)."""
    if model in _FAILED:
        return None
    steps = _COMPILED.get(model)
    if steps is None:
        import torch

        from core.models.tiny.build import cache_folder

        # The compiler's own cache beside the models', not in the system's temporary folder.
        os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(cache_folder("torchinductor")))
        # Each step makes a graph per row bucket, cache-length bucket, query length and
        # model: more than torch's default 8 per function, past which it would silently
        # run eagerly.
        dynamo: Any = torch._dynamo.config
        dynamo.recompile_limit = max(int(dynamo.recompile_limit), RECOMPILE_LIMIT)
        device = next(model.parameters()).device
        cuda = device.type == "cuda" and backend == "inductor"
        options: dict[str, Any] = {"dynamic": False, "backend": backend}
        if cuda:
            options["mode"] = "reduce-overhead"
        steps = Steps(
            backbone=torch.compile(backbone_step, **options),
            depth=torch.compile(depth_step, **options),
            compiled=True,
            cuda_graphs=cuda,
        )
        _COMPILED[model] = steps
    return steps


def eager_steps() -> Steps:
    """The same step functions, uncompiled."""
    return Steps(backbone=backbone_step, depth=depth_step, compiled=False)


def mark_failed(model: Any, exc: BaseException) -> None:
    """Remember that compiling ``model`` failed; later batches run eagerly."""
    from core.errors import one_line

    root = exc  # the compiler wraps the real failure ("backend='inductor' raised: ...")
    for _ in range(8):
        inner = getattr(root, "inner_exception", None) or root.__cause__
        if not isinstance(inner, BaseException):
            break
        root = inner
    reason = f"{type(root).__name__}: {one_line(root, first_line=True)}"
    _FAILED[model] = reason
    _COMPILED.pop(model, None)
    log.warning("torch.compile failed, generating eagerly from now on: %s", reason)


def compile_failure(model: Any) -> str | None:
    """Why compiling ``model`` failed, or ``None`` if it has not."""
    return _FAILED.get(model)


# --------------------------------------------------------------------------- checking


def teacher_forced_logits(
    bundle: Any, conversation: Any, codes: torch.Tensor, steps: Steps
) -> torch.Tensor:
    """Every logit the frame loop computes while reading ``codes`` ``(codebooks, frames)``
    after ``conversation``'s prompt, through ``steps``: the backbone's first-codebook logits
    and the depth decoder's for each later codebook, frame by frame, as one float32 tensor
    ``(frames * codebooks, vocab)``. Fed the same codes, the compiled and the plain steps
    must give the same logits up to rounding: the check of the compiled path on a GPU
    (``bench/synthesis.py --compiled``)."""
    import torch

    from core.models.csm import _assemble, _csm
    from core.models.csm_engine import _call, _make_cache

    model = _csm(bundle.model)
    num_codebooks, frames = int(codes.shape[0]), int(codes.shape[1])
    codes = codes.to(model.device)
    out: list[torch.Tensor] = []
    with torch.no_grad():
        prompt = _assemble(bundle, conversation, reserve=frames)["inputs_embeds"]
        length = int(prompt.shape[1])
        total = bucket_length(length + frames)
        cache = _make_cache("static", model.config, total)
        depth_cache = _make_cache("static", model.depth_decoder.config, num_codebooks)
        mask = torch.zeros((1, total), dtype=torch.long, device=model.device)
        mask[:, :length] = 1
        written = torch.arange(length, device=model.device)
        hidden = backbone_step(model, prompt, mask, written[None], written, cache)
        for frame in range(frames):
            out.append(model.lm_head(hidden[:, None])[:, -1])
            depth_cache.reset()
            embeds = torch.stack([hidden, depth_embeds(model, codes[:1, frame], 0)], dim=1)
            position = torch.arange(2, device=model.device)
            for codebook in range(1, num_codebooks):
                step = depth_step if frame == 0 and codebook == 1 else steps.depth
                out.append(_call(steps, step, model, embeds, position, depth_cache))
                embeds = depth_embeds(model, codes[codebook : codebook + 1, frame], codebook)
                embeds, position = embeds[:, None], position[-1:] + 1
            if frame + 1 < frames:
                embeds = model.backbone_model.embed_tokens(codes[None, None, :, frame])
                mask[:, length + frame] = 1
                at = torch.tensor([length + frame], device=model.device)
                hidden = _call(steps, steps.backbone, model, embeds, mask, at[None], at, cache)
    return torch.cat(out).to(torch.float32)


# --------------------------------------------------------------------------- hotswap


def prepare_hotswap(model: Any, target_rank: int) -> None:
    """Ready a peft model whose adapter :data:`HOTSWAP_SLOT` is loaded for swapping other
    speakers' weights in after compiling: LoRA weights padded to ``target_rank`` (the
    largest rank to be swapped in) and scalings made tensors (alphas may differ)."""
    from peft.utils.hotswap import prepare_model_for_compiled_hotswap

    prepare_model_for_compiled_hotswap(model, target_rank=target_rank, check_compiled="ignore")


def hotswap(model: Any, adapter_folder: str, device: str) -> None:
    """Swap the adapter saved in ``adapter_folder`` into :data:`HOTSWAP_SLOT`, in place (no
    shape changes, so compiled graphs stay valid)."""
    from peft.utils.hotswap import hotswap_adapter

    hotswap_adapter(model, adapter_folder, adapter_name=HOTSWAP_SLOT, torch_device=device)
