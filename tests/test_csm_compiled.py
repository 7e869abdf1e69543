"""The compiled CSM engine (core.models.csm_compiled) on the tiny model, fp32, CPU.

Most tests compile with Dynamo's ``"eager"`` backend: the graphs are captured exactly as on
the real path (the same graph breaks, guards and recompiles) and then run op for op, which
is fast. One slow test compiles with inductor, the backend users get.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from core.models import csm
from core.models.csm_compiled import (
    CACHE_BUCKET,
    bucket_length,
    bucket_rows,
    compile_failure,
    compiled_steps,
    eager_steps,
    resolve_mode,
    teacher_forced_logits,
)
from core.models.csm_engine import EngineRow, generate_batch
from core.models.csm_memory import fit_batch, kv_cache_bytes, row_bytes, rows_that_fit
from core.settings import new_consent
from core.workspace import Workspace
from tests.conftest import make_tiny_voice

torch = pytest.importorskip("torch")


def _graphs() -> int:
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


@pytest.fixture
def bundle(cache_home: Path) -> csm.CsmBundle:
    """A fresh tiny model per test: compiled steps and failures are kept per model."""
    return csm.load_csm("tiny", device="cpu")


def _rows(bundle: csm.CsmBundle) -> list[EngineRow]:
    anchor = csm.encode_audio(bundle, (np.random.default_rng(3).standard_normal(24000) * 0.1))
    return [
        EngineRow(csm.build_conversation([("hello there", anchor)], "welcome to the show"), 1),
        EngineRow(csm.build_conversation([], "thanks"), 2),
        EngineRow(csm.build_conversation([], "and so my fellow americans ask not"), 3),
    ]


def _greedy(bundle: csm.CsmBundle, rows: list[EngineRow], **kw: Any) -> list[Any]:
    return generate_batch(
        bundle, rows, max_new_frames=10, temperature=1e-5, depth_temperature=1e-5, top_k=1, **kw
    )


def _same(a: list[Any], b: list[Any]) -> bool:
    return len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def test_modes_and_buckets() -> None:
    assert resolve_mode("auto", "cuda:0") == "compiled" and resolve_mode("auto", "cpu") == "eager"
    assert (
        resolve_mode("compiled", "cpu") == "compiled" and resolve_mode("eager", "cuda") == "eager"
    )
    with pytest.raises(ValueError, match="tts_engine"):
        resolve_mode("fast", "cpu")
    assert [bucket_rows(n) for n in (1, 2, 3, 5, 8, 9, 64, 70)] == [1, 2, 4, 8, 8, 16, 64, 70]
    assert bucket_length(1) == CACHE_BUCKET and bucket_length(CACHE_BUCKET + 1) == 2 * CACHE_BUCKET


def test_compiled_codes_equal_eager_alone_and_in_any_batch(bundle: csm.CsmBundle) -> None:
    rows = _rows(bundle)
    eager = _greedy(bundle, rows)
    before = _graphs()
    compiled = _greedy(bundle, rows, mode="compiled", compile_backend="eager")
    assert _same(compiled, eager)
    made = _graphs() - before
    # The backbone step once; the depth step for its first (two positions) and later steps.
    assert made == 3
    # Other rows in the same row and length buckets make no new graph; a row's codes never
    # depend on its batch.
    shuffled = [rows[2], rows[1], rows[2]]
    expected = [eager[2], eager[1], eager[2]]
    assert _same(_greedy(bundle, shuffled, mode="compiled", compile_backend="eager"), expected)
    assert _graphs() - before == made
    alone = _greedy(bundle, rows[2:], mode="compiled", compile_backend="eager")
    assert _same(alone, eager[2:])
    sampled = generate_batch(bundle, rows, max_new_frames=10)
    assert _same(
        generate_batch(bundle, rows, max_new_frames=10, mode="compiled", compile_backend="eager"),
        sampled,
    )
    assert _same(
        generate_batch(
            bundle, rows[:1], max_new_frames=10, mode="compiled", compile_backend="eager"
        ),
        sampled[:1],
    )
    assert compile_failure(_csm(bundle)) is None


def _csm(bundle: csm.CsmBundle) -> Any:
    return csm._csm(bundle.model)


def test_a_failing_compiler_falls_back_to_eager_once_with_one_line(
    bundle: csm.CsmBundle, caplog: pytest.LogCaptureFixture
) -> None:
    calls = []

    def broken(graph: Any, inputs: Any) -> Any:
        calls.append(1)
        raise RuntimeError("no C compiler here\nsecond line of a long report")

    rows = _rows(bundle)
    eager = _greedy(bundle, rows)
    with caplog.at_level(logging.WARNING, logger="core.models.csm_compiled"):
        first = _greedy(bundle, rows, mode="compiled", compile_backend=broken)
        second = _greedy(bundle, rows, mode="compiled", compile_backend=broken)
    assert _same(first, eager) and _same(second, eager)
    assert len(calls) == 1  # the second batch does not try again
    assert "no C compiler here" in (compile_failure(_csm(bundle)) or "")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "generating eagerly" in warnings[0]
    assert "\n" not in warnings[0]


def test_compiled_mode_refuses_mixed_adapters_and_the_dynamic_cache(
    bundle: csm.CsmBundle,
) -> None:
    rows = _rows(bundle)
    mixed = [rows[0], dataclasses.replace(rows[1], adapter="bob")]
    with pytest.raises(ValueError, match="one adapter per batch"):
        generate_batch(bundle, mixed, max_new_frames=2, mode="compiled")
    with pytest.raises(ValueError, match="static cache"):
        generate_batch(bundle, rows, max_new_frames=2, mode="compiled", cache="dynamic")


def _stock_teacher_forced(bundle: csm.CsmBundle, conversation: Any, codes: Any) -> Any:
    """The same logits from the stock modules over whole sequences: the backbone over the
    prompt and every frame at once, the depth decoder over each frame's codebooks."""
    model = _csm(bundle)
    prompt = csm._assemble(bundle, conversation, reserve=codes.shape[1])["inputs_embeds"]
    frames = model.backbone_model.embed_tokens(codes.T[None, :-1])  # (1, F - 1, h)
    with torch.no_grad():
        hidden = model.backbone_model(inputs_embeds=torch.cat([prompt, frames], 1))
        states = hidden.last_hidden_state[0, prompt.shape[1] - 1 :]
        out = []
        for frame in range(codes.shape[1]):
            out.append(model.lm_head(states[frame][None]))
            ids = torch.cat([torch.zeros(1, dtype=torch.long), codes[:-1, frame]])[None]
            depth = model.depth_decoder(
                input_ids=ids, backbone_last_hidden_state=states[frame][None]
            )
            out.append(depth.logits[0])
    return torch.cat(out)


def test_teacher_forced_logits_match_the_stock_modules(bundle: csm.CsmBundle) -> None:
    rows = _rows(bundle)
    codes = _greedy(bundle, rows[:1])[0]
    plain = teacher_forced_logits(bundle, rows[0].conversation, codes, eager_steps())
    stock = _stock_teacher_forced(bundle, rows[0].conversation, codes)
    assert plain.shape == (codes.numel(), stock.shape[-1]) == stock.shape
    assert torch.allclose(plain, stock, atol=1e-5, rtol=1e-4)
    steps = compiled_steps(_csm(bundle), backend="eager")
    assert steps is not None
    compiled = teacher_forced_logits(bundle, rows[0].conversation, codes, steps)
    assert float((compiled - plain).abs().max()) <= 1e-6  # rounding, not a different model


@pytest.mark.slow
def test_inductor_compiled_codes_equal_eager(bundle: csm.CsmBundle, tmp_path: Path) -> None:
    """The backend users get (C++ kernels on the CPU): greedy and sampled codes the same."""
    rows = _rows(bundle)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))
        compiled = _greedy(bundle, rows, mode="compiled")
        sampled = generate_batch(bundle, rows, max_new_frames=10, mode="compiled")
    assert compile_failure(_csm(bundle)) is None
    assert _same(compiled, _greedy(bundle, rows))
    assert _same(sampled, generate_batch(bundle, rows, max_new_frames=10))
    steps = compiled_steps(_csm(bundle))
    assert steps is not None
    codes = compiled[0]
    fused = teacher_forced_logits(bundle, rows[0].conversation, codes, steps)
    plain = teacher_forced_logits(bundle, rows[0].conversation, codes, eager_steps())
    assert float((fused - plain).abs().max()) <= 1e-4 * max(1.0, float(plain.abs().max()))
    assert any((tmp_path / "inductor").rglob("*.py"))  # kernels cached where it was told


# --------------------------------------------------------------------------- the backend


@pytest.fixture
def trio(demo_copy: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Workspace:
    """alice (rank 4), bob (rank 8, another alpha) and carol (adapters on other layers)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    make_tiny_voice(demo_copy, "alice", seed=1)
    make_tiny_voice(demo_copy, "bob", seed=2, rank=8, alpha=32)
    demo_copy.add_speaker("carol", new_consent("Carol C", "form 1"))
    make_tiny_voice(
        demo_copy, "carol", seed=3, targets=r"backbone_model\.layers\.\d+\.mlp\.up_proj"
    )
    return demo_copy


def _lines(ws: Workspace, speakers: dict[str, str], text: str) -> list[Any]:
    from core.episodes.parser import parse_script

    head = "\n".join(f'{tag} = "{voice}"' for tag, voice in speakers.items())
    return list(
        parse_script(f'+++\ntitle = "T"\n[speakers]\n{head}\n+++\n\n{text}', workspace=ws).lines
    )


def test_the_compiled_backend_swaps_voices_in_place_and_sounds_as_eager(trio: Workspace) -> None:
    from core.episodes.synthesis.csm_backend import CsmBackend

    lines = _lines(
        trio,
        {"A": "alice", "B": "bob"},
        "A: Hello and welcome.\nB: Thanks for having me.\nA: Bye now.\nB: See you.\n",
    )
    items = [(line, 30 + line.index) for line in lines]
    eager = CsmBackend(trio, batch_size=4, engine="eager").render_many(items)
    compiled = CsmBackend(trio, batch_size=4, engine="compiled", compile_backend="eager")
    assert compiled.engine == "frame-loop-1-compiled" != CsmBackend(trio, engine="eager").engine
    assert compiled.cache_identity("alice")["engine"] == "frame-loop-1-compiled"
    swaps = []
    real = compiled._swap_in

    def counting(speaker: str) -> bool:
        swaps.append(speaker)
        return real(speaker)

    compiled._swap_in = counting  # type: ignore[method-assign]
    before = _graphs()
    got = compiled.render_many(items)
    for a, b, (line, _) in zip(got, eager, items, strict=True):
        assert np.array_equal(a.audio, b.audio), line.text
    assert swaps == ["alice", "bob"]  # a batch per speaker, not per line
    # The backbone step and two depth steps for alice's batch; bob's rank-8 adapter went into
    # the slot padded for it, so his batch (same shapes) compiled nothing new.
    assert _graphs() - before == 3
    again = compiled.render_many(items[1:2])
    assert np.array_equal(again[0].audio, eager[1].audio)
    assert compiled.mode == "compiled"


def test_a_voice_that_cannot_be_swapped_in_turns_the_backend_eager(
    trio: Workspace, caplog: pytest.LogCaptureFixture
) -> None:
    from core.episodes.synthesis.csm_backend import CsmBackend

    lines = _lines(trio, {"A": "alice", "C": "carol"}, "A: Hello there.\nC: I am carol.\n")
    items = [(line, 7) for line in lines]
    eager = CsmBackend(trio, batch_size=4, engine="eager").render_many(items)
    compiled = CsmBackend(trio, batch_size=4, engine="compiled", compile_backend="eager")
    with caplog.at_level(logging.WARNING, logger="core.episodes.synthesis.csm_backend"):
        got = compiled.render_many(items)
    assert compiled.mode == "eager"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "'carol'" in warnings[0] and "eagerly" in warnings[0]
    for a, b in zip(got, eager, strict=True):
        assert np.array_equal(a.audio, b.audio)


# --------------------------------------------------------------------------- memory


def test_the_cache_size_is_what_transformers_allocates(bundle: csm.CsmBundle) -> None:
    import transformers

    model = _csm(bundle)
    rows, positions = 3, 40
    cache = transformers.StaticCache(config=model.config, max_cache_len=positions)
    embeds = torch.zeros((rows, 5, model.config.hidden_size))
    with torch.no_grad():
        model.backbone_model(inputs_embeds=embeds, past_key_values=cache, use_cache=True)
    allocated = sum(layer.keys.nbytes + layer.values.nbytes for layer in cache.layers)
    assert allocated == rows * kv_cache_bytes(model.config, positions, 4)
    assert row_bytes(model.config, positions, 4) > kv_cache_bytes(model.config, positions, 4)


def test_rows_that_fit_and_the_cap() -> None:
    per_row = 10_000
    assert rows_that_fit(100_000, per_row, 64) == 8  # 80 % of 100 kB in 10 kB rows
    assert rows_that_fit(100_000, per_row, 4) == 4
    assert rows_that_fit(5_000, per_row, 8) == 1  # one row always runs
    with pytest.raises(ValueError):
        rows_that_fit(1, 0, 8)


def test_on_the_cpu_the_setting_decides(bundle: csm.CsmBundle) -> None:
    assert fit_batch(_csm(bundle), 6, 4000) == 6
