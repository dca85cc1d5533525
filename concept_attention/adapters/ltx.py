"""LTX-2 / LTX-2.3 (comfy/ldm/lightricks/av_model.py, `LTXAVModel`, an audio-video model) and LTX-Video 0.9
(comfy/ldm/lightricks/model.py, `LTXVModel`): a cross-attention-only family, so the pack offers the
`cross_attention` baseline alone (cross_attention.py). Both run the same block code path for the video stream.

The family's rules, from `LTXBaseModel._forward`, `LTXAVModel.preprocess_text_embeds` / `_prepare_context` and
the blocks' `forward` / `_apply_text_cross_attention`:
- Blocks: `BasicAVTransformerBlock` (LTX-2) / `BasicTransformerBlock` (LTX-Video), reached through the
  ("double_block", i) replace. The video stream calls its self-attention `attn1`, then its text
  cross-attention `attn2` (queries `q_norm(to_q(.))` of the video tokens, keys `k_norm(to_k(text))`); LTX-2's
  audio self- and text cross-attention and its audio-video attentions follow. The concept step runs in the
  video's `attn2` call, found by its key length (the text's), after `attn1` when that has the same lengths
  (LTX-2's text is at least 1024 tokens: the connector pads it with registers).
- Text path, each concept run alone through it as a prompt of one token (`Concepts` holds one embedding per
  concept): LTX-2: the Gemma 3 features (after the encoder's own projection) go, in `preprocess_text_embeds`,
  through the caption projection where it comes first (LTX-2.3, whose encoder gives the video and audio parts
  side by side: the video part) and the video text connector (`video_embeddings_connector`: a small
  transformer over the prompt padded to 1024 tokens with learnable registers; the concept's own row is kept),
  then, in `_prepare_context`, through the caption projection where it comes after (LTX-2). When the encoder
  runs the connectors itself (comfy/text_encoders/lt.py, the checkpoint's connectors loaded into the text
  encoder: LTX-2 19B), its features arrive processed, video and audio halves side by side, twice as wide: the
  video half goes on to the caption projection, as `_prepare_context` splits it. LTX-Video: `caption_projection`
  of the T5 features. The connector costs C sequences of 1024 tokens, so these features are computed once per
  attachment (and again only when the weights change).
- Concept keys: `attn2.k_norm(attn2.to_k(.))` of those features, after the text's own timestep modulation
  where the model modulates the text cross-attention (`cross_attention_adaln`, LTX-2.3:
  `prompt_scale_shift_table` + the block's prompt timestep, `apply_cross_attention_adaln`).
- Image tokens: the video latent's tokens in frame-major order (patch 1), all of the video stream's tokens.
  Audio: LTX-2's audio tokens are a stream of their own with their own text cross-attention; they are never
  mapped. An audio-video LATENT (LTXV Concat AV Latent, a nested latent the sampler packs) is mapped by its
  video latent, the first one (ModelCall.latent_shape), and the masks node takes either the nested LATENT or
  the video latent LTXV Separate AV Latent gives. Image-to-video start frames (LTXV Img To Video Inplace: a
  held first latent frame) are video frames and mapped. Keyframe guides (LTXV Add Guide: guide frames appended
  to the latent, tokens dropped by the guide mask, cropped after sampling) are a clear error.
- Frames: the VAE's causal temporal compression (`latent_format.temporal_downscale_ratio`: 8), the base rule.
- Default blocks: the pack's rule (no published choice), the last quarter of the blocks.
"""

from __future__ import annotations

import torch
from comfy import model_base
from comfy.ldm.lightricks.av_model import LTXAVModel
from comfy.ldm.lightricks.model import LTXVModel

from ..errors import ConceptAttentionError
from .base import ConceptStream, JointLayout, expand_rows
from .cross_attention import CrossAttentionAdapter, heads_first

MODELS = {model_base.LTXAV: LTXAVModel, model_base.LTXV: LTXVModel}


class LTXAdapter(CrossAttentionAdapter):
    family = "LTX"
    models = ("LTX-2 and LTX-2.3 (the video of video or audio-video latents; audio is not mapped), LTX-Video "
              "0.9: the cross-attention baseline only, one mask per decoded frame (not ConceptAttention: LTX "
              "never updates the prompt)")
    default_blocks_text = "the last quarter of the blocks (LTX-2: 36-47; LTX-Video 2B: 21-27)"
    video = True
    patch_size = 1

    @classmethod
    def supports(cls, base_model) -> bool:
        return type(base_model.diffusion_model) is MODELS.get(type(base_model))

    def __init__(self, base_model):
        super().__init__(base_model)
        self.audio_video = isinstance(self.dm, LTXAVModel)
        self._text_cache = (None, None)

    @property
    def num_blocks(self) -> int:
        return len(self.dm.transformer_blocks)

    @property
    def text_width(self) -> int:
        dm = self.dm
        if self.audio_video and dm.caption_proj_before_connector and not dm.caption_projection_first_linear:
            return dm.cross_attention_dim + dm.audio_cross_attention_dim  # LTX-2.3: the encoder's video + audio parts
        return dm.caption_channels

    @property
    def text_widths(self) -> tuple[int, ...]:
        if self.audio_video and not self.dm.caption_proj_before_connector:
            return self.text_width, 2 * self.text_width  # the Gemma features, or the encoder's connector output
        return (self.text_width,)

    def start(self, call, embeddings, concepts):
        if call.kwargs.get("keyframe_idxs") is not None:
            raise ConceptAttentionError(
                "Concept Attention cannot map an LTX run with keyframe guides (LTXV Add Guide, in-context "
                "LoRA guides): their tokens sit among the video's and are cropped off after sampling. Sample "
                "without guides to get masks (LTXV Img To Video Inplace start images are fine).")
        text = self._concept_text(embeddings.to(device=call.device, dtype=call.dtype))
        return ConceptStream(expand_rows(text, call.batch), None, {"rows": call.rows})

    def _concept_text(self, embeddings: torch.Tensor) -> torch.Tensor:
        """The concepts as the video's text cross-attention receives its text, [C, D]: each concept a prompt of
        its own through the text path; cached while the weights it used are unchanged."""
        modules = (self.dm.caption_projection, getattr(self.dm, "video_embeddings_connector", None))
        key = (embeddings.device, embeddings.dtype, _weights_state(modules))
        if self._text_cache[0] != key:
            self._text_cache = (key, self._text_path(embeddings[:, None]))
        return self._text_cache[1]

    def _text_path(self, prompts: torch.Tensor) -> torch.Tensor:
        """C one-token prompts [C, 1, W] through the video text path (LTXAVModel.preprocess_text_embeds, then
        _prepare_context), [C, D]."""
        if self.audio_video:
            prompts = self._video_connector(prompts)
        if not self.dm.caption_proj_before_connector:
            prompts = self.dm.caption_projection(prompts)
        return prompts[:, 0]

    def _video_connector(self, prompts: torch.Tensor) -> torch.Tensor:
        """The video half of LTXAVModel.preprocess_text_embeds for C one-token prompts [C, 1, W]."""
        dm = self.dm
        if prompts.shape[-1] == 2 * dm.caption_channels and not dm.caption_proj_before_connector:
            return prompts[..., :dm.caption_channels]  # the encoder ran the connectors itself: their video half
        if prompts.shape[-1] == dm.cross_attention_dim + dm.audio_cross_attention_dim:
            prompts = prompts[..., :dm.cross_attention_dim]  # LTX-2.3's encoder: its video part
        if dm.caption_proj_before_connector:
            prompts = dm.caption_projection(prompts)
        # one prompt at a time (the connector's rotary embedding takes a batch of one); the prompt's own token,
        # not the registers it is padded with
        return torch.cat([dm.video_embeddings_connector(p[None])[0][:, :1] for p in prompts])

    def layout(self, index, block_args, stream):
        video = block_args["img"][0] if self.audio_video else block_args["img"]
        text = block_args["v_context"] if self.audio_video else block_args["txt"]
        tokens, keys = video.shape[1], text.shape[1]
        # the video self-attention (one call without keyframe guides) comes first and has `tokens` keys
        return JointLayout(tokens, slice(0, tokens), keys=keys, skip=int(keys == tokens))

    def concept_keys(self, index, stream, block_args):
        block = self.dm.transformer_blocks[index]
        text = stream.c
        if block.cross_attention_adaln:  # the text's own modulation in this block (apply_cross_attention_adaln)
            timestep = stream.extra["rows"].take(block_args["v_prompt_timestep" if self.audio_video
                                                            else "prompt_timestep"])
            shift, scale = (block.prompt_scale_shift_table[None, None].to(text)
                            + timestep.reshape(text.shape[0], timestep.shape[1], 2, -1)).unbind(dim=2)
            text = text * (1 + scale) + shift
        return heads_first(block.attn2.k_norm(block.attn2.to_k(text)), block.attn2.heads)


def _weights_state(modules) -> tuple:
    """Identity and in-place version of the modules' weights: changes when a patch replaces or rewrites them."""
    return tuple((id(p), p._version) for m in modules if isinstance(m, torch.nn.Module) for p in m.parameters())
