"""Textual stylesheets (.tcss), one per screen; ``STYLES`` is this folder.

Paths are absolute so that subclasses of the app and screens (tests do this) find them.
"""

from pathlib import Path

STYLES = Path(__file__).parent
