"""Model families the method supports, one adapter module each, found by looking in this package.

Adding a family is adding a module here: `adapter_for`, the README's supported-models table, the node
descriptions and the unsupported-model error all read the adapters' own declarations.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil

from ..errors import ConceptAttentionError
from .base import ATTENTION, BLOCK_REPLACE, ModelAdapter

__all__ = ["ATTENTION", "BLOCK_REPLACE", "ModelAdapter", "adapter_classes", "adapter_for", "supported_text",
           "supported_table"]

_CLASSES: list[type[ModelAdapter]] | None = None

# Model families ComfyUI loads that the method does not apply to, by their ComfyUI model config class, named the
# way users know them, with the reason.
_UNET = "a UNet with cross-attention, not a joint-attention transformer"
_CROSS = "a cross-attention transformer: its text tokens are never updated"
NOT_APPLICABLE = {
    "SD15": ("Stable Diffusion 1.5", _UNET), "SD15_instructpix2pix": ("Stable Diffusion 1.5 (InstructPix2Pix)", _UNET),
    "SD20": ("Stable Diffusion 2.x", _UNET), "SD21UnclipL": ("Stable Diffusion 2.1 unCLIP", _UNET),
    "SD21UnclipH": ("Stable Diffusion 2.1 unCLIP", _UNET), "SDXL": ("SDXL", _UNET),
    "SDXLRefiner": ("SDXL Refiner", _UNET), "SDXL_instructpix2pix": ("SDXL (InstructPix2Pix)", _UNET),
    "SSD1B": ("SSD-1B", _UNET), "Segmind_Vega": ("Segmind Vega", _UNET), "KOALA_700M": ("KOALA", _UNET),
    "KOALA_1B": ("KOALA", _UNET), "SVD_img2vid": ("Stable Video Diffusion", _UNET),
    "Stable_Zero123": ("Stable Zero123", _UNET), "SD_X4Upscaler": ("SD x4 upscaler", _UNET),
    "SV3D_u": ("SV3D", _UNET), "SV3D_p": ("SV3D", _UNET), "LotusD": ("Lotus depth", _UNET),
    "Stable_Cascade_C": ("Stable Cascade", "not a joint-attention transformer"),
    "Stable_Cascade_B": ("Stable Cascade", "not a joint-attention transformer"),
    "PixArtAlpha": ("PixArt-Alpha", _CROSS), "PixArtSigma": ("PixArt-Sigma", _CROSS),
    "HunyuanDiT": ("Hunyuan-DiT", _CROSS), "HunyuanDiT1": ("Hunyuan-DiT", _CROSS),
    "StableAudio": ("Stable Audio", "an audio model"), "ACEStep": ("ACE-Step", "an audio model"),
    "ACEStep15": ("ACE-Step 1.5", "an audio model"),
}


def adapter_classes() -> list[type[ModelAdapter]]:
    """Every family adapter of this package, in the order `adapter_for` tries them."""
    global _CLASSES
    if _CLASSES is None:
        found = []
        for info in pkgutil.iter_modules(__path__):
            if info.name in ("base", "__main__"):
                continue
            try:
                module = importlib.import_module(f"{__name__}.{info.name}")
            except ImportError as exc:  # a ComfyUI too old for this family: the others still work
                logging.warning("Concept Attention: model family module %r unavailable (%s)", info.name, exc)
                continue
            found += [obj for obj in vars(module).values()
                      if isinstance(obj, type) and issubclass(obj, ModelAdapter) and obj.family
                      and obj.__module__ == module.__name__]
        _CLASSES = sorted(found, key=lambda cls: (cls.order, cls.family))
    return _CLASSES


def supported_text() -> str:
    """One line naming every supported family and its models."""
    return "; ".join(f"{cls.family} ({cls.models})" if cls.models else cls.family for cls in adapter_classes())


def supported_table() -> str:
    """The README's supported-models table, from the adapters' declarations."""
    lines = ["| Family | Models | Default blocks | Defaults from |", "|---|---|---|---|"]
    for cls in adapter_classes():
        source = "the paper's authors" if cls.defaults_published else "this pack (SPEC.md section 3)"
        lines.append(f"| {cls.family} | {cls.models} | {cls.default_blocks_text} | {source} |")
    return "\n".join(lines)


def adapter_for(model_patcher) -> ModelAdapter:
    """The adapter for a ComfyUI MODEL, or a clear error naming the model and what is supported."""
    base = getattr(model_patcher, "model", None)
    if getattr(base, "diffusion_model", None) is not None:
        for cls in adapter_classes():
            if cls.supports(base):
                return cls(base)
    raise ConceptAttentionError(
        f"Concept Attention does not support this model: {_model_name(model_patcher, base)}. It needs a diffusion "
        f"transformer whose text tokens attend jointly with the image; supported: {supported_text()}. Load one "
        f"of those with the Load Diffusion Model or Load Checkpoint node.")


def _model_name(model_patcher, base) -> str:
    if base is None:
        return type(model_patcher).__name__
    config = type(getattr(base, "model_config", None)).__name__
    dm = type(getattr(base, "diffusion_model", None)).__name__
    if config in NOT_APPLICABLE:
        name, reason = NOT_APPLICABLE[config]
        return f"{name} ({reason})"
    return f"{config} ({type(base).__name__}, {dm})"
