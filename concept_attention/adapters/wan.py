"""Wan 2.1 and 2.2 (comfy/ldm/wan/model.py, `WanModel`, and its VACE and camera-control subclasses): a
cross-attention-only family, so the pack offers the `cross_attention` baseline alone (cross_attention.py).

The family's rules, from `WanModel.forward_orig` and `WanAttentionBlock.forward`:
- Blocks: `WanAttentionBlock`s, reached through the ("double_block", i) replace (`txt` is the text context as
  the blocks get it). Each block calls the attention in this order: its self-attention over the video tokens,
  then (I2V models, `WanI2VCrossAttention`) a cross-attention to the CLIP image tokens (`k_img`, `v_img`), then
  the text cross-attention `cross_attn` with queries `norm_q(q(norm3(x)))` and keys `norm_k(k(text))`. The
  concept step runs in that last call, found by its key length (the text's), after the calls before it that
  happen to have the same lengths.
- Text path: the umT5 features go through `text_embedding` (a per-token MLP, so each concept through it alone
  is the same as all at once); in I2V models the projected CLIP image tokens are put in front of them in `txt`
  (`context_img_len` of them, `clip_fea`'s length). Concept keys: `cross_attn.norm_k(cross_attn.k(.))` of the
  concepts' `text_embedding` output; never `k_img`.
- Image tokens: the latent's frames in frame-major order (`patch_embedding`, patch (1, 2, 2)). Tokens of a
  `reference_latent` (`ref_conv`) sit BEFORE them, extra frames of `time_dim_concat` and in-context
  `context_latents` AFTER them: none of those are mapped. I2V start frames enter as extra latent channels
  (concat) of the video's own tokens, which are mapped.
- Frames: the VAE's causal temporal compression (`latent_format.temporal_downscale_ratio`: 4 for Wan 2.1's and
  Wan 2.2's VAEs), one token frame per latent frame: the base rule.
- Default blocks: the pack's rule (no published choice), the last quarter of the blocks.
"""

from __future__ import annotations

import math

from comfy import model_base
from comfy.ldm.wan.model import CameraWanModel, VaceWanModel, WanI2VCrossAttention, WanModel

from .base import ConceptStream, JointLayout, expand_rows
from .cross_attention import CrossAttentionAdapter, heads_first

# ComfyUI's model classes of the family that run these diffusion models unchanged (speech-, audio-, pose- and
# causal variants have their own blocks or token layouts and are left out).
MODELS = (model_base.WAN21, model_base.WAN22, model_base.WAN21_FlowRVS, model_base.WAN21_Vace,
          model_base.WAN21_Camera)
DIFFUSION_MODELS = (WanModel, VaceWanModel, CameraWanModel)


class WanAdapter(CrossAttentionAdapter):
    family = "Wan"
    models = ("Wan 2.1 and 2.2 (T2V, I2V, first-last frame, Fun, VACE, camera control; 14B, 1.3B and 2.2 5B): "
              "the cross-attention baseline only, one mask per decoded frame (not ConceptAttention: Wan never "
              "updates the prompt)")
    default_blocks_text = "the last quarter of the blocks (14B: 30-39; 1.3B and Wan 2.2 5B: 22-29)"
    video = True

    @classmethod
    def supports(cls, base_model) -> bool:
        return type(base_model) in MODELS and type(base_model.diffusion_model) in DIFFUSION_MODELS

    def __init__(self, base_model):
        super().__init__(base_model)
        self.temporal_patch_size, _, self.patch_size = self.dm.patch_size

    @property
    def num_blocks(self) -> int:
        return len(self.dm.blocks)

    @property
    def text_width(self) -> int:
        return self.dm.text_embedding[0].in_features

    def start(self, call, embeddings, concepts):
        text = self.dm.text_embedding(embeddings.to(device=call.device, dtype=call.dtype))
        clip = call.kwargs.get("clip_fea")
        extra = {"image_tokens": math.prod(self.grid(call.x.shape)), "reference_tokens": self._reference_tokens(call),
                 "clip_tokens": None if clip is None else clip.shape[-2]}
        return ConceptStream(expand_rows(text, call.batch), None, extra)

    def _reference_tokens(self, call) -> int:
        """Tokens `ref_conv` puts before the video (a 2D convolution with the spatial patch as its stride)."""
        reference = call.kwargs.get("reference_latent")
        if self.dm.ref_conv is None or reference is None:
            return 0
        return (reference.shape[-2] // self.dm.patch_size[1]) * (reference.shape[-1] // self.patch_size)

    def layout(self, index, block_args, stream):
        tokens, context = block_args["img"].shape[1], block_args["txt"].shape[1]
        start = stream.extra["reference_tokens"]
        earlier = [tokens]  # the self-attention's key length
        if isinstance(self.dm.blocks[index].cross_attn, WanI2VCrossAttention):
            clip = stream.extra["clip_tokens"]  # without clip_fea the image call reads the whole context
            earlier.append(context if clip is None else clip)
            context -= clip or 0
        return JointLayout(tokens, slice(start, start + stream.extra["image_tokens"]), keys=context,
                           skip=earlier.count(context))

    def concept_keys(self, index, stream, block_args):
        cross = self.dm.blocks[index].cross_attn
        return heads_first(cross.norm_k(cross.k(stream.c)), cross.num_heads)
