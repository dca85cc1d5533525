"""Ideogram 4 (ComfyUI's `comfy.ldm.ideogram4.model.Ideogram4Transformer2DModel`): one stream of [text; image]
tokens through shared layers. No implementation by the paper's authors exists for it; these are this pack's rules
(SPEC.md section 3, "Single-stream blocks"), each with its source in ComfyUI's `comfy/ldm/ideogram4/model.py`.

- Text path: a prompt token's features (13 Qwen3-VL layers, concatenated) pass `llm_cond_norm` and
  `llm_cond_proj`, and text rows get `embed_image_indicator`'s "not the output image" row (`_backbone`). There is
  no text-only stage, so a concept takes exactly this path.
- Modulation: every layer's scales and tanh gates come from the timestep alone (`t_embedding` of 1 - t, as
  `_forward` flips it, then `adaln_proj`); Ideogram 4 has no pooled or guidance vector, so concepts get the
  prompt's own timestep vector and nothing prompt-derived.
- Layers: text and image share the weights, so a concept goes through the layer's attention norm and scale,
  qkv, per-head QK-norm and interleaved MRoPE, and afterwards through its output projection, post-attention
  norm and gate, and the gated feed-forward, exactly as a prompt token does.
- Positions: `_run_conditional` puts prompt token i at (i, i, i), counting the chat template's tokens. A concept
  sits where its first word token sits when the concept is encoded alone (`Concepts.spans`), or at (0, 0, 0)
  when the embeddings came without spans.
- Padding: padded prompt rows get their own attention segment; concepts never see prompt keys at all, and maps
  are read over the image rows only, so padding never enters them.
- Saliency vector: the attention output before the output projection `o`, heads concatenated, as the layer's
  attention call returns it (SPEC.md section 3).
- Hooking: the layers are called without a patch-replace hook and without `transformer_options["block_index"]`;
  every attention call of the model is a layer's joint attention, so layers are matched by call order.
- Default blocks: single-stream only, so the pack's rule: the last quarter of all layers (25-33 of the 34);
  the paper's authors published nothing for this model.
- The unconditional pass without any prompt (`_run_image_only`) is never recorded: maps come from positive
  prompts only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from comfy.ldm.ideogram4.model import Ideogram4Transformer2DModel
from comfy.text_encoders.llama import apply_rope, precompute_freqs_cis

from .base import ATTENTION, ConceptStream, JointLayout, ModelAdapter, expand_rows, last_quarter


class Ideogram4Adapter(ModelAdapter):
    family = "Ideogram 4"
    models = "Ideogram 4"
    default_blocks_text = "the last quarter of the layers (25-33 of 34)"
    defaults_published = False
    hook = ATTENTION
    patch_size = 1  # the Flux.2 latent is patchified already: one token per latent pixel

    @classmethod
    def supports(cls, base_model) -> bool:
        return type(base_model.diffusion_model) is Ideogram4Transformer2DModel

    @property
    def num_blocks(self) -> int:
        return len(self.dm.layers)

    def default_blocks(self) -> list[int]:
        return last_quarter(self.num_blocks)

    @property
    def text_width(self) -> int:
        return self.dm.llm_cond_proj.in_features

    def start(self, call, embeddings, concepts):
        dm = self.dm
        t_cond = dm.t_embedding(1.0 - self.model_timestep(call), dtype=call.dtype).unsqueeze(1)
        features = embeddings.to(device=call.device, dtype=call.dtype)
        text_row = torch.zeros(len(features), dtype=torch.long, device=call.device)  # indicator: not the image
        tokens = dm.llm_cond_proj(dm.llm_cond_norm(features)) + dm.embed_image_indicator(text_row, out_dtype=call.dtype)
        grid = self.grid(call.x.shape)
        return ConceptStream(expand_rows(tokens, call.batch), F.silu(dm.adaln_proj(t_cond)), {
            "freqs": precompute_freqs_cis(dm.head_dim, self.concept_positions(concepts, call.device), dm.rope_theta,
                                          rope_dims=dm.mrope_section, interleaved_mrope=True, device=call.device),
            "text_tokens": call.kwargs["c_crossattn"].shape[1],
            "image_tokens": grid[0] * grid[1],
        })

    @staticmethod
    def concept_positions(concepts, device) -> torch.Tensor:
        """[3, C]: each concept at its first word token's index in its own encoding, on all three axes."""
        starts = [0] * len(concepts) if concepts.spans is None else [span.start for span in concepts.spans]
        return torch.tensor(starts, device=device).expand(3, -1)

    def layout(self, index, block_args, stream):
        text, image = stream.extra["text_tokens"], stream.extra["image_tokens"]
        return JointLayout(text + image, slice(text, text + image))  # text first, then the image

    def concept_qkv(self, index, stream, block_args):
        layer = self.dm.layers[index]
        attn = layer.attention
        scale_msa, gate_msa, scale_mlp, gate_mlp = layer.adaln_modulation(stream.vec).chunk(4, dim=-1)
        x = layer.attention_norm1(stream.c) * (1.0 + scale_msa)
        qkv = attn.qkv(x).view(x.shape[0], x.shape[1], 3, attn.num_heads, attn.head_dim)
        q, k, v = qkv.unbind(dim=2)
        q, k, v = attn.norm_q(q).transpose(1, 2), attn.norm_k(k).transpose(1, 2), v.transpose(1, 2)
        q, k = apply_rope(q, k, stream.extra["freqs"])
        return q, k, v, (torch.tanh(gate_msa), 1.0 + scale_mlp, torch.tanh(gate_mlp))

    def concept_update(self, index, stream, o_c, intermediates):
        layer = self.dm.layers[index]
        gate_msa, scale_mlp, gate_mlp = intermediates
        c = stream.c + gate_msa * layer.attention_norm2(layer.attention.o(o_c))
        return c + gate_mlp * layer.ffn_norm2(layer.feed_forward(layer.ffn_norm1(c) * scale_mlp))
