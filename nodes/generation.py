"""Concept Attention (patch) and Concept Attention Masks: maps recorded while the model samples."""

from __future__ import annotations

from comfy_api.latest import io

from ..concept_attention import attach, encode_concepts, parse_concepts
from ..concept_attention.selection import parse_index_list
from .common import (CATEGORY, MODELS, SEARCH_ALIASES, Handle, blocks_input, check_typed_text, concepts_input,
                     map_node_output, map_outputs, overlay_input, space_input, steps_input, token_mode_input)


class ConceptAttentionPatch(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="ConceptAttentionPatch",
            display_name="Concept Attention",
            category=CATEGORY,
            search_aliases=SEARCH_ALIASES,
            description=f"Records one saliency map per concept while any sampler runs this model "
                        f"(ConceptAttention, Helbling et al. 2025). The generated image is unchanged. "
                        f"Supports {MODELS}. Feed the sampler's LATENT and this node's handle to "
                        f"Concept Attention Masks.",
            inputs=[
                io.Model.Input("model", tooltip="The diffusion model to read maps from (see the supported "
                                                "models in the description). It is cloned, never changed."),
                io.Clip.Input("clip", tooltip="The text encoder that belongs to the model; it encodes the concepts."),
                concepts_input(),
                blocks_input(),
                steps_input(),
                token_mode_input(),
                space_input(),
            ],
            outputs=[
                io.Model.Output("model", display_name="model",
                                tooltip="The patched model: connect it to any sampler node."),
                Handle.Output("concept_attention", display_name="concept_attention",
                              tooltip="Handle to the recorded maps: connect it to Concept Attention Masks."),
            ],
        )

    @classmethod
    def validate_inputs(cls, concepts=None, blocks=None, steps=None):
        return check_typed_text(concepts=concepts, blocks=blocks, steps=steps)

    @classmethod
    def execute(cls, model, clip, concepts, blocks="", steps="", token_mode="mean", space="auto"):
        encoded = encode_concepts(clip, parse_concepts(concepts), token_mode)
        patched, recorder = attach(model, encoded, layers=parse_index_list(blocks, "blocks"),
                                   steps=parse_index_list(steps, "steps"), space=space)
        return io.NodeOutput(patched, recorder)


class ConceptAttentionMasks(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="ConceptAttentionMasks",
            display_name="Concept Attention Masks",
            category=CATEGORY,
            search_aliases=SEARCH_ALIASES + ["heatmap"],
            description=f"Masks, heatmaps and a segmentation preview from the sampling run that produced the "
                        f"given LATENT with a Concept Attention model. Supports {MODELS}.",
            inputs=[
                Handle.Input("concept_attention", tooltip="The handle from the Concept Attention node."),
                io.Latent.Input("latent", tooltip="The LATENT output of the sampler that used the patched model; "
                                                  "it picks that run's maps (and makes this node run after it)."),
                overlay_input(),
            ],
            outputs=map_outputs(),
        )

    @classmethod
    def execute(cls, concept_attention, latent, image=None):
        return map_node_output(concept_attention.concept_maps_for(latent["samples"]), image)
