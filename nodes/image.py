"""Concept Attention from Image: maps for an existing picture (a LATENT, or an IMAGE and its VAE) from one partial
forward pass per sample."""

from __future__ import annotations

from comfy_api.latest import io

from ..concept_attention import encode_concepts, parse_concepts
from ..concept_attention.errors import ConceptAttentionError
from ..concept_attention.from_image import check_latent, maps_from_latent
from ..concept_attention.selection import parse_index_list
from .common import (CATEGORY, MODELS, SEARCH_ALIASES, blocks_input, check_typed_text, concepts_input,
                     map_node_output, map_outputs, space_input, token_mode_input)


class ConceptAttentionFromImage(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="ConceptAttentionFromImage",
            display_name="Concept Attention from Image",
            category=CATEGORY,
            search_aliases=SEARCH_ALIASES + ["segment image", "heatmap"],
            description=f"Masks for an existing picture from one partial forward pass per sample through the "
                        f"model, stopping after the last joint block needed. Give it the LATENT a sampler made "
                        f"(no VAE encode: the cheapest way to map a generated picture again with other concepts) "
                        f"or an IMAGE with its VAE. Supports {MODELS}.",
            inputs=[
                io.Model.Input("model", tooltip="The diffusion model (see the supported models in the "
                                                "description). It is not changed."),
                io.Clip.Input("clip", tooltip="The model's text encoder, for the concepts and the caption."),
                io.Vae.Input("vae", optional=True,
                             tooltip="The model's VAE, to encode the image. Not needed when latent is wired."),
                io.Image.Input("image", optional=True,
                               tooltip="The image (or batch of images) to map, encoded with the VAE. Video models: "
                                       "the frames of one video, mapped in one pass per sample. When latent is "
                                       "wired instead, it is only drawn over and must be that latent's decoded "
                                       "picture."),
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
                io.Latent.Input("latent", optional=True,
                                tooltip="A LATENT that a sampler made with this model (or VAE Encode made with its "
                                        "VAE): it is mapped directly, without a VAE encode. Use it to map a "
                                        "generated picture again with other concepts. Wins over image."),
            ],
            outputs=map_outputs(),
        )

    @classmethod
    def validate_inputs(cls, concepts=None, blocks=None):
        return check_typed_text(concepts=concepts, blocks=blocks)

    @classmethod
    def execute(cls, model, clip, concepts, caption="", noise_level=0.5, samples=1, seed=0, blocks="",
                token_mode="mean", space="auto", vae=None, image=None, latent=None):
        image_latent = cls.latent_to_map(model, vae, image, latent)
        encoded = encode_concepts(clip, parse_concepts(concepts), token_mode)
        positive = clip.encode_from_tokens_scheduled(clip.tokenize(caption))
        concept_maps = maps_from_latent(model, encoded, image_latent, positive, noise_level=noise_level,
                                        samples=samples, seed=seed, layers=parse_index_list(blocks, "blocks"),
                                        space=space)
        if image is not None:  # an encoded video keeps its own frame count (a latent's decoded frames are its own)
            frames = image.shape[0] if latent is None else None
            concept_maps = concept_maps.with_image_size(tuple(image.shape[1:3]), frames=frames)
        return map_node_output(concept_maps, image)

    @staticmethod
    def latent_to_map(model, vae, image, latent):
        """The wired LATENT as it is, else the image encoded with the VAE."""
        if latent is not None:
            check_latent(model, latent["samples"], None if image is None else image.shape[:3])
            return latent["samples"]
        if image is None:
            raise ConceptAttentionError(
                "Concept Attention from Image has nothing to map: wire 'latent' (a sampler's LATENT output; no "
                "VAE needed) or 'image' together with 'vae'.")
        if vae is None:
            raise ConceptAttentionError(
                "The image must be encoded with the model's VAE: wire 'vae', or wire the sampler's LATENT to "
                "'latent' instead of the image.")
        return vae.encode(image[:, :, :, :3])
