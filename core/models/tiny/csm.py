"""A tiny random-init Sesame CSM (with a tiny Mimi codec), built locally with no download.

``build_tiny_csm(folder)`` writes the same files as the hub repository ``sesame/csm-1b``, so
that the real loading code loads it offline. Its speech is noise; the plumbing that loads,
trains and runs it is the real one. The weights come from a fixed seed without touching
torch's global random state: the same seed and library versions give byte-identical files.
``tiny_csm_path()`` builds it once per user, in ``$XDG_CACHE_HOME/podforge`` (or
``~/.cache/podforge``).

Details: docs/TESTING.md, "Tiny models"; size and build time in docs/PERFORMANCE.md."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.models.tiny.build import STAMP_FILE as STAMP_FILE  # re-exported
from core.models.tiny.build import TinyBuild, token_id

if TYPE_CHECKING:
    from core.models.csm import CsmBundle

TINY_CSM_VERSION = 1
"""Bumped whenever the files built here change, so that caches of older builds are ignored."""

TINY_CSM_SEED = 20240613
MODEL_FILES = (
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "chat_template.jinja",
    "processor_config.json",
)

# Architecture.
NUM_CODEBOOKS = 8
CODEBOOK_SIZE = 64
BACKBONE: dict[str, Any] = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
}
DEPTH_DECODER: dict[str, Any] = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
}
CODEC: dict[str, Any] = {
    "hidden_size": 32,
    "num_filters": 4,
    "num_residual_layers": 1,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "num_key_value_heads": 2,
    "intermediate_size": 64,
    "codebook_dim": 16,
    "vector_quantization_hidden_dimension": 16,
    "upsample_groups": 32,  # depthwise, like the real codec (512 groups for width 512)
}
CODEBOOK_STD = 1.0
DECODED_RMS = 0.05
"""Level of random codes decoded (about -26 dBFS), set by scaling the decoder's last layer."""

# The real model's rotary scaling ("llama3"), as converted for its shorter position tables.
BACKBONE_ROPE: dict[str, Any] = {
    "rope_type": "llama3",
    "rope_theta": 500000.0,
    "factor": 32.0,
    "high_freq_factor": 0.5,
    "low_freq_factor": 0.125,
    "original_max_position_embeddings": 1024,
}
DEPTH_DECODER_ROPE: dict[str, Any] = {
    "rope_type": "llama3",
    "rope_theta": 500000.0,
    "factor": 32.0,
    "high_freq_factor": 0.0078125,
    "low_freq_factor": 0.001953125,
    "original_max_position_embeddings": 16,
}

# Tokenizer special tokens (bandit's B105 takes a *_TOKEN name for a password).
BOS_TOKEN = "<|begin_of_text|>"  # nosec B105
EOS_TOKEN = "<|end_of_text|>"  # nosec B105
AUDIO_TOKEN = "<|AUDIO|>"  # nosec B105
AUDIO_EOS_TOKEN = "<|audio_eos|>"  # nosec B105
SPECIAL_TOKENS = (BOS_TOKEN, EOS_TOKEN, AUDIO_TOKEN, AUDIO_EOS_TOKEN)

BPE_VOCAB_SIZE = 384
BPE_CORPUS = (
    "and so my fellow americans ask not what your country can do for you "
    "ask what you can do for your country. welcome back to the show, today we talk "
    "about voices, recording, microphones and the people who listen to them. "
    "thanks for being here, it is really good to have you on the podcast again. "
    "the quick brown fox jumps over the lazy dog while the host reads the news. "
    "Hello and welcome! This is the episode where we clone a voice, one line at a time."
)

CHAT_TEMPLATE = """\
{#- CSM conversation: each turn is one speaker's text, with its audio except in the last turn -#}
{%- for message in messages %}
    {%- if not message['role'] is string or not message['role'].isdigit() %}
        {{- raise_exception("The role must be the speaker id as a string of digits, such as '0'") }}
    {%- endif %}
    {%- if message['content'] is string or message['content'] is not iterable %}
        {{- raise_exception("The content must be a list of 'text' and 'audio' items") }}
    {%- endif %}
    {%- set types = message['content'] | map(attribute='type') | list %}
    {%- if types | reject('in', ['text', 'audio']) | list | length > 0 %}
        {{- raise_exception("Only 'text' and 'audio' items are allowed in the content") }}
    {%- endif %}
    {%- if types | select('equalto', 'text') | list | length != 1 or types[0] != 'text' %}
        {{- raise_exception("Each message must start with exactly one 'text' item") }}
    {%- endif %}
    {%- set audios = types | select('equalto', 'audio') | list | length %}
    {%- if audios > 1 or (audios == 0 and not loop.last) %}
        {{- raise_exception("Every message but the last needs one 'audio' item") }}
    {%- endif %}
{%- endfor %}
{%- for message in messages %}
    {{- bos_token + '[' + message['role'] + ']' + message['content'][0]['text'] + eos_token }}
    {%- if message['content'] | length > 1 %}
        {{- '<|AUDIO|><|audio_eos|>' }}
    {%- endif %}
{%- endfor %}
"""

FEATURE_EXTRACTOR: dict[str, Any] = {
    "feature_size": 1,
    "sampling_rate": 24000,
    "padding_value": 0.0,
    "chunk_length_s": None,
    "overlap": None,
    "return_attention_mask": True,
}


# --------------------------------------------------------------------------- the files


def _write_model(folder: Path) -> None:
    """Write every file of the model (but the stamp) into the (empty) ``folder``."""
    import torch
    import transformers

    # transformers is only partly typed: its classes are used as Any here.
    library: Any = transformers

    backend = _make_tokenizer()
    ids = {token: _token_id(backend, token) for token in SPECIAL_TOKENS}
    codec_config = library.MimiConfig(
        **CODEC,
        codebook_size=CODEBOOK_SIZE,
        num_quantizers=NUM_CODEBOOKS,
        num_semantic_quantizers=1,
    )
    depth_config = library.CsmDepthDecoderConfig(
        **DEPTH_DECODER,
        num_codebooks=NUM_CODEBOOKS,
        backbone_hidden_size=BACKBONE["hidden_size"],
        vocab_size=CODEBOOK_SIZE,
        max_position_embeddings=33,  # the real value; rotary positions only, no weights
        rope_parameters=dict(DEPTH_DECODER_ROPE),
    )
    config = library.CsmConfig(
        **BACKBONE,
        num_codebooks=NUM_CODEBOOKS,
        vocab_size=CODEBOOK_SIZE,
        text_vocab_size=backend.get_vocab_size(),
        max_position_embeddings=2048,
        rope_parameters=dict(BACKBONE_ROPE),
        bos_token_id=ids[BOS_TOKEN],
        pad_token_id=ids[AUDIO_TOKEN],  # as in the real config (128002)
        audio_token_id=ids[AUDIO_TOKEN],
        audio_eos_token_id=ids[AUDIO_EOS_TOKEN],
        codebook_eos_token_id=0,
        codebook_pad_token_id=None,  # the real 2050 lies outside this audio vocabulary
        depth_decoder_config=depth_config,
        codec_config=codec_config,
    )

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(TINY_CSM_SEED)  # CPU only, restored after
        model = library.CsmForConditionalGeneration(config)
        # Mimi's own init leaves every codebook at zero: all audio would encode to code 0.
        for name, buffer in model.codec_model.named_buffers():
            if name.endswith("codebook.embed_sum"):
                buffer.copy_(torch.randn_like(buffer) * CODEBOOK_STD)
            elif name.endswith("codebook.cluster_usage"):
                buffer.fill_(1.0)
        model.eval()
        _calibrate_decoder(
            model.codec_model, torch.randint(0, CODEBOOK_SIZE, (1, NUM_CODEBOOKS, 25))
        )

    # The real model's sampling defaults (see the conversion script of transformers' CSM).
    generation = model.generation_config
    generation._from_model_config = False
    generation.max_new_tokens = 125
    generation.do_sample = True
    generation.top_k = 50
    generation.temperature = 0.9
    depth_generation = model.depth_decoder.generation_config
    depth_generation._from_model_config = False
    depth_generation.do_sample = True
    depth_generation.top_k = 50
    depth_generation.temperature = 0.9
    model.save_pretrained(str(folder))

    tokenizer = library.PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token=BOS_TOKEN, eos_token=EOS_TOKEN, pad_token=EOS_TOKEN
    )
    feature_extractor = library.EncodecFeatureExtractor(**FEATURE_EXTRACTOR)
    processor = library.CsmProcessor(
        feature_extractor=feature_extractor, tokenizer=tokenizer, chat_template=CHAT_TEMPLATE
    )
    processor.save_pretrained(str(folder))


def _calibrate_decoder(codec: Any, codes: Any) -> None:
    """Scale the random decoder's last convolution so that random codes decode to speech level.

    Left alone, the random decoder's output peaks far above full scale.
    """
    import torch

    with torch.no_grad():
        audio = codec.decode(codes).audio_values
        rms = float(audio.pow(2).mean().sqrt())
        last = codec.decoder.decoder_seanet.layers[-1].conv
        scale = DECODED_RMS / max(rms, 1e-8)
        last.weight.mul_(scale)
        if last.bias is not None:
            last.bias.mul_(scale)


def _make_tokenizer() -> Any:
    """A byte-level BPE trained on :data:`BPE_CORPUS`, with CSM's special tokens after it."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors
    from tokenizers.trainers import BpeTrainer

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = BpeTrainer(
        vocab_size=BPE_VOCAB_SIZE,
        min_frequency=1,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[],
    )
    tokenizer.train_from_iterator([BPE_CORPUS], trainer=trainer)
    # Added in order, so their ids follow the BPE vocabulary, like Llama-3's 128000..128003.
    tokenizer.add_special_tokens(
        [AddedToken(token, special=True, normalized=False) for token in SPECIAL_TOKENS]
    )
    bos, eos = _token_id(tokenizer, BOS_TOKEN), _token_id(tokenizer, EOS_TOKEN)
    # As sesame/csm-1b: one text becomes <|begin_of_text|> text <|end_of_text|>.
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{BOS_TOKEN}:0 $A:0 {EOS_TOKEN}:0",
        pair=f"{BOS_TOKEN}:0 $A:0 {EOS_TOKEN}:0 {BOS_TOKEN}:1 $B:1 {EOS_TOKEN}:1",
        special_tokens=[(BOS_TOKEN, bos), (EOS_TOKEN, eos)],
    )
    return tokenizer


def _token_id(tokenizer: Any, token: str) -> int:
    return token_id(tokenizer, token, "tiny CSM")


def full_size_random_csm(device: str = "auto", dtype: str = "auto") -> CsmBundle:
    """The real-size CSM-1B (``transformers.CsmConfig()``), random weights, in memory.

    For benchmarks and the slow real-size checks: no download. It uses the tiny model's
    processor, so its special-token ids are set to that tokenizer's (the real ones,
    128000-128003, exist only in the real tokenizer); that changes no computation.
    Its size in memory is in docs/PERFORMANCE.md.
    """
    import torch
    import transformers

    from core.models import csm

    library: Any = transformers
    device = csm.pick_device(device)
    torch_dtype = csm._pick_dtype(dtype, device)
    processor = library.AutoProcessor.from_pretrained(csm.resolve_tts_model("tiny"))
    ids = {
        token: int(processor.tokenizer.convert_tokens_to_ids(token))
        for token in (BOS_TOKEN, AUDIO_TOKEN, AUDIO_EOS_TOKEN)
    }
    config = library.CsmConfig(
        bos_token_id=ids[BOS_TOKEN],
        pad_token_id=ids[AUDIO_TOKEN],
        audio_token_id=ids[AUDIO_TOKEN],
        audio_eos_token_id=ids[AUDIO_EOS_TOKEN],
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = library.CsmForConditionalGeneration(config).to(device, torch_dtype)
    model.eval()
    return csm.CsmBundle(
        model=model,
        processor=processor,
        device=device,
        dtype=torch_dtype,
        model_id="random CsmConfig()",
        sample_rate=int(config.codec_config.sampling_rate),
        num_codebooks=int(config.num_codebooks),
        frame_rate=float(config.codec_config.frame_rate),
    )


# --------------------------------------------------------------------------- the build

TINY_CSM = TinyBuild(
    "tiny-csm", TINY_CSM_VERSION, TINY_CSM_SEED, MODEL_FILES, "tiny CSM", writer=_write_model
)
build_tiny_csm = TINY_CSM.build
"""``build_tiny_csm(folder)``: write the tiny CSM into ``folder`` (:meth:`TinyBuild.build`)."""
tiny_csm_path = TINY_CSM.path
"""``tiny_csm_path()``: the tiny CSM in this user's cache, built there on first use."""
