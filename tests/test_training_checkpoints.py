"""Training checkpoints (core.training.checkpoints): written whole, read with weights_only."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from core.training.checkpoints import (
    checkpoint_step,
    newest_checkpoint,
    read_state,
    save_checkpoint,
)
from core.training.protocol import MetricsWriter, read_metrics


class _Adapter:
    """Stands in for a peft model: only ``save_pretrained`` is used when saving."""

    def save_pretrained(self, path: Path) -> None:
        path.mkdir()
        (path / "adapter_config.json").write_text("{}")


def _optimizer() -> tuple[Any, Any]:
    import torch

    param = torch.nn.Parameter(torch.ones(3))
    optimizer = torch.optim.AdamW([param], lr=0.1, weight_decay=0.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0 / (s + 1))
    param.sum().backward()
    optimizer.step()
    scheduler.step()
    return optimizer, scheduler


def test_a_checkpoint_reads_back_with_weights_only(tmp_path: Path) -> None:
    """Every state a resume needs (optimizer, scheduler, torch/numpy/Python RNGs) loads with
    ``weights_only=True``; numpy's RNG array is the one allowed non-tensor global."""
    import torch

    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    optimizer, scheduler = _optimizer()
    np.random.seed(5)
    random.seed(5)
    torch.manual_seed(5)
    expected = (np.random.get_state()[1].copy(), random.getstate(), torch.get_rng_state())
    metrics = MetricsWriter(run)
    try:
        path = save_checkpoint(run, _Adapter(), optimizer, scheduler, 7, metrics)
    finally:
        metrics.close()
    assert path == run / "checkpoints" / "step-7" and checkpoint_step(path) == 7
    assert newest_checkpoint(run) == path
    assert [e["path"] for e in read_metrics(run) if e["event"] == "checkpoint"] == [
        "checkpoints/step-7"
    ]

    state = read_state(path)
    assert state["step"] == 7
    np.testing.assert_array_equal(state["numpy_rng"][1], expected[0])
    assert state["python_rng"] == expected[1]
    assert torch.equal(state["torch_rng"], expected[2])
    fresh_opt, fresh_sched = _optimizer()
    fresh_opt.load_state_dict(state["optimizer"])
    fresh_sched.load_state_dict(state["scheduler"])
    np.random.set_state(state["numpy_rng"])


def test_an_unfinished_checkpoint_is_not_the_newest(tmp_path: Path) -> None:
    (tmp_path / "checkpoints" / "step-4").mkdir(parents=True)
    (tmp_path / "checkpoints" / "step-4" / "state.pt").write_bytes(b"")
    (tmp_path / "checkpoints" / "step-10").mkdir()  # no state.pt: written beside, not renamed
    assert newest_checkpoint(tmp_path) == tmp_path / "checkpoints" / "step-4"


def test_a_state_with_other_pickled_globals_is_refused(tmp_path: Path) -> None:
    import pickle

    import torch

    (tmp_path / "state.pt").parent.mkdir(exist_ok=True)
    torch.save({"step": 1, "odd": Path("x")}, tmp_path / "state.pt")
    with pytest.raises(pickle.UnpicklingError):
        read_state(tmp_path)
