"""Tiny Chroma and Chroma Radiance models built through ComfyUI's own model classes (random seeded weights,
fp32, CPU), for the tests and for example workflows with tiny models.

    model = tiny_chroma()                 # a MODEL (ModelPatcher): 16-channel Flux latents, T5 width 32
    model = tiny_chroma_radiance()        # pixel space: [B, 3, H, W] "latents", one token per 8x8 pixels
    clip = tiny_chroma_clip()             # Chroma's T5 text encoder, one small layer

Both have hidden size 64 (2 heads), 3 double-stream and 1 single-stream block, and take text features of width
`TEXT_WIDTH`, the width of `tiny_chroma_clip()`'s T5. Building one takes well under a second.
"""

from __future__ import annotations

import torch

from host import init_weights

TEXT_WIDTH = 32

# comfy/ldm/chroma/model.py ChromaParams. The approximator's input width is fixed by the model: 16 (timestep)
# + 16 (guidance) + 32 (modulation slot index); its output width is the hidden size.
CHROMA_CONFIG = dict(image_model="chroma", in_channels=64, out_channels=64, context_in_dim=TEXT_WIDTH,
                     hidden_size=64, mlp_ratio=4.0, num_heads=2, depth=3, depth_single_blocks=1,
                     axes_dim=[8, 12, 12], theta=10000, patch_size=2, qkv_bias=True, in_dim=64, out_dim=64,
                     hidden_dim=96, n_layers=2, txt_ids_dims=[], vec_in_dim=None)

# comfy/ldm/chroma_radiance/model.py ChromaRadianceParams on top (the released models use patch size 16).
RADIANCE_CONFIG = dict(CHROMA_CONFIG, image_model="chroma_radiance", in_channels=3, out_channels=3, patch_size=8,
                       nerf_hidden_size=16, nerf_mlp_ratio=2, nerf_depth=1, nerf_max_freqs=4, nerf_tile_size=0,
                       nerf_final_head_type="linear", nerf_embedder_dtype=None, use_x0=False,
                       use_sequential_txt_ids=False)


def _build(config_class, config: dict, seed: int):
    import comfy.model_patcher

    model_config = config_class(config)
    model_config.set_inference_dtype(torch.float32, None)
    model = model_config.get_model({})
    init_weights(model.diffusion_model, seed)
    model.diffusion_model.to(torch.float32)
    return comfy.model_patcher.ModelPatcher(model, torch.device("cpu"), torch.device("cpu"))


def tiny_chroma(seed: int = 0, **overrides):
    """Chroma (comfy.supported_models.Chroma): Flux latents (16 channels, patch 2 over the 64 model channels)."""
    import comfy.supported_models
    return _build(comfy.supported_models.Chroma, {**CHROMA_CONFIG, **overrides}, seed)


def tiny_chroma_radiance(seed: int = 0, **overrides):
    """Chroma Radiance (comfy.supported_models.ChromaRadiance): RGB pixels in, patch size 8 unless overridden;
    `use_sequential_txt_ids=True` gives the checkpoints whose prompt token j sits at text position j."""
    import comfy.supported_models
    return _build(comfy.supported_models.ChromaRadiance, {**RADIANCE_CONFIG, **overrides}, seed)


def tiny_chroma_clip(seed: int = 1):
    """Chroma's text encoder (ComfyUI's PixArt T5-XXL: T5 tokenizer, no padding) with a one-layer T5 of width
    `TEXT_WIDTH`: a CLIP object for CLIPTextEncode and encode_concepts."""
    import comfy.sd
    import comfy.supported_models_base
    from comfy.text_encoders.pixart_t5 import PixArtTokenizer, pixart_te

    target = comfy.supported_models_base.ClipTarget(PixArtTokenizer, pixart_te())
    clip = comfy.sd.CLIP(target=target, model_options={
        "t5xxl_model_config": {"d_model": TEXT_WIDTH, "d_ff": 64, "num_layers": 1, "num_heads": 2, "d_kv": 16}})
    init_weights(clip.cond_stage_model, seed)
    return clip
