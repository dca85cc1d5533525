"""Flux.1 (dev, schnell, Krea, Fill, Kontext): double-stream blocks with RoPE, text ids all zero."""

from __future__ import annotations

import torch
from comfy.ldm.flux.layers import apply_mod, timestep_embedding
from comfy.ldm.flux.math import apply_rope
from comfy.ldm.flux.model import Flux

from .base import ModelAdapter


class FluxAdapter(ModelAdapter):
    family = "Flux.1"

    @staticmethod
    def supports(dm) -> bool:
        return (type(dm) is Flux and not dm.params.global_modulation and not dm.params.txt_ids_dims
                and all(block.modulation for block in dm.double_blocks))

    def __init__(self, dm):
        super().__init__(dm)
        self.patch_size = dm.patch_size

    @property
    def num_blocks(self) -> int:
        return len(self.dm.double_blocks)

    def default_blocks(self) -> list[int]:
        # The authors' choice for Flux.1's 19 double blocks: 15-18, i.e. the last four.
        return list(range(max(0, self.num_blocks - 4), self.num_blocks))

    @property
    def text_width(self) -> int:
        return self.dm.txt_in.in_features

    def concept_vec(self, timesteps, guidance, dtype):
        dm = self.dm
        vec = dm.time_in(timestep_embedding(timesteps, 256).to(dtype))
        if dm.params.guidance_embed and guidance is not None:
            vec = vec + dm.guidance_in(timestep_embedding(guidance, 256).to(dtype))
        if dm.vector_in is not None:
            zero_pooled = torch.zeros(vec.shape[0], dm.params.vec_in_dim, dtype=dtype, device=vec.device)
            vec = vec + dm.vector_in(zero_pooled)
        return vec

    def embed(self, embeddings, batch, dtype, device):
        txt = embeddings.to(device=device, dtype=dtype).unsqueeze(0).expand(batch, -1, -1)
        if self.dm.txt_norm is not None:
            txt = self.dm.txt_norm(txt)
        return self.dm.txt_in(txt)

    def concept_qkv(self, index, c, vec, block_args):
        block = self.dm.double_blocks[index]
        mod1, mod2 = block.txt_mod(vec)
        x = apply_mod(block.txt_norm1(c), 1 + mod1.scale, mod1.shift)
        qkv = block.txt_attn.qkv(x)
        q, k, v = qkv.view(qkv.shape[0], qkv.shape[1], 3, block.num_heads, -1).permute(2, 0, 3, 1, 4)
        q, k = block.txt_attn.norm(q, k, v)
        pe = block_args.get("pe")
        if pe is not None:
            # Concepts sit at the text position; Flux.1 text ids are all zero, so token 0's rotation.
            pe_text = pe[:1, :, :1].expand(c.shape[0], -1, c.shape[1], *pe.shape[3:]).contiguous()
            q, k = apply_rope(q, k, pe_text)
        return q, k, v, (mod1, mod2)

    def concept_update(self, index, c, o_c, intermediates):
        block = self.dm.double_blocks[index]
        mod1, mod2 = intermediates
        c = c + apply_mod(block.txt_attn.proj(o_c), mod1.gate)
        c = c + apply_mod(block.txt_mlp(apply_mod(block.txt_norm2(c), 1 + mod2.scale, mod2.shift)), mod2.gate)
        if c.dtype == torch.float16:
            c = torch.nan_to_num(c, nan=0.0, posinf=65504, neginf=-65504)
        return c
