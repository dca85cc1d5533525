"""Sampling the tiny model with ComfyUI's own samplers, and checking what it drew against the captions."""

from __future__ import annotations

import torch

from .tiny_model import LATENT_CHANNELS, UNSHUFFLE, TinyFlux, decode_latents

SAMPLING = dict(steps=20, cfg=3.0, sampler="euler", scheduler="simple")


def generate(tiny: TinyFlux, caption: str, count: int = 1, seed: int = 0, size: int = 32, model=None,
             **sampling) -> torch.Tensor:
    """`count` images [count, H, W, 3] for one caption, sampled by comfy.sample.sample (KSampler's path).

    model: a patched clone of tiny.model_patcher (e.g. from `attach`) to sample with instead."""
    import comfy.sample

    opts = {**SAMPLING, **sampling}
    latent = torch.zeros(count, LATENT_CHANNELS, size // UNSHUFFLE, size // UNSHUFFLE)
    noise = comfy.sample.prepare_noise(latent, seed)
    out = comfy.sample.sample(model or tiny.model_patcher, noise, opts["steps"], opts["cfg"], opts["sampler"],
                              opts["scheduler"], tiny.conditioning(caption), tiny.conditioning(""), latent,
                              seed=seed, disable_pbar=True)
    return decode_latents(out)
