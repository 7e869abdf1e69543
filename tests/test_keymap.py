"""The keymap: one table of every key (`tui/keymap.py`), the docs list every binding id, no
screen binds one key twice, and a user keymap changes keys in the running app."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from core.errors import PodforgeError
from core.workspace import Workspace
from tests.conftest import REPO
from tui import keymap
from tui.app import PodforgeApp
from tui.screens.review import ReviewScreen

TABLES = {
    name: getattr(keymap, name)
    for name in ("APP", "HOME", "REVIEW", "TRAINING", "NEW_RUN", "LOG", "SCRIPTS",
                 "SCRIPT_EDITOR", "UNSAVED", "SCRIPT_NAME", "LOUDNESS_REPORT", "RESPELL", "TAKES")
}  # fmt: skip


def test_every_binding_has_a_unique_id_and_docs_keys_lists_it() -> None:
    ids = [b.id for b in keymap.all_bindings()]
    assert all(ids) and len(ids) == len(set(ids))
    assert sum(len(t) for t in TABLES.values()) == len(ids)  # all_bindings misses no table
    page = (REPO / "docs" / "KEYS.md").read_text()
    assert [i for i in ids if f"`{i}`" not in page] == []


@pytest.mark.parametrize("name", sorted(TABLES))
def test_no_screen_binds_one_key_twice(name: str) -> None:
    keys = Counter(k.strip() for b in TABLES[name] for k in b.key.split(","))
    assert [k for k, n in keys.items() if n > 1] == []


def test_a_bad_user_keymap_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "keymap.toml"
    assert keymap.load_user_keymap(path) == {}  # none: the app's own keys
    for text, says in (
        ('"review.acept" = "y"', "unknown binding id 'review.acept'"),
        ('"review.accept" = 3', "must be a key string"),
        ("review.accept = ", "not a readable TOML keymap"),
    ):
        path.write_text(text)
        with pytest.raises(PodforgeError, match=says) as info:
            keymap.load_user_keymap(path)
        assert "\n" not in str(info.value) and str(path) in str(info.value)


async def test_a_user_keymap_changes_a_key_in_the_app(
    demo_copy: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "config"
    (config / "podforge").mkdir(parents=True)
    (config / "podforge" / "keymap.toml").write_text('"home.review" = "x"\n')
    monkeypatch.setenv("XDG_CONFIG_HOME", str(config))
    app = PodforgeApp(demo_copy)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause(0.5)
        await pilot.press("v")  # the default key no longer opens the review
        await pilot.pause(0.3)
        assert not isinstance(app.screen, ReviewScreen)
        await pilot.press("x")
        for _ in range(100):
            await pilot.pause(0.05)
            if isinstance(app.screen, ReviewScreen):
                break
        assert isinstance(app.screen, ReviewScreen)
