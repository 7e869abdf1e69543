"""Voices: the espeak-ng draft voice; trained CSM voices later."""
