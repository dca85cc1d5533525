"""Lens (Microsoft, 48 dual-stream blocks, GPT-OSS text features, Flux.2 latents).

The family's rules, each from ComfyUI's `comfy/ldm/lens/model.py` (LensTransformer2DModel):
- Concepts enter like prompt tokens: the text features (several encoder layers side by side) are split per
  layer, each normed by its `txt_norm[i]` (RMSNorm), joined again, then `txt_in`.
- Concept modulation: `time_text_embed` of the model's timestep; Lens has no pooled-text vector.
- Each block (`LensTransformerBlock`): the same text-stream layout as Qwen-Image (`txt_mod`, `txt_norm1`,
  `_modulate`, `attn.to_add_out`, `txt_norm2`, `txt_mlp`, shared helpers in `qwen_image.py`), with a fused
  `attn.txt_qkv`, QK-norm `attn.norm_added_q/k` and `apply_rope`.
- Joint sequence: [image; prompt] (image first). The latent is Flux.2's, already 2x2-packed: one token per
  latent pixel.
- Positions (`_lens_position_ids`): text ids `arange(text_start, text_start + L)` on all three axes,
  `text_start = max(h // 2, w // 2)`; a concept takes the first text position, `text_start` (SPEC.md, as
  Qwen-Image).
Default blocks: the authors published none for this family; this pack's last quarter (36-47 of 48).
"""

from __future__ import annotations

import torch
from comfy.ldm.flux.math import apply_rope
from comfy.ldm.lens.model import LensTransformer2DModel

from .base import ConceptStream, JointLayout, ModelAdapter, expand_rows, last_quarter
from .qwen_image import text_stream_modulation, text_stream_update


class LensAdapter(ModelAdapter):
    family = "Lens"
    models = "Lens"
    default_blocks_text = "the last quarter of the blocks (36-47 of 48)"
    defaults_published = False
    patch_size = 1  # Flux.2 latents are already packed: one token per latent pixel

    @classmethod
    def supports(cls, base_model) -> bool:
        return type(base_model.diffusion_model) is LensTransformer2DModel

    @property
    def num_blocks(self) -> int:
        return len(self.dm.transformer_blocks)

    def default_blocks(self) -> list[int]:
        return last_quarter(self.num_blocks)

    @property
    def text_width(self) -> int:
        return self.dm.txt_in.in_features

    def start(self, call, embeddings, concepts):
        dm = self.dm
        carrier = torch.empty(0, dtype=call.dtype, device=call.device)  # time_text_embed reads only its dtype
        temb = dm.time_text_embed(self.model_timestep(call).to(device=call.device, dtype=call.dtype), carrier)
        txt = expand_rows(embeddings.to(device=call.device, dtype=call.dtype), call.batch)
        if dm.multi_layer_encoder_feature:
            layers = txt.reshape(*txt.shape[:2], len(dm.txt_norm), -1).unbind(dim=2)
            txt = torch.cat([norm(layer) for norm, layer in zip(dm.txt_norm, layers)], dim=-1)
        else:
            txt = dm.txt_norm(txt)
        c = dm.txt_in(txt)
        h, w = self.grid(call.x.shape)
        return ConceptStream(c, temb, {"image_tokens": h * w, "pe": self._concept_pe(call, c.shape[:2], h, w)})

    def _concept_pe(self, call, batch_concepts, h, w):
        """RoPE of the first text position, text_start on all three axes (as `_lens_position_ids`)."""
        ids = torch.full((1, 1, 3), float(max(h // 2, w // 2)), device=call.device)
        pe = self.dm.pos_embed(ids).to(call.dtype)  # [1, 1, 1, Dh/2, 2, 2]
        return pe.expand(batch_concepts[0], -1, batch_concepts[1], *pe.shape[3:]).contiguous()

    def layout(self, index, block_args, stream):
        # The image first, then the prompt.
        return JointLayout(block_args["img"].shape[1] + block_args["txt"].shape[1],
                           slice(0, stream.extra["image_tokens"]))

    def concept_qkv(self, index, stream, block_args):
        block = self.dm.transformer_blocks[index]
        attn = block.attn
        x, gate1, mod2 = text_stream_modulation(block, stream.c, stream.vec)
        q, k, v = attn.txt_qkv(x).view(*x.shape[:2], 3, attn.heads, attn.dim_head).unbind(dim=2)
        q, k, v = attn.norm_added_q(q).transpose(1, 2), attn.norm_added_k(k).transpose(1, 2), v.transpose(1, 2)
        q, k = apply_rope(q, k, stream.extra["pe"])
        return q, k, v, (gate1, mod2)

    def concept_update(self, index, stream, o_c, intermediates):
        return text_stream_update(self.dm.transformer_blocks[index], stream.c, o_c, *intermediates)
