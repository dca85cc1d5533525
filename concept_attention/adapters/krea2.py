"""Krea 2 (ComfyUI's `comfy.ldm.krea2.model.SingleStreamDiT`): one stream of [text; image] tokens through shared
blocks. No implementation by the paper's authors exists for it; these are this pack's rules (SPEC.md section 3,
"Single-stream blocks"), each with its source in ComfyUI's `comfy/ldm/krea2/model.py`.

- Text path: the prompt's features (12 Qwen3-VL layers per token, flattened by `comfy/text_encoders/krea2.py`)
  pass `txtfusion` (two blocks attending across each token's encoder layers, a learned mix of the layers, two
  blocks attending across the prompt's tokens) and `txtmlp`. A concept passes both on its own: a one-token
  prompt, so the attention across tokens sees the concept alone and nothing of the prompt.
- Modulation: every block's shift/scale/gate come from the timestep alone (`tmlp`, `tproj`); Krea 2 has no
  pooled or guidance vector. Concepts get the same timestep vector as the prompt, so nothing prompt-derived.
- Blocks: text and image share the weights, so a concept goes through the block's own modulation, pre-norm,
  q/k/v projections, per-head QK-norm, RoPE and grouped-query heads, and afterwards through its sigmoid gate,
  output projection, post-norm and SwiGLU MLP, exactly as a prompt token does.
- Positions: `_forward` gives every text token the id (0, 0, 0), so concepts are rotated at (0, 0, 0) too.
- Saliency vector: the attention output before the sigmoid gate, heads concatenated (softmax(q k^T) v, what the
  block's attention call returns). The gate is not part of the attention: it is an elementwise factor computed
  from each token's own block input, applied on the way into the output projection, so it belongs to the
  output path; scoring after it would weight every channel by the image token's and the concept's own
  pre-attention features. And the gated image rows exist only inside the block, never in the attention call:
  reading them would mean recomputing the gate projection over every image token in every block, against the
  performance contract (SPEC.md section 2). The concepts' own gate is applied in their update.
- Hooking: the blocks are called without a patch-replace hook and without `transformer_options["block_index"]`,
  so the attention override matches calls by order. The model's attention calls come in a fixed order: the four
  text-fusion calls (two across encoder layers, two across the prompt), then one per block. They are counted
  rather than told apart by length, because an encoder-layer call (length 12 on the real model) can be as long
  as a small image's joint sequence.
- Default blocks: Krea 2 is single-stream only, so the pack's rule is the last quarter of all blocks (21-27 of
  the 28); the paper's authors published nothing for this model.
"""

from __future__ import annotations

import torch
from comfy.ldm.flux.layers import timestep_embedding
from comfy.ldm.flux.math import apply_rope
from comfy.ldm.krea2.model import SingleStreamDiT

from ..errors import ConceptAttentionError
from .base import ATTENTION, ConceptStream, JointLayout, ModelAdapter, expand_rows, last_quarter


class Krea2Adapter(ModelAdapter):
    family = "Krea 2"
    models = "Krea 2 (K2)"
    default_blocks_text = "the last quarter of the blocks (21-27 of 28)"
    defaults_published = False
    hook = ATTENTION

    @classmethod
    def supports(cls, base_model) -> bool:
        return type(base_model.diffusion_model) is SingleStreamDiT

    def __init__(self, base_model):
        super().__init__(base_model)
        self.patch_size = self.dm.patch
        txtfusion = self.dm.txtfusion
        self.text_fusion_calls = len(txtfusion.layerwise_blocks) + len(txtfusion.refiner_blocks)

    @property
    def num_blocks(self) -> int:
        return len(self.dm.blocks)

    def default_blocks(self) -> list[int]:
        return last_quarter(self.num_blocks)

    @property
    def text_width(self) -> int:
        return self.dm.txtlayers * self.dm.txtdim

    def start(self, call, embeddings, concepts):
        dm = self.dm
        if call.x.ndim == 5 and call.x.shape[2] != 1:
            raise ConceptAttentionError(
                f"Krea 2 makes single images, but this latent has {call.x.shape[2]} frames. Use a latent of one "
                f"image per batch row (Empty Latent Image, or a VAE Encode of one image).")
        tvec = dm.tproj(dm.tmlp(timestep_embedding(self.model_timestep(call), dm.tdim).unsqueeze(1).to(call.dtype)))
        # Each concept a one-token prompt of its own through the text fusion and the text MLP.
        layers = embeddings.to(device=call.device, dtype=call.dtype).reshape(-1, 1, dm.txtlayers, dm.txtdim)
        concept_tokens = dm.txtmlp(dm.txtfusion(layers))[:, 0]
        text_ids = torch.zeros(call.batch, len(concept_tokens), 3, device=call.device)  # as _forward's text ids
        grid = self.grid(call.x.shape)
        return ConceptStream(expand_rows(concept_tokens, call.batch), tvec, {
            "pe": dm.pe_embedder(text_ids),
            "text_tokens": call.kwargs["c_crossattn"].shape[1],
            "image_tokens": grid[0] * grid[1],
            "attention_calls": 0,
        })

    def layout(self, index, block_args, stream):
        text, image = stream.extra["text_tokens"], stream.extra["image_tokens"]
        return JointLayout(text + image, slice(text, text + image))  # text first, then the image

    def attention_block(self, options, length, stream, calls_seen):
        seen = stream.extra["attention_calls"]
        stream.extra["attention_calls"] = seen + 1
        index = seen - self.text_fusion_calls
        if index < 0:
            return None  # the text fusion's attention
        expected = self.layout(index, None, stream).length
        if length != expected:
            raise RuntimeError(
                f"Concept Attention lost track of Krea 2's blocks: attention call {seen} has {length} tokens where "
                f"block {index} attends over {expected}. Another node pack may call extra attention inside this "
                f"model; disable it for this model.")
        return index

    def concept_qkv(self, index, stream, block_args):
        block = self.dm.blocks[index]
        attn = block.attn
        prescale, preshift, pregate, postscale, postshift, postgate = block.mod(stream.vec)
        x = (1 + prescale) * block.prenorm(stream.c) + preshift
        q, k, v = (t.unflatten(-1, (-1, attn.headdim)).transpose(1, 2) for t in (attn.wq(x), attn.wk(x), attn.wv(x)))
        q, k = attn.qknorm(q, k)
        q, k = apply_rope(q, k, stream.extra["pe"])
        if attn.kvheads != attn.heads:
            k = k.repeat_interleave(attn.heads // attn.kvheads, dim=1)
            v = v.repeat_interleave(attn.heads // attn.kvheads, dim=1)
        return q, k, v, (torch.sigmoid(attn.gate(x)), pregate, postscale, postshift, postgate)

    def concept_update(self, index, stream, o_c, intermediates):
        block = self.dm.blocks[index]
        gate, pregate, postscale, postshift, postgate = intermediates
        c = stream.c + pregate * block.attn.wo(o_c * gate)
        return c + postgate * block.mlp((1 + postscale) * block.postnorm(c) + postshift)
