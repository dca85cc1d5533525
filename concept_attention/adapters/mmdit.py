"""SD3 Medium, SD3.5 Large / Large Turbo / Medium (MMDiT-X): joint blocks, no RoPE, pre-only last block."""

from __future__ import annotations

import torch
from comfy.ldm.modules.diffusionmodules.mmdit import MMDiT

from .base import ConceptStream, JointLayout, ModelAdapter, expand_rows


class MMDiTAdapter(ModelAdapter):
    family = "SD3 / SD3.5"
    models = "SD3 Medium, SD3.5 Large, Large Turbo, Medium (MMDiT-X)"
    default_blocks_text = "all joint blocks"
    defaults_published = True

    @classmethod
    def supports(cls, base_model) -> bool:
        return isinstance(base_model.diffusion_model, MMDiT)

    def __init__(self, base_model):
        super().__init__(base_model)
        self.patch_size = self.dm.patch_size

    @property
    def num_blocks(self) -> int:
        return len(self.dm.joint_blocks)

    def default_blocks(self) -> list[int]:
        return list(range(self.num_blocks))

    @property
    def text_width(self) -> int:
        return self.dm.context_embedder.in_features

    def start(self, call, embeddings, concepts):
        dm = self.dm
        vec = dm.t_embedder(self.model_timestep(call), dtype=call.dtype)
        if dm.y_embedder is not None:  # the authors' concept modulation: a zero pooled-text vector
            zero_pooled = torch.zeros(vec.shape[0], dm.y_embedder.mlp[0].in_features, dtype=call.dtype, device=vec.device)
            vec = vec + dm.y_embedder(zero_pooled)
        ctx = expand_rows(embeddings.to(device=call.device, dtype=call.dtype), call.batch)
        if dm.context_processor is not None:
            # Each concept is its own one-token "prompt".
            ctx = dm.context_processor(ctx.reshape(-1, 1, ctx.shape[-1])).reshape(ctx.shape)
        grid = self.grid(call.x.shape)
        return ConceptStream(dm.context_embedder(ctx), vec, {"image_tokens": grid[0] * grid[1]})

    def layout(self, index, block_args, stream):
        txt_len = block_args["txt"].shape[1]  # text first, then the image
        return JointLayout(txt_len + block_args["img"].shape[1], slice(txt_len, txt_len + stream.extra["image_tokens"]))

    def concept_qkv(self, index, stream, block_args):
        joint = self.dm.joint_blocks[index]
        (q, k, v), intermediates = joint.context_block.pre_attention(stream.c, stream.vec)
        heads = joint.x_block.attn.num_heads
        q, k, v = (t.reshape(t.shape[0], t.shape[1], heads, -1).transpose(1, 2) for t in (q, k, v))
        return q, k, v, intermediates

    def concept_update(self, index, stream, o_c, intermediates):
        block = self.dm.joint_blocks[index].context_block
        if block.pre_only:  # the last SD3 block has no text output weights
            return stream.c
        return block.post_attention(o_c, *intermediates)
