"""Tiny CogVideoX models (1.0 2B and 5B, 1.5 T2V / I2V, CogVideoX-Fun inpainting), built through ComfyUI's own
model configs (`comfy.supported_models.CogVideoX_T2V / _I2V / _Inpaint(config).get_model({})`), random seeded
fp32 weights on the CPU: 2-3 heads of 32 (hidden 64, or 96 for the 2B's sin-cos positions, whose width must be a
multiple of 3 x 32), time embedding 32, 3 blocks. Each builds in well under a second and samples three latent
frames in a fraction of one.

Text width 32: it matches `tiny_encoders.tiny_cogvideox_clip` (T5 padded to 226 tokens).
"""

from __future__ import annotations

import torch

from host import init_weights

COMMON = dict(image_model="cogvideox", num_attention_heads=2, attention_head_dim=32, time_embed_dim=32,
              text_embed_dim=32, num_layers=3, in_channels=16, out_channels=16, patch_size=2)
VARIANTS = {  # name -> (ComfyUI model config class, config)
    # 1.0 2B: sin-cos positional embeddings added to the video tokens (text: zeros), Conv2d patches
    "2b": ("CogVideoX_T2V", dict(COMMON, num_attention_heads=3, use_rotary_positional_embeddings=False)),
    # 1.0 5B: 3D RoPE on the video's queries and keys, Conv2d patches
    "5b": ("CogVideoX_T2V", dict(COMMON, use_rotary_positional_embeddings=True)),
    # 1.5: RoPE, patches of 2 latent frames x 2 x 2 (a Linear)
    "1.5": ("CogVideoX_T2V", dict(COMMON, use_rotary_positional_embeddings=True, patch_size_t=2)),
    # 1.5 I2V: + the start image's latent as 16 more input channels, and the ofs embedding
    "1.5-i2v": ("CogVideoX_I2V", dict(COMMON, use_rotary_positional_embeddings=True, patch_size_t=2,
                                      in_channels=32, ofs_embed_dim=32)),
    # CogVideoX-Fun 1.5 inpainting (VOID): + mask and masked-video latents, 32 more input channels
    "1.5-inpaint": ("CogVideoX_Inpaint", dict(COMMON, use_rotary_positional_embeddings=True, patch_size_t=2,
                                              in_channels=48)),
}


def tiny_cogvideox(variant: str = "5b", seed: int = 0, dtype=torch.float32, **overrides):
    """A ModelPatcher of a tiny model of `variant` (see VARIANTS) in `dtype`; `overrides` change the config
    (e.g. num_layers=42)."""
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
    """A CONDITIONING of random T5 features [1, tokens, width] with the given extra keys (concat_latent_image,
    ofs, ...). Real CogVideoX prompts are 226 tokens; the model takes any length."""
    gen = torch.Generator().manual_seed(seed)
    return [[torch.randn(1, tokens, width, generator=gen), dict(extra)]]


def video_latent(batch: int = 2, frames: int = 3, h: int = 4, w: int = 6, seed: int = 3, channels: int = 16):
    return torch.randn(batch, channels, frames, h, w, generator=torch.Generator().manual_seed(seed))


def video_vae():
    """ComfyUI's own CogVideoX VAE (`comfy.sd.VAE`, built from the state-dict keys it detects the model by; its
    weights stay uninitialised and never run): what its temporal compression and frame counts are."""
    import comfy.sd

    return comfy.sd.VAE(sd={"decoder.conv_in.conv.weight": torch.zeros(512, 16, 3, 3, 3),
                            "decoder.mid_block.resnets.0.norm1.norm_layer.weight": torch.zeros(512),
                            "encoder.conv_out.conv.weight": torch.zeros(32, 512, 3, 3, 3)})
