"""Speaker embeddings (ECAPA-TDNN through speechbrain) and cosine similarity between them.

``load_speaker_encoder(model_id)`` takes what ``models.speaker`` in ``workspace.toml`` holds:

- a hub id (``"speechbrain/spkrec-ecapa-voxceleb"``): fetched through the Hugging Face cache,
  with copies (never symlinks) kept in a per-user folder, so it loads offline once it has been
  downloaded; when it is not available offline, a :class:`~core.errors.ModelError` says so;
- a local folder holding a speechbrain model (``hyperparams.yaml`` + checkpoints), read in
  place: every file is fetched from the folder itself (``pretrained_path`` is overridden with
  it), nothing is copied and the network is never used;
- ``"tiny"``: the random-init stand-in of :mod:`core.models.tiny.ecapa`, built in the user's cache
  and then loaded like any local folder, through the same ``EncoderClassifier.from_hparams``.

Audio in is mono float32 at 16 kHz (callers resample). Embeddings come back as float32 numpy
arrays, L2-normalised, so a dot product is a cosine. They are the raw ECAPA embeddings (the
steps of ``EncoderClassifier.encode_batch(normalize=False)``, what speechbrain's own
``SpeakerRecognition`` scores with), and by default a clip's embedding does not depend on
which other clips were embedded with it (see :meth:`SpeakerEncoder.embed_many`).

Importing this module imports neither torch nor speechbrain; loading a model does.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from core.errors import ModelError, one_line
from core.models.device import resolve_device, torch_cuda_count
from core.models.hub import hub_offline, looks_like_path
from core.models.tiny.ecapa import podforge_cache_dir, tiny_ecapa_path

if TYPE_CHECKING:
    import torch

Embeddings = npt.NDArray[np.float32]

SAMPLE_RATE = 16000
"""The sample rate every clip given to :class:`SpeakerEncoder` must have."""

MIN_SAMPLES = 400
"""The shortest clip that can be embedded (25 ms, one Fbank window)."""

HYPERPARAMS_FILE = "hyperparams.yaml"
_PRETRAINED_PATH_KEY = re.compile(r"^pretrained_path\s*:", re.MULTILINE)


class SpeakerEncoder:
    """A loaded speaker-embedding model: clips of 16 kHz audio in, unit vectors out.

    Made by :func:`load_speaker_encoder`; wraps a speechbrain ``EncoderClassifier``.
    """

    embedding_dim: int
    """Length of every embedding."""

    def __init__(self, classifier: Any, model_id: str, source: str, device: str) -> None:
        self._classifier = classifier
        self.model_id = model_id
        """What was asked for (``"tiny"``, a hub id or a folder)."""
        self.source = source
        """Where it was loaded from (the hub id, or the absolute folder)."""
        self.device = device
        """The torch device the model runs on (``"cpu"``, ``"cuda:0"``)."""
        probe = np.zeros(SAMPLE_RATE // 2, dtype=np.float32)
        self.embedding_dim = int(self._encode([probe]).shape[1])

    def __repr__(self) -> str:
        return (
            f"SpeakerEncoder(model_id={self.model_id!r}, device={self.device!r}, "
            f"embedding_dim={self.embedding_dim})"
        )

    def embed(self, audio16k: npt.ArrayLike) -> Embeddings:
        """The embedding of one clip: shape ``(embedding_dim,)``, float32, unit norm."""
        row: Embeddings = self.embed_many([audio16k])[0]
        return row

    def embed_many(
        self, clips: Sequence[npt.ArrayLike], batch_size: int = 16, *, exact: bool = True
    ) -> Embeddings:
        """Embeddings of many clips: shape ``(len(clips), embedding_dim)``, float32, unit rows.

        ``exact=True`` (the default): each clip's embedding is exactly what :meth:`embed`
        gives it, whatever else is in the call. Clips of the same length share batches of up
        to ``batch_size``; clips of different lengths never share one, because padding
        changes ECAPA embeddings (its convolutions reach across the end of a shorter clip).

        ``exact=False``: clips are sorted by length and run in batches of up to
        ``batch_size``, zero-padded to the longest of their batch, with relative lengths
        (``wav_lens``) for the normalisation and the pooling, and with the padded feature
        frames zeroed after normalisation (speechbrain's ``encode_batch`` leaves them at about
        -60, which leaks into the last frames of a shorter clip). Faster on a GPU, but an
        embedding then depends slightly on its batch (cosine to the exact one > 0.999).
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, not {batch_size}")
        arrays = [_as_clip(clip, index) for index, clip in enumerate(clips)]
        out = np.zeros((len(arrays), self.embedding_dim), dtype=np.float32)
        # Longest first, then by position: the same clips always form the same batches.
        order = sorted(range(len(arrays)), key=lambda i: (-arrays[i].shape[0], i))
        batches: list[list[int]] = []
        for index in order:
            last = batches[-1] if batches else None
            if (
                last is not None
                and len(last) < batch_size
                and (not exact or arrays[last[0]].shape[0] == arrays[index].shape[0])
            ):
                last.append(index)
            else:
                batches.append([index])
        for batch in batches:
            out[batch] = self._encode([arrays[i] for i in batch])
        return out

    def _encode(self, clips: list[npt.NDArray[np.float32]]) -> Embeddings:
        """Run one batch (zero-padded to its longest clip) through the model; unit rows.

        The steps of speechbrain's ``EncoderClassifier.encode_batch(normalize=False)``, plus
        zeroing the padded frames of the normalised features (a no-op without padding).
        """
        import torch
        from speechbrain.processing.features import make_padding_mask

        longest = max(clip.shape[0] for clip in clips)
        batch = np.zeros((len(clips), longest), dtype=np.float32)
        for row, clip in enumerate(clips):
            batch[row, : clip.shape[0]] = clip
        lengths = np.array([clip.shape[0] / longest for clip in clips], dtype=np.float32)
        mods = self._classifier.mods
        with torch.inference_mode():
            wavs = torch.from_numpy(batch).to(self.device)
            wav_lens = torch.from_numpy(lengths).to(self.device)
            feats = mods.compute_features(wavs)
            feats = mods.mean_var_norm(feats, wav_lens)
            feats = feats.masked_fill(~make_padding_mask(feats, wav_lens), 0.0)
            emb: torch.Tensor = mods.embedding_model(feats, wav_lens)
            emb = emb.reshape(len(clips), -1).float()
            emb = torch.nn.functional.normalize(emb, p=2.0, dim=1, eps=1e-12)
            result: Embeddings = emb.cpu().numpy().astype(np.float32, copy=False)
        return result


def resolve_speaker_model(model_id: str) -> str:
    """Where ``model_id`` loads from: ``"tiny"`` -> the tiny model's folder (built on first use);
    an existing local folder -> its absolute path; anything else -> unchanged (a hub id)."""
    if model_id == "tiny":
        return str(tiny_ecapa_path())
    folder = Path(model_id).expanduser()
    if folder.is_dir():
        return str(folder.resolve())
    return model_id


def default_savedir(source: str) -> Path:
    """The per-user folder speechbrain collects a model's files in: under
    ``~/.cache/podforge/speechbrain/`` (``$XDG_CACHE_HOME`` is honoured), one per model."""
    if Path(source).is_absolute():
        digest = hashlib.sha256(source.encode("utf-8")).hexdigest()[:12]
        name = f"local-{_safe(Path(source).name)}-{digest}"
    else:
        name = _safe(source.replace("/", "--"))
    return podforge_cache_dir() / "speechbrain" / name


def load_speaker_encoder(
    model_id: str, device: str = "auto", savedir: Path | None = None
) -> SpeakerEncoder:
    """Load the speaker model ``model_id`` (a hub id, a local folder or ``"tiny"``).

    ``device`` is ``"auto"`` (the first CUDA GPU if torch sees one, else the CPU), ``"cpu"``,
    ``"cuda"`` or ``"cuda:N"``. ``savedir`` is where speechbrain collects copies of a hub
    model's files (default: :func:`default_savedir`); a local folder is read in place. Raises
    :class:`~core.errors.ModelError`, one line naming the model, when it cannot be found or
    loaded.
    """
    source = resolve_speaker_model(model_id)
    local = Path(source).is_dir()
    if local:
        _check_model_folder(Path(source))
    elif looks_like_path(model_id):
        raise ModelError(
            f"speaker model folder '{model_id}' does not exist: set models.speaker in "
            f'workspace.toml to an existing folder, a hub id or "tiny"'
        )
    # speechbrain warns about a bare "cuda" (no index) and falls back to device 0.
    torch_device = resolve_device(
        device, "speaker model", torch_cuda_count, "PyTorch", first_gpu="cuda:0"
    )

    from speechbrain.inference.classifiers import EncoderClassifier
    from speechbrain.utils.fetching import FetchConfig, LocalStrategy

    kwargs: dict[str, Any] = {"source": source, "run_opts": {"device": torch_device}}
    if local:
        # Read every file in place: with NO_LINK, fetch returns the folder's own paths and
        # nothing is copied or linked (into savedir, if one is given at all), and
        # overwrite=True makes it ignore whatever an older run left in that savedir. The
        # real model's hyperparams point pretrained_path at the hub: overriding it with the
        # folder keeps the checkpoints local too.
        kwargs["savedir"] = None if savedir is None else str(savedir)
        kwargs["local_strategy"] = LocalStrategy.NO_LINK
        kwargs["fetch_config"] = FetchConfig(overwrite=True, allow_network=False)
        try:
            hparams_text = (Path(source) / HYPERPARAMS_FILE).read_text(encoding="utf-8")
            if _PRETRAINED_PATH_KEY.search(hparams_text):
                kwargs["overrides"] = {"pretrained_path": source}
            classifier = EncoderClassifier.from_hparams(**kwargs)
            return SpeakerEncoder(classifier, model_id, source, torch_device)
        except Exception as exc:
            raise _load_error(model_id, source, True, exc) from exc

    # A hub id. Copies, not symlinks into the HF cache: they survive a cache purge, and a
    # later load finds them in savedir without asking the hub at all. The local copies and
    # the HF cache are tried first, since with no network huggingface_hub retries for about
    # 20 s before it falls back to its cache.
    kwargs["savedir"] = str(default_savedir(source) if savedir is None else savedir)
    kwargs["local_strategy"] = LocalStrategy.COPY
    try:
        try:
            classifier = EncoderClassifier.from_hparams(
                fetch_config=FetchConfig(allow_network=False), **kwargs
            )
        except Exception as exc:
            if hub_offline() or not _is_unavailable(exc):
                raise
            classifier = EncoderClassifier.from_hparams(
                fetch_config=FetchConfig(allow_network=True), **kwargs
            )
        return SpeakerEncoder(classifier, model_id, source, torch_device)
    except Exception as exc:
        raise _load_error(model_id, source, False, exc) from exc


def cosine(a: npt.ArrayLike, b: npt.ArrayLike) -> npt.NDArray[np.float32] | float:
    """Cosine similarity. Two vectors -> a float; rows ``(n, d)`` against a vector ``(d,)``
    (or the other way round) -> ``(n,)``; rows ``(n, d)`` against rows ``(m, d)`` -> the
    ``(n, m)`` matrix of every pair. Zero vectors have similarity 0 with everything."""
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    if x.ndim not in (1, 2) or y.ndim not in (1, 2):
        raise ValueError(
            f"cosine takes vectors or rows of vectors, not shapes {x.shape}, {y.shape}"
        )
    if x.shape[-1] != y.shape[-1]:
        raise ValueError(f"cosine of vectors of different lengths: {x.shape} and {y.shape}")
    xn = x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)
    yn = y / np.maximum(np.linalg.norm(y, axis=-1, keepdims=True), 1e-12)
    sim = np.clip(xn @ yn.T, -1.0, 1.0)
    if x.ndim == 1 and y.ndim == 1:
        return float(sim)
    result: npt.NDArray[np.float32] = sim.astype(np.float32)
    return result


def similarity_to_anchors(embeddings: npt.ArrayLike, anchors: npt.ArrayLike) -> Embeddings:
    """For each row of ``embeddings``, its MEAN cosine similarity to the anchor embeddings.

    The mean (not the max) so that one odd anchor cannot vouch for a clip on its own: a
    clip must resemble the speaker's anchors as a whole. A single vector is taken as one
    row; a single anchor as one anchor. Returns float32, shape ``(n,)``, values in [-1, 1].
    """
    rows = np.atleast_2d(np.asarray(embeddings, dtype=np.float32))
    refs = np.atleast_2d(np.asarray(anchors, dtype=np.float32))
    if refs.shape[0] == 0:
        raise ValueError("similarity_to_anchors needs at least one anchor embedding")
    if rows.shape[0] == 0:
        return np.zeros(0, dtype=np.float32)
    matrix = np.asarray(cosine(rows, refs), dtype=np.float32)
    result: Embeddings = np.clip(matrix.mean(axis=1), -1.0, 1.0).astype(np.float32)
    return result


def _as_clip(clip: npt.ArrayLike, index: int) -> npt.NDArray[np.float32]:
    """``clip`` as a 1-D float32 array, or a ValueError naming its index."""
    array = np.asarray(clip, dtype=np.float32)
    if array.ndim == 2 and 1 in array.shape:
        array = array.reshape(-1)
    if array.ndim != 1:
        raise ValueError(f"clip {index}: expected mono audio (1-D), got shape {array.shape}")
    if array.shape[0] < MIN_SAMPLES:
        raise ValueError(
            f"clip {index}: {array.shape[0]} samples is too short to embed "
            f"(at least {MIN_SAMPLES}, {MIN_SAMPLES / SAMPLE_RATE * 1000:.0f} ms at 16 kHz)"
        )
    if not np.all(np.isfinite(array)):
        raise ValueError(f"clip {index}: audio holds NaN or infinite samples")
    return np.ascontiguousarray(array)


def _check_model_folder(folder: Path) -> None:
    if not (folder / HYPERPARAMS_FILE).is_file():
        raise ModelError(
            f"speaker model folder '{folder}' is not a speechbrain model (no {HYPERPARAMS_FILE}):"
            " point models.speaker in workspace.toml at a download of"
            ' speechbrain/spkrec-ecapa-voxceleb, a hub id or "tiny"'
        )


def _load_error(model_id: str, source: str, local: bool, exc: BaseException) -> ModelError:
    reason = one_line(exc)
    if local:
        return ModelError(
            f"speaker model folder '{source}' cannot be loaded ({reason}): check its "
            f"{HYPERPARAMS_FILE} and checkpoints, or set models.speaker in workspace.toml to "
            'a hub id or "tiny"'
        )
    from huggingface_hub import errors as hf_errors

    if isinstance(exc, hf_errors.RepositoryNotFoundError | hf_errors.GatedRepoError):
        return ModelError(
            f"speaker model '{model_id}' was not found on the Hugging Face hub ({reason}): "
            'check models.speaker in workspace.toml (a hub id, a local folder or "tiny")'
        )
    if _is_unavailable(exc):
        return ModelError(
            f"speaker model '{model_id}' is not available offline: download it once "
            f"(with network access, run podforge once or `hf download {model_id}`) or set "
            f'models.speaker in workspace.toml to a local folder or "tiny"'
        )
    return ModelError(
        f"speaker model '{model_id}' cannot be loaded ({reason}): delete "
        f"{default_savedir(source)} and its Hugging Face cache entry to fetch it again, or set"
        ' models.speaker in workspace.toml to a local folder or "tiny"'
    )


def _is_unavailable(exc: BaseException) -> bool:
    """True when ``exc`` (or what caused it) says the files could not be fetched."""
    from huggingface_hub import errors as hf_errors

    unavailable: tuple[type[BaseException], ...] = (
        hf_errors.LocalEntryNotFoundError,
        hf_errors.OfflineModeIsEnabled,
        hf_errors.EntryNotFoundError,
        hf_errors.HfHubHTTPError,
        ConnectionError,
        TimeoutError,
    )
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, unavailable):
            return True
        name = type(seen).__name__
        if name in {"ConnectError", "ConnectTimeout", "ReadTimeout", "ConnectionError"}:
            return True  # httpx / requests network failures, without importing them
        seen = seen.__cause__ or seen.__context__
    return False


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "model"
