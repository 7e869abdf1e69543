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
