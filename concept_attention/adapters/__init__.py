"""Model families the method supports, one adapter each."""

from __future__ import annotations

from ..errors import ConceptAttentionError

SUPPORTED = ("Flux.1 dev / schnell / Krea / Fill / Kontext, SD3 Medium, SD3.5 Large / Large Turbo / Medium")


def adapter_for(model_patcher):
    """The adapter for a ComfyUI MODEL, or a clear error naming the model and what is supported."""
    from .flux import FluxAdapter  # imported here: the adapters import ComfyUI, the pure math does not
    from .mmdit import MMDiTAdapter

    base = getattr(model_patcher, "model", None)
    dm = getattr(base, "diffusion_model", None)
    for adapter in (FluxAdapter, MMDiTAdapter):
        if dm is not None and adapter.supports(dm):
            return adapter(dm)
    kind = f"{type(base).__name__} ({type(dm).__name__})" if dm is not None else type(model_patcher).__name__
    raise ConceptAttentionError(
        f"Concept Attention does not support this model: {kind}. It needs a multi-modal diffusion "
        f"transformer with a text stream; supported: {SUPPORTED}. Load one of those with the "
        f"Load Diffusion Model or Load Checkpoint node.")
