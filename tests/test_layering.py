"""Architecture rules that must hold: core never imports Textual; start-up stays light."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEAVY = (
    "torch", "transformers", "faster_whisper", "speechbrain", "ctranslate2", "peft", "av",
    "fastapi", "uvicorn", "starlette", "ray",
)  # fmt: skip


def test_core_never_imports_textual_or_tui() -> None:
    offenders = []
    for path in sorted((ROOT / "core").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [
                f"{path.relative_to(ROOT)}: {n}"
                for n in names
                if n.split(".")[0] in ("textual", "tui", "rich", "click")
            ]
    assert offenders == []


def test_app_start_imports_no_heavy_library() -> None:
    """What `podforge open` imports before the first frame: no torch and friends."""
    code = (
        "import sys, tui.cli, tui.app, core.overview, core.catalog, core.workspace\n"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert out.stdout.strip() == ""


def test_every_core_module_imports_without_heavy_libraries() -> None:
    modules = sorted(
        ".".join(p.relative_to(ROOT).with_suffix("").parts)
        for p in (ROOT / "core").rglob("*.py")
        if p.name != "__init__.py"
    )
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        f"print(','.join(m for m in {HEAVY!r} + ('textual',) if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert out.stdout.strip() == ""
