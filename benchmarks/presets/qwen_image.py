"""Qwen-Image presets: the full Qwen-Image architecture (60 blocks, 20B parameters) and a mid-size one for CPUs."""

from __future__ import annotations

import torch

from . import Preset, random_model


def qwen_image_preset(model: dict, resolution: int, steps: int, prompt_tokens: int, repeats: int,
                      notes: str) -> Preset:
    def build(device, dtype):
        return random_model("QwenImage", dict(image_model="qwen_image", **model), device, dtype)

    def conditioning(gen):
        return [[torch.randn(1, prompt_tokens, model["joint_attention_dim"], generator=gen), {}]]

    def latent(res):
        return torch.zeros(1, 16, 1, res // 8, res // 8)  # ComfyUI's Wan 2.1 latent: [B, C, frames, h, w]

    return Preset(build, conditioning, latent, model["joint_attention_dim"], resolution, steps, repeats, notes)


PRESETS = {
    "qwen-image": qwen_image_preset(dict(patch_size=2, in_channels=64, out_channels=16, num_layers=60,
                                         attention_head_dim=128, num_attention_heads=24, joint_attention_dim=3584,
                                         axes_dims_rope=(16, 56, 56)),
                                    resolution=1024, steps=20, prompt_tokens=160, repeats=3,
                                    notes="Qwen-Image's architecture (20B parameters)"),
    # 512 px: the concept step reads the blocks' text-stream weights again for its 10 tokens (memory-bound on a
    # CPU), a cost that shrinks as 1 / tokens per block; at 384 px (704 tokens a block) it is ~9% of a CPU
    # block, at 1024 px (4096 image tokens; Qwen-Image's native 1328 px has 6889) it is far below the target.
    "qwen-image-cpu-mid": qwen_image_preset(dict(patch_size=2, in_channels=64, out_channels=16, num_layers=8,
                                                 attention_head_dim=64, num_attention_heads=12,
                                                 joint_attention_dim=1024, axes_dims_rope=(16, 24, 24)),
                                            resolution=512, steps=4, prompt_tokens=128, repeats=3,
                                            notes="a mid-size Qwen-Image that a CPU samples in seconds"),
}
