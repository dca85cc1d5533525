"""Tiny LTX-2 (`LTXAVModel`, audio-video) and LTX-Video (`LTXVModel`) models, built through ComfyUI's own model
configs (`comfy.supported_models.<Class>(config).get_model({})`), random seeded fp32 weights on the CPU: video
hidden size 64 (2 heads of 32), audio hidden size 32, 3 blocks; LTX-2's text connectors are 2 layers of width 48
that pad every text to 1024 tokens with their learnable registers, as the real ones. Each builds in well under a
second.

Text widths: LTX-2 takes 48 (the Gemma 3 features after the encoder's own projection, `caption_channels`);
LTX-Video 32, which matches `tiny_encoders.tiny_mochi_clip` (T5-XXL). LTX-2's Gemma 3 12B encoder has no tiny
builder: give it raw conditioning (`conditioning`) and `Concepts` with embeddings.
"""

from __future__ import annotations

import torch

from host import init_weights

VIDEO = dict(num_layers=3, num_attention_heads=2, attention_head_dim=32, cross_attention_dim=64, in_channels=128)
# LTX-2 (19B): the caption projection after the connectors; LTX-2.3: the projection before them is the
# encoder's (dual linear, the video and audio parts side by side), and the text cross-attention is modulated
# by the timestep (cross_attention_adaln, its prompt_adaln_single), with gated attention.
LTX2 = dict(VIDEO, image_model="ltxav", caption_channels=48, audio_num_attention_heads=2,
            audio_attention_head_dim=16, audio_cross_attention_dim=32, connector_num_attention_heads=2,
            connector_attention_head_dim=24, rope_type="split")
LTX23 = dict(LTX2, caption_proj_before_connector=True, caption_projection_first_linear=False,
             cross_attention_adaln=True, apply_gated_attention=True, connector_attention_head_dim=32,
             audio_connector_attention_head_dim=16)

VARIANTS = {  # name -> (ComfyUI model config class, config)
    "2": ("LTXAV", LTX2),
    "2.3": ("LTXAV", LTX23),
    "video": ("LTXV", dict(VIDEO, image_model="ltxv", caption_channels=32)),
}


def tiny_ltx(variant: str = "2", seed: int = 0, dtype=torch.float32, **overrides):
    """A ModelPatcher of a tiny model of `variant` ("2": LTX-2, "2.3": LTX-2.3, "video": LTX-Video) in `dtype`;
    `overrides` change the config (e.g. num_layers=8)."""
    import comfy.model_patcher
    import comfy.supported_models

    name, config = VARIANTS[variant]
    model_config = getattr(comfy.supported_models, name)({**config, **overrides})
    model_config.set_inference_dtype(dtype, None)
    model = model_config.get_model({})
    init_weights(model.diffusion_model, seed)
    model.diffusion_model.to(dtype)
    return comfy.model_patcher.ModelPatcher(model, torch.device("cpu"), torch.device("cpu"))


def text_width(model) -> int:
    """The width of the text features the model's conditioning carries (what its encoder gives)."""
    dm = model.model.diffusion_model
    if getattr(dm, "caption_proj_before_connector", False) and not dm.caption_projection_first_linear:
        return dm.cross_attention_dim + dm.audio_cross_attention_dim
    return dm.caption_channels


def conditioning(model, tokens: int = 6, seed: int = 0, processed: bool = False, **extra):
    """A CONDITIONING of random text features [1, tokens, width] as the model's encoder gives them (LTX-2:
    `unprocessed_ltxav_embeds`, so the model runs its text connectors on them, or with `processed` the output
    of connectors the encoder ran itself, video and audio halves side by side, twice as wide, as LTX-2 19B's
    encoder gives it; LTX-Video: with T5's attention mask), with the given extra keys."""
    gen = torch.Generator().manual_seed(seed)
    width = text_width(model)
    if processed:
        width *= 2
    elif model.model.diffusion_model.__class__.__name__ == "LTXAVModel":
        extra = {"unprocessed_ltxav_embeds": True, **extra}
    else:  # the T5 encoder's integer attention mask (LTXVModel.forward needs one)
        extra = {"attention_mask": torch.ones(1, tokens, dtype=torch.long), **extra}
    return [[torch.randn(1, tokens, width, generator=gen), {"pooled_output": None, **extra}]]


def video_latent(batch: int = 2, frames: int = 3, h: int = 2, w: int = 3, seed: int = 3):
    """A [batch, 128, frames, h, w] video latent (32x spatial, 8x temporal compression: a tiny 64x96 clip)."""
    return torch.randn(batch, 128, frames, h, w, generator=torch.Generator().manual_seed(seed))


def audio_latent(batch: int = 2, frames: int = 5, seed: int = 4):
    """A [batch, 8, frames, 16] LTX-2 audio latent (LTXVEmptyLatentAudio's channels and frequency bins)."""
    return torch.randn(batch, 8, frames, 16, generator=torch.Generator().manual_seed(seed))
