"""Shared fixtures: workspaces made fresh in tmp_path, never the user's files."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

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
    from core.demo import build_demo

    return build_demo(
        tmp_path_factory.mktemp("demo") / "demo", seed=7, seconds_per_recording=DEMO_TEST_SECONDS
    )
