"""Flux.1 presets: the full Flux-dev architecture, a mid-size Flux for CPUs, and a tiny one for the smoke test."""

from __future__ import annotations

import torch

from . import Preset, random_model


def flux_preset(model: dict, resolution: int, steps: int, prompt_tokens: int, repeats: int, notes: str) -> Preset:
    def build(device, dtype):
        return random_model("Flux", dict(image_model="flux", txt_ids_dims=[], **model), device, dtype)

    def conditioning(gen):
        return [[torch.randn(1, prompt_tokens, model["context_in_dim"], generator=gen),
                 {"pooled_output": torch.randn(1, model["vec_in_dim"], generator=gen), "guidance": 3.5}]]

    def latent(res):
        return torch.zeros(1, 16, res // 8, res // 8)

    return Preset(build, conditioning, latent, model["context_in_dim"], resolution, steps, repeats, notes)


PRESETS = {
    "flux-dev": flux_preset(dict(in_channels=16, out_channels=16, vec_in_dim=768, context_in_dim=4096,
                                 hidden_size=3072, mlp_ratio=4.0, num_heads=24, depth=19, depth_single_blocks=38,
                                 axes_dim=[16, 56, 56], theta=10000, patch_size=2, qkv_bias=True,
                                 guidance_embed=True),
                            resolution=1024, steps=20, prompt_tokens=512, repeats=3,
                            notes="Flux.1-dev's architecture (12B parameters)"),
    "cpu-mid": flux_preset(dict(in_channels=16, out_channels=16, vec_in_dim=768, context_in_dim=1024,
                                hidden_size=768, mlp_ratio=4.0, num_heads=12, depth=8, depth_single_blocks=16,
                                axes_dim=[16, 24, 24], theta=10000, patch_size=2, qkv_bias=True,
                                guidance_embed=True),
                           resolution=256, steps=4, prompt_tokens=256, repeats=3,
                           notes="a mid-size Flux that a CPU samples in seconds"),
    "tiny": flux_preset(dict(in_channels=16, out_channels=16, vec_in_dim=32, context_in_dim=32, hidden_size=64,
                             mlp_ratio=4.0, num_heads=2, depth=3, depth_single_blocks=1, axes_dim=[8, 12, 12],
                             theta=10000, patch_size=2, qkv_bias=True, guidance_embed=True),
                        resolution=64, steps=2, prompt_tokens=16, repeats=1,
                        notes="seconds on any machine: keeps the script itself tested"),
}
