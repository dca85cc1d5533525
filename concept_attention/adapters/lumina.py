"""Z-Image, Z-Image Turbo, Z-Image pixel space, Lumina 2 and NewBie: ComfyUI's NextDiT
(comfy/ldm/lumina/model.py), a single-stream transformer. No published ConceptAttention exists for it; these are
this pack's rules, each with its reason:

- Entry: each concept is a one-token caption of its own. It passes `cap_embedder` (RMSNorm + linear) and the
  `context_refiner` layers, the text-only stage every caption token passes before the joint layers
  (NextDiT.patchify_and_embed), alone: it sees no prompt, no other concept and no caption padding (Z-Image pads
  captions to a multiple of 32 with a learned token; padding carries no text).
- Position: text axis 1, image axes 0, in the refiner and in every joint layer: where the first token of a
  caption sits (NextDiT.embed_cap numbers caption tokens from 1), i.e. the position the concept's word has as a
  one-word prompt (SPEC.md section 3, "Positions").
- Modulation: the caption tokens' modulation, built from the timestep (`t_embedder` of 1 - t, NextDiT._forward):
  scale-only norms and tanh gates from each layer's `adaLN_modulation`. In omni mode the caption of the generated
  image is modulated with the real timestep (its `timestep_zero_index`), and so are the concepts. NewBie adds the
  prompt's pooled text (`clip_text_pooled_proj`, `time_text_embed`): concepts get a zero pooled text vector through
  that projection, as the authors give Flux's concepts a zero pooled vector through `vector_in` (SPEC.md section 1);
  the image and the prompt keep the real one.
- Joint layers: the concept tokens pass each layer's own modules exactly as caption tokens do
  (JointTransformerBlock.forward, JointAttention.forward): attention_norm1 and scale, qkv, QK-norm, RoPE, the
  key/value heads repeated for grouped-query attention, output projection, attention_norm2 and gate, ffn_norm1
  and scale, the SwiGLU feed-forward, ffn_norm2 and gate. NextDiT calls its layers without a replace hook, so the
  concept step runs inside each layer's joint attention call (the attention override), matched by
  `transformer_options["block_index"]` while `block_type` is "double": NextDiT sets both just before its joint
  layers, so the refiners' attention calls (other lengths, no block index yet) are never taken for a layer.
- Keys: concept queries see the generated image's tokens and the concepts, never the caption, the caption's or
  the image's padding, or (omni mode) the reference images, their captions and SigLIP tokens: the concept is
  read off the image being generated, as on every other family.
- Image rows: the generated image is the last segment of the joint sequence ([captions; SigLIP; reference
  images; image], NextDiT.patchify_and_embed), its real tokens first and its padding after; the maps cover the
  real tokens.
- Default blocks: the last quarter of the joint layers (Z-Image's 30: 22-29), this pack's rule for a pure
  single-stream model (SPEC.md section 3); the authors published no choice for these models.
"""

from __future__ import annotations

import torch
from comfy.ldm.flux.math import apply_rope
from comfy.ldm.lumina.model import NextDiT, NextDiTPixelSpace, apply_gate, clamp_fp16, modulate

from .base import ATTENTION, ConceptStream, JointLayout, ModelAdapter, expand_rows, last_quarter

FIRST_TEXT_POSITION = 1.0  # NextDiT.embed_cap: caption token i sits at text axis 1 + i


class NextDiTAdapter(ModelAdapter):
    family = "Z-Image / Lumina 2"
    models = ("Z-Image, Z-Image Turbo, Z-Image pixel space, Lumina 2, NewBie; with reference images (omni mode) "
              "only the generated image is mapped")
    default_blocks_text = "the last quarter of the joint layers (Z-Image: 22-29 of 30)"
    hook = ATTENTION

    @classmethod
    def supports(cls, base_model) -> bool:
        return type(base_model.diffusion_model) in (NextDiT, NextDiTPixelSpace)

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
        return self.dm.cap_embedder[1].in_features

    def start(self, call, embeddings, concepts):
        dm = self.dm
        vec = dm.t_embedder((1.0 - self.model_timestep(call)) * dm.time_scale, dtype=call.dtype)
        if dm.clip_text_pooled_proj is not None:  # NewBie: a zero pooled-text vector for the concepts
            zero_pooled = torch.zeros(vec.shape[0], dm.clip_text_dim, dtype=call.dtype, device=vec.device)
            vec = dm.time_text_embed(torch.cat((vec, dm.clip_text_pooled_proj(zero_pooled)), dim=-1))
        rope = self._text_rope(embeddings.shape[0], call.device)
        tokens = dm.cap_embedder(embeddings.to(device=call.device, dtype=call.dtype)[:, None])  # C captions of 1 token
        for layer in dm.context_refiner:
            tokens = layer(tokens, None, rope[:, :1])
        image_tokens = self.grid(call.x.shape)
        image_tokens = image_tokens[0] * image_tokens[1]
        padded = image_tokens + (-image_tokens) % (dm.pad_tokens_multiple or 1)
        return ConceptStream(expand_rows(tokens[:, 0], call.batch), vec,
                             {"rope": rope, "image_tokens": image_tokens, "image_padded": padded})

    def _text_rope(self, count: int, device) -> torch.Tensor:
        """Rotations [1, count, 1, Dh/2, 2, 2] of `count` tokens at the first caption position."""
        ids = torch.zeros(1, count, 3, device=device)
        ids[..., 0] = FIRST_TEXT_POSITION
        return self.dm.rope_embedder(ids).movedim(1, 2).contiguous()

    def attention_block(self, options, length, stream, calls_seen):
        if options.get("block_type") != "double" or "block_index" not in options:
            return None  # the refiners' attention, before the joint layers
        # The first joint layer's attention gives the joint length; any other call is not a layer's own attention.
        return options["block_index"] if length == stream.extra.setdefault("joint_length", length) else None

    def layout(self, index, block_args, stream):
        length = stream.extra["joint_length"]
        image_start = length - stream.extra["image_padded"]  # the generated image (and its padding) comes last
        return JointLayout(length, slice(image_start, image_start + stream.extra["image_tokens"]))

    def concept_qkv(self, index, stream, block_args):
        layer = self.dm.layers[index]
        attn = layer.attention
        scale_msa, gate_msa, scale_mlp, gate_mlp = layer.adaLN_modulation(stream.vec).chunk(4, dim=1)
        x = modulate(layer.attention_norm1(stream.c), scale_msa)
        batch, count, _ = x.shape
        kv_width = attn.n_local_kv_heads * attn.head_dim
        q, k, v = torch.split(attn.qkv(x), [attn.n_local_heads * attn.head_dim, kv_width, kv_width], dim=-1)
        q = attn.q_norm(q.view(batch, count, attn.n_local_heads, attn.head_dim))
        k = attn.k_norm(k.view(batch, count, attn.n_local_kv_heads, attn.head_dim))
        v = v.view(batch, count, attn.n_local_kv_heads, attn.head_dim)
        q, k = apply_rope(q, k, stream.extra["rope"])
        if attn.n_rep > 1:  # grouped-query attention: each key/value head serves n_rep query heads, as in the layer
            k, v = (t.repeat_interleave(attn.n_rep, dim=2) for t in (k, v))
        return q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), (gate_msa, scale_mlp, gate_mlp)

    def concept_update(self, index, stream, o_c, intermediates):
        layer = self.dm.layers[index]
        gate_msa, scale_mlp, gate_mlp = intermediates
        attended = layer.attention_norm2(clamp_fp16(layer.attention.out(o_c)))
        c = stream.c + apply_gate(gate_msa.unsqueeze(1).tanh(), attended)
        fed = layer.ffn_norm2(clamp_fp16(layer.feed_forward(modulate(layer.ffn_norm1(c), scale_mlp))))
        return c + apply_gate(gate_mlp.unsqueeze(1).tanh(), fed)
