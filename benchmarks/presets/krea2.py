"""Krea 2 presets: the full Krea 2 architecture (ComfyUI's SingleStreamDiT defaults, as model detection reads them
from the released weights) and a mid-size one for CPUs."""

from __future__ import annotations

import torch

from . import Preset, random_model


def krea2_preset(model: dict, resolution: int, steps: int, prompt_tokens: int, repeats: int, notes: str) -> Preset:
    width = model["txtlayers"] * model["txtdim"]  # the 12 tapped Qwen3-VL layers, flattened per token

    def build(device, dtype):
        return random_model("Krea2", dict(image_model="krea2", **model), device, dtype)

    def conditioning(gen):
        return [[torch.randn(1, prompt_tokens, width, generator=gen), {}]]

    def latent(res):
        return torch.zeros(1, 16, 1, res // 8, res // 8)  # Wan 2.1 latent format: one frame

    return Preset(build, conditioning, latent, width, resolution, steps, repeats, notes)


PRESETS = {
    "krea2": krea2_preset(dict(features=6144, heads=48, kvheads=12, multiplier=4, layers=28, patch=2, channels=16,
                               txtdim=2560, txtlayers=12, txtheads=20, txtkvheads=20, theta=1000.0),
                          resolution=1024, steps=20, prompt_tokens=256, repeats=3,
                          notes="Krea 2's architecture (28 single-stream blocks, hidden 6144)"),
    "krea2-cpu-mid": krea2_preset(dict(features=768, heads=12, kvheads=3, multiplier=4, layers=8, patch=2,
                                       channels=16, txtdim=256, txtlayers=12, txtheads=2, txtkvheads=2,
                                       theta=1000.0),
                                  resolution=512, steps=4, prompt_tokens=128, repeats=3,
                                  notes="a mid-size Krea 2 (hidden 768, 8 blocks) that a CPU samples in seconds"),
}
