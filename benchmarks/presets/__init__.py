"""Benchmark presets, one module per model family (real architectures, random weights).

A module defines `PRESETS`, a dict of name -> `Preset`. Adding a family's presets is adding a module here.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field
from typing import Callable

import torch


@dataclass
class Preset:
    """One benchmark setting: how to build the model and its inputs.

    build(device, dtype) -> ModelPatcher with random weights; conditioning(generator) -> a CONDITIONING list;
    latent(resolution) -> the empty latent batch the sampler starts from; concept_width: the text-feature
    width of the model's text input path (concept embeddings are drawn at random with it).
    """

    build: Callable
    conditioning: Callable
    latent: Callable
    concept_width: int
    resolution: int
    steps: int
    repeats: int
    notes: str = ""
    sampler_kwargs: dict = field(default_factory=dict)


def init_random(module: torch.nn.Module, std: float = 0.02) -> None:
    """Random weights (speed does not depend on their values); ComfyUI's ops leave them uninitialised."""
    with torch.no_grad():
        for p in module.parameters():
            p.normal_(0, std)


def random_model(config_name: str, unet_config: dict, device, dtype):
    """ComfyUI's model of `comfy.supported_models.<config_name>` for this diffusion-model config, built on
    `device` in `dtype` with random weights, as a ModelPatcher."""
    import comfy.model_patcher
    import comfy.supported_models

    config = getattr(comfy.supported_models, config_name)(dict(unet_config))
    config.set_inference_dtype(dtype, None)
    with torch.device(device):
        base = config.get_model({}, device=device)
    init_random(base.diffusion_model)
    base.diffusion_model.to(device=device, dtype=dtype)
    return comfy.model_patcher.ModelPatcher(base, torch.device(device), torch.device("cpu"))


def all_presets() -> dict[str, Preset]:
    found: dict[str, Preset] = {}
    for info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{info.name}")
        found.update(module.PRESETS)
    return found
