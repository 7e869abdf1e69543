"""Our own denoising loop for a ``StableAudioPipeline``: text-to-audio and SDEdit-style
audio-to-audio with a ``strength``.

The stock pipeline has no ``strength``, and its ``initial_audio_waveforms`` barely affect
the output: it adds the encoded audio to noise already scaled by ``init_noise_sigma`` (500
for Stable Audio Open; diffusers issue #10861). Here a source is encoded by the VAE (its
mean: no sampling), noised to the level ``strength`` sets (SDEdit: with ``N`` steps, the
loop starts at step ``N - round(N * strength)`` with the latent ``source + sigma * noise``
at that step's sigma) and the scheduler runs from that step. ``strength=1`` with no source
is the stock text-to-audio loop (the tests check that both give the same audio).

Every random number comes from the CPU: the initial noise is drawn from a CPU
``torch.Generator`` seeded with ``seed``, and the SDE scheduler's Brownian noise
(``CosineDPMSolverMultistepScheduler`` through ``torchsde``) is drawn on a CPU tensor with
the same seed and moved to the model's device, so a seed means the same sound on any device
(up to the device's arithmetic). The prompt embeddings, duration conditioning and guidance
are the pipeline's own methods, called as its ``__call__`` calls them.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["denoise", "start_step"]


def start_step(steps: int, strength: float) -> int:
    """The step SDEdit starts at: ``steps - round(steps * strength)``, so ``strength=1``
    runs every step and a smaller one keeps more of the source (at least one step runs)."""
    if not 0.0 < strength <= 1.0:
        raise ValueError(f"strength must lie in (0, 1], not {strength!r}")
    return min(steps - 1, steps - round(steps * strength))


def denoise(
    pipe: Any,
    *,
    prompt: str,
    negative: str | None,
    seconds: float,
    seed: int,
    steps: int,
    guidance: float,
    source: npt.NDArray[np.float32] | None = None,
    strength: float = 1.0,
    on_step: Callable[[int, int], None] | None = None,
) -> npt.NDArray[np.float32]:
    """Generate ``seconds`` of audio for ``prompt`` with ``pipe``; ``(n, channels)`` float32
    at ``pipe.vae.sampling_rate``.

    ``source`` (``(n, channels)`` at the model's rate, cropped or padded to the model's
    window) is varied with ``strength`` as the module says; without it ``strength`` must be
    1. ``on_step(done, total)`` is called after each denoising step that runs.
    """
    import torch
    from diffusers.models.embeddings import get_1d_rotary_pos_embed
    from diffusers.schedulers.scheduling_dpmsolver_sde import BrownianTreeNoiseSampler

    if source is None and strength != 1.0:
        raise ValueError("strength needs a source audio")
    device = pipe._execution_device
    dtype = pipe.transformer.dtype
    vae, scheduler = pipe.vae, pipe.scheduler
    hop = int(vae.hop_length)
    rate = int(vae.config.sampling_rate)
    frames = int(pipe.transformer.config.sample_size)
    limit = frames * hop / rate
    if not 0.0 < seconds <= limit + 1e-9:
        raise ValueError(f"{seconds:g} s is outside this model's 0..{limit:.2f} s")
    cfg = guidance > 1.0

    with torch.inference_mode(), warnings.catch_warnings():
        # torchsde warns on every step that float32 sigmas sit a rounding error outside its
        # interval (the stock pipeline does the same): not the user's business.
        warnings.filterwarnings("ignore", message="Should have", category=UserWarning)
        embeds = pipe.encode_prompt(prompt, device, cfg, negative)
        start_states, end_states = pipe.encode_duration(
            0.0, seconds, device, cfg and negative is not None, 1
        )
        text_states = torch.cat([embeds, start_states, end_states], dim=1)
        global_states = torch.cat([start_states, end_states], dim=2)
        if cfg and negative is None:  # as the pipeline: an all-zero unconditional row
            text_states = torch.cat([torch.zeros_like(text_states), text_states], dim=0)
            global_states = torch.cat([global_states, global_states], dim=0)

        scheduler.set_timesteps(steps, device=device)
        first = 0 if source is None else start_step(steps, strength)
        shape = (1, int(pipe.transformer.config.in_channels), frames)
        noise = torch.randn(shape, generator=torch.Generator("cpu").manual_seed(seed))
        noise = noise.to(device=device, dtype=dtype)
        if source is None:
            latents = noise * scheduler.init_noise_sigma
        else:
            audio = _window(source, int(vae.config.audio_channels), frames * hop)
            wave = torch.from_numpy(audio).to(device=device, dtype=vae.dtype)
            encoded = vae.encode(wave).latent_dist.mean.to(dtype)
            latents = encoded + noise * scheduler.sigmas[first].to(device=device, dtype=dtype)
        scheduler.set_begin_index(first)
        # The SDE's Brownian noise, drawn on the CPU (the scheduler would draw it on the
        # model's device, whose generator gives other numbers).
        scheduler.noise_sampler = BrownianTreeNoiseSampler(
            torch.zeros(shape, dtype=torch.float32),
            sigma_min=scheduler.config.sigma_min,
            sigma_max=scheduler.config.sigma_max,
            seed=seed,
        )
        rotary = get_1d_rotary_pos_embed(
            pipe.rotary_embed_dim,
            latents.shape[2] + global_states.shape[1],
            use_real=True,
            repeat_interleave_real=False,
        )
        timesteps = scheduler.timesteps[first:]
        for i, t in enumerate(timesteps):
            model_in = torch.cat([latents] * 2) if cfg else latents
            model_in = scheduler.scale_model_input(model_in, t)
            pred = pipe.transformer(
                model_in,
                t.unsqueeze(0),
                encoder_hidden_states=text_states,
                global_hidden_states=global_states,
                rotary_embedding=rotary,
                return_dict=False,
            )[0]
            if cfg:
                uncond, cond = pred.chunk(2)
                pred = uncond + guidance * (cond - uncond)
            latents = scheduler.step(pred, t, latents).prev_sample
            if on_step is not None:
                on_step(i + 1, len(timesteps))
        wave = vae.decode(latents.to(vae.dtype)).sample
        out = wave[0, :, : int(seconds * rate)].float().cpu().numpy()
    return np.ascontiguousarray(out.T, dtype=np.float32)


def _window(audio: npt.NDArray[np.float32], channels: int, length: int) -> npt.NDArray[np.float32]:
    """``audio`` ``(n, ch)`` as ``(1, channels, length)``: channels matched (mono repeated,
    more averaged), cropped or padded with silence to the model's window."""
    a = np.asarray(audio, dtype=np.float32)
    if a.ndim == 1:
        a = a[:, None]
    if a.shape[1] != channels:
        a = np.repeat(a.mean(axis=1, keepdims=True), channels, axis=1)
    out = np.zeros((1, channels, length), dtype=np.float32)
    n = min(length, a.shape[0])
    out[0, :, :n] = a[:n].T
    return out
