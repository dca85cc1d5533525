"""LTX-2 presets: LTX-2 19B's architecture on a 121-frame clip at 768x512 (video latent alone: the benchmark's
sampler takes one latent tensor; the audio stream then does not run), and a mid-size one for CPUs.
`resolution` is the clip's height; its width keeps the 3:2 aspect. The maps are the cross-attention baseline,
the only space LTX has."""

from __future__ import annotations

import torch

from . import Preset, random_model

# LTX-2 19B as ComfyUI reads it (comfy/model_detection.py: 48 blocks, 32 heads of 128, cross-attention width
# 4096; the rest LTXAVModel's defaults: Gemma 3 features of width 3840, two 3840-wide text connectors). Widths
# are kept apart as in the real model: preprocess_text_embeds tells LTX-2.3's encoder output by its width
# (cross_attention_dim + audio_cross_attention_dim).
LTX2_19B = dict(image_model="ltxav", num_layers=48, num_attention_heads=32, attention_head_dim=128,
                cross_attention_dim=4096, caption_channels=3840)


def ltx2_preset(model: dict, resolution: int, frames: int, steps: int, prompt_tokens: int, repeats: int,
                notes: str) -> Preset:
    def build(device, dtype):
        return random_model("LTXAV", model, device, dtype)

    def conditioning(gen):  # the Gemma features before the connectors, which the model runs (padding to 1024)
        return [[torch.randn(1, prompt_tokens, model["caption_channels"], generator=gen),
                 {"pooled_output": None, "unprocessed_ltxav_embeds": True}]]

    def latent(height):
        width = height * 3 // 2
        return torch.zeros(1, 128, (frames - 1) // 8 + 1, height // 32, width // 32)  # EmptyLTXVLatentVideo

    return Preset(build, conditioning, latent, model["caption_channels"], resolution, steps, repeats, notes)


PRESETS = {
    "ltx2": ltx2_preset(LTX2_19B, resolution=512, frames=121, steps=20, prompt_tokens=256, repeats=3,
                        notes="LTX-2 19B's architecture, 121 frames at 768x512 (video latent)"),
    "ltx2-cpu-mid": ltx2_preset(dict(LTX2_19B, num_layers=8, num_attention_heads=12, attention_head_dim=64,
                                     cross_attention_dim=768, caption_channels=1024, audio_num_attention_heads=8,
                                     audio_attention_head_dim=64, audio_cross_attention_dim=512,
                                     connector_num_attention_heads=8, connector_attention_head_dim=128),
                                resolution=192, frames=121, steps=4, prompt_tokens=128, repeats=3,
                                notes="a mid-size LTX-2 (8 blocks, 768 wide), 121 frames at 288x192, for CPUs"),
}
