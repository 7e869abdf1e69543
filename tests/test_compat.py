"""core._compat: every old module path still imports, is the new module itself, and warns."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

from core import _compat


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


@pytest.mark.parametrize("package", sorted(_compat.BECAME_PACKAGES))
def test_an_old_module_that_became_a_package_forwards_its_names(package: str) -> None:
    new = importlib.import_module(_compat.BECAME_PACKAGES[package])
    public = [n for n in vars(new) if not n.startswith("_") and callable(getattr(new, n))]
    assert public
    pkg = importlib.import_module(package)
    with pytest.warns(DeprecationWarning, match=_compat.BECAME_PACKAGES[package]):
        value = getattr(pkg, public[0])
    assert value is getattr(new, public[0])
    with pytest.raises(AttributeError):
        _ = pkg.no_such_name_here  # type: ignore[attr-defined]


def test_submodules_of_a_package_are_not_shadowed_by_old_names() -> None:
    from core.audio import io

    assert io.__name__ == "core.audio.io"
