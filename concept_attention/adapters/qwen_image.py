"""Qwen-Image, Qwen-Image-Edit (2509, 2511) and Qwen-Image-Layered: 60 dual-stream blocks with RoPE.

The family's rules, each from ComfyUI's `comfy/ldm/qwen_image/model.py` (QwenImageTransformer2DModel):
- Concepts enter like prompt tokens: `txt_norm` (RMSNorm), then `txt_in`.
- Concept modulation: `time_text_embed` of the model's timestep (plus `addition_t_embedding` of the call's
  `additional_t_cond` on Layered, zero when none is given, as the model does). There is no pooled-text vector
  in this family, so nothing prompt-derived can reach the concept stream.
- Each block (`QwenImageTransformerBlock`): text modulation `txt_mod`, `txt_norm1` + `_modulate`, the text
  projections `attn.add_q/k/v_proj`, QK-norm `attn.norm_added_q/k`, RoPE (`apply_rope1`); after attention
  `attn.to_add_out` and gate 1, then `txt_norm2` + `_modulate`, `txt_mlp` and gate 2.
- Joint sequence: [prompt; generated image; reference images] (`_forward` appends the edit models' reference
  latents after the generated image). Only the generated image is mapped and used as concept keys.
- Edit 2511 (`index_timestep_zero`): the reference tokens are modulated with timestep 0 and the block gets
  `temb` with 2B rows; the text stream uses the first half, the real timestep. The concept stream is built from
  the real timestep of the generated image, like the text stream.
- Positions: `txt_ids = arange(txt_start, txt_start + L)` on all three axes, `txt_start` = half the larger side
  of the token grid. ComfyUI's Qwen-Image text encoder cuts its chat template so the prompt's first word is the
  first text token; a concept encoded alone therefore sits at `txt_start` (SPEC.md, "Positions").
- Layered (latent frames = layers, ids (frame, h, w)): maps are [B, C, layers, h, w], one map per layer; the
  latent frames are layers, not time, and are never mixed.
Default blocks: the authors published none for this family; this pack's last quarter (45-59 of 60).
"""

from __future__ import annotations

import math

import torch
from comfy.ldm.flux.math import apply_rope1
from comfy.ldm.qwen_image.model import QwenImageTransformer2DModel

from .base import ConceptStream, JointLayout, ModelAdapter, expand_rows, last_quarter


class QwenImageAdapter(ModelAdapter):
    family = "Qwen-Image"
    models = ("Qwen-Image, Qwen-Image-Edit (2509, 2511), Qwen-Image-Layered (one map per layer); with reference "
              "images only the generated image is mapped")
    default_blocks_text = "the last quarter of the blocks (45-59 of 60)"
    defaults_published = False

    @classmethod
    def supports(cls, base_model) -> bool:
        return type(base_model.diffusion_model) is QwenImageTransformer2DModel

    def __init__(self, base_model):
        super().__init__(base_model)
        self.patch_size = self.dm.patch_size

    @property
    def num_blocks(self) -> int:
        return len(self.dm.transformer_blocks)

    def default_blocks(self) -> list[int]:
        return last_quarter(self.num_blocks)

    @property
    def text_width(self) -> int:
        return self.dm.txt_in.in_features

    def grid(self, latent_shape):
        """(h, w) of the image, or (layers, h, w) for Qwen-Image-Layered's multi-frame latents."""
        h, w = super().grid(latent_shape)
        frames = latent_shape[2] if len(latent_shape) == 5 else 1
        return (frames, h, w) if frames > 1 else (h, w)

    def start(self, call, embeddings, concepts):
        dm = self.dm
        carrier = torch.empty(0, dtype=call.dtype, device=call.device)  # time_text_embed reads only its dtype
        extra_t = call.kwargs.get("additional_t_cond")
        temb = dm.time_text_embed(self.model_timestep(call).to(call.device), carrier,
                                  call.take(extra_t) if torch.is_tensor(extra_t) else None)
        txt = expand_rows(embeddings.to(device=call.device, dtype=call.dtype), call.batch)
        c = dm.txt_in(dm.txt_norm(txt))
        image_tokens = math.prod(self.grid(call.x.shape))
        return ConceptStream(c, temb, {"image_tokens": image_tokens, "pe": self._concept_pe(call, c.shape[:2])})

    def _concept_pe(self, call, batch_concepts):
        """RoPE of the first text position, txt_start on all three axes (as `_forward` computes it)."""
        p = self.patch_size
        h, w = call.x.shape[-2:]
        txt_start = round(max(((w + p // 2) // p) // 2, ((h + p // 2) // p) // 2))
        ids = torch.full((1, 1, 3), float(txt_start), device=call.device)
        pe = self.dm.pe_embedder(ids).to(call.dtype)  # [1, 1, 1, Dh/2, 2, 2]
        return pe.expand(batch_concepts[0], -1, batch_concepts[1], *pe.shape[3:]).contiguous()

    def layout(self, index, block_args, stream):
        # The prompt first, then the generated image, then any reference images (edit models).
        txt_len = block_args["txt"].shape[1]
        return JointLayout(txt_len + block_args["img"].shape[1],
                           slice(txt_len, txt_len + stream.extra["image_tokens"]))

    def concept_qkv(self, index, stream, block_args):
        block = self.dm.transformer_blocks[index]
        attn = block.attn
        x, gate1, mod2 = text_stream_modulation(block, stream.c, stream.vec)
        b, n = x.shape[:2]
        q, k, v = (proj(x).view(b, n, attn.heads, -1).transpose(1, 2)
                   for proj in (attn.add_q_proj, attn.add_k_proj, attn.add_v_proj))
        pe = stream.extra["pe"]
        q = apply_rope1(attn.norm_added_q(q), pe)
        k = apply_rope1(attn.norm_added_k(k), pe)
        return q, k, v, (gate1, mod2)

    def concept_update(self, index, stream, o_c, intermediates):
        return text_stream_update(self.dm.transformer_blocks[index], stream.c, o_c, *intermediates)


# Shared by the families whose blocks follow Qwen-Image's text-stream layout (`txt_mod`, `txt_norm1/2`,
# `_modulate`, `attn.to_add_out`, `txt_mlp`): Qwen-Image and Lens.
def text_stream_modulation(block, c, vec):
    """Tokens `c` normed and modulated for the block's text-stream attention, with gate 1 and the
    modulation of the MLP half, from the modulation input `vec` [B, D]."""
    mod1, mod2 = block.txt_mod(vec).chunk(2, dim=-1)
    x, gate1 = block._modulate(block.txt_norm1(c), mod1)
    return x, gate1, mod2


def text_stream_update(block, c, o_c, gate1, mod2):
    """Tokens `c` after the block's text-stream residual updates, from their attention output `o_c` [B, C, HD]:
    output projection and gate 1, then the modulated MLP and gate 2."""
    c = c + gate1 * block.attn.to_add_out(o_c)
    x, gate2 = block._modulate(block.txt_norm2(c), mod2)
    return c + gate2 * block.txt_mlp(x)
