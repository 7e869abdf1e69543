"""Audio: reading and writing (io), loudness and true peak (meter), the peak limiter and
conditioning (limiter), MP3 encoding (mp3), playback and waveform overviews. Pure functions
on float32 numpy arrays; file and device I/O at the edges."""

from core import _compat

__getattr__ = _compat.forward_old_names("core.audio", __file__)
