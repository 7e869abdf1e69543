"""Small helpers shared by the model loaders (CSM, faster-whisper, ECAPA): the hub environment,
the one rule that tells a folder from a hub id, and the check that a model folder is complete.

huggingface_hub reads its environment once, at import; the loaders read it at call time
through these, so a test or a user can change ``HF_HUB_OFFLINE`` / ``HF_HOME`` later.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from core.errors import ModelError, at


def looks_like_path(model_id: str) -> bool:
    """A folder was surely meant, not a model name or an ``owner/name`` hub id.

    True for an absolute path (``/...``, or a drive on Windows), one that starts with ``~``
    or ``.`` (``./``, ``../``, ``.``: no hub id starts with a dot), one with a backslash, and
    one with more than one ``/``. Nothing is looked up on disk and ``~`` is not expanded.
    """
    return (
        model_id.startswith(("/", ".", "~"))
        or "\\" in model_id
        or model_id.count("/") > 1
        or os.path.isabs(model_id)
    )


def hub_offline() -> bool:
    """``HF_HUB_OFFLINE`` as set now (huggingface_hub reads it once, at import)."""
    value = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return value.strip().upper() in {"1", "ON", "YES", "TRUE"}


def hub_cache_dir() -> str:
    """The Hugging Face hub cache as the environment says now, resolved as huggingface_hub does."""
    explicit = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")
    if explicit:
        return os.path.expanduser(os.path.expandvars(explicit))
    home = os.environ.get("HF_HOME")
    if not home:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        home = os.path.join(base, "huggingface")
    return os.path.join(os.path.expanduser(os.path.expandvars(home)), "hub")


def check_model_files(folder: Path, files: Iterable[str], kind: str, advice: str) -> None:
    """Refuse a local model ``folder`` that lacks any of ``files``: a one-line
    :class:`ModelError` ``<folder>: not a <kind> model folder: it has no <files>; <advice>``."""
    missing = [name for name in files if not (folder / name).is_file()]
    if missing:
        raise ModelError(
            at(folder, f"not a {kind} model folder: it has no {', '.join(missing)}; {advice}")
        )
