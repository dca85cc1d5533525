"""Tiny LongCat-Image and Ovis-Image models built through ComfyUI's own classes, for tests and example workflows.

Both are ComfyUI's `Flux` with per-block modulation, no pooled vector and sequential text ids on axes 1 and 2:
`tiny_longcat()` through `supported_models.LongCatImage` (model_base.LongCatImage: no guidance, image ids shifted
past the text), `tiny_ovis()` through `supported_models.FluxSchnell` as ComfyUI detects an Ovis checkpoint
(`txt_norm` before `txt_in`, gate/up/down MLPs). Seeded random fp32 weights on the CPU, hidden size 64, 3 double
blocks and 1 single block; text features `TEXT_WIDTH` wide (the real ones: 3584 LongCat, 2048 Ovis), the width
of `tiny_ovis_clip` in tests/tiny_encoders.py.
"""

from __future__ import annotations

import torch

import host

TEXT_WIDTH = 32

CONFIG = dict(image_model="flux", in_channels=16, out_channels=16, vec_in_dim=None, context_in_dim=TEXT_WIDTH,
              hidden_size=64, mlp_ratio=4.0, num_heads=2, depth=3, depth_single_blocks=1, axes_dim=[8, 12, 12],
              theta=10000, patch_size=2, qkv_bias=True, guidance_embed=False, txt_ids_dims=[1, 2])


def _build(config_class, config: dict, seed: int):
    import comfy.model_patcher

    model_config = config_class(config)
    model_config.set_inference_dtype(torch.float32, None)
    model = model_config.get_model({})
    host.init_weights(model.diffusion_model, seed)
    model.diffusion_model.to(torch.float32)
    return comfy.model_patcher.ModelPatcher(model, torch.device("cpu"), torch.device("cpu"))


def tiny_longcat(seed: int = 0):
    import comfy.supported_models
    return _build(comfy.supported_models.LongCatImage, dict(CONFIG), seed)


def tiny_ovis(seed: int = 0):
    import comfy.supported_models
    return _build(comfy.supported_models.FluxSchnell, {**CONFIG, "yak_mlp": True, "txt_norm": True}, seed)


def prompt(tokens: int = 12, seed: int = 5, **extra):
    """A CONDITIONING with random text features (neither model pads the text again)."""
    return [[torch.randn(1, tokens, TEXT_WIDTH, generator=torch.Generator().manual_seed(seed)), {**extra}]]


def latent(batch: int = 2, h: int = 8, w: int = 10, seed: int = 3):
    return torch.randn(batch, 16, h, w, generator=torch.Generator().manual_seed(seed))
