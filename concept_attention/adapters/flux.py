"""Flux.1 (dev, schnell, Krea, Fill, Kontext): double-stream blocks with RoPE, text ids all zero."""

from __future__ import annotations

import torch
from comfy.ldm.flux.layers import apply_mod, timestep_embedding
from comfy.ldm.flux.math import apply_rope
from comfy.ldm.flux.model import Flux

from .base import ConceptStream, JointLayout, ModelAdapter, expand_rows


class FluxAdapter(ModelAdapter):
    family = "Flux.1"
    models = "dev, schnell, Krea, Fill, Kontext; with reference images only the generated image is mapped"
    default_blocks_text = "double blocks 15-18 (the last four)"
    defaults_published = True

    @classmethod
    def supports(cls, base_model) -> bool:
        dm = base_model.diffusion_model
        return (type(dm) is Flux and not dm.params.global_modulation and not dm.params.txt_ids_dims
                and all(block.modulation for block in dm.double_blocks))

    def __init__(self, base_model):
        super().__init__(base_model)
        self.patch_size = self.dm.patch_size

    @property
    def num_blocks(self) -> int:
        return len(self.dm.double_blocks)

    def default_blocks(self) -> list[int]:
        # The authors' choice for Flux.1's 19 double blocks: 15-18, i.e. the last four.
        return list(range(max(0, self.num_blocks - 4), self.num_blocks))

    @property
    def text_width(self) -> int:
        return self.dm.txt_in.in_features

    def start(self, call, embeddings, concepts):
        dm = self.dm
        vec = dm.time_in(timestep_embedding(self.model_timestep(call), 256).to(call.dtype))
        guidance = call.kwargs.get("guidance")
        if dm.params.guidance_embed and torch.is_tensor(guidance):
            guidance = call.take(guidance.to(device=call.device, dtype=call.dtype))
            vec = vec + dm.guidance_in(timestep_embedding(guidance, 256).to(call.dtype))
        if dm.vector_in is not None:  # the authors' concept modulation: a zero pooled-text vector
            vec = vec + dm.vector_in(torch.zeros(vec.shape[0], dm.params.vec_in_dim, dtype=call.dtype, device=vec.device))
        txt = expand_rows(embeddings.to(device=call.device, dtype=call.dtype), call.batch)
        if dm.txt_norm is not None:
            txt = dm.txt_norm(txt)
        grid = self.grid(call.x.shape)
        return ConceptStream(dm.txt_in(txt), vec, {"image_tokens": grid[0] * grid[1]})

    def layout(self, index, block_args, stream):
        # Text first, then the generated image, then any reference (Kontext) tokens.
        txt_len = block_args["txt"].shape[1]
        return JointLayout(txt_len + block_args["img"].shape[1],
                           slice(txt_len, txt_len + stream.extra["image_tokens"]))

    def concept_qkv(self, index, stream, block_args):
        block = self.dm.double_blocks[index]
        mod1, mod2 = block.txt_mod(stream.vec)
        pe = block_args.get("pe")
        if pe is not None:
            # Concepts sit at the text position; Flux.1 text ids are all zero, so text token 0's rotation.
            pe = pe[:1, :, :1].expand(stream.c.shape[0], -1, stream.c.shape[1], *pe.shape[3:]).contiguous()
        q, k, v = double_block_text_qkv(block, stream.c, mod1, pe)
        return q, k, v, (mod1, mod2)

    def concept_update(self, index, stream, o_c, intermediates):
        return double_block_text_update(self.dm.double_blocks[index], stream.c, o_c, *intermediates)


def double_block_text_qkv(block, c, mod1, pe):
    """q, k, v [B, H, C, Dh] of tokens `c` through a Flux-style DoubleStreamBlock's text stream (modulation
    `mod1`, norm, qkv, QK-norm), rotated by `pe` [B, 1, C, Dh/2, 2, 2] (None: no RoPE). Shared by the families
    built on ComfyUI's Flux blocks."""
    x = apply_mod(block.txt_norm1(c), 1 + mod1.scale, mod1.shift)
    qkv = block.txt_attn.qkv(x)
    q, k, v = qkv.view(qkv.shape[0], qkv.shape[1], 3, block.num_heads, -1).permute(2, 0, 3, 1, 4)
    q, k = block.txt_attn.norm(q, k, v)
    if pe is not None:
        q, k = apply_rope(q, k, pe)
    return q, k, v


def double_block_text_update(block, c, o_c, mod1, mod2):
    """Tokens `c` after a Flux-style DoubleStreamBlock's text-stream residual updates, from their attention
    output `o_c` [B, C, HD]: output projection and gate, then the modulated MLP and gate."""
    c = c + apply_mod(block.txt_attn.proj(o_c), mod1.gate)
    c = c + apply_mod(block.txt_mlp(apply_mod(block.txt_norm2(c), 1 + mod2.scale, mod2.shift)), mod2.gate)
    if c.dtype == torch.float16:
        c = torch.nan_to_num(c, nan=0.0, posinf=65504, neginf=-65504)
    return c
