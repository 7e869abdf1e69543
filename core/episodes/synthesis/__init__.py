"""Speech synthesis for episode lines: backends (the espeak-ng draft voice, CSM + LoRA
voices) and the per-line render cache."""
