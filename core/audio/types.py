"""The array type every audio function takes and returns: float32 samples in [-1, 1],
``(n,)`` for mono or ``(n, channels)``."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]
