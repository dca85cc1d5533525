"""SD3 Medium, SD3.5 Large / Large Turbo / Medium (MMDiT-X): joint blocks, no RoPE, pre-only last block."""

from __future__ import annotations

import torch
from comfy.ldm.modules.diffusionmodules.mmdit import MMDiT

from .base import ModelAdapter


class MMDiTAdapter(ModelAdapter):
    family = "SD3/SD3.5"

    @staticmethod
    def supports(dm) -> bool:
        return isinstance(dm, MMDiT)

    def __init__(self, dm):
        super().__init__(dm)
        self.patch_size = dm.patch_size

    @property
    def num_blocks(self) -> int:
        return len(self.dm.joint_blocks)

    def default_blocks(self) -> list[int]:
        return list(range(self.num_blocks))

    @property
    def text_width(self) -> int:
        return self.dm.context_embedder.in_features

    def concept_vec(self, timesteps, guidance, dtype):
        dm = self.dm
        vec = dm.t_embedder(timesteps, dtype=dtype)
        if dm.y_embedder is not None:
            zero_pooled = torch.zeros(vec.shape[0], dm.y_embedder.mlp[0].in_features, dtype=dtype, device=vec.device)
            vec = vec + dm.y_embedder(zero_pooled)
        return vec

    def embed(self, embeddings, batch, dtype, device):
        ctx = embeddings.to(device=device, dtype=dtype).unsqueeze(0).expand(batch, -1, -1)
        if self.dm.context_processor is not None:
            # Each concept is its own one-token "prompt".
            ctx = self.dm.context_processor(ctx.reshape(-1, 1, ctx.shape[-1])).reshape(ctx.shape)
        return self.dm.context_embedder(ctx)

    def concept_qkv(self, index, c, vec, block_args):
        joint = self.dm.joint_blocks[index]
        (q, k, v), intermediates = joint.context_block.pre_attention(c, vec)
        heads = joint.x_block.attn.num_heads
        q, k, v = (t.reshape(t.shape[0], t.shape[1], heads, -1).transpose(1, 2) for t in (q, k, v))
        return q, k, v, intermediates

    def concept_update(self, index, c, o_c, intermediates):
        block = self.dm.joint_blocks[index].context_block
        if block.pre_only:  # the last SD3 block has no text output weights
            return c
        return block.post_attention(o_c, *intermediates)
