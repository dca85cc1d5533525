"""AuraFlow presets: the full AuraFlow v0.3 architecture at 1024x1024 and a mid-size AuraFlow for CPUs. The
Pile-T5 prompt is padded to 256 tokens."""

from __future__ import annotations

import torch

from . import Preset, random_model

# comfy/ldm/aura/mmdit.py MMDiT's arguments for the released model (comfy/model_detection.py reads them).
AURAFLOW = dict(cond_seq_dim=2048, in_channels=4, out_channels=4, patch_size=2, dim=3072, n_layers=36,
                n_double_layers=4, n_heads=12, global_conddim=3072, max_seq=64 * 64)


def aura_preset(model: dict, resolution: int, steps: int, repeats: int, notes: str) -> Preset:
    def build(device, dtype):
        return random_model("AuraFlow", dict(model), device, dtype)

    def conditioning(gen):
        return [[torch.randn(1, 256, model["cond_seq_dim"], generator=gen), {}]]

    def latent(res):
        return torch.zeros(1, 4, res // 8, res // 8)

    return Preset(build, conditioning, latent, model["cond_seq_dim"], resolution, steps, repeats, notes)


PRESETS = {
    "auraflow": aura_preset(AURAFLOW, resolution=1024, steps=20, repeats=3,
                            notes="AuraFlow v0.3's architecture (6.8B parameters)"),
    "auraflow-cpu-mid": aura_preset(dict(AURAFLOW, cond_seq_dim=1024, dim=768, n_layers=16, n_double_layers=4,
                                         n_heads=12, global_conddim=768, max_seq=16 * 16),
                                    resolution=256, steps=4, repeats=3,
                                    notes="a mid-size AuraFlow that a CPU samples in seconds"),
}
