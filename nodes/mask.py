"""Concept Mask: one concept's mask, shaped for inpainting, masking and compositing nodes."""

from __future__ import annotations

from comfy_api.latest import io

from ..concept_attention.masks import MASK_MODES
from .common import CATEGORY, MODELS, SEARCH_ALIASES, Maps


class ConceptAttentionSelectMask(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="ConceptAttentionSelectMask",
            display_name="Concept Mask",
            category=CATEGORY,
            search_aliases=SEARCH_ALIASES + ["mask by name", "concept mask"],
            description=f"Picks one concept by name from Concept Attention maps and shapes its mask at image "
                        f"resolution. Works with the maps of {MODELS}.",
            inputs=[
                Maps.Input("concept_maps", tooltip="concept_maps from Concept Attention Masks or Concept "
                                                   "Attention from Image."),
                io.String.Input("concept", default="cat",
                                tooltip="The concept's name, as typed in the concept list (case does not matter)."),
                io.Combo.Input("mode", options=list(MASK_MODES), default="argmax",
                               tooltip="soft: the 0..1 map. argmax: pixels where this concept is the strongest "
                                       "(masks of different concepts never overlap). mean_threshold: above the "
                                       "map's own mean (the paper's segmentation). value_threshold: above "
                                       "'threshold'."),
                io.Float.Input("threshold", default=0.5, min=0.0, max=1.0, step=0.01,
                               tooltip="Cut-off for value_threshold mode (ignored by the other modes)."),
            ],
            outputs=[io.Mask.Output("mask", display_name="mask",
                                    tooltip="One mask per image at image resolution, 1 = the concept. Video: "
                                            "one per decoded frame, in the frames' order.")],
        )

    @classmethod
    def execute(cls, concept_maps, concept, mode="argmax", threshold=0.5):
        return io.NodeOutput(concept_maps.mask(concept, mode, threshold))
