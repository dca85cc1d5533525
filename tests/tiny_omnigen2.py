"""A tiny OmniGen2 (ComfyUI's OmniGen2Transformer2DModel) for tests and example workflows: random seeded weights,
fp32, CPU.

Built through ComfyUI's own `comfy.supported_models.Omnigen2(config).get_model({})`, so it is the real model class
with the real latent format (Flux.1's, 16 channels) and sampling settings. Hidden 64 (4 query heads of 16, 2
key/value heads), one layer in each refiner, 4 main layers, text features of width 48. OmniGen2's text encoder
(Qwen2.5-VL-3B) has no tiny build here, so conditioning and concepts are random features of that width
(`conditioning`, `random_concepts`); the conditioning carries the attention mask the model needs for its prompt
length.
"""

from __future__ import annotations

import torch

import host

OMNIGEN2_CONFIG = dict(image_model="omnigen2", patch_size=2, in_channels=16, hidden_size=64, num_layers=4,
                       num_refiner_layers=1, num_attention_heads=4, num_kv_heads=2, multiple_of=16,
                       axes_dim_rope=[4, 6, 6], axes_lens=[64, 64, 64], text_feat_dim=48)


def tiny_omnigen2(seed: int = 0, **overrides):
    """ModelPatcher of a tiny OmniGen2; `overrides` change OMNIGEN2_CONFIG entries."""
    import comfy.model_patcher
    import comfy.supported_models

    config = comfy.supported_models.Omnigen2({**OMNIGEN2_CONFIG, **overrides})
    config.set_inference_dtype(torch.float32, None)
    model = config.get_model({})
    host.init_weights(model.diffusion_model, seed)
    model.diffusion_model.to(torch.float32)
    return comfy.model_patcher.ModelPatcher(model, torch.device("cpu"), torch.device("cpu"))


def text_width(model) -> int:
    return model.model.diffusion_model.time_caption_embed.caption_embedder[1].in_features


def conditioning(model, tokens: int, seed: int, reference_latents=None):
    """A CONDITIONING of `tokens` random prompt tokens of the model's text-feature width, with the all-ones
    attention mask the text encoder gives one prompt (the model reads its prompt length from it) and optional
    reference latents (as ReferenceLatent adds them)."""
    features = torch.randn(1, tokens, text_width(model), generator=torch.Generator().manual_seed(seed))
    extra = {"attention_mask": torch.ones(1, tokens, dtype=torch.long)}
    if reference_latents is not None:
        extra["reference_latents"] = reference_latents
    return [[features, extra]]


def random_concepts(model, names, seed: int = 11, spans=None):
    from concept_attention import Concepts

    embeddings = torch.randn(len(names), text_width(model), generator=torch.Generator().manual_seed(seed))
    return Concepts(names, embeddings, spans)
