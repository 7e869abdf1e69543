"""The gates a voice must pass, their thresholds and directions, in one place.

Each gate holds one aggregate of an evaluation to a threshold from ``[eval]`` in
``workspace.toml`` (:class:`core.settings.Evaluation`): WER, CER and the real-time factor
must stay at or below theirs, similarity at or above. A figure that could not be measured
(``None``, e.g. the RTF when no audio was made) fails its gate.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from core.settings import Evaluation

GateResult = tuple[float | None, float, bool]
"""``(value, threshold, passed)``."""


@dataclass(frozen=True)
class Gate:
    name: str
    setting: str
    """The threshold's key in ``[eval]``."""
    direction: Literal["max", "min"]
    """``max``: the value must not exceed the threshold; ``min``: must not fall below it."""

    @property
    def bound(self) -> str:
        """How a table shows the threshold: ``<=`` or ``>=``."""
        return "<=" if self.direction == "max" else ">="

    def passes(self, value: float | None, threshold: float) -> bool:
        if value is None:
            return False
        return value <= threshold if self.direction == "max" else value >= threshold


GATES: tuple[Gate, ...] = (
    Gate("wer", "max_wer", "max"),
    Gate("cer", "max_cer", "max"),
    Gate("similarity", "min_similarity", "min"),
    Gate("rtf", "max_rtf", "max"),
)
BY_NAME: dict[str, Gate] = {gate.name: gate for gate in GATES}


def apply_gates(limits: Evaluation, values: Mapping[str, float | None]) -> dict[str, GateResult]:
    """``{name: (value, threshold, passed)}`` for every gate, in :data:`GATES` order."""
    out: dict[str, GateResult] = {}
    for gate in GATES:
        threshold = float(getattr(limits, gate.setting))
        value = values[gate.name]
        out[gate.name] = (value, threshold, gate.passes(value, threshold))
    return out


def bound(name: str) -> str:
    """``<=`` or ``>=`` for the gate called ``name``."""
    return BY_NAME[name].bound
