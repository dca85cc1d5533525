"""ComfyUI entry point of the ConceptAttention node pack."""

from .nodes import comfy_entrypoint

__all__ = ["comfy_entrypoint"]
