"""Maps for an existing image: one partial forward pass per noise sample, stopped after the last needed
joint block (the remaining joint blocks and all single blocks are skipped)."""

from __future__ import annotations

import torch

from .concepts import Concepts
from .errors import ConceptAttentionError
from .masks import ConceptMaps
from .patch import attach


def maps_from_latent(model_patcher, concepts: Concepts, latent: torch.Tensor, positive, *,
                     noise_level: float = 0.5, samples: int = 1, seed: int = 0, layers=None,
                     space: str = "output", softmax: bool = True) -> ConceptMaps:
    """Mean maps over `samples` noise draws of the image latent(s) at sigma `noise_level`.

    latent: the VAE encoding of the image ([B, C, H, W], as LATENT["samples"]); positive: a CONDITIONING
    (the caption, or an empty prompt). The model is called once per sample, at exactly that sigma.
    """
    import comfy.sample
    import comfy.samplers

    if not 0.0 < noise_level <= 1.0:
        raise ConceptAttentionError(
            f"noise_level is the sigma of the single forward pass and must lie in (0, 1]; got {noise_level}. "
            f"0.5 (the authors' default for Flux) is a good start.")
    if samples < 1:
        raise ConceptAttentionError(f"samples must be at least 1, got {samples}.")
    patched, recorder = attach(model_patcher, concepts, layers=layers, space=space, softmax=softmax,
                               stop_after_last_layer=True)
    sampler = comfy.samplers.sampler_object("euler")
    sigmas = torch.tensor([float(noise_level), 0.0])
    total = None
    for i in range(samples):
        noise = comfy.sample.prepare_noise(latent, seed + i)
        comfy.sample.sample_custom(patched, noise, 1.0, sampler, sigmas, positive, positive, latent,
                                   disable_pbar=True, seed=seed + i)
        maps = recorder.maps()
        total = maps if total is None else total + maps
    return recorder.concept_maps(total / samples, latent.shape[-2:])
