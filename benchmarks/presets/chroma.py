"""Chroma presets: the full Chroma1 and Chroma1-Radiance architectures at 1024x1024, and a mid-size Chroma for
CPUs. Chroma's T5 prompt is not padded, so the prompt is a long one of 256 tokens."""

from __future__ import annotations

import torch

from . import Preset, random_model

# comfy/model_detection.py's Chroma settings (approximator 64 -> 5120 x 5 -> hidden) with Flux-dev's trunk.
CHROMA1 = dict(in_channels=64, out_channels=64, context_in_dim=4096, hidden_size=3072, mlp_ratio=4.0,
               num_heads=24, depth=19, depth_single_blocks=38, axes_dim=[16, 56, 56], theta=10000, patch_size=2,
               qkv_bias=True, in_dim=64, out_dim=3072, hidden_dim=5120, n_layers=5, txt_ids_dims=[],
               vec_in_dim=None)
# comfy/model_detection.py's Chroma Radiance settings: RGB pixels in, a 16-pixel patch, the NeRF head.
RADIANCE1 = dict(CHROMA1, in_channels=3, out_channels=3, patch_size=16, nerf_hidden_size=64, nerf_mlp_ratio=4,
                 nerf_depth=4, nerf_max_freqs=8, nerf_tile_size=512, nerf_final_head_type="conv",
                 nerf_embedder_dtype=torch.float32, use_x0=False, use_sequential_txt_ids=False)


def chroma_preset(model: dict, radiance: bool, resolution: int, steps: int, prompt_tokens: int, repeats: int,
                  notes: str) -> Preset:
    def build(device, dtype):
        return random_model("ChromaRadiance" if radiance else "Chroma",
                            dict(image_model="chroma_radiance" if radiance else "chroma", **model), device, dtype)

    def conditioning(gen):
        return [[torch.randn(1, prompt_tokens, model["context_in_dim"], generator=gen), {}]]

    def latent(res):
        return torch.zeros(1, 3, res, res) if radiance else torch.zeros(1, 16, res // 8, res // 8)

    return Preset(build, conditioning, latent, model["context_in_dim"], resolution, steps, repeats, notes)


PRESETS = {
    "chroma": chroma_preset(CHROMA1, False, resolution=1024, steps=20, prompt_tokens=256, repeats=3,
                            notes="Chroma1's architecture (8.9B parameters)"),
    "chroma-radiance": chroma_preset(RADIANCE1, True, resolution=1024, steps=20, prompt_tokens=256, repeats=3,
                                     notes="Chroma1-Radiance's architecture (9.5B parameters, pixel space, "
                                           "16-pixel patches)"),
    "chroma-cpu-mid": chroma_preset(dict(CHROMA1, context_in_dim=1024, hidden_size=768, num_heads=12, depth=8,
                                         depth_single_blocks=16, axes_dim=[16, 24, 24], out_dim=768,
                                         hidden_dim=1024),
                                    False, resolution=256, steps=4, prompt_tokens=128, repeats=3,
                                    notes="a mid-size Chroma that a CPU samples in seconds"),
}
