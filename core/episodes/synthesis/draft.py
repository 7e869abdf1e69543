"""The draft voice: espeak-ng, from the ``espeakng-loader`` wheel, driven through ctypes.

A robotic but instant, CPU-only and deterministic text-to-speech voice. podforge uses
it to make the demo workspace's "recordings" and as a preview voice for episode
scripts before a trained voice exists.

>>> audio = synthesize("Hello there.", DraftVoice(pitch=40), sample_rate=24000)

Every call runs in a fresh, private instance of the library (espeak-ng keeps state that
would change the samples), voice names are checked in Python first (a wrong one can crash
the process), and importing this module loads nothing.

Details: docs/EPISODES.md, "The draft voice"."""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import locale
import logging
import os
import shutil
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

from core.errors import VoiceError, at

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

__all__ = ["NATIVE_SAMPLE_RATE", "DraftVoice", "available", "synthesize"]

log = logging.getLogger(__name__)

NATIVE_SAMPLE_RATE: int
"""espeak-ng's output rate in Hz (22050), from ``espeak_Initialize``; read lazily."""

# From espeak-ng's speak_lib.h.
_AUDIO_OUTPUT_SYNCHRONOUS: Final = 2
_INITIALIZE_DONT_EXIT: Final = 0x8000
_POS_CHARACTER: Final = 1
_CHARS_UTF8: Final = 1
_SSML: Final = 0x10
_RATE: Final = 1
_VOLUME: Final = 2
_PITCH: Final = 3
_RANGE: Final = 4
_WORDGAP: Final = 7

_REINSTALL: Final = "reinstall espeakng-loader (uv sync --reinstall-package espeakng-loader)"
_VOICE_HINT: Final = (
    "use a language such as 'en-us' or 'en-gb', optionally with a variant ('en-us+f3')"
)

_RANGES: Final[dict[str, tuple[int, int]]] = {
    "pitch": (0, 100),
    "pitch_range": (0, 100),
    "rate": (80, 450),
    "volume": (0, 200),
}
_MIN_SAMPLE_RATE: Final = 8000
_MAX_SAMPLE_RATE: Final = 192000

# int SynthCallback(short *wav, int numsamples, espeak_EVENT *events)
_SynthCallback = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)


@dataclass(frozen=True)
class DraftVoice:
    """How the draft voice sounds. Values are checked when the voice is made.

    ``language`` is an espeak-ng voice: a language code (``"en-us"``, ``"en-gb"``,
    ``"de"``), a voice file (``"gmw/en-US"``) or voice name (``"English (America)"``),
    optionally followed by ``+`` and a variant (``"en-us+f3"``, ``"en-gb+m3"``).
    ``pitch`` and ``pitch_range`` are 0..100 (50 is the voice's own), ``rate`` is in
    words per minute (80..450) and ``volume`` is 0..200 (100 is normal).
    """

    language: str = "en-us"
    pitch: int = 50
    pitch_range: int = 50
    rate: int = 165
    volume: int = 100

    def __post_init__(self) -> None:
        if not isinstance(self.language, str) or not self.language.strip():
            raise VoiceError(f"draft voice: the voice name is empty; {_VOICE_HINT}")
        for field, (low, high) in _RANGES.items():
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise VoiceError(
                    f"draft voice: {field} must be a whole number from {low} to {high}, "
                    f"got {value!r}"
                )


@dataclass(frozen=True)
class _Runtime:
    """What the first use finds out, kept for the life of the process."""

    library: Path  # the file that is loaded: the private copy, or the original
    data: Path  # the espeak-ng-data folder
    native_rate: int
    voices: dict[str, str]  # lower-cased file, name or language code -> voice file
    variants: dict[str, str]  # lower-cased variant name -> variant file name


_lock = threading.Lock()
_runtime_found: _Runtime | None = None
_runtime_failure: str | None = None


def __getattr__(name: str) -> int:
    # Module attribute hook: NATIVE_SAMPLE_RATE loads the library on first read.
    if name == "NATIVE_SAMPLE_RATE":
        with _lock:
            rate = _runtime().native_rate
        globals()["NATIVE_SAMPLE_RATE"] = rate
        return rate
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def available() -> bool:
    """True when espeak-ng loads and initialises (the first call does the work)."""
    with _lock:
        try:
            _runtime()
        except VoiceError as exc:
            log.debug("draft voice unavailable: %s", exc)
            return False
    return True


def synthesize(
    text: str,
    voice: DraftVoice = DraftVoice(),
    sample_rate: int = 24000,
    *,
    ssml: bool = False,
) -> npt.NDArray[np.float32]:
    """Speak ``text``; mono float32 in [-1, 1] at ``sample_rate``.

    espeak-ng's output (:data:`NATIVE_SAMPLE_RATE`) is resampled with soxr "HQ".
    With ``ssml=True`` the text may hold SSML such as ``<break time="400ms"/>`` and
    ``<emphasis>``; a literal ``<`` or ``&`` must then be escaped. The same text and
    voice give the same samples on every call and in every process.

    Raises :class:`~core.errors.VoiceError` for empty text, an unknown voice, a
    sample rate out of range or a library that cannot be loaded.
    """
    # A NUL would end the C string early.
    cleaned = text.replace("\0", " ") if isinstance(text, str) else ""
    if not cleaned.strip():
        raise VoiceError("draft voice: nothing to say, the text is empty")
    if (
        isinstance(sample_rate, bool)
        or not isinstance(sample_rate, int)
        or not _MIN_SAMPLE_RATE <= sample_rate <= _MAX_SAMPLE_RATE
    ):
        raise VoiceError(
            f"draft voice: sample_rate must be a whole number of Hz from {_MIN_SAMPLE_RATE} "
            f"to {_MAX_SAMPLE_RATE}, got {sample_rate!r}"
        )
    payload = cleaned.encode("utf-8", errors="replace") + b"\0"

    import numpy as np

    with _lock:
        runtime = _runtime()
        name = _resolve_voice(runtime, voice.language)
        pcm = _speak(runtime, name, voice, payload, ssml)

    audio: npt.NDArray[np.float32] = pcm.astype(np.float32) / np.float32(32768.0)
    if sample_rate != runtime.native_rate and audio.size:
        import soxr

        audio = np.asarray(
            soxr.resample(audio, runtime.native_rate, sample_rate, quality="HQ"),
            dtype=np.float32,
        )
    clipped: npt.NDArray[np.float32] = np.clip(audio, np.float32(-1.0), np.float32(1.0))
    return clipped


# --- the library ------------------------------------------------------------------


def _runtime() -> _Runtime:
    """The process-wide runtime, made on first use. The caller holds ``_lock``."""
    global _runtime_found, _runtime_failure
    if _runtime_found is None:
        if _runtime_failure is not None:
            raise VoiceError(_runtime_failure)
        try:
            _runtime_found = _make_runtime()
        except VoiceError as exc:
            _runtime_failure = str(exc)
            raise
    return _runtime_found


def _make_runtime() -> _Runtime:
    library, data = _locate()
    voices = _voice_catalog(data)
    variants = _variant_catalog(data)
    candidates: list[Path] = []
    try:
        candidates.append(_private_copy(library))
    except OSError as exc:
        log.warning("draft voice: cannot copy %s (%s); using it in place", library, exc)
    candidates.append(library)
    failure: VoiceError | None = None
    for candidate in candidates:
        try:
            with _instance(candidate, data) as (_lib, rate):
                pass
        except VoiceError as exc:
            log.debug("draft voice: %s", exc)
            failure = exc
            continue
        if candidate == library and len(candidates) > 1:
            log.warning(
                "draft voice: the private copy of %s did not load; using it in place", library
            )
        return _Runtime(candidate, data, rate, voices, variants)
    assert failure is not None  # nosec B101  # narrowing: every candidate failed
    raise failure


def _locate() -> tuple[Path, Path]:
    """The library file and the data folder that ``espeakng-loader`` ships."""
    try:
        import espeakng_loader
    except ImportError as exc:
        raise VoiceError(
            f"draft voice: cannot import espeakng_loader ({exc}); {_REINSTALL}"
        ) from exc
    library = Path(espeakng_loader.get_library_path())
    if not library.is_file():
        raise VoiceError(at(library, f"the espeak-ng library is missing; {_REINSTALL}"))
    try:
        data = Path(espeakng_loader.get_data_path())
    except RuntimeError as exc:
        raise VoiceError(
            f"draft voice: the espeak-ng data is missing ({exc}); {_REINSTALL}"
        ) from exc
    if not (data / "phontab").is_file() or not (data / "lang").is_dir():
        raise VoiceError(at(data, f"the espeak-ng data is incomplete; {_REINSTALL}"))
    return library, data


def _private_copy(library: Path) -> Path:
    """A copy of ``library`` that only this module loads (see the module's notes)."""
    memfd_create = getattr(os, "memfd_create", None)
    proc_fd = Path("/proc/self/fd")
    if memfd_create is not None and proc_fd.is_dir():
        fd = memfd_create("podforge-espeak-ng")  # close-on-exec; lives as long as the process
        try:
            with open(library, "rb") as source, open(fd, "wb", closefd=False) as sink:
                shutil.copyfileobj(source, sink)
        except OSError:
            os.close(fd)
            raise
        return proc_fd / str(fd)
    folder = Path(tempfile.mkdtemp(prefix="podforge-espeak-"))
    atexit.register(shutil.rmtree, folder, True)
    target = folder / library.name
    shutil.copyfile(library, target)
    return target


@contextlib.contextmanager
def _instance(library: Path, data: Path) -> Iterator[tuple[ctypes.CDLL, int]]:
    """A freshly loaded, initialised espeak-ng and its sample rate; unloaded after."""
    saved_ctype = locale.setlocale(locale.LC_CTYPE)
    try:
        lib = ctypes.CDLL(os.fspath(library))
    except OSError as exc:
        raise VoiceError(
            at(library, f"cannot load the espeak-ng library ({exc}); {_REINSTALL}")
        ) from exc
    initialised = False
    try:
        _declare(lib)
        rate = int(
            lib.espeak_Initialize(
                _AUDIO_OUTPUT_SYNCHRONOUS, 0, os.fsencode(data), _INITIALIZE_DONT_EXIT
            )
        )
        if rate <= 0:
            raise VoiceError(at(data, f"espeak-ng cannot read its data here; {_REINSTALL}"))
        initialised = True
        yield lib, rate
    finally:
        if initialised:
            lib.espeak_Terminate()
        _unload(lib)
        with contextlib.suppress(locale.Error):
            locale.setlocale(locale.LC_CTYPE, saved_ctype)


def _declare(lib: ctypes.CDLL) -> None:
    c_int, c_uint = ctypes.c_int, ctypes.c_uint
    lib.espeak_Initialize.argtypes = [c_int, c_int, ctypes.c_char_p, c_int]
    lib.espeak_Initialize.restype = c_int
    lib.espeak_SetSynthCallback.argtypes = [_SynthCallback]
    lib.espeak_SetSynthCallback.restype = None
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    lib.espeak_SetVoiceByName.restype = c_int
    lib.espeak_SetParameter.argtypes = [c_int, c_int, c_int]
    lib.espeak_SetParameter.restype = c_int
    lib.espeak_Synth.argtypes = [
        ctypes.c_char_p,  # text
        ctypes.c_size_t,  # size
        c_uint,  # position
        c_int,  # position_type
        c_uint,  # end_position
        c_uint,  # flags
        ctypes.POINTER(c_uint),  # unique_identifier
        ctypes.c_void_p,  # user_data
    ]
    lib.espeak_Synth.restype = c_int
    lib.espeak_Synchronize.argtypes = []
    lib.espeak_Synchronize.restype = c_int
    lib.espeak_Terminate.argtypes = []
    lib.espeak_Terminate.restype = c_int


def _unload(lib: ctypes.CDLL) -> None:
    """Unload the library so that the next load starts from its pristine state."""
    import _ctypes

    if sys.platform == "win32":
        _ctypes.FreeLibrary(lib._handle)
    else:
        _ctypes.dlclose(lib._handle)


# --- voices -----------------------------------------------------------------------


def _voice_catalog(data: Path) -> dict[str, str]:
    """Map every accepted voice spelling (lower-cased) to a voice file under ``lang/``.

    A file's path (``gmw/en-us``) or name (``en-us``) wins over a voice name
    (``english (america)``), which wins over a language code (``en-gb``); a code goes
    to the voice that lists it with the best (lowest) priority, as in espeak-ng.
    """
    root = data / "lang"
    files: dict[str, str] = {}
    names: dict[str, str] = {}
    languages: dict[str, tuple[int, bool, str]] = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        identifier = path.relative_to(root).as_posix()
        files.setdefault(identifier.lower(), identifier)
        files.setdefault(path.name.lower(), identifier)
        try:
            lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            continue
        for line in lines:
            words = line.split()
            if len(words) < 2:
                continue
            if words[0] == "name":
                name = " ".join(words[1:]).lower()
                names.setdefault(name, identifier)
                names.setdefault(name.replace(" ", "_"), identifier)
            elif words[0] == "language":
                code = words[1].lower()
                priority = int(words[2]) if len(words) > 2 and words[2].isdigit() else 5
                rank = (priority, code != path.name.lower(), identifier)
                if code not in languages or rank < languages[code]:
                    languages[code] = rank
    catalog = {code: rank[2] for code, rank in languages.items()}
    catalog.update(names)
    catalog.update(files)
    return catalog


def _variant_catalog(data: Path) -> dict[str, str]:
    folder = data / "voices" / "!v"
    try:
        entries = sorted(p.name for p in folder.iterdir() if p.is_file())
    except OSError:
        return {}
    return {name.lower(): name for name in entries}


def _resolve_voice(runtime: _Runtime, language: str) -> str:
    """The ``espeak_SetVoiceByName`` argument for ``language``, e.g. ``gmw/en-US+f3``."""
    base, plus, variant = language.strip().partition("+")
    identifier = runtime.voices.get(base.strip().lower())
    if identifier is None:
        raise VoiceError(f"draft voice: espeak-ng has no voice {language!r}; {_VOICE_HINT}")
    if not plus:
        return identifier
    variant_file = runtime.variants.get(variant.strip().lower())
    if variant_file is None:
        raise VoiceError(
            f"draft voice: espeak-ng has no voice variant {variant.strip()!r} in {language!r}; "
            "variants include f1-f5, m1-m7, klatt and whisper"
        )
    return f"{identifier}+{variant_file}"


# --- synthesis --------------------------------------------------------------------


def _speak(
    runtime: _Runtime, name: str, voice: DraftVoice, payload: bytes, ssml: bool
) -> npt.NDArray[np.int16]:
    """Run espeak-ng once on ``payload`` (NUL-terminated UTF-8); native-rate int16."""
    import numpy as np

    chunks: list[bytes] = []
    failures: list[BaseException] = []

    def collect(wav: ctypes._Pointer[ctypes.c_short], count: int, _events: int | None) -> int:
        try:
            if wav and count > 0:
                chunks.append(ctypes.string_at(wav, count * 2))
        except BaseException as exc:  # never let an exception unwind through C
            failures.append(exc)
            return 1  # abort synthesis
        return 0

    callback = _SynthCallback(collect)
    with _instance(runtime.library, runtime.data) as (lib, _rate):
        lib.espeak_SetSynthCallback(callback)
        status = int(lib.espeak_SetVoiceByName(name.encode("utf-8")))
        if status != 0:
            raise VoiceError(
                f"draft voice: espeak-ng cannot use the voice {voice.language!r} "
                f"(error {status}); {_VOICE_HINT}"
            )
        for parameter, value in (
            (_RATE, voice.rate),
            (_VOLUME, voice.volume),
            (_PITCH, voice.pitch),
            (_RANGE, voice.pitch_range),
            (_WORDGAP, 0),
        ):
            status = int(lib.espeak_SetParameter(parameter, value, 0))
            if status != 0:
                raise VoiceError(
                    f"draft voice: espeak-ng refused parameter {parameter} = {value} "
                    f"(error {status})"
                )
        flags = _CHARS_UTF8 | (_SSML if ssml else 0)
        status = int(
            lib.espeak_Synth(payload, len(payload), 0, _POS_CHARACTER, 0, flags, None, None)
        )
        if status == 0:
            status = int(lib.espeak_Synchronize())
        if status != 0:
            raise VoiceError(f"draft voice: espeak-ng failed to speak the text (error {status})")
    if failures:
        raise VoiceError(f"draft voice: collecting espeak-ng's audio failed ({failures[0]!r})")
    return np.frombuffer(b"".join(chunks), dtype=np.int16)
