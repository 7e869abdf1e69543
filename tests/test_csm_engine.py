"""core.models.csm_engine on the tiny CSM (fp32, CPU): the same codes as the stock path, a
row's codes independent of its batch, mixed adapters, per-row stops, no global RNG use."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from core.models import csm
from core.models.csm_engine import CacheKind, EngineRow, generate_batch
from core.models.tiny.csm import NUM_CODEBOOKS

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def bundle(cache_home: Path) -> csm.CsmBundle:
    return csm.load_csm("tiny", device="cpu")


@pytest.fixture(scope="module")
def voices(cache_home: Path) -> csm.CsmBundle:
    """The tiny model with two adapters, ``alice`` and ``bob``, of random non-zero weights."""
    import peft

    loaded = csm.load_csm("tiny", device="cpu")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(5)
        model = peft.get_peft_model(loaded.model, csm.lora_config(4, 8, 0.0), adapter_name="alice")
        model.add_adapter("bob", csm.lora_config(4, 8, 0.0))
        with torch.no_grad():
            for name, param in model.named_parameters():
                if "lora_B" in name:
                    param.normal_(0.0, 0.05)
    model.eval()
    loaded.model = model
    return loaded


def noise(seconds: float, seed: int) -> npt.NDArray[np.float32]:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(round(seconds * 24000)) * 0.1).astype(np.float32)


def conversations(bundle: csm.CsmBundle) -> list[list[dict[str, Any]]]:
    """Three lines of different lengths: with one context turn, none, and a longer one."""
    return [
        csm.build_conversation(
            [("hello there", csm.encode_audio(bundle, noise(1.0, seed=5)))], "welcome to the show"
        ),
        csm.build_conversation([], "thanks"),
        csm.build_conversation(
            [(1, "and so my fellow americans", csm.encode_audio(bundle, noise(1.6, seed=6)))],
            "ask not what your country can do for you",
        ),
    ]


def test_one_line_equals_generate_codes(bundle: csm.CsmBundle) -> None:
    conversation = conversations(bundle)[0]
    cases: list[tuple[int, CacheKind]] = [(1, "static"), (50, "static"), (50, "dynamic")]
    for top_k, cache in cases:
        expected = csm.generate_codes(bundle, conversation, max_new_frames=8, seed=7, top_k=top_k)
        (got,) = generate_batch(
            bundle, [EngineRow(conversation, 7)], max_new_frames=8, top_k=top_k, cache=cache
        )
        assert got.dtype == torch.long and got.shape == (NUM_CODEBOOKS, 8)
        assert torch.equal(got, expected), (top_k, cache)


def test_a_rows_codes_do_not_depend_on_its_batch(bundle: csm.CsmBundle) -> None:
    rows = [
        EngineRow(conversation, seed)
        for conversation, seed in zip(conversations(bundle), (7, 8, 9), strict=True)
    ]
    alone = [generate_batch(bundle, [row], max_new_frames=10)[0] for row in rows]
    batched = generate_batch(bundle, rows, max_new_frames=10)
    moved = generate_batch(bundle, [rows[2], rows[0], rows[1]], max_new_frames=10)
    for expected, first, second in zip(alone, batched, [*moved[1:], moved[0]], strict=True):
        assert expected.shape == (NUM_CODEBOOKS, 10)
        assert torch.equal(first, expected) and torch.equal(second, expected)
    # The seed is the row's own: another seed, other codes; the same rows, other results.
    other = generate_batch(bundle, [EngineRow(rows[0].conversation, 8)], max_new_frames=10)[0]
    assert not torch.equal(other, alone[0])
    assert generate_batch(bundle, [], max_new_frames=10) == []


@pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")
def test_mixed_adapters_in_one_batch(voices: csm.CsmBundle, bundle: csm.CsmBundle) -> None:
    model = voices.model
    first, second, third = conversations(voices)
    rows = [EngineRow(first, 3, "alice"), EngineRow(second, 4, "bob"), EngineRow(third, 5, None)]
    mixed = generate_batch(voices, rows, max_new_frames=8, top_k=1)
    # Each row as it comes out with its adapter alone active (no hooks), or with no adapter.
    model.set_adapter("alice")
    alone_a = generate_batch(voices, [rows[0]], max_new_frames=8, top_k=1)[0]
    model.set_adapter("bob")
    alone_b = generate_batch(voices, [rows[1]], max_new_frames=8, top_k=1)[0]
    as_b = generate_batch(voices, [EngineRow(first, 3, "bob")], max_new_frames=8, top_k=1)[0]
    base = generate_batch(bundle, [EngineRow(third, 5)], max_new_frames=8, top_k=1)[0]
    model.set_adapter("alice")
    assert torch.equal(mixed[0], alone_a) and torch.equal(mixed[1], alone_b)
    assert torch.equal(mixed[2], base)
    assert not torch.equal(alone_a, as_b)  # the adapters matter
    # Sampled rows too, and the adapter of a row, not of the batch, is what counts.
    sampled = generate_batch(voices, rows, max_new_frames=8)
    assert torch.equal(sampled[0], generate_batch(voices, [rows[0]], max_new_frames=8)[0])
    with pytest.raises(ValueError, match="no adapter 'carol' in the model"):
        generate_batch(voices, [EngineRow(first, 3, "carol")], max_new_frames=2)
    with pytest.raises(ValueError, match=r"it has none"):
        generate_batch(bundle, [EngineRow(first, 3, "alice")], max_new_frames=2)


@contextmanager
def ending(bundle: csm.CsmBundle, row: int | slice, after_frames: int) -> Iterator[list[int]]:
    """Make batch row ``row`` end its audio after ``after_frames`` frames; yields the count
    of backbone steps."""
    steps = [0]

    def favour_zero(output: Any) -> Any:
        if steps[0] <= after_frames:
            return output
        output = output.clone()
        output[row, ..., 0] = 1e4
        return output

    def backbone(module: Any, args: Any, output: Any) -> Any:
        steps[0] += 1
        return favour_zero(output)

    hooks = [
        bundle.model.lm_head.register_forward_hook(backbone),
        bundle.model.depth_decoder.codebooks_head.register_forward_hook(
            lambda module, args, output: favour_zero(output)
        ),
    ]
    try:
        yield steps
    finally:
        for hook in hooks:
            hook.remove()


def test_rows_stop_on_their_own(bundle: csm.CsmBundle) -> None:
    first, second, _ = conversations(bundle)
    rows = [EngineRow(first, 1), EngineRow(second, 2)]
    free = generate_batch(bundle, [rows[0]], max_new_frames=10)[0]
    with ending(bundle, row=1, after_frames=3) as steps:
        codes = generate_batch(bundle, rows, max_new_frames=10)
    assert steps[0] == 10
    assert codes[1].shape == (NUM_CODEBOOKS, 3)
    assert torch.equal(codes[0], free)
    with ending(bundle, row=0, after_frames=3):
        assert torch.equal(generate_batch(bundle, [rows[1]], max_new_frames=10)[0], codes[1])
    # When every row has ended the loop stops; an end in the first frame gives no frames.
    with ending(bundle, row=slice(None), after_frames=0) as steps:
        codes = generate_batch(bundle, rows, max_new_frames=10)
    assert steps[0] == 1 and [c.shape for c in codes] == [(NUM_CODEBOOKS, 0)] * 2


def test_the_callers_random_state_and_mode_are_kept(bundle: csm.CsmBundle) -> None:
    rows = [EngineRow(conversation, 7) for conversation in conversations(bundle)[:2]]
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    generate_batch(bundle, rows, max_new_frames=3)
    assert torch.equal(torch.rand(1), expected_next)
    bundle.model.train()
    try:
        generate_batch(bundle, rows[:1], max_new_frames=2)
        assert bundle.model.training and not bundle.model.codec_model.training
    finally:
        bundle.model.eval()
    with pytest.raises(ValueError, match="no audio"):
        generate_batch(bundle, [EngineRow(rows[0].conversation[:1], 1)], max_new_frames=2)
    with pytest.raises(ValueError, match="top_k"):
        generate_batch(bundle, rows, max_new_frames=2, top_k=0)
