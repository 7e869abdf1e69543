"""Evaluation of a voice: WER/CER by back-transcription, identity similarity, real-time
factor, and the gates a voice must pass."""

from core import _compat

__getattr__ = _compat.forward_old_names("core.evaluation", __file__)
