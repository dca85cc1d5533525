"""A tiny Mochi (ComfyUI's `AsymmDiTJoint`), built through ComfyUI's own model config
(`comfy.supported_models.GenmoMochi(config).get_model({})`) with model_detection's fixed fields, random seeded
fp32 weights on the CPU: video stream 64 wide, text stream 32 wide (narrower, as Mochi's 1536 against 3072),
2 heads, 4 joint blocks (the last one does not update text). The video MLP keeps Mochi's hidden width (the
model asserts hidden_size_x * mlp_ratio_x == 12288), so a block has ~1.5M parameters; it still samples three
latent frames in a fraction of a second.

Text width 32: it matches `tiny_encoders.tiny_mochi_clip` (T5 padded to 256 tokens, with an attention mask).
"""

from __future__ import annotations

import torch

from host import init_weights

# comfy/model_detection.py's Mochi fields, with the widths shrunk
CONFIG = dict(image_model="mochi_preview", depth=4, patch_size=2, num_heads=2, hidden_size_x=64, hidden_size_y=32,
              mlp_ratio_x=12288 / 64, mlp_ratio_y=4.0, learn_sigma=False, in_channels=12, qk_norm=True,
              qkv_bias=False, out_bias=True, attn_drop=0.0, patch_embed_bias=True, posenc_preserve_area=True,
              timestep_mlp_bias=True, attend_to_padding=False, timestep_scale=1000.0, use_t5=True, t5_feat_dim=32,
              t5_token_length=256, rope_theta=10000.0)


def tiny_mochi(seed: int = 0, dtype=torch.float32, **overrides):
    """A ModelPatcher of a tiny Mochi in `dtype`; `overrides` change the config (e.g. depth=8)."""
    import comfy.model_patcher
    import comfy.supported_models

    model_config = comfy.supported_models.GenmoMochi({**CONFIG, **overrides})
    model_config.set_inference_dtype(dtype, None)
    model = model_config.get_model({})
    init_weights(model.diffusion_model, seed)
    model.diffusion_model.to(dtype)
    return comfy.model_patcher.ModelPatcher(model, torch.device("cpu"), torch.device("cpu"))


def conditioning(tokens: int = 6, seed: int = 0, length: int = 10, width: int = 32, **extra):
    """A CONDITIONING as Mochi's T5 encoder gives it: features [1, length, width] of which the first `tokens` are
    the prompt and the rest padding, with the attention mask saying so."""
    gen = torch.Generator().manual_seed(seed)
    mask = torch.zeros(1, length, dtype=torch.long)
    mask[:, :tokens] = 1
    return [[torch.randn(1, length, width, generator=gen), {"attention_mask": mask, **extra}]]


def video_latent(batch: int = 2, frames: int = 3, h: int = 4, w: int = 6, seed: int = 3):
    return torch.randn(batch, 12, frames, h, w, generator=torch.Generator().manual_seed(seed))


def video_vae():
    """ComfyUI's own Mochi VAE (`comfy.sd.VAE`, built from the state-dict key it detects the model by; its weights
    stay uninitialised and never run): what its temporal compression and frame counts are."""
    import comfy.sd

    return comfy.sd.VAE(sd={"decoder.blocks.2.blocks.3.stack.5.weight": torch.zeros(512, 512, 3, 3, 3)})
