"""A tiny random-init Whisper in faster-whisper's (CTranslate2) format, built with no download.

``build_tiny_whisper(folder)`` writes the same files as a converted hub model, so that
``faster_whisper.WhisperModel(folder)`` loads it offline; it builds without importing torch.
Its transcripts are garbage; the plumbing that loads and runs it is the real one. A few
deliberate offsets make that garbage stop early and look like words. The same seed and
library versions give byte-identical files. ``tiny_whisper_path()`` builds it once per user,
in ``$XDG_CACHE_HOME/podforge`` (or ``~/.cache/podforge``).

Details: docs/TESTING.md, "Tiny models"; size and build time in docs/PERFORMANCE.md."""

from __future__ import annotations

import contextlib
import importlib
import importlib.abc
import importlib.machinery
import itertools
import math
import sys
import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import numpy.typing as npt

from core.models.tiny.build import STAMP_FILE as STAMP_FILE  # re-exported
from core.models.tiny.build import TinyBuild, write_json
from core.models.tiny.build import token_id as build_token_id

TINY_WHISPER_VERSION = 1
"""Bumped whenever the files built here change, so that caches of older builds are ignored."""

TINY_WHISPER_SEED = 20240612
MODEL_FILES = (
    "model.bin",
    "config.json",
    "vocabulary.json",
    "tokenizer.json",
    "preprocessor_config.json",
)

# Architecture. The position tables are Whisper's real lengths: faster-whisper always pads
# the features to 30 s (3000 frames, 1500 after the stride-2 convolution) and decodes up to
# 448 tokens.
N_MELS = 80
D_MODEL = 64
N_HEADS = 4
FFN_DIM = 256
ENCODER_LAYERS = 2
DECODER_LAYERS = 2
ENCODER_POSITIONS = 1500
DECODER_POSITIONS = 448
WEIGHT_STD = 0.3

# Shaping of the random decoder's output (see _fill_weights and _output_bias): it ends by
# itself after some 10 to 40 tokens, mostly whole words, with no timestamps inside text.
END_RAMP_TOKENS = 3.0
END_GAIN = 8.0
WORD_BIAS = 1.0
BYTE_BIAS = -3.0
TIMESTAMP_BIAS = -10.0

# The first languages in Whisper's order; an English-only model only ever uses <|en|>.
LANGUAGES = ("en", "zh", "de", "es", "ru", "ko", "fr", "ja", "pt")
TASK_TOKENS = (
    "<|translate|>",
    "<|transcribe|>",
    "<|startoflm|>",
    "<|startofprev|>",
    "<|nospeech|>",
    "<|notimestamps|>",
)
TIMESTAMPS = tuple(f"<|{i * 0.02:.2f}|>" for i in range(1501))  # <|0.00|> .. <|30.00|>

BPE_MERGES = 64
BPE_CORPUS = (
    "and so my fellow americans ask not what your country can do for you "
    "ask what you can do for your country. welcome back to the show, today we talk "
    "about voices, recording, microphones and the people who listen to them. "
    "thanks for being here, it is really good to have you on the podcast again. "
    "the quick brown fox jumps over the lazy dog while the host reads the news."
)

Float32Array = npt.NDArray[np.float32]


# --------------------------------------------------------------------------- the files


def _write_model(folder: Path) -> None:
    """Write every file of the model (but the stamp) into the (empty) ``folder``."""
    tokenizer = _make_tokenizer()
    vocabulary = [tokenizer.id_to_token(i) for i in range(tokenizer.get_vocab_size())]

    def token_id(token: str) -> int:
        return build_token_id(tokenizer, token, "tiny whisper")

    with _specs_without_torch() as specs:
        spec = specs.WhisperSpec(ENCODER_LAYERS, N_HEADS, DECODER_LAYERS, N_HEADS)
        _fill_weights(spec, vocabulary)
        spec.register_vocabulary(vocabulary)
        config = spec.config
        config.suppress_ids = []
        config.suppress_ids_begin = [token_id("Ġ"), token_id("<|endoftext|>")]
        config.lang_ids = [token_id(f"<|{code}|>") for code in LANGUAGES]
        # Word timing uses the cross-attention of these heads: the last half of the layers.
        config.alignment_heads = [
            [layer, head]
            for layer in range(DECODER_LAYERS // 2, DECODER_LAYERS)
            for head in range(N_HEADS)
        ]
        spec.validate()
        spec.optimize()  # aliases the output projection to the (tied) token embeddings
        spec.save(str(folder))

    tokenizer.save(str(folder / "tokenizer.json"))
    preprocessor = {
        "chunk_length": 30,
        "feature_extractor_type": "WhisperFeatureExtractor",
        "feature_size": N_MELS,
        "hop_length": 160,
        "n_fft": 400,
        "n_samples": 480000,
        "nb_max_frames": 3000,
        "padding_side": "right",
        "padding_value": 0.0,
        "return_attention_mask": False,
        "sampling_rate": 16000,
    }
    write_json(folder / "preprocessor_config.json", preprocessor)


def _fill_weights(spec: Any, vocabulary: Sequence[str]) -> None:
    """Set every weight of a ``WhisperSpec`` (as the Hugging Face converter lays them out)."""
    rng = np.random.default_rng(TINY_WHISPER_SEED)
    d = D_MODEL

    def normal(*shape: int) -> Float32Array:
        return (rng.standard_normal(shape) * WEIGHT_STD).astype(np.float32)

    def linear(layer: Any, out_dim: int, in_dim: int, bias: bool = True) -> None:
        layer.weight = normal(out_dim, in_dim)
        if bias:
            layer.bias = normal(out_dim)

    def layer_norm(layer: Any) -> None:
        layer.gamma = np.ones(d, dtype=np.float32)
        layer.beta = np.zeros(d, dtype=np.float32)

    def ffn(layer: Any) -> None:
        layer_norm(layer.layer_norm)
        linear(layer.linear_0, FFN_DIM, d)
        linear(layer.linear_1, d, FFN_DIM)

    encoder = spec.encoder
    encoder.conv1.weight = normal(d, N_MELS, 3)
    encoder.conv1.bias = normal(d)
    encoder.conv2.weight = normal(d, d, 3)
    encoder.conv2.bias = normal(d)
    encoder.position_encodings.encodings = _sinusoids(ENCODER_POSITIONS, d)
    layer_norm(encoder.layer_norm)
    for layer in encoder.layer:
        layer_norm(layer.self_attention.layer_norm)
        linear(layer.self_attention.linear[0], 3 * d, d)  # fused q, k, v
        linear(layer.self_attention.linear[1], d, d)
        ffn(layer.ffn)

    decoder = spec.decoder
    embeddings = normal(len(vocabulary), d)
    # An "end" direction that grows with the position and that <|endoftext|> reads out: the
    # longer the text so far, the likelier it ends, as with a trained model (a random one
    # would otherwise run to the length limit every time).
    end_direction = normal(d)
    end_direction /= np.linalg.norm(end_direction)
    ramp = np.arange(DECODER_POSITIONS, dtype=np.float32)[:, None] / END_RAMP_TOKENS
    positions = normal(DECODER_POSITIONS, d) + ramp * end_direction
    embeddings[vocabulary.index("<|endoftext|>")] = end_direction * END_GAIN
    decoder.embeddings.weight = embeddings
    decoder.position_encodings.encodings = positions
    layer_norm(decoder.layer_norm)
    decoder.projection.weight = embeddings  # Whisper ties the output layer to the embeddings
    decoder.projection.bias = _output_bias(vocabulary)
    for layer in decoder.layer:
        layer_norm(layer.self_attention.layer_norm)
        linear(layer.self_attention.linear[0], 3 * d, d)  # fused q, k, v
        linear(layer.self_attention.linear[1], d, d)
        layer_norm(layer.attention.layer_norm)
        linear(layer.attention.linear[0], d, d)  # q
        linear(layer.attention.linear[1], 2 * d, d)  # fused k, v over the encoder output
        linear(layer.attention.linear[2], d, d)
        ffn(layer.ffn)


def _output_bias(vocabulary: Sequence[str]) -> Float32Array:
    """Logit offsets that make the random decoder's output look like a trained one's.

    Whisper's real output layer has no bias. Here whole-word tokens (a space and letters)
    get a boost and stray non-ASCII bytes a penalty, so the text is mostly words, and the
    timestamp tokens a large penalty, so that they never appear inside text.
    """
    bias = np.zeros(len(vocabulary), dtype=np.float32)
    for i, token in enumerate(vocabulary):
        if token.startswith("<|"):
            continue
        body = token.removeprefix("Ġ")
        if body.isascii() and body.isalpha() and token.startswith("Ġ") and len(body) > 1:
            bias[i] = WORD_BIAS
        elif not (body.isascii() and body.isprintable()):
            bias[i] = BYTE_BIAS
    bias[len(vocabulary) - len(TIMESTAMPS) :] = TIMESTAMP_BIAS
    return bias


def _sinusoids(length: int, channels: int) -> Float32Array:
    """Whisper's fixed sinusoidal position table for the encoder."""
    increment = math.log(10000) / (channels // 2 - 1)
    inv_timescales = np.exp(-increment * np.arange(channels // 2))
    scaled = np.arange(length)[:, None] * inv_timescales[None, :]
    return np.concatenate([np.sin(scaled), np.cos(scaled)], axis=1).astype(np.float32)


def _make_tokenizer() -> Any:
    """A byte-level BPE ``tokenizers.Tokenizer`` with Whisper's special tokens after it."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

    pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    vocab = {symbol: i for i, symbol in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    words = [piece for piece, _ in pre_tokenizer.pre_tokenize_str(BPE_CORPUS)]
    merges = _learn_merges(words, BPE_MERGES)
    for left, right in merges:
        vocab.setdefault(left + right, len(vocab))

    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tokenizer.pre_tokenizer = pre_tokenizer
    tokenizer.decoder = decoders.ByteLevel()
    specials = [
        "<|endoftext|>",
        "<|startoftranscript|>",
        *(f"<|{code}|>" for code in LANGUAGES),
        *TASK_TOKENS,
        *TIMESTAMPS,
    ]
    # Added in order, so their ids follow the BPE vocabulary: eot = len(vocab), and the
    # timestamps are the last ids, right after <|notimestamps|>, as Whisper decoding expects.
    tokenizer.add_special_tokens([AddedToken(token, special=True) for token in specials])
    return tokenizer


def _learn_merges(words: Sequence[str], count: int) -> list[tuple[str, str]]:
    """Plain BPE on ``words``: the ``count`` most frequent adjacent pairs, merged in turn.

    Ties go to the alphabetically first pair, so the result never depends on hash order.
    """
    corpus = Counter(tuple(word) for word in words)
    merges: list[tuple[str, str]] = []
    for _ in range(count):
        pairs: Counter[tuple[str, str]] = Counter()
        for symbols, freq in corpus.items():
            for pair in itertools.pairwise(symbols):
                pairs[pair] += freq
        if not pairs:
            break
        best = min(pairs, key=lambda pair: (-pairs[pair], pair))
        merges.append(best)
        merged: Counter[tuple[str, ...]] = Counter()
        for symbols, freq in corpus.items():
            out: list[str] = []
            i = 0
            while i < len(symbols):
                if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == best:
                    out.append(symbols[i] + symbols[i + 1])
                    i += 2
                else:
                    out.append(symbols[i])
                    i += 1
            merged[tuple(out)] += freq
        corpus = merged
    return merges


# ------------------------------------------------- ctranslate2.specs without importing torch


class _RefuseTorch(importlib.abc.MetaPathFinder):
    """Makes ``import torch`` fail in one thread only, while ``ctranslate2.specs`` imports."""

    def __init__(self, thread_id: int) -> None:
        self.thread_id = thread_id

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if threading.get_ident() == self.thread_id and fullname.split(".")[0] == "torch":
            raise ModuleNotFoundError("torch is not needed for the tiny Whisper", name=fullname)
        return None


@contextlib.contextmanager
def _specs_without_torch() -> Iterator[ModuleType]:
    """``ctranslate2.specs``, imported without torch when torch is not loaded already.

    ``ctranslate2.specs`` imports torch when it can (only to accept torch tensors as
    weights). That costs seconds and hundreds of megabytes; numpy weights need none of it.
    So, when neither is imported yet, the import runs with torch refused in this thread,
    and afterwards the torch-less ``ctranslate2.specs`` modules are dropped from
    ``sys.modules``, so that a later import elsewhere gets the normal, torch-aware ones.
    """
    if "ctranslate2.specs" in sys.modules or "torch" in sys.modules:
        yield importlib.import_module("ctranslate2.specs")
        return
    import ctranslate2

    before = set(sys.modules)
    finder = _RefuseTorch(threading.get_ident())
    sys.meta_path.insert(0, finder)
    try:
        specs = importlib.import_module("ctranslate2.specs")
    finally:
        sys.meta_path.remove(finder)
    try:
        yield specs
    finally:
        for name in set(sys.modules) - before:
            if name == "ctranslate2.specs" or name.startswith("ctranslate2.specs."):
                del sys.modules[name]
        with contextlib.suppress(AttributeError):
            delattr(ctranslate2, "specs")


# --------------------------------------------------------------------------- the build

TINY_WHISPER = TinyBuild(
    "tiny-whisper",
    TINY_WHISPER_VERSION,
    TINY_WHISPER_SEED,
    MODEL_FILES,
    "tiny Whisper",
    writer=_write_model,
)
build_tiny_whisper = TINY_WHISPER.build
"""``build_tiny_whisper(folder)``: write the tiny Whisper into ``folder``
(:meth:`TinyBuild.build`)."""
tiny_whisper_path = TINY_WHISPER.path
"""``tiny_whisper_path()``: the tiny Whisper in this user's cache, built there on first use."""
