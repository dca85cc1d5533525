"""Mochi 1 (Genmo): ComfyUI's `AsymmDiTJoint` (comfy/ldm/genmo/joint_model/asymm_models_joint.py; comfy/model_base.py
`GenmoMochi`). No implementation by the paper's authors exists for it; these are this pack's rules (SPEC.md
section 3), each with its source in that file.

- Blocks: asymmetric dual stream (`AsymmetricJointBlock`): the text stream is narrower than the video's
  (`hidden_size_y` 1536 against 3072) and has its own modulation (`mod_y`), pre-norm (an RMS norm scaled by
  1 + scale), q/k/v projection up to the video's width (`qkv_y`), QK RMS norms (`q_norm_y`, `k_norm_y`), output
  projection back down (`proj_y`), tanh-gated sandwich norms and SwiGLU MLP (`ff_block_y`). Concepts go through
  these text-stream modules. The last block does not update text (`update_y=False`: its `mod_y` gives the
  attention's scale only, no `proj_y`, no MLP), like SD3's pre-only block: there the concepts only attend.
- Reached through the ("double_block", i) patch replace, whose arguments are img, txt, vec, rope_cos, rope_sin,
  num_tokens. The joint attention runs over [video; text[:num_tokens]]: video FIRST, then the prompt's tokens
  without its padding (`num_tokens` counts the attention mask's ones, `GenmoMochi.extra_conds`). Padding tokens
  are never in the attention, so never concept keys.
- Text path: the T5 features through `t5_yproj`; text takes no RoPE (`AsymmetricAttention` rotates the video's
  queries and keys only), so concepts take none either: they have no position.
- Modulation: `c = t_embedder(1 - sigma) + t5_y_embedder(T5 features, mask)`, the second an attention pooling
  of the prompt (`AttentionPool`: a query from the masked mean of the tokens attends over [mean; tokens]).
  The concepts' zero pooled vector: the pooling applied to an all-zero T5 sequence, as Flux's and SD3's zero
  pooled vector is their pooled-text embedder applied to zeros. On zeros every key and value of the pool is its
  bias, so the result is `to_out(v bias)` whatever the length or mask: a fixed vector with nothing of the prompt.
  (Dropping the pool term instead would leave a sum the model never sees: the pooled term is always present.)
- Video tokens: every latent frame's, frame-major. ComfyUI's Mochi is text-to-video only (`GenmoMochi.extra_conds`
  takes the prompt and its attention mask, no image condition), so there are no start-image, reference or
  condition tokens: all video tokens are mapped.
- Frames: the VAE's causal temporal compression, `latent_format.temporal_downscale_ratio` (6): the base rule.
- Default blocks: the pack's rule, the last quarter of the joint blocks (36-47 of 48).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from comfy import model_base
from comfy.ldm.genmo.joint_model.asymm_models_joint import (AsymmDiTJoint, modulated_rmsnorm,
                                                             residual_tanh_gated_rmsnorm)

from .base import ConceptStream, JointLayout, ModelAdapter, expand_rows, last_quarter


class MochiAdapter(ModelAdapter):
    family = "Mochi"
    models = "Mochi 1 preview; one mask per decoded frame"
    default_blocks_text = "the last quarter of the joint blocks (36-47 of 48)"
    video = True

    @classmethod
    def supports(cls, base_model) -> bool:
        return type(base_model) is model_base.GenmoMochi and type(base_model.diffusion_model) is AsymmDiTJoint

    def __init__(self, base_model):
        super().__init__(base_model)
        self.patch_size = self.dm.patch_size

    @property
    def num_blocks(self) -> int:
        return len(self.dm.blocks)

    def default_blocks(self) -> list[int]:
        return last_quarter(self.num_blocks)

    @property
    def text_width(self) -> int:
        return self.dm.t5_yproj.in_features

    def start(self, call, embeddings, concepts):
        dm = self.dm
        c_t = dm.t_embedder(1 - self.model_timestep(call), out_dtype=call.dtype)  # as prepare(): sigma in, 1 - sigma
        zero_text = torch.zeros(1, 1, self.text_width, device=call.device, dtype=call.dtype)
        zero_pooled = dm.t5_y_embedder(zero_text, torch.ones(1, 1, device=call.device, dtype=torch.bool))
        c = dm.t5_yproj(embeddings.to(device=call.device, dtype=call.dtype))
        return ConceptStream(expand_rows(c, call.batch), c_t + zero_pooled,
                             {"image_tokens": math.prod(self.grid(call.x.shape))})

    def layout(self, index, block_args, stream):
        image = block_args["img"].shape[1]  # the video first, then the prompt without its padding
        text = min(block_args["num_tokens"], block_args["txt"].shape[1])
        return JointLayout(image + text, slice(0, image))

    def concept_qkv(self, index, stream, block_args):
        block = self.dm.blocks[index]
        attn = block.attn
        mod = block.mod_y(F.silu(stream.vec))
        scale_msa = mod.chunk(4, dim=1)[0] if block.update_y else mod
        y = modulated_rmsnorm(stream.c, scale_msa)
        q, k, v = attn.qkv_y(y).unflatten(-1, (3, attn.num_heads, -1)).unbind(2)
        q, k, v = attn.q_norm_y(q), attn.k_norm_y(k), v
        return q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), mod

    def concept_update(self, index, stream, o_c, mod):
        block = self.dm.blocks[index]
        if not block.update_y:  # the last block: text is not updated
            return stream.c
        _, gate_msa, scale_mlp, gate_mlp = mod.chunk(4, dim=1)
        c = residual_tanh_gated_rmsnorm(stream.c, block.attn.proj_y(o_c), gate_msa)
        return block.ff_block_y(c, scale_mlp, gate_mlp)
