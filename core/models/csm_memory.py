"""How many CSM generations fit in one batch: rows sized from the model's config.

A batch row holds a backbone KV cache over its whole sequence (prompt plus the frames it may
make), a depth-decoder KV cache over one frame's codebooks, and the prompt's activations
while it is read (the largest working set of the loop). :func:`row_bytes` adds these up
from the config; :func:`rows_that_fit` divides the free memory by it, keeping
:data:`HEADROOM` spare; :func:`fit_batch` asks CUDA for the free memory and caps the result
with ``models.tts_batch``. On the CPU the setting alone decides (the operating system, not
the process, owns the free memory there).
"""

from __future__ import annotations

from typing import Any

__all__ = ["HEADROOM", "fit_batch", "kv_cache_bytes", "row_bytes", "rows_that_fit"]

HEADROOM = 0.8
"""Share of the free memory a batch may take; the rest absorbs allocator fragmentation."""


def kv_cache_bytes(config: Any, positions: int, dtype_bytes: int) -> int:
    """Bytes of one row's key and value cache over ``positions`` for a decoder ``config``."""
    heads = int(getattr(config, "num_key_value_heads", None) or config.num_attention_heads)
    head_dim = int(
        getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    )
    return 2 * int(config.num_hidden_layers) * heads * head_dim * positions * dtype_bytes


def row_bytes(config: Any, length: int, dtype_bytes: int) -> int:
    """Bytes one row of a batch needs: a CSM ``config``, ``length`` backbone positions (prompt
    plus frames) and parameters of ``dtype_bytes`` each."""
    depth = config.depth_decoder_config
    caches = kv_cache_bytes(config, length, dtype_bytes) + kv_cache_bytes(
        depth, int(config.num_codebooks), dtype_bytes
    )
    hidden, inner = int(config.hidden_size), int(config.intermediate_size)
    heads = int(config.num_attention_heads)
    # Reading the prompt: residual, attention and MLP intermediates of one layer at a time,
    # plus the attention weights when the kernel materialises them.
    activations = length * (4 * hidden + 3 * inner) * dtype_bytes + heads * length * length * 4
    return caches + activations


def rows_that_fit(free_bytes: int, per_row: int, cap: int) -> int:
    """How many rows of ``per_row`` bytes fit in :data:`HEADROOM` of ``free_bytes``, between
    1 and ``cap``."""
    if per_row <= 0:
        raise ValueError("a row needs a positive number of bytes")
    return max(1, min(cap, int(free_bytes * HEADROOM) // per_row))


def fit_batch(model: Any, cap: int, length: int) -> int:
    """The batch size for rows of ``length`` positions on ``model``'s device: what fits in
    its free memory on CUDA, at most ``cap``; ``cap`` elsewhere."""
    import torch

    parameter = next(model.parameters())
    if parameter.device.type != "cuda":
        return cap
    free, _total = torch.cuda.mem_get_info(parameter.device)
    return rows_that_fit(int(free), row_bytes(model.config, length, parameter.element_size()), cap)
