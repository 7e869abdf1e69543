"""Sesame CSM (``CsmForConditionalGeneration``): loading, LoRA, training inputs and synthesis.

Training (:mod:`core.training`) and synthesis both go through this module. ``load_csm``
takes ``"tiny"``, a local folder or a hub id, all through the same ``from_pretrained``.
Audio may be given as samples or as cached Mimi codes: :func:`training_inputs` and
:func:`generate_codes` merge cached codes into the embeddings themselves, so the codec never
runs and the results equal the processor path. Only the last turn is learned by default.
:func:`generate_codes` works around known generation quirks of the locked transformers
release, and :func:`prepare_for_training` makes gradient checkpointing work with LoRA.
torch, transformers and peft are imported inside the functions that use them.

Details: docs/TRAINING.md, "The CSM model in code"."""

from __future__ import annotations

import math
import os
import re
import sys
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np
import numpy.typing as npt

from core.audio.types import FloatArray
from core.errors import ModelError, at, one_line
from core.models.device import move_to_device, resolve_device, torch_cuda_count
from core.models.hub import check_model_files
from core.models.hub import hub_cache_dir as _hub_cache_dir
from core.models.hub import hub_offline as _hub_offline
from core.models.hub import looks_like_path as _looks_like_path
from core.models.tiny.csm import tiny_csm_path

if TYPE_CHECKING:
    import peft
    import torch

__all__ = [
    "LORA_TARGET_REGEX",
    "AudioOrCodes",
    "ContextTurn",
    "CsmBundle",
    "build_conversation",
    "collate_training_inputs",
    "decode_codes",
    "encode_audio",
    "generate_codes",
    "load_csm",
    "lora_config",
    "pick_device",
    "prepare_for_training",
    "resolve_tts_model",
    "synthesize",
    "training_inputs",
]

LORA_TARGET_REGEX = (
    r"(?:backbone_model|depth_decoder\.model)\.layers\.\d+"
    r"\.self_attn\.(?:q_proj|k_proj|v_proj|o_proj)"
)
"""The attention projections of the backbone and of the depth decoder, as a regex that peft
matches against whole module names (``re.fullmatch``). A plain list of the four projection
names would also hit the attention layers of the Mimi codec (``codec_model.encoder`` and
``codec_model.decoder`` transformers), which only encode and decode audio."""

CODEC_REGEX = r"codec_model(?:\..*)?"
"""Everything in the codec, excluded from LoRA for good measure."""

HUB_URL = "https://huggingface.co"
MODEL_FILES = ("config.json",)
"""What a local model folder must hold at least (the loader names anything else missing)."""

AudioOrCodes: TypeAlias = "npt.NDArray[Any] | torch.Tensor"
"""Samples (1-D float, 24 kHz) or codes (2-D integer, ``(num_codebooks, frames)``)."""
ContextTurn: TypeAlias = "tuple[str, AudioOrCodes] | tuple[int, str, AudioOrCodes]"
"""``(text, audio)`` spoken by the target speaker, or ``(speaker_id, text, audio)``."""
Conversation: TypeAlias = "list[dict[str, Any]]"

_CONTROL_TOKEN = re.compile(r"<\|[^<>|\s]*\|>")


@dataclass
class CsmBundle:
    """A loaded CSM model with its processor; made by :func:`load_csm`."""

    model: Any
    """``CsmForConditionalGeneration`` (or a ``peft.PeftModel`` around it)."""
    processor: Any
    """``CsmProcessor``: tokenizer, chat template and feature extractor."""
    device: str
    dtype: torch.dtype
    model_id: str
    sample_rate: int
    """The codec's sample rate (24000)."""
    num_codebooks: int
    frame_rate: float = 12.5
    """Codec frames a second."""
    path: str = ""
    """Where the model was loaded from (a folder or a hub id)."""

    @property
    def samples_per_frame(self) -> int:
        return round(self.sample_rate / self.frame_rate)


# --------------------------------------------------------------------------- loading


def resolve_tts_model(model_id: str) -> str:
    """Where ``model_id`` loads from.

    ``"tiny"`` gives the tiny model's folder (built on first use), a local folder is
    returned as it is, anything else (a hub id) unchanged.
    """
    if model_id == "tiny":
        return str(tiny_csm_path())
    return model_id


def pick_device(device: str = "auto") -> str:
    """``"cuda"``, ``"cuda:N"`` or ``"cpu"`` for ``models.device`` (``auto``, ``cpu``, ``cuda``,
    ``cuda:N``), by :func:`core.models.device.resolve_device` with PyTorch's count.

    ``auto`` is CUDA when torch sees a GPU, else the CPU; ``cuda`` without a visible GPU is a
    :class:`ModelError`.
    """
    return resolve_device(device, "TTS model", torch_cuda_count, "PyTorch")


def load_csm(model_id: str, device: str = "auto", dtype: str = "auto") -> CsmBundle:
    """Load the CSM model ``model_id`` (``"tiny"``, a local folder or a hub id).

    ``device`` as for :func:`pick_device`. ``dtype="auto"`` is bfloat16 on a GPU and float32
    on the CPU; ``"float32"``, ``"bfloat16"`` or ``"float16"`` can be given instead. The
    model is returned in eval mode. Every failure a user can cause is a one-line
    :class:`ModelError`.
    """
    resolved = resolve_tts_model(model_id)
    folder = Path(resolved).expanduser()
    local = folder.is_dir()
    if local:
        check_model_files(
            folder,
            MODEL_FILES,
            "CSM",
            "save one with save_pretrained (model and processor), or set models.tts in "
            'workspace.toml to a hub id such as "sesame/csm-1b" or "tiny"',
        )
        path = str(folder)
    elif _looks_like_path(model_id):
        raise ModelError(
            f"TTS model folder {model_id!r} does not exist: set models.tts in workspace.toml "
            'to an existing folder, a hub id such as "sesame/csm-1b", or "tiny"'
        )
    else:
        path = model_id
    device = pick_device(device)
    torch_dtype = _pick_dtype(dtype, device)

    import transformers

    library: Any = transformers  # only partly typed
    hub: dict[str, Any] = {}
    if not local:
        hub = {"cache_dir": _hub_cache_dir(), "local_files_only": _hub_offline()}
    try:
        model = library.CsmForConditionalGeneration.from_pretrained(path, dtype=torch_dtype, **hub)
        processor = library.AutoProcessor.from_pretrained(path, **hub)
    except (OSError, ValueError, KeyError, RuntimeError, TypeError) as exc:
        if local:
            raise ModelError(
                at(folder, f"cannot load the CSM model: {one_line(exc, first_line=True)}")
            ) from exc
        raise _hub_error(model_id, exc) from None
    move_to_device(model, device, f"TTS model {model_id!r} in {torch_dtype}")
    model.eval()
    model.codec_model.eval()
    codec = model.config.codec_config
    return CsmBundle(
        model=model,
        processor=processor,
        device=device,
        dtype=torch_dtype,
        model_id=model_id,
        sample_rate=int(codec.sampling_rate),
        num_codebooks=int(model.config.num_codebooks),
        frame_rate=float(codec.frame_rate),
        path=path,
    )


def _pick_dtype(dtype: str, device: str) -> torch.dtype:
    import torch

    choices = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
    if dtype == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    if dtype not in choices:
        raise ValueError(f"dtype must be auto, float32, bfloat16 or float16, not {dtype!r}")
    return choices[dtype]


def _hub_error(model_id: str, exc: BaseException) -> ModelError:
    """The one line for a hub model that cannot be had: gated, unknown, or not downloaded."""
    names = set()
    cause: BaseException | None = exc
    while cause is not None:
        names.add(type(cause).__name__)
        cause = cause.__cause__ or cause.__context__
    url = f"{HUB_URL}/{model_id}"
    fallback = 'or set models.tts in workspace.toml to a local model folder or "tiny"'
    if "GatedRepoError" in names:
        return ModelError(
            f"TTS model {model_id!r} is gated on the Hugging Face Hub: accept its terms at "
            f"{url}, log in with `huggingface-cli login`, and load it once with network to "
            f"download it; {fallback}"
        )
    if "RepositoryNotFoundError" in names:
        return ModelError(
            f"TTS model {model_id!r} is not on the Hugging Face Hub (or is private and you are "
            f"not logged in with `huggingface-cli login`): check models.tts in workspace.toml, "
            f'a hub id such as "sesame/csm-1b", {fallback.removeprefix("or set models.tts in ")}'
        )
    offline = " (HF_HUB_OFFLINE is set)" if _hub_offline() else ""
    return ModelError(
        f"TTS model {model_id!r} is not available offline{offline}: it is not in the Hugging "
        f"Face cache ({_hub_cache_dir()}); accept its terms at {url}, log in with "
        f"`huggingface-cli login` and load it once with network to download it, {fallback}"
    )


# --------------------------------------------------------------------------- LoRA


def lora_config(rank: int = 16, alpha: int = 32, dropout: float = 0.1) -> peft.LoraConfig:
    """LoRA on the attention projections of the backbone and the depth decoder (not the codec)."""
    from peft import LoraConfig

    return LoraConfig(
        r=rank,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=LORA_TARGET_REGEX,
        exclude_modules=CODEC_REGEX,
        bias="none",
    )


def prepare_for_training(
    bundle: CsmBundle, lora_cfg: peft.LoraConfig, gradient_checkpointing: bool = True
) -> peft.PeftModel:
    """Wrap ``bundle.model`` with LoRA adapters for training; returns the ``PeftModel``.

    Only the adapter weights are trainable. With ``gradient_checkpointing`` the backbone and
    depth decoder layers recompute their activations in the backward pass (non-reentrant
    checkpointing), and the input-embedding hooks that checkpointing and peft install are
    removed again: they crash the depth decoder (see the module docstring). The model is left
    in train mode; ``bundle.model`` itself is not replaced (the adapters live inside it).
    """
    import peft as peft_lib

    model = _csm(bundle.model)
    with warnings.catch_warnings():  # peft still asks the deprecated is_gradient_checkpointing
        warnings.filterwarnings(
            "ignore", "`is_gradient_checkpointing` is deprecated", FutureWarning
        )
        peft_model = peft_lib.get_peft_model(model, lora_cfg)
    if gradient_checkpointing:
        model.activation_checkpointing_enable(
            activation_checkpointing_kwargs={"use_reentrant": False}
        )
    # After both: get_peft_model and activation_checkpointing_enable each may install them.
    model.disable_input_require_grads()
    peft_model.train()
    model.codec_model.eval()  # the codec is never trained and stays in eval mode
    return peft_model


# --------------------------------------------------------------------------- codec


def encode_audio(bundle: CsmBundle, audio24k: npt.NDArray[Any]) -> torch.Tensor:
    """Mimi codes of mono 24 kHz samples: an int64 ``(num_codebooks, frames)`` CPU tensor.

    One frame per 1920 samples, rounded up. Empty audio gives zero frames.
    """
    import torch

    audio = _as_samples(audio24k)
    if audio.size == 0:
        return torch.zeros((bundle.num_codebooks, 0), dtype=torch.long)
    codec = _csm(bundle.model).codec_model
    values = torch.from_numpy(audio)[None, None].to(device=bundle.device, dtype=bundle.dtype)
    with torch.no_grad():
        codes: torch.Tensor = codec.encode(values, num_quantizers=bundle.num_codebooks).audio_codes
    return codes[0].to("cpu", torch.long).contiguous()


def decode_codes(bundle: CsmBundle, codes: npt.NDArray[Any] | torch.Tensor) -> FloatArray:
    """Mono float32 24 kHz samples of Mimi codes ``(num_codebooks, frames)``; 1920 a frame."""
    import torch

    tensor = _as_codes(bundle, codes)
    if tensor.shape[1] == 0:
        return np.zeros(0, dtype=np.float32)
    codec = _csm(bundle.model).codec_model
    with torch.no_grad():
        audio = codec.decode(tensor[None].to(bundle.device)).audio_values[0, 0]
    return np.ascontiguousarray(audio.float().cpu().numpy(), dtype=np.float32)


def _as_samples(audio: Any) -> FloatArray:
    array = np.asarray(audio)
    if array.ndim != 1 or not np.issubdtype(array.dtype, np.floating):
        raise ValueError(
            f"audio must be mono float samples (a 1-D float array), not {array.dtype} of shape "
            f"{array.shape}"
        )
    if not np.isfinite(array).all():
        raise ValueError("audio holds NaN or infinite samples")
    return np.ascontiguousarray(array, dtype=np.float32)


def _as_codes(bundle: CsmBundle, codes: Any) -> torch.Tensor:
    """``codes`` as an int64 CPU tensor ``(num_codebooks, frames)``, each code checked."""
    import torch

    tensor = torch.as_tensor(codes).detach().to("cpu")
    if tensor.is_floating_point() or tensor.is_complex() or tensor.dtype == torch.bool:
        raise ValueError(f"codes must be integers, not {tensor.dtype}")
    if tensor.ndim != 2 or tensor.shape[0] != bundle.num_codebooks:
        raise ValueError(
            f"codes must have shape ({bundle.num_codebooks}, frames), not {tuple(tensor.shape)}"
        )
    tensor = tensor.to(torch.long)
    size = int(_csm(bundle.model).config.codec_config.codebook_size)
    if tensor.numel() and (int(tensor.min()) < 0 or int(tensor.max()) >= size):
        raise ValueError(f"codes must lie in 0..{size - 1}")
    return tensor.contiguous()


def _is_codes(value: Any) -> bool:
    """Codes are 2-D integer arrays or tensors; samples are 1-D float arrays."""
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(value, torch.Tensor):
        return not value.is_floating_point() and value.ndim == 2
    array = np.asarray(value) if not isinstance(value, np.ndarray) else value
    return array.ndim == 2 and np.issubdtype(array.dtype, np.integer)


# --------------------------------------------------------------------------- conversations


def build_conversation(
    context: Sequence[ContextTurn],
    text: str,
    speaker_id: int = 0,
    audio: AudioOrCodes | None = None,
) -> Conversation:
    """CSM's chat format: the context turns, then one turn of ``speaker_id`` saying ``text``.

    Each context item is ``(text, audio)`` (said by ``speaker_id``) or ``(speaker_id, text,
    audio)``; audio is samples or codes (see the module docstring). ``audio`` is the target
    turn's own audio, given for training and left out for synthesis.
    """
    turns: Conversation = []
    for item in context:
        if len(item) == 3:
            turn_speaker, turn_text, turn_audio = item
        elif len(item) == 2:
            turn_text, turn_audio = item
            turn_speaker = speaker_id
        else:
            raise ValueError("a context turn is (text, audio) or (speaker_id, text, audio)")
        turns.append(_turn(turn_speaker, turn_text, turn_audio))
    turns.append(_turn(speaker_id, text, audio))
    return turns


def _turn(speaker_id: int, text: str, audio: AudioOrCodes | None) -> dict[str, Any]:
    if isinstance(speaker_id, bool) or not isinstance(speaker_id, int) or speaker_id < 0:
        raise ValueError(f"speaker_id must be a non-negative integer, not {speaker_id!r}")
    content: list[dict[str, Any]] = [{"type": "text", "text": _check_text(text)}]
    if audio is not None:
        if _is_codes(audio):
            content.append({"type": "audio", "codes": audio})
        else:
            content.append({"type": "audio", "audio": _as_samples(audio)})
    return {"role": str(speaker_id), "content": content}


def _check_text(text: str) -> str:
    if not isinstance(text, str):
        raise ValueError(f"text must be a string, not {type(text).__name__}")
    token = _CONTROL_TOKEN.search(text)
    if token:
        raise ValueError(f"text must not hold the control token {token.group()!r}: {text!r}")
    return text


def _parse_turns(
    bundle: CsmBundle, conversation: Sequence[Mapping[str, Any]]
) -> tuple[list[dict[str, Any]], list[torch.Tensor | None]]:
    """The conversation as the chat template sees it (no audio values), and each turn's codes."""
    stub: list[dict[str, Any]] = []
    codes: list[torch.Tensor | None] = []
    for index, turn in enumerate(conversation):
        role = str(turn.get("role", ""))
        content = turn.get("content")
        if not role.isdigit() or not isinstance(content, Sequence) or isinstance(content, str):
            raise ValueError(f"turn {index}: needs a speaker id role ('0') and a content list")
        texts = [item for item in content if item.get("type") == "text"]
        audios = [item for item in content if item.get("type") == "audio"]
        if len(texts) != 1 or len(audios) > 1 or len(texts) + len(audios) != len(content):
            raise ValueError(f"turn {index}: content must be one text item and at most one audio")
        text = _check_text(texts[0].get("text", ""))
        turn_codes: torch.Tensor | None = None
        if audios:
            turn_codes = _audio_item_codes(bundle, audios[0], index)
            if turn_codes.shape[1] == 0:
                raise ValueError(f"turn {index}: its audio is empty")
        items: list[dict[str, Any]] = [{"type": "text", "text": text}]
        if turn_codes is not None:
            items.append({"type": "audio"})
        stub.append({"role": role, "content": items})
        codes.append(turn_codes)
    if not stub:
        raise ValueError("the conversation is empty")
    return stub, codes


def _audio_item_codes(bundle: CsmBundle, item: Mapping[str, Any], index: int) -> torch.Tensor:
    if item.get("codes") is not None:
        return _as_codes(bundle, item["codes"])
    samples = item.get("audio", item.get("path"))
    if samples is None or isinstance(samples, str | os.PathLike):
        raise ValueError(
            f"turn {index}: audio must be samples ('audio': a float array) or codes ('codes')"
        )
    return encode_audio(bundle, samples)


def _assemble(
    bundle: CsmBundle,
    conversation: Sequence[Mapping[str, Any]],
    *,
    learn: Sequence[int] = (),
    depth_decoder_ratio: float = 1.0,
    seed: int = 0,
    reserve: int = 0,
) -> dict[str, Any]:
    """``inputs_embeds`` (and ``labels`` for the turns in ``learn``), batch of one.

    ``reserve``: positions that must remain free after it (the frames to generate).

    The same merge as ``CsmForConditionalGeneration._merge_input_ids_with_input_values``,
    from codes rather than samples (see the module docstring).
    """
    import torch

    model = _csm(bundle.model)
    config = model.config
    processor = bundle.processor
    stub, turn_codes = _parse_turns(bundle, conversation)
    text = processor.apply_chat_template(stub, tokenize=False)
    ids: list[int] = processor.tokenizer(text, add_special_tokens=False)["input_ids"]
    audio_id, audio_eos_id = int(config.audio_token_id), int(config.audio_eos_token_id)
    eos_code = int(config.codebook_eos_token_id)
    audio_turns = [(index, codes) for index, codes in enumerate(turn_codes) if codes is not None]
    if ids.count(audio_id) != len(audio_turns):
        raise ValueError(
            f"the chat template wrote {ids.count(audio_id)} audio tokens for "
            f"{len(audio_turns)} turns with audio"
        )

    # Expand each audio token to one position per frame, as CsmProcessor does.
    expanded: list[int] = []
    spans: list[tuple[int, torch.Tensor, int]] = []  # start, codes, turn
    pending = iter(audio_turns)
    for token in ids:
        if token == audio_id:
            turn, codes = next(pending)
            spans.append((len(expanded), codes, turn))
            expanded.extend([audio_id] * codes.shape[1])
        else:
            expanded.append(token)

    length, ncb = len(expanded), bundle.num_codebooks
    limit = int(config.max_position_embeddings)
    if length + reserve > limit:
        wanted = f"{length} positions" + (f" plus {reserve} to generate" if reserve else "")
        raise ValueError(
            f"the conversation takes {wanted}, more than the model's {limit} "
            "(a frame is one position): give less context"
        )
    input_ids = torch.tensor(expanded, dtype=torch.long)
    frames = torch.zeros((length, ncb), dtype=torch.long)
    labels = torch.full((length, ncb), -100, dtype=torch.long)
    learned_frames: list[int] = []
    for start, codes, turn in spans:
        count = codes.shape[1]
        frames[start : start + count] = codes.T
        if turn in learn:
            labels[start : start + count] = codes.T
            learned_frames.extend(range(start, start + count))
            if start + count < length and expanded[start + count] == audio_eos_id:
                labels[start + count] = eos_code
    is_eos = input_ids == audio_eos_id
    frames[is_eos] = eos_code
    if learned_frames and depth_decoder_ratio < 1.0:
        generator = torch.Generator().manual_seed(seed)
        order = torch.randperm(len(learned_frames), generator=generator)
        skip = order[: int(len(learned_frames) * (1.0 - depth_decoder_ratio))]
        labels[torch.tensor(learned_frames)[skip], 1:] = -100

    device = model.embed_text_tokens.weight.device
    input_ids, frames = input_ids[None].to(device), frames[None].to(device)
    is_audio = ((input_ids == audio_id) | (input_ids == audio_eos_id))[..., None]
    with torch.no_grad():  # plain tensors, reusable across steps (the tables are frozen)
        audio_embeds = model.backbone_model.embed_tokens(frames)
        text_embeds = model.embed_text_tokens(input_ids)
        embeds = torch.where(is_audio, audio_embeds.to(text_embeds.dtype), text_embeds)
    inputs: dict[str, Any] = {
        "inputs_embeds": embeds,
        "attention_mask": torch.ones((1, length), dtype=torch.long, device=device),
    }
    if learn:
        inputs["labels"] = labels[None].to(device)
    return inputs


def training_inputs(
    bundle: CsmBundle,
    context: Sequence[ContextTurn],
    target_text: str,
    target_audio_or_codes: AudioOrCodes,
    *,
    speaker_id: int = 0,
    learn_context: bool = False,
    depth_decoder_ratio: float = 1.0,
    seed: int = 0,
) -> dict[str, Any]:
    """Keyword arguments for ``model(**inputs)`` that make it return the training loss.

    ``inputs_embeds`` ``(1, seq, hidden)``, ``attention_mask`` ``(1, seq)``, ``labels``
    ``(1, seq, num_codebooks)`` and ``use_cache=False``, on the model's device. The loss is
    the backbone's (codebook 0) plus the depth decoder's (the other codebooks) on the target
    turn's frames and its end-of-audio frame; with ``learn_context`` on the context turns'
    too. ``depth_decoder_ratio`` and ``seed``: see the module docstring. Audio may be samples
    or cached codes (codes skip the codec entirely). The tensors carry no autograd graph, so
    they can be built once and reused for many steps. Batch several with
    :func:`collate_training_inputs`.
    """
    if not 0.0 <= depth_decoder_ratio <= 1.0:
        raise ValueError(f"depth_decoder_ratio must lie in 0..1, not {depth_decoder_ratio}")
    conversation = build_conversation(context, target_text, speaker_id, target_audio_or_codes)
    learn = range(len(conversation)) if learn_context else (len(conversation) - 1,)
    inputs = _assemble(
        bundle, conversation, learn=tuple(learn), depth_decoder_ratio=depth_decoder_ratio, seed=seed
    )
    inputs["use_cache"] = False
    return inputs


def collate_training_inputs(items: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Stack several :func:`training_inputs` into one batch, padded on the right.

    Padding is masked out of attention and ignored by the loss, and the positions of every
    real token stay as they were alone.
    """
    import torch

    if not items:
        raise ValueError("nothing to collate")
    longest = max(int(item["inputs_embeds"].shape[1]) for item in items)
    embeds, masks, labels = [], [], []
    for item in items:
        pad = longest - int(item["inputs_embeds"].shape[1])
        embeds.append(torch.nn.functional.pad(item["inputs_embeds"], (0, 0, 0, pad)))
        masks.append(torch.nn.functional.pad(item["attention_mask"], (0, pad)))
        labels.append(torch.nn.functional.pad(item["labels"], (0, 0, 0, pad), value=-100))
    return {
        "inputs_embeds": torch.cat(embeds),
        "attention_mask": torch.cat(masks),
        "labels": torch.cat(labels),
        "use_cache": False,
    }


# --------------------------------------------------------------------------- generation


def generate_codes(
    bundle: CsmBundle,
    conversation: Sequence[Mapping[str, Any]],
    *,
    max_new_frames: int,
    seed: int,
    temperature: float = 0.9,
    depth_temperature: float = 0.9,
    top_k: int = 50,
) -> torch.Tensor:
    """Sample the codes of the conversation's last turn: int64 ``(num_codebooks, frames)``, CPU.

    At most ``max_new_frames`` frames, fewer when the model ends the audio (the end-of-audio
    frame itself is not returned; it may be the first, which gives zero frames). The last
    turn must have text and no audio. Deterministic for a given seed, device and library
    versions; the caller's random state is untouched.
    """
    import torch

    _check_generation_args(conversation, max_new_frames, temperature, depth_temperature, top_k)
    model = _csm(bundle.model)
    config = model.config
    suppress = list(range(int(config.codec_config.codebook_size), int(config.vocab_size))) or None
    sampling = {"do_sample": True, "temperature": temperature, "top_k": top_k, "top_p": 1.0}
    options: dict[str, Any] = {
        **sampling,
        "suppress_tokens": suppress,
        # These persist on the depth decoder's generation config: set them all, every call.
        **{f"depth_decoder_{key}": value for key, value in sampling.items()},
        "depth_decoder_temperature": depth_temperature,
        "depth_decoder_suppress_tokens": suppress,
    }
    was_training = bool(bundle.model.training)
    bundle.model.eval()
    devices = [torch.device(bundle.device).index or 0] if bundle.device.startswith("cuda") else []
    try:
        with torch.no_grad():
            inputs = _assemble(bundle, conversation, reserve=max_new_frames)
            with torch.random.fork_rng(devices=devices):
                torch.manual_seed(seed)
                output = model.generate(
                    inputs_embeds=inputs["inputs_embeds"],
                    attention_mask=inputs["attention_mask"],
                    max_new_tokens=max_new_frames,
                    **options,
                )
    finally:
        bundle.model.train(was_training)
        bundle.model.codec_model.eval()  # train(True) would switch the codec too
    sequences = output if isinstance(output, torch.Tensor) else output.sequences
    frames = sequences[0].to("cpu", torch.long)  # (frames, num_codebooks)
    # Generation stops at a frame whose codebooks but the last are all end-of-audio.
    checked = frames[:, :-1] if frames.shape[1] > 1 else frames
    ends = (checked == int(config.codebook_eos_token_id)).all(dim=-1).nonzero()
    if ends.numel():
        frames = frames[: int(ends[0, 0])]
    return frames[:max_new_frames].T.contiguous()


def _check_generation_args(
    conversation: Sequence[Mapping[str, Any]],
    max_new_frames: int,
    temperature: float,
    depth_temperature: float,
    top_k: int,
) -> None:
    """The checks every generation path makes first."""
    if max_new_frames < 1:
        raise ValueError(f"max_new_frames must be at least 1, not {max_new_frames}")
    if temperature <= 0 or depth_temperature <= 0 or top_k < 1:
        raise ValueError("temperatures must be positive and top_k at least 1")
    last = conversation[-1] if conversation else {}
    if any(item.get("type") == "audio" for item in last.get("content", ())):
        raise ValueError("the last turn of a conversation to generate must have no audio")


def synthesize(
    bundle: CsmBundle,
    text: str,
    speaker_id: int,
    context: Sequence[ContextTurn],
    *,
    seed: int,
    max_seconds: float,
    temperature: float = 0.9,
    depth_temperature: float = 0.9,
    top_k: int = 50,
) -> FloatArray:
    """Speak ``text`` as ``speaker_id`` after the ``context`` turns: mono float32 24 kHz.

    At most ``max_seconds`` long (``max_seconds`` times 12.5 frames, rounded up, then cut to
    the sample); empty when the model ends the audio at once.
    """
    if not max_seconds > 0:
        raise ValueError(f"max_seconds must be positive, not {max_seconds}")
    conversation = build_conversation(context, text, speaker_id)
    max_new_frames = max(1, math.ceil(max_seconds * bundle.frame_rate - 1e-9))
    codes = generate_codes(
        bundle,
        conversation,
        max_new_frames=max_new_frames,
        seed=seed,
        temperature=temperature,
        depth_temperature=depth_temperature,
        top_k=top_k,
    )
    audio = decode_codes(bundle, codes)
    return audio[: round(max_seconds * bundle.sample_rate)]


def _csm(model: Any) -> Any:
    """The ``CsmForConditionalGeneration`` inside a ``peft.PeftModel`` (or the model itself)."""
    get_base_model = getattr(type(model), "get_base_model", None)
    return model.get_base_model() if callable(get_base_model) else model
