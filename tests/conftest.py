"""Shared fixtures: workspaces made fresh in tmp_path, never the user's files."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import tomli_w

from core.settings import new_consent
from core.workspace import Workspace

SHARED_TESTDATA = Path(__file__).resolve().parents[2] / "shared" / "testdata"


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    """An empty workspace with one consented speaker, ``alice``, and one without, ``carol``."""
    ws = Workspace.create(tmp_path / "show", name="show")
    ws.add_speaker(
        "alice",
        new_consent(
            "Alice Example",
            statement="recorded verbal consent",
            granted_at=datetime(2026, 11, 20, 9, 30, tzinfo=UTC),
        ),
    )
    ws.add_speaker("carol", None)
    return ws


DEMO_TEST_SECONDS = 20.0
"""Length of each generated recording in test demos (the real demo uses 150 s)."""


@pytest.fixture(scope="session")
def demo_workspace(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    """One small demo workspace shared by the tests that only read it."""
    from core.demo.workspace import build_demo

    return build_demo(
        tmp_path_factory.mktemp("demo") / "demo", seed=7, seconds_per_recording=DEMO_TEST_SECONDS
    )


@pytest.fixture
def demo_copy(demo_workspace: Workspace, tmp_path: Path) -> Workspace:
    """A private copy of the shared (already ingested) demo that a test may change."""
    import shutil

    shutil.copytree(demo_workspace.root, tmp_path / "demo")
    return Workspace.open(tmp_path / "demo")


def make_tiny_voice(ws: Workspace, speaker: str, seed: int) -> None:
    """A speaker voice made the way training exports one, with random (not zero) LoRA weights."""
    import torch

    from core.models import csm

    bundle = csm.load_csm("tiny")
    torch.manual_seed(seed)
    model = csm.prepare_for_training(
        bundle, csm.lora_config(4, 8, 0.0), gradient_checkpointing=False
    )
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0.0, 0.05)
    folder = ws.voices_dir / speaker
    model.save_pretrained(str(folder / "adapter"))
    (folder / "anchors").mkdir(parents=True)
    rng = np.random.default_rng(seed)
    sf.write(
        folder / "anchors" / "anchor-1.wav",
        (rng.standard_normal(24000 * 2) * 0.05).astype(np.float32),
        24000,
    )
    meta = {
        "speaker": speaker,
        "base_model": "tiny",
        "anchors": [{"file": "anchors/anchor-1.wav", "text": "Hello there."}],
    }
    (folder / "voice.toml").write_text(tomli_w.dumps(meta))


async def tables_settled(pilot: object) -> None:
    """Wait until every DataTable has applied its rows' widths (it does so on its next render,
    which can lag behind the rows under load; a snapshot taken earlier differs)."""
    from textual.widgets import DataTable

    for _ in range(300):
        await pilot.pause(0.02)  # type: ignore[attr-defined]
        tables = pilot.app.screen.query(DataTable)  # type: ignore[attr-defined]
        if not any(t._require_update_dimensions for t in tables):
            await pilot.pause()  # type: ignore[attr-defined]
            return
    raise AssertionError("a DataTable never applied its dimensions")
