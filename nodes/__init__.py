"""The pack's ComfyUI nodes (V3 schema): thin glue over `concept_attention`."""

from comfy_api.latest import ComfyExtension, io

from .generation import ConceptAttentionMasks, ConceptAttentionPatch
from .image import ConceptAttentionFromImage
from .mask import ConceptAttentionSelectMask

NODES = [ConceptAttentionPatch, ConceptAttentionMasks, ConceptAttentionFromImage, ConceptAttentionSelectMask]


class ConceptAttentionExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return NODES


async def comfy_entrypoint() -> ConceptAttentionExtension:
    return ConceptAttentionExtension()
