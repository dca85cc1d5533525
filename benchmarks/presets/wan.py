"""Wan presets: Wan 2.2 14B's architecture (each of its two experts is a Wan 2.1 14B-sized model) on an 81-frame
480p clip, and a mid-size one for CPUs. `resolution` is the clip's height; its width keeps Wan's 832x480 aspect.
The maps are the cross-attention baseline, the only space Wan has."""

from __future__ import annotations

import torch

from . import Preset, random_model

# Wan 2.2 A14B T2V as ComfyUI's model detection reads it from either expert's checkpoint (comfy/model_detection.py:
# 128-wide heads, the umT5-XXL text width 4096 of WanModel's default); it loads as WAN21_T2V.
WAN22_14B = dict(image_model="wan2.1", model_type="t2v", dim=5120, ffn_dim=13824, num_heads=40, num_layers=40,
                 text_dim=4096, freq_dim=256, in_dim=16, out_dim=16, patch_size=(1, 2, 2), window_size=(-1, -1),
                 qk_norm=True, cross_attn_norm=True, eps=1e-6)


def wan_preset(model: dict, resolution: int, frames: int, steps: int, prompt_tokens: int, repeats: int,
               notes: str) -> Preset:
    def build(device, dtype):
        return random_model("WAN21_T2V", model, device, dtype)

    def conditioning(gen):
        return [[torch.randn(1, prompt_tokens, model["text_dim"], generator=gen), {"pooled_output": None}]]

    def latent(height):
        width = round(height * 832 / 480 / 16) * 16
        return torch.zeros(1, 16, (frames - 1) // 4 + 1, height // 8, width // 8)  # EmptyHunyuanLatentVideo

    return Preset(build, conditioning, latent, model["text_dim"], resolution, steps, repeats, notes)


PRESETS = {
    "wan22": wan_preset(WAN22_14B, resolution=480, frames=81, steps=20, prompt_tokens=512, repeats=3,
                        notes="Wan 2.2 14B's architecture (one 14B expert), 81 frames at 832x480"),
    "wan22-cpu-mid": wan_preset(dict(WAN22_14B, dim=768, ffn_dim=3072, num_heads=6, num_layers=8, text_dim=1024),
                                resolution=144, frames=33, steps=4, prompt_tokens=512, repeats=3,
                                notes="a mid-size Wan (8 blocks, 768 wide), 33 frames at 256x144, for CPUs"),
}
