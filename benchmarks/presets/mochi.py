"""Mochi presets: Mochi 1 preview's architecture (10B) on a 37-frame 848x480 clip (EmptyMochiLatentVideo's
size), and a mid-size one for CPUs. `resolution` is the clip's height; its width keeps the 848x480 aspect.
Mochi's blocks assert a video MLP of 12288 hidden units, so the mid-size model keeps it at a narrower width."""

from __future__ import annotations

import torch

from . import Preset, random_model

# Mochi 1 preview as ComfyUI's model detection reads it from the checkpoint (comfy/model_detection.py)
MOCHI = dict(image_model="mochi_preview", depth=48, patch_size=2, num_heads=24, hidden_size_x=3072,
             hidden_size_y=1536, mlp_ratio_x=4.0, mlp_ratio_y=4.0, learn_sigma=False, in_channels=12, qk_norm=True,
             qkv_bias=False, out_bias=True, attn_drop=0.0, patch_embed_bias=True, posenc_preserve_area=True,
             timestep_mlp_bias=True, attend_to_padding=False, timestep_scale=1000.0, use_t5=True, t5_feat_dim=4096,
             t5_token_length=256, rope_theta=10000.0)


def mochi_preset(model: dict, resolution: int, frames: int, steps: int, prompt_tokens: int, repeats: int,
                 notes: str) -> Preset:
    def build(device, dtype):
        return random_model("GenmoMochi", dict(model), device, dtype)

    def conditioning(gen):  # Mochi's T5 prompt: 256 tokens, the attention mask marks the prompt's own
        mask = torch.zeros(1, 256, dtype=torch.long)
        mask[:, :prompt_tokens] = 1
        return [[torch.randn(1, 256, model["t5_feat_dim"], generator=gen), {"attention_mask": mask}]]

    def latent(height):
        width = round(height * 848 / 480 / 16) * 16
        return torch.zeros(1, 12, (frames - 1) // 6 + 1, height // 8, width // 8)  # EmptyMochiLatentVideo

    return Preset(build, conditioning, latent, model["t5_feat_dim"], resolution, steps, repeats, notes)


PRESETS = {
    "mochi": mochi_preset(MOCHI, resolution=480, frames=37, steps=20, prompt_tokens=64, repeats=3,
                          notes="Mochi 1 preview's architecture (10B, 48 blocks), 37 frames at 848x480"),
    "mochi-cpu-mid": mochi_preset(
        dict(MOCHI, depth=6, num_heads=8, hidden_size_x=512, hidden_size_y=256, mlp_ratio_x=12288 / 512,
             t5_feat_dim=1024),
        resolution=192, frames=13, steps=3, prompt_tokens=32, repeats=3,
        notes="a mid-size Mochi (6 blocks, 512 / 256 wide), 13 frames at 336x192, for CPUs"),
}
