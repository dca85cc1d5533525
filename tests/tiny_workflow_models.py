"""Tiny stand-ins for the model files the example workflows load, for running them end to end on a CPU.

`tiny_model(node_type, widgets)` gives what a loader node of the workflow returns (a tuple, like the node's own
function), picked by the file names (and CLIP type) in its widgets: the families' tiny models (tests/host.py,
tests/tiny_<family>.py), their tiny text encoders (tests/tiny_encoders.py) and the tiny VAEs below. A file a
workflow names without a tiny stand-in here is an error that names it.

The VAEs are `comfy.sd.VAE`s made from a state dict as VAE Loader makes them: ComfyUI detects the kind of VAE by
its keys and sets its latent layout, compression and channel count; the widths it reads from the state dict are
shrunk, the rest is the real architecture, with seeded random weights. Where ComfyUI fixes the widths whatever
the state dict holds (the HunyuanVideo 1.5 and Wan 2.2 VAEs), the autoencoder is rebuilt narrower from the same
classes.
"""

from __future__ import annotations

import functools

import torch

import host


def _vae_from(module: torch.nn.Module, seed: int):
    import comfy.sd

    host.init_weights(module, seed)
    return comfy.sd.VAE(sd=module.state_dict())


def tiny_wan21_vae(seed: int = 3, dim: int = 8):
    """The Wan 2.1 VAE (Qwen-Image, Krea 2): 16 latent channels, 8x spatial and causal 4x temporal compression, 5-D
    latents; its base width `dim` (96 in the released file) is read from `decoder.head.0.gamma`."""
    from comfy.ldm.wan.vae import WanVAE

    return _vae_from(WanVAE(dim=dim, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2, attn_scales=[],
                            temperal_downsample=[False, True, True]), seed)


def tiny_flux2_vae(seed: int = 3, decoder_width: int = 32):
    """The Flux.2 VAE: an AutoencoderKL with 32 latent channels whose latent is patchified 2x2 and batch-normed
    (`bn.running_mean` marks it), so the model sees 128 channels at 16x compression. ComfyUI fixes the encoder's
    width (128) and reads the decoder's from `decoder.conv_in.weight`; `decoder_width` shrinks only that."""
    from comfy.ldm.models.autoencoder import AutoencoderKL

    ddconfig = {"double_z": True, "z_channels": 32, "resolution": 256, "in_channels": 3, "out_ch": 3, "ch": 128,
                "ch_mult": [1, 2, 4, 4], "num_res_blocks": 2, "attn_resolutions": [], "dropout": 0.0,
                "batch_norm_latent": True}
    return _vae_from(AutoencoderKL(ddconfig=ddconfig, embed_dim=32, decoder_ddconfig={**ddconfig, "ch": decoder_width}),
                     seed)


def _with_autoencoder(vae, module: torch.nn.Module, seed: int):
    """`vae` (set up by ComfyUI from the keys that tell its kind, its autoencoder never initialised) with its
    autoencoder replaced by `module`, a narrower one of the same classes, with seeded random weights."""
    import comfy.model_management
    import comfy.model_patcher

    host.init_weights(module, seed)
    vae.first_stage_model = module.to(vae.vae_dtype).eval()
    vae.patcher = comfy.model_patcher.CoreModelPatcher(module, load_device=vae.device,
                                                       offload_device=comfy.model_management.vae_offload_device())
    vae.size = None
    return vae


def tiny_hunyuan15_vae(seed: int = 3, width_divisor: int = 16):
    """The HunyuanVideo 1.5 VAE: 32 latent channels, 16x spatial and causal 4x temporal compression (the first
    frame alone). ComfyUI detects it by a 32-channel `decoder.conv_in.conv.weight` and sets that layout, but builds
    its autoencoder at the released widths whatever the state dict holds (128 to 1024 channels, 1.3B parameters:
    a minute per clip on a CPU). So the VAE is made by ComfyUI from that key alone, and its autoencoder is then
    rebuilt from the same classes (comfy.ldm.hunyuan_video.vae_refiner) with every width divided by
    `width_divisor`, with seeded random weights."""
    import comfy.sd
    from comfy.ldm.models.autoencoder import AutoencodingEngine

    vae = comfy.sd.VAE(sd={"decoder.conv_in.conv.weight": torch.zeros(1024, 32, 3, 3, 3)})  # never initialised
    released_widths = [128, 256, 512, 1024, 1024]  # comfy/sd.py's configuration of this VAE
    ddconfig = {"block_out_channels": [w // width_divisor for w in released_widths], "in_channels": 3,
                "out_channels": 3, "z_channels": vae.latent_channels, "num_res_blocks": 2, "ffactor_spatial": 16,
                "ffactor_temporal": 4, "downsample_match_channel": True, "upsample_match_channel": True}
    module = AutoencodingEngine(
        regularizer_config={"target": "comfy.ldm.models.autoencoder.EmptyRegularizer"},
        encoder_config={"target": "comfy.ldm.hunyuan_video.vae_refiner.Encoder", "params": ddconfig},
        decoder_config={"target": "comfy.ldm.hunyuan_video.vae_refiner.Decoder", "params": ddconfig})
    return _with_autoencoder(vae, module, seed)


def tiny_wan22_vae(seed: int = 3, dim: int = 16, dec_dim: int = 32):
    """The Wan 2.2 VAE (Wan 2.2 5B): 48 latent channels, 16x spatial (a 2x2 patchify inside) and causal 4x temporal
    compression. ComfyUI detects it by `decoder.upsamples.0.upsamples.0.residual.2.weight` next to the Wan keys and
    builds it at the released widths (encoder 160, decoder 256: 0.7B parameters) whatever the state dict holds, so
    it is made from those two keys (zero views of the released shapes) and rebuilt from the same class
    (comfy.ldm.wan.vae2_2.WanVAE) with the widths `dim` and `dec_dim`."""
    import comfy.sd
    from comfy.ldm.wan.vae2_2 import WanVAE

    zero = torch.zeros(())
    vae = comfy.sd.VAE(sd={"decoder.middle.0.residual.0.gamma": zero.expand(1024, 1, 1, 1),
                           "decoder.upsamples.0.upsamples.0.residual.2.weight": zero.expand(1024, 1024, 3, 3, 3)})
    module = WanVAE(dim=dim, dec_dim=dec_dim, z_dim=vae.latent_channels, dim_mult=[1, 2, 4, 4], num_res_blocks=2,
                    attn_scales=[], temperal_downsample=[False, True, True], dropout=0.0)
    return _with_autoencoder(vae, module, seed)


def tiny_qwen_image_edit_clip(seed: int = 0):
    """The tiny Qwen2.5-VL encoder of Qwen-Image (tests/tiny_encoders.py) with a working vision tower, for
    TextEncodeQwenImageEditPlus, which shows the model the input image: ComfyUI builds the tower at the released
    width (1280, 32 blocks) whatever the language model's size, so it is rebuilt here from the same class at
    width 32, 2 blocks, with the released patch, merge and window sizes."""
    import comfy.ops
    from comfy.text_encoders.qwen_vl import Qwen2VLVisionTransformer

    from tiny_encoders import tiny_qwen_image_clip

    clip = tiny_qwen_image_clip(seed)
    language_model = clip.cond_stage_model.qwen25_7b.transformer
    width = language_model.model.embed_tokens.weight.shape[1]
    dtype = language_model.model.embed_tokens.weight.dtype
    language_model.visual = Qwen2VLVisionTransformer(hidden_size=32, output_hidden_size=width, intermediate_size=64,
                                                     num_heads=2, num_layers=2, dtype=dtype, ops=comfy.ops.manual_cast)
    host.init_weights(language_model.visual, seed + 100)
    return clip


def _chroma():
    from tiny_chroma import tiny_chroma
    return tiny_chroma(seed=0)


def _qwen_image_edit():
    from tiny_qwen_image import tiny_qwen_image
    return tiny_qwen_image(seed=0, variant="edit_2511")


def _klein():
    from tiny_flux2 import tiny_flux2
    return tiny_flux2(seed=0, klein=True, context_in_dim=96)  # the width of tiny_encoders.tiny_klein_clip


def _z_image():
    from tiny_lumina import tiny_z_image
    return tiny_z_image(seed=0)


def _krea2():
    from tiny_krea2 import tiny_krea2
    return tiny_krea2(seed=0, txtlayers=12)  # tiny_encoders.tiny_krea2_clip taps twelve layers, as the real one


def _hunyuan_video():
    from tiny_hunyuan_video import tiny_hunyuan_video
    return tiny_hunyuan_video("1.5", seed=0)


def _wan22():
    from tiny_wan import tiny_wan
    return tiny_wan("2.2-5b", seed=0)


def _encoder(name, **options):
    def build():
        import tiny_encoders
        return getattr(tiny_encoders, name)(seed=1, **options)
    return build


# models/ file name -> tiny diffusion model
DIFFUSION_MODELS = {
    "flux1-dev.safetensors": lambda: host.tiny_flux(seed=0),
    "flux1-dev-kontext_fp8_scaled.safetensors": lambda: host.tiny_flux(seed=0),
    "Chroma1-HD-fp8mixed.safetensors": _chroma,
    "qwen_image_edit_2511_bf16.safetensors": _qwen_image_edit,
    "flux-2-klein-4b.safetensors": _klein,
    "z_image_turbo_bf16.safetensors": _z_image,
    "krea2_turbo_fp8_scaled.safetensors": _krea2,
    "hunyuanvideo1.5_720p_t2v_fp16.safetensors": _hunyuan_video,
    "wan2.2_ti2v_5B_fp16.safetensors": _wan22,
}
# (CLIP type, file names) -> tiny text encoder: the type and the file together pick the encoder in ComfyUI
TEXT_ENCODERS = {
    ("flux", "clip_l.safetensors", "t5xxl_fp16.safetensors"): lambda: host.tiny_flux_clip(seed=1),
    ("chroma", "t5xxl_fp8_e4m3fn_scaled.safetensors"): _encoder("tiny_chroma_clip"),
    ("qwen_image", "qwen_2.5_vl_7b_fp8_scaled.safetensors"): tiny_qwen_image_edit_clip,
    ("flux2", "qwen_3_4b.safetensors"): _encoder("tiny_klein_clip", variant="4b"),
    ("lumina2", "qwen_3_4b.safetensors"): _encoder("tiny_zimage_clip"),
    ("krea2", "qwen3vl_4b_fp8_scaled.safetensors"): _encoder("tiny_krea2_clip"),
    # Qwen2.5-VL without byT5 (byT5 only adds features for quoted text)
    ("hunyuan_video_15", "qwen_2.5_vl_7b_fp8_scaled.safetensors", "byt5_small_glyphxl_fp16.safetensors"):
        _encoder("tiny_hunyuan15_clip"),
    ("wan", "umt5_xxl_fp8_e4m3fn_scaled.safetensors"): _encoder("tiny_wan_clip"),
}
VAES = {
    "ae.safetensors": host.tiny_vae,
    "qwen_image_vae.safetensors": tiny_wan21_vae,
    "flux2-vae.safetensors": tiny_flux2_vae,
    "hunyuanvideo15_vae_fp16.safetensors": tiny_hunyuan15_vae,
    "wan2.2_vae.safetensors": tiny_wan22_vae,
}
CHECKPOINTS = {
    "sd3.5_large_fp8_scaled.safetensors": lambda: (host.tiny_sd3(seed=0), host.tiny_sd3_clip(seed=2),
                                                   host.tiny_vae()),
}


@functools.cache
def _build(table: str, key) -> tuple:
    """One instance per stand-in and process: workflows that load the same file share it, as ComfyUI's cache
    shares a loader's output."""
    builders = {"diffusion model": DIFFUSION_MODELS, "text encoder": TEXT_ENCODERS, "VAE": VAES,
                "checkpoint": CHECKPOINTS}[table]
    if key not in builders:
        raise KeyError(f"no tiny stand-in for the {table} {key!r}: add one to tests/tiny_workflow_models.py")
    result = builders[key]()
    return result if isinstance(result, tuple) else (result,)


# Loader node type -> (what it loads, the widgets that name it)
LOADERS = {"UNETLoader": ("diffusion model", ("unet_name",)),
           "CLIPLoader": ("text encoder", ("type", "clip_name")),
           "DualCLIPLoader": ("text encoder", ("type", "clip_name1", "clip_name2")),
           "VAELoader": ("VAE", ("vae_name",)),
           "CheckpointLoaderSimple": ("checkpoint", ("ckpt_name",))}


def tiny_model(node_type: str, widgets: dict) -> tuple:
    """What the loader `node_type` returns for these widget values, with tiny stand-ins."""
    table, names = LOADERS[node_type]
    key = tuple(widgets[name] for name in names)
    return _build(table, key if len(key) > 1 else key[0])
