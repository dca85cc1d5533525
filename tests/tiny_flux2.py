"""Tiny Flux.2 models built through ComfyUI's own classes, for tests and example workflows.

`tiny_flux2()` is a Flux.2 dev in miniature (guidance embedding, 128-channel /16 latent, patch size 1, global
modulation, SiLU-gated MLPs, no biases, sequential text ids on the last axis), `tiny_flux2(klein=True)` a Klein
(no guidance embedding, as the distilled Klein checkpoints). Seeded random fp32 weights on the CPU; a model
call on an 8x10 latent takes milliseconds. Text features are `TEXT_WIDTH` wide (the real ones: 15360 dev,
7680 Klein 4B, 12288 Klein 9B); with the tiny encoders of tests/tiny_encoders.py (`tiny_flux2_clip`,
`tiny_klein_clip`: 96 wide) build `tiny_flux2(context_in_dim=96)`.
"""

from __future__ import annotations

import torch

import host

TEXT_WIDTH = 48
LATENT_CHANNELS = 128  # comfy.latent_formats.Flux2

# As comfy/model_detection.py makes the config of a Flux.2 checkpoint, at a tiny width.
FLUX2_CONFIG = dict(image_model="flux2", in_channels=LATENT_CHANNELS, out_channels=LATENT_CHANNELS,
                    vec_in_dim=None, context_in_dim=TEXT_WIDTH, hidden_size=64, mlp_ratio=3.0, num_heads=2,
                    depth=4, depth_single_blocks=1, axes_dim=[8, 8, 8, 8], theta=2000, patch_size=1,
                    qkv_bias=False, guidance_embed=True, txt_ids_dims=[3], global_modulation=True,
                    mlp_silu_act=True, ops_bias=False, default_ref_method="index", ref_index_scale=10.0)


def tiny_flux2(seed: int = 0, klein: bool = False, dtype=torch.float32, **overrides):
    """A ModelPatcher around ComfyUI's `model_base.Flux2` (supported_models.Flux2), hidden size 64, 4 double
    blocks and 1 single block unless overridden (e.g. depth=8 for dev's double-block count)."""
    import comfy.model_patcher
    import comfy.supported_models

    config = comfy.supported_models.Flux2({**FLUX2_CONFIG, "guidance_embed": not klein, **overrides})
    config.set_inference_dtype(dtype, None)
    model = config.get_model({})
    host.init_weights(model.diffusion_model, seed)
    model.diffusion_model.to(dtype)
    return comfy.model_patcher.ModelPatcher(model, torch.device("cpu"), torch.device("cpu"))


def prompt(tokens: int = 12, seed: int = 5, width: int = TEXT_WIDTH, **extra):
    """A CONDITIONING with random text features of `tokens` tokens (model_base.Flux2 left-pads it to 512, as
    Flux.2 dev's unpadded Mistral encoding; give 512 tokens for a Klein-style right-padded encoding)."""
    return [[torch.randn(1, tokens, width, generator=torch.Generator().manual_seed(seed)), {**extra}]]


def latent(batch: int = 2, h: int = 8, w: int = 10, seed: int = 3):
    return torch.randn(batch, LATENT_CHANNELS, h, w, generator=torch.Generator().manual_seed(seed))
