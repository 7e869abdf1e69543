"""Old module paths, kept importable for one release after core/ was laid out by stage.

``core.transcribe`` now lives at ``core.models.asr``, ``core.mixing`` at
``core.episodes.mixing``, and so on (``MOVED``). A script that imports an old path gets the
new module itself (the same object, so attributes and patches agree) and one
``DeprecationWarning`` naming the new path. Old modules that became packages
(``core.audio``, ``core.dataset``, ``core.demo``, ``core.evaluation``) forward their old
names through ``forward_old_names``. Remove this module in the release after 0.2.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType

#: old dotted path -> new dotted path, for modules that moved without their old name
#: becoming a package.
MOVED: dict[str, str] = {
    "core.loudness": "core.audio.loudness",
    "core.playback": "core.audio.playback",
    "core.waveform": "core.audio.waveform",
    "core.importer": "core.dataset.importer",
    "core.subtitles": "core.dataset.subtitles",
    "core.align": "core.dataset.align",
    "core.segment": "core.dataset.segment",
    "core.qc": "core.dataset.qc",
    "core.ingest": "core.dataset.ingest",
    "core.demo_corpus": "core.demo.corpus",
    "core.script": "core.episodes.script",
    "core.mixing": "core.episodes.mixing",
    "core.synthesis": "core.episodes.synthesis",
    "core.synthesis.backends": "core.episodes.synthesis.backends",
    "core.synthesis.cache": "core.episodes.synthesis.cache",
    "core.synthesis.csm_backend": "core.episodes.synthesis.csm_backend",
    "core.synthesis.render": "core.episodes.render",
    "core.voices.draft": "core.episodes.synthesis.draft",
    "core.hub": "core.models.hub",
    "core.transcribe": "core.models.asr",
    "core.speaker_id": "core.models.speaker",
    "core.csm": "core.models.csm",
    "core.cuda_info": "core.models.cuda_info",
    "core.tiny": "core.models.tiny",
    "core.tiny.build": "core.models.tiny.build",
    "core.tiny.csm": "core.models.tiny.csm",
    "core.tiny.ecapa": "core.models.tiny.ecapa",
    "core.tiny.whisper": "core.models.tiny.whisper",
}

#: old modules that are packages now -> the module that holds their old contents.
BECAME_PACKAGES: dict[str, str] = {
    "core.audio": "core.audio.io",
    "core.dataset": "core.dataset.splits",
    "core.demo": "core.demo.workspace",
    "core.evaluation": "core.evaluation.evaluate",
}


def _warn(old: str, new: str) -> None:
    warnings.warn(
        f"{old} moved to {new}; import it from there (the old path goes in the next release)",
        DeprecationWarning,
        stacklevel=3,
    )


class _AliasLoader(importlib.abc.Loader):
    def __init__(self, new: str) -> None:
        self.new = new

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        _warn(spec.name, self.new)
        return importlib.import_module(self.new)

    def exec_module(self, module: ModuleType) -> None:
        """The module is the new one, already executed."""


class _MovedFinder(importlib.abc.MetaPathFinder):
    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        new = MOVED.get(fullname)
        if new is None:
            return None
        return importlib.machinery.ModuleSpec(fullname, _AliasLoader(new))


def install() -> None:
    """Make the old module paths importable (idempotent)."""
    if not any(isinstance(f, _MovedFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _MovedFinder())


def forward_old_names(package: str, init_file: str) -> Callable[[str], object]:
    """A package ``__getattr__`` that serves the old module's names from their new home.

    Submodule names are left to the import system, so ``from core.audio import io`` works.
    """
    new = BECAME_PACKAGES[package]
    submodules = {p.stem for p in Path(init_file).parent.glob("*.py")}

    def __getattr__(name: str) -> object:
        if name.startswith("__") or name in submodules:
            raise AttributeError(name)
        module = importlib.import_module(new)
        if not hasattr(module, name):
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        _warn(f"{package}.{name}", f"{new}.{name}")
        return getattr(module, name)

    return __getattr__
