"""Tiny Qwen-Image family models built through ComfyUI's own classes, for tests and example workflows.

`tiny_qwen_image(variant)` returns a ComfyUI ModelPatcher of `comfy.supported_models.QwenImage` with the real
block code (`QwenImageTransformer2DModel`) shrunk to hidden size 64 (2 heads of 32), 4 blocks and a text width
of 32 (the width of the tiny Qwen2.5-VL encoder, `tests/tiny_encoders.py` `tiny_qwen_image_clip`), with seeded
random fp32 weights on the CPU. Variants differ only in the flags ComfyUI's model detection sets
(`comfy/model_detection.py`):
- "image": Qwen-Image and Qwen-Image-Edit 2509 (reference latents placed by "index").
- "edit_2511": Qwen-Image-Edit 2511 (`default_ref_method="index_timestep_zero"`: reference tokens at timestep 0).
- "layered": Qwen-Image-Layered (`use_additional_t_cond`, `default_ref_method="negative_index"`; the latent
  carries the layers as frames: [B, 16, layers + 1, H, W]).
Latents are [B, 16, 1, H, W] (ComfyUI's Wan 2.1 latent format); a sampler step costs milliseconds.
"""

from __future__ import annotations

import torch

from host import init_weights

QWEN_IMAGE_CONFIG = dict(image_model="qwen_image", patch_size=2, in_channels=64, out_channels=16, num_layers=4,
                         attention_head_dim=32, num_attention_heads=2, joint_attention_dim=32,
                         axes_dims_rope=(8, 12, 12))
VARIANTS = {
    "image": {},
    "edit_2511": {"default_ref_method": "index_timestep_zero"},
    "layered": {"use_additional_t_cond": True, "default_ref_method": "negative_index"},
}
TEXT_WIDTH = QWEN_IMAGE_CONFIG["joint_attention_dim"]


def tiny_qwen_image(seed: int = 0, variant: str = "image", dtype=torch.float32, **overrides):
    """A tiny Qwen-Image family model (see the module docstring for the variants), weights in `dtype`."""
    import comfy.model_patcher
    import comfy.supported_models

    config = comfy.supported_models.QwenImage({**QWEN_IMAGE_CONFIG, **VARIANTS[variant], **overrides})
    config.set_inference_dtype(dtype, None)
    model = config.get_model({})
    init_weights(model.diffusion_model, seed)
    model.diffusion_model.to(dtype)
    return comfy.model_patcher.ModelPatcher(model, torch.device("cpu"), torch.device("cpu"))


def prompt(tokens: int = 6, seed: int = 0, padded: int = 0, **extra):
    """A CONDITIONING of random text features (width TEXT_WIDTH) standing in for an encoded prompt; `padded`
    trailing tokens are masked out by an attention mask, as ComfyUI's Qwen encoder marks padding."""
    gen = torch.Generator().manual_seed(seed)
    options = dict(extra)
    if padded:
        mask = torch.ones(1, tokens, dtype=torch.long)
        mask[:, tokens - padded:] = 0
        options["attention_mask"] = mask
    return [[torch.randn(1, tokens, TEXT_WIDTH, generator=gen), options]]


def latent(batch: int = 2, h: int = 8, w: int = 10, frames: int = 1, seed: int = 3):
    """A noise latent [B, 16, frames, h, w] (frames > 1: Qwen-Image-Layered's layers)."""
    return torch.randn(batch, 16, frames, h, w, generator=torch.Generator().manual_seed(seed))
