"""An independent, plainly written re-derivation of the cross-attention baseline on Wan (SPEC.md section 3,
"Cross-attention-only models").

From the inputs each block's TEXT cross-attention module (`block.cross_attn`) received in a real sampling run
(recorded with forward pre-hooks: the block's hidden states after its self-attention and `norm3`, and the
context), it recomputes the image queries with the module's query projection and RMS query norm, and the
concept keys with its key projection and RMS key norm applied to the concepts' `text_embedding` output (written
out: linear, tanh-GELU, linear). Scores per image token and concept: the sum over heads of q . k / sqrt(Dh),
softmax over concepts, mean over recorded blocks and schedule steps (cond rows only). It shares no code with
the pack.
"""

from __future__ import annotations

import math

import torch

import reference
from reference import gelu_tanh, linear, rms_norm


class CrossAttentionInputs:
    """Forward pre-hooks recording each model call's timestep and options, and each block's text
    cross-attention input."""

    def __init__(self, dm):
        self.calls = []
        self.handles = [dm.register_forward_pre_hook(self._on_model, with_kwargs=True)]
        for i, block in enumerate(dm.blocks):
            self.handles.append(block.cross_attn.register_forward_pre_hook(self._on_cross(i), with_kwargs=True))

    def _on_model(self, module, args, kwargs):
        options = kwargs.get("transformer_options", {})
        self.calls.append({"t": args[1].clone(), "x_shape": tuple(args[0].shape), "kwargs": kwargs,
                           "cond_or_uncond": list(options.get("cond_or_uncond", [0])),
                           "sigmas": options.get("sigmas"), "sample_sigmas": options.get("sample_sigmas"),
                           "blocks": {}})

    def _on_cross(self, i):
        def hook(module, args, kwargs):
            self.calls[-1]["blocks"][i] = {"x": args[0].clone(), "context": args[1].clone(),
                                           "context_img_len": kwargs.get("context_img_len")}
        return hook

    def remove(self):
        for h in self.handles:
            h.remove()


def grid(dm, x_shape):
    """Token grid (frames, h, w) of the generated latent: ceil over the patch."""
    return tuple(math.ceil(s / p) for s, p in zip(x_shape[2:], dm.patch_size))


def concept_text(dm, embeddings):
    """The concepts through `text_embedding` (Linear, tanh-GELU, Linear), [C, D]."""
    first, second = dm.text_embedding[0], dm.text_embedding[2]
    return linear(gelu_tanh(linear(embeddings.float(), first)), second)


def cross_attention_scores(x, text, cross):
    """Softmax over concepts of sum_h q_h k_h^T / sqrt(Dh): x [B, N, D] the image rows of the cross-attention
    input, text [C, D] the concepts' text features -> [B, N, C]."""
    q = rms_norm(linear(x.float(), cross.q), cross.norm_q.weight, cross.norm_q.eps)
    k = rms_norm(linear(text, cross.k), cross.norm_k.weight, cross.norm_k.eps)
    n_heads = cross.num_heads
    dh = q.shape[-1] // n_heads
    scores = 0
    for h in range(n_heads):
        part = slice(h * dh, (h + 1) * dh)
        scores = scores + q[:, :, part] @ k[:, part].t() / math.sqrt(dh)
    return torch.softmax(scores, dim=-1)


def expected_maps(dm, calls, embeddings, blocks, image_start=0):
    """Mean cross-attention maps [B, C, frames, h, w] over `blocks` and the run's schedule steps. The generated
    video's tokens are the first frames x h x w of the cross-attention's queries after `image_start` (tokens of
    a reference image before them)."""
    text = concept_text(dm, embeddings)
    shape = grid(dm, calls[0]["x_shape"])
    n = math.prod(shape)

    def per_call(call):
        return {i: cross_attention_scores(call["blocks"][i]["x"][:, image_start:image_start + n], text,
                                          dm.blocks[i].cross_attn) for i in blocks}

    return reference.expected_maps(calls, per_call, blocks, grid=shape)
