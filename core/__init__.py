"""podforge core library: dataset kit, training, synthesis, mixing and evaluation.

Never imports Textual. Heavy libraries (torch, transformers, faster_whisper,
speechbrain) are imported inside the functions that need them.
"""

__version__ = "0.1.0"

from core import _compat

_compat.install()
