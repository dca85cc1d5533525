"""CogVideoX presets: CogVideoX-5B's architecture (the paper authors' CogVideoX model) on its native 49-frame
720x480 clip, and a mid-size CogVideoX 1.5 (two latent frames per token frame) for CPUs. `resolution` is the
clip's height; its width keeps the 3:2 aspect of 720x480."""

from __future__ import annotations

import torch

from . import Preset, random_model

# CogVideoX-5B as ComfyUI's model detection reads it from the checkpoint (comfy/model_detection.py)
COGVIDEOX_5B = dict(image_model="cogvideox", num_attention_heads=48, attention_head_dim=64, time_embed_dim=512,
                    text_embed_dim=4096, num_layers=42, in_channels=16, out_channels=16, patch_size=2,
                    use_rotary_positional_embeddings=True, use_learned_positional_embeddings=False)


def cogvideox_preset(model: dict, resolution: int, frames: int, steps: int, repeats: int, notes: str) -> Preset:
    def build(device, dtype):
        return random_model("CogVideoX_T2V", dict(model), device, dtype)

    def conditioning(gen):  # CogVideoX's T5 prompt: always 226 tokens (CogVideoXT5Tokenizer pads to it)
        return [[torch.randn(1, 226, model["text_embed_dim"], generator=gen), {}]]

    def latent(height):
        width = round(height * 3 / 2 / 16) * 16
        return torch.zeros(1, 16, (frames - 1) // 4 + 1, height // 8, width // 8)

    return Preset(build, conditioning, latent, model["text_embed_dim"], resolution, steps, repeats, notes)


PRESETS = {
    "cogvideox": cogvideox_preset(COGVIDEOX_5B, resolution=480, frames=49, steps=20, repeats=3,
                                  notes="CogVideoX-5B's architecture (42 blocks, 3072 wide), 49 frames at 720x480"),
    "cogvideox-cpu-mid": cogvideox_preset(
        dict(COGVIDEOX_5B, num_attention_heads=12, text_embed_dim=1024, num_layers=8, patch_size_t=2),
        resolution=160, frames=49, steps=4, repeats=3,
        notes="a mid-size CogVideoX 1.5 (8 blocks, 768 wide, temporal patches of 2), 49 frames at 240x160, "
              "for CPUs"),
}
