"""LongCat-Image (and its Edit) and Ovis-Image: Flux.1-style double blocks with sequential text ids.

The family's rules, and where each comes from:
- Blocks: ComfyUI's `Flux` (comfy/ldm/flux/model.py) with per-block modulation, as Flux.1; Ovis adds `txt_norm`
  before `txt_in` and gate/up/down MLPs (`yak_mlp`), both run on the concepts as on the prompt. Neither model has a
  pooled text vector (`vec_in_dim` None; LongCat has no guidance either, `model_base.LongCatImage.extra_conds`),
  so the concept modulation is each block's text modulation of the timestep (+ guidance) embedding.
- Text ids count the text position on axes 1 and 2 (`txt_ids_dims = [1, 2]`, comfy/model_detection.py and
  `supported_models.LongCatImage`); LongCat shifts the image ids past the text (`model_base.LongCatImage`
  `rope_options`), which only moves the image's own keys. Neither pads the encoder output again: a concept sits
  where its last word token sits in its own encoding (SPEC.md section 3; same rule as Flux.2 without padding).
  Embeddings given without spans: the first text position, 0.
- Defaults: no published choice, so this pack's (SPEC.md section 3): the last quarter of the double blocks, every
  step, the paper's per-block softmax.
- Reference images (LongCat-Image-Edit) follow the generated image in the joint sequence; only the generated
  image's tokens are mapped.
"""

from __future__ import annotations

from comfy.ldm.flux.model import Flux

from .base import last_quarter
from .flux import FluxAdapter, double_block_text_qkv
from .flux2 import concept_positions, text_rope


class SequentialTextFluxAdapter(FluxAdapter):
    family = "LongCat-Image / Ovis-Image"
    models = "LongCat-Image, LongCat-Image-Edit (only the generated image is mapped), Ovis-Image"
    default_blocks_text = "the last quarter of the double blocks"
    defaults_published = False

    @classmethod
    def supports(cls, base_model) -> bool:
        dm = base_model.diffusion_model
        return (type(dm) is Flux and not dm.params.global_modulation and bool(dm.params.txt_ids_dims)
                and all(block.modulation for block in dm.double_blocks))

    def default_blocks(self) -> list[int]:
        return last_quarter(self.num_blocks)

    def start(self, call, embeddings, concepts):
        stream = super().start(call, embeddings, concepts)
        stream.extra["pe"] = text_rope(self.dm, concept_positions(concepts), call)
        return stream

    def concept_qkv(self, index, stream, block_args):
        block = self.dm.double_blocks[index]
        mod1, mod2 = block.txt_mod(stream.vec)
        q, k, v = double_block_text_qkv(block, stream.c, mod1, stream.extra["pe"])
        return q, k, v, (mod1, mod2)
