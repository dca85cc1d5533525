"""CogVideoX 1.0 (2B, 5B) and 1.5 (5B), text-to-video, image-to-video and inpainting (CogVideoX-Fun / VOID): one
ComfyUI model (comfy/ldm/cogvideo/model.py, `CogVideoXTransformer3DModel`; comfy/model_base.py `CogVideoX`).

The family's rules, from `CogVideoXTransformer3DModel._forward` and `CogVideoXBlock.forward`:
- Blocks: single-stream. Text and video share one LayerNorm, the q/k/v projections, the per-head QK LayerNorms,
  the output projection and the MLP; only the adaLN is split ("expert" norms, `CogVideoXLayerNormZero`: one
  linear gives the video's shift/scale/gate and the text's). Concept tokens go through all of it with the
  text's shift/scale/gate, as a prompt token does.
- Joint attention over [text; video], text FIRST. ComfyUI calls the blocks without a patch-replace hook and
  without `transformer_options["block_index"]`, so the attention override matches each call to its block by call
  order: the blocks' attention calls are the only ones in the model's forward pass (tests/test_cogvideox.py
  counts them).
- Text path: the prompt's T5 features through `patch_embed.text_proj`; text gets a zero positional embedding and
  no RoPE (RoPE is applied to the video's rows only). Concepts likewise: `text_proj`, nothing else.
- Modulation: the timestep embedding (+ the `ofs` embedding of 1.5 I2V, 2.0 unless the conditioning sets it).
  CogVideoX has no pooled-text vector, so the concepts take the model's own modulation input: nothing in it
  comes from the prompt.
- Video tokens: the latent frames in frame-major order. I2V and Inpaint condition through extra input channels
  (`CogVideoX.concat_cond`: the start image's latent in the first frame, zeros after it; Inpaint: the mask's
  and the masked video's latents), so every token is the generated video's own and all of them are mapped:
  every decoded frame, the first (the start image) included, has its masks. No reference tokens exist.
- Frames: the VAE's causal temporal compression, `latent_format.temporal_downscale_ratio` (4). CogVideoX 1.5
  patches 2 latent frames into one token frame (`patch_size_t`; ComfyUI pads an odd latent frame count at the
  end, circularly): each token frame's scores are given to both of its latent frames, so the maps keep one
  frame per latent frame, [B, C, T, h, w] like every video family's, and the padding frame gets none.
- Sampling: v-prediction (`ModelType.V_PREDICTION_DDPM`); the model's timestep input is the discrete DDPM step.

Where the paper's authors' CogVideoX code (concept_attention/cogvideox/ in their repository) defines something,
this follows it: concepts through `text_proj` with the text's zero positional embedding and no RoPE, the text's
adaLN half, concept queries over [concepts; video], saliency = output-space scores softmaxed over concepts per
block and step, then averaged. DEFAULTS ARE THE AUTHORS': blocks 0-29 (their example and README run CogVideoX-5B
with layers 0-29; that is every block of the 2B) and every step. As SPEC.md section 3 says, their pipeline's
zero padding of the concepts to 226 tokens (the pads attend and enter the softmax) is not copied: the concepts
are the C tokens only and the maps sum to 1 over them.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from comfy import model_base
from comfy.ldm.cogvideo.model import CogVideoXTransformer3DModel, get_timestep_embedding

from .base import ATTENTION, ConceptStream, JointLayout, ModelAdapter, expand_rows

AUTHORS_BLOCKS = 30  # their example: layers 0-29


class CogVideoXAdapter(ModelAdapter):
    family = "CogVideoX"
    models = ("CogVideoX 1.0 (2B, 5B), 1.5 (5B): T2V, I2V, Inpaint (Fun, VOID); one mask per decoded frame, "
              "the start image's frame included")
    default_blocks_text = "blocks 0-29 (all of the 2B's 30, the first 30 of the 5B's and 1.5's 42), every step"
    defaults_published = True
    hook = ATTENTION
    video = True
    order = 110  # exact types, so only the listing order: after the families the pack began with (Flux.1, SD3)

    @classmethod
    def supports(cls, base_model) -> bool:
        return type(base_model) is model_base.CogVideoX and type(base_model.diffusion_model) is CogVideoXTransformer3DModel

    def __init__(self, base_model):
        super().__init__(base_model)
        self.patch_size = self.dm.patch_size
        self.frames_per_token = self.dm.patch_size_t or 1  # 1.5: two latent frames per token frame

    @property
    def num_blocks(self) -> int:
        return len(self.dm.blocks)

    def default_blocks(self) -> list[int]:
        return list(range(min(AUTHORS_BLOCKS, self.num_blocks)))

    @property
    def text_width(self) -> int:
        return self.dm.patch_embed.text_proj.in_features

    def start(self, call, embeddings, concepts):
        dm = self.dm
        text_proj = dm.patch_embed.text_proj
        c = text_proj(embeddings.to(device=call.device, dtype=text_proj.weight.dtype)).to(call.dtype)
        latent_frames, h, w = self.grid(call.x.shape)
        token_frames = math.ceil(latent_frames / self.frames_per_token)
        return ConceptStream(expand_rows(c, call.batch), self._modulation_input(call), {
            "text_tokens": call.kwargs["c_crossattn"].shape[1],
            "frame_tokens": h * w,
            "image_tokens": token_frames * h * w,
            "latent_frames": latent_frames,
        })

    def _modulation_input(self, call) -> torch.Tensor:
        """The blocks' `temb` for the recorded rows, as `_forward` builds it: timestep (+ ofs) embedding."""
        dm = self.dm
        t_emb = get_timestep_embedding(self.model_timestep(call), dm.time_proj_dim, dm.time_proj_flip,
                                       dm.time_proj_shift).to(call.dtype)
        emb = dm.time_embedding_linear_2(dm.time_embedding_act(dm.time_embedding_linear_1(t_emb)))
        ofs = call.kwargs.get("ofs")
        if dm.ofs_embedding_linear_1 is not None and ofs is not None:
            ofs_emb = get_timestep_embedding(call.take(ofs.to(call.device)), dm.ofs_proj_dim, dm.time_proj_flip,
                                             dm.time_proj_shift).to(call.dtype)
            emb = emb + dm.ofs_embedding_linear_2(dm.ofs_embedding_act(dm.ofs_embedding_linear_1(ofs_emb)))
        return emb

    def layout(self, index, block_args, stream):
        text, image = stream.extra["text_tokens"], stream.extra["image_tokens"]
        return JointLayout(text + image, slice(text, text + image))  # text first, then the video

    def concept_qkv(self, index, stream, block_args):
        block = self.dm.blocks[index]
        x, gate = text_modulation(block.norm1, stream.c, stream.vec)
        heads = (block.num_heads, block.head_dim)
        q = block.norm_q(block.q(x).unflatten(-1, heads)).transpose(1, 2)
        k = block.norm_k(block.k(x).unflatten(-1, heads)).transpose(1, 2)
        v = block.v(x).unflatten(-1, heads).transpose(1, 2)
        return q, k, v, gate

    def concept_update(self, index, stream, o_c, gate):
        block = self.dm.blocks[index]
        c = stream.c + gate * block.attn_out(o_c)
        x, gate_ff = text_modulation(block.norm2, c, stream.vec)
        return c + gate_ff * block.ff_out(F.gelu(block.ff_proj(x), approximate="tanh"))

    def concept_step(self, index, attn, stream, block_args, space):
        logits = super().concept_step(index, attn, stream, block_args, space)
        if logits is None or self.frames_per_token == 1:
            return logits
        return self._per_latent_frame(logits, stream)

    def _per_latent_frame(self, logits: torch.Tensor, stream) -> torch.Tensor:
        """Scores [B, token frames * hw, C] as [B, latent frames * hw, C]: each token frame's scores for each
        latent frame it patches; the padding frame after an odd count is dropped."""
        b, _, c = logits.shape
        frames = logits.reshape(b, -1, stream.extra["frame_tokens"], c)
        frames = frames.repeat_interleave(self.frames_per_token, dim=1)[:, :stream.extra["latent_frames"]]
        return frames.flatten(1, 2)


def text_modulation(norm, c: torch.Tensor, temb: torch.Tensor):
    """The text half of a `CogVideoXLayerNormZero`: the shared LayerNorm with the text's shift and scale, and the
    text's gate ([B, 1, D])."""
    _, _, _, shift, scale, gate = norm.linear(norm.silu(temb)).chunk(6, dim=1)
    return norm.norm(c) * (1 + scale)[:, None] + shift[:, None], gate[:, None]
