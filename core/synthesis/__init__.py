"""Speech synthesis for episodes: backends (draft espeak-ng voice, CSM + LoRA voices),
the per-line render cache, and the renderer that turns a script into a mixed episode."""
