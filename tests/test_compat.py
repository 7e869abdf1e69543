"""core._compat: every old module path still imports, warns, and serves the names it had.

``tests/data/public_names_0.1.json`` lists the public names each old module defined in
release 0.1 (read from the flat modules before core/ was laid out by stage): each must
still be reachable through the old path.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from core import _compat

OLD_NAMES: dict[str, list[str]] = json.loads(
    (Path(__file__).parent / "data" / "public_names_0.1.json").read_text()
)


@pytest.mark.parametrize("old", sorted(_compat.MOVED))
def test_an_old_module_path_is_the_new_module_and_warns(old: str) -> None:
    new = _compat.MOVED[old]
    # A fresh interpreter: this process may have imported the old path already.
    code = (
        "import importlib, warnings\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        f"    old = importlib.import_module({old!r})\n"
        f"new = importlib.import_module({new!r})\n"
        "assert old is new, (old, new)\n"
        f"assert any({new!r} in str(w.message) and w.category is DeprecationWarning "
        "for w in caught), [str(w.message) for w in caught]\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("old", sorted(OLD_NAMES))
def test_every_public_name_of_an_old_module_is_still_served(old: str) -> None:
    names = OLD_NAMES[old]
    code = (
        "import importlib, warnings\n"
        "warnings.simplefilter('ignore')\n"
        f"module = importlib.import_module({old!r})\n"
        f"missing = [n for n in {names!r} if not hasattr(module, n)]\n"
        "assert not missing, missing\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_renamed_name_is_served_under_its_old_name_with_a_warning() -> None:
    from core.dataset.segment import TimeSpan

    code = (
        "import warnings\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        "    from core.segment import Span\n"
        "from core.dataset.segment import TimeSpan\n"
        "assert Span is TimeSpan\n"
        "assert any('core.dataset.segment' in str(w.message) for w in caught)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    assert TimeSpan.__module__ == "core.dataset.segment"


@pytest.mark.parametrize("package", sorted(_compat.BECAME_PACKAGES))
def test_an_old_module_that_became_a_package_forwards_its_names(package: str) -> None:
    import importlib

    pkg = importlib.import_module(package)
    name = OLD_NAMES[package][0]
    with pytest.warns(DeprecationWarning, match="moved to"):
        value = getattr(pkg, name)
    assert value is not None
    with pytest.raises(AttributeError):
        _ = pkg.no_such_name_here


def test_submodules_of_a_package_are_not_shadowed_by_old_names() -> None:
    from core.audio import io

    assert io.__name__ == "core.audio.io"
