"""Z-Image presets (ComfyUI's NextDiT): Z-Image Turbo's full architecture, and a mid-size Z-Image for CPUs."""

from __future__ import annotations

import torch

from . import Preset, random_model

# What ComfyUI's model detection sets for Z-Image (comfy/model_detection.py, dim 3840), minus the sizes.
Z_IMAGE = dict(image_model="lumina2", patch_size=2, in_channels=16, qk_norm=True, rope_theta=256.0,
               ffn_dim_multiplier=8.0 / 3.0, z_image_modulation=True, time_scale=1000.0, pad_tokens_multiple=32)


def z_image_preset(model: dict, resolution: int, steps: int, prompt_tokens: int, repeats: int, notes: str) -> Preset:
    def build(device, dtype):
        return random_model("ZImage", {**Z_IMAGE, **model}, device, dtype)

    def conditioning(gen):
        return [[torch.randn(1, prompt_tokens, model["cap_feat_dim"], generator=gen), {}]]

    def latent(res):
        return torch.zeros(1, 16, res // 8, res // 8)

    return Preset(build, conditioning, latent, model["cap_feat_dim"], resolution, steps, repeats, notes)


PRESETS = {
    "z-image-turbo": z_image_preset(dict(dim=3840, n_layers=30, n_refiner_layers=2, n_heads=30, n_kv_heads=30,
                                         cap_feat_dim=2560, axes_dims=[32, 48, 48], axes_lens=[1536, 512, 512]),
                                    resolution=1024, steps=8, prompt_tokens=256, repeats=3,
                                    notes="Z-Image Turbo's architecture (6B parameters, Qwen3-4B text features)"),
    "z-image-cpu-mid": z_image_preset(dict(dim=768, n_layers=8, n_refiner_layers=2, n_heads=12, n_kv_heads=12,
                                           cap_feat_dim=1024, axes_dims=[16, 24, 24], axes_lens=[1536, 512, 512]),
                                      resolution=512, steps=4, prompt_tokens=128, repeats=3,
                                      notes="a mid-size Z-Image (hidden 768, 8 layers) that a CPU samples in seconds"),
}
