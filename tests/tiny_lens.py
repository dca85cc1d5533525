"""Tiny Lens models built through ComfyUI's own classes, for tests and example workflows.

`tiny_lens()` returns a ComfyUI ModelPatcher of `comfy.supported_models.Lens` with the real block code
(`LensTransformer2DModel`) shrunk to hidden size 64 (2 heads of 32), 4 blocks and text features of two encoder
layers of width 16 side by side (text width 32), seeded random fp32 weights on the CPU. Latents are Flux.2's
[B, 128, H, W] (one token per latent pixel); a sampler step costs milliseconds.
"""

from __future__ import annotations

import torch

from host import init_weights

LENS_CONFIG = dict(image_model="lens", in_channels=128, out_channels=32, num_layers=4, attention_head_dim=32,
                   num_attention_heads=2, enc_hidden_dim=16, axes_dims_rope=(8, 12, 12),
                   multi_layer_encoder_feature=True, selected_layer_index=(0, 1))
TEXT_WIDTH = LENS_CONFIG["enc_hidden_dim"] * len(LENS_CONFIG["selected_layer_index"])


def tiny_lens(seed: int = 0, **overrides):
    import comfy.model_patcher
    import comfy.supported_models

    config = comfy.supported_models.Lens({**LENS_CONFIG, **overrides})
    config.set_inference_dtype(torch.float32, None)
    model = config.get_model({})
    init_weights(model.diffusion_model, seed)
    model.diffusion_model.to(torch.float32)
    return comfy.model_patcher.ModelPatcher(model, torch.device("cpu"), torch.device("cpu"))


def prompt(tokens: int = 6, seed: int = 0, padded: int = 0):
    """A CONDITIONING of random text features (width TEXT_WIDTH) standing in for an encoded prompt; `padded`
    trailing tokens are masked out by an attention mask."""
    gen = torch.Generator().manual_seed(seed)
    options = {}
    if padded:
        mask = torch.ones(1, tokens, dtype=torch.long)
        mask[:, tokens - padded:] = 0
        options["attention_mask"] = mask
    return [[torch.randn(1, tokens, TEXT_WIDTH, generator=gen), options]]


def latent(batch: int = 2, h: int = 6, w: int = 8, seed: int = 3):
    """A noise latent [B, 128, h, w] (Flux.2's packed latent: h x w tokens)."""
    return torch.randn(batch, 128, h, w, generator=torch.Generator().manual_seed(seed))
