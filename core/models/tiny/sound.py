"""A tiny random-init Stable Audio pipeline (diffusers ``StableAudioPipeline``), built locally.

``build_tiny_sound(folder)`` writes the folder layout of the hub repository
``stabilityai/stable-audio-open-1.0`` (``model_index.json``, ``vae/``, ``text_encoder/``,
``projection_model/``, ``tokenizer/``, ``transformer/``, ``scheduler/``), so that the real
loading code (``StableAudioPipeline.from_pretrained(folder)``) loads it offline. It keeps the
real model's audio format (44.1 kHz stereo, a 2048-sample hop) and scheduler
(``CosineDPMSolverMultistepScheduler``, which needs ``torchsde``), with tiny widths and a
shorter window (128 latent frames, 5.9 s, where the real one has 1024, 47.5 s: the decoder
runs over the whole window, so this keeps a tiny sound to seconds on a CPU). Its "sound" is
shaped noise; the plumbing is the real one. The T5 tokenizer is a Unigram model trained here
on a few sentences (no download). The weights come from a fixed seed without touching
torch's global random state. ``tiny_sound_path()`` builds it once per user, in
``$XDG_CACHE_HOME/podforge`` (or ``~/.cache/podforge``).

Details: docs/TESTING.md, "Tiny models"; docs/EPISODES.md, "Generated sound"."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from core.models.tiny.build import TinyBuild

TINY_SOUND_VERSION = 1
"""Bumped whenever the files built here change, so that caches of older builds are ignored."""

TINY_SOUND_SEED = 20240617
SAMPLE_RATE = 44100
CHANNELS = 2
DOWNSAMPLING = [2, 4, 4, 8, 8]  # the real hop: 2048 samples a latent frame
LATENT_FRAMES = 128  # 5.9 s (the real model: 1024 frames, 47.55 s)
LATENT_CHANNELS = 4
DECODER_GAIN = 30.0
ENCODER_GAIN = 8.0
TEXT_DIM = 32
MAX_TOKENS = 32
TINY_STEPS = 6
"""The tiny model's default denoising steps (the real model's default is 100)."""

MODEL_FILES = (
    "model_index.json",
    "scheduler/scheduler_config.json",
    "tokenizer/tokenizer.json",
    "text_encoder/config.json",
    "projection_model/config.json",
    "transformer/config.json",
    "vae/config.json",
)

_CORPUS = (
    "a heavy wooden door creaks open, close mic. warm lo-fi bed, no vocals, 80 bpm. "
    "rain on a window, distant thunder. footsteps on gravel. a soft chime rings. "
    "crowd murmur in a small cafe, cups and saucers. an old radio hums and crackles. "
    "gentle piano, slow strings, ambient pad, deep bass, bright synth, drums. "
)


def tiny_max_seconds() -> float:
    """The longest sound the tiny pipeline makes (its window, as the real model's)."""
    return LATENT_FRAMES * _hop() / SAMPLE_RATE


def _hop() -> int:
    hop = 1
    for ratio in DOWNSAMPLING:
        hop *= ratio
    return hop


def _write_pipeline(folder: Path) -> None:
    """Every file of the pipeline (but the stamp) into the (empty) ``folder``."""
    import diffusers
    import torch
    import transformers

    # diffusers and transformers are only partly typed: their classes are used as Any here.
    dlib: Any = diffusers
    tlib: Any = transformers
    from diffusers.pipelines.stable_audio.modeling_stable_audio import (
        StableAudioProjectionModel,
    )

    tokenizer = tlib.T5TokenizerFast(
        tokenizer_object=_make_tokenizer(),
        eos_token="</s>",  # nosec B106  # a tokenizer token, no secret
        unk_token="<unk>",
        pad_token="<pad>",  # nosec B106  # a tokenizer token, no secret
        extra_ids=0,
        model_max_length=MAX_TOKENS,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(TINY_SOUND_SEED)  # CPU only, restored after
        text_encoder = tlib.T5EncoderModel(
            tlib.T5Config(
                vocab_size=len(tokenizer), d_model=TEXT_DIM, d_kv=8, d_ff=64, num_layers=1,
                num_heads=4, relative_attention_num_buckets=8, decoder_start_token_id=0,
                pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
            )
        )  # fmt: skip
        projection = StableAudioProjectionModel(
            text_encoder_dim=TEXT_DIM, conditioning_dim=TEXT_DIM, min_value=0, max_value=512
        )
        transformer = dlib.StableAudioDiTModel(
            sample_size=LATENT_FRAMES, in_channels=LATENT_CHANNELS, num_layers=1,
            attention_head_dim=8, num_attention_heads=2, num_key_value_attention_heads=1,
            out_channels=LATENT_CHANNELS, cross_attention_dim=TEXT_DIM, time_proj_dim=16,
            global_states_input_dim=2 * TEXT_DIM, cross_attention_input_dim=TEXT_DIM,
        )  # fmt: skip
        vae = dlib.AutoencoderOobleck(
            encoder_hidden_size=2 * LATENT_CHANNELS, downsampling_ratios=DOWNSAMPLING,
            channel_multiples=[1, 2, 2, 2, 2], decoder_channels=4,
            decoder_input_channels=LATENT_CHANNELS, audio_channels=CHANNELS,
            sampling_rate=SAMPLE_RATE,
        )  # fmt: skip
        # Random init leaves the decoder nearly deaf to its latents (every sound the same
        # hum) and the encoder's latents small: scale both so that the sound follows the
        # latents and a source's latents have about unit spread, as the real model's.
        with torch.no_grad():
            vae.decoder.conv1.weight_g.mul_(DECODER_GAIN)
            vae.encoder.conv2.weight_g.mul_(ENCODER_GAIN)
    scheduler = dlib.CosineDPMSolverMultistepScheduler(
        sigma_min=0.3, sigma_max=500, sigma_data=1.0, sigma_schedule="exponential",
        solver_order=2, prediction_type="v_prediction", rho=7.0,
    )  # fmt: skip
    pipeline = dlib.StableAudioPipeline(
        vae=vae, text_encoder=text_encoder, projection_model=projection, tokenizer=tokenizer,
        transformer=transformer, scheduler=scheduler,
    )  # fmt: skip
    pipeline.save_pretrained(str(folder), safe_serialization=True)


def _make_tokenizer() -> Any:
    """A small Unigram tokenizer in T5's shape (``<pad>`` 0, ``</s>`` 1, ``<unk>`` 2, a
    ``▁`` metaspace, ``</s>`` appended to every text) trained on :data:`_CORPUS`."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from tokenizers.trainers import UnigramTrainer

    tokenizer = Tokenizer(models.Unigram())
    tokenizer.normalizer = normalizers.NFKC()
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.decoder = decoders.Metaspace()
    trainer = UnigramTrainer(
        vocab_size=200,
        special_tokens=["<pad>", "</s>", "<unk>"],
        unk_token="<unk>",  # nosec B106  # a tokenizer token, no secret
        show_progress=False,
    )
    tokenizer.train_from_iterator([_CORPUS], trainer=trainer)
    eos = tokenizer.token_to_id("</s>")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", eos)]
    )
    return tokenizer


# --------------------------------------------------------------------------- the build

TINY_SOUND = TinyBuild(
    "tiny-sound",
    TINY_SOUND_VERSION,
    TINY_SOUND_SEED,
    MODEL_FILES,
    "tiny Stable Audio",
    writer=_write_pipeline,
)
build_tiny_sound = TINY_SOUND.build
"""``build_tiny_sound(folder)``: write the tiny pipeline into ``folder``
(:meth:`TinyBuild.build`)."""
tiny_sound_path = TINY_SOUND.path
"""``tiny_sound_path()``: the tiny pipeline in this user's cache, built there on first use."""
