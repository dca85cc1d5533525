"""HunyuanVideo 1.5 presets: the full architecture (8.3B parameters) on a 33-frame 480p clip, a mid-size one for
CPUs. `resolution` is the clip's height; its width keeps HunyuanVideo 1.5's 848x480 aspect."""

from __future__ import annotations

import torch

from . import Preset, random_model

# HunyuanVideo 1.5 as ComfyUI's model detection reads it from the checkpoint (comfy/model_detection.py)
HV15 = dict(image_model="hunyuan_video", in_channels=65, out_channels=32, vec_in_dim=None, context_in_dim=3584,
            hidden_size=2048, mlp_ratio=4.0, num_heads=16, depth=54, depth_single_blocks=0, axes_dim=[16, 56, 56],
            theta=256, patch_size=[1, 1, 1], qkv_bias=True, guidance_embed=False, byt5=True, meanflow=False,
            use_cond_type_embedding=True, vision_in_dim=1152, meanflow_sum=False)


def hunyuan_video15_preset(model: dict, resolution: int, frames: int, steps: int, prompt_tokens: int,
                           repeats: int, notes: str) -> Preset:
    def build(device, dtype):
        return random_model("HunyuanVideo15", model, device, dtype)

    def conditioning(gen):
        return [[torch.randn(1, prompt_tokens, model["context_in_dim"], generator=gen), {"pooled_output": None}]]

    def latent(height):
        width = round(height * 848 / 480 / 16) * 16
        return torch.zeros(1, 32, (frames - 1) // 4 + 1, height // 16, width // 16)  # EmptyHunyuanVideo15Latent

    return Preset(build, conditioning, latent, model["context_in_dim"], resolution, steps, repeats, notes)


PRESETS = {
    "hunyuanvideo15": hunyuan_video15_preset(HV15, resolution=480, frames=33, steps=20, prompt_tokens=256,
                                             repeats=3, notes="HunyuanVideo 1.5's architecture (8.3B), 33 frames "
                                                              "at 848x480"),
    "hunyuanvideo15-cpu-mid": hunyuan_video15_preset(
        dict(HV15, context_in_dim=1024, hidden_size=768, num_heads=6, depth=8, vision_in_dim=64), resolution=128,
        frames=33, steps=4, prompt_tokens=128, repeats=3,
        notes="a mid-size HunyuanVideo 1.5 (8 double blocks, 768 wide), 33 frames at 224x128, for CPUs"),
}
