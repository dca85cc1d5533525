"""OmniGen2 (ComfyUI's `comfy.ldm.omnigen.omnigen2.OmniGen2Transformer2DModel`): refiners per stream, then one
stream of [text; reference images; image] tokens through shared layers. No implementation by the paper's
authors exists for it; these are this pack's rules (SPEC.md section 3, "Single-stream blocks"), each with its
source in ComfyUI's `comfy/ldm/omnigen/omnigen2.py`.

- Text path: prompt tokens pass `caption_embedder` (norm, projection) and the unmodulated `context_refiner`
  layers, which attend across the prompt. A concept passes both on its own: a one-token prompt, so the
  refiner's attention sees the concept alone and nothing of the prompt.
- Modulation: every layer's scales and tanh gates come from the timestep alone (`time_caption_embed` of 1 - t,
  as `forward` flips it); OmniGen2 has no pooled or guidance vector, so concepts get the prompt's own timestep
  vector and nothing prompt-derived.
- Layers: text and image share the weights, so a concept goes through the layer's modulated RMS norm, q/k/v,
  per-head QK-norm, RoPE and grouped-query heads, and afterwards through its output projection, post-attention
  norm and gate, and the gated feed-forward, exactly as a prompt token does.
- Positions: `OmniGen2RotaryPosEmbed` puts prompt token i at (i, i, i), counting the chat template's tokens. A
  concept sits where its first word token sits when the concept is encoded alone (`Concepts.spans`), or at
  (0, 0, 0) when the embeddings came without spans.
- Reference images (edit mode, `ref_latents`) sit between the prompt and the generated image; concept queries
  see only the generated image's keys and their own, and maps cover the generated image only.
- Saliency vector: the attention output before the output projection `to_out`, heads concatenated, as the
  layer's attention call returns it (SPEC.md section 3).
- Hooking: the layers are called without a patch-replace hook and without `transformer_options["block_index"]`.
  The refiners' attention calls come first and are each shorter than the joint sequence (text, image or
  reference tokens alone), so the default rule holds: calls of the joint length, in order.
- Default blocks: single-stream only after the refiners, so the pack's rule: the last quarter of the main
  layers (24-31 of the 32); the paper's authors published nothing for this model.
"""

from __future__ import annotations

import torch
from comfy.ldm.omnigen.omnigen2 import OmniGen2Transformer2DModel, apply_rotary_emb

from .base import ATTENTION, ConceptStream, JointLayout, ModelAdapter, expand_rows, last_quarter


class OmniGen2Adapter(ModelAdapter):
    family = "OmniGen2"
    models = "OmniGen2; with reference images only the generated image is mapped"
    default_blocks_text = "the last quarter of the main layers (24-31 of 32)"
    defaults_published = False
    hook = ATTENTION

    @classmethod
    def supports(cls, base_model) -> bool:
        return type(base_model.diffusion_model) is OmniGen2Transformer2DModel

    def __init__(self, base_model):
        super().__init__(base_model)
        self.patch_size = self.dm.patch_size

    @property
    def num_blocks(self) -> int:
        return len(self.dm.layers)

    def default_blocks(self) -> list[int]:
        return last_quarter(self.num_blocks)

    @property
    def text_width(self) -> int:
        return self.dm.time_caption_embed.caption_embedder[1].in_features

    def start(self, call, embeddings, concepts):
        dm = self.dm
        embed = dm.time_caption_embed
        temb = embed.timestep_embedder(embed.time_proj(1.0 - self.model_timestep(call)).to(call.dtype))
        positions = self.concept_positions(concepts, call.device)
        # Each concept a one-token prompt of its own through the caption embedder and the context refiner.
        tokens = embed.caption_embedder(embeddings.to(device=call.device, dtype=call.dtype))[:, None]
        alone = dm.rope_embedder.rope_embedder(positions[:, None]).movedim(1, 2)
        for layer in dm.context_refiner:
            tokens = layer(tokens, None, alone)
        grid = self.grid(call.x.shape)
        return ConceptStream(expand_rows(tokens[:, 0], call.batch), temb, {
            "rope": dm.rope_embedder.rope_embedder(positions.expand(call.batch, -1, -1)).movedim(1, 2),
            "text_tokens": call.kwargs["c_crossattn"].shape[1],
            "reference_tokens": sum(self.grid(ref.shape)[0] * self.grid(ref.shape)[1]
                                    for ref in call.kwargs.get("ref_latents") or []),
            "image_tokens": grid[0] * grid[1],
        })

    @staticmethod
    def concept_positions(concepts, device) -> torch.Tensor:
        """[C, 3]: each concept at its first word token's index in its own encoding, on all three axes."""
        starts = [0] * len(concepts) if concepts.spans is None else [span.start for span in concepts.spans]
        return torch.tensor(starts, device=device)[:, None].expand(-1, 3)

    def layout(self, index, block_args, stream):
        # The prompt, the reference images, then the generated image.
        before = stream.extra["text_tokens"] + stream.extra["reference_tokens"]
        image = stream.extra["image_tokens"]
        return JointLayout(before + image, slice(before, before + image))

    def concept_qkv(self, index, stream, block_args):
        layer = self.dm.layers[index]
        attn = layer.attn
        x, gate_msa, scale_mlp, gate_mlp = layer.norm1(stream.c, stream.vec)
        shape = (x.shape[0], x.shape[1], -1, attn.dim_head)
        q, k, v = attn.to_q(x).view(shape), attn.to_k(x).view(shape), attn.to_v(x).view(shape)
        rope = stream.extra["rope"]
        q, k = apply_rotary_emb(attn.norm_q(q), rope), apply_rotary_emb(attn.norm_k(k), rope)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        if attn.kv_heads < attn.heads:
            k = k.repeat_interleave(attn.heads // attn.kv_heads, dim=1)
            v = v.repeat_interleave(attn.heads // attn.kv_heads, dim=1)
        return q, k, v, (gate_msa[:, None].tanh(), 1 + scale_mlp[:, None], gate_mlp[:, None].tanh())

    def concept_update(self, index, stream, o_c, intermediates):
        layer = self.dm.layers[index]
        gate_msa, scale_mlp, gate_mlp = intermediates
        c = stream.c + gate_msa * layer.norm2(layer.attn.to_out[0](o_c))
        return c + gate_mlp * layer.ffn_norm2(layer.feed_forward(layer.ffn_norm1(c) * scale_mlp))
