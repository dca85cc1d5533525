"""Finding ComfyUI and building tiny models through its own classes, for the host tests."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
PACK_NAME = "comfyui_concept_attention"
if str(REPO) not in sys.path:
    sys.path.append(str(REPO))  # appended: ComfyUI goes ahead of it, see setup_comfyui

from concept_attention.eval.comfy_host import find_comfyui  # noqa: E402  (COMFYUI_PATH, enclosing, ~/ComfyUI)


def setup_comfyui(root: Path) -> None:
    """Import ComfyUI headless on the CPU, ahead of this repo on sys.path (our `nodes/` must not shadow its)."""
    for path in (str(REPO), str(root)):
        if path in sys.path:
            sys.path.remove(path)
        sys.path.insert(0, path)
    from comfy.cli_args import args

    args.cpu = True
    import comfy.model_management  # noqa: F401  (reads args.cpu)


def load_pack():
    """Import the pack the way ComfyUI does (a package from its folder), sharing `concept_attention`."""
    import importlib.util

    if PACK_NAME in sys.modules:
        return sys.modules[PACK_NAME]
    import concept_attention  # noqa: F401
    for name in list(sys.modules):
        if name == "concept_attention" or name.startswith("concept_attention."):
            sys.modules[f"{PACK_NAME}.{name}"] = sys.modules[name]
    spec = importlib.util.spec_from_file_location(PACK_NAME, REPO / "__init__.py",
                                                  submodule_search_locations=[str(REPO)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[PACK_NAME] = module
    spec.loader.exec_module(module)
    return module


def init_weights(module: torch.nn.Module, seed: int) -> None:
    """ComfyUI's ops leave weights uninitialised: fill them with a seeded, well-scaled random draw.

    Gains of normalisation layers start near 1. That includes the RMS QK-norms of MMDiT (`attn.ln_q/ln_k`,
    named without 'norm'): drawn at a bias's scale (0.05) they shrink every attention logit ~400x, attention
    turns uniform and each image token's output is the same average, so the maps come out flat."""
    gen = torch.Generator().manual_seed(seed)
    norm_gains = {f"{prefix}.weight" for prefix, m in module.named_modules() if "Norm" in type(m).__name__}
    with torch.no_grad():
        for name, p in module.named_parameters():
            if p.ndim >= 2:
                p.copy_(torch.randn(p.shape, generator=gen) / p.shape[-1] ** 0.5)
            elif name in norm_gains or "norm" in name or "scale" in name:
                p.copy_(1 + 0.1 * torch.randn(p.shape, generator=gen))
            else:
                p.copy_(0.05 * torch.randn(p.shape, generator=gen))
        for name, b in module.named_buffers():
            if "pos_embed" in name:  # MMDiT's positional table is an uninitialised buffer
                b.copy_(0.5 * torch.randn(b.shape, generator=gen))


FLUX_CONFIG = dict(image_model="flux", in_channels=16, out_channels=16, vec_in_dim=32, context_in_dim=32,
                   hidden_size=64, mlp_ratio=4.0, num_heads=2, depth=3, depth_single_blocks=1,
                   axes_dim=[8, 12, 12], theta=10000, patch_size=2, qkv_bias=True, guidance_embed=True,
                   txt_ids_dims=[])


def tiny_flux(seed: int = 0, dtype=torch.float32, **overrides):
    import comfy.model_patcher
    import comfy.supported_models

    config = comfy.supported_models.Flux({**FLUX_CONFIG, **overrides})
    config.set_inference_dtype(dtype, None)
    model = config.get_model({})
    init_weights(model.diffusion_model, seed)
    model.diffusion_model.to(dtype)
    return comfy.model_patcher.ModelPatcher(model, torch.device("cpu"), torch.device("cpu"))


def tiny_sd3(seed: int = 0, depth: int = 3, self_attn_layers=(0,), context_width: int = 4096):
    """SD3.5-style MMDiT (RMS QK-norm, MMDiT-X self-attention in the listed blocks, pre-only last block),
    pooled width 1312 = tiny CLIP-L projection (32) + the zeros SD3 puts for a missing CLIP-G (1280),
    built from a random state dict through ComfyUI's own loader and model detection."""
    import comfy.ops
    import comfy.sd
    import comfy.supported_models_base
    from comfy.ldm.modules.diffusionmodules.mmdit import MMDiT

    net = MMDiT(input_size=None, patch_size=2, in_channels=16, depth=depth, adm_in_channels=1312,
                context_embedder_config={"target": "torch.nn.Linear",
                                         "params": {"in_features": context_width, "out_features": 64 * depth}},
                pos_embed_max_size=16, num_patches=256, qk_norm="rms", x_block_self_attn_layers=list(self_attn_layers),
                operations=comfy.ops.disable_weight_init)
    init_weights(net, seed)
    patcher = comfy.sd.load_diffusion_model_state_dict(net.state_dict())
    patcher.model.diffusion_model.to(torch.float32)
    return patcher


VAE_CONFIG = {"params": {"embed_dim": 16, "ddconfig": {
    "double_z": True, "z_channels": 16, "resolution": 64, "in_channels": 3, "out_ch": 3, "ch": 32,
    "ch_mult": [1, 1, 1, 1], "num_res_blocks": 1, "attn_resolutions": [], "dropout": 0.0}}}


def tiny_vae(seed: int = 3):
    """An AutoencoderKL with Flux/SD3's latent layout (16 channels, 8x downscale), random weights."""
    import comfy.sd
    from comfy.ldm.models.autoencoder import AutoencoderKL

    model = AutoencoderKL(**VAE_CONFIG["params"])
    init_weights(model, seed)
    return comfy.sd.VAE(sd=model.state_dict(), config=VAE_CONFIG)


def tiny_flux_clip(seed: int = 1):
    import comfy.sd
    import comfy.supported_models_base
    from comfy.text_encoders.flux import FluxTokenizer, flux_clip

    target = comfy.supported_models_base.ClipTarget(FluxTokenizer, flux_clip())
    clip = comfy.sd.CLIP(target=target, model_options={
        "t5xxl_model_config": {"d_model": 32, "d_ff": 64, "num_layers": 1, "num_heads": 2, "d_kv": 16},
        "clip_l_model_config": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 3,
                                "num_attention_heads": 2, "projection_dim": 32}})
    init_weights(clip.cond_stage_model, seed)
    return clip


def tiny_sd3_clip(seed: int = 2):
    import comfy.sd
    import comfy.supported_models_base
    from comfy.text_encoders.sd3_clip import SD3Tokenizer, sd3_clip

    target = comfy.supported_models_base.ClipTarget(SD3Tokenizer, sd3_clip(clip_l=True, clip_g=False, t5=False))
    clip = comfy.sd.CLIP(target=target, model_options={
        "clip_l_model_config": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 3,
                                "num_attention_heads": 2, "projection_dim": 32}})
    init_weights(clip.cond_stage_model, seed)
    return clip


def conditioning(clip, text: str, **extra):
    cond = clip.encode_from_tokens_scheduled(clip.tokenize(text))
    for c in cond:
        c[1].update(extra)
    return cond


def sample(model, positive, negative, latent, *, steps=3, cfg=1.0, sampler="euler", seed=0, **kw):
    import nodes

    return nodes.common_ksampler(model, seed, steps, cfg, sampler, "simple", positive, negative,
                                 {"samples": latent}, **kw)[0]["samples"]


def tiny_sd15(seed: int = 0):
    """A tiny Stable Diffusion 1.5 UNet (ComfyUI's SD15 config): a model the pack never supports (a UNet with
    cross-attention), for the unsupported-model errors."""
    import comfy.model_patcher
    import comfy.supported_models

    unet = dict(use_checkpoint=False, image_size=32, out_channels=4, use_spatial_transformer=True, legacy=False,
                adm_in_channels=None, in_channels=4, model_channels=32, num_res_blocks=[1], transformer_depth=[1],
                channel_mult=[1], transformer_depth_middle=1, use_linear_in_transformer=False, context_dim=32,
                num_head_channels=16, transformer_depth_output=[1, 1], use_temporal_attention=False,
                use_temporal_resblock=False)
    model = comfy.supported_models.SD15(unet).get_model({})
    init_weights(model.diffusion_model, seed)
    return comfy.model_patcher.ModelPatcher(model, torch.device("cpu"), torch.device("cpu"))
