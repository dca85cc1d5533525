"""A tiny AuraFlow built through ComfyUI's own model class (random seeded weights, fp32, CPU), and its Pile-T5
text encoder with one small layer, for the tests and for example workflows with tiny models.

    model = tiny_aura()        # a MODEL (ModelPatcher): 4-channel SDXL-format latents, patch 2
    clip = tiny_aura_clip()    # AuraFlow's Pile-T5 (SentencePiece tokenizer, prompts padded to 256 tokens)

Hidden size 64 (2 heads), 3 double blocks and 1 single block, 8 register tokens, a 16x16 position table
(latents up to 32x32 use it directly, larger ones interpolate it, as the model does). Builds in well under a
second.
"""

from __future__ import annotations

import torch

from host import init_weights

TEXT_WIDTH = 32

# comfy/ldm/aura/mmdit.py MMDiT's arguments (the released models: dim 3072, 12 heads, 4 double of 36 layers).
AURA_CONFIG = dict(cond_seq_dim=TEXT_WIDTH, in_channels=4, out_channels=4, patch_size=2, dim=64, n_layers=4,
                   n_double_layers=3, n_heads=2, global_conddim=64, max_seq=16 * 16)


def tiny_aura(seed: int = 0, **overrides):
    import comfy.model_patcher
    import comfy.supported_models

    config = comfy.supported_models.AuraFlow({**AURA_CONFIG, **overrides})
    config.set_inference_dtype(torch.float32, None)
    model = config.get_model({})
    init_weights(model.diffusion_model, seed)
    model.diffusion_model.to(torch.float32)
    return comfy.model_patcher.ModelPatcher(model, torch.device("cpu"), torch.device("cpu"))


def tiny_aura_clip(seed: int = 1):
    import comfy.sd
    import comfy.supported_models_base
    from comfy.text_encoders.aura_t5 import AuraT5Model, AuraT5Tokenizer

    target = comfy.supported_models_base.ClipTarget(AuraT5Tokenizer, AuraT5Model)
    clip = comfy.sd.CLIP(target=target, model_options={
        "pile_t5xl_model_config": {"d_model": TEXT_WIDTH, "d_ff": 64, "num_layers": 1, "num_heads": 2, "d_kv": 16}})
    init_weights(clip.cond_stage_model, seed)
    return clip
