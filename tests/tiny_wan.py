"""Tiny Wan 2.1 / 2.2 models, built through ComfyUI's own model configs
(`comfy.supported_models.<Class>(config).get_model({})`), random seeded fp32 weights on the CPU: hidden size 64,
2 heads of 32, 4 blocks. Each builds in well under a second and samples a few latent frames in a fraction of
one.

Text width 32: it matches `tiny_encoders.tiny_wan_clip` (umT5). The I2V variant takes CLIP vision features of
ComfyUI's fixed width 1280 (`clip_vision_output`, see `VisionOutput`).
"""

from __future__ import annotations

import torch

from host import init_weights

# The fields model_detection sets for every Wan checkpoint (patch, norms, eps), at a tiny size.
COMMON = dict(image_model="wan2.1", dim=64, ffn_dim=128, num_heads=2, num_layers=4, text_dim=32, freq_dim=256,
              patch_size=(1, 2, 2), window_size=(-1, -1), qk_norm=True, cross_attn_norm=True, eps=1e-6)

VARIANTS = {  # name -> (ComfyUI model config class, config)
    "2.1": ("WAN21_T2V", dict(COMMON, model_type="t2v", in_dim=16, out_dim=16)),
    # Wan 2.1 I2V: + 16 channels of the start image and 4 of its mask, CLIP vision tokens through `img_emb`
    "2.1-i2v": ("WAN21_I2V", dict(COMMON, model_type="i2v", in_dim=36, out_dim=16)),
    # Wan 2.2 5B (TI2V): the 48-channel Wan 2.2 VAE latent (16x spatial compression)
    "2.2-5b": ("WAN22_T2V", dict(COMMON, model_type="t2v", in_dim=48, out_dim=48)),
    # Wan 2.2 14B I2V: no CLIP vision, start image as concat channels
    "2.2-i2v": ("WAN21_T2V", dict(COMMON, model_type="t2v", in_dim=36, out_dim=16)),
}


def tiny_wan(variant: str = "2.1", seed: int = 0, dtype=torch.float32, **overrides):
    """A ModelPatcher of a tiny model of `variant` ("2.1", "2.1-i2v", "2.2-5b", "2.2-i2v") in `dtype`;
    `overrides` change the config (e.g. num_layers=8)."""
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
    """A CONDITIONING of random text features [1, tokens, width] (umT5 pads to 512; a few tokens keep it
    fast) with the given extra keys (clip_vision_output, concat_latent_image, ...)."""
    gen = torch.Generator().manual_seed(seed)
    return [[torch.randn(1, tokens, width, generator=gen), {"pooled_output": None, **extra}]]


def video_latent(batch: int = 2, channels: int = 16, frames: int = 3, h: int = 4, w: int = 6, seed: int = 3):
    return torch.randn(batch, channels, frames, h, w, generator=torch.Generator().manual_seed(seed))


class VisionOutput:
    """What WanImageToVideo puts in the conditioning as `clip_vision_output`: only
    `penultimate_hidden_states` is read (model_base.WAN21.extra_conds)."""

    def __init__(self, tokens: int = 5, seed: int = 5):
        self.penultimate_hidden_states = torch.randn(1, tokens, 1280, generator=torch.Generator().manual_seed(seed))
