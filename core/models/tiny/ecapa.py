"""A tiny random-init ECAPA-TDNN speaker encoder shaped like ``speechbrain/spkrec-ecapa-voxceleb``.

``build_tiny_ecapa(folder)`` writes a folder with the same files as the real model's hub
repository: ``hyperparams.yaml`` (Fbank features, sentence mean normalisation, an ECAPA-TDNN
embedding model, an embedding normaliser, a cosine classifier, a label encoder and the
``pretrainer`` that loads them) and the checkpoints it names (``embedding_model.ckpt``,
``mean_var_norm_emb.ckpt``, ``classifier.ckpt``, ``label_encoder.txt``). The channels are
small (a few hundred kilobytes in all) and the weights are random, drawn from a fixed seed, so
the same code always builds the same model. Speaker identity from it is meaningless; the
plumbing that loads and runs it is the real one (``EncoderClassifier.from_hparams``).

As in the real model, every pretrainer path is ``<pretrained_path>/<file>``. Here
``pretrained_path`` is a ``!PLACEHOLDER``: loading must pass
``overrides={"pretrained_path": folder}``, which is what :mod:`core.models.speaker` does for
every local folder. ``tiny_ecapa_path()`` builds the folder once per user, in the cache.
"""

from __future__ import annotations

from pathlib import Path

from core.models.tiny.build import STAMP_FILE as STAMP_FILE  # re-exported
from core.models.tiny.build import TinyBuild, cache_folder

TINY_ECAPA_VERSION = 1
"""Bumped whenever the files built here change, so that caches of older builds are ignored."""

TINY_ECAPA_SEED = 20240611
N_MELS = 24
EMBEDDING_DIM = 32
SPEAKER_LABELS = tuple(f"tiny-spk-{i:02d}" for i in range(8))

CHECKPOINT_FILES = (
    "embedding_model.ckpt",
    "mean_var_norm_emb.ckpt",
    "classifier.ckpt",
    "label_encoder.txt",
)

HYPERPARAMS_YAML = f"""\
# ############################################################################
# Model: tiny random-init ECAPA for podforge tests and the demo (model id "tiny").
# Same structure as speechbrain/spkrec-ecapa-voxceleb, with small channels.
# Its embeddings carry no speaker identity.
# ############################################################################

# Feature parameters
n_mels: {N_MELS}

# Pretrain folder: the folder holding this file. Load it with
# EncoderClassifier.from_hparams(source=folder, overrides={{"pretrained_path": folder}}).
pretrained_path: !PLACEHOLDER

# Output parameters
out_n_neurons: {len(SPEAKER_LABELS)}

# Model params
compute_features: !new:speechbrain.lobes.features.Fbank
    n_mels: !ref <n_mels>

mean_var_norm: !new:speechbrain.processing.features.InputNormalization
    norm_type: sentence
    std_norm: False

embedding_model: !new:speechbrain.lobes.models.ECAPA_TDNN.ECAPA_TDNN
    input_size: !ref <n_mels>
    channels: [32, 32, 32, 32, 96]
    kernel_sizes: [5, 3, 3, 3, 1]
    dilations: [1, 2, 3, 4, 1]
    attention_channels: 16
    se_channels: 16
    lin_neurons: {EMBEDDING_DIM}

classifier: !new:speechbrain.lobes.models.ECAPA_TDNN.Classifier
    input_size: {EMBEDDING_DIM}
    out_neurons: !ref <out_n_neurons>

mean_var_norm_emb: !new:speechbrain.processing.features.InputNormalization
    norm_type: global
    std_norm: False

modules:
    compute_features: !ref <compute_features>
    mean_var_norm: !ref <mean_var_norm>
    embedding_model: !ref <embedding_model>
    mean_var_norm_emb: !ref <mean_var_norm_emb>
    classifier: !ref <classifier>

label_encoder: !new:speechbrain.dataio.encoder.CategoricalEncoder


pretrainer: !new:speechbrain.utils.parameter_transfer.Pretrainer
    loadables:
        embedding_model: !ref <embedding_model>
        mean_var_norm_emb: !ref <mean_var_norm_emb>
        classifier: !ref <classifier>
        label_encoder: !ref <label_encoder>
    paths:
        embedding_model: !ref <pretrained_path>/embedding_model.ckpt
        mean_var_norm_emb: !ref <pretrained_path>/mean_var_norm_emb.ckpt
        classifier: !ref <pretrained_path>/classifier.ckpt
        label_encoder: !ref <pretrained_path>/label_encoder.txt
"""


def _write_model(folder: Path) -> None:
    """Write every file of the model (but the stamp) into the (empty) ``folder``. The
    weights come from a fixed seed, drawn without touching torch's global RNG state."""
    import torch
    from hyperpyyaml import load_hyperpyyaml

    # Instantiate the modules from the very YAML that will load them, so the state dicts
    # always match it. The placeholder must be filled for the pretrainer paths to resolve.
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(TINY_ECAPA_SEED)  # CPU only, restored after
        hparams = load_hyperpyyaml(HYPERPARAMS_YAML, {"pretrained_path": str(folder)})
        embedding_model: torch.nn.Module = hparams["embedding_model"]
        classifier: torch.nn.Module = hparams["classifier"]
        # Batch norm running statistics: small deterministic perturbations of (0, 1), so the
        # checkpoint exercises every buffer the real one carries.
        for name, buffer in embedding_model.named_buffers():
            if name.endswith("running_mean"):
                buffer.copy_(torch.randn_like(buffer) * 0.1)
            elif name.endswith("running_var"):
                buffer.copy_(1.0 + torch.rand_like(buffer) * 0.2)

    torch.save(embedding_model.state_dict(), folder / "embedding_model.ckpt")
    torch.save(classifier.state_dict(), folder / "classifier.ckpt")
    # The embedding normaliser ("global", mean only): the identity, as saved by its _save hook.
    torch.save(
        {
            "count": 1,
            "glob_mean": torch.zeros(EMBEDDING_DIM),
            "glob_std": torch.ones(EMBEDDING_DIM),
        },
        folder / "mean_var_norm_emb.ckpt",
    )
    label_encoder = hparams["label_encoder"]
    label_encoder.update_from_iterable(SPEAKER_LABELS)
    label_encoder.save(folder / "label_encoder.txt")
    (folder / "hyperparams.yaml").write_text(HYPERPARAMS_YAML, encoding="utf-8")


def podforge_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/podforge``, or ``~/.cache/podforge`` when the variable is unset."""
    return cache_folder("")


# --------------------------------------------------------------------------- the build

TINY_ECAPA = TinyBuild(
    "tiny-ecapa",
    TINY_ECAPA_VERSION,
    TINY_ECAPA_SEED,
    ("hyperparams.yaml", *CHECKPOINT_FILES),
    "tiny ECAPA",
    writer=_write_model,
)
build_tiny_ecapa = TINY_ECAPA.build
"""``build_tiny_ecapa(folder)``: write the tiny ECAPA into ``folder`` (:meth:`TinyBuild.build`)."""
tiny_ecapa_path = TINY_ECAPA.path
"""``tiny_ecapa_path()``: the tiny ECAPA in this user's cache
(``$XDG_CACHE_HOME/podforge/tiny-ecapa-v<N>``), built there on first use."""
