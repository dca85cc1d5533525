"""A tiny Ideogram 4 (ComfyUI's Ideogram4Transformer2DModel) for tests and example workflows: random seeded
weights, fp32, CPU.

Built through ComfyUI's own `comfy.supported_models.Ideogram4`, so it is the real model class with the real latent
format (Flux.2's: 128 channels, one token per latent pixel) and sampling settings. The model config class fixes
the released layer sizes (`unet_extra_config`), so the tiny sizes are set on the config object before
`get_model`: hidden 64 (2 heads of 32), 4 layers, interleaved MRoPE sections (4, 2, 2), text features of width 48.
Ideogram 4's text encoder (Qwen3-VL-8B, 13 layers tapped) has no tiny build here, so conditioning and concepts
are random features of that width (`conditioning`, `random_concepts`).
"""

from __future__ import annotations

import torch

import host

IDEOGRAM4_SIZES = dict(num_layers=4, num_attention_heads=2, attention_head_dim=32, intermediate_size=128,
                       adaln_dim=32, llm_features_dim=48, rope_theta=10000, mrope_section=[4, 2, 2])


def tiny_ideogram4(seed: int = 0, **overrides):
    """ModelPatcher of a tiny Ideogram 4; `overrides` change IDEOGRAM4_SIZES entries."""
    import comfy.model_patcher
    import comfy.supported_models

    config = comfy.supported_models.Ideogram4({"image_model": "ideogram4", "in_channels": 128})
    config.unet_config.update({**IDEOGRAM4_SIZES, **overrides})
    config.set_inference_dtype(torch.float32, None)
    model = config.get_model({})
    host.init_weights(model.diffusion_model, seed)
    model.diffusion_model.to(torch.float32)
    return comfy.model_patcher.ModelPatcher(model, torch.device("cpu"), torch.device("cpu"))


def text_width(model) -> int:
    return model.model.diffusion_model.llm_cond_proj.in_features


def conditioning(model, tokens: int, seed: int, padding: int = 0):
    """A CONDITIONING of `tokens` random prompt tokens of the model's text-feature width, the last `padding` of
    them marked as padding in its attention mask (as the text encoder marks them)."""
    features = torch.randn(1, tokens, text_width(model), generator=torch.Generator().manual_seed(seed))
    extra = {}
    if padding:
        mask = torch.ones(1, tokens, dtype=torch.long)
        mask[:, tokens - padding:] = 0
        extra["attention_mask"] = mask
    return [[features, extra]]


def random_concepts(model, names, seed: int = 11, spans=None):
    from concept_attention import Concepts

    embeddings = torch.randn(len(names), text_width(model), generator=torch.Generator().manual_seed(seed))
    return Concepts(names, embeddings, spans)
