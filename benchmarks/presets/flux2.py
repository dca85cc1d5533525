"""Flux.2 presets: the full Flux.2 dev and Klein 4B architectures at 1024x1024, and a mid-size Flux.2 for CPUs.

Configs as comfy/model_detection.py makes them for the real checkpoints (global modulation, SiLU-gated MLPs, no
biases, patch size 1 on the 128-channel /16 latent, 4 RoPE axes with the text position on the last); depths and
widths of the released models (dev: 8 double + 48 single blocks, 6144 wide; Klein 4B: 5 + 20, 3072 wide, no
guidance embedding). The text is 512 tokens, as ComfyUI pads it. Sampled with the pack's defaults for Flux.2
(the last three double blocks, the last 30% of the steps).
"""

from __future__ import annotations

import torch

from . import Preset, random_model

LATENT_CHANNELS = 128
TEXT_TOKENS = 512


def flux2_preset(model: dict, resolution: int, steps: int, repeats: int, notes: str) -> Preset:
    config = dict(image_model="flux2", in_channels=LATENT_CHANNELS, out_channels=LATENT_CHANNELS, vec_in_dim=None,
                  mlp_ratio=3.0, axes_dim=[32, 32, 32, 32], theta=2000, patch_size=1, qkv_bias=False,
                  txt_ids_dims=[3], global_modulation=True, mlp_silu_act=True, ops_bias=False,
                  default_ref_method="index", ref_index_scale=10.0, **model)

    def build(device, dtype):
        return random_model("Flux2", dict(config), device, dtype)

    def conditioning(gen):
        return [[torch.randn(1, TEXT_TOKENS, config["context_in_dim"], generator=gen), {"guidance": 4.0}]]

    def latent(res):
        return torch.zeros(1, LATENT_CHANNELS, res // 16, res // 16)

    return Preset(build, conditioning, latent, config["context_in_dim"], resolution, steps, repeats, notes)


PRESETS = {
    "flux2-dev": flux2_preset(dict(context_in_dim=15360, hidden_size=6144, num_heads=48, depth=8,
                                   depth_single_blocks=48, guidance_embed=True),
                              resolution=1024, steps=20, repeats=3,
                              notes="Flux.2 dev's architecture (32B parameters)"),
    "flux2-klein-4b": flux2_preset(dict(context_in_dim=7680, hidden_size=3072, num_heads=24, depth=5,
                                        depth_single_blocks=20, guidance_embed=False),
                                   resolution=1024, steps=4, repeats=5,
                                   notes="Flux.2 Klein 4B's architecture, 4 steps as the distilled model"),
    "flux2-cpu-mid": flux2_preset(dict(context_in_dim=1536, hidden_size=512, num_heads=4, depth=4,
                                       depth_single_blocks=6, guidance_embed=True),
                                  resolution=256, steps=8, repeats=3,
                                  notes="a mid-size Flux.2 that a CPU samples in seconds"),
}
