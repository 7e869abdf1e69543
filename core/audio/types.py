"""The array types of the audio code: :data:`FloatArray`, what every audio function takes and
returns (float32 samples in [-1, 1], ``(n,)`` for mono or ``(n, channels)``), and the
float64/int64 arrays of measurements and sample indices."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]
Float64Array = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
