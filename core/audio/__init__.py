"""Audio: reading and writing (io), loudness and true peak (meter), the true-peak limiter
(limiter), loudness conditioning and the hum notch (conditioning), MP3 encoding (mp3),
threads for chunked work (parallel), playback and waveform overviews. Pure functions on
float32 numpy arrays; file and device I/O at the edges."""

from core import _compat

__getattr__ = _compat.forward_old_names("core.audio", __file__)
