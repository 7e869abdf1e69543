"""The loudness target and true-peak ceiling an episode is mastered to, resolved in one place.

A script's ``[mix]`` wins (``target_lufs``, ``true_peak_dbtp``); then a platform preset
(:data:`LOUDNESS_PRESETS`, the script's ``[mix] preset`` or the workspace's ``[episode]
preset``); without either a mono master takes the workspace's ``audio.target_lufs`` and a
stereo one -16 LUFS. The
ceiling is the lower of the script's and the workspace's. The render masters to this and
records it in the manifest; the editor's report measures the mix against it, within the
tolerance ``docs/EPISODES.md`` promises (0.5 LU).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from core.settings import Settings

if TYPE_CHECKING:
    from core.episodes.script import ScriptMix

STEREO_TARGET_LUFS: Final = -16.0
"""The target of a stereo master whose script sets none."""
LOUDNESS_TOLERANCE_LU: Final = 0.5
"""How far a master's integrated loudness may lie from its target."""
PEAK_TOLERANCE_DB: Final = 0.05
"""How far over the ceiling a reported true peak may read (the figure is rounded)."""


LOUDNESS_PRESETS: Final[dict[str, tuple[float, float, float]]] = {
    "apple": (-16.0, -19.0, -1.0),
    "spotify": (-14.0, -14.0, -1.0),
    "youtube": (-14.0, -14.0, -1.0),
    "ebu-r128": (-23.0, -23.0, -1.0),
    "aes-speech": (-18.0, -18.0, -1.0),
}
"""Platform presets: ``name -> (stereo LUFS, mono LUFS, true-peak ceiling dBTP)``. Apple
Podcasts asks -16 LUFS for stereo and -19 for mono; Spotify and YouTube normalise to -14;
EBU R128 broadcast is -23; AES's streaming recommendation for speech is -18; each at most
-1 dBTP."""


@dataclass(frozen=True)
class MasterTarget:
    """What a master is brought to: integrated loudness ``lufs`` within ``tolerance_lu``,
    true peak at or under ``ceiling_dbtp``."""

    lufs: float
    ceiling_dbtp: float
    tolerance_lu: float = LOUDNESS_TOLERANCE_LU

    def loudness_ok(self, lufs: float) -> bool:
        """Whether a measured loudness meets the target."""
        return abs(lufs - self.lufs) <= self.tolerance_lu

    def peak_ok(self, true_peak_dbtp: float) -> bool:
        """Whether a measured true peak stays under the ceiling."""
        return true_peak_dbtp <= self.ceiling_dbtp + PEAK_TOLERANCE_DB


def stereo_master(mix: ScriptMix | None, settings: Settings | None = None) -> bool:
    """Whether the master is stereo: the script's ``[mix] stereo`` or the workspace's
    ``[episode] stereo``."""
    episode_stereo = settings.episode.stereo if settings is not None else False
    return (mix is not None and mix.stereo) or episode_stereo


def master_target(mix: ScriptMix | None, settings: Settings | None = None) -> MasterTarget:
    """The target and ceiling for a script's ``[mix]`` (None: a script without one, or one
    that does not parse) in a workspace with ``settings`` (None: the default settings)."""
    settings = settings if settings is not None else Settings()
    audio = settings.audio
    preset = (mix.preset if mix is not None else None) or settings.episode.preset or None
    stereo = stereo_master(mix, settings)
    ceiling = audio.true_peak_dbtp if mix is None else min(mix.true_peak_dbtp, audio.true_peak_dbtp)
    if mix is not None and mix.target_lufs is not None:
        lufs = mix.target_lufs
    elif preset is not None:
        stereo_lufs, mono_lufs, preset_ceiling = LOUDNESS_PRESETS[preset]
        lufs = stereo_lufs if stereo else mono_lufs
        ceiling = min(ceiling, preset_ceiling)
    elif stereo:
        lufs = STEREO_TARGET_LUFS
    else:
        lufs = audio.target_lufs
    return MasterTarget(lufs=lufs, ceiling_dbtp=ceiling)
