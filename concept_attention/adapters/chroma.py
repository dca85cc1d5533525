"""Chroma (Chroma1-HD, -Base, -Flash) and Chroma Radiance (pixel space): Flux's double-stream blocks with
their modulation built by an approximator, not a pooled text vector.

The family's rules, and where each comes from (ComfyUI's comfy/ldm/chroma/model.py unless said otherwise):
- Blocks: `double_blocks` (ComfyUI's Flux `DoubleStreamBlock` with `modulation=False`), then single-stream
  blocks. `forward_orig` calls each double block through the ("double_block", i) patch replace; the concept
  step runs there, with the text-stream math shared with Flux.1 (`double_block_text_qkv` / `..._update`).
- Modulation: the blocks own no modulation weights. `forward_orig` computes every block's shift/scale/gate once
  per call with the `distilled_guidance_layer` (the approximator) from the timestep, the guidance and the
  modulation slot's index, and hands block i `(img mods, txt mods)` as the replace's `vec`, the text ones from
  `get_modulations(mod_vectors, "double_txt", idx=i)`. Nothing of the prompt enters them: Chroma has no pooled
  text vector. The method's concept modulation is the text tokens' modulation built from timestep and guidance
  with a zero pooled vector (SPEC.md section 3), i.e. with the prompt's own contribution removed; on Chroma
  that is exactly the modulation the prompt's tokens receive, so the concept stream takes `vec`'s text half
  (at the recorded rows).
- Text input: the T5-XXL features through `txt_in` (a linear layer; Chroma has no `txt_norm`).
- Positions: `Chroma._forward` gives every text token the id (0, 0, 0), so concepts sit there (SPEC.md,
  Positions). Chroma Radiance checkpoints with sequential text ids (`use_sequential_txt_ids`: the
  checkpoint's `__sequential__` key, or ChromaRadianceOptions' `force_sequential_txt_ids` through
  `transformer_options["chroma_radiance_options"]`; comfy/ldm/chroma_radiance/model.py) give prompt token j the
  id (j, 0, 0); a concept then takes the id of its first word token in its own encoding (`concepts.spans`), 0
  without spans. T5 puts no token before the words, so that is 0 for concepts from `encode_concepts`.
- Joint attention: [prompt; image], no reference-image tokens.
- Attention mask: Chroma passes `attention_mask` (a [text + image]^2 bias that Flux's `extra_conds` builds
  when a conditioning carries one with `attention_mask_img_shape`, e.g. StyleModelApply's attn_bias) to the
  joint attention of the prompt and the image. ComfyUI 0.25's Chroma T5 returns no padding mask. The concept
  queries use none of it: they attend over the generated image's keys and the concepts' own only.
- `skip_mmdit`: double blocks listed there are not called at all (neither the replace nor the block), so the
  prompt stream passes them unchanged; so does the concept stream, and a skipped block adds nothing to the maps.
- Default blocks: the authors published none for Chroma; this pack's rule, the last quarter of the double
  blocks (14-18 of 19).
- Chroma Radiance (`ChromaRadiance` subclasses `Chroma`): pixels in, `img_in_patch` a convolution with the
  checkpoint's patch size (16 in the released models), latent format with `spacial_downscale_ratio` 1, so the
  token grid is the image in patches and one token covers patch-size pixels; the NeRF head decodes the tokens
  after the single blocks and does not touch the concept stream.
"""

from __future__ import annotations

import torch
from comfy.ldm.chroma.model import Chroma
from comfy.ldm.chroma_radiance.model import ChromaRadiance
from comfy.ldm.flux.layers import ModulationOut

from .base import ConceptStream, JointLayout, ModelAdapter, expand_rows, last_quarter
from .flux import double_block_text_qkv, double_block_text_update


class ChromaAdapter(ModelAdapter):
    family = "Chroma"
    models = "Chroma1-HD, Chroma1-Base, Chroma1-Flash and the earlier Chroma releases"
    default_blocks_text = "double blocks 14-18 (the last quarter)"
    defaults_published = False
    order = 110  # exact types, so only the listing order: after the families the pack began with (Flux.1, SD3)

    @classmethod
    def supports(cls, base_model) -> bool:
        return type(base_model.diffusion_model) is Chroma

    def __init__(self, base_model):
        super().__init__(base_model)
        self.patch_size = self.dm.patch_size

    @property
    def num_blocks(self) -> int:
        return len(self.dm.double_blocks)

    def default_blocks(self) -> list[int]:
        return last_quarter(self.num_blocks)

    @property
    def text_width(self) -> int:
        return self.dm.txt_in.in_features

    def start(self, call, embeddings, concepts):
        txt = expand_rows(embeddings.to(device=call.device, dtype=call.dtype), call.batch)
        starts = [0] * len(concepts) if concepts.spans is None else [span.start for span in concepts.spans]
        grid = self.grid(call.x.shape)
        return ConceptStream(self.dm.txt_in(txt), None, {"rows": call.rows, "image_tokens": grid[0] * grid[1],
                                                         "word_starts": starts})

    def layout(self, index, block_args, stream):
        txt_len = block_args["txt"].shape[1]  # the prompt, then the image
        return JointLayout(txt_len + block_args["img"].shape[1],
                           slice(txt_len, txt_len + stream.extra["image_tokens"]))

    def concept_qkv(self, index, stream, block_args):
        rows = stream.extra["rows"]
        mod1, mod2 = (ModulationOut(rows.take(m.shift), rows.take(m.scale), rows.take(m.gate))
                      for m in block_args["vec"][1])  # the prompt's text modulation: timestep and guidance only
        q, k, v = double_block_text_qkv(self.dm.double_blocks[index], stream.c, mod1,
                                        self.concept_pe(stream, block_args))
        return q, k, v, (mod1, mod2)

    def concept_update(self, index, stream, o_c, intermediates):
        return double_block_text_update(self.dm.double_blocks[index], stream.c, o_c, *intermediates)

    def concept_pe(self, stream, block_args) -> torch.Tensor:
        """The concepts' rotary embedding [B, 1, C, Dh/2, 2, 2] at their text positions (made once per call)."""
        pe = stream.extra.get("pe")
        if pe is None:
            batch, count = stream.c.shape[:2]
            ids = torch.zeros(count, len(self.dm.params.axes_dim), device=stream.c.device)
            if self.sequential_text_ids(block_args.get("transformer_options") or {}):
                ids[:, 0] = torch.tensor(stream.extra["word_starts"], dtype=ids.dtype)
            pe = self.dm.pe_embedder(ids[None])
            pe = stream.extra["pe"] = pe.expand(batch, *pe.shape[1:]).contiguous()
        return pe

    def sequential_text_ids(self, transformer_options: dict) -> bool:
        """Whether prompt token j sits at text position j (else every text token sits at 0)."""
        return False


class ChromaRadianceAdapter(ChromaAdapter):
    family = "Chroma Radiance"
    models = "Chroma1-Radiance (pixel space; x0 and sequential-text-id checkpoints included)"

    @classmethod
    def supports(cls, base_model) -> bool:
        return type(base_model.diffusion_model) is ChromaRadiance

    def sequential_text_ids(self, transformer_options):
        overrides = transformer_options.get("chroma_radiance_options", {})
        return self.dm.radiance_get_override_params(overrides).use_sequential_txt_ids
