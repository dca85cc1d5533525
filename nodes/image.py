"""Concept Attention from Image: maps for an existing image from one partial forward pass per sample."""

from __future__ import annotations

from comfy_api.latest import io

from ..concept_attention import encode_concepts, parse_concepts
from ..concept_attention.from_image import maps_from_latent
from ..concept_attention.selection import parse_index_list
from .common import (CATEGORY, MODELS, blocks_input, check_typed_text, concepts_input, map_node_output, map_outputs,
                     space_input, token_mode_input)


class ConceptAttentionFromImage(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="ConceptAttentionFromImage",
            display_name="Concept Attention from Image",
            category=CATEGORY,
            description=f"Masks for an existing image: it is encoded, noised to one sigma and passed once per "
                        f"sample through the model, stopping after the last joint block needed. "
                        f"Supports {MODELS}.",
            inputs=[
                io.Model.Input("model", tooltip="The diffusion model (see the supported models in the "
                                                "description). It is not changed."),
                io.Clip.Input("clip", tooltip="The model's text encoder, for the concepts and the caption."),
                io.Vae.Input("vae", tooltip="The model's VAE, to encode the image."),
                io.Image.Input("image", tooltip="The image (or batch of images) to map. Video models: the "
                                                "frames of one video, mapped in one pass per sample."),
                concepts_input(),
                io.String.Input("caption", multiline=True, default="",
                                tooltip="Optional prompt describing the image; it steers the image stream as "
                                        "during generation. Empty works too."),
                io.Float.Input("noise_level", default=0.5, min=0.01, max=1.0, step=0.01,
                               tooltip="Sigma of the forward pass (0 = clean image, 1 = pure noise). 0.5 is the "
                                       "authors' setting for Flux."),
                io.Int.Input("samples", default=1, min=1, max=64,
                             tooltip="Noise draws to average; each is one partial forward pass."),
                io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF, control_after_generate=False,
                             tooltip="Seed of the first noise draw (the next draws use seed+1, seed+2, ...)."),
                blocks_input(),
                token_mode_input(),
                space_input(),
            ],
            outputs=map_outputs(),
        )

    @classmethod
    def validate_inputs(cls, concepts=None, blocks=None):
        return check_typed_text(concepts=concepts, blocks=blocks)

    @classmethod
    def execute(cls, model, clip, vae, image, concepts, caption="", noise_level=0.5, samples=1, seed=0,
                blocks="", token_mode="mean", space="output"):
        encoded = encode_concepts(clip, parse_concepts(concepts), token_mode)
        latent = vae.encode(image[:, :, :, :3])
        positive = clip.encode_from_tokens_scheduled(clip.tokenize(caption))
        concept_maps = maps_from_latent(model, encoded, latent, positive, noise_level=noise_level,
                                        samples=samples, seed=seed, layers=parse_index_list(blocks, "blocks"),
                                        space=space)
        concept_maps = concept_maps.with_image_size(tuple(image.shape[1:3]), frames=image.shape[0])
        return map_node_output(concept_maps, image)
