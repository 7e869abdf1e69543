"""Voices: a speaker's trained voice folder (``voices/<speaker>/``) and its anchor rule.

The small public API of :mod:`core.voices.folder`; nothing heavy is imported here. The
espeak-ng draft voice lives in :mod:`core.episodes.synthesis.draft`.
"""

from core.voices.folder import (
    VOICE_ANCHORS,
    VoiceFolder,
    anchor_paths,
    best_anchors,
    is_anchor_length,
    voice_anchors,
)

__all__ = [
    "VOICE_ANCHORS",
    "VoiceFolder",
    "anchor_paths",
    "best_anchors",
    "is_anchor_length",
    "voice_anchors",
]
