"""Shared fixtures: workspaces made fresh in tmp_path, never the user's files."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import tomli_w

from core.settings import new_consent
from core.workspace import Workspace

REPO = Path(__file__).resolve().parents[1]
"""The repository root: the working folder for code run in a child process."""
TESTDATA = REPO / "tests" / "data"
"""Recordings and samples kept with the tests (tests/data/README.md says where each is from)."""


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


@pytest.fixture(autouse=True, scope="session")
def _no_user_config(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """``XDG_CONFIG_HOME`` in an empty folder: a developer's own keymap never reaches a test."""
    patch = pytest.MonkeyPatch()
    patch.setenv("XDG_CONFIG_HOME", str(tmp_path_factory.mktemp("config")))
    yield
    patch.undo()


@pytest.fixture(scope="module")
def cache_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """``XDG_CACHE_HOME`` in a temporary folder for the module that asks for it, so its tiny
    models are built there once and tests never touch the user's cache."""
    home = tmp_path_factory.mktemp("xdg-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_CACHE_HOME", str(home))
        yield home


@pytest.fixture
def own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``XDG_CACHE_HOME`` in this test's own ``tmp_path / "cache"``: its tiny models are built
    afresh and shared with no other test."""
    home = tmp_path / "cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(home))
    return home


def loaded_after(imports: str, modules: Iterable[str]) -> list[str]:
    """Which of ``modules`` a fresh interpreter has loaded after ``import <imports>``, sorted
    (heavy libraries must wait until a function needs them)."""
    code = (
        f"import sys, {imports}; print(sorted(m for m in {tuple(modules)!r} if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    return list(ast.literal_eval(done.stdout.strip()))


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


def make_tiny_voice(
    ws: Workspace, speaker: str, seed: int, *, rank: int = 4, alpha: int = 8,
    targets: str | None = None,
) -> None:  # fmt: skip
    """A speaker voice made the way training exports one, with random (not zero) LoRA weights
    (``targets``: another ``target_modules`` regex than training's)."""
    import torch

    from core.models import csm

    bundle = csm.load_csm("tiny")
    torch.manual_seed(seed)
    config = csm.lora_config(rank, alpha, 0.0)
    if targets is not None:
        config.target_modules = targets
    model = csm.prepare_for_training(bundle, config, gradient_checkpointing=False)
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
    if ws.settings.speakers.get(speaker) and ws.settings.speakers[speaker].consent:
        from core.voices.consent import bind_consent
        from core.voices.folder import VoiceFolder

        bind_consent(ws, speaker, VoiceFolder(folder))  # as the voice export does


def delete_catalog(ws: Workspace) -> None:
    """Remove the workspace's catalog with its SQLite side files."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{ws.catalog_path}{suffix}").unlink(missing_ok=True)


NO_DEVICE = "podforge-test-no-such-device"
"""An audio output device that does not exist: players in app tests never make a sound."""


@pytest.fixture
def no_color_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    """``NO_COLOR`` unset: it changes snapshot colours, and snapshots are recorded without it.
    App test modules use it for every test: ``pytestmark = pytest.mark.usefixtures(...)``."""
    monkeypatch.delenv("NO_COLOR", raising=False)


async def notified(
    pilot: object, check: Callable[[list[str]], bool] = bool, steps: int = 100
) -> list[str]:
    """The app's notification messages, once ``check`` holds for them (or after ``steps``
    pauses of 20 ms)."""
    for _ in range(steps):
        await pilot.pause(0.02)  # type: ignore[attr-defined]
        messages = [n.message for n in pilot.app._notifications]  # type: ignore[attr-defined]
        if check(messages):
            break
    return messages


async def tables_settled(pilot: object) -> None:
    """Wait until every DataTable has applied its rows' widths (it does so on its next render,
    which can lag behind the rows under load; a snapshot taken earlier differs) and its rows
    and widths have held still for 0.1 s."""
    from textual.widgets import DataTable

    seen: object = None
    steady = 0
    for _ in range(300):
        await pilot.pause(0.02)  # type: ignore[attr-defined]
        tables = list(pilot.app.screen.query(DataTable))  # type: ignore[attr-defined]
        # Rows may still arrive from a worker: wait until rows and widths stop changing too.
        state = [(t.row_count, [c.width for c in t.columns.values()]) for t in tables]
        pending = any(t._require_update_dimensions for t in tables)
        steady = steady + 1 if state == seen and not pending else 0
        seen = state
        if steady >= 5:
            for table in tables:  # the header row is cached: draw it at the final widths
                table._clear_caches()
                table.refresh()
            await screen_settled(pilot)
            return
    raise AssertionError("a DataTable never applied its dimensions")


async def screen_settled(pilot: object, steps: int = 200) -> None:
    """Wait until the screen itself holds still: five screenshots in a row, 50 ms apart, are
    identical. A snapshot taken while a late update (a plot, a footer, a refresh timer's
    reread) is still landing differs from the recorded one only under load."""
    app = pilot.app  # type: ignore[attr-defined]
    seen = ""
    steady = 0
    for _ in range(steps):
        await pilot.wait_for_scheduled_animations()  # type: ignore[attr-defined]
        await pilot.pause(0.05)  # type: ignore[attr-defined]
        shot = app.export_screenshot()
        steady = steady + 1 if shot == seen else 0
        seen = shot
        if steady >= 4:
            return
    raise AssertionError("the screen never held still")


@pytest.fixture
def not_a_model(tmp_path: Path) -> Path:
    """A folder named as a model that holds only a text file: every loader must refuse it."""
    folder = tmp_path / "not-a-model"
    folder.mkdir()
    (folder / "notes.txt").write_text("not a model\n", encoding="utf-8")
    return folder
