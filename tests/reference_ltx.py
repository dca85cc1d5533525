"""An independent, plainly written re-derivation of the cross-attention baseline on LTX-2 / LTX-Video (SPEC.md
section 3, "Cross-attention-only models").

From the inputs each block's video TEXT cross-attention module (`attn2`) received in a real sampling run
(recorded with forward pre-hooks: the video hidden states as that call gets them, and the block's prompt
timestep), it recomputes the image queries with `to_q` and the RMS `q_norm`, and the concept keys with `to_k`
and the RMS `k_norm` applied to the concepts' text features, modulated like the text where the model modulates
the text cross-attention (LTX-2.3). Scores per video token and concept: the sum over heads of q . k / sqrt(Dh),
softmax over concepts, mean over recorded blocks and schedule steps (cond rows only).

The concepts' text features: each concept as a one-token prompt through the model's own text preprocessing
(`LTXAVModel.preprocess_text_embeds`, ComfyUI's connectors, as `extra_conds` runs it on a prompt; features the
encoder already ran its own connectors on pass it unchanged), its video half, then the caption projection where
the model applies it at the blocks (`_prepare_context`); LTX-Video: the caption projection. Projections, norms
and scores are written out here; no pack code is used.
"""

from __future__ import annotations

import math

import torch

import reference
from reference import linear, rms_norm


class CrossAttentionInputs:
    """Forward pre-hooks recording each model call's timestep and options, each block's prompt timestep, and
    each block's video text cross-attention input."""

    def __init__(self, dm):
        self.calls = []
        self.handles = [dm.register_forward_pre_hook(self._on_model, with_kwargs=True)]
        for i, block in enumerate(dm.transformer_blocks):
            self.handles.append(block.register_forward_pre_hook(self._on_block(i), with_kwargs=True))
            self.handles.append(block.attn2.register_forward_pre_hook(self._on_cross(i), with_kwargs=True))

    def _on_model(self, module, args, kwargs):
        options = kwargs.get("transformer_options", {})
        x = args[0][0] if isinstance(args[0], list) else args[0]  # LTX-2: [video, audio]
        t = args[1][0] if isinstance(args[1], tuple) else args[1]  # LTX-2: (video, audio) timesteps
        self.calls.append({"t": t.clone(), "x_shape": tuple(x.shape),
                           "cond_or_uncond": list(options.get("cond_or_uncond", [0])),
                           "sigmas": options.get("sigmas"), "sample_sigmas": options.get("sample_sigmas"),
                           "blocks": {}})

    def _on_block(self, i):
        def hook(module, args, kwargs):
            timestep = kwargs.get("v_prompt_timestep", kwargs.get("prompt_timestep"))
            self.calls[-1]["blocks"][i] = {"prompt_timestep": None if timestep is None else timestep.clone()}
        return hook

    def _on_cross(self, i):
        def hook(module, args, kwargs):
            self.calls[-1]["blocks"][i].update(x=args[0].clone(), context=kwargs["context"].clone())
        return hook

    def remove(self):
        for h in self.handles:
            h.remove()


def concept_text(dm, embeddings, together=False, processed=False):
    """The concepts' text features [C, D] as the video's text cross-attention takes text; `together` runs all
    concepts as one prompt instead (for the test that each concept runs alone); `processed`: the embeddings are
    the output of text connectors the encoder ran itself (LTX-2 19B's encoder), as `extra_conds` then hands
    them to `preprocess_text_embeds` (without `unprocessed_ltxav_embeds`)."""
    prompts = embeddings.float()[None] if together else embeddings.float()[:, None]
    if hasattr(dm, "preprocess_text_embeds"):
        outputs = [dm.preprocess_text_embeds(p[None], unprocessed=not processed)[0] for p in prompts]
        video_width = dm.caption_channels if not dm.caption_proj_before_connector else dm.inner_dim
        # the prompt's own rows (the connector pads it with registers), video half
        prompts = torch.stack([p[:prompts.shape[1], :video_width] for p in outputs])
    if not dm.caption_proj_before_connector:
        prompts = dm.caption_projection(prompts)
    return prompts.reshape(-1, prompts.shape[-1]).float()


def cross_attention_scores(block, x, text, prompt_timestep):
    """Softmax over concepts of sum_h q_h k_h^T / sqrt(Dh): x [B, N, D] the video rows of the cross-attention
    input, text [C, D] -> [B, N, C]."""
    attn = block.attn2
    batch = x.shape[0]
    text = text[None].expand(batch, -1, -1)
    if block.cross_attention_adaln:
        table = block.prompt_scale_shift_table.float()
        modulation = prompt_timestep.float().reshape(batch, -1, 2, table.shape[-1])
        shift, scale = table[0] + modulation[:, :, 0], table[1] + modulation[:, :, 1]
        text = text * (1 + scale) + shift
    q = rms_norm(linear(x.float(), attn.to_q), attn.q_norm.weight, attn.q_norm.eps)
    k = rms_norm(linear(text, attn.to_k), attn.k_norm.weight, attn.k_norm.eps)
    dh = attn.dim_head
    scores = 0
    for h in range(attn.heads):
        part = slice(h * dh, (h + 1) * dh)
        scores = scores + q[:, :, part] @ k[:, :, part].transpose(1, 2) / math.sqrt(dh)
    return torch.softmax(scores, dim=-1)


def expected_maps(dm, calls, embeddings, blocks, together=False, processed=False):
    """Mean cross-attention maps [B, C, frames, h, w] over `blocks` and the run's schedule steps (the video's
    tokens; LTX-2's audio tokens have a cross-attention module of their own, never read here)."""
    with torch.no_grad():
        text = concept_text(dm, embeddings, together, processed)
    shape = calls[0]["x_shape"][2:]

    def per_call(call):
        return {i: cross_attention_scores(dm.transformer_blocks[i], call["blocks"][i]["x"], text,
                                          call["blocks"][i]["prompt_timestep"]) for i in blocks}

    return reference.expected_maps(calls, per_call, blocks, grid=shape)
