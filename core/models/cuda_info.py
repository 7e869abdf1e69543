"""Facts about CUDA on this machine: the NVIDIA driver, what PyTorch's CUDA needs, the GPU.

PyTorch wheels carry their own CUDA runtime; the one host component they need is the NVIDIA
driver, and each CUDA release needs a driver of at least a given version
(:func:`driver_needed`, from NVIDIA's CUDA toolkit release notes). With an older driver
``torch.cuda.is_available()`` is simply ``False`` and everything runs on the CPU;
:func:`cuda_unavailable_reason` turns that into one line naming the driver found and the one
needed. Nothing here downloads, and every probe falls back quietly when its tool is absent
(no NVML, no ``nvidia-smi``, no driver at all). torch is imported inside the functions.
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess  # nosec B404  # only nvidia-smi, a fixed argv without a shell
import warnings
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

PROC_VERSION = Path("/proc/driver/nvidia/version")


@dataclass(frozen=True)
class DriverNeed:
    """The NVIDIA Linux driver a CUDA release needs."""

    cuda: str
    """The CUDA release asked about, e.g. ``"13.0"``."""
    minimum: str
    """The driver branch the toolkit release needs, e.g. ``"580"``."""
    compat_minimum: str | None
    """The oldest driver of the same CUDA major that can still run it through CUDA's
    minor-version compatibility (some features missing), where NVIDIA gives one."""


def driver_needed(cuda: str) -> DriverNeed | None:
    """The minimum Linux driver for CUDA ``cuda`` (``torch.version.cuda``), or ``None`` if
    the release is unknown here.

    From the "CUDA Toolkit and Corresponding Driver Versions" table in NVIDIA's CUDA
    toolkit release notes (Linux x86_64, GA releases), by driver branch.
    """
    match = re.match(r"^\s*(\d+)(?:\.(\d+))?", cuda)
    if not match:
        return None
    major, minor = int(match.group(1)), int(match.group(2) or 0)
    if major == 13:
        return DriverNeed(cuda, "580", "580")
    toolkit_12 = {0: "525", 1: "530", 2: "535", 3: "545", 4: "550", 5: "555", 6: "560",
                  8: "570", 9: "575"}  # fmt: skip
    if major == 12 and minor in toolkit_12:
        return DriverNeed(cuda, toolkit_12[minor], "525")
    if major == 11 and minor == 8:
        return DriverNeed(cuda, "520", "450")
    return None


def version_tuple(version: str) -> tuple[int, ...]:
    """``"570.86.15"`` -> ``(570, 86, 15)``; non-numeric parts end the tuple."""
    parts: list[int] = []
    for part in version.strip().split("."):
        if not part.isdigit():
            break
        parts.append(int(part))
    return tuple(parts)


def driver_satisfies(found: str, needed: str) -> bool:
    """True when driver ``found`` (``"570.86.15"``) is at least ``needed`` (``"580"``)."""
    have = version_tuple(found)
    return bool(have) and have >= version_tuple(needed)


def driver_version() -> tuple[str | None, str]:
    """The NVIDIA driver version and where it was read (NVML, nvidia-smi, /proc), or
    ``(None, why)`` when none is found. Never raises; ``nvidia-smi`` gets 10 s at most."""
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            raw = pynvml.nvmlSystemGetDriverVersion()
        finally:
            pynvml.nvmlShutdown()
        text = raw.decode() if isinstance(raw, bytes) else str(raw)
        if text.strip():
            return text.strip(), "NVML"
    except Exception as exc:  # NVML library missing, no driver, no permission: try the others
        log.debug("NVML gives no driver version (%s); trying nvidia-smi", exc)
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            out = subprocess.run(  # nosec B603  # nvidia-smi from PATH, fixed arguments, no shell
                [smi, "--query-gpu=driver_version", "--format=csv,noheader"],
                capture_output=True, text=True, timeout=10, check=False,
            )  # fmt: skip
            first = out.stdout.strip().splitlines()[0].strip() if out.stdout.strip() else ""
            if out.returncode == 0 and version_tuple(first):
                return first, "nvidia-smi"
        except (OSError, subprocess.SubprocessError):
            pass
    try:
        text = PROC_VERSION.read_text(encoding="utf-8", errors="replace")
        found = re.search(r"Kernel Module\s+(?:for \S+\s+)?(\d+\.\d+(?:\.\d+)?)", text)
        if found:
            return found.group(1), str(PROC_VERSION)
    except OSError:
        pass
    return None, "no NVML library, no nvidia-smi and no /proc/driver/nvidia/version"


@dataclass(frozen=True)
class CudaFacts:
    """What PyTorch and the driver say about CUDA here."""

    torch_version: str
    torch_cuda: str | None
    """The CUDA release PyTorch was built for (``torch.version.cuda``); ``None``: a CPU build."""
    available: bool
    driver: str | None
    driver_source: str
    gpu_name: str | None = None
    vram_gb: float | None = None

    @property
    def need(self) -> DriverNeed | None:
        return driver_needed(self.torch_cuda) if self.torch_cuda else None


def cuda_facts() -> CudaFacts:
    """Ask PyTorch (imported here) and the driver; torch's own warnings are silenced."""
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "driver too old" is said by us, with the versions
        available = bool(torch.cuda.is_available())
    driver, source = driver_version()
    name: str | None = None
    vram: float | None = None
    if available:
        props = torch.cuda.get_device_properties(0)
        name = str(props.name)
        vram = round(float(props.total_memory) / 1024**3, 1)
    cuda_build = torch.version.cuda
    return CudaFacts(
        torch_version=str(torch.__version__),
        torch_cuda=str(cuda_build) if cuda_build else None,
        available=available,
        driver=driver,
        driver_source=source,
        gpu_name=name,
        vram_gb=vram,
    )


def cuda_unavailable_reason(torch_version: str, torch_cuda: str | None, driver: str | None) -> str:
    """Why PyTorch sees no CUDA GPU, in one line naming the driver found and the one needed."""
    if not torch_cuda:
        return (
            f"PyTorch {torch_version} is a CPU-only build; install a CUDA build "
            "(see docs/TRAINING.md, 'An older NVIDIA driver')"
        )
    need = driver_needed(torch_cuda)
    needed = (
        f"driver >= {need.minimum}" if need else "a driver listed for it in NVIDIA's CUDA notes"
    )
    built = f"PyTorch {torch_version} is built for CUDA {torch_cuda}, which needs NVIDIA {needed}"
    if driver is None:
        return (
            f"no NVIDIA driver found (nvidia-smi, NVML); {built}: install the NVIDIA driver "
            "or check that this machine has a GPU"
        )
    if need is not None and not driver_satisfies(driver, need.minimum):
        return (
            f"NVIDIA driver {driver} found, but {built}: upgrade the driver, or install a "
            "PyTorch built for an older CUDA (docs/TRAINING.md, 'An older NVIDIA driver')"
        )
    return (
        f"NVIDIA driver {driver} found and {built}, yet CUDA is unavailable: check "
        "CUDA_VISIBLE_DEVICES and `nvidia-smi`"
    )
