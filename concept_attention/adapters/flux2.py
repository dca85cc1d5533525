"""Flux.2 (dev, Klein 4B, Klein 9B): ComfyUI's `Flux` with global modulation and sequential text ids.

The family's rules, and where each comes from:
- Blocks (comfy/ldm/flux/model.py, `Flux.forward_orig` with `params.global_modulation`): the double blocks have
  no modulation of their own; each receives `vec = ((img_mod1, img_mod2), (txt_mod1, txt_mod2))`, the text part
  `double_stream_modulation_txt` of the timestep (+ guidance) embedding. Flux.2 has no pooled text vector
  (`vector_in` is None), so the concept modulation is exactly that text modulation, as in the authors'
  `concept_attention/flux2/dit_block.py` (concepts take `mod_txt`). It is built here from the sampler's own
  timestep of the recorded rows: with reference images and `index_timestep_zero` ComfyUI gives the reference
  tokens a zero timestep while the text keeps the real one (`txt_vec = vec[:batch]`), and so do the concepts.
- Concept positions (SPEC.md section 3): text ids count 0..L-1 on the last axis (`txt_ids_dims = [3]`,
  comfy/model_detection.py), and `model_base.Flux2.extra_conds` left-pads shorter text to 512 tokens. A concept
  sits where its last word token sits in the model's text sequence when the concept alone is the prompt: its
  row in its own encoding plus the left padding that encoding gets. Flux.2 dev (Mistral; ComfyUI's template
  ends in one `[/INST]` token and its tokenizer does not pad) lands at 512 - 2 = 510, the authors' position
  (their pipeline takes row 510 of the 512-token left-padded Mistral output, at text id 510). Klein's Qwen3
  tokenizer pads on the right to 512 itself, so no left padding: the word's own row (3 for a one-token word
  after "<|im_start|>user\\n"). Embeddings given without spans: the first text position, 0.
- Default blocks: the authors' "last 3 of 8 double blocks" (5-7 on dev, `pipeline.py`), kept as the last three
  double blocks on Klein too (5-7 of Klein 9B's 8, 2-4 of Klein 4B's 5): the same stage of the model (the end
  of the double-stream stage, before the single blocks) averaged over the same number of blocks.
- Default steps: the authors' last 30% of the run, `range(int(n * 0.7), n - 1)` of n steps; a run too short for
  that rule (n <= 3, e.g. From Image's single pass) records its last step, as their `encode_image` reads its one.
- Maps: raw output-space scores averaged over blocks and steps, then one softmax over concepts at temperature
  1000 (`compute_heatmaps_from_attention_dicts`, `softmax_temperature=1000.0`).
- Reference images (Flux.2 edit) are appended after the generated image (`Flux._forward`, patch size 1 on the
  /16 latent): only the generated image's tokens are the concepts' image keys and the maps' rows.
"""

from __future__ import annotations

import torch
from comfy.ldm.flux.model import Flux

from .base import expand_rows
from .flux import FluxAdapter, double_block_text_qkv

TEXT_LENGTH = 512  # model_base.Flux2.extra_conds left-pads the text to this many tokens
DEFAULT_BLOCK_COUNT = 3  # the authors' "last 3 of 8 double blocks"


class Flux2Adapter(FluxAdapter):
    family = "Flux.2"
    models = "dev, Klein 4B, Klein 9B; with reference images only the generated image is mapped"
    default_blocks_text = ("the last three double blocks (the authors' 5-7 on dev; 5-7 on Klein 9B, 2-4 on Klein 4B), "
                           "the last 30% of the steps, one softmax over the averaged scores at temperature 1000")
    default_steps_text = "the last 30% of the steps (the authors' choice)"
    defaults_published = True
    softmax_temperature = 1000.0

    @classmethod
    def supports(cls, base_model) -> bool:
        dm = base_model.diffusion_model
        return type(dm) is Flux and dm.params.global_modulation

    def default_blocks(self) -> list[int]:
        return list(range(max(0, self.num_blocks - DEFAULT_BLOCK_COUNT), self.num_blocks))

    def default_steps(self, total_steps: int):
        steps = list(range(int(total_steps * 0.7), total_steps - 1))
        return steps or [total_steps - 1]

    def start(self, call, embeddings, concepts):
        stream = super().start(call, embeddings, concepts)  # text input path; timestep + guidance embedding
        stream.vec = self.dm.double_stream_modulation_txt(stream.vec)
        stream.extra["pe"] = text_rope(self.dm, concept_positions(concepts, TEXT_LENGTH), call)
        return stream

    def concept_qkv(self, index, stream, block_args):
        mod1, mod2 = stream.vec
        q, k, v = double_block_text_qkv(self.dm.double_blocks[index], stream.c, mod1, stream.extra["pe"])
        return q, k, v, (mod1, mod2)


def concept_positions(concepts, padded_length: int | None = None) -> list[int]:
    """Each concept's text position: its last word token's row in its own encoding, shifted by the left padding
    the model gives a text shorter than `padded_length` (None: no padding); 0 where no span is known."""
    spans = concepts.spans or [None] * len(concepts)
    return [0 if span is None else span.stop - 1 + max(0, (padded_length or 0) - span.length) for span in spans]


def text_rope(dm, positions: list[int], call):
    """The rotations [B, 1, C, Dh/2, 2, 2] of text tokens at `positions` in a Flux model with sequential text ids
    (`params.txt_ids_dims`: the id axes that count text positions, as `Flux._forward` sets them)."""
    ids = torch.zeros(len(positions), len(dm.params.axes_dim), device=call.device)
    for axis in dm.params.txt_ids_dims:
        ids[:, axis] = torch.tensor(positions, dtype=ids.dtype)
    return dm.pe_embedder(expand_rows(ids, call.batch))
