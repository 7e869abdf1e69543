"""The real-size CSM-1B (random weights, no download) through the user's own paths.

Opt-in (``PODFORGE_FULL_SIZE=1``): it writes ~6 GB and needs ~14 GB of memory, more than the
CI machine is sized for; docs/PERFORMANCE.md records each run by hand. The tiny-model tests
cover the same code on every run.
"""

from __future__ import annotations

import gc
import os
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        os.environ.get("PODFORGE_FULL_SIZE") != "1",
        reason="real-size model: run by hand with PODFORGE_FULL_SIZE=1 (docs/PERFORMANCE.md)",
    ),
]


def test_the_real_size_model_loads_trains_saves_its_adapter_and_speaks(tmp_path: Path) -> None:
    import torch

    from core.models import csm
    from core.models.csm_engine import EngineRow, generate_batch
    from core.models.tiny.csm import full_size_random_csm

    built = full_size_random_csm("cpu", "float32")
    folder = tmp_path / "csm-1b-random"
    built.model.save_pretrained(folder)
    built.processor.save_pretrained(folder)
    del built
    gc.collect()

    bundle = csm.load_csm(str(folder), device="cpu")  # the loader a user's models.tts goes through
    assert int(bundle.model.config.num_codebooks) == 32 and bundle.sample_rate == 24000
    model = csm.prepare_for_training(bundle, csm.lora_config(16, 32, 0.0))
    size = int(bundle.model.config.codec_config.codebook_size)
    codes = torch.randint(0, size, (bundle.num_codebooks, 25), generator=torch.Generator())
    inputs = csm.training_inputs(bundle, [], "one step at full size", codes,
                                 depth_decoder_ratio=0.0625)  # fmt: skip
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    loss = model(**inputs).loss
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss)

    adapter = tmp_path / "adapter"
    model.save_pretrained(adapter)
    trained = {k: v.clone() for k, v in model.state_dict().items() if "lora_B" in k}
    assert any(bool(v.abs().sum() > 0) for v in trained.values())  # the step moved lora_B
    model.load_adapter(str(adapter), adapter_name="reloaded")  # as CsmBackend loads a voice
    reloaded = {
        k.replace(".reloaded.", ".default."): v
        for k, v in model.state_dict().items()
        if "lora_B" in k and ".reloaded." in k
    }
    assert reloaded.keys() == trained.keys()
    assert all(torch.equal(reloaded[k], trained[k]) for k in trained)

    model.eval()
    conversation = csm.build_conversation([("an anchor", codes)], "and now one second", 0)
    (out,) = generate_batch(bundle, [EngineRow(conversation, 7, "reloaded")], max_new_frames=13)
    assert out.shape[0] == 32 and out.shape[1] <= 13
    audio = csm.decode_codes(bundle, out)
    assert audio.dtype.name == "float32" and len(audio) == out.shape[1] * 1920
