"""Tiny HunyuanVideo-family models (HunyuanVideo 1.5, 1.0 and its I2V variants, HunyuanImage 2.1), built
through ComfyUI's own model configs (`comfy.supported_models.<Class>(config).get_model({})`), random seeded
fp32 weights on the CPU: hidden size 64, 2 heads, 3 double blocks. Each builds in well under a second and
samples a few latent frames in a fraction of one.

Text width 32 everywhere: it matches `tiny_encoders.tiny_hunyuan15_clip` (HunyuanVideo 1.5 / HunyuanImage 2.1).
HunyuanVideo 1.0 has no tiny encoder: give it raw conditioning (`conditioning`) and `Concepts` with embeddings.
"""

from __future__ import annotations

import torch

from host import init_weights

# The fields of ComfyUI's HunyuanVideoParams that every variant sets (model_detection's values where they are fixed)
COMMON = dict(image_model="hunyuan_video", context_in_dim=32, hidden_size=64, mlp_ratio=4.0, num_heads=2,
              depth=3, axes_dim=[8, 12, 12], theta=256, qkv_bias=True, meanflow=False, meanflow_sum=False)
# HunyuanVideo 1.5: 32 latent channels + 32 concat image channels + 1 mask, patch 1, byT5 and vision inputs,
# token-type embedding, no pooled vector and no guidance input; one single block (the real model has none) so
# that skipping them is tested.
HV15 = dict(COMMON, in_channels=65, out_channels=32, vec_in_dim=None, depth_single_blocks=1, patch_size=[1, 1, 1],
            guidance_embed=False, byt5=True, use_cond_type_embedding=True, vision_in_dim=24)
# HunyuanVideo 1.0: 16 latent channels, 2x2 spatial patches, CLIP-L pooled vector (here 32 wide), guidance.
HV10 = dict(COMMON, in_channels=16, out_channels=16, vec_in_dim=32, depth_single_blocks=1, patch_size=[1, 2, 2],
            guidance_embed=True, byt5=False, use_cond_type_embedding=False, vision_in_dim=None)
# HunyuanImage 2.1 (distilled: guidance and MeanFlow's second timestep): 64 channels, 2D patches of 1.
HI21 = dict(COMMON, in_channels=64, out_channels=64, vec_in_dim=None, depth_single_blocks=1, patch_size=[1, 1],
            axes_dim=[16, 16], guidance_embed=True, byt5=True, use_cond_type_embedding=False, vision_in_dim=None,
            meanflow=True)

VARIANTS = {  # name -> (ComfyUI model config class, config)
    "1.5": ("HunyuanVideo15", HV15),
    "1.0": ("HunyuanVideo", HV10),
    "1.0-i2v": ("HunyuanVideoI2V", dict(HV10, in_channels=33)),  # + concat image (16) and mask (1)
    "image-2.1": ("HunyuanImage21", HI21),
}


def tiny_hunyuan_video(variant: str = "1.5", seed: int = 0, dtype=torch.float32, **overrides):
    """A ModelPatcher of a tiny model of `variant` ("1.5", "1.0", "1.0-i2v", "image-2.1") in `dtype`;
    `overrides` change the config (e.g. depth=4)."""
    import comfy.model_patcher
    import comfy.supported_models

    name, config = VARIANTS[variant]
    model_config = getattr(comfy.supported_models, name)({**config, **overrides})
    model_config.set_inference_dtype(dtype, None)
    model = model_config.get_model({})
    init_weights(model.diffusion_model, seed)
    model.diffusion_model.to(dtype)
    return comfy.model_patcher.ModelPatcher(model, torch.device("cpu"), torch.device("cpu"))


def conditioning(tokens: int = 6, seed: int = 0, width: int = 32, **extra):
    """A CONDITIONING of random text features [1, tokens, width] with the given extra keys
    (pooled_output, conditioning_byt5small, guidance, ...); no pooled vector unless given, as the 1.5 and
    HunyuanImage 2.1 encoders."""
    gen = torch.Generator().manual_seed(seed)
    return [[torch.randn(1, tokens, width, generator=gen), {"pooled_output": None, **extra}]]


def video_latent(batch: int = 2, channels: int = 32, frames: int = 3, h: int = 4, w: int = 6, seed: int = 3):
    return torch.randn(batch, channels, frames, h, w, generator=torch.Generator().manual_seed(seed))


class VisionOutput:
    """What HunyuanVideo15ImageToVideo puts in the conditioning as `clip_vision_output`: only
    `last_hidden_state` is read (model_base.HunyuanVideo15.extra_conds)."""

    def __init__(self, tokens: int = 5, width: int = 24, seed: int = 5):
        self.last_hidden_state = torch.randn(1, tokens, width, generator=torch.Generator().manual_seed(seed))
