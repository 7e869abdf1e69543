"""The built-in demo workspace: a deterministic synthetic corpus (corpus) and the workspace
built from it (workspace)."""

from core import _compat

__getattr__ = _compat.forward_old_names("core.demo", __file__)
