"""Small helpers shared by the model loaders (CSM, faster-whisper): hub environment and errors.

huggingface_hub reads its environment once, at import; the loaders read it at call time
through these, so a test or a user can change ``HF_HUB_OFFLINE`` / ``HF_HOME`` later.
"""

from __future__ import annotations

import os


def looks_like_path(model_id: str) -> bool:
    """A folder was meant (absolute, ``./``, ``../``, ``~``), not an org/name hub id."""
    return model_id.startswith(("/", ".", "~")) or model_id.count("/") > 1


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


def one_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__
