"""A tiny Krea 2 (ComfyUI's SingleStreamDiT) for tests and example workflows: random seeded weights, fp32, CPU.

Built through ComfyUI's own `comfy.supported_models.Krea2(config).get_model({})`, so it is the real model class
with the real latent format (Wan 2.1, 16 channels, 5-D latents) and sampling settings. Hidden 64 (4 query heads
of 16, 2 key/value heads: grouped-query attention as in the real model), 4 blocks, text features of 3 "encoder
layers" x 32. Krea 2's text encoder (Qwen3-VL-4B, 12 layers tapped) has no tiny build here, so conditioning and
concepts are random features of that width (`conditioning`, `random_concepts`).
"""

from __future__ import annotations

import torch

import host

KREA2_CONFIG = dict(image_model="krea2", features=64, heads=4, kvheads=2, multiplier=4, layers=4, patch=2,
                    channels=16, txtdim=32, txtlayers=3, txtheads=2, txtkvheads=2, tdim=32, theta=1000.0)


def tiny_krea2(seed: int = 0, **overrides):
    """ModelPatcher of a tiny Krea 2; `overrides` change KREA2_CONFIG entries (e.g. layers, txtlayers)."""
    import comfy.model_patcher
    import comfy.supported_models

    config = comfy.supported_models.Krea2({**KREA2_CONFIG, **overrides})
    config.set_inference_dtype(torch.float32, None)
    model = config.get_model({})
    host.init_weights(model.diffusion_model, seed)
    model.diffusion_model.to(torch.float32)
    return comfy.model_patcher.ModelPatcher(model, torch.device("cpu"), torch.device("cpu"))


def text_width(model) -> int:
    dm = model.model.diffusion_model
    return dm.txtlayers * dm.txtdim


def conditioning(model, tokens: int, seed: int):
    """A CONDITIONING of `tokens` random prompt tokens of the model's text-feature width."""
    features = torch.randn(1, tokens, text_width(model), generator=torch.Generator().manual_seed(seed))
    return [[features, {}]]


def random_concepts(model, names, seed: int = 11):
    from concept_attention import Concepts

    return Concepts(names, torch.randn(len(names), text_width(model), generator=torch.Generator().manual_seed(seed)))
