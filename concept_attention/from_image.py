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
                     space: str = "auto", softmax: bool = True) -> ConceptMaps:
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


def check_latent(model_patcher, latent: torch.Tensor, image_shape=None) -> None:
    """Clear errors for a LATENT that this model cannot map, or that is not the picture of the image given
    with it (image_shape: [B, H, W] of that IMAGE, or None)."""
    latent_format = model_patcher.model.latent_format
    channels, scale = latent_format.latent_channels, latent_format.spacial_downscale_ratio
    video = latent_format.latent_dimensions == 3  # [batch, channels, frames, height, width]
    if latent.ndim != 2 + latent_format.latent_dimensions or latent.shape[1] != channels:
        layout = f"[batch, {channels}, {'frames, ' if video else ''}height/{scale}, width/{scale}]"
        raise ConceptAttentionError(
            f"This LATENT has shape {list(latent.shape)}, but the model works on latents of {channels} channels "
            f"({layout}). Wire the LATENT that a sampler made with this model, or leave latent empty and give the "
            f"image with its VAE.")
    if image_shape is None:
        return
    batch, height, width = image_shape
    latent_h, latent_w = latent.shape[-2] * scale, latent.shape[-1] * scale
    # An encoded image may be up to scale-1 pixels larger: the VAE drops the rows and columns that do not fill
    # a latent cell.
    # (a video's frame count is checked against its decoded frames where the frames are drawn over)
    if not (0 <= height - latent_h < scale and 0 <= width - latent_w < scale) or (
            not video and batch not in (1, len(latent))):
        raise ConceptAttentionError(
            f"The image ({batch} x {width}x{height} pixels) is not the picture of this LATENT ({len(latent)} x "
            f"{latent_w}x{latent_h} pixels). With a LATENT, the image is only drawn over: wire the image "
            f"decoded from this same LATENT (VAE Decode), or leave image empty.")
