"""``Subpath``: a folder's fixed layout, declared as one table of class attributes.

``raw_dir = Subpath("raw")`` on a class whose instances have a ``root`` path reads
``obj.root / "raw"``; on the class itself it is the descriptor (its ``parts`` name the path).
The workspace and the voice folder declare their layouts this way: one line a path, read-only
like the properties they replace.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, overload


class Rooted(Protocol):
    """Anything with a ``root`` folder."""

    @property
    def root(self) -> Path: ...


class Subpath:
    """A read-only path below the owner's ``root``, made of ``parts``."""

    __slots__ = ("name", "parts")

    def __init__(self, *parts: str) -> None:
        if not parts or any(not p or "/" in p or p in (".", "..") for p in parts):
            raise ValueError(f"a Subpath is one or more plain names, got {parts!r}")
        self.parts = parts
        self.name = ""

    def __set_name__(self, owner: type[Any], name: str) -> None:
        self.name = name

    @overload
    def __get__(self, obj: None, owner: type[Any] | None = None) -> Subpath: ...

    @overload
    def __get__(self, obj: Rooted, owner: type[Any] | None = None) -> Path: ...

    def __get__(self, obj: Rooted | None, owner: type[Any] | None = None) -> Path | Subpath:
        if obj is None:
            return self
        return obj.root.joinpath(*self.parts)

    def __set__(self, obj: Rooted, value: object) -> None:
        raise AttributeError(f"can't set {self.name}: it is always root/{'/'.join(self.parts)}")

    def __repr__(self) -> str:
        return f"Subpath({', '.join(map(repr, self.parts))})"
