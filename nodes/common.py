"""Inputs and outputs shared by the pack's nodes, and the conversion to ComfyUI's MASK / IMAGE types."""

from __future__ import annotations

from comfy_api.latest import io

from ..concept_attention import video
from ..concept_attention.adapters import adapter_classes, supported_text
from ..concept_attention.concepts import TOKEN_MODES, parse_concepts
from ..concept_attention.errors import ConceptAttentionError
from ..concept_attention.maps import AUTO_SPACE, NODE_SPACES
from ..concept_attention.masks import ConceptMaps
from ..concept_attention.preview import labelled_previews, labelled_video_previews
from ..concept_attention.selection import parse_index_list

Handle = io.Custom("CONCEPT_ATTENTION")
Maps = io.Custom("CONCEPT_ATTENTION_MAPS")
CATEGORY = "mask/concept attention"
MODELS = supported_text()  # from the model family adapters' own declarations
BLOCK_DEFAULTS = "; ".join(f"{cls.family}: {cls.default_blocks_text}" for cls in adapter_classes())
CROSS_ATTENTION_ONLY = ", ".join(cls.family for cls in adapter_classes() if "output" not in cls.spaces)
STEP_DEFAULTS = "; ".join(f"{cls.family}: {cls.default_steps_text}" for cls in adapter_classes()
                          if cls.default_steps_text != "every step")
# What people type into the node search when they look for this pack (matched besides the display names).
SEARCH_ALIASES = ["segment", "segmentation", "mask from text", "text to mask", "attention mask", "concept",
                  "saliency map"]


def concepts_input():
    return io.String.Input("concepts", multiline=True, default="cat, sofa, window",
                           tooltip="The things to find, separated by commas or new lines. One mask per concept, "
                                   "in this order. Each pixel's scores sum to 1 over the list, so include a "
                                   "'background' concept when the scene has one.")


def steps_input():
    return io.String.Input("steps", default="", advanced=True,
                           tooltip=f"0-based sampling steps to average over, e.g. '0-9'; 'all': every step of the "
                                   f"run. Empty: the model's default, every step except for {STEP_DEFAULTS}.")


def blocks_input():
    return io.String.Input("blocks", default="", advanced=True,
                           tooltip=f"0-based joint (double) block indices to read maps from, e.g. '15-18' or "
                                   f"'10, 12-14'; 'all': every joint block. Empty: the model's default "
                                   f"({BLOCK_DEFAULTS}).")


def token_mode_input():
    return io.Combo.Input("token_mode", options=list(TOKEN_MODES), default="mean", advanced=True,
                          tooltip="How a concept becomes one token: 'mean' of the text encoder's outputs over "
                                  "the concept's word pieces (robust for multi-piece words), or 'first_token' "
                                  "as in the paper.")


def space_input():
    return io.Combo.Input("space", options=list(NODE_SPACES), default=AUTO_SPACE, advanced=True,
                          tooltip=f"'output': ConceptAttention (attention-output space, the paper's method). "
                                  f"'cross_attention': raw image-query/concept-key attention, a weaker baseline; "
                                  f"the only space of the cross-attention-only models ({CROSS_ATTENTION_ONLY}), "
                                  f"which never update the prompt, so ConceptAttention does not exist there. "
                                  f"'auto': 'output' where the model has it, else 'cross_attention'.")


def map_outputs():
    return [
        io.Mask.Output("masks", display_name="masks",
                       tooltip="Soft masks at image resolution, one per concept and image: image 0's concepts "
                               "in list order, then image 1's, and so on. Values in 0..1 sum to 1 over concepts. "
                               "Video: one per concept and decoded frame, each concept's frames in a row "
                               "(video 0: concept 0's frames, concept 1's frames, ...; then video 1)."),
        io.Image.Output("heatmaps", display_name="heatmaps",
                        tooltip="One heat image per mask (same order), each stretched to its own range (video: "
                                "one range per concept's clip), with its concept's name and colour on a strip "
                                "below."),
        io.Image.Output("segmentation", display_name="segmentation",
                        tooltip="One image per input image (video: per decoded frame), each pixel coloured by "
                                "its strongest concept, with a legend (each concept's colour and name) on a strip "
                                "below."),
        Maps.Output("concept_maps", display_name="concept_maps",
                    tooltip="The maps with their concept names, for the Concept Mask node."),
    ]


def overlay_input():
    return io.Image.Input("image", optional=True,
                          tooltip="Optional decoded image to draw the heatmaps and segmentation over (video: "
                                  "the decoded frames, VAE Decode's output).")


def map_node_output(concept_maps: ConceptMaps, image=None) -> io.NodeOutput:
    maps = concept_maps.at_image_size()
    if concept_maps.frames is not None:  # a video: one mask per concept per decoded frame (video.py: the order)
        heatmaps, segmentation = labelled_video_previews(maps, concept_maps.names, image)
        return io.NodeOutput(video.masks_output(maps), heatmaps, segmentation, concept_maps)
    masks = maps.reshape(-1, *maps.shape[2:])
    heatmaps, segmentation = labelled_previews(maps, concept_maps.names, image)
    return io.NodeOutput(masks, heatmaps, segmentation, concept_maps)


def check_typed_text(concepts=None, blocks=None, steps=None) -> bool | str:
    """The nodes' `validate_inputs`: reads what a person typed when the prompt is queued, before any model
    loads. An input fed by a link arrives as None (its value is known only when the graph runs)."""
    try:
        if concepts is not None:
            parse_concepts(concepts)
        for text, what in ((blocks, "blocks"), (steps, "steps")):
            if text is not None:
                parse_index_list(text, what)
    except ConceptAttentionError as error:
        return str(error)
    return True
