"""Tiny NextDiT models (Z-Image, Z-Image omni, Lumina 2, NewBie, Z-Image pixel space) built through ComfyUI's own model config
classes (`comfy.supported_models.ZImage / Lumina2 / ZImagePixelSpace`), random seeded weights, fp32 on the CPU.

Each builds in well under a second and samples a 64x80 image in a fraction of one; they take text features of
width `TEXT_WIDTH` (random CONDITIONING from `conditioning()`, or concepts as `Concepts(names, embeddings)`).
"""

from __future__ import annotations

import torch

import host

TEXT_WIDTH = 32       # cap_feat_dim: the width of the text features the models take
POOLED_WIDTH = 24     # NewBie's pooled-text width (clip_text_dim)

_COMMON = dict(image_model="lumina2", patch_size=2, in_channels=16, n_layers=4, n_refiner_layers=1, qk_norm=True,
               cap_feat_dim=TEXT_WIDTH)

# Z-Image's layout (scale-only modulation with a 256-wide timestep vector, so dim >= 256; rope theta 256; caption
# and image padded to multiples of 32 with learned tokens), shrunk.
Z_IMAGE = dict(_COMMON, dim=256, n_heads=4, n_kv_heads=4, axes_dims=[16, 24, 24], axes_lens=[1536, 512, 512],
               rope_theta=256.0, ffn_dim_multiplier=8.0 / 3.0, z_image_modulation=True, time_scale=1000.0,
               pad_tokens_multiple=32)

# Z-Image omni (the base model that takes reference images): SigLIP image features of width 16.
Z_IMAGE_OMNI = dict(Z_IMAGE, siglip_feat_dim=16)

# Lumina 2's layout (SiLU + linear modulation, grouped-query attention: 4 query heads share 2 key/value heads).
LUMINA2 = dict(_COMMON, dim=64, n_heads=4, n_kv_heads=2, axes_dims=[4, 6, 6], axes_lens=[300, 512, 512],
               rope_theta=10000.0, ffn_dim_multiplier=4.0)

# NewBie: Lumina 2 plus a pooled-text projection into the timestep vector.
NEWBIE = dict(LUMINA2, clip_text_dim=POOLED_WIDTH)

# Z-Image's pixel-space variant: RGB patches of 4x4 pixels, a small per-patch MLP decoder.
Z_IMAGE_PIXEL = dict(Z_IMAGE, image_model="zimage_pixel", patch_size=4, in_channels=3, decoder_in_channels=48,
                     decoder_hidden_size=32, decoder_num_res_blocks=1, decoder_max_freqs=4)


def _build(config_class: str, config: dict, seed: int, dtype=torch.float32):
    import comfy.model_patcher
    import comfy.supported_models

    model_config = getattr(comfy.supported_models, config_class)(dict(config))
    model_config.set_inference_dtype(dtype, None)
    model = model_config.get_model({})
    host.init_weights(model.diffusion_model, seed)
    model.diffusion_model.to(dtype)
    return comfy.model_patcher.ModelPatcher(model, torch.device("cpu"), torch.device("cpu"))


def tiny_z_image(seed: int = 0, dtype=torch.float32):
    """Z-Image (Turbo) in miniature: 4 joint layers of width 256, 4 heads, padding to multiples of 32."""
    return _build("ZImage", Z_IMAGE, seed, dtype)


def tiny_z_image_omni(seed: int = 0):
    """Tiny Z-Image with SigLIP inputs: with reference latents it runs NextDiT's omni layout (SigLIP padding rows
    and the reference images before the generated image)."""
    return _build("ZImage", Z_IMAGE_OMNI, seed)


def tiny_lumina2(seed: int = 0):
    """Lumina 2 in miniature: 4 joint layers of width 64, grouped-query attention, no padding."""
    return _build("Lumina2", LUMINA2, seed)


def tiny_newbie(seed: int = 0):
    """NewBie in miniature: tiny Lumina 2 with a pooled-text input (give `pooled_output` in the conditioning)."""
    return _build("Lumina2", NEWBIE, seed)


def tiny_z_image_pixel(seed: int = 0):
    """Z-Image pixel space in miniature: the tiny Z-Image backbone on 4x4 RGB patches (latent = image, 3 channels)."""
    return _build("ZImagePixelSpace", Z_IMAGE_PIXEL, seed)


def conditioning(tokens: int = 7, seed: int = 0, pooled: bool = False, **extra):
    """A random CONDITIONING of `tokens` text features (plus a pooled vector for NewBie)."""
    gen = torch.Generator().manual_seed(seed)
    options = dict(extra)
    cond = torch.randn(1, tokens, TEXT_WIDTH, generator=gen)
    if pooled:
        options["pooled_output"] = torch.randn(1, POOLED_WIDTH, generator=gen)
    return [[cond, options]]


def concepts(names=("cat", "sofa", "window"), seed: int = 5):
    """Concepts with seeded random text features (no tiny Qwen3 / Gemma encoder needed)."""
    from concept_attention import Concepts

    gen = torch.Generator().manual_seed(seed)
    return Concepts(list(names), torch.randn(len(names), TEXT_WIDTH, generator=gen))
