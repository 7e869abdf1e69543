"""Old module paths, kept importable for one release after core/ was laid out by stage.

``core.transcribe`` now lives at ``core.models.asr``, ``core.mixing`` at
``core.episodes.mixing``, and so on (``MOVED``). A script that imports an old path gets the
new module itself (the same object, so attributes and patches agree) and one
``DeprecationWarning`` naming the new path. Old modules that became packages
(``core.audio``, ``core.dataset``, ``core.demo``, ``core.evaluation``) forward their old
names through ``forward_old_names``; modules split by concept (``core.loudness``,
``core.mixing``) or whose names were renamed to end a collision (``SPREAD``) import as a
view that forwards each old name to its new home. Remove this module in the release after 0.2.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

#: old dotted path -> new dotted path, for modules that moved whole: the old path is the new
#: module itself.
MOVED: dict[str, str] = {
    "core.playback": "core.audio.playback",
    "core.waveform": "core.audio.waveform",
    "core.importer": "core.dataset.importer",
    "core.subtitles": "core.dataset.subtitles",
    "core.align": "core.dataset.align",
    "core.qc": "core.dataset.qc",
    "core.demo_corpus": "core.demo.corpus",
    "core.script": "core.episodes.script",
    "core.synthesis": "core.episodes.synthesis",
    "core.synthesis.backends": "core.episodes.synthesis.backends",
    "core.synthesis.cache": "core.episodes.synthesis.cache",
    "core.synthesis.csm_backend": "core.episodes.synthesis.csm_backend",
    "core.synthesis.render": "core.episodes.render",
    "core.voices.draft": "core.episodes.synthesis.draft",
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


@dataclass(frozen=True)
class Spread:
    """An old module whose names now live in several modules (searched in order), some
    under new names (``renamed``: old name -> new name)."""

    modules: tuple[str, ...]
    renamed: Mapping[str, str] = field(default_factory=dict)


#: old modules split by concept; the old path is a view that forwards each name.
SPREAD: dict[str, Spread] = {
    "core.loudness": Spread(("core.audio.meter", "core.audio.conditioning", "core.audio.limiter")),
    "core.mixing": Spread(
        (
            "core.episodes.mixing",
            "core.episodes.master",
            "core.episodes.export",
            "core.audio.mp3",
            "core.progress",
        )
    ),
    "core.segment": Spread(("core.dataset.segment",), {"Span": "TimeSpan"}),
    "core.ingest": Spread(
        ("core.dataset.ingest", "core.voices.folder"),
        {"Progress": "IngestProgress", "MAX_ANCHORS": "REFERENCE_ANCHORS"},
    ),
    "core.hub": Spread(("core.models.hub", "core.errors")),
}

#: old modules that are packages now -> where their old names live.
BECAME_PACKAGES: dict[str, Spread] = {
    "core.audio": Spread(("core.audio.io",)),
    "core.dataset": Spread(("core.dataset.splits", "core.dataset.exports")),
    "core.demo": Spread(("core.demo.workspace",), {"Cue": "ScriptedCue"}),
    "core.evaluation": Spread(
        (
            "core.evaluation.evaluate",
            "core.evaluation.text",
            "core.evaluation.scoring",
            "core.evaluation.report",
            "core.evaluation.gates",
        )
    ),
}


def _warn(old: str, new: str) -> None:
    warnings.warn(
        f"{old} moved to {new}; import it from there (the old path goes in the next release)",
        DeprecationWarning,
        stacklevel=3,
    )


def _lookup(old: str, spread: Spread, name: str) -> tuple[str, object]:
    """``(new dotted name, value)`` of ``old``'s attribute ``name``; AttributeError if none."""
    wanted = spread.renamed.get(name, name)
    for dotted in spread.modules:
        module = importlib.import_module(dotted)
        if hasattr(module, wanted):
            return f"{dotted}.{wanted}", getattr(module, wanted)
    raise AttributeError(f"module {old!r} has no attribute {name!r}")


def _view(old: str, spread: Spread) -> ModuleType:
    """A module object standing for ``old`` that forwards names to their new homes."""
    view = ModuleType(old, f"Deprecated: {old} moved to {', '.join(spread.modules)}.")

    def __getattr__(name: str) -> object:
        if name.startswith("__"):
            raise AttributeError(name)
        return _lookup(old, spread, name)[1]

    view.__dict__["__getattr__"] = __getattr__
    return view


class _AliasLoader(importlib.abc.Loader):
    def __init__(self, new: str | Spread) -> None:
        self.new = new

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        if isinstance(self.new, Spread):
            _warn(spec.name, " / ".join(self.new.modules))
            return _view(spec.name, self.new)
        _warn(spec.name, self.new)
        return importlib.import_module(self.new)

    def exec_module(self, module: ModuleType) -> None:
        """The module is the new one (or a forwarding view), ready as it is."""


class _MovedFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, *_: object) -> importlib.machinery.ModuleSpec | None:
        """A spec for an old module path; ``None`` for every other name."""
        new: str | Spread | None = MOVED.get(fullname) or SPREAD.get(fullname)
        if new is None:
            return None
        return importlib.machinery.ModuleSpec(fullname, _AliasLoader(new))


def install() -> None:
    """Make the old module paths importable (idempotent)."""
    if not any(isinstance(f, _MovedFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _MovedFinder())


def forward_old_names(package: str, init_file: str) -> Callable[[str], object]:
    """A package ``__getattr__`` that serves the old module's names from their new homes.

    Submodule names are left to the import system, so ``from core.audio import io`` works.
    """
    spread = BECAME_PACKAGES[package]
    submodules = {p.stem for p in Path(init_file).parent.glob("*.py")}

    def __getattr__(name: str) -> object:
        if name.startswith("__") or name in submodules:
            raise AttributeError(name)
        new, value = _lookup(package, spread, name)
        _warn(f"{package}.{name}", new)
        return value

    return __getattr__
