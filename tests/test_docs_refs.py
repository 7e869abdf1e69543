"""The docs name only code that exists: every ``core.…``/``tui.…`` dotted name and every
``core/…``/``tui/…`` path in docs/*.md and README.md resolves in this checkout."""

from __future__ import annotations

import importlib
import re
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md"]
DOTTED = re.compile(r"`((?:core|tui)(?:\.[A-Za-z_][A-Za-z0-9_]*)+)")
PATH = re.compile(r"`((?:core|tui|bench|tests)/[A-Za-z0-9_/.*-]+?\.(?:py|tcss))`")


def _resolves(dotted: str) -> bool:
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                obj: object = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attr in parts[cut:]:
            if not hasattr(obj, attr):
                return False
            obj = getattr(obj, attr)
        return True
    return False


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_dotted_name_in_the_docs_exists(doc: Path) -> None:
    text = doc.read_text()
    missing = sorted({d for d in DOTTED.findall(text) if not _resolves(d)})
    assert not missing, f"{doc.name} names code that does not exist: {missing}"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_source_path_in_the_docs_exists(doc: Path) -> None:
    text = doc.read_text()
    missing = sorted({p for p in PATH.findall(text) if not list(ROOT.glob(p))})
    assert not missing, f"{doc.name} names files that do not exist: {missing}"
