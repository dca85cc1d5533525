"""HunyuanVideo 1.5, HunyuanVideo 1.0 and HunyuanImage 2.1: one ComfyUI model (comfy/ldm/hunyuan_video/model.py,
`HunyuanVideo`), built on ComfyUI's Flux blocks.

The family's rules, from `HunyuanVideo.forward_orig`:
- Joint blocks: Flux `DoubleStreamBlock`s, reached through the ("double_block", i) replace; their joint attention
  runs over [text; image], text FIRST (not flipped). The single blocks after them are not read (the pack's rule:
  the double-stream stage; HunyuanVideo 1.5 has no single blocks at all).
- The text stream: the prompt goes through `txt_in`, a TokenRefiner (`txt_in(txt, timesteps, mask)`) whose
  modulation is built from the timestep and the mean of ITS OWN input tokens, so each concept runs through it
  alone; HunyuanVideo 1.5 then adds `cond_type_embedding(0)` (the type of Qwen2.5-VL text tokens). byT5 glyph
  tokens and the I2V vision tokens (`clip_fea`, HunyuanVideo 1.5's SigLIP encoding of the start frame) join the
  text stream in front of it: text-stream tokens, never concept keys, never mapped.
- Image tokens: the video's latent frames in frame-major order; `ref_latent` tokens (HunyuanVideo 1.0 I2V's
  "custom" guidance) sit BEFORE the generated ones in the image stream: never mapped, never concept keys. In the
  other I2V modes the start image enters as extra latent channels (concat) or as the held first latent frame
  ("v2 (replace)", `guiding_frame_index`): either way those are the video's own tokens, and mapped, so that every
  decoded frame has its masks.
- Modulation: `vec` = time (+ MeanFlow's time_r) + guidance + CLIP-L pooled text (1.0 only: `vector_in`); with
  `guiding_frame_index` vec is [B, 2, D] and `modulation_dims_txt` picks the text's row. The concepts take the
  text's row with the pooled part replaced by a zero pooled vector (SPEC.md section 3); where the model has no
  pooled input (1.5, HunyuanImage 2.1) that is the text's own modulation vector.
- Positions: text, byT5 and vision ids are all zero (`HunyuanVideo._forward`, `forward_orig`), so a concept
  takes text token 0's rotation.
- Frames: the VAE's causal temporal compression, `latent_format.temporal_downscale_ratio` (4 for both video
  latent formats): the base rule.
- Default blocks: the pack's rule (no published choice), the last quarter of the double blocks.
"""

from __future__ import annotations

import math

import torch
from comfy import model_base
from comfy.ldm.hunyuan_video.model import HunyuanVideo

from .base import ConceptStream, JointLayout, ModelAdapter, expand_rows, last_quarter
from .flux import double_block_text_qkv, double_block_text_update

# ComfyUI's model classes of this family. HunyuanImage 2.1's refiner (HunyuanImage21Refiner) is left out: its
# latent format folds pairs of frames into channels, so its token grid is not the decoded image's.
MODELS = (model_base.HunyuanVideo, model_base.HunyuanVideoI2V, model_base.HunyuanVideoSkyreelsI2V,
          model_base.HunyuanVideo15, model_base.HunyuanVideo15_SR_Distilled, model_base.HunyuanImage21)


class HunyuanVideoAdapter(ModelAdapter):
    family = "HunyuanVideo"
    models = ("HunyuanVideo 1.5 (T2V, I2V, super-resolution), 1.0 (T2V, I2V, SkyReels), "
              "HunyuanImage 2.1; one mask per decoded frame; I2V reference and vision tokens are never mapped")
    default_blocks_text = "the last quarter of the double blocks (1.5: 40-53; 1.0, HunyuanImage 2.1: 15-19)"
    video = True  # HunyuanImage 2.1's latents are [B, C, H, W]: images

    @classmethod
    def supports(cls, base_model) -> bool:
        return type(base_model) in MODELS and type(base_model.diffusion_model) is HunyuanVideo

    def __init__(self, base_model):
        super().__init__(base_model)
        patch = self.dm.patch_size  # [t, h, w] for video, [h, w] for HunyuanImage 2.1
        self.patch_size = patch[-1]
        self.temporal_patch_size = patch[0] if len(patch) == 3 else 1

    @property
    def num_blocks(self) -> int:
        return len(self.dm.double_blocks)

    def default_blocks(self) -> list[int]:
        return last_quarter(self.num_blocks)

    @property
    def text_width(self) -> int:
        return self.dm.txt_in.input_embedder.in_features

    def start(self, call, embeddings, concepts):
        dm = self.dm
        batch, count = call.batch, embeddings.shape[0]
        timesteps = self.model_timestep(call)
        # Each concept alone through the TokenRefiner: one single-token sequence per (row, concept).
        tokens = expand_rows(embeddings.to(device=call.device, dtype=call.dtype), batch).reshape(batch * count, 1, -1)
        c = dm.txt_in(tokens, timesteps.repeat_interleave(count), None).reshape(batch, count, -1)
        if dm.cond_type_embedding is not None:  # 1.5: the Qwen2.5-VL text tokens' type (0)
            c = c + dm.cond_type_embedding.weight[0].to(device=c.device, dtype=c.dtype)
        extra = {"rows": call.rows, "image_tokens": math.prod(self.grid(call.x.shape))}
        if dm.vector_in is not None:  # 1.0: swap the prompt's pooled CLIP-L vector for a zero one
            y = call.take(call.kwargs["y"].to(device=call.device, dtype=call.dtype))[:, :dm.params.vec_in_dim]
            extra["pooled_swap"] = dm.vector_in(torch.zeros_like(y)).float() - dm.vector_in(y).float()
        return ConceptStream(c, None, extra)

    def layout(self, index, block_args, stream):
        # [text (vision, byT5, prompt); image (ref_latent, then the generated video)]
        end = block_args["txt"].shape[1] + block_args["img"].shape[1]
        return JointLayout(end, slice(end - stream.extra["image_tokens"], end))

    def concept_qkv(self, index, stream, block_args):
        if stream.vec is None:
            stream.vec = self._concept_vec(block_args, stream)
        block = self.dm.double_blocks[index]
        mod1, mod2 = block.txt_mod(stream.vec)
        pe = block_args["pe"]  # text ids are zero: every concept takes text token 0's rotation
        pe = pe[:1, :, :1].expand(stream.c.shape[0], -1, stream.c.shape[1], *pe.shape[3:]).contiguous()
        q, k, v = double_block_text_qkv(block, stream.c, mod1, pe)
        return q, k, v, (mod1, mod2)

    def concept_update(self, index, stream, o_c, intermediates):
        return double_block_text_update(self.dm.double_blocks[index], stream.c, o_c, *intermediates)

    @staticmethod
    def _concept_vec(block_args, stream) -> torch.Tensor:
        """The text tokens' modulation vector of the recorded rows, with a zero pooled vector."""
        vec = block_args["vec"]
        if vec.ndim == 3:  # guiding_frame_index: [B, 2, D]; the text's row is named by modulation_dims_txt
            vec = vec[:, block_args["modulation_dims_txt"][-1][2]]
        vec = stream.extra["rows"].take(vec)
        swap = stream.extra.get("pooled_swap")
        return vec if swap is None else (vec.float() + swap).to(vec.dtype)
